"""The two questions the refund and resend forms share: the order number and the buyer check.

The order is looked up as soon as its number arrives (a wrong number is caught at once, and the
summary later needs its amount and payment method); the buyer is verified by the back office
(e-mail of the order, any letter case, or the last 4 digits of its phone). A new order number
in the middle of the flow («нет, заказ другой: …») starts the checks again for that order.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.backoffice_client import BackofficeError, BackofficeRefused, ErrorCode, Order
from actions.common import (
    FlowFormValidation,
    MAX_ATTEMPTS,
    answers_slot,
    as_mapping,
    backoffice,
    digit_runs,
    find_value,
    latest_text,
)
from actions.escalation import (
    HUMAN_DECISION,
    TOO_MANY_ATTEMPTS,
    backoffice_failed,
    checks_locked,
    hand_over,
    say_checks_locked,
)

BACKOFFICE_UNAVAILABLE = "backoffice_unavailable"
VERIFICATION_FAILED = "verification_failed"
#: slots that describe "this order" and must be forgotten when the order changes
ORDER_DEPENDENT_SLOTS = ("buyer_check", "verification_failures", "refund_confirmed", "resend_address")

_LAST4 = re.compile(r"(?<!\d)\d{4}(?!\d)")


def order_summary(order: Order) -> Dict[str, Any]:
    """What later questions and the summary need; addresses come masked from the back office."""
    first = order.certificates[0] if order.certificates else None
    return {
        "order_id": order.id,
        "amount": str(order.amount),
        "payment_method": order.payment_method,
        "is_b2b": order.is_b2b,
        "days": order.days_since_purchase,
        "balance": str(sum((c.balance for c in order.certificates), start=order.amount * 0)),
        "delivery_channel": first.delivery_channel if first else None,
        "delivery_address": first.delivery_address if first else None,
    }


class OrderFormValidation(FlowFormValidation, ABC):
    """Base of the forms that start with an order number and may need the buyer check."""

    #: «заказ 40817263, почта ivan@mail.ru» answers both questions at once (not in the resend
    #: flow, where an e-mail in the first message is where to send)
    buyer_check_from_first_message = True

    @abstractmethod
    def name(self) -> Text:
        """The validation action's name, ``validate_<form>`` (abstract: the action server
        registers only concrete actions)."""

    @staticmethod
    def blocked(tracker: Tracker) -> bool:
        return tracker.get_slot("flow_block") is not None

    # --- order number -------------------------------------------------------------------------

    async def extract_order_id(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        """The NLU fills ``order_id`` from a valid number; here a wrong one («4081726») is caught
        so that the customer hears what is wrong instead of a generic «не поняла»."""
        if not answers_slot(tracker, "order_id", on_activation=True) or "order_id" in tracker.slots_to_validate():
            return {}
        wrong = [run for run in digit_runs(latest_text(tracker)) if 5 <= len(run) <= 14]
        return {"order_id": wrong[0]} if wrong else {}

    async def validate_order_id(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        order_id = find_value(str(slot_value or ""), "order_id")
        if not order_id:
            dispatcher.utter_message(response="utter_order_id_malformed")
            return {"order_id": None}
        known = as_mapping(tracker.get_slot("order_info"))
        if known.get("order_id") == order_id:
            return {"order_id": order_id}
        try:
            async with backoffice() as api:
                order = await api.get_order(order_id)
        except BackofficeRefused as error:
            if error.code == ErrorCode.NOT_FOUND:
                dispatcher.utter_message(response="utter_order_not_found", order_id=order_id)
                return {"order_id": None}
            return {"order_id": order_id, "flow_block": error.code}
        except BackofficeError:
            return {"order_id": order_id, "flow_block": BACKOFFICE_UNAVAILABLE}
        reset = {slot: None for slot in ORDER_DEPENDENT_SLOTS} if known else {}
        return {**reset, "order_id": order_id, "order_info": order_summary(order)}

    # --- buyer check --------------------------------------------------------------------------

    async def extract_buyer_check(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        text = latest_text(tracker)
        email = find_value(text, "email")
        if "order_id" in tracker.slots_to_validate() and not email:
            return {}  # «нет, заказ другой: …» — a correction, not an answer to the check
        if answers_slot(tracker, "buyer_check"):
            if email:
                return {"buyer_check": email}
            phone = find_value(text, "phone")
            if phone:
                return {"buyer_check": phone[-4:]}
            last4 = _LAST4.findall(text)
            if last4:
                return {"buyer_check": last4[-1]}
            if "@" in text or any(char.isdigit() for char in text):
                return {"buyer_check": ""}  # an attempt we cannot read: say what is needed
            return {}
        if self.buyer_check_from_first_message and email and answers_slot(tracker, "order_id", on_activation=True):
            return {"buyer_check": email}
        return {}

    async def validate_buyer_check(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        order_id = tracker.get_slot("order_id")
        value = str(slot_value or "").strip()
        if not order_id or self.blocked(tracker):
            return {"buyer_check": None}
        if not value:
            dispatcher.utter_message(response="utter_buyer_check_unclear")
            return {"buyer_check": None}
        email, last4 = (value, None) if "@" in value else (None, value)
        try:
            async with backoffice() as api:
                verified = await api.verify_buyer(order_id, email=email, phone_last4=last4)
        except BackofficeRefused as error:
            if error.code != ErrorCode.TOO_MANY_ATTEMPTS:
                return {"buyer_check": None, "flow_block": BACKOFFICE_UNAVAILABLE}
            say_checks_locked(dispatcher, error.retry_after_seconds)
            return {"buyer_check": None, "flow_block": TOO_MANY_ATTEMPTS}
        except BackofficeError:
            return {"buyer_check": None, "flow_block": BACKOFFICE_UNAVAILABLE}
        if not verified:
            failures = int(tracker.get_slot("verification_failures") or 0) + 1
            if failures >= MAX_ATTEMPTS:
                return {"buyer_check": None, "verification_failures": float(failures), "flow_block": VERIFICATION_FAILED}
            dispatcher.utter_message(response="utter_buyer_check_failed")
            return {"buyer_check": None, "verification_failures": float(failures)}
        return {"buyer_check": value, **await self.after_verification(dispatcher, tracker, order_id)}

    async def after_verification(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, order_id: str
    ) -> Dict[Text, Any]:
        """Hook: what a flow checks once the buyer is known (the refund's eligibility)."""
        return {}

    @staticmethod
    def verification_of(value: Optional[str]) -> Dict[str, Optional[str]]:
        value = (value or "").strip()
        return {"email": value} if "@" in value else {"phone_last4": value}


async def explain_order_block(
    dispatcher: CollectingDispatcher, tracker: Tracker, block: Optional[str], flow: str
) -> Optional[List[EventType]]:
    """The stops the order forms share: the back office failed, the buyer check failed three
    times here, or the back office locked the checks of this order (a human decides in both).
    None for any other ``block``: the flow explains its own."""
    if block == BACKOFFICE_UNAVAILABLE:
        return await backoffice_failed(dispatcher, tracker, flow)
    if block == VERIFICATION_FAILED:
        dispatcher.utter_message(response="utter_verification_locked")
        return await hand_over(dispatcher, tracker, HUMAN_DECISION, detail=VERIFICATION_FAILED)
    if block == TOO_MANY_ATTEMPTS:  # said when it happened
        return await checks_locked(dispatcher, tracker)
    return None


def required_unless_blocked(tracker: Tracker, slots: List[Text]) -> List[Text]:
    """A form whose flow was stopped by a refusal or an outage asks nothing more: it completes
    and its submit action explains (and escalates where the handbook says so)."""
    return [] if tracker.get_slot("flow_block") is not None else slots
