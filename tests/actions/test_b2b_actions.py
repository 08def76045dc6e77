"""Corporate documents (b2b_form, action_submit_b2b): INN, order or invoice, what is needed → one
ticket for the personal manager in the real back office."""
from __future__ import annotations

import pytest

from actions.b2b_actions import ActionSubmitB2b, documents_in


async def test_documents_by_order_number(backoffice, conversation) -> None:
    conv = conversation()
    turn = await conv.start("b2b_form", "нужны закрывающие документы и акт сверки", "b2b_documents")
    assert conv.slots["b2b_request"] == "УПД, акт сверки"
    assert conv.requested == "inn" and turn.responses == ["utter_ask_b2b_form_inn"]

    turn = await conv.say("ИНН 7712345670")  # a wrong check digit
    assert turn.responses == ["utter_inn_invalid", "utter_ask_b2b_form_inn"] and conv.slots["inn"] is None
    turn = await conv.say("123456789012")  # 12 digits, not an INN either
    assert turn.responses[0] == "utter_inn_invalid" and conv.slots["inn"] is None

    turn = await conv.say("7712345671")
    assert conv.slots["inn"] == "7712345671" and conv.requested == "b2b_reference"
    assert turn.responses == ["utter_ask_b2b_reference"]

    turn = await conv.say("заказ 40817314")
    assert conv.slots["b2b_reference"] == "заказ 40817314" and conv.active_form is None

    done = await conv.run(ActionSubmitB2b())
    assert done.responses == ["utter_b2b_done"] and not done.handed_over
    words = done.messages[0]
    assert words["inn"] == "7712345671" and words["reference"] == "заказ 40817314"
    assert words["documents"] == "УПД, акт сверки"
    (ticket,) = backoffice.tickets(conv.sender_id)
    assert words["ticket_id"] == str(ticket["id"])
    assert ticket["category"] == "b2b" and ticket["order_id"] == "40817314"
    assert "ИНН 7712345671" in ticket["summary"] and "заказ 40817314" in ticket["summary"]
    assert conv.slots["b2b_request"] is None and conv.slots["b2b_reference"] is None


async def test_documents_by_invoice_number_asked_one_by_one(backoffice, conversation) -> None:
    conv = conversation()
    await conv.start("b2b_form", "нужны документы для компании", "b2b_documents")
    assert conv.requested == "inn" and conv.slots["b2b_request"] is None
    await conv.say("7712345671")
    turn = await conv.say("счёт № 123")
    assert conv.slots["b2b_reference"] == "счёт № 123"
    assert conv.slots["b2b_request"] is None, "an invoice number is not a request for an invoice"
    assert conv.requested == "b2b_request" and turn.responses == ["utter_ask_b2b_request"]
    await conv.say("УПД")
    assert conv.slots["b2b_request"] == "УПД" and conv.active_form is None

    done = await conv.run(ActionSubmitB2b())
    assert done.responses == ["utter_b2b_done"]
    (ticket,) = backoffice.tickets(conv.sender_id)
    assert ticket["category"] == "b2b" and ticket["order_id"] is None
    assert "7712345671" in ticket["summary"] and "счёт № 123" in ticket["summary"] and "УПД" in ticket["summary"]


async def test_everything_in_one_message(backoffice, conversation) -> None:
    conv = conversation()
    turn = await conv.start("b2b_form", "Нужен счёт на оплату, ИНН 7712345671, заказ 40817314", "b2b_documents")
    assert (conv.slots["inn"], conv.slots["b2b_reference"], conv.slots["b2b_request"]) == (
        "7712345671", "заказ 40817314", "счёт на оплату")
    assert conv.active_form is None and turn.responses == []


@pytest.mark.parametrize(
    "text, documents",
    [
        ("УПД", ["УПД"]),
        ("акт сверки за квартал", ["акт сверки"]),
        ("договор и счёт на оплату", ["счёт на оплату", "договор"]),
        ("акт сверки по счёту № 123", ["акт сверки"]),
        ("добрый день", []),
    ],
)
def test_documents_named_by_keywords(text, documents) -> None:
    assert documents_in(text) == documents
