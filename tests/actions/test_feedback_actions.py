"""The end-of-dialogue question (actions/feedback_actions.py): asked after a completed flow or a
knowledge answer for the topics of feedback.yml, never inside another flow, after a hand-over or a
clarifying question; its answers — buttons, a typed yes / no, a rating — land in the slots analytics
reads."""
from __future__ import annotations

import pytest

from actions.certificate_actions import ActionSubmitBalance
from actions.feedback_actions import ActionAskFeedback, ActionRecordFeedback, FeedbackSettings, feedback_settings
from handoff.marker import HandoverMarker


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    feedback_settings.cache_clear()
    yield
    feedback_settings.cache_clear()


def knowledge_turn(conv, response: str = "utter_kb_answer", intent: str = "knowledge_question") -> None:
    conv.user("сколько действует сертификат?", intent=intent)
    conv.events.append({"event": "action", "name": "action_answer_question"})
    message = {"response": response, "template": response}
    if response == "utter_kb_answer":
        message.update(answer="12 месяцев. Подробнее: «Срок».", source="Срок")
    elif response == "utter_kb_clarify":
        message.update(topics="«А» или «Б»")
    conv._say_bot([message])


async def test_asked_after_a_completed_flow(backoffice, conversation) -> None:
    conv = conversation()
    await conv.start("balance_form", "баланс DRM-A1B2-C3D4-7Q2K", "check_balance")
    await conv.say("1234")
    assert conv.active_form is None
    await conv.run(ActionSubmitBalance())
    asked = await conv.run(ActionAskFeedback())
    assert asked.responses == ["utter_ask_resolved"]
    assert asked.slots() == {"feedback_pending": True, "feedback_topic": "check_balance"}


async def test_asked_after_a_knowledge_answer_not_after_a_clarifying_question(conversation) -> None:
    answered = conversation()
    knowledge_turn(answered)
    assert (await answered.run(ActionAskFeedback())).responses == ["utter_ask_resolved"]
    clarified = conversation()
    knowledge_turn(clarified, "utter_kb_clarify")
    assert (await clarified.run(ActionAskFeedback())).responses == []
    understood_by_the_kb = conversation()
    knowledge_turn(understood_by_the_kb, intent="nlu_fallback")
    assert (await understood_by_the_kb.run(ActionAskFeedback())).slots()["feedback_topic"] == "knowledge_question"


async def test_never_inside_another_flow_after_a_hand_over_or_for_an_unlisted_topic(conversation) -> None:
    in_a_flow = conversation()
    await in_a_flow.start("refund_form", "верните деньги", "refund_request")
    knowledge_turn(in_a_flow)
    assert (await in_a_flow.run(ActionAskFeedback())).responses == []

    handed = conversation()
    knowledge_turn(handed)
    handed._say_bot([{"custom": HandoverMarker("T-1", "repeated_misses").to_message()}])
    assert (await handed.run(ActionAskFeedback())).responses == []

    b2b = conversation()
    b2b.user("нужны закрывающие документы", intent="b2b_documents")
    assert (await b2b.run(ActionAskFeedback())).responses == []


async def test_a_pending_question_is_cleared_when_not_asked_again(conversation) -> None:
    conv = conversation()
    knowledge_turn(conv)
    await conv.run(ActionAskFeedback())
    knowledge_turn(conv, "utter_kb_clarify")
    assert (await conv.run(ActionAskFeedback())).slots() == {"feedback_pending": None}


@pytest.mark.parametrize("intent, resolved, response", [
    ("feedback_resolved", "yes", "utter_ask_rating"),
    ("affirm", "yes", "utter_ask_rating"),
    ("feedback_unresolved", "no", "utter_feedback_unresolved"),
    ("deny", "no", "utter_feedback_unresolved"),
])
async def test_the_answer_is_recorded(conversation, intent, resolved, response) -> None:
    conv = conversation()
    knowledge_turn(conv)
    await conv.run(ActionAskFeedback())
    conv.user("да" if resolved == "yes" else "нет", intent=intent)
    turn = await conv.run(ActionRecordFeedback())
    assert turn.slots() == {"feedback_resolved": resolved, "feedback_pending": None}
    assert turn.responses == [response]


async def test_without_ratings_a_yes_is_thanked(conversation, monkeypatch) -> None:
    monkeypatch.setattr("actions.feedback_actions.feedback_settings",
                        lambda: FeedbackSettings(frozenset({"knowledge_question"}), rating=False))
    conv = conversation()
    conv.user("/feedback_resolved", intent="feedback_resolved")
    assert (await conv.run(ActionRecordFeedback())).responses == ["utter_feedback_thanks"]


async def test_a_rating_is_recorded_and_a_bad_one_ignored(conversation) -> None:
    conv = conversation()
    conv.user('/feedback_rating{"rating": "4"}', intent="feedback_rating", entities=[{"entity": "rating", "value": "4"}])
    turn = await conv.run(ActionRecordFeedback())
    assert turn.slots() == {"feedback_rating": 4.0, "feedback_pending": None} and turn.responses == ["utter_rating_thanks"]
    conv.user('/feedback_rating{"rating": "9"}', intent="feedback_rating", entities=[{"entity": "rating", "value": "9"}])
    assert (await conv.run(ActionRecordFeedback())).slots() == {}


async def test_a_flow_that_starts_ends_a_pending_question(backoffice, conversation) -> None:
    conv = conversation()
    knowledge_turn(conv)
    await conv.run(ActionAskFeedback())
    assert conv.slots["feedback_pending"] is True
    started = await conv.start("refund_form", "верните деньги за заказ 40817263", "refund_request")
    assert started.slots().get("feedback_pending", "kept") is None


def test_the_settings_file_is_checked(tmp_path) -> None:
    path = tmp_path / "feedback.yml"
    path.write_text("ask_after: [refund_request]\nratings: true\n", encoding="utf-8")
    with pytest.raises(ValueError, match="ratings"):
        FeedbackSettings.load(path)
    assert FeedbackSettings.load(tmp_path / "missing.yml") == FeedbackSettings(frozenset(), False)
    project = FeedbackSettings.load()
    assert "refund_request" in project.ask_after and "b2b_documents" not in project.ask_after
