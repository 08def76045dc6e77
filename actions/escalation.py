"""Handing a conversation to a human: the rules of ``escalation.yml`` and the hand-over itself.

A hand-over creates a CRM ticket (subject, short summary, transcript, priority, contact, the
conversation id) through the back office, tells the customer when a human will answer (the
ticket's ``first_response_by``, i.e. the CRM's own promise for support hours 9:00–21:00 MSK), ends
whatever flow was running and sends the typed hand-over marker (``handoff.marker``): the hand-over
gateway in the Rasa server then owns the conversation — operators' queue, the bot silent until a
human gives it back. If the ticket cannot be created, the customer is told so and the bot stays
on — a conversation waiting for a human nobody knows about would be worse than no hand-over.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from ruamel.yaml import YAML

from actions.backoffice_client import BackofficeError, Ticket, idempotency_key, mask_code
from actions.common import backoffice, conversation_turns, end_flow_events, latest_intent, request_id
from engine.settings import PROJECT_ROOT
from handoff.marker import HandoverMarker

logger = logging.getLogger(__name__)

MOSCOW = timezone(timedelta(hours=3))  # no DST since 2014
TRANSCRIPT_TURNS = 60
SUMMARY_LAST_MESSAGES = 3

INSISTED_ON_HUMAN = "insisted_on_human"
REPEATED_MISSES = "repeated_misses"
HUMAN_DECISION = "human_decision"
IRRITATION = "irritation"
API_FAILURE = "api_failure"
REASONS = (INSISTED_ON_HUMAN, REPEATED_MISSES, HUMAN_DECISION, IRRITATION, API_FAILURE)
PRIORITIES = ("low", "normal", "high")


@dataclass(frozen=True)
class TicketRule:
    subject: str
    category: str
    priority: str = "normal"
    #: human_decision: a subject per reported reason (back-office refusal codes and the like)
    subjects: Mapping[str, str] = field(default_factory=dict)

    def subject_for(self, detail: Optional[str]) -> str:
        return self.subjects.get(detail or "", self.subject)


@dataclass(frozen=True)
class EscalationRules:
    tickets: Mapping[str, TicketRule]
    clarify_first: bool = True
    misses_in_a_row: int = 2
    irritation_intents: Tuple[str, ...] = ("complaint",)
    irritation_keywords: Tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Optional[Path] = None) -> "EscalationRules":
        path = path or PROJECT_ROOT / "escalation.yml"
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
        rules = data.get("rules") or {}
        missing = [reason for reason in REASONS if reason not in rules]
        if missing:
            raise ValueError(f"{path}: rules {', '.join(missing)} are missing")
        tickets: Dict[str, TicketRule] = {}
        for reason in REASONS:
            rule = rules[reason] or {}
            priority = str(rule.get("priority", "normal"))
            if priority not in PRIORITIES:
                raise ValueError(f"{path}: {reason}.priority must be one of {PRIORITIES}, got {priority!r}")
            subjects = {str(k): str(v) for k, v in (rule.get("subjects") or {}).items()}
            subject = str(rule.get("subject") or next(iter(subjects.values()), reason))
            tickets[reason] = TicketRule(subject, str(rule.get("category", reason)), priority, subjects)
        misses = int(rules[REPEATED_MISSES].get("misses_in_a_row", 2))
        if misses < 1:
            raise ValueError(f"{path}: repeated_misses.misses_in_a_row must be >= 1")
        irritation = rules[IRRITATION]
        return cls(
            tickets=tickets,
            clarify_first=bool(rules[INSISTED_ON_HUMAN].get("clarify_first", True)),
            misses_in_a_row=misses,
            irritation_intents=tuple(irritation.get("intents") or ()),
            irritation_keywords=tuple(str(k).lower() for k in irritation.get("keywords") or ()),
        )

    def is_irritated(self, intent: Optional[str], text: str) -> bool:
        lowered = (text or "").lower()
        return intent in self.irritation_intents or any(word in lowered for word in self.irritation_keywords)


@lru_cache(maxsize=1)
def escalation_rules() -> EscalationRules:
    return EscalationRules.load()


# --- the hand-over ----------------------------------------------------------------------------


def summary_of(tracker: Tracker, reason: str, detail: Optional[str]) -> str:
    """A few lines a human reads first: why, what the customer wanted, the flow's data, the last words."""
    lines = [f"Причина передачи: {reason}" + (f" ({detail})" if detail else "")]
    intent = latest_intent(tracker)
    if intent:
        lines.append(f"Последнее намерение: {intent}")
    known = []
    for slot, label in (("order_id", "заказ"), ("inn", "ИНН"), ("brand", "бренд"), ("email", "e-mail"), ("phone", "телефон")):
        value = tracker.get_slot(slot)
        if value:
            known.append(f"{label} {value}")
    code = tracker.get_slot("certificate_code")
    if code:
        known.append(f"сертификат {mask_code(code)}")
    if known:
        lines.append("Данные: " + ", ".join(known))
    last = [turn["text"] for turn in conversation_turns(tracker) if turn["sender"] == "customer"][-SUMMARY_LAST_MESSAGES:]
    if last:
        lines.append("Последние сообщения клиента: " + " / ".join(last))
    return "\n".join(lines)


def handoff_marker(tracker: Tracker, ticket_id: str, reason: str, detail: Optional[str]) -> HandoverMarker:
    """What the hand-over gateway puts into the operators' queue: the ticket, the reason, a
    summary (intent, the flow's data with the certificate code masked and no PIN, the customer's
    last words) and the transcript."""
    slots: Dict[str, Any] = {}
    for slot in ("order_id", "inn", "brand", "email", "phone"):
        value = tracker.get_slot(slot)
        if value:
            slots[slot] = value
    code = tracker.get_slot("certificate_code")
    if code:
        slots["certificate_code"] = mask_code(code)
    turns = conversation_turns(tracker, TRANSCRIPT_TURNS)
    last = [turn["text"] for turn in turns if turn["sender"] == "customer"][-SUMMARY_LAST_MESSAGES:]
    summary: Dict[str, Any] = {
        "intent": latest_intent(tracker),
        "slots": slots,
        "last_messages": last,
        "reason": reason,
    }
    if detail:
        summary["detail"] = detail
    return HandoverMarker(
        ticket_id=ticket_id,
        reason=reason,
        summary=summary,
        transcript=tuple({"sender": t["sender"], "text": t["text"]} for t in turns),
    )


def _contact(tracker: Tracker) -> Optional[str]:
    return tracker.get_slot("email") or tracker.get_slot("phone")


def _when_words(ticket: Ticket) -> Dict[str, str]:
    due = ticket.first_response_by.astimezone(MOSCOW)
    today = datetime.now(MOSCOW).date()
    return {
        "first_response_time": due.strftime("%H:%M"),
        "first_response_day": "сегодня" if due.date() == today else "завтра",
    }


async def hand_over(
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    reason: str,
    *,
    detail: Optional[str] = None,
    rules: Optional[EscalationRules] = None,
) -> List[EventType]:
    """Ticket + the customer told when a human answers + the flow ended + the marker that hands
    the conversation to the operators (the gateway keeps the bot silent from then on)."""
    rules = rules or escalation_rules()
    rule = rules.tickets[reason]
    key = idempotency_key("handoff", tracker.sender_id, tracker.get_slot("order_id"), reason, request_id(tracker))
    try:
        async with backoffice() as api:
            ticket = await api.create_ticket(
                subject=rule.subject_for(detail),
                summary=summary_of(tracker, reason, detail),
                transcript=conversation_turns(tracker, TRANSCRIPT_TURNS) or "",
                priority=rule.priority,
                contact=_contact(tracker),
                conversation_id=tracker.sender_id,
                category=rule.category,
                order_id=tracker.get_slot("order_id"),
                idempotency_key=key,
            )
    except BackofficeError as error:
        logger.error("hand-over (%s) failed: no ticket (%s)", reason, error.code)
        dispatcher.utter_message(response="utter_handoff_failed")
        return end_flow_events()
    logger.info("hand-over (%s): ticket %s", reason, ticket.id)
    response = "utter_handoff_online" if ticket.staff_online else "utter_handoff_offline"
    dispatcher.utter_message(response=response, ticket_id=str(ticket.id), **_when_words(ticket))
    # last: the gateway (handoff/gateway.py) takes it out of the messages and queues the conversation
    dispatcher.utter_message(json_message=handoff_marker(tracker, str(ticket.id), reason, detail).to_message())
    return [
        *end_flow_events(),
        SlotSet("human_requested", None),
        SlotSet("miss_streak", None),
        SlotSet("handoff_ticket_id", str(ticket.id)),
    ]


#: the back office refuses checks of a certificate / order after too many failures
TOO_MANY_ATTEMPTS = "too_many_attempts"


def say_checks_locked(dispatcher: CollectingDispatcher, retry_after_seconds: Optional[int]) -> None:
    """Tell the customer the checks are locked and for how long (at least a minute)."""
    minutes = max(1, -(-int(retry_after_seconds or 0) // 60)) if retry_after_seconds else None
    dispatcher.utter_message(response="utter_too_many_attempts", minutes=str(minutes or 15))


async def checks_locked(dispatcher: CollectingDispatcher, tracker: Tracker) -> List[EventType]:
    """The back office locked the PIN or buyer checks (someone tried too many values): a human
    helps — the ticket says why; nothing else can go on meanwhile."""
    return await hand_over(dispatcher, tracker, HUMAN_DECISION, detail=TOO_MANY_ATTEMPTS)


async def backoffice_failed(dispatcher: CollectingDispatcher, tracker: Tracker, detail: str) -> List[EventType]:
    """The back office did not do what was asked (escalation rule 5): say so, hand over."""
    dispatcher.utter_message(response="utter_backoffice_unavailable")
    return await hand_over(dispatcher, tracker, API_FAILURE, detail=detail)


# --- misses in a row --------------------------------------------------------------------------


def previous_miss_streak(tracker: Tracker) -> int:
    """The miss streak the previous customer turn ended with (0 if that turn was understood).

    Each miss records ``miss_streak``; a turn that was understood records nothing, so a streak
    only counts when it was set after the customer's previous message."""
    seen_latest_user = False
    for event in reversed(tracker.events):
        kind = event.get("event")
        if kind == "user":
            if seen_latest_user:
                return 0
            seen_latest_user = True
        elif seen_latest_user and kind == "slot" and event.get("name") == "miss_streak":
            return int(event.get("value") or 0)
    return 0


async def register_miss(
    dispatcher: CollectingDispatcher, tracker: Tracker, clarify: Optional[Dict[str, Any]] = None
) -> List[EventType]:
    """One more turn not understood: clarify (``clarify`` = the utter_message kwargs), or hand
    over when this is the ``misses_in_a_row``-th miss in a row."""
    rules = escalation_rules()
    streak = previous_miss_streak(tracker) + 1
    if streak >= rules.misses_in_a_row:
        dispatcher.utter_message(response="utter_repeated_misses")
        return await hand_over(dispatcher, tracker, REPEATED_MISSES, rules=rules)
    dispatcher.utter_message(**(clarify or {"response": "utter_default"}))
    return [SlotSet("miss_streak", float(streak))]
