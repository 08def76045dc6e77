"""Hand-made event streams, shaped as the masked event broker stores them."""
from __future__ import annotations

from typing import Any, Dict, List, Optional


class Stream:
    def __init__(self, sender: str = "c1", start: float = 1_796_000_000.0) -> None:
        self.sender, self.now, self.events = sender, start, []  # type: ignore[var-annotated]
        self.session()

    def _add(self, event: Dict[str, Any], seconds: float = 1.0) -> "Stream":
        self.now += seconds
        self.events.append({"sender_id": self.sender, "timestamp": self.now, **event})
        return self

    def session(self) -> "Stream":
        self._add({"event": "action", "name": "action_session_start"}, 0.1)
        self._add({"event": "session_started"}, 0.1)
        return self._add({"event": "action", "name": "action_listen"}, 0.1)

    def user(self, text: str, intent: str, after: float = 5.0) -> "Stream":
        return self._add({"event": "user", "text": text, "parse_data": {"intent": {"name": intent, "confidence": 0.9},
                                                                          "entities": []}}, after)

    def action(self, name: str) -> "Stream":
        return self._add({"event": "action", "name": name}, 0.05)

    def bot(self, response: Optional[str] = None, text: str = "…", custom: Optional[Dict[str, Any]] = None) -> "Stream":
        event: Dict[str, Any] = {"event": "bot", "text": text, "metadata": {"utter_action": response} if response else {},
                                 "data": {"custom": custom} if custom else {}}
        return self._add(event, 0.2)

    def slot(self, name: str, value: Any) -> "Stream":
        return self._add({"event": "slot", "name": name, "value": value}, 0.01)

    def form(self, name: Optional[str]) -> "Stream":
        return self._add({"event": "active_loop", "name": name}, 0.01)

    def handover(self, reason: str) -> "Stream":
        self.action("action_request_human")
        self.bot("utter_handoff_online")
        return self.bot(custom={"handoff": {"ticket_id": "1", "reason": reason, "summary": {}, "transcript": []}})

    def kb(self, response: str = "utter_kb_answer") -> "Stream":
        return self.action("action_answer_question").bot(response)

    def ask_feedback(self) -> "Stream":
        return self.action("action_ask_feedback").bot("utter_ask_resolved").slot("feedback_pending", True)

    def events_list(self) -> List[Dict[str, Any]]:
        return list(self.events)
