"""Corporate documents (handbook «Корпоративным клиентам»): what is needed + the company's INN +
the order or invoice number → a CRM ticket for the personal manager."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.backoffice_client import BackofficeError, idempotency_key
from actions.common import (
    FlowFormValidation,
    answers_slot,
    backoffice,
    conversation_turns,
    digit_runs,
    end_flow_events,
    find_value,
    latest_text,
    request_id,
)
from actions.escalation import backoffice_failed
from nlu.entity_patterns import is_valid_inn

B2B_CATEGORY = "b2b"
MAX_REQUEST_CHARS = 300

#: word stems → the document named in the ticket (order kept: the ticket lists them so)
DOCUMENTS = (
    ("счет", "счёт на оплату"),
    ("счёт", "счёт на оплату"),
    ("договор", "договор"),
    ("упд", "УПД"),
    ("закрывающ", "УПД"),
    ("сверк", "акт сверки"),
    ("рассылк", "рассылка сертификатов сотрудникам"),
    ("возврат", "возврат"),
    ("продл", "продление срока"),
)
_INVOICE = re.compile(r"(?i)сч[её]т\w*\s*(?:№|n|no|номер)?\s*([\w\-/]*\d[\w\-/]*)")


def documents_in(text: str) -> List[str]:
    # «счёт № 123» names the invoice the documents are for, not a request for an invoice
    lowered = _INVOICE.sub(" ", text or "").lower()
    found: List[str] = []
    for stem, document in DOCUMENTS:
        if stem in lowered and document not in found:
            found.append(document)
    return found


class ValidateB2bForm(FlowFormValidation):
    def name(self) -> Text:
        return "validate_b2b_form"

    async def extract_inn(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        if not answers_slot(tracker, "inn") or "inn" in tracker.slots_to_validate():
            return {}
        candidates = [run for run in digit_runs(latest_text(tracker)) if len(run) in (9, 10, 11, 12, 13)]
        return {"inn": candidates[0]} if candidates else {}

    async def validate_inn(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        digits = re.sub(r"\D", "", str(slot_value or ""))
        if not is_valid_inn(digits):
            dispatcher.utter_message(response="utter_inn_invalid")
            return {"inn": None}
        return {"inn": digits}

    async def extract_b2b_reference(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if tracker.get_slot("b2b_reference") and not answers_slot(tracker, "b2b_reference"):
            return {}
        text = latest_text(tracker)
        order_id = find_value(text, "order_id")
        if order_id:
            return {"b2b_reference": f"заказ {order_id}"}
        invoice = _INVOICE.search(text)
        if invoice:
            return {"b2b_reference": f"счёт № {invoice.group(1)}"}
        if answers_slot(tracker, "b2b_reference"):
            inn = tracker.get_slot("inn")
            runs = [run for run in digit_runs(text) if len(run) >= 3 and run != inn]
            if runs:
                return {"b2b_reference": f"№ {runs[0]}"}
        return {}

    async def extract_b2b_request(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        text = latest_text(tracker)
        found = documents_in(text)
        if found and not (tracker.get_slot("b2b_request") and not answers_slot(tracker, "b2b_request")):
            return {"b2b_request": ", ".join(found)}
        if answers_slot(tracker, "b2b_request") and text.strip():
            return {"b2b_request": text.strip()[:MAX_REQUEST_CHARS]}
        return {}


class ActionSubmitB2b(Action):
    def name(self) -> Text:
        return "action_submit_b2b"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        inn = tracker.get_slot("inn")
        reference = tracker.get_slot("b2b_reference")
        documents = tracker.get_slot("b2b_request")
        message_id = request_id(tracker)
        contact = tracker.get_slot("email") or tracker.get_slot("phone")
        summary = (
            f"Корпоративный клиент, ИНН {inn}.\nНужно: {documents}.\nЗаказ / счёт: {reference}."
            + (f"\nКонтакт: {contact}." if contact else "")
        )
        try:
            async with backoffice() as api:
                ticket = await api.create_ticket(
                    subject=f"B2B: {documents}"[:200],
                    summary=summary,
                    transcript=conversation_turns(tracker),
                    priority="normal",
                    contact=contact,
                    conversation_id=tracker.sender_id,
                    category=B2B_CATEGORY,
                    order_id=find_value(reference or "", "order_id"),
                    idempotency_key=idempotency_key("b2b", tracker.sender_id, reference, inn or "", message_id),
                )
        except BackofficeError:
            return await backoffice_failed(dispatcher, tracker, "b2b ticket")
        when = "в течение 2 часов" if ticket.staff_online else "утром, после 9:00 по Москве"
        dispatcher.utter_message(
            response="utter_b2b_done", ticket_id=str(ticket.id), documents=documents,
            reference=reference, inn=inn, when=when,
        )
        return end_flow_events()
