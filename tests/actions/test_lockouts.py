"""When the back office has locked a certificate's PIN checks or an order's buyer checks (too many
failed tries, from any conversation: `429 too_many_attempts`), the assistant says so plainly, with
the time, and hands the conversation to a human whose ticket says why — in every flow that checks."""
from __future__ import annotations

import json

from actions.certificate_actions import ActionSubmitBalance
from actions.refund_actions import ActionSubmitRefund
from actions.resend_actions import ActionSubmitResend
from tests.actions.test_backoffice_client import TICKET
from tests.scripted_http import Scripted

LOCKED = Scripted(429, {"error": {"code": "too_many_attempts", "message": "locked", "retry_after_seconds": 530}})
ORDER = {
    "id": "40817263", "created_at": "2025-03-09T08:00:00Z", "buyer_email": "i***@mail.ru",
    "buyer_phone": "+7***4567", "is_b2b": False, "company_inn": None, "payment_method": "card",
    "amount": 3000, "days_since_purchase": 3, "certificates": [], "refund": None,
}


def ticket_reason(scripted) -> str:
    posted = [json.loads(r.body) for r in scripted.requests if r.path == "/tickets"]
    assert posted, [r.path for r in scripted.requests]
    return posted[-1]["subject"]


async def test_a_locked_pin_check_is_explained_and_handed_over(point_actions, scripted, conversation) -> None:
    scripted.script(LOCKED, Scripted(201, TICKET))
    point_actions(scripted.url, retries=0)
    conv = conversation()
    await conv.start("balance_form", "баланс DRM-A1B2-C3D4-7Q2K", "check_balance")
    turn = await conv.say("1234")
    said = turn.message("utter_too_many_attempts")
    assert said["minutes"] == "9"  # 530 s, rounded up
    assert conv.slots["flow_block"] == "too_many_attempts" and conv.slots["pin"] is None
    submitted = await conv.run(ActionSubmitBalance())
    assert submitted.handed_over and submitted.responses[0].startswith("utter_handoff")
    assert "заблокирована" in ticket_reason(scripted)


async def test_a_locked_buyer_check_is_explained_and_handed_over(point_actions, scripted, conversation) -> None:
    scripted.script(Scripted(200, ORDER), LOCKED, Scripted(201, TICKET))
    point_actions(scripted.url, retries=0)
    conv = conversation()
    await conv.start("refund_form", "верните деньги", "refund_request")
    await conv.say("40817263")
    turn = await conv.say("ivan@mail.ru")
    assert turn.responses == ["utter_too_many_attempts"] and conv.slots["flow_block"] == "too_many_attempts"
    submitted = await conv.run(ActionSubmitRefund())
    assert submitted.handed_over and "заблокирована" in ticket_reason(scripted)
    assert not any(r.path.endswith("/refunds") for r in scripted.requests)  # nothing was refunded


async def test_a_lock_that_appears_at_the_refund_itself(point_actions, scripted, conversation) -> None:
    conv = conversation()
    conv.slots.update(order_id="40817263", buyer_check="ivan@mail.ru", refund_confirmed=True,
                      order_info={"amount": 3000})
    scripted.script(LOCKED, Scripted(201, TICKET))
    point_actions(scripted.url, retries=0)
    submitted = await conv.run(ActionSubmitRefund())
    assert submitted.responses[0] == "utter_too_many_attempts" and submitted.handed_over


async def test_a_lock_at_a_resend_to_a_new_address(point_actions, scripted, conversation) -> None:
    conv = conversation()
    conv.slots.update(order_id="40817336", resend_address="elena.new@gmail.com", buyer_check="4433")
    scripted.script(LOCKED, Scripted(201, TICKET))
    point_actions(scripted.url, retries=0)
    submitted = await conv.run(ActionSubmitResend())
    assert submitted.responses[0] == "utter_too_many_attempts" and submitted.handed_over
