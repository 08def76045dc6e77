"""Reading what analytics counts: the event stream (Rasa's SQL event broker table ``events``,
masked — engine.event_broker) and the hand-over core's facts (copilot hand-overs the gateway made
before the dialogue saw the message, the operators' time). Read-only; nothing here writes."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Tuple

import sqlalchemy as sa

from analytics.outcomes import Conversation, sessions

#: the reason the gateway gives a copilot hand-over («copilot topic <intent>»)
COPILOT_REASON_PREFIX = "copilot topic "


@dataclass(frozen=True)
class HandoverFact:
    conversation_id: str
    at: float  # epoch seconds
    reason: Optional[str]


@dataclass(frozen=True)
class OperatorTime:
    conversation_id: str
    taken_at: float
    released_at: float  # returned to the bot or closed (or now, while still with the operator)

    @property
    def minutes(self) -> float:
        return max(0.0, self.released_at - self.taken_at) / 60


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def read_events(events_url: str) -> Dict[str, List[Dict[str, Any]]]:
    """Every sender's events, in the order they were stored (empty when there is no table yet)."""
    engine = sa.create_engine(events_url)
    try:
        if not sa.inspect(engine).has_table("events"):
            return {}
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT sender_id, data FROM events ORDER BY id")).fetchall()
    finally:
        engine.dispose()
    found: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
    for sender_id, data in rows:
        try:
            event = json.loads(data)
        except (TypeError, ValueError):
            continue  # a row another writer broke: skip it, count the rest
        if isinstance(event, dict):
            found[str(sender_id or event.get("sender_id") or "")].append(event)
    return dict(found)


def read_handoff(handoff_url: str, now: datetime) -> Tuple[List[HandoverFact], List[OperatorTime]]:
    """Hand-overs (to ``waiting``) and the spans an operator owned a conversation."""
    engine = sa.create_engine(handoff_url)
    try:
        if not sa.inspect(engine).has_table("state_changes"):
            return [], []
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT conversation_id, from_state, to_state, reason, at FROM state_changes ORDER BY id"
            )).fetchall()
    finally:
        engine.dispose()
    handovers: List[HandoverFact] = []
    spans: List[OperatorTime] = []
    taken: Dict[str, float] = {}
    for conversation_id, from_state, to_state, reason, at in rows:
        moment = _epoch(at if isinstance(at, datetime) else datetime.fromisoformat(str(at)))
        if to_state == "waiting":
            handovers.append(HandoverFact(conversation_id, moment, reason))
        if to_state == "operator":
            taken[conversation_id] = moment
        elif from_state == "operator" and conversation_id in taken:
            spans.append(OperatorTime(conversation_id, taken.pop(conversation_id), moment))
    spans += [OperatorTime(cid, at, _epoch(now)) for cid, at in taken.items()]
    return handovers, spans


def conversations(
    events: Mapping[str, List[Dict[str, Any]]], handovers: List[HandoverFact], session_timeout_seconds: float
) -> List[Conversation]:
    """The conversations to classify: each sender's sessions, plus a conversation for each copilot
    hand-over the dialogue never saw (its message went straight to the operators)."""
    found: List[Conversation] = []
    for sender_id, sender_events in events.items():
        found.extend(sessions(sender_id, sender_events))
    by_sender: Dict[str, List[int]] = defaultdict(list)
    for index, conversation in enumerate(found):
        by_sender[conversation.sender_id].append(index)
    for fact in handovers:
        if not (fact.reason or "").startswith(COPILOT_REASON_PREFIX):
            continue  # the dialogue's own hand-overs are in the stream (the typed marker)
        topic = (fact.reason or "")[len(COPILOT_REASON_PREFIX):] or None
        match = None
        for index in by_sender.get(fact.conversation_id, ()):
            stamps = [float(e["timestamp"]) for e in found[index].events if e.get("timestamp") is not None]
            if stamps and min(stamps) - 1 <= fact.at <= max(stamps) + session_timeout_seconds:
                match = index
        if match is None:
            found.append(Conversation(fact.conversation_id, (), fact.at, topic))
        else:
            old = found[match]
            found[match] = Conversation(old.sender_id, old.events, fact.at, topic)
    return found
