"""The knowledge-base action: answers with the source, clarifies, misses — and two misses in a row
(or a threat) hand the conversation to a human with a ticket in the real back office. The
knowledge service is the real one, over the RAG tests' fixture articles in an in-memory Qdrant."""
from __future__ import annotations

from typing import Iterator

import pytest

from actions.knowledge_actions import ActionAnswerQuestion, ActionCopilotDraft, set_knowledge_service
from rag.components import build_dense, build_retriever, build_sparse
from rag.index import QdrantIndex
from rag.ingest import ingest_kb
from rag.service import KnowledgeService, Thresholds
from rag.settings import RagSettings
from tests.rag.conftest import FIXTURE_KB

HANDOFF = ("utter_handoff_online", "utter_handoff_offline")
KB_QUESTION = "можно ли вернуть деньги за сертификат"
OFF_TOPIC = "какой курс биткоина будет через месяц"


@pytest.fixture(scope="module")
def retriever(tmp_path_factory):
    settings = RagSettings(kb_dir=FIXTURE_KB, qdrant_path=tmp_path_factory.mktemp("qdrant"), collection="actions",
                           sync_on_start=False)
    dense, sparse = build_dense(settings), build_sparse(settings)
    index = QdrantIndex.in_memory("actions")
    ingest_kb(index, FIXTURE_KB, dense, sparse, max_chars=settings.max_chunk_chars)
    yield settings, build_retriever(settings, index, dense, sparse)
    index.close()


@pytest.fixture
def knowledge(retriever) -> Iterator[callable]:
    """Installs a service with the given thresholds for the action; the project's calibrated ones
    by default."""
    settings, built = retriever
    project = RagSettings.load(environ={})

    def install(answer: float = project.answer_threshold, clarify: float = project.clarify_threshold) -> KnowledgeService:
        service = KnowledgeService(settings, retriever=built, thresholds=Thresholds(answer, clarify))
        set_knowledge_service(service)
        return service

    yield install
    set_knowledge_service(None)


def handed_over(turn) -> bool:
    return turn.handed_over


async def test_a_knowledge_question_is_answered_with_its_source(backoffice, conversation, knowledge) -> None:
    knowledge(answer=0.0, clarify=0.0)
    conv = conversation()
    conv.user(KB_QUESTION, intent="knowledge_question")
    turn = await conv.run(ActionAnswerQuestion())
    assert turn.responses == ["utter_kb_answer"]
    assert turn.messages[0]["answer"].endswith("Подробнее: «Можно ли вернуть деньги за сертификат».")
    assert turn.slots() == {} and not handed_over(turn)


async def test_an_unsure_match_gets_a_clarifying_question_and_counts_as_a_miss(backoffice, conversation, knowledge) -> None:
    knowledge(answer=1.01, clarify=0.0)
    conv = conversation()
    conv.user(KB_QUESTION, intent="knowledge_question")
    turn = await conv.run(ActionAnswerQuestion())
    assert turn.responses == ["utter_kb_clarify"] and "«Можно ли вернуть деньги за сертификат»" in turn.messages[0]["topics"]
    assert turn.slots() == {"miss_streak": 1.0, "kb_clarify": {"question": KB_QUESTION}}
    first = turn.messages[0]["buttons"][0]
    assert first == {"title": "Можно ли вернуть деньги за сертификат",
                     "payload": '/knowledge_question{"kb_article": "refund-conditions"}'}

    # the customer clicks the quick reply: the answer comes from that article, the streak ends
    conv.user(first["payload"], intent="knowledge_question",
              entities=[{"entity": "kb_article", "value": "refund-conditions"}])
    picked = await conv.run(ActionAnswerQuestion())
    assert picked.responses == ["utter_kb_answer"]
    assert picked.messages[0]["answer"].endswith("Подробнее: «Можно ли вернуть деньги за сертификат».")
    assert picked.slots() == {"kb_clarify": None} and not handed_over(picked)


async def test_a_stale_quick_reply_is_not_answered_from_an_unrelated_article(backoffice, conversation, knowledge) -> None:
    knowledge(answer=1.01, clarify=0.0)
    conv = conversation()
    conv.user(KB_QUESTION, intent="knowledge_question")
    await conv.run(ActionAnswerQuestion())
    conv.user('/knowledge_question{"kb_article": "no-such-article"}', intent="knowledge_question",
              entities=[{"entity": "kb_article", "value": "no-such-article"}])
    turn = await conv.run(ActionAnswerQuestion())
    assert turn.responses == ["utter_kb_no_answer"] or turn.responses[0] == "utter_repeated_misses"


async def test_two_misses_in_a_row_go_to_a_human(backoffice, conversation, knowledge) -> None:
    knowledge()
    conv = conversation()
    conv.user(OFF_TOPIC, intent="nlu_fallback")
    first = await conv.run(ActionAnswerQuestion())
    assert first.responses == ["utter_default"] and first.slots() == {"miss_streak": 1.0}
    assert not handed_over(first)

    conv.user("посоветуйте рецепт борща", intent="nlu_fallback")
    second = await conv.run(ActionAnswerQuestion())
    assert second.responses[0] == "utter_repeated_misses" and second.responses[1] in HANDOFF
    assert handed_over(second) and conv.slots["miss_streak"] is None
    (ticket,) = backoffice.tickets(conv.sender_id)
    assert ticket["category"] == "not_understood" and ticket["subject"] == "Ассистент дважды не понял клиента"


async def test_a_knowledge_question_without_an_answer_says_so(backoffice, conversation, knowledge) -> None:
    knowledge()
    conv = conversation()
    conv.user(OFF_TOPIC, intent="knowledge_question")
    turn = await conv.run(ActionAnswerQuestion())
    assert turn.responses == ["utter_kb_no_answer"] and turn.slots() == {"miss_streak": 1.0}


async def test_a_miss_after_an_understood_turn_starts_again(backoffice, conversation, knowledge) -> None:
    knowledge()
    conv = conversation()
    conv.user(OFF_TOPIC, intent="nlu_fallback")
    assert (await conv.run(ActionAnswerQuestion())).slots() == {"miss_streak": 1.0}
    conv.user("здравствуйте", intent="greet")
    await conv.utter("utter_greet")
    conv.user("посоветуйте рецепт борща", intent="out_of_scope")
    again = await conv.run(ActionAnswerQuestion())
    assert again.responses == ["utter_default"] and again.slots() == {"miss_streak": 1.0}
    assert backoffice.tickets(conv.sender_id) == []


async def test_a_threat_the_nlu_missed_is_handed_over_as_irritation(backoffice, conversation, knowledge) -> None:
    knowledge()
    conv = conversation()
    conv.user("если не вернёте деньги, подам в суд", intent="nlu_fallback")
    turn = await conv.run(ActionAnswerQuestion())
    assert turn.responses[0] == "utter_complaint" and turn.responses[1] in HANDOFF and handed_over(turn)
    (ticket,) = backoffice.tickets(conv.sender_id)
    assert ticket["priority"] == "high" and ticket["category"] == "complaint"


async def test_a_broken_knowledge_base_is_a_miss_not_a_crash(backoffice, conversation, tmp_path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the Qdrant folder should be")
    set_knowledge_service(KnowledgeService(RagSettings(kb_dir=FIXTURE_KB, qdrant_path=blocker, collection="x")))
    try:
        conv = conversation()
        conv.user(KB_QUESTION, intent="knowledge_question")
        turn = await conv.run(ActionAnswerQuestion())
        assert turn.responses == ["utter_kb_no_answer"] and turn.slots() == {"miss_streak": 1.0}
    finally:
        set_knowledge_service(None)


async def test_a_copilot_draft_is_read_only(backoffice, conversation, knowledge) -> None:
    """The operator console's draft: the answer and its article as a custom payload; no miss is
    counted and even a threat hands nothing over (the customer never sees a draft)."""
    knowledge(answer=0.0, clarify=0.0)
    conv = conversation()
    conv.user(KB_QUESTION, intent="knowledge_question")
    turn = await conv.run(ActionCopilotDraft())
    draft = turn.messages[0]["custom"]["copilot_draft"]
    assert draft["status"] == "answered" and draft["text"].endswith("Подробнее: «Можно ли вернуть деньги за сертификат».")
    assert draft["article_id"] and 0.0 <= draft["score"] <= 1.0
    assert turn.events == []
    conv.user("я подам на вас в суд, верните деньги за сертификат", intent="knowledge_question")
    turn = await conv.run(ActionCopilotDraft())
    assert turn.slots() == {} and not handed_over(turn)
    assert [m.get("custom", {}).get("copilot_draft", {}).get("status") for m in turn.messages] == ["answered"]

    knowledge(answer=1.1, clarify=1.1)
    conv.user(OFF_TOPIC, intent="knowledge_question")
    turn = await conv.run(ActionCopilotDraft())
    assert turn.messages[0]["custom"]["copilot_draft"]["status"] != "answered" and turn.slots() == {}
