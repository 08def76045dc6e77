"""The transition table and every transition of the service — legal, illegal, idempotent."""
from __future__ import annotations

import itertools

import pytest

from handoff.errors import (
    AlreadyTaken,
    ConversationNotFound,
    HandoffError,
    IllegalTransition,
    InvalidInput,
    NotOwner,
)
from handoff.machine import (
    IDEMPOTENT,
    TRANSITIONS,
    Action,
    HandoffService,
    Route,
    State,
    bot_may_send_in,
    is_noop,
    next_state,
    route_in,
)

SUMMARY = {"intent": "refund_request", "slots": {"order_id": "40817263"}, "reason": "human_decision"}
TRANSCRIPT = [
    {"sender": "customer", "text": "Хочу вернуть деньги"},
    {"sender": "bot", "text": "Назовите номер заказа"},
    {"sender": "customer", "text": "40817263"},
]


# --- the pure table ---------------------------------------------------------------------------


def test_the_table_is_the_issue_cycle_plus_close_and_reopen():
    assert next_state(State.BOT, Action.HAND_OVER) is State.WAITING
    assert next_state(State.WAITING, Action.TAKE) is State.OPERATOR
    assert next_state(State.OPERATOR, Action.RETURN_TO_BOT) is State.BOT
    for state in (State.BOT, State.WAITING, State.OPERATOR):
        assert next_state(state, Action.CLOSE) is State.CLOSED
    assert next_state(State.CLOSED, Action.REOPEN) is State.BOT
    assert len(TRANSITIONS) == 7


@pytest.mark.parametrize(
    "state, action",
    [
        (state, action)
        for state, action in itertools.product(State, Action)
        if (state, action) not in TRANSITIONS
    ],
)
def test_every_other_pair_is_illegal(state, action):
    with pytest.raises(IllegalTransition) as raised:
        next_state(state, action)
    assert raised.value.state == state.value and raised.value.action == action.value
    assert raised.value.code == "illegal_transition" and raised.value.http_status == 409


def test_idempotent_pairs_are_not_transitions():
    assert not IDEMPOTENT & set(TRANSITIONS)
    assert is_noop("waiting", "hand_over") and is_noop("operator", "hand_over") and is_noop("closed", "close")
    assert not is_noop("bot", "hand_over")


def test_only_the_bot_state_lets_the_bot_speak_and_routes_to_it():
    assert [bot_may_send_in(state) for state in State] == [True, False, False, False]
    assert [route_in(state) for state in State] == [Route.BOT, Route.OPERATOR, Route.OPERATOR, Route.BOT]


# --- the service: the happy cycle -------------------------------------------------------------


def test_full_cycle_bot_waiting_operator_bot(service: HandoffService, clock):
    assert service.customer_message("c1", "Хочу вернуть деньги") is Route.BOT
    assert service.record_bot_message("c1", "Назовите номер заказа")
    view = service.hand_over("c1", 42, SUMMARY, TRANSCRIPT)
    assert view.state is State.WAITING and view.ticket_id == "42"
    assert view.summary == {
        "intent": "refund_request",
        "slots": {"order_id": "40817263"},
        "last_messages": ["Хочу вернуть деньги", "40817263"],  # from the transcript
        "reason": "human_decision",
    }
    assert list(view.handover_transcript) == TRANSCRIPT
    assert view.waiting_since == clock.now
    assert not service.may_bot_send("c1")

    clock.advance(minutes=3)
    assert service.customer_message("c1", "Ау?") is Route.OPERATOR
    [item] = service.queue()
    assert (item.conversation_id, item.ticket_id, item.waiting_seconds, item.unread) == ("c1", "42", 180.0, 1)
    assert item.summary["intent"] == "refund_request"
    assert item.to_dict()["waiting_since"] == "2025-03-12T08:00:00Z"

    view = service.take("c1", "anna")
    assert (view.state, view.operator_id, view.taken_at, view.waiting_since) == (State.OPERATOR, "anna", clock.now, None)
    assert service.queue() == [] and [c.id for c in service.owned_by("anna")] == ["c1"]
    assert not service.may_bot_send("c1")
    assert service.customer_message("c1", "Заказ 40817263") is Route.OPERATOR

    reply = service.operator_reply("c1", "anna", "Здравствуйте, это Анна")
    assert (reply.sender, reply.delivered, reply.operator_id) == ("operator", False, "anna")

    view = service.return_to_bot("c1", "anna")
    assert (view.state, view.operator_id, view.taken_at) == (State.BOT, None, None)
    assert service.may_bot_send("c1")
    pending = service.pending_operator_messages("c1")
    assert [(m.sender, m.text) for m in pending] == [("operator", "Здравствуйте, это Анна"), ("system", "returned")]
    assert service.mark_delivered(m.id for m in pending) == 2
    assert service.mark_delivered(m.id for m in pending) == 0  # idempotent
    assert service.pending_operator_messages("c1") == []
    assert service.customer_message("c1", "Спасибо") is Route.BOT

    transcript = service.conversation("c1").messages
    assert [(m.sender, m.text) for m in transcript] == [
        ("customer", "Хочу вернуть деньги"),
        ("bot", "Назовите номер заказа"),
        ("system", "handed_over"),
        ("customer", "Ау?"),
        ("system", "taken"),
        ("customer", "Заказ 40817263"),
        ("operator", "Здравствуйте, это Анна"),
        ("system", "returned"),
        ("customer", "Спасибо"),
    ]
    # customer lines: the bot got the first and the last; the one that waited in the queue was
    # shown to the operator on take; the one written to the operator waits for the console
    assert [m.delivered for m in transcript if m.sender == "customer"] == [True, True, False, True]

    history = [(h.from_state, h.to_state, h.actor) for h in service.history("c1")]
    assert history == [
        (None, State.BOT, "customer"),
        (State.BOT, State.WAITING, "bot"),
        (State.WAITING, State.OPERATOR, "anna"),
        (State.OPERATOR, State.BOT, "anna"),
    ]
    versions = [h.version for h in service.history("c1")]
    assert versions == sorted(versions) and versions[-1] == service.conversation("c1").version


def test_bot_messages_are_held_back_unless_the_bot_owns_the_conversation(service: HandoffService):
    assert service.may_bot_send("unknown")  # a new conversation belongs to the bot
    service.hand_over("c1", "7", SUMMARY, [])
    gate = service.record_bot_message("c1", "Чем ещё помочь?")
    assert not gate and gate.state is State.WAITING and gate.message_id is None
    service.take("c1", "anna")
    assert not service.record_bot_message("c1", "Чем ещё помочь?")
    service.close("c1", "anna")
    assert not service.record_bot_message("c1", "Чем ещё помочь?")
    assert [m.sender for m in service.conversation("c1").messages if m.sender == "bot"] == []


def test_closed_conversation_reopens_to_the_bot_when_the_customer_writes(service: HandoffService):
    service.customer_message("c1", "Привет")
    service.hand_over("c1", None, None, None)
    service.take("c1", "anna")
    view = service.close("c1", "anna", reason="resolved")
    assert view.state is State.CLOSED and view.operator_id is None
    assert [m.text for m in service.pending_operator_messages("c1")] == ["closed"]
    assert service.close("c1", "someone") .state is State.CLOSED  # no-op, any actor
    assert service.customer_message("c1", "Снова я") is Route.BOT
    assert service.may_bot_send("c1")
    assert [(h.from_state, h.to_state, h.reason) for h in service.history("c1")][-2:] == [
        (State.OPERATOR, State.CLOSED, "resolved"),
        (State.CLOSED, State.BOT, "the customer wrote"),
    ]


def test_close_from_bot_and_from_waiting(service: HandoffService):
    service.customer_message("c1", "Привет")
    assert service.close("c1", "system").state is State.CLOSED
    service.customer_message("c2", "Привет")
    service.hand_over("c2", "1", {}, [])
    assert service.close("c2", "boris", reason="spam").state is State.CLOSED  # any operator, from the queue
    assert service.queue() == []


# --- idempotency ------------------------------------------------------------------------------


def test_hand_over_is_idempotent_when_waiting_or_with_an_operator(service: HandoffService):
    first = service.hand_over("c1", "1", SUMMARY, TRANSCRIPT)
    again = service.hand_over("c1", "2", {"intent": "complaint"}, [])
    assert (again.ticket_id, again.summary, again.version) == ("1", first.summary, first.version)
    service.take("c1", "anna")
    still = service.hand_over("c1", "3", {}, [])
    assert (still.state, still.operator_id, still.ticket_id) == (State.OPERATOR, "anna", "1")
    assert [h.to_state for h in service.history("c1")] == [State.BOT, State.WAITING, State.OPERATOR]


def test_take_by_the_owner_again_is_a_noop(service: HandoffService):
    service.hand_over("c1", "1", SUMMARY, [])
    first = service.take("c1", "anna")
    assert service.take("c1", "anna").version == first.version


# --- illegal moves: typed errors --------------------------------------------------------------


def test_second_operator_gets_a_conflict(service: HandoffService):
    service.hand_over("c1", "1", SUMMARY, [])
    service.take("c1", "anna")
    with pytest.raises(AlreadyTaken) as raised:
        service.take("c1", "boris")
    assert raised.value.owner == "anna" and raised.value.code == "already_taken" and raised.value.http_status == 409
    assert raised.value.to_dict()["error"]["code"] == "already_taken"


@pytest.mark.parametrize("setup", ["bot", "closed"])
def test_take_needs_a_waiting_conversation(service: HandoffService, setup):
    service.customer_message("c1", "Привет")
    if setup == "closed":
        service.close("c1", "system")
    with pytest.raises(IllegalTransition):
        service.take("c1", "anna")


def test_only_the_owner_replies_returns_and_closes(service: HandoffService):
    service.hand_over("c1", "1", SUMMARY, [])
    service.take("c1", "anna")
    for call in (
        lambda: service.operator_reply("c1", "boris", "Я тоже тут"),
        lambda: service.return_to_bot("c1", "boris"),
        lambda: service.close("c1", "boris"),
    ):
        with pytest.raises(NotOwner) as raised:
            call()
        assert raised.value.http_status == 403
    assert service.conversation("c1").state is State.OPERATOR


@pytest.mark.parametrize("state", ["bot", "waiting", "closed"])
def test_operator_reply_and_return_need_operator_state(service: HandoffService, state):
    service.customer_message("c1", "Привет")
    if state == "waiting":
        service.hand_over("c1", "1", SUMMARY, [])
    if state == "closed":
        service.close("c1", "system")
    with pytest.raises(IllegalTransition):
        service.operator_reply("c1", "anna", "Здравствуйте")
    with pytest.raises(IllegalTransition):
        service.return_to_bot("c1", "anna")


def test_hand_over_of_a_closed_conversation_is_illegal(service: HandoffService):
    service.customer_message("c1", "Привет")
    service.close("c1", "system")
    with pytest.raises(IllegalTransition):
        service.hand_over("c1", "1", SUMMARY, [])
    assert service.conversation("c1").state is State.CLOSED


def test_unknown_conversations_are_not_found(service: HandoffService):
    for call in (
        lambda: service.take("nope", "anna"),
        lambda: service.operator_reply("nope", "anna", "x"),
        lambda: service.return_to_bot("nope", "anna"),
        lambda: service.close("nope", "anna"),
        lambda: service.conversation("nope"),
    ):
        with pytest.raises(ConversationNotFound) as raised:
            call()
        assert raised.value.http_status == 404


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.customer_message("", "text"),
        lambda s: s.customer_message("x" * 129, "text"),
        lambda s: s.customer_message("c1", "   "),
        lambda s: s.customer_message("c1", "x" * 4001),
        lambda s: s.record_bot_message("c1", None),
        lambda s: s.hand_over("c1", "1", "not a mapping", []),
        lambda s: s.hand_over("c1", "1", {"slots": ["a"]}, []),
        lambda s: s.hand_over("c1", "1", {"intent": 5}, []),
        lambda s: s.hand_over("c1", "1", {"last_messages": "one string"}, []),
        lambda s: s.hand_over("c1", "1", {"slots": {"x": object()}}, []),
        lambda s: s.hand_over("c1", "1", {}, "transcript as a string"),
        lambda s: s.hand_over("c1", "1", {}, [{"sender": "alien", "text": "hi"}]),
        lambda s: s.hand_over("c1", True, {}, []),
        lambda s: s.take("c1", " "),
    ],
)
def test_invalid_input_is_rejected_before_anything_is_stored(service: HandoffService, call):
    with pytest.raises(InvalidInput) as raised:
        call(service)
    assert isinstance(raised.value, HandoffError) and raised.value.http_status == 400
    with pytest.raises(ConversationNotFound):
        service.conversation("c1")


# --- reading ----------------------------------------------------------------------------------


def test_queue_is_oldest_first_with_waiting_time(service: HandoffService, clock):
    service.hand_over("late", "2", {"intent": "complaint"}, [])
    clock.advance(minutes=1)
    service.hand_over("later", "3", {}, [])
    clock.advance(minutes=1)
    queue = service.queue()
    assert [(q.conversation_id, q.waiting_seconds) for q in queue] == [("late", 120.0), ("later", 60.0)]
    assert queue[0].to_dict()["summary"] == {"intent": "complaint", "slots": {}, "last_messages": []}


def test_messages_since_is_a_cursor_over_the_live_transcript(service: HandoffService):
    service.customer_message("c1", "один")
    first = service.messages_since("c1")
    service.customer_message("c1", "два")
    service.customer_message("other", "чужое")
    later = service.messages_since("c1", after_id=first[-1].id)
    assert [m.text for m in later] == ["два"]
    assert service.conversation("c1").to_dict()["messages"][1]["text"] == "два"


def test_summary_keeps_only_the_last_messages(service: HandoffService):
    view = service.hand_over("c1", "1", {"last_messages": ["1", "2", "3", "4", "5"]}, [])
    assert view.summary["last_messages"] == ["3", "4", "5"]
