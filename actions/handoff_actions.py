"""Asking for a human, complaints, and moving between flows (resume / cancel). Turns not understood
go to the knowledge base first (actions/knowledge_actions.py)."""
from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import active_form, end_flow_events
from actions.escalation import INSISTED_ON_HUMAN, IRRITATION, escalation_rules, hand_over


class ActionRequestHuman(Action):
    """Handbook: one short clarifying question first (often the assistant can help at once);
    no arguing when the customer asks again."""

    def name(self) -> Text:
        return "action_request_human"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        rules = escalation_rules()
        if tracker.get_slot("human_requested") or not rules.clarify_first:
            return await hand_over(dispatcher, tracker, INSISTED_ON_HUMAN, rules=rules)
        in_flow = active_form(tracker) is not None
        dispatcher.utter_message(
            response="utter_request_human_clarify_in_flow" if in_flow else "utter_request_human_clarify"
        )
        return [SlotSet("human_requested", True)]


class ActionHandoff(Action):
    """A complaint, irritation or a threat (claim, court, chargeback): high-priority ticket, human."""

    def name(self) -> Text:
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        dispatcher.utter_message(response="utter_complaint")
        return await hand_over(dispatcher, tracker, IRRITATION)


class ActionResumeFlow(Action):
    """After a digression (a question, «ты бот?», «спасибо») inside a form, ask the form's
    question again; outside a form, do nothing."""

    def name(self) -> Text:
        return "action_resume_flow"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        form = active_form(tracker)
        return [FollowupAction(form)] if form else []


class ActionCancelFlow(Action):
    """«Отмена» at any step: the form stops, nothing is done, its answers are forgotten."""

    def name(self) -> Text:
        return "action_cancel_flow"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        if active_form(tracker):
            dispatcher.utter_message(response="utter_flow_cancelled")
        else:
            dispatcher.utter_message(response="utter_cancel")
        return [*end_flow_events(), SlotSet("human_requested", None)]
