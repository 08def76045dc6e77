"""Resend (handbook «Повторная отправка»): to the order's own address freely, to a new e-mail or
phone only after the buyer check; at most 3 resends per order per day.

The key of a resend is derived from the conversation, the order, the address and the customer's
message that completed the request: a retried call replays the first resend, while a new request
later in the conversation (the letter still did not arrive) is a new resend, within the limit.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.backoffice_client import BackofficeError, BackofficeRefused, ErrorCode, idempotency_key
from actions.common import (
    answers_slot,
    as_mapping,
    backoffice,
    end_flow_events,
    find_value,
    latest_intent,
    latest_text,
    request_id,
)
from actions.escalation import backoffice_failed, checks_locked, say_checks_locked
from actions.order_forms import OrderFormValidation, explain_order_block, required_unless_blocked

SAME_ADDRESS = "same"
#: «на другой адрес», «на новую почту», «не туда»
_ANOTHER_ADDRESS = re.compile(r"(?i)друг|нов|не\s+туда|other|new")


def new_address_in(text: str) -> Optional[str]:
    return find_value(text, "email") or find_value(text, "phone")


class ValidateResendForm(OrderFormValidation):
    buyer_check_from_first_message = False

    def name(self) -> Text:
        return "validate_resend_form"

    async def required_slots(
        self,
        domain_slots: List[Text],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> List[Text]:
        if tracker.get_slot("resend_address") == SAME_ADDRESS:
            domain_slots = [slot for slot in domain_slots if slot != "buyer_check"]
        return required_unless_blocked(tracker, domain_slots)

    async def extract_resend_address(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        text = latest_text(tracker)
        if answers_slot(tracker, "resend_address"):
            address = new_address_in(text)
            if address:
                return {"resend_address": address}
            intent = latest_intent(tracker)
            if intent == "affirm":
                return {"resend_address": SAME_ADDRESS}
            if intent == "deny" or _ANOTHER_ADDRESS.search(text) or "@" in text or any(c.isdigit() for c in text):
                return {"resend_address": ""}  # «на другой» or an address we cannot read
            return {}
        # «перешлите на новую почту new@mail.ru, заказ 40817263» — the address comes first
        if answers_slot(tracker, "order_id", on_activation=True):
            address = find_value(text, "email")
            return {"resend_address": address} if address else {}
        return {}

    async def validate_resend_address(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        value = str(slot_value or "").strip()
        if value == SAME_ADDRESS:
            return {"resend_address": SAME_ADDRESS}
        info = dict(as_mapping(tracker.get_slot("order_info")))
        if not value:
            if info.get("wants_new_address"):
                dispatcher.utter_message(response="utter_new_address_invalid")
            info["wants_new_address"] = True
            return {"resend_address": None, "order_info": info}
        return {"resend_address": value}

    async def validate_buyer_check(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if tracker.get_slot("resend_address") in (None, SAME_ADDRESS):
            return {"buyer_check": None}  # the own address needs no check
        return await super().validate_buyer_check(slot_value, dispatcher, tracker, domain)


class ActionAskResendAddress(Action):
    def name(self) -> Text:
        return "action_ask_resend_address"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        info = as_mapping(tracker.get_slot("order_info"))
        if info.get("wants_new_address") or not info.get("delivery_address"):
            dispatcher.utter_message(response="utter_ask_new_address")
        else:
            dispatcher.utter_message(response="utter_ask_resend_address", address=info["delivery_address"])
        return []


class ActionSubmitResend(Action):
    def name(self) -> Text:
        return "action_submit_resend"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        block = tracker.get_slot("flow_block")
        order_id = tracker.get_slot("order_id")
        stopped = await explain_order_block(dispatcher, tracker, block, "resend")
        if stopped is not None:
            return stopped
        address = tracker.get_slot("resend_address")
        new_address = None if address in (None, SAME_ADDRESS) else address
        message_id = request_id(tracker)
        key = idempotency_key("resend", tracker.sender_id, order_id, new_address or SAME_ADDRESS, message_id)
        verification = OrderFormValidation.verification_of(tracker.get_slot("buyer_check")) if new_address else None
        try:
            async with backoffice() as api:
                resend = await api.resend_certificate(order_id, key, address=new_address, verification=verification)
        except BackofficeRefused as error:
            return await self.explain_refusal(dispatcher, tracker, error.code, order_id, error.retry_after_seconds)
        except BackofficeError:
            return await backoffice_failed(dispatcher, tracker, "resend")
        response = "utter_resend_done_sms" if resend.channel == "sms" else "utter_resend_done"
        dispatcher.utter_message(response=response, address=resend.address, left=str(resend.resends_left_today))
        return end_flow_events()

    async def explain_refusal(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, code: str, order_id: Optional[str],
        retry_after: Optional[int] = None,
    ) -> List[EventType]:
        if code == ErrorCode.RESEND_LIMIT_REACHED:
            dispatcher.utter_message(response="utter_resend_limit_reached", order_id=order_id)
        elif code == ErrorCode.ORDER_REFUNDED:
            dispatcher.utter_message(response="utter_order_refunded", order_id=order_id)
        elif code in (ErrorCode.VERIFICATION_FAILED, ErrorCode.VERIFICATION_REQUIRED):
            dispatcher.utter_message(response="utter_buyer_check_failed")
        elif code == ErrorCode.TOO_MANY_ATTEMPTS:
            say_checks_locked(dispatcher, retry_after)
            return await checks_locked(dispatcher, tracker)
        else:
            return await backoffice_failed(dispatcher, tracker, f"resend:{code}")
        return end_flow_events()
