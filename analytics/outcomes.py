"""What happened in each conversation, read from its events — the one place outcomes are decided.

A *conversation* is one Rasa session of one sender (a new session starts when the customer writes
after the session expired). Its **outcome**, in this order of precedence:

``handed_over``       a human took over: the typed hand-over marker an action sent (its ``rule`` is
                      the escalation rule: ``insisted_on_human``, ``repeated_misses``,
                      ``human_decision``, ``irritation``, ``api_failure``), or a copilot topic the
                      gateway sent to the operators (``rule`` ``copilot``);
``spam``              every message was spam (the bot stays silent);
``wrong_address``     the customer came to the wrong company and was redirected;
``resolved_confirmed`` the customer said the question is resolved (the end-of-dialogue question,
                      by button or a typed yes);
``unresolved``        the customer said it is not resolved, and no human took over;
``in_progress``       not finished: the last event is younger than the session timeout and the
                      customer has not answered the end-of-dialogue question;
``resolved_assumed``  a flow completed or the knowledge base answered, and the customer then said
                      nothing more within the session timeout — never counted as confirmed;
``abandoned``         finished without any of the above (``mid_flow`` when a form was still open).

Pure functions over event dicts (as the event broker stores them) — no database, no Rasa.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

HANDED_OVER = "handed_over"
SPAM = "spam"
WRONG_ADDRESS = "wrong_address"
RESOLVED_CONFIRMED = "resolved_confirmed"
RESOLVED_ASSUMED = "resolved_assumed"
UNRESOLVED = "unresolved"
ABANDONED = "abandoned"
IN_PROGRESS = "in_progress"
OUTCOMES = (RESOLVED_CONFIRMED, RESOLVED_ASSUMED, HANDED_OVER, UNRESOLVED, ABANDONED, SPAM, WRONG_ADDRESS,
            IN_PROGRESS)
COPILOT_RULE = "copilot"

#: intents that do not say what a conversation is about
SMALL_TALK = frozenset({
    "greet", "goodbye", "thank", "affirm", "deny", "inform", "bot_challenge", "cancel", "help_unclear",
    "feedback_resolved", "feedback_unresolved", "feedback_rating",
})
#: intents answered from the knowledge base: one topic, «knowledge_question»
KNOWLEDGE_INTENTS = frozenset({"knowledge_question", "nlu_fallback", "out_of_scope"})
KNOWLEDGE_TOPIC = "knowledge_question"
#: bot responses of the knowledge-base action
KB_ANSWERED, KB_CLARIFIED, KB_NOT_ANSWERED = "utter_kb_answer", "utter_kb_clarify", ("utter_kb_no_answer", "utter_default")
#: the end-of-dialogue question and the customer's answers to it
FEEDBACK_QUESTION = "utter_ask_resolved"
RESOLVED_INTENTS = frozenset({"feedback_resolved"})
UNRESOLVED_INTENTS = frozenset({"feedback_unresolved"})
#: a flow completed: its submit action ran (a refusal explained counts — the question was answered)
SUBMIT_PREFIX = "action_submit_"


@dataclass(frozen=True)
class Conversation:
    """One session of one sender: its events in order (event-broker dicts with ``timestamp``)."""

    sender_id: str
    events: Sequence[Mapping[str, Any]]
    #: a copilot hand-over the gateway made (the message never reached the dialogue): its time
    copilot_handover_at: Optional[float] = None
    copilot_topic: Optional[str] = None


@dataclass(frozen=True)
class Outcome:
    sender_id: str
    outcome: str
    topic: str
    started_at: datetime
    ended_at: datetime
    rule: Optional[str] = None  # handed_over: the escalation rule
    mid_flow: bool = False  # abandoned with a form open
    customer_messages: int = 0
    bot_messages: int = 0
    turns_to_resolution: Optional[int] = None  # customer messages up to the resolving answer
    first_reply_seconds: Optional[float] = None
    fallbacks: int = 0  # customer messages the NLU did not understand
    kb_answered: int = 0
    kb_clarified: int = 0
    kb_not_answered: int = 0
    feedback: Optional[str] = None  # "yes" | "no"
    rating: Optional[int] = None  # 1..5

    @property
    def finished(self) -> bool:
        return self.outcome != IN_PROGRESS

    @property
    def needs_help(self) -> bool:
        """Counted in the resolution rate's denominator: finished, not spam, not another company's."""
        return self.finished and self.outcome not in (SPAM, WRONG_ADDRESS)

    @property
    def resolved(self) -> bool:
        return self.outcome in (RESOLVED_CONFIRMED, RESOLVED_ASSUMED)

    def to_dict(self) -> Dict[str, Any]:
        data = {key: value for key, value in vars(self).items()}
        data["started_at"], data["ended_at"] = _iso(self.started_at), _iso(self.ended_at)
        return data


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _when(timestamp: Any) -> datetime:
    return datetime.fromtimestamp(float(timestamp or 0), tz=timezone.utc)


def _intent(event: Mapping[str, Any]) -> Optional[str]:
    parse = event.get("parse_data") or {}
    intent = parse.get("intent") or {}
    return intent.get("name") if isinstance(intent, Mapping) else None


def _response(event: Mapping[str, Any]) -> Optional[str]:
    metadata = event.get("metadata") or {}
    return metadata.get("utter_action") if isinstance(metadata, Mapping) else None


def _handover_reason(event: Mapping[str, Any]) -> Optional[str]:
    data = event.get("data") or {}
    custom = data.get("custom") if isinstance(data, Mapping) else None
    marker = custom.get("handoff") if isinstance(custom, Mapping) else None
    if isinstance(marker, Mapping):
        return str(marker.get("reason") or "unknown")
    return None


def topic_of(intents: Iterable[Optional[str]]) -> Optional[str]:
    """The first intent that says what the conversation is about (knowledge intents as one)."""
    for intent in intents:
        if intent and intent not in SMALL_TALK:
            return KNOWLEDGE_TOPIC if intent in KNOWLEDGE_INTENTS else intent
    return None


def classify(conversation: Conversation, now: datetime, session_timeout_seconds: float) -> Optional[Outcome]:
    """The conversation's outcome (None for one without a single customer message)."""
    events = [e for e in conversation.events if isinstance(e, Mapping)]
    users = [e for e in events if e.get("event") == "user"]
    if not users and conversation.copilot_handover_at is None:
        return None
    stamps = [float(e["timestamp"]) for e in events if e.get("timestamp") is not None]
    if conversation.copilot_handover_at is not None:
        stamps.append(conversation.copilot_handover_at)
    started, ended = _when(min(stamps)), _when(max(stamps))
    intents = [_intent(e) for e in users]
    topic = topic_of(intents) or conversation.copilot_topic or (intents[0] if intents and intents[0] else "unknown")

    rule: Optional[str] = None
    feedback: Optional[str] = None
    rating: Optional[int] = None
    resolution_turn: Optional[int] = None
    first_reply: Optional[float] = None
    active_form: Optional[str] = None
    asked_feedback = False
    customer_messages = bot_messages = fallbacks = 0
    kb = {"answered": 0, "clarified": 0, "not_answered": 0}
    first_user_at: Optional[float] = None
    in_kb_action = False
    for event in events:
        kind = event.get("event")
        if kind == "user":
            customer_messages += 1
            intent = _intent(event)
            if first_user_at is None:
                first_user_at = float(event.get("timestamp") or 0)
            if intent == "nlu_fallback":
                fallbacks += 1
            if intent in RESOLVED_INTENTS or (asked_feedback and intent == "affirm"):
                feedback = "yes"
            elif intent in UNRESOLVED_INTENTS or (asked_feedback and intent == "deny"):
                feedback = "no"
            asked_feedback = False
        elif kind == "bot":
            bot_messages += 1
            if first_reply is None and first_user_at is not None:
                first_reply = max(0.0, float(event.get("timestamp") or 0) - first_user_at)
            reason = _handover_reason(event)
            if reason and rule is None:
                rule = reason
            response = _response(event)
            if response == FEEDBACK_QUESTION:
                asked_feedback = True
            elif in_kb_action and response == KB_ANSWERED:
                kb["answered"] += 1
                resolution_turn = resolution_turn or customer_messages
            elif in_kb_action and response == KB_CLARIFIED:
                kb["clarified"] += 1
            elif in_kb_action and response in KB_NOT_ANSWERED:
                kb["not_answered"] += 1
        elif kind == "action":
            name = str(event.get("name") or "")
            in_kb_action = name == "action_answer_question"
            if name.startswith(SUBMIT_PREFIX):
                resolution_turn = resolution_turn or customer_messages
        elif kind == "active_loop":
            active_form = event.get("name")
        elif kind == "slot" and event.get("name") == "feedback_rating" and event.get("value") is not None:
            try:
                rating = max(1, min(5, int(float(event["value"]))))
            except (TypeError, ValueError):
                pass
    if conversation.copilot_handover_at is not None and rule is None:
        rule = COPILOT_RULE

    spam_only = bool(intents) and all(intent in ("spam",) or intent in SMALL_TALK for intent in intents) and "spam" in intents
    idle = (now - ended).total_seconds()
    if rule is not None:
        outcome = HANDED_OVER
    elif spam_only:
        outcome = SPAM
    elif topic == WRONG_ADDRESS:
        outcome = WRONG_ADDRESS
    elif feedback == "yes":
        outcome = RESOLVED_CONFIRMED
    elif feedback == "no":
        outcome = UNRESOLVED
    elif idle < session_timeout_seconds:
        outcome = IN_PROGRESS
    elif resolution_turn is not None:
        outcome = RESOLVED_ASSUMED
    else:
        outcome = ABANDONED
    return Outcome(
        sender_id=conversation.sender_id,
        outcome=outcome,
        topic=topic,
        started_at=started,
        ended_at=ended,
        rule=rule,
        mid_flow=outcome == ABANDONED and active_form is not None,
        customer_messages=customer_messages,
        bot_messages=bot_messages,
        turns_to_resolution=resolution_turn if outcome in (RESOLVED_CONFIRMED, RESOLVED_ASSUMED) else None,
        first_reply_seconds=round(first_reply, 3) if first_reply is not None else None,
        fallbacks=fallbacks,
        kb_answered=kb["answered"],
        kb_clarified=kb["clarified"],
        kb_not_answered=kb["not_answered"],
        feedback=feedback,
        rating=rating,
    )


def sessions(sender_id: str, events: Sequence[Mapping[str, Any]]) -> List[Conversation]:
    """A sender's events split into Rasa sessions (at each ``action_session_start`` after the
    customer has written)."""
    found: List[List[Mapping[str, Any]]] = [[]]
    for event in events:
        starts = event.get("event") == "action" and event.get("name") == "action_session_start"
        if starts and any(e.get("event") == "user" for e in found[-1]):
            found.append([])
        found[-1].append(event)
    return [Conversation(sender_id, part) for part in found if part]


def median(values: Sequence[float]) -> Optional[float]:
    return round(statistics.median(values), 3) if values else None

