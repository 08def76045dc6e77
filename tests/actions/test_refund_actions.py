"""The refund flow (refund_form, action_ask_refund_confirmed, action_submit_refund) against the real
back office: every case of backoffice/DEMO.md, corrections, and what exists afterwards."""
from __future__ import annotations

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff_actions import ActionResumeFlow
from actions.refund_actions import ActionSubmitRefund, ValidateRefundForm

NBSP = "\u00a0"


async def start_refund(conv, text: str = "хочу вернуть деньги за сертификат"):
    turn = await conv.start("refund_form", text, "refund_request")
    return turn


async def verified(conv, order_id: str, check: str):
    """Refund form up to the buyer check answered."""
    await start_refund(conv)
    turn = await conv.say(f"заказ {order_id}")
    assert conv.slots["order_id"] == order_id, turn.responses
    return await conv.say(check)


def handed_over(turn) -> bool:
    return turn.handed_over


def assert_flow_ended(conv) -> None:
    assert conv.active_form is None and conv.requested is None
    for slot in ("order_id", "buyer_check", "order_info", "refund_confirmed", "flow_block", "verification_failures"):
        assert conv.slots[slot] is None, slot


# --- the happy path ---------------------------------------------------------------------------


async def test_refund_happy_path_then_only_ever_the_same_refund(fresh_backoffice, conversation) -> None:
    conv = conversation()
    turn = await start_refund(conv)
    assert turn.responses == ["utter_ask_refund_form_order_id"] and conv.requested == "order_id"

    turn = await conv.say("номер заказа 40817263")
    assert conv.slots["order_id"] == "40817263"
    assert conv.slots["order_info"]["amount"] == "3000" and conv.slots["order_info"]["payment_method"] == "card"
    assert turn.responses == ["utter_ask_buyer_check"] and conv.requested == "buyer_check"

    turn = await conv.say("IVAN@MAIL.RU")  # the e-mail in any letter case
    assert conv.slots["buyer_check"] == "ivan@mail.ru" and conv.slots["flow_block"] is None
    assert conv.requested == "refund_confirmed"
    summary = turn.message("utter_ask_refund_confirmed")
    assert summary["amount"] == f"3{NBSP}000" and summary["order_id"] == "40817263"
    assert "на карту" in summary["payment_method"]
    assert fresh_backoffice.refunds_created("40817263") == []  # nothing before the «да»

    turn = await conv.say("да, оформляйте", intent="affirm")
    assert conv.slots["refund_confirmed"] is True and conv.active_form is None

    before_submit = conv.tracker()
    done = await conv.run(ActionSubmitRefund())
    assert done.responses == ["utter_refund_done"]
    words = done.message("utter_refund_done")
    refund_id = words["refund_id"]
    assert refund_id.isdigit() and words["amount"] == f"3{NBSP}000" and words["order_id"] == "40817263"
    assert "на карту" in words["payment_method"] and words["due_by"].count(".") == 2
    assert not handed_over(done)
    assert_flow_ended(conv)

    order = fresh_backoffice.order("40817263")
    assert order["refund"]["id"] == int(refund_id) and order["refund"]["amount"] == 3000
    assert {c["status"] for c in order["certificates"]} == {"refunded"}

    # the same submit again in this conversation (a retried action call): the same refund
    dispatcher = CollectingDispatcher()
    await ActionSubmitRefund().run(dispatcher, before_submit, conv.domain)
    assert [m["response"] for m in dispatcher.messages] == ["utter_refund_exists"]
    assert dispatcher.messages[0]["refund_id"] == refund_id

    # asking again in the same conversation, now checked by the phone's last 4 digits
    turn = await verified(conv, "40817263", "последние цифры 4567")
    assert conv.slots["flow_block"] == "refund_already_exists" and conv.active_form is None
    again = await conv.run(ActionSubmitRefund())
    assert again.responses == ["utter_refund_exists"] and again.messages[0]["refund_id"] == refund_id

    # and from another conversation
    other = conversation()
    await verified(other, "40817263", "ivan@mail.ru")
    assert other.active_form is None and other.slots["flow_block"] == "refund_already_exists"
    elsewhere = await other.run(ActionSubmitRefund())
    assert elsewhere.responses == ["utter_refund_exists"] and elsewhere.messages[0]["refund_id"] == refund_id

    assert len(fresh_backoffice.refunds_created("40817263")) == 1
    assert fresh_backoffice.tickets() == []


async def test_order_and_e_mail_in_the_first_message_go_straight_to_the_summary(backoffice, conversation) -> None:
    conv = conversation()
    turn = await start_refund(conv, "верните деньги, заказ 40817263, почта ivan@mail.ru")
    assert conv.slots["order_id"] == "40817263" and conv.slots["buyer_check"] == "ivan@mail.ru"
    assert turn.responses == ["utter_ask_refund_confirmed"] and conv.requested == "refund_confirmed"


# --- wrong numbers and buyers -----------------------------------------------------------------


@pytest.mark.parametrize("text", ["4081726", "заказ № 408172631", "4081-726"])
async def test_malformed_order_number(backoffice, conversation, text) -> None:
    conv = conversation()
    await start_refund(conv)
    turn = await conv.say(text)
    assert turn.responses == ["utter_order_id_malformed", "utter_ask_refund_form_order_id"]
    assert conv.slots["order_id"] is None and conv.requested == "order_id" and conv.active_form == "refund_form"


async def test_malformed_order_number_in_the_first_message(backoffice, conversation) -> None:
    conv = conversation()
    turn = await start_refund(conv, "верните деньги за заказ 4081726")
    assert turn.responses == ["utter_order_id_malformed", "utter_ask_refund_form_order_id"]
    assert conv.slots["order_id"] is None


async def test_unknown_order_number(backoffice, conversation) -> None:
    conv = conversation()
    await start_refund(conv)
    turn = await conv.say("12345678")
    assert turn.responses == ["utter_order_not_found", "utter_ask_refund_form_order_id"]
    assert turn.messages[0]["order_id"] == "12345678"
    assert conv.slots["order_id"] is None and conv.slots["order_info"] is None


async def test_three_wrong_buyer_checks_hand_over(backoffice, conversation) -> None:
    conv = conversation()
    await start_refund(conv)
    await conv.say("40817263")
    first = await conv.say("petr@mail.ru")
    assert first.responses == ["utter_buyer_check_failed", "utter_ask_buyer_check"]
    assert conv.slots["verification_failures"] == 1.0 and conv.slots["buyer_check"] is None
    second = await conv.say("последние 4 цифры 0000")
    assert second.responses == ["utter_buyer_check_failed", "utter_ask_buyer_check"]
    third = await conv.say("+7 916 000-00-00")
    assert conv.slots["flow_block"] == "verification_failed" and conv.active_form is None
    assert third.responses == []  # the submit explains

    turn = await conv.run(ActionSubmitRefund())
    assert turn.responses[0] == "utter_verification_locked"
    assert turn.responses[1] in ("utter_handoff_online", "utter_handoff_offline")
    assert handed_over(turn) and conv.handed_over
    (ticket,) = backoffice.tickets(conv.sender_id)
    assert ticket["category"] == "human_decision" and ticket["subject"] == "Не удалось проверить покупателя"
    assert ticket["order_id"] == "40817263" and turn.messages[1]["ticket_id"] == str(ticket["id"])
    assert conv.slots["handoff_ticket_id"] == str(ticket["id"])
    assert backoffice.refunds_created("40817263") == []


async def test_unreadable_buyer_check_is_asked_again_without_counting(backoffice, conversation) -> None:
    conv = conversation()
    await start_refund(conv)
    await conv.say("40817263")
    turn = await conv.say("ivan@")
    assert turn.responses == ["utter_buyer_check_unclear", "utter_ask_buyer_check"]
    assert conv.slots["verification_failures"] is None


# --- refusals ---------------------------------------------------------------------------------


async def test_more_than_14_days_goes_to_staff(backoffice, conversation) -> None:
    conv = conversation()
    await verified(conv, "40817270", "maria@yandex.ru")
    assert conv.slots["flow_block"] == "refund_window_passed" and conv.active_form is None
    turn = await conv.run(ActionSubmitRefund())
    assert turn.responses[0] == "utter_refund_window_passed" and turn.messages[0]["days"] == "20"
    assert turn.responses[1] in ("utter_handoff_online", "utter_handoff_offline")
    assert handed_over(turn)
    (ticket,) = backoffice.tickets(conv.sender_id)
    assert ticket["category"] == "human_decision" and ticket["priority"] == "normal"
    assert ticket["subject"] == "Возврат после 14 дней: письменное заявление" and ticket["order_id"] == "40817270"
    assert "refund_window_passed" in ticket["summary"] and "заказ 40817270" in ticket["summary"]
    assert [turn["sender"] for turn in ticket["transcript"]].count("customer") == 3
    assert backoffice.refunds_created("40817270") == []


@pytest.mark.parametrize(
    "order_id, check, response, balance",
    [
        ("40817281", "oleg@gmail.com", "utter_refund_not_allowed_activated", None),
        ("40817292", "8899", "utter_refund_not_allowed_partially_used", f"1{NBSP}800"),
        ("40817347", "dmitry@gmail.com", "utter_refund_not_allowed_used", None),
        ("40817303", "Sergey@Yandex.ru", "utter_refund_not_allowed_expired", None),
    ],
    ids=["activated", "partially-used", "used", "expired"],
)
async def test_refusals_explained_without_a_ticket(backoffice, conversation, order_id, check, response, balance) -> None:
    conv = conversation()
    await verified(conv, order_id, check)
    assert conv.slots["flow_block"] == response.removeprefix("utter_") and conv.active_form is None
    turn = await conv.run(ActionSubmitRefund())
    assert turn.responses == [response] and not handed_over(turn)
    if balance:
        assert turn.messages[0]["balance"] == balance
    assert_flow_ended(conv)
    assert backoffice.tickets(conv.sender_id) == []
    assert backoffice.refunds_created(order_id) == [] and backoffice.order(order_id)["refund"] is None


async def test_corporate_order_goes_to_the_manager(backoffice, conversation) -> None:
    conv = conversation()
    await verified(conv, "40817314", "hr@romashka.ru")
    assert conv.slots["flow_block"] == "refund_b2b_manager_only"
    turn = await conv.run(ActionSubmitRefund())
    assert turn.responses[0] == "utter_refund_b2b_manager_only" and handed_over(turn)
    (ticket,) = backoffice.tickets(conv.sender_id)
    assert ticket["category"] == "human_decision" and ticket["subject"] == "Возврат по корпоративному заказу"
    assert backoffice.refunds_created("40817314") == []


async def test_already_refunded_order_shows_the_existing_refund(backoffice, conversation) -> None:
    existing = backoffice.order("40817369")["refund"]
    conv = conversation()
    await verified(conv, "40817369", "kirill@mail.ru")
    assert conv.slots["flow_block"] == "refund_already_exists"
    turn = await conv.run(ActionSubmitRefund())
    assert turn.responses == ["utter_refund_exists"] and not handed_over(turn)
    assert turn.messages[0]["refund_id"] == str(existing["id"]) and turn.messages[0]["order_id"] == "40817369"
    assert backoffice.refunds_created("40817369") == []
    assert backoffice.order("40817369")["refund"]["id"] == existing["id"]


async def test_customer_says_no(backoffice, conversation) -> None:
    conv = conversation()
    await verified(conv, "40817263", "4567")
    assert conv.requested == "refund_confirmed"
    turn = await conv.say("нет, не надо", intent="deny")
    assert conv.slots["refund_confirmed"] is False and conv.active_form is None
    turn = await conv.run(ActionSubmitRefund())
    assert turn.responses == ["utter_refund_declined"]
    assert_flow_ended(conv)
    assert backoffice.refunds_created("40817263") == [] and backoffice.order("40817263")["refund"] is None


# --- corrections and the form's rules ---------------------------------------------------------


async def test_another_order_number_starts_the_checks_again(backoffice, conversation) -> None:
    conv = conversation()
    await verified(conv, "40817263", "ivan@mail.ru")
    assert conv.requested == "refund_confirmed" and conv.slots["buyer_check"] == "ivan@mail.ru"

    turn = await conv.say("нет, заказ другой: 40817270", intent="deny")
    assert conv.slots["order_id"] == "40817270" and conv.slots["order_info"]["order_id"] == "40817270"
    assert conv.slots["buyer_check"] is None and conv.slots["refund_confirmed"] is None
    assert conv.active_form == "refund_form" and conv.requested == "buyer_check"
    assert turn.responses == ["utter_ask_buyer_check"]

    # the check now concerns the new order: Ivan's e-mail no longer fits
    turn = await conv.say("ivan@mail.ru")
    assert turn.responses[0] == "utter_buyer_check_failed"
    await conv.say("maria@yandex.ru")
    assert conv.slots["flow_block"] == "refund_window_passed"


async def test_correction_while_the_buyer_check_is_asked(backoffice, conversation) -> None:
    conv = conversation()
    await start_refund(conv)
    await conv.say("40817263")
    turn = await conv.say("ой, заказ 40817292")
    assert conv.slots["order_id"] == "40817292" and conv.requested == "buyer_check"
    assert conv.slots["verification_failures"] is None
    assert "utter_buyer_check_failed" not in turn.responses


async def test_a_resumed_form_does_not_read_the_digression_as_an_answer(backoffice, conversation) -> None:
    # (the form's own pass on the digression is skipped here: what matters is the resumed pass)
    conv = conversation()
    await start_refund(conv)
    await conv.say("40817263")
    conv.user("а если я напишу ivan@mail.ru, это безопасно?", intent="knowledge_question")
    await conv.utter("utter_kb_no_answer")
    resumed = await conv.run(ActionResumeFlow())
    assert resumed.events == [{"event": "followup", "timestamp": None, "name": "refund_form"}]
    turn = await conv.resume()
    assert conv.slots["buyer_check"] is None and conv.slots["verification_failures"] is None
    assert turn.responses == ["utter_ask_buyer_check"]


@pytest.mark.parametrize("form_run", [True, False], ids=["as-rasa-calls-it", "plain-listen-user-turn"])
async def test_validation_reads_a_fresh_answer(backoffice, make_tracker, domain, form_run) -> None:
    known = {"order_id": "40817263", "order_info": {"order_id": "40817263", "amount": "3000"}}
    tracker = make_tracker("IVAN@mail.ru", form="refund_form", requested_slot="buyer_check", slots=known,
                           form_run=form_run)
    dispatcher = CollectingDispatcher()
    events = await ValidateRefundForm().run(dispatcher, tracker, domain)
    assert {e["name"]: e["value"] for e in events}["buyer_check"] == "ivan@mail.ru"
    assert dispatcher.messages == []


async def test_validation_does_not_reread_an_answered_digression(backoffice, make_tracker, domain) -> None:
    known = {"order_id": "40817263", "order_info": {"order_id": "40817263", "amount": "3000"}}
    digression = [{"event": "action", "name": "action_answer_question"},
                  {"event": "bot", "text": "Хороший вопрос."},
                  {"event": "action", "name": "action_resume_flow"},
                  {"event": "followup", "name": "refund_form"}]
    tracker = make_tracker("а ivan@mail.ru подойдёт?", intent="knowledge_question", form="refund_form",
                           requested_slot="buyer_check", slots=known, events_after=digression)
    events = await ValidateRefundForm().run(CollectingDispatcher(), tracker, domain)
    assert "buyer_check" not in {e["name"] for e in events}


async def test_required_slots_are_empty_once_the_flow_is_blocked(domain, conversation) -> None:
    form = ValidateRefundForm()
    slots = domain["forms"]["refund_form"]["required_slots"]
    conv = conversation()
    assert await form.required_slots(slots, CollectingDispatcher(), conv.tracker(), domain) == slots
    for block in ("verification_failed", "backoffice_unavailable", "refund_window_passed"):
        tracker = conv.tracker(slots={"flow_block": block})
        assert await form.required_slots(slots, CollectingDispatcher(), tracker, domain) == []

