"""Floors on the real knowledge base and golden set (tests/data/rag_golden.yml), with rag.yml as is.

The index is built once for the module (about half a minute on two shared cores); the golden set
is never used to tune anything — weights and thresholds come from data/kb_calibration.yml.
"""
import pytest

from rag.datasets import load_question_set
from rag.evaluate import build_bench, evaluate_retrieval, evaluate_service
from rag.settings import DEFAULT_CONFIG_PATH, RagSettings
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

GOLDEN = PROJECT_ROOT / "tests" / "data" / "rag_golden.yml"


@pytest.fixture(scope="module")
def bench():
    settings = RagSettings.load(DEFAULT_CONFIG_PATH, environ={})
    if not GOLDEN.exists() or not settings.kb_dir.is_dir():
        pytest.skip("the knowledge base or the golden set is missing")
    bench = build_bench(settings)
    yield bench
    bench.close()


@pytest.fixture(scope="module")
def golden():
    return load_question_set(GOLDEN)


def test_golden_set_refers_to_existing_articles(bench, golden):
    from rag.documents import load_articles

    assert golden.check_articles(a.id for a in load_articles(bench.settings.kb_dir)) == []
    assert len(golden.answerable) >= 100 and len(golden.unanswerable) >= 30


def test_hybrid_recall_at_3(bench, golden):
    results = evaluate_retrieval(bench, golden, modes=("hybrid",))
    assert results["hybrid"]["recall@3"] >= 0.9, results["hybrid"]["misses"][:10]


def test_few_false_answers_on_unanswerable_questions(bench, golden):
    results = evaluate_service(bench.service(), golden)
    assert results["false_answer_rate"] <= 0.10, results["false_answers"]
    assert results["correct_answer_rate"] >= 0.4
