"""Tables of the hand-off core (SQLAlchemy 1.4 declarative, portable: SQLite and PostgreSQL).

* ``conversations`` — one row per Rasa conversation (id = the sender id): who owns it, its channel, the CRM
  ticket and summary of the current hand-over, and ``version``, the optimistic lock every write
  bumps (``UPDATE ... WHERE version = :seen``).
* ``messages`` — the live transcript: customer, bot, operator and system lines; ``delivered``
  says whether the recipient got it (operator replies wait for the channel, customer lines that
  went to an operator wait for the console).
* ``state_changes`` — the audit of every transition: from, to, actor, reason, the version after.
* ``copilot_events`` — drafts shown to operators, ratings, sends and discards, for analytics.
* ``mode_changes`` — the audit of each topic moved between autonomous and copilot.
"""
from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import declarative_base

from sqlstore import UTCDateTime

Base = declarative_base()

STATES = ("bot", "waiting", "operator", "closed")
SENDERS = ("customer", "bot", "operator", "system")
COPILOT_KINDS = ("draft_shown", "rated", "sent", "discarded")
RATINGS = ("like", "dislike")
OUTCOMES = ("as_is", "edited", "discarded")

ID_LENGTH = 128  # conversation (Rasa sender) and operator ids


def _one_of(column: str, values: tuple) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        CheckConstraint(_one_of("state", STATES), name="ck_conversation_state"),
        Index("ix_conversations_state_waiting", "state", "waiting_since"),
    )

    id = Column(String(ID_LENGTH), primary_key=True)  # the Rasa sender id
    state = Column(String(10), nullable=False, default="bot")
    #: the input channel the customer last wrote from (``socketio``, ``rest``, …): where operator
    #: replies go (handoff.gateway)
    channel = Column(String(64), nullable=True)
    operator_id = Column(String(ID_LENGTH), nullable=True)  # the owner while state = operator
    ticket_id = Column(String(64), nullable=True)  # the CRM ticket of the current hand-over
    summary = Column(JSON, nullable=True)  # {"intent", "slots", "last_messages", ...}
    transcript = Column(JSON, nullable=True)  # [{"sender", "text"}] as handed over (before the live one)
    created_at = Column(UTCDateTime, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False)
    waiting_since = Column(UTCDateTime, nullable=True)  # set while state = waiting
    taken_at = Column(UTCDateTime, nullable=True)  # set while state = operator
    version = Column(Integer, nullable=False)

    # SQLAlchemy turns every UPDATE into "... WHERE id = :id AND version = :seen" and raises
    # StaleDataError when another transaction changed the row first.
    __mapper_args__ = {"version_id_col": version}


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint(_one_of("sender", SENDERS), name="ck_message_sender"),
        Index("ix_messages_conversation_id", "conversation_id", "id"),
        Index("ix_messages_pending", "conversation_id", "sender", "delivered"),
    )

    id = Column(Integer, primary_key=True, autoincrement=True)
    conversation_id = Column(String(ID_LENGTH), ForeignKey("conversations.id"), nullable=False)
    sender = Column(String(10), nullable=False)
    operator_id = Column(String(ID_LENGTH), nullable=True)  # who wrote an operator line
    text = Column(Text, nullable=False)
    created_at = Column(UTCDateTime, nullable=False)
    delivered = Column(Boolean, nullable=False, default=False)


class StateChange(Base):
    __tablename__ = "state_changes"
    __table_args__ = (
        CheckConstraint(_one_of("to_state", STATES), name="ck_state_change_to"),
        Index("ix_state_changes_conversation", "conversation_id", "id"),
    )

    id = Column(Integer, primary_key=True, autoincrement=True)
    conversation_id = Column(String(ID_LENGTH), ForeignKey("conversations.id"), nullable=False)
    from_state = Column(String(10), nullable=True)  # NULL: the conversation was created
    to_state = Column(String(10), nullable=False)
    actor = Column(String(ID_LENGTH), nullable=False)  # "bot", "customer", "system" or an operator id
    reason = Column(String(200), nullable=True)
    version = Column(Integer, nullable=False)  # the conversation's version right after the change
    at = Column(UTCDateTime, nullable=False)


class CopilotEvent(Base):
    __tablename__ = "copilot_events"
    __table_args__ = (
        CheckConstraint(_one_of("kind", COPILOT_KINDS), name="ck_copilot_kind"),
        CheckConstraint(f"rating IS NULL OR {_one_of('rating', RATINGS)}", name="ck_copilot_rating"),
        CheckConstraint(f"outcome IS NULL OR {_one_of('outcome', OUTCOMES)}", name="ck_copilot_outcome"),
        Index("ix_copilot_events_topic", "topic", "kind"),
        Index("ix_copilot_events_draft", "draft_id"),
    )

    id = Column(Integer, primary_key=True, autoincrement=True)
    #: the ``draft_shown`` event this one belongs to (a draft_shown row points at itself)
    draft_id = Column(Integer, ForeignKey("copilot_events.id"), nullable=True)
    conversation_id = Column(String(ID_LENGTH), ForeignKey("conversations.id"), nullable=False, index=True)
    message_id = Column(Integer, ForeignKey("messages.id"), nullable=True)  # the customer line drafted for
    reply_message_id = Column(Integer, ForeignKey("messages.id"), nullable=True)  # "sent": the operator line
    operator_id = Column(String(ID_LENGTH), nullable=True)
    topic = Column(String(64), nullable=False)  # the intent
    kind = Column(String(12), nullable=False)
    draft_text = Column(Text, nullable=True)
    final_text = Column(Text, nullable=True)
    rating = Column(String(8), nullable=True)
    edit_distance = Column(Integer, nullable=True)  # Levenshtein(draft, final), characters
    outcome = Column(String(10), nullable=True)
    confidence = Column(Float, nullable=True)
    source = Column(String(500), nullable=True)  # "scenario:<intent>", "rag:<article>" ...
    at = Column(UTCDateTime, nullable=False)


class ModeChange(Base):
    """A support lead moved a topic between autonomous and copilot (copilot.yml rewritten)."""

    __tablename__ = "mode_changes"

    id = Column(Integer, primary_key=True, autoincrement=True)
    topic = Column(String(64), nullable=False)
    from_mode = Column(String(12), nullable=False)
    to_mode = Column(String(12), nullable=False)
    operator_id = Column(String(ID_LENGTH), nullable=False)
    reason = Column(String(500), nullable=True)  # e.g. the analytics advice it followed
    at = Column(UTCDateTime, nullable=False)
