"""The hand-over marker: how an action tells the hand-over gateway "a human takes over now".

An action (``actions.escalation.hand_over``) creates the CRM ticket, tells the customer, and sends
this marker as its last message (``dispatcher.utter_message(json_message=marker.to_message())``).
The gateway (``handoff.gateway``) takes it out of the bot's messages, moves the conversation to the
operators' queue with the summary and transcript, and passes only :meth:`HandoverMarker.public`
(ticket and reason, nothing personal) on to the customer's channel.

Pure data: no Rasa, no SQL, so the action server and the Rasa server share it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

KEY = "handoff"
VERSION = 1


class MalformedMarker(ValueError):
    """A ``{"handoff": ...}`` payload that is not a marker this version understands."""


@dataclass(frozen=True)
class HandoverMarker:
    ticket_id: Optional[str]
    reason: str
    #: what the operator reads first: {"intent", "slots", "last_messages", "reason", ...}
    summary: Mapping[str, Any] = field(default_factory=dict)
    #: the conversation so far: ({"sender": "customer"|"bot", "text": ...}, ...)
    transcript: Tuple[Mapping[str, str], ...] = ()

    def to_message(self) -> Dict[str, Any]:
        """The custom payload the action sends (``json_message``)."""
        return {
            KEY: {
                "version": VERSION,
                "ticket_id": self.ticket_id,
                "reason": self.reason,
                "summary": dict(self.summary),
                "transcript": [dict(turn) for turn in self.transcript],
            }
        }

    def public(self) -> Dict[str, Any]:
        """What the customer's channel receives (REST clients see it as a ``custom`` item)."""
        return {KEY: {"ticket_id": self.ticket_id, "reason": self.reason, "state": "waiting"}}

    @classmethod
    def from_bot_message(cls, message: Mapping[str, Any]) -> Optional["HandoverMarker"]:
        """The marker in a bot message as Rasa hands it to an output channel (``custom``), or
        None when the message is not a marker. :class:`MalformedMarker` for a broken one."""
        custom = message.get("custom")
        if not isinstance(custom, Mapping) or KEY not in custom:
            return None
        data = custom[KEY]
        if not isinstance(data, Mapping):
            raise MalformedMarker(f"the {KEY!r} payload must be an object")
        version = data.get("version", VERSION)
        if version != VERSION:
            raise MalformedMarker(f"hand-over marker version {version!r} is not supported (expected {VERSION})")
        reason = data.get("reason")
        if not isinstance(reason, str) or not reason:
            raise MalformedMarker("a hand-over marker needs a reason")
        ticket = data.get("ticket_id")
        summary = data.get("summary") or {}
        transcript = data.get("transcript") or ()
        if not isinstance(summary, Mapping):
            raise MalformedMarker("the marker's summary must be an object")
        if isinstance(transcript, (str, bytes)) or not all(
            isinstance(turn, Mapping) and isinstance(turn.get("text"), str) for turn in transcript
        ):
            raise MalformedMarker("the marker's transcript must be a list of {sender, text}")
        return cls(
            ticket_id=None if ticket is None else str(ticket),
            reason=reason,
            summary=dict(summary),
            transcript=tuple({"sender": str(turn.get("sender")), "text": turn["text"]} for turn in transcript),
        )
