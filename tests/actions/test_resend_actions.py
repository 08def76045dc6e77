"""The resend flow (resend_form, action_ask_resend_address, action_submit_resend) against the real
back office: the order's own address, a new one after the buyer check, the daily limit, a
refunded order, and replays that must not send twice."""
from __future__ import annotations

from rasa_sdk.executor import CollectingDispatcher

from actions.resend_actions import ActionSubmitResend, ValidateResendForm


async def start_resend(conv, order_id: str):
    await conv.start("resend_form", "сертификат не пришёл", "resend_certificate")
    assert conv.requested == "order_id"
    return await conv.say(order_id)


async def test_resend_to_the_orders_own_phone(backoffice, conversation) -> None:
    before = len(backoffice.resends_made("40817358"))
    conv = conversation()
    turn = await start_resend(conv, "40817358")
    question = turn.message("utter_ask_resend_address")
    assert question["address"] == "+7***0101" and conv.requested == "resend_address"

    turn = await conv.say("да, туда же", intent="affirm")
    assert conv.slots["resend_address"] == "same" and conv.slots["buyer_check"] is None
    assert conv.active_form is None, "the own address needs no buyer check"

    before_submit = conv.tracker()
    done = await conv.run(ActionSubmitResend())
    (response,) = done.responses
    assert response in ("utter_resend_done", "utter_resend_done_sms")
    assert done.messages[0]["address"] == "+7***0101" and done.messages[0]["left"] == "2"
    assert conv.active_form is None and conv.slots["order_id"] is None
    made = backoffice.resends_made("40817358")
    assert len(made) == before + 1 and made[-1]["payload"]["to_new_address"] is False

    # the same submit repeated (a retried call, the same message): a replay, not a second resend
    dispatcher = CollectingDispatcher()
    await ActionSubmitResend().run(dispatcher, before_submit, conv.domain)
    assert dispatcher.messages[0]["response"] == response and dispatcher.messages[0]["left"] == "2"
    assert len(backoffice.resends_made("40817358")) == before + 1

    # a new request later (the letter still did not arrive) is a new resend, within the limit
    await start_resend(conv, "40817358")
    await conv.say("да", intent="affirm")
    again = await conv.run(ActionSubmitResend())
    assert again.messages[0]["left"] == "1"
    assert len(backoffice.resends_made("40817358")) == before + 2
    assert backoffice.tickets(conv.sender_id) == []


async def test_resend_to_a_new_e_mail_needs_the_buyer_check(backoffice, conversation, domain) -> None:
    conv = conversation()
    turn = await start_resend(conv, "40817263")
    assert turn.message("utter_ask_resend_address")["address"] == "i***@mail.ru"

    turn = await conv.say("нет, пришлите на New.Friend@mail.ru")
    assert conv.slots["resend_address"] == "new.friend@mail.ru" and conv.requested == "buyer_check"
    assert turn.responses == ["utter_ask_resend_form_buyer_check"]
    form_slots = domain["forms"]["resend_form"]["required_slots"]
    required = await ValidateResendForm().required_slots(form_slots, CollectingDispatcher(), conv.tracker(), domain)
    assert "buyer_check" in required

    turn = await conv.say("0000")
    assert turn.responses[0] == "utter_buyer_check_failed" and conv.slots["buyer_check"] is None
    assert conv.active_form == "resend_form"
    assert [r for r in backoffice.resends_made("40817263")] == []

    turn = await conv.say("+7 916 123-45-67")
    assert conv.slots["buyer_check"] == "4567" and conv.active_form is None
    done = await conv.run(ActionSubmitResend())
    assert done.responses == ["utter_resend_done"] and done.messages[0]["address"] == "n***@mail.ru"
    (made,) = backoffice.resends_made("40817263")
    assert made["payload"]["to_new_address"] is True
    assert "new.friend" not in str(made["payload"])  # masked in the audit too


async def test_another_address_asked_when_the_customer_says_no(backoffice, conversation) -> None:
    conv = conversation()
    await start_resend(conv, "40817292")
    turn = await conv.say("нет, на другой", intent="deny")
    assert turn.responses == ["utter_ask_new_address"] and conv.requested == "resend_address"
    turn = await conv.say("вот: 12 34")
    assert turn.responses == ["utter_new_address_invalid", "utter_ask_new_address"]
    turn = await conv.say("+7 926 000-00-02")
    assert conv.slots["resend_address"] == "+79260000002" and conv.requested == "buyer_check"


async def test_daily_limit_reached(backoffice, conversation) -> None:
    conv = conversation()
    await start_resend(conv, "40817325")
    await conv.say("да", intent="affirm")
    turn = await conv.run(ActionSubmitResend())
    assert turn.responses == ["utter_resend_limit_reached"] and turn.messages[0]["order_id"] == "40817325"
    assert backoffice.resends_made("40817325") == []  # the seeded three are not audited; no fourth
    refused = backoffice.audit(entity="order", entity_id="40817325", action="certificate.resend.refused")
    assert [row["payload"]["refused"] for row in refused] == ["resend_limit_reached"]
    assert backoffice.tickets(conv.sender_id) == []


async def test_refunded_order_is_not_resent(backoffice, conversation) -> None:
    conv = conversation()
    await start_resend(conv, "40817369")
    await conv.say("да", intent="affirm")
    turn = await conv.run(ActionSubmitResend())
    assert turn.responses == ["utter_order_refunded"] and turn.messages[0]["order_id"] == "40817369"
    assert backoffice.resends_made("40817369") == []


async def test_new_address_and_order_in_the_first_message(backoffice, conversation) -> None:
    conv = conversation()
    turn = await conv.start("resend_form", "перешлите на новую почту new@mail.ru, заказ 40817292", "resend_certificate")
    assert conv.slots["order_id"] == "40817292" and conv.slots["resend_address"] == "new@mail.ru"
    assert conv.requested == "buyer_check" and turn.responses == ["utter_ask_resend_form_buyer_check"]


async def test_new_address_first_then_the_order(backoffice, conversation) -> None:
    conv = conversation()
    turn = await conv.start("resend_form", "перешлите сертификат на new@mail.ru", "resend_certificate")
    assert conv.slots["resend_address"] == "new@mail.ru" and conv.requested == "order_id"
    turn = await conv.say("40817292")
    assert conv.requested == "buyer_check" and turn.responses == ["utter_ask_resend_form_buyer_check"]
