"""The flows when the back office is down (a closed port), slow (replies after the timeout) or
failing (5xx): no crash, the flow stops with ``flow_block=backoffice_unavailable``, the customer is
told, and a hand-over that cannot create its ticket says so and does not hand the conversation over. Refunds
stay exactly-once across outages and lost replies."""
from __future__ import annotations

import time

from rasa_sdk.executor import CollectingDispatcher

from actions.b2b_actions import ActionSubmitB2b
from actions.certificate_actions import ActionSubmitBalance
from actions.handoff_actions import ActionRequestHuman
from actions.refund_actions import ActionSubmitRefund
from actions.resend_actions import ActionSubmitResend
from tests.scripted_http import Scripted

UNAVAILABLE = "backoffice_unavailable"


def assert_told_and_not_handed_over(turn, conv) -> None:
    assert turn.responses == ["utter_backoffice_unavailable", "utter_handoff_failed"]
    assert not turn.handed_over and not conv.handed_over
    assert conv.active_form is None and conv.slots["flow_block"] is None


async def confirmed_refund(conv, check: str = "ivan@mail.ru") -> None:
    await conv.start("refund_form", "верните деньги", "refund_request")
    await conv.say("40817263")
    await conv.say(check)
    assert conv.requested == "refund_confirmed"
    await conv.say("да", intent="affirm")
    assert conv.slots["refund_confirmed"] is True and conv.active_form is None


async def test_down_refund_validation_and_submit(point_actions, closed_url, conversation) -> None:
    point_actions(closed_url, timeout=0.5, retries=1)
    conv = conversation()
    await conv.start("refund_form", "верните деньги", "refund_request")
    turn = await conv.say("40817263")
    assert conv.slots["flow_block"] == UNAVAILABLE and conv.slots["order_id"] == "40817263"
    assert turn.responses == [] and conv.active_form is None  # the form completes; the submit explains
    submitted = await conv.run(ActionSubmitRefund())
    assert_told_and_not_handed_over(submitted, conv)


async def test_slow_certificate_lookup(point_actions, scripted, conversation) -> None:
    scripted.script(default=Scripted(200, {}, delay=1.5))
    point_actions(scripted.url, timeout=0.5, retries=0)
    conv = conversation()
    await conv.start("balance_form", "баланс DRM-A1B2-C3D4-7Q2K", "check_balance")
    started = time.monotonic()
    turn = await conv.say("1234")
    assert time.monotonic() - started < 1.4
    assert conv.slots["flow_block"] == UNAVAILABLE and conv.slots["pin"] is None
    assert turn.responses == [] and conv.active_form is None
    assert [(r.method, r.path) for r in scripted.requests] == [("POST", "/certificates/lookup")]
    submitted = await conv.run(ActionSubmitBalance())
    assert_told_and_not_handed_over(submitted, conv)


async def test_5xx_resend(point_actions, scripted, conversation) -> None:
    point_actions(scripted.url, timeout=2, retries=1)
    conv = conversation()
    await conv.start("resend_form", "не пришёл сертификат", "resend_certificate")
    turn = await conv.say("40817358")
    assert conv.slots["flow_block"] == UNAVAILABLE and conv.active_form is None and turn.responses == []
    assert [(r.method, r.path) for r in scripted.requests] == [("GET", "/orders/40817358")] * 2  # retried once
    submitted = await conv.run(ActionSubmitResend())
    assert_told_and_not_handed_over(submitted, conv)


async def test_5xx_b2b_ticket(point_actions, scripted, conversation) -> None:
    point_actions(scripted.url, timeout=2, retries=1)
    conv = conversation()
    await conv.start("b2b_form", "нужен УПД, ИНН 7712345671, заказ 40817314", "b2b_documents")
    assert conv.active_form is None
    submitted = await conv.run(ActionSubmitB2b())
    assert_told_and_not_handed_over(submitted, conv)
    assert {r.path for r in scripted.requests} == {"/tickets"}


async def test_hand_over_without_a_ticket_does_not_hand_over(point_actions, scripted, conversation) -> None:
    point_actions(scripted.url, timeout=2, retries=1)
    conv = conversation()
    conv.user("оператор", intent="request_human")
    await conv.run(ActionRequestHuman())
    conv.user("оператор!", intent="request_human")
    turn = await conv.run(ActionRequestHuman())
    assert turn.responses == ["utter_handoff_failed"]
    assert not turn.handed_over and not conv.handed_over and conv.slots["handoff_ticket_id"] is None
    # the ticket call carries an idempotency key, so it is retried
    assert [(r.method, r.path) for r in scripted.requests] == [("POST", "/tickets")] * 2
    # the customer can ask again (the handbook: the bot tells them to), and it works once the CRM is back
    assert conv.slots["human_requested"] is True


async def test_refund_while_down_then_up_is_made_once(fresh_backoffice, point_actions, closed_url, conversation) -> None:
    conv = conversation()
    await confirmed_refund(conv)
    point_actions(closed_url, timeout=0.5, retries=1)
    down = await conv.run(ActionSubmitRefund())
    assert_told_and_not_handed_over(down, conv)
    assert fresh_backoffice.refunds_created("40817263") == []

    point_actions(fresh_backoffice.url)
    await confirmed_refund(conv, "4567")
    done = await conv.run(ActionSubmitRefund())
    assert done.responses == ["utter_refund_done"]
    (created,) = fresh_backoffice.refunds_created("40817263")
    assert created["entity_id"] == "40817263"
    assert fresh_backoffice.order("40817263")["refund"]["id"] == int(done.messages[0]["refund_id"])


async def test_refund_whose_reply_was_lost_is_not_made_twice(fresh_backoffice, point_actions, scripted,
                                                              conversation) -> None:
    conv = conversation()
    await confirmed_refund(conv)
    before_submit = conv.tracker()

    scripted.proxy(fresh_backoffice.url, delay=1.0)  # the back office acts, the reply comes too late
    point_actions(scripted.url, timeout=0.4, retries=1)
    lost = await conv.run(ActionSubmitRefund())
    assert lost.responses[0] == "utter_backoffice_unavailable" and not lost.handed_over
    assert [r.path for r in scripted.requests if r.method == "POST"].count("/refunds") == 2  # retried, same key
    (made,) = fresh_backoffice.refunds_created("40817263")

    # the same submit again once the service answers: the refund that exists, not a second one
    point_actions(fresh_backoffice.url)
    dispatcher = CollectingDispatcher()
    await ActionSubmitRefund().run(dispatcher, before_submit, conv.domain)
    assert [m["response"] for m in dispatcher.messages] == ["utter_refund_exists"]
    refund = fresh_backoffice.order("40817263")["refund"]
    assert dispatcher.messages[0]["refund_id"] == str(refund["id"])
    assert fresh_backoffice.refunds_created("40817263") == [made]
