"""Refund (handbook «Возврат денег»): order → buyer check → eligibility → summary → explicit «да»
→ refund → confirmation with the refund id and the 10-working-day term.

The refund carries an idempotency key derived from the conversation and the order, so a retried
call or the same request repeated never creates a second refund (the back office also refuses a
second refund of one order, whatever the key).
"""
from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.backoffice_client import (
    BackofficeError,
    BackofficeRefused,
    ErrorCode,
    Refund,
    idempotency_key,
)
from actions.common import as_mapping, backoffice, end_flow_events, money, payment_words, ru_date
from actions.escalation import HUMAN_DECISION, backoffice_failed, hand_over, say_checks_locked
from actions.order_forms import (
    BACKOFFICE_UNAVAILABLE,
    OrderFormValidation,
    explain_order_block,
    required_unless_blocked,
)

#: refusals explained in words of their own (``utter_<code>``) with nothing more to do
EXPLAINED_REFUSALS = (
    ErrorCode.REFUND_NOT_ALLOWED_ACTIVATED,
    ErrorCode.REFUND_NOT_ALLOWED_PARTIALLY_USED,
    ErrorCode.REFUND_NOT_ALLOWED_USED,
    ErrorCode.REFUND_NOT_ALLOWED_EXPIRED,
)
#: refusals the handbook hands to a staff member (ticket + hand-over)
STAFF_DECIDES = (ErrorCode.REFUND_WINDOW_PASSED, ErrorCode.REFUND_B2B_MANAGER_ONLY)


def refund_words(refund: Refund) -> Dict[str, str]:
    return {
        "refund_id": str(refund.id),
        "amount": money(refund.amount),
        "payment_method": payment_words(refund.payment_method),
        "due_by": ru_date(refund.due_by),
        "order_id": refund.order_id,
    }


class ValidateRefundForm(OrderFormValidation):
    def name(self) -> Text:
        return "validate_refund_form"

    async def required_slots(
        self,
        domain_slots: List[Text],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> List[Text]:
        return required_unless_blocked(tracker, domain_slots)

    async def after_verification(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, order_id: str
    ) -> Dict[Text, Any]:
        """Eligibility is checked only for a verified buyer: a stranger learns nothing of the order."""
        try:
            async with backoffice() as api:
                eligibility = await api.refund_eligibility(order_id)
        except BackofficeError:
            return {"flow_block": BACKOFFICE_UNAVAILABLE}
        info = dict(as_mapping(tracker.get_slot("order_info")))
        info.update(amount=str(eligibility.amount), payment_method=eligibility.payment_method,
                    days=eligibility.days_since_purchase)
        if eligibility.refund is not None:
            info["refund"] = refund_words(eligibility.refund)
            return {"order_info": info, "flow_block": ErrorCode.REFUND_ALREADY_EXISTS}
        if not eligibility.eligible:
            return {"order_info": info, "flow_block": eligibility.reason or "refund_not_allowed"}
        return {"order_info": info}

    async def validate_refund_confirmed(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        # «нет, заказ другой: …» is a correction, not a «нет» to the summary of the old order
        if "order_id" in tracker.slots_to_validate() or tracker.get_slot("buyer_check") is None:
            return {"refund_confirmed": None}
        return {"refund_confirmed": slot_value}


class ActionAskRefundConfirmed(Action):
    """The summary before the refund: what, how much, where, when — and the question."""

    def name(self) -> Text:
        return "action_ask_refund_confirmed"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        info = as_mapping(tracker.get_slot("order_info"))
        dispatcher.utter_message(
            response="utter_ask_refund_confirmed",
            amount=money(info.get("amount")),
            order_id=tracker.get_slot("order_id"),
            payment_method=payment_words(info.get("payment_method")),
        )
        return []


class ActionSubmitRefund(Action):
    def name(self) -> Text:
        return "action_submit_refund"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        block = tracker.get_slot("flow_block")
        if block:
            return await self.explain_refusal(dispatcher, tracker, block)
        if tracker.get_slot("refund_confirmed") is not True:
            dispatcher.utter_message(response="utter_refund_declined")
            return end_flow_events()
        order_id = tracker.get_slot("order_id")
        key = idempotency_key("refund", tracker.sender_id, order_id)
        verification = OrderFormValidation.verification_of(tracker.get_slot("buyer_check"))
        try:
            async with backoffice() as api:
                refund = await api.create_refund(order_id, key, verification)
        except BackofficeRefused as error:
            if error.code == ErrorCode.TOO_MANY_ATTEMPTS:  # explain_order_block hands it over
                say_checks_locked(dispatcher, error.retry_after_seconds)
            return await self.explain_refusal(dispatcher, tracker, error.code)
        except BackofficeError:
            # unavailable, or a reply we cannot read: the refund may or may not exist, and the
            # same key makes any retry safe
            return await backoffice_failed(dispatcher, tracker, "refund")
        response = "utter_refund_done" if refund.created else "utter_refund_exists"
        dispatcher.utter_message(response=response, **refund_words(refund))
        return end_flow_events()

    async def explain_refusal(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, code: str
    ) -> List[EventType]:
        stopped = await explain_order_block(dispatcher, tracker, code, "refund")
        if stopped is not None:
            return stopped
        info = as_mapping(tracker.get_slot("order_info"))
        if code in (ErrorCode.REFUND_ALREADY_EXISTS, ErrorCode.ORDER_REFUNDED) and info.get("refund"):
            dispatcher.utter_message(response="utter_refund_exists", **as_mapping(info["refund"]))
            return end_flow_events()
        if code in EXPLAINED_REFUSALS:
            dispatcher.utter_message(response=f"utter_{code}", balance=money(info.get("balance")))
            return end_flow_events()
        if code in STAFF_DECIDES:
            dispatcher.utter_message(response=f"utter_{code}", days=str(info.get("days", "")))
            return await hand_over(dispatcher, tracker, HUMAN_DECISION, detail=code)
        dispatcher.utter_message(response="utter_refund_not_allowed")
        return await hand_over(dispatcher, tracker, HUMAN_DECISION, detail="refund_not_allowed")
