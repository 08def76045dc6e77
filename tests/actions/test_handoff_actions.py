"""Asking for a human, complaints, turns not understood, resume / cancel — and the tickets they
leave in the real back office (escalation.yml says which)."""
from __future__ import annotations

from actions.handoff_actions import (
    ActionCancelFlow,
    ActionHandoff,
    ActionRequestHuman,
    ActionResumeFlow,
)

HANDOFF = ("utter_handoff_online", "utter_handoff_offline")


def handed_over(turn) -> bool:
    return turn.handed_over


async def test_request_human_clarifies_first_then_hands_over(backoffice, conversation) -> None:
    conv = conversation()
    conv.user("позовите оператора", intent="request_human")
    first = await conv.run(ActionRequestHuman())
    assert first.responses == ["utter_request_human_clarify"]
    assert first.slots() == {"human_requested": True} and not handed_over(first)
    assert backoffice.tickets(conv.sender_id) == []

    conv.user("оператора!", intent="request_human")
    second = await conv.run(ActionRequestHuman())
    response, marker = second.responses
    assert marker is None  # the machine-readable hand-over marker for the channel, no reply template
    assert response in HANDOFF and handed_over(second) and conv.handed_over
    (ticket,) = backoffice.tickets(conv.sender_id)
    assert ticket["category"] == "human_request" and ticket["priority"] == "normal"
    assert ticket["subject"] == "Клиент просит живого сотрудника" and ticket["conversation_id"] == conv.sender_id
    assert second.messages[0]["ticket_id"] == str(ticket["id"])
    assert second.messages[1]["custom"]["handoff"]["ticket_id"] == str(ticket["id"])
    if response == "utter_handoff_online":
        assert ticket["staff_online"] is True
    assert conv.slots["handoff_ticket_id"] == str(ticket["id"]) and conv.slots["human_requested"] is None
    assert [t["text"] for t in ticket["transcript"] if t["sender"] == "customer"] == ["позовите оператора", "оператора!"]


async def test_request_human_inside_a_form_offers_to_finish_and_resumes(backoffice, conversation) -> None:
    conv = conversation()
    await conv.start("refund_form", "хочу вернуть деньги", "refund_request")
    conv.user("а можно оператора?", intent="request_human")
    turn = await conv.run(ActionRequestHuman())
    assert turn.responses == ["utter_request_human_clarify_in_flow"] and conv.slots["human_requested"] is True
    resumed = await conv.run(ActionResumeFlow())
    assert resumed.events == [{"event": "followup", "timestamp": None, "name": "refund_form"}]
    turn = await conv.resume()
    assert turn.responses == ["utter_ask_refund_form_order_id"]

    conv.user("нет, оператора", intent="request_human")
    turn = await conv.run(ActionRequestHuman())
    assert turn.responses[0] in HANDOFF and handed_over(turn) and conv.active_form is None
    assert (await conv.run(ActionResumeFlow())).events == []
    (ticket,) = backoffice.tickets(conv.sender_id)
    assert ticket["category"] == "human_request"


async def test_complaint_is_a_high_priority_ticket(backoffice, conversation) -> None:
    conv = conversation()
    conv.user("это безобразие, деньги списали дважды", intent="complaint")
    turn = await conv.run(ActionHandoff())
    assert turn.responses[0] == "utter_complaint" and turn.responses[1] in HANDOFF and handed_over(turn)
    (ticket,) = backoffice.tickets(conv.sender_id)
    assert ticket["priority"] == "high" and ticket["category"] == "complaint"
    assert ticket["subject"] == "Жалоба клиента"


async def test_a_complaint_inside_a_form_is_not_read_as_an_answer(backoffice, conversation) -> None:
    conv = conversation()
    await conv.start("refund_form", "верните деньги", "refund_request")
    await conv.say("40817263")
    assert conv.requested == "buyer_check"
    turn = await conv.say("третий раз пишу, верните 3000 рублей!", intent="complaint")
    assert turn.rejected and turn.messages == []  # the form lets the policies handle it
    assert conv.slots["verification_failures"] is None and conv.slots["buyer_check"] is None
    handed = await conv.run(ActionHandoff())
    assert handed.responses[0] == "utter_complaint" and handed_over(handed)
    (ticket,) = backoffice.tickets(conv.sender_id)
    assert ticket["priority"] == "high" and ticket["order_id"] == "40817263"


async def test_asking_for_a_human_inside_a_form_is_not_read_as_an_answer(backoffice, conversation) -> None:
    conv = conversation()
    await conv.start("balance_form", "баланс DRM-A1B2-C3D4-7Q2K", "check_balance")
    turn = await conv.say("позовите оператора, я 2 раза вводил", intent="request_human")
    assert turn.rejected and turn.messages == [] and conv.slots["pin"] is None
    turn = await conv.run(ActionRequestHuman())
    assert turn.responses == ["utter_request_human_clarify_in_flow"]


async def test_the_ticket_transcript_masks_the_pin(backoffice, conversation) -> None:
    conv = conversation()
    await conv.start("balance_form", "баланс DRM-A1B2-C3D4-7Q2K", "check_balance")
    assert conv.requested == "pin"
    turn = await conv.say("мой пин 9876")
    assert turn.responses[0] == "utter_pin_invalid"
    conv.user("оператор", intent="request_human")
    await conv.run(ActionRequestHuman())
    conv.user("оператор!", intent="request_human")
    await conv.run(ActionRequestHuman())
    (ticket,) = backoffice.tickets(conv.sender_id)
    customer = [t["text"] for t in ticket["transcript"] if t["sender"] == "customer"]
    assert customer == ["баланс DRM-A1B2-C3D4-7Q2K", "мой пин ****", "оператор", "оператор!"]
    assert "9876" not in ticket["summary"] and "9876" not in str(ticket["transcript"])
    assert "DRM-****-****-7Q2K" in ticket["summary"]


async def test_resume_does_nothing_outside_a_form(conversation) -> None:
    conv = conversation()
    conv.user("спасибо", intent="thank")
    turn = await conv.run(ActionResumeFlow())
    assert turn.events == [] and turn.messages == []


async def test_cancel_stops_the_form_and_forgets_its_answers(backoffice, conversation) -> None:
    conv = conversation()
    await conv.start("refund_form", "верните деньги за заказ 40817263", "refund_request")
    assert conv.slots["order_id"] == "40817263" and conv.slots["order_info"] is not None
    conv.user("ivan@mail.ru", intent="inform")  # a contact of the customer's: kept
    conv.user("отмена", intent="cancel")
    turn = await conv.run(ActionCancelFlow())
    assert turn.responses == ["utter_flow_cancelled"]
    assert {"event": "active_loop", "timestamp": None, "name": None} in turn.events
    assert conv.active_form is None and conv.requested is None
    for slot in ("order_id", "order_info", "buyer_check", "flow_block", "human_requested"):
        assert conv.slots[slot] is None, slot
    assert conv.slots["email"] == "ivan@mail.ru"
    assert backoffice.refunds_created("40817263") == []


async def test_cancel_outside_a_form(conversation) -> None:
    conv = conversation()
    conv.user("отмена", intent="cancel")
    turn = await conv.run(ActionCancelFlow())
    assert turn.responses == ["utter_cancel"]



# --- the actions and domain.yml agree ---------------------------------------------------------


def test_every_action_is_in_the_domain_and_every_domain_action_exists(domain) -> None:
    from actions.knowledge_actions import NOT_IN_THE_DIALOGUE
    from tests.actions.conftest import ACTIONS

    # an action may carry options (`- validate_refund_form: {send_domain: true}`)
    names = {next(iter(item)) if isinstance(item, dict) else item for item in domain["actions"]}
    assert set(ACTIONS) - set(NOT_IN_THE_DIALOGUE) == names
    assert not set(NOT_IN_THE_DIALOGUE) & names


def test_every_response_chosen_by_code_exists(domain) -> None:
    from actions.refund_actions import EXPLAINED_REFUSALS, STAFF_DECIDES
    from backoffice.models import CERTIFICATE_STATUSES

    names = [f"utter_{code}" for code in (*EXPLAINED_REFUSALS, *STAFF_DECIDES)]
    names += [f"utter_certificate_{status}" for status in CERTIFICATE_STATUSES]
    assert [name for name in names if name not in domain["responses"]] == []
