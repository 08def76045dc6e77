"""The calibration set (data/kb_calibration.yml) that thresholds and retrieval settings are tuned on.

Fast checks only (no index): it refers to existing articles, has enough off-topic questions for a
5% false-answer bound to mean something, and shares no question with the golden set, which must
stay an independent measurement.
"""
import difflib
import re

import pytest

from rag.calibrate import DEFAULT_CALIBRATION
from rag.datasets import load_question_set
from rag.documents import load_articles
from rag.settings import DEFAULT_CONFIG_PATH, RagSettings
from tests.conftest import PROJECT_ROOT

GOLDEN = PROJECT_ROOT / "tests" / "data" / "rag_golden.yml"


def _normalised(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower().replace("ё", "е")))


@pytest.fixture(scope="module")
def calibration():
    if not DEFAULT_CALIBRATION.exists():
        pytest.skip("data/kb_calibration.yml is missing")
    return load_question_set(DEFAULT_CALIBRATION)


def test_calibration_set_refers_to_existing_articles(calibration):
    settings = RagSettings.load(DEFAULT_CONFIG_PATH, environ={})
    if not settings.kb_dir.is_dir():
        pytest.skip("the knowledge base is missing")
    ids = {article.id for article in load_articles(settings.kb_dir)}
    assert {article for _, article in calibration.answerable} <= ids


def test_calibration_set_is_big_enough_for_the_false_answer_bound(calibration):
    # with max_false 0.05 the threshold may let through at most 10 of 205 off-topic questions
    assert len(calibration.answerable) >= 150 and len(calibration.unanswerable) >= 180


def test_calibration_set_has_no_duplicates_and_no_golden_questions(calibration):
    questions = [_normalised(q) for q, _ in calibration.answerable] + [_normalised(q) for q in calibration.unanswerable]
    assert len(set(questions)) == len(questions)
    if not GOLDEN.exists():
        pytest.skip("the golden set is missing")
    golden = load_question_set(GOLDEN)
    golden_questions = {_normalised(q) for q, _ in golden.answerable} | {_normalised(q) for q in golden.unanswerable}
    assert not set(questions) & golden_questions


def test_calibration_set_has_no_near_copies_of_golden_questions(calibration):
    """A reworded golden question would leak the evaluation into the thresholds."""
    if not GOLDEN.exists():
        pytest.skip("the golden set is missing")
    golden = load_question_set(GOLDEN)
    golden_questions = [_normalised(q) for q, _ in golden.answerable] + [_normalised(q) for q in golden.unanswerable]
    ours = [_normalised(q) for q, _ in calibration.answerable] + [_normalised(q) for q in calibration.unanswerable]
    near = [
        (question, other) for question in ours for other in golden_questions
        if difflib.SequenceMatcher(None, question, other).ratio() > 0.75
    ]
    assert near == []
