"""A certificate by code + PIN: balance / validity / status, and «магазин не принимает».

The PIN is checked by the back office and then forgotten (the slot keeps ``****``); the code is
only ever shown masked (``DRM-****-****-7Q2K``). «Не принимают»: status and expiry first, then the
brand's rules (online / offline, one purchase or several), and if the certificate is valid and
the problem remains — a ticket and a human (handbook «Проблемы с использованием»).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.backoffice_client import BackofficeError, BackofficeRefused, Brand, Certificate, ErrorCode, mask_code
from actions.common import (
    FlowFormValidation,
    MAX_ATTEMPTS,
    answers_slot,
    as_mapping,
    backoffice,
    digit_runs,
    end_flow_events,
    find_value,
    latest_text,
    money,
    ru_date,
)
from actions.escalation import (
    HUMAN_DECISION,
    TOO_MANY_ATTEMPTS,
    backoffice_failed,
    checks_locked,
    hand_over,
    say_checks_locked,
)
from actions.order_forms import BACKOFFICE_UNAVAILABLE, required_unless_blocked

PIN_LOCKED = "pin_locked"
MULTI_BRAND = "Дарим Мульти"
USABLE_STATUSES = ("active", "partially_used")
SHOWN_PIN = "****"

# something meant as a code: «DRM…»/«ДРМ…», or a long run of letters and digits
_CODE_ATTEMPT = re.compile(r"(?i)\b(drm|дрм)|\b(?=[a-zа-я0-9\-]*\d)(?=[a-zа-я0-9\-]*[a-zа-я])[a-zа-я0-9\-]{10,}\b")


def certificate_summary(certificate: Certificate, code: str) -> Dict[str, Any]:
    rules: Optional[Brand] = certificate.brand_rules
    return {
        "code": mask_code(code),
        "brand": certificate.brand,
        "status": certificate.status,
        "balance": str(certificate.balance),
        "nominal": str(certificate.nominal),
        "expires": ru_date(certificate.expires_at),
        "rules": None if rules is None else {
            "online": rules.online, "offline": rules.offline,
            "single_purchase": rules.single_purchase, "note": rules.note,
        },
    }


def say_status(dispatcher: CollectingDispatcher, info: Dict[str, Any]) -> None:
    dispatcher.utter_message(
        response=f"utter_certificate_{info['status']}",
        code=info["code"], brand=info["brand"], balance=money(info["balance"]),
        nominal=money(info["nominal"]), expires=info["expires"],
    )


class CertificateFormValidation(FlowFormValidation, ABC):
    """Code, then PIN; the lookup happens when the PIN arrives."""

    @abstractmethod
    def name(self) -> Text:
        """The validation action's name, ``validate_<form>`` (abstract: the action server
        registers only concrete actions)."""

    async def required_slots(
        self, domain_slots: List[Text], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Text]:
        return required_unless_blocked(tracker, domain_slots)

    async def extract_certificate_code(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if not answers_slot(tracker, "certificate_code", on_activation=True):
            return {}
        if "certificate_code" in tracker.slots_to_validate():
            return {}
        text = latest_text(tracker)
        return {"certificate_code": text.strip()} if _CODE_ATTEMPT.search(text) else {}

    async def validate_certificate_code(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        code = find_value(str(slot_value or ""), "certificate_code")
        if not code:
            dispatcher.utter_message(response="utter_certificate_code_malformed")
            return {"certificate_code": None}
        known = as_mapping(tracker.get_slot("certificate_info"))
        if known and known.get("code") != mask_code(code):
            # another certificate: its PIN is still to be asked
            return {"certificate_code": code, "pin": None, "pin_failures": None, "certificate_info": None}
        return {"certificate_code": code}

    async def extract_pin(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if not answers_slot(tracker, "pin"):
            return {}
        runs = digit_runs(latest_text(tracker))
        if not runs:
            return {}
        four = [run for run in runs if len(run) == 4]
        return {"pin": four[-1] if four else ""}

    async def validate_pin(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        pin = str(slot_value or "")
        code = tracker.get_slot("certificate_code")
        if pin == SHOWN_PIN and tracker.get_slot("certificate_info"):
            return {"pin": SHOWN_PIN}
        if not code:
            return {"pin": None}
        if not re.fullmatch(r"\d{4}", pin):
            dispatcher.utter_message(response="utter_pin_malformed")
            return {"pin": None}
        try:
            async with backoffice() as api:
                certificate = await api.lookup_certificate(code, pin)
        except BackofficeRefused as error:
            if error.code == ErrorCode.NOT_FOUND:
                dispatcher.utter_message(response="utter_certificate_not_found")
                return {"pin": None, "certificate_code": None}
            if error.code == ErrorCode.TOO_MANY_ATTEMPTS:
                say_checks_locked(dispatcher, error.retry_after_seconds)
                return {"pin": None, "flow_block": TOO_MANY_ATTEMPTS}
            if error.code == ErrorCode.PIN_INVALID:
                failures = int(tracker.get_slot("pin_failures") or 0) + 1
                if failures >= MAX_ATTEMPTS:
                    dispatcher.utter_message(response="utter_pin_locked")
                    return {"pin": None, "pin_failures": float(failures), "flow_block": PIN_LOCKED}
                dispatcher.utter_message(response="utter_pin_invalid")
                return {"pin": None, "pin_failures": float(failures)}
            return {"pin": None, "flow_block": error.code}
        except BackofficeError:
            return {"pin": None, "flow_block": BACKOFFICE_UNAVAILABLE}
        # the PIN is a password: it is not kept in the conversation's slots
        return {"pin": SHOWN_PIN, "certificate_info": certificate_summary(certificate, code)}


async def explain_block(dispatcher: CollectingDispatcher, tracker: Tracker, block: str) -> List[EventType]:
    if block == BACKOFFICE_UNAVAILABLE:
        return await backoffice_failed(dispatcher, tracker, "certificate lookup")
    if block == TOO_MANY_ATTEMPTS:  # said when it happened
        return await checks_locked(dispatcher, tracker)
    if block != PIN_LOCKED:  # PIN_LOCKED was already explained when it happened
        return await backoffice_failed(dispatcher, tracker, f"certificate lookup: {block}")
    return end_flow_events()


# --- balance / validity / status --------------------------------------------------------------


class ValidateBalanceForm(CertificateFormValidation):
    def name(self) -> Text:
        return "validate_balance_form"


class ActionSubmitBalance(Action):
    def name(self) -> Text:
        return "action_submit_balance"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        block = tracker.get_slot("flow_block")
        if block:
            return await explain_block(dispatcher, tracker, block)
        info = as_mapping(tracker.get_slot("certificate_info"))
        if info:
            say_status(dispatcher, dict(info))
        return end_flow_events()


# --- «магазин не принимает» -------------------------------------------------------------------


class ValidateNotAcceptedForm(CertificateFormValidation):
    def name(self) -> Text:
        return "validate_not_accepted_form"

    async def required_slots(
        self, domain_slots: List[Text], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Text]:
        info = as_mapping(tracker.get_slot("certificate_info"))
        if info and info.get("status") not in USABLE_STATUSES:
            # an expired or used certificate is the answer itself: nothing more to ask
            domain_slots = [slot for slot in domain_slots if slot != "problem_persists"]
        return required_unless_blocked(tracker, domain_slots)


class ActionAskProblemPersists(Action):
    """The certificate is valid: say so, give the brand's rules, ask whether the problem remains."""

    def name(self) -> Text:
        return "action_ask_problem_persists"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        info = dict(as_mapping(tracker.get_slot("certificate_info")))
        say_status(dispatcher, info)
        wanted = tracker.get_slot("brand")
        if info.get("brand") == MULTI_BRAND:
            dispatcher.utter_message(response="utter_multi_exchange")
            off, alternatives = await self.catalogue_check(wanted)
            if off:
                dispatcher.utter_message(response="utter_brand_off_catalogue", brand=wanted, alternatives=alternatives)
                dispatcher.utter_message(response="utter_ask_problem_persists_off_catalogue")
                return [SlotSet("certificate_info", {**info, "off_catalogue": wanted})]
        else:
            self.say_brand_rules(dispatcher, info)
        dispatcher.utter_message(response="utter_ask_problem_persists")
        return []

    @staticmethod
    async def catalogue_check(wanted: Optional[str]) -> "tuple[bool, str]":
        """Is the brand the customer wants out of the «Дарим Мульти» catalogue? (+ alternatives)"""
        if not wanted:
            return False, ""
        try:
            async with backoffice() as api:
                brands = await api.list_brands()
        except BackofficeError:
            return False, ""
        off = any(b.name.lower() == wanted.lower() and not b.in_catalogue for b in brands)
        return off, ", ".join(b.name for b in brands if b.in_catalogue)

    @staticmethod
    def say_brand_rules(dispatcher: CollectingDispatcher, info: Dict[str, Any]) -> None:
        rules = as_mapping(info.get("rules"))
        if not rules:
            return
        brand = info["brand"]
        if rules.get("online") and not rules.get("offline"):
            dispatcher.utter_message(response="utter_brand_online_only", brand=brand)
        elif rules.get("offline") and not rules.get("online"):
            dispatcher.utter_message(response="utter_brand_offline_only", brand=brand)
        else:
            dispatcher.utter_message(response="utter_brand_everywhere", brand=brand)
        single = "utter_brand_single_purchase" if rules.get("single_purchase") else "utter_brand_several_purchases"
        dispatcher.utter_message(response=single)


class ActionSubmitNotAccepted(Action):
    def name(self) -> Text:
        return "action_submit_not_accepted"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        block = tracker.get_slot("flow_block")
        if block:
            return await explain_block(dispatcher, tracker, block)
        info = as_mapping(tracker.get_slot("certificate_info"))
        if info and info.get("status") not in USABLE_STATUSES:
            say_status(dispatcher, dict(info))
            return end_flow_events()
        if tracker.get_slot("problem_persists"):
            detail = "brand_off_catalogue" if info.get("off_catalogue") else "certificate_not_accepted"
            return await hand_over(dispatcher, tracker, HUMAN_DECISION, detail=detail)
        dispatcher.utter_message(response="utter_problem_solved")
        return end_flow_events()
