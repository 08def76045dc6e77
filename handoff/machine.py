"""Who owns a conversation: the transition table (pure) and :class:`HandoffService` (SQL).

::

    bot ──hand_over──▶ waiting ──take──▶ operator ──return_to_bot──▶ bot
     │                    │                  │
     └──────close─────────┴──────close───────┴──▶ closed ──(customer writes: reopen)──▶ bot

While a conversation is ``waiting`` or with an ``operator`` the bot sends nothing: the channel
asks :meth:`HandoffService.record_bot_message` (atomic check-and-store) or
:meth:`HandoffService.may_bot_send` before every bot message, and routes the customer's
messages by what :meth:`HandoffService.customer_message` returns.

Every call is one write transaction. The conversation row is locked first (``SELECT ... FOR
UPDATE`` on PostgreSQL; on SQLite the whole write transaction is ``BEGIN IMMEDIATE`` and the
process's writers queue on a lock), and every UPDATE of it compares-and-swaps ``version``; a
transaction that still loses a race (two first messages creating the same conversation, a stale
version, a deadlock) is rolled back and re-run, so two concurrent calls can never both win.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from handoff.db import (
    SessionFactory,
    create_tables,
    engine_from_settings,
    make_session_factory,
    read_transaction,
    write_transaction,
)
from handoff.errors import (
    AlreadyTaken,
    ConcurrentUpdate,
    ConversationNotFound,
    IllegalTransition,
    InvalidInput,
    NotOwner,
)
from handoff.models import ID_LENGTH, SENDERS, Conversation, Message, StateChange
from handoff.settings import HandoffSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]

MAX_TEXT_LENGTH = 4000
MAX_TRANSCRIPT_TURNS = 200


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: Optional[datetime]) -> Optional[str]:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# --- the transition table (pure) --------------------------------------------------------------


class State(str, Enum):
    BOT = "bot"
    WAITING = "waiting"
    OPERATOR = "operator"
    CLOSED = "closed"


class Action(str, Enum):
    HAND_OVER = "hand_over"
    TAKE = "take"
    RETURN_TO_BOT = "return_to_bot"
    CLOSE = "close"
    REOPEN = "reopen"  # the customer writes in a closed conversation


class Route(str, Enum):
    """Where a customer message goes: to the bot (Rasa), or only to the operator's console."""

    BOT = "bot"
    OPERATOR = "operator"


TRANSITIONS: Mapping[Tuple[State, Action], State] = {
    (State.BOT, Action.HAND_OVER): State.WAITING,
    (State.WAITING, Action.TAKE): State.OPERATOR,
    (State.OPERATOR, Action.RETURN_TO_BOT): State.BOT,
    (State.BOT, Action.CLOSE): State.CLOSED,
    (State.WAITING, Action.CLOSE): State.CLOSED,
    (State.OPERATOR, Action.CLOSE): State.CLOSED,
    (State.CLOSED, Action.REOPEN): State.BOT,
}

#: (state, action) pairs that are a no-op rather than an error: the action's goal already holds.
#: (``take`` by the operator who already owns the conversation is one too; by another, a conflict.)
IDEMPOTENT: FrozenSet[Tuple[State, Action]] = frozenset(
    {
        (State.WAITING, Action.HAND_OVER),
        (State.OPERATOR, Action.HAND_OVER),
        (State.CLOSED, Action.CLOSE),
    }
)


def next_state(state: Union[State, str], action: Union[Action, str]) -> State:
    """The state ``action`` leads to from ``state``; :class:`IllegalTransition` if none."""
    state, action = State(state), Action(action)
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise IllegalTransition(
            f"Cannot {action.value} a conversation that is {state.value}.", state=state.value, action=action.value
        ) from None


def is_noop(state: Union[State, str], action: Union[Action, str]) -> bool:
    return (State(state), Action(action)) in IDEMPOTENT


def bot_may_send_in(state: Union[State, str]) -> bool:
    """The bot speaks only in a conversation it owns (not waiting, not with an operator, not closed)."""
    return State(state) is State.BOT


def route_in(state: Union[State, str]) -> Route:
    """Where a customer message goes in ``state`` (a closed conversation reopens to the bot first)."""
    return Route.OPERATOR if State(state) in (State.WAITING, State.OPERATOR) else Route.BOT


# --- system lines of the transcript -----------------------------------------------------------

#: The code a transition writes into the transcript as a ``system`` message. ``returned`` and
#: ``closed`` are left undelivered: the channel has to act on them (resume Rasa and greet back /
#: tell the widget), so they come out of :meth:`HandoffService.pending_operator_messages` in order
#: with the operator's replies.
SYSTEM_LINES: Mapping[Action, Tuple[str, bool]] = {
    Action.HAND_OVER: ("handed_over", True),
    Action.TAKE: ("taken", True),
    Action.RETURN_TO_BOT: ("returned", False),
    Action.CLOSE: ("closed", False),
    Action.REOPEN: ("reopened", True),
}


# --- views (what the service hands back; JSON-ready through to_dict) ---------------------------


@dataclass(frozen=True)
class MessageView:
    id: int
    conversation_id: str
    sender: str
    text: str
    created_at: datetime
    delivered: bool
    operator_id: Optional[str] = None

    @classmethod
    def of(cls, row: Message) -> "MessageView":
        return cls(row.id, row.conversation_id, row.sender, row.text, row.created_at, bool(row.delivered), row.operator_id)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "sender": self.sender,
            "text": self.text,
            "created_at": iso(self.created_at),
            "delivered": self.delivered,
            "operator_id": self.operator_id,
        }


@dataclass(frozen=True)
class ConversationView:
    id: str
    state: State
    operator_id: Optional[str]
    ticket_id: Optional[str]
    summary: Optional[Dict[str, Any]]
    handover_transcript: Tuple[Dict[str, str], ...]
    created_at: datetime
    updated_at: datetime
    waiting_since: Optional[datetime]
    taken_at: Optional[datetime]
    version: int
    #: the live transcript (only filled by :meth:`HandoffService.conversation`)
    messages: Tuple[MessageView, ...] = ()

    @classmethod
    def of(cls, row: Conversation, messages: Iterable[Message] = ()) -> "ConversationView":
        return cls(
            id=row.id,
            state=State(row.state),
            operator_id=row.operator_id,
            ticket_id=row.ticket_id,
            summary=dict(row.summary) if row.summary else None,
            handover_transcript=tuple(dict(turn) for turn in row.transcript or ()),
            created_at=row.created_at,
            updated_at=row.updated_at,
            waiting_since=row.waiting_since,
            taken_at=row.taken_at,
            version=row.version,
            messages=tuple(MessageView.of(message) for message in messages),
        )

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "operator_id": self.operator_id,
            "ticket_id": self.ticket_id,
            "summary": self.summary,
            "handover_transcript": [dict(turn) for turn in self.handover_transcript],
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "waiting_since": iso(self.waiting_since),
            "taken_at": iso(self.taken_at),
            "version": self.version,
            "messages": [message.to_dict() for message in self.messages],
        }


@dataclass(frozen=True)
class QueueItem:
    conversation_id: str
    ticket_id: Optional[str]
    summary: Optional[Dict[str, Any]]
    waiting_since: datetime
    waiting_seconds: float
    #: customer messages that arrived since the hand-over and no operator has seen yet
    unread: int

    def to_dict(self) -> Dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "ticket_id": self.ticket_id,
            "summary": self.summary,
            "waiting_since": iso(self.waiting_since),
            "waiting_seconds": round(self.waiting_seconds, 1),
            "unread": self.unread,
        }


@dataclass(frozen=True)
class StateChangeView:
    id: int
    conversation_id: str
    from_state: Optional[State]
    to_state: State
    actor: str
    reason: Optional[str]
    version: int
    at: datetime

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "from": self.from_state.value if self.from_state else None,
            "to": self.to_state.value,
            "actor": self.actor,
            "reason": self.reason,
            "version": self.version,
            "at": iso(self.at),
        }


@dataclass(frozen=True)
class BotGate:
    """The answer to "may the bot speak now?", with the state and version it was read at.
    Truthy when allowed: ``if service.record_bot_message(cid, text): send(text)``."""

    conversation_id: str
    allowed: bool
    state: State
    version: int  # 0: the conversation does not exist yet (the bot owns new conversations)
    message_id: Optional[int] = None  # record_bot_message: the stored bot line

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class HandoffSummary:
    """What the operator reads first: the last intent, the flow's slots, the customer's last words
    (plus whatever else the caller adds, e.g. ``reason``)."""

    intent: Optional[str] = None
    slots: Mapping[str, Any] = field(default_factory=dict)
    last_messages: Tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def coerce(
        cls,
        value: Union["HandoffSummary", Mapping[str, Any], None],
        transcript: Sequence[Mapping[str, str]] = (),
        last_messages: int = 3,
    ) -> "HandoffSummary":
        if isinstance(value, HandoffSummary):
            summary = value
        elif value is None or isinstance(value, Mapping):
            data = dict(value or {})
            intent = data.pop("intent", None)
            if intent is not None and not isinstance(intent, str):
                raise InvalidInput("summary.intent must be a string or null.")
            slots = data.pop("slots", None) or {}
            if not isinstance(slots, Mapping):
                raise InvalidInput("summary.slots must be an object.")
            lines = data.pop("last_messages", None)
            if lines is not None and (isinstance(lines, str) or not all(isinstance(line, str) for line in lines)):
                raise InvalidInput("summary.last_messages must be a list of strings.")
            summary = cls(intent or None, dict(slots), tuple(lines) if lines is not None else (), data)
        else:
            raise InvalidInput("summary must be an object.")
        lines = summary.last_messages or tuple(turn["text"] for turn in transcript if turn["sender"] == "customer")
        summary = cls(summary.intent, dict(summary.slots), tuple(lines)[-last_messages:], dict(summary.extra))
        try:
            json.dumps(summary.to_dict())
        except (TypeError, ValueError) as error:
            raise InvalidInput(f"summary must be JSON-serialisable: {error}") from error
        return summary

    def to_dict(self) -> Dict[str, Any]:
        return {**self.extra, "intent": self.intent, "slots": dict(self.slots), "last_messages": list(self.last_messages)}


# --- validation -------------------------------------------------------------------------------


def _conversation_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > ID_LENGTH:
        raise InvalidInput(f"A conversation id is a non-empty string of at most {ID_LENGTH} characters.")
    return value


def _operator(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > ID_LENGTH:
        raise InvalidInput(f"An operator id is a non-empty string of at most {ID_LENGTH} characters.")
    return value.strip()


def _text(value: Any, what: str = "text") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"The {what} must be a non-empty string.")
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidInput(f"The {what} is longer than {MAX_TEXT_LENGTH} characters.")
    return value


def _transcript(value: Any) -> Tuple[Dict[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidInput("The transcript must be a list of {sender, text} turns.")
    turns = []
    for turn in list(value)[-MAX_TRANSCRIPT_TURNS:]:
        if not isinstance(turn, Mapping) or turn.get("sender") not in SENDERS or not isinstance(turn.get("text"), str):
            raise InvalidInput(f"Transcript turns are {{sender: one of {SENDERS}, text: string}}, got {turn!r}.")
        turns.append({"sender": turn["sender"], "text": turn["text"]})
    return tuple(turns)


def _ticket(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or len(str(value)) > 64:
        raise InvalidInput("A ticket id is a string or an integer (at most 64 characters).")
    return str(value)


# --- the service ------------------------------------------------------------------------------

# statements of every customer turn, built once (SQLAlchemy computes a statement's cache key per
# statement object: for a fresh one each time that cost more than the query)
_STATE_OF = select(Conversation.state, Conversation.version).where(Conversation.id == bindparam("conversation_id"))
_SETTLE_SYSTEM_LINES = (
    update(Message)
    .where(
        Message.conversation_id == bindparam("of_conversation"),
        Message.sender == "system",
        Message.text.in_(("returned", "closed")),
        Message.delivered.is_(False),
    )
    .values(delivered=True)
    .execution_options(synchronize_session=False)
)


class _Retry(Exception):
    """The transaction lost a race it cannot see from inside: roll back and run it again."""


_RETRYABLE_PGCODES = {"40001", "40P01"}  # serialization failure, deadlock detected


def _retryable(error: OperationalError) -> bool:
    if getattr(error.orig, "pgcode", None) in _RETRYABLE_PGCODES:
        return True
    return "database is locked" in str(error.orig).lower()


class HandoffService:
    """The hand-off state machine on a SQL database. Thread-safe; one instance per process."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        clock: Clock = utcnow,
        summary_last_messages: int = 3,
        max_attempts: int = 5,
    ) -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.summary_last_messages = summary_last_messages
        self.max_attempts = max_attempts

    @classmethod
    def from_settings(cls, settings: HandoffSettings, *, clock: Clock = utcnow) -> "HandoffService":
        """Engine + missing tables created + the service."""
        engine = engine_from_settings(settings)
        create_tables(engine)
        return cls(make_session_factory(engine), clock=clock, summary_last_messages=settings.summary_last_messages)

    # --- transactions and shared steps (also used by handoff.copilot) -------------------------

    def write(self, work: Callable[[Session, datetime], T]) -> T:
        """Run ``work(session, now)`` in one write transaction, re-running it when it lost a race."""
        last: Optional[BaseException] = None
        for attempt in range(self.max_attempts):
            try:
                with write_transaction(self.session_factory) as session:
                    return work(session, self.clock())
            except (_Retry, StaleDataError) as error:
                last = error
            except OperationalError as error:
                if not _retryable(error):
                    raise
                last = error
            logger.debug("hand-off transaction lost a race (attempt %d): %s", attempt + 1, last)
        raise ConcurrentUpdate() from last

    def read(self, work: Callable[[Session, datetime], T]) -> T:
        with read_transaction(self.session_factory) as session:
            return work(session, self.clock())

    @staticmethod
    def locked(session: Session, conversation_id: str) -> Optional[Conversation]:
        """The conversation row, locked until the end of the transaction (FOR UPDATE)."""
        return session.get(Conversation, conversation_id, with_for_update=True, populate_existing=True)

    def locked_or_missing(self, session: Session, conversation_id: str) -> Conversation:
        conversation = self.locked(session, conversation_id)
        if conversation is None:
            raise ConversationNotFound(f"No conversation {conversation_id!r}.")
        return conversation

    def _locked_or_created(self, session: Session, conversation_id: str, now: datetime, actor: str) -> Conversation:
        conversation = self.locked(session, conversation_id)
        if conversation is not None:
            return conversation
        conversation = Conversation(id=conversation_id, state=State.BOT.value, created_at=now, updated_at=now)
        session.add(conversation)
        try:
            session.flush()
        except IntegrityError as error:  # a concurrent first message created it: run again, find it
            raise _Retry(f"conversation {conversation_id!r} created concurrently") from error
        session.add(
            StateChange(
                conversation_id=conversation_id, from_state=None, to_state=State.BOT.value, actor=actor,
                reason="created", version=conversation.version, at=now,
            )
        )
        return conversation

    @staticmethod
    def _add_message(
        session: Session, conversation: Conversation, sender: str, text: str, now: datetime, *,
        delivered: bool, operator_id: Optional[str] = None, flush: bool = True,
    ) -> Message:
        """``flush=False``: the caller flushes once after several lines (its ids come then)."""
        message = Message(
            conversation_id=conversation.id, sender=sender, text=text, created_at=now,
            delivered=delivered, operator_id=operator_id,
        )
        session.add(message)
        conversation.updated_at = now  # bumps the version: every write to the conversation is serialised
        if flush:
            session.flush()
        return message

    def _transition(
        self, session: Session, conversation: Conversation, action: Action, actor: str, now: datetime,
        reason: Optional[str] = None,
    ) -> State:
        previous = State(conversation.state)
        target = next_state(previous, action)
        conversation.state = target.value
        if target is not State.WAITING:
            conversation.waiting_since = None
        if target is not State.OPERATOR:
            conversation.operator_id = None
            conversation.taken_at = None
        line, delivered = SYSTEM_LINES[action]
        operator_id = actor if action in (Action.TAKE, Action.RETURN_TO_BOT, Action.CLOSE) else None
        self._add_message(session, conversation, "system", line, now, delivered=delivered, operator_id=operator_id)
        session.add(
            StateChange(
                conversation_id=conversation.id, from_state=previous.value, to_state=target.value,
                actor=actor, reason=reason, version=conversation.version, at=now,
            )
        )
        logger.info("conversation %s: %s → %s (%s by %s)", conversation.id, previous.value, target.value, action.value, actor)
        return target

    def reply_as_operator(
        self, session: Session, conversation: Conversation, operator: str, text: str, now: datetime
    ) -> Message:
        """Store an operator line for the channel to deliver: only the owner, only in operator state."""
        if conversation.state != State.OPERATOR.value:
            raise IllegalTransition(
                f"Only a conversation with an operator takes operator replies; this one is {conversation.state}.",
                state=conversation.state, action="operator_reply",
            )
        if conversation.operator_id != operator:
            raise NotOwner(f"The conversation belongs to {conversation.operator_id!r}, not {operator!r}.")
        return self._add_message(session, conversation, "operator", text, now, delivered=False, operator_id=operator)

    # --- transitions ----------------------------------------------------------------------------

    def hand_over(
        self,
        conversation_id: str,
        ticket_id: Union[str, int, None],
        summary: Union[HandoffSummary, Mapping[str, Any], None],
        transcript: Optional[Sequence[Mapping[str, str]]],
        *,
        actor: str = "bot",
        reason: Optional[str] = None,
    ) -> ConversationView:
        """bot → waiting, with the CRM ticket, the summary and the transcript so far. A no-op
        (the current conversation back) when it is already waiting or with an operator."""
        conversation_id = _conversation_id(conversation_id)
        ticket = _ticket(ticket_id)
        turns = _transcript(transcript)
        brief = HandoffSummary.coerce(summary, turns, self.summary_last_messages)

        def work(session: Session, now: datetime) -> ConversationView:
            conversation = self._locked_or_created(session, conversation_id, now, actor)
            self._hand_over_in(session, conversation, ticket, brief, turns, now, actor, reason)
            return ConversationView.of(conversation)

        return self.write(work)

    def _hand_over_in(
        self, session: Session, conversation: Conversation, ticket: Optional[str], brief: HandoffSummary,
        turns: Sequence[Mapping[str, str]], now: datetime, actor: str, reason: Optional[str],
    ) -> None:
        if is_noop(conversation.state, Action.HAND_OVER):
            return
        next_state(conversation.state, Action.HAND_OVER)  # closed: IllegalTransition before any change
        conversation.ticket_id = ticket
        conversation.summary = brief.to_dict()
        conversation.transcript = [dict(turn) for turn in turns]
        conversation.waiting_since = now
        self._transition(session, conversation, Action.HAND_OVER, actor, now, reason)

    def take(self, conversation_id: str, operator: str) -> ConversationView:
        """waiting → operator. Taking it again as its owner is a no-op; another operator gets
        :class:`AlreadyTaken` (of two concurrent takes exactly one wins)."""
        conversation_id, operator = _conversation_id(conversation_id), _operator(operator)

        def work(session: Session, now: datetime) -> ConversationView:
            conversation = self.locked_or_missing(session, conversation_id)
            if conversation.state == State.OPERATOR.value:
                if conversation.operator_id == operator:
                    return ConversationView.of(conversation)
                raise AlreadyTaken(
                    f"{conversation.operator_id!r} has already taken this conversation.", owner=conversation.operator_id
                )
            next_state(conversation.state, Action.TAKE)
            conversation.operator_id = operator
            conversation.taken_at = now
            self._transition(session, conversation, Action.TAKE, operator, now)
            # the customer lines that waited in the queue are now in front of the operator
            session.execute(
                update(Message)
                .where(Message.conversation_id == conversation_id, Message.sender == "customer", Message.delivered.is_(False))
                .values(delivered=True)
                .execution_options(synchronize_session=False)
            )
            return ConversationView.of(conversation)

        return self.write(work)

    def return_to_bot(self, conversation_id: str, operator: str, *, reason: Optional[str] = None) -> ConversationView:
        """operator → bot, by the owner. Leaves an undelivered ``system`` line ``returned`` for the
        channel, which resumes Rasa and lets the bot greet the customer back."""
        conversation_id, operator = _conversation_id(conversation_id), _operator(operator)

        def work(session: Session, now: datetime) -> ConversationView:
            conversation = self.locked_or_missing(session, conversation_id)
            next_state(conversation.state, Action.RETURN_TO_BOT)
            if conversation.operator_id != operator:
                raise NotOwner(f"The conversation belongs to {conversation.operator_id!r}, not {operator!r}.")
            self._transition(session, conversation, Action.RETURN_TO_BOT, operator, now, reason)
            return ConversationView.of(conversation)

        return self.write(work)

    def close(self, conversation_id: str, actor: str, *, reason: Optional[str] = None) -> ConversationView:
        """bot / waiting / operator → closed (no-op when closed). With an operator, only the owner
        may close. The next customer message reopens the conversation to the bot."""
        conversation_id, actor = _conversation_id(conversation_id), _operator(actor)

        def work(session: Session, now: datetime) -> ConversationView:
            conversation = self.locked_or_missing(session, conversation_id)
            if is_noop(conversation.state, Action.CLOSE):
                return ConversationView.of(conversation)
            if conversation.state == State.OPERATOR.value and conversation.operator_id != actor:
                raise NotOwner(f"The conversation belongs to {conversation.operator_id!r}, not {actor!r}.")
            self._transition(session, conversation, Action.CLOSE, actor, now, reason)
            return ConversationView.of(conversation)

        return self.write(work)

    # --- messages -------------------------------------------------------------------------------

    def customer_message(self, conversation_id: str, text: str, channel: Optional[str] = None) -> Route:
        """Store a customer line and say where it goes: :attr:`Route.BOT` (hand it to Rasa) in bot
        state — a closed conversation reopens to the bot first — or :attr:`Route.OPERATOR` while
        waiting / with an operator (kept for the operator; the bot must not see it). ``channel``:
        the input channel it came from, where operator replies go."""
        return self.customer_line(conversation_id, text, channel)[0]

    def customer_line(
        self, conversation_id: str, text: str, channel: Optional[str] = None
    ) -> Tuple[Route, MessageView]:
        """:meth:`customer_message`, with the stored line."""
        conversation_id, text = _conversation_id(conversation_id), _text(text)
        if channel is not None and (not isinstance(channel, str) or not channel or len(channel) > 64):
            raise InvalidInput("A channel name is 1..64 characters.")

        def work(session: Session, now: datetime) -> Tuple[Route, MessageView]:
            conversation = self._locked_or_created(session, conversation_id, now, "customer")
            route, line = self._store_customer_line(session, conversation, text, channel, now, reopen=True)
            return route, MessageView.of(line)

        return self.write(work)

    def _store_customer_line(
        self, session: Session, conversation: Conversation, text: str, channel: Optional[str], now: datetime,
        *, reopen: bool, flush: bool = True,
    ) -> Tuple[Route, Message]:
        conversation_id = conversation.id
        if channel and conversation.channel != channel:
            conversation.channel = channel
        if reopen and conversation.state == State.CLOSED.value:
            self._transition(session, conversation, Action.REOPEN, "customer", now, "the customer wrote")
        route = route_in(conversation.state)
        if route is Route.BOT:
            # an operator returned / closed it and the customer wrote before anyone said so:
            # the conversation simply goes on, nobody has to act on those lines any more
            session.execute(_SETTLE_SYSTEM_LINES, {"of_conversation": conversation_id})
        return route, self._add_message(session, conversation, "customer", text, now, delivered=route is Route.BOT,
                                        flush=flush)

    def bot_turn(
        self,
        conversation_id: str,
        texts: Sequence[str],
        *,
        hand_over: Optional[Tuple[Union[str, int, None], Union[HandoffSummary, Mapping[str, Any], None],
                                  Sequence[Mapping[str, str]], Optional[str]]] = None,
        mask_line: Optional[Tuple[int, str]] = None,
        customer: Optional[Tuple[str, Optional[str]]] = None,
    ) -> BotGate:
        """The end of a bot turn, in ONE transaction: check that the bot still owns the
        conversation and store its lines (delivered); then, if the turn handed over
        (``hand_over`` = ticket, summary, transcript, reason), move it to the queue. Falsy —
        nothing stored, nothing may go out — when the bot no longer owns it.

        ``customer`` (text, channel): the customer line this turn answered, stored first (the
        gateway read the state before the turn instead of writing it twice) — kept whatever the
        state, for the operator when one took the conversation meanwhile. ``mask_line``
        (message id, text) replaces a customer line stored earlier (a secret answer, masked)."""
        conversation_id = _conversation_id(conversation_id)
        if customer is not None:
            customer = (_text(customer[0][:MAX_TEXT_LENGTH]), customer[1])
        lines = [_text(text[:MAX_TEXT_LENGTH], "bot message") for text in texts if isinstance(text, str) and text.strip()]
        handover = None
        if hand_over is not None:
            ticket, summary, transcript, reason = hand_over
            turns = _transcript(transcript)
            handover = (_ticket(ticket), HandoffSummary.coerce(summary, turns, self.summary_last_messages), turns, reason)

        def work(session: Session, now: datetime) -> BotGate:
            conversation = self._locked_or_created(session, conversation_id, now, "bot")
            if customer is not None:
                self._store_customer_line(session, conversation, customer[0], customer[1], now, reopen=False, flush=False)
            if mask_line is not None:
                session.execute(
                    update(Message)
                    .where(Message.id == int(mask_line[0]), Message.conversation_id == conversation_id)
                    .values(text=mask_line[1])
                    .execution_options(synchronize_session=False)
                )
            state = State(conversation.state)
            if not bot_may_send_in(state):
                session.flush()
                logger.info("conversation %s is %s: the bot's turn was held back", conversation_id, state.value)
                return BotGate(conversation_id, False, state, conversation.version)
            said = [self._add_message(session, conversation, "bot", text, now, delivered=True, flush=False) for text in lines]
            session.flush()  # one UPDATE of the conversation for the whole turn
            last_id = said[-1].id if said else None
            if handover is not None:
                ticket, brief, turns, reason = handover
                self._hand_over_in(session, conversation, ticket, brief, turns, now, "bot", reason)
            return BotGate(conversation_id, True, state, conversation.version, last_id)

        return self.write(work)

    def operator_reply(self, conversation_id: str, operator: str, text: str) -> MessageView:
        """An operator line, stored undelivered for the channel (:meth:`pending_operator_messages`)."""
        conversation_id, operator, text = _conversation_id(conversation_id), _operator(operator), _text(text)

        def work(session: Session, now: datetime) -> MessageView:
            conversation = self.locked_or_missing(session, conversation_id)
            return MessageView.of(self.reply_as_operator(session, conversation, operator, text, now))

        return self.write(work)

    def record_bot_message(self, conversation_id: str, text: str) -> BotGate:
        """The race-free guard: in ONE transaction, check that the bot owns the conversation and
        store its line (delivered). Falsy — nothing stored, nothing may go out — otherwise."""
        conversation_id, text = _conversation_id(conversation_id), _text(text)

        def work(session: Session, now: datetime) -> BotGate:
            conversation = self._locked_or_created(session, conversation_id, now, "bot")
            state = State(conversation.state)
            if not bot_may_send_in(state):
                logger.info("conversation %s is %s: a bot message was held back", conversation_id, state.value)
                return BotGate(conversation_id, False, state, conversation.version)
            message = self._add_message(session, conversation, "bot", text, now, delivered=True)
            return BotGate(conversation_id, True, state, conversation.version, message.id)

        return self.write(work)

    def gate(self, conversation_id: str) -> BotGate:
        """May the bot speak now, read with the state and version it was decided on."""
        conversation_id = _conversation_id(conversation_id)

        def work(session: Session, now: datetime) -> BotGate:
            row = session.execute(_STATE_OF, {"conversation_id": conversation_id}).one_or_none()
            if row is None:
                return BotGate(conversation_id, True, State.BOT, 0)
            state = State(row.state)
            return BotGate(conversation_id, bot_may_send_in(state), state, row.version)

        return self.read(work)

    def may_bot_send(self, conversation_id: str) -> bool:
        """The guard before ANY bot message: False while waiting / with an operator / closed.
        (Prefer :meth:`record_bot_message`, which checks and stores in one transaction.)"""
        return self.gate(conversation_id).allowed

    def pending_operator_messages(self, conversation_id: str) -> List[MessageView]:
        """What the channel still has to deliver to the customer's widget, oldest first: operator
        replies, and the ``system`` lines ``returned`` / ``closed`` it has to act on."""
        conversation_id = _conversation_id(conversation_id)
        query = (
            select(Message)
            .where(
                Message.conversation_id == conversation_id,
                Message.sender.in_(("operator", "system")),
                Message.delivered.is_(False),
            )
            .order_by(Message.id)
        )
        return self.read(lambda session, now: [MessageView.of(row) for row in session.execute(query).scalars()])

    def mark_delivered(self, message_ids: Iterable[int]) -> int:
        """Mark messages delivered (idempotent); → how many changed."""
        ids = sorted({int(message_id) for message_id in message_ids})
        if not ids:
            return 0

        def work(session: Session, now: datetime) -> int:
            result = session.execute(
                update(Message)
                .where(Message.id.in_(ids), Message.delivered.is_(False))
                .values(delivered=True)
                .execution_options(synchronize_session=False)
            )
            return result.rowcount or 0

        return self.write(work)

    def messages_since(self, conversation_id: str, after_id: int = 0, limit: int = 500) -> List[MessageView]:
        """The live transcript after a cursor (the console polls / streams with the last id seen)."""
        conversation_id = _conversation_id(conversation_id)
        query = (
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.id > int(after_id))
            .order_by(Message.id)
            .limit(limit)
        )
        return self.read(lambda session, now: [MessageView.of(row) for row in session.execute(query).scalars()])

    # --- reading --------------------------------------------------------------------------------

    def queue(self) -> List[QueueItem]:
        """Conversations waiting for an operator, oldest first, with their waiting time and summary."""

        def work(session: Session, now: datetime) -> List[QueueItem]:
            rows = session.execute(
                select(Conversation)
                .where(Conversation.state == State.WAITING.value)
                .order_by(Conversation.waiting_since, Conversation.id)
            ).scalars().all()
            unread = dict(
                session.execute(
                    select(Message.conversation_id, func.count())
                    .join(Conversation, Conversation.id == Message.conversation_id)
                    .where(
                        Conversation.state == State.WAITING.value,
                        Message.sender == "customer",
                        Message.delivered.is_(False),
                    )
                    .group_by(Message.conversation_id)
                ).all()
            )
            return [
                QueueItem(
                    conversation_id=row.id,
                    ticket_id=row.ticket_id,
                    summary=dict(row.summary) if row.summary else None,
                    waiting_since=row.waiting_since,
                    waiting_seconds=max(0.0, (now - row.waiting_since).total_seconds()),
                    unread=int(unread.get(row.id, 0)),
                )
                for row in rows
            ]

        return self.read(work)

    def conversation(self, conversation_id: str, *, with_messages: bool = True) -> ConversationView:
        """One conversation with its live transcript (and the transcript handed over)."""
        conversation_id = _conversation_id(conversation_id)

        def work(session: Session, now: datetime) -> ConversationView:
            row = session.get(Conversation, conversation_id)
            if row is None:
                raise ConversationNotFound(f"No conversation {conversation_id!r}.")
            messages = (
                session.execute(
                    select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
                ).scalars().all()
                if with_messages
                else ()
            )
            return ConversationView.of(row, messages)

        return self.read(work)

    def owned_by(self, operator: str) -> List[ConversationView]:
        """The conversations an operator has taken (the console's "mine" list)."""
        operator = _operator(operator)
        query = (
            select(Conversation)
            .where(Conversation.state == State.OPERATOR.value, Conversation.operator_id == operator)
            .order_by(Conversation.taken_at, Conversation.id)
        )
        return self.read(lambda session, now: [ConversationView.of(row) for row in session.execute(query).scalars()])

    def history(self, conversation_id: str) -> List[StateChangeView]:
        """The audit of a conversation's transitions, oldest first."""
        conversation_id = _conversation_id(conversation_id)
        query = select(StateChange).where(StateChange.conversation_id == conversation_id).order_by(StateChange.id)

        def work(session: Session, now: datetime) -> List[StateChangeView]:
            return [
                StateChangeView(
                    row.id, row.conversation_id, State(row.from_state) if row.from_state else None,
                    State(row.to_state), row.actor, row.reason, row.version, row.at,
                )
                for row in session.execute(query).scalars()
            ]

        return self.read(work)
