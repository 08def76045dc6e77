"""The end-of-dialogue question: «Вопрос решён?» after a flow or a knowledge answer completes
(``feedback.yml`` says for which topics), and the customer's answer — by button or typed — recorded
in slots, so that the event stream tells analytics the conversation was *confirmed* resolved.

Rules (scenarios/rules.yml, scenarios/flows.yml) run ``action_ask_feedback`` after every submit
action and every knowledge answer; it decides whether to ask. ``action_record_feedback`` takes the
answer (``feedback_resolved`` / ``feedback_unresolved`` / ``feedback_rating`` buttons, or a typed
yes / no right after the question).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from ruamel.yaml import YAML

from actions.common import active_form, latest_intent
from analytics.outcomes import KNOWLEDGE_INTENTS, topic_of
from engine.settings import PROJECT_ROOT

YES, NO = "yes", "no"


@dataclass(frozen=True)
class FeedbackSettings:
    ask_after: FrozenSet[str]
    rating: bool = False

    @classmethod
    def load(cls, path: Optional[Path] = None) -> "FeedbackSettings":
        path = path or PROJECT_ROOT / "feedback.yml"
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) if path.exists() else {}
        data = data or {}
        unknown = sorted(set(data) - {"ask_after", "rating"})
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)} (known: ask_after, rating)")
        topics = data.get("ask_after") or []
        if not isinstance(topics, list) or not all(isinstance(topic, str) for topic in topics):
            raise ValueError(f"{path}: ask_after must be a list of intents")
        return cls(frozenset(topics), bool(data.get("rating", False)))


@lru_cache(maxsize=1)
def feedback_settings() -> FeedbackSettings:
    return FeedbackSettings.load()


def _this_turn(tracker: Tracker) -> List[Dict[str, Any]]:
    """The events since the customer's latest message."""
    events = list(tracker.events)
    for index in range(len(events) - 1, -1, -1):
        if events[index].get("event") == "user":
            return events[index + 1:]
    return events


def current_topic(tracker: Tracker) -> Optional[str]:
    """The latest intent of this session that says what the customer wants (the way analytics
    names topics: knowledge intents as one)."""
    intents = []
    for event in reversed(list(tracker.events)):
        if event.get("event") == "action" and event.get("name") == "action_session_start":
            break
        if event.get("event") == "user":
            intents.append(((event.get("parse_data") or {}).get("intent") or {}).get("name"))
    return topic_of(intents)


def handed_over_this_turn(turn: List[Dict[str, Any]]) -> bool:
    for event in turn:
        data = event.get("data") or {}
        custom = data.get("custom") if isinstance(data, dict) else None
        if event.get("event") == "bot" and isinstance(custom, dict) and "handoff" in custom:
            return True
    return False


def _said(turn: List[Dict[str, Any]], response: str) -> bool:
    return any(e.get("event") == "bot" and (e.get("metadata") or {}).get("utter_action") == response for e in turn)


class ActionAskFeedback(Action):
    """«Вопрос решён?» — when a flow or a knowledge answer has just completed (see the module doc)."""

    def name(self) -> Text:
        return "action_ask_feedback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        settings = feedback_settings()
        turn = _this_turn(tracker)
        topic = current_topic(tracker)
        knowledge_turn = latest_intent(tracker) in KNOWLEDGE_INTENTS or any(
            e.get("event") == "action" and e.get("name") == "action_answer_question" for e in turn
        )
        ask = (
            topic in settings.ask_after
            and not active_form(tracker)  # a question inside a flow: the flow goes on
            and not handed_over_this_turn(turn)
            and (not knowledge_turn or _said(turn, "utter_kb_answer"))  # an answer, not a clarification
        )
        if not ask:
            return [SlotSet("feedback_pending", None)] if tracker.get_slot("feedback_pending") else []
        dispatcher.utter_message(response="utter_ask_resolved")
        return [SlotSet("feedback_pending", True), SlotSet("feedback_topic", topic)]


class ActionRecordFeedback(Action):
    """The customer's answer: yes / no (a button or typed right after the question), a rating."""

    def name(self) -> Text:
        return "action_record_feedback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        intent = latest_intent(tracker)
        if intent == "feedback_rating":
            rating = _rating(tracker)
            if rating is None:
                return []
            dispatcher.utter_message(response="utter_rating_thanks")
            return [SlotSet("feedback_rating", float(rating)), SlotSet("feedback_pending", None)]
        resolved = intent in ("feedback_resolved", "affirm")
        events: List[EventType] = [SlotSet("feedback_resolved", YES if resolved else NO), SlotSet("feedback_pending", None)]
        if not resolved:
            dispatcher.utter_message(response="utter_feedback_unresolved")
        elif feedback_settings().rating:
            dispatcher.utter_message(response="utter_ask_rating")
        else:
            dispatcher.utter_message(response="utter_feedback_thanks")
        return events


def _rating(tracker: Tracker) -> Optional[int]:
    for entity in (tracker.latest_message or {}).get("entities") or ():
        if entity.get("entity") == "rating":
            try:
                value = int(float(entity.get("value")))
            except (TypeError, ValueError):
                return None
            return value if 1 <= value <= 5 else None
    return None
