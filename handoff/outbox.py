"""What the channels still have to deliver to customers: the outbox of the hand-off core.

Lines the customer has not received yet are ``messages`` rows with ``delivered = false``:

* ``operator`` — an operator's reply;
* ``bot`` — a line the bot says outside a customer's turn (welcome back after an operator returned
  the conversation, "the operator closed the chat");
* ``system`` ``returned`` / ``closed`` — transitions someone has to act on (say the line above).

Delivery is *claimed*: a row is marked delivered in one conditional UPDATE before it is sent, so of
several Rasa replicas exactly one sends it; a failed send releases it for the next round. Push
channels (socket.io, callback, …) get their lines from the gateway's relay; pull channels (REST)
fetch them (:meth:`Outbox.for_conversation`) and acknowledge what they got.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Collection, List, Optional

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from handoff.errors import ConversationNotFound
from handoff.machine import HandoffService, MessageView, State, _conversation_id, _text
from handoff.models import Conversation, Message

#: system lines that ask for an action (the others are only the transcript's record)
ACTIONABLE_SYSTEM_LINES = ("returned", "closed")


@dataclass(frozen=True)
class Delivery:
    message: MessageView
    #: the channel the customer last wrote from (None: not known)
    channel: Optional[str]


def _undelivered():
    return and_(
        Message.delivered.is_(False),
        or_(
            Message.sender.in_(("operator", "bot")),
            and_(Message.sender == "system", Message.text.in_(ACTIONABLE_SYSTEM_LINES)),
        ),
    )


class Outbox:
    def __init__(self, service: HandoffService) -> None:
        self.service = service

    def pending(self, push_channels: Collection[str], limit: int = 200) -> List[Delivery]:
        """Undelivered lines, oldest first: every actionable system line (any replica may act on
        it), and the customer lines of conversations on one of ``push_channels``."""
        query = (
            select(Message, Conversation.channel)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(
                _undelivered(),
                or_(Message.sender == "system", Conversation.channel.in_(list(push_channels) or [""])),
            )
            .order_by(Message.id)
            .limit(limit)
        )
        return self.service.read(
            lambda session, now: [Delivery(MessageView.of(row), channel) for row, channel in session.execute(query).all()]
        )

    def for_conversation(self, conversation_id: str, acknowledged_up_to: int = 0) -> "PulledLines":
        """For a pull channel: mark the lines up to ``acknowledged_up_to`` delivered (the client
        got them) and return the conversation's state and the operator / bot lines still pending."""
        conversation_id = _conversation_id(conversation_id)

        def work(session: Session, now: datetime) -> PulledLines:
            conversation = session.get(Conversation, conversation_id)
            if conversation is None:
                raise ConversationNotFound(f"No conversation {conversation_id!r}.")
            if acknowledged_up_to > 0:
                session.execute(
                    update(Message)
                    .where(
                        Message.conversation_id == conversation_id,
                        Message.id <= int(acknowledged_up_to),
                        Message.sender.in_(("operator", "bot")),
                        Message.delivered.is_(False),
                    )
                    .values(delivered=True)
                    .execution_options(synchronize_session=False)
                )
            rows = session.execute(
                select(Message)
                .where(
                    Message.conversation_id == conversation_id,
                    Message.sender.in_(("operator", "bot")),
                    Message.delivered.is_(False),
                )
                .order_by(Message.id)
            ).scalars().all()
            return PulledLines(State(conversation.state), [MessageView.of(row) for row in rows])

        return self.service.write(work)

    def claim(self, message_id: int) -> bool:
        """Mark one line delivered if nobody has yet; → whether this caller got it."""

        def work(session: Session, now: datetime) -> bool:
            result = session.execute(
                update(Message)
                .where(Message.id == int(message_id), Message.delivered.is_(False))
                .values(delivered=True)
                .execution_options(synchronize_session=False)
            )
            return (result.rowcount or 0) == 1

        return self.service.write(work)

    def release(self, message_id: int) -> None:
        """A claimed line could not be sent: it is pending again."""

        def work(session: Session, now: datetime) -> None:
            session.execute(
                update(Message).where(Message.id == int(message_id)).values(delivered=False)
                .execution_options(synchronize_session=False)
            )

        self.service.write(work)

    def add_bot_line(self, conversation_id: str, text: str) -> MessageView:
        """A line the bot says outside a customer's turn, for the channel to deliver (stored
        whatever the state: "the operator closed the chat" is said in a closed conversation)."""
        conversation_id, text = _conversation_id(conversation_id), _text(text, "bot message")

        def work(session: Session, now: datetime) -> MessageView:
            conversation = self.service.locked_or_missing(session, conversation_id)
            message = Message(conversation_id=conversation.id, sender="bot", text=text, created_at=now, delivered=False)
            session.add(message)
            session.flush()
            return MessageView.of(message)

        return self.service.write(work)


@dataclass(frozen=True)
class PulledLines:
    state: State
    messages: List[MessageView]

    def to_dict(self) -> dict:
        return {
            "state": self.state.value,
            "messages": [
                {"id": m.id, "sender": m.sender, "text": m.text, "created_at": m.to_dict()["created_at"]}
                for m in self.messages
            ],
        }
