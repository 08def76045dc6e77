"""analytics.outcomes on hand-made event streams: every outcome, its precedence, and the numbers
each conversation contributes (turns, first reply, fallbacks, knowledge base, feedback)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from analytics.outcomes import (
    ABANDONED, HANDED_OVER, IN_PROGRESS, RESOLVED_ASSUMED, RESOLVED_CONFIRMED, SPAM, UNRESOLVED, WRONG_ADDRESS,
    Conversation, classify, sessions, topic_of,
)
from tests.analytics.builder import Stream

TIMEOUT = 30 * 60


def outcome_of(stream: Stream, minutes_later: float = 60, **conversation):
    now = datetime.fromtimestamp(stream.now, tz=timezone.utc) + timedelta(minutes=minutes_later)
    return classify(Conversation(stream.sender, stream.events_list(), **conversation), now, TIMEOUT)


def refund_completed() -> Stream:
    s = Stream().user("хочу вернуть деньги", "refund_request").action("refund_form").form("refund_form")
    s.bot("utter_ask_order_id").user("40817263", "inform").bot("utter_ask_buyer_check")
    s.user("ivan@mail.ru", "inform").bot("utter_ask_refund_confirmed").user("да", "affirm")
    return s.form(None).action("action_submit_refund").bot("utter_refund_done")


def test_a_completed_flow_then_silence_is_assumed_resolved_never_confirmed():
    result = outcome_of(refund_completed())
    assert (result.outcome, result.topic, result.turns_to_resolution) == (RESOLVED_ASSUMED, "refund_request", 4)
    assert result.feedback is None and result.customer_messages == 4 and result.first_reply_seconds == pytest.approx(0.26, abs=0.01)


def test_the_same_conversation_still_inside_the_timeout_is_in_progress():
    result = outcome_of(refund_completed(), minutes_later=5)
    assert result.outcome == IN_PROGRESS and not result.finished and not result.needs_help


def test_a_yes_to_the_question_confirms_it_by_button_or_typed():
    by_button = refund_completed().action("action_ask_feedback").bot("utter_ask_resolved").user("/feedback_resolved", "feedback_resolved")
    assert outcome_of(by_button, minutes_later=1).outcome == RESOLVED_CONFIRMED  # finished at once
    typed = refund_completed().ask_feedback().user("да, спасибо", "affirm")
    assert outcome_of(typed).outcome == RESOLVED_CONFIRMED


def test_a_yes_that_answers_something_else_is_not_a_confirmation():
    s = Stream().user("хочу вернуть деньги", "refund_request").action("refund_form").form("refund_form")
    s.bot("utter_ask_refund_confirmed").user("да", "affirm").form(None).action("action_submit_refund").bot("utter_refund_done")
    assert outcome_of(s).outcome == RESOLVED_ASSUMED


def test_a_no_is_unresolved_and_a_rating_is_kept():
    s = Stream().user("сколько действует сертификат?", "knowledge_question").kb().ask_feedback()
    s.user("/feedback_unresolved", "feedback_unresolved").slot("feedback_resolved", "no")
    result = outcome_of(s)
    assert (result.outcome, result.topic, result.kb_answered) == (UNRESOLVED, "knowledge_question", 1)
    rated = Stream().user("сколько действует сертификат?", "knowledge_question").kb().ask_feedback()
    rated.user("/feedback_resolved", "feedback_resolved").slot("feedback_rating", 4.0)
    assert (outcome_of(rated).outcome, outcome_of(rated).rating) == (RESOLVED_CONFIRMED, 4)


@pytest.mark.parametrize("rule", ["insisted_on_human", "repeated_misses", "human_decision", "irritation", "api_failure"])
def test_a_hand_over_wins_over_everything_with_its_rule(rule):
    s = refund_completed().ask_feedback().user("/feedback_resolved", "feedback_resolved")
    s.user("а ещё позовите оператора", "request_human").handover(rule)
    result = outcome_of(s, minutes_later=1)
    assert (result.outcome, result.rule) == (HANDED_OVER, rule)


def test_a_copilot_hand_over_the_dialogue_never_saw():
    alone = classify(Conversation("c9", (), copilot_handover_at=1_796_000_000.0, copilot_topic="b2b_documents"),
                     datetime.fromtimestamp(1_796_000_100, tz=timezone.utc), TIMEOUT)
    assert (alone.outcome, alone.rule, alone.topic, alone.customer_messages) == (HANDED_OVER, "copilot", "b2b_documents", 0)


def test_spam_wrong_address_and_abandoned():
    assert outcome_of(Stream().user("Купите кроссовки!", "spam").action("action_listen")).outcome == SPAM
    redirected = Stream().user("где мои кроссовки из спортмастера", "wrong_address").bot("utter_wrong_address")
    assert outcome_of(redirected).outcome == WRONG_ADDRESS
    mid_flow = Stream().user("хочу вернуть деньги", "refund_request").action("refund_form").form("refund_form").bot("utter_ask_order_id")
    result = outcome_of(mid_flow)
    assert (result.outcome, result.mid_flow) == (ABANDONED, True)
    small_talk = Stream().user("привет", "greet").bot("utter_greet")
    assert (outcome_of(small_talk).outcome, outcome_of(small_talk).mid_flow, outcome_of(small_talk).topic) == (ABANDONED, False, "greet")


def test_knowledge_counts_fallbacks_and_clarifications():
    s = Stream().user("какая погода", "nlu_fallback").kb("utter_default")
    s.user("что-то про сроки", "knowledge_question").kb("utter_kb_clarify")
    s.user("/knowledge_question", "knowledge_question").kb("utter_kb_answer")
    result = outcome_of(s)
    assert (result.kb_not_answered, result.kb_clarified, result.kb_answered, result.fallbacks) == (1, 1, 1, 1)
    assert (result.outcome, result.topic, result.turns_to_resolution) == (RESOLVED_ASSUMED, "knowledge_question", 3)


def test_sessions_split_at_a_new_session_and_empty_ones_are_skipped():
    s = refund_completed()
    s.session().user("привет снова", "greet").bot("utter_greet")
    parts = sessions("c1", s.events_list())
    assert len(parts) == 2 and parts[1].events[0]["name"] == "action_session_start"
    assert classify(Conversation("c1", Stream().events_list()), datetime.now(timezone.utc), TIMEOUT) is None


def test_topic_is_the_first_intent_that_says_something():
    assert topic_of(["greet", "thank", "check_balance", "refund_request"]) == "check_balance"
    assert topic_of(["greet", "nlu_fallback"]) == "knowledge_question"
    assert topic_of(["greet", "affirm"]) is None
