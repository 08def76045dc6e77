"""Tables of the back office (SQLAlchemy 1.4 declarative)."""
from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import declarative_base, relationship

from backoffice.column_types import Money, UTCDateTime

Base = declarative_base()

CERTIFICATE_STATUSES = ("active", "activated", "partially_used", "used", "expired", "refunded")
DELIVERY_CHANNELS = ("email", "sms")
REFUND_STATUSES = ("pending", "completed")
TICKET_PRIORITIES = ("low", "normal", "high")
TICKET_STATUSES = ("open", "closed")
LOCKOUT_KINDS = ("pin", "buyer")
MULTI_BRAND = "Дарим Мульти"


def _one_of(column: str, values: tuple) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


class Order(Base):
    __tablename__ = "orders"

    id = Column(String(8), primary_key=True)  # 8 digits, e.g. 40817263
    buyer_email = Column(String(254), nullable=False)
    buyer_phone = Column(String(12), nullable=False)  # +7XXXXXXXXXX
    is_b2b = Column(Boolean, nullable=False, default=False)
    company_inn = Column(String(12), nullable=True)
    payment_method = Column(String(32), nullable=False)  # card / sbp / invoice ...
    amount = Column(Money, nullable=False)
    created_at = Column(UTCDateTime, nullable=False)

    certificates = relationship(
        "Certificate", back_populates="order", order_by="Certificate.id", lazy="selectin"
    )
    refund = relationship("Refund", back_populates="order", uselist=False, lazy="selectin")


class Certificate(Base):
    __tablename__ = "certificates"
    __table_args__ = (
        CheckConstraint(_one_of("status", CERTIFICATE_STATUSES), name="ck_certificate_status"),
        CheckConstraint(_one_of("delivery_channel", DELIVERY_CHANNELS), name="ck_certificate_channel"),
    )

    id = Column(Integer, primary_key=True, autoincrement=True)
    code = Column(String(18), nullable=False, unique=True)  # DRM-XXXX-XXXX-XXXX
    pin_hash = Column(String(200), nullable=False)  # pbkdf2_sha256$iterations$salt$hash, never the PIN
    order_id = Column(String(8), ForeignKey("orders.id"), nullable=False, index=True)
    brand = Column(String(100), nullable=False)  # a brand name or «Дарим Мульти»
    nominal = Column(Money, nullable=False)
    balance = Column(Money, nullable=False)
    status = Column(String(20), nullable=False, default="active")
    expires_at = Column(UTCDateTime, nullable=False)
    delivery_channel = Column(String(5), nullable=False)
    delivery_address = Column(String(254), nullable=False)

    order = relationship("Order", back_populates="certificates")


class Brand(Base):
    """Partner catalogue: what a «Дарим Мульти» can be exchanged for, and how a brand accepts it."""

    __tablename__ = "brands"

    name = Column(String(100), primary_key=True)
    in_catalogue = Column(Boolean, nullable=False, default=True)
    online = Column(Boolean, nullable=False, default=True)
    offline = Column(Boolean, nullable=False, default=True)
    single_purchase = Column(Boolean, nullable=False, default=False)  # remainder burns after one purchase
    note = Column(String(500), nullable=True)


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (CheckConstraint(_one_of("status", REFUND_STATUSES), name="ck_refund_status"),)

    id = Column(Integer, primary_key=True, autoincrement=True)
    # UNIQUE: the handbook's "a repeated request does not create a second refund", enforced by the DB.
    order_id = Column(String(8), ForeignKey("orders.id"), nullable=False, unique=True)
    amount = Column(Money, nullable=False)
    status = Column(String(16), nullable=False, default="pending")
    idempotency_key = Column(String(128), nullable=False, unique=True)
    payment_method = Column(String(32), nullable=False)
    due_by = Column(Date, nullable=False)  # 10 working days after the request
    created_at = Column(UTCDateTime, nullable=False)

    order = relationship("Order", back_populates="refund")


class ResendLog(Base):
    __tablename__ = "resend_log"
    __table_args__ = (
        CheckConstraint(_one_of("channel", DELIVERY_CHANNELS), name="ck_resend_channel"),
        Index("ix_resend_log_order_created", "order_id", "created_at"),
    )

    id = Column(Integer, primary_key=True, autoincrement=True)
    order_id = Column(String(8), ForeignKey("orders.id"), nullable=False)
    channel = Column(String(5), nullable=False)
    address = Column(String(254), nullable=False)
    to_new_address = Column(Boolean, nullable=False, default=False)
    idempotency_key = Column(String(128), nullable=False, unique=True)
    created_at = Column(UTCDateTime, nullable=False)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint(_one_of("priority", TICKET_PRIORITIES), name="ck_ticket_priority"),
        CheckConstraint(_one_of("status", TICKET_STATUSES), name="ck_ticket_status"),
    )

    id = Column(Integer, primary_key=True, autoincrement=True)
    subject = Column(String(200), nullable=False)
    summary = Column(Text, nullable=False, default="")
    transcript = Column(JSON, nullable=True)  # a string or a list of {"sender", "text"} turns
    priority = Column(String(8), nullable=False, default="normal")
    status = Column(String(8), nullable=False, default="open")
    contact = Column(String(254), nullable=True)
    conversation_id = Column(String(128), nullable=True, index=True)
    category = Column(String(64), nullable=False, default="other")
    order_id = Column(String(8), nullable=True)  # as the client gave it; not necessarily a real order
    idempotency_key = Column(String(128), nullable=True, unique=True)
    first_response_by = Column(UTCDateTime, nullable=False)
    created_at = Column(UTCDateTime, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False)


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_entity", "entity", "entity_id"),)

    id = Column(Integer, primary_key=True, autoincrement=True)
    action = Column(String(64), nullable=False)
    entity = Column(String(32), nullable=False)
    entity_id = Column(String(64), nullable=False)
    actor = Column(String(64), nullable=False)
    payload = Column(JSON, nullable=False)  # personal data masked before it gets here
    created_at = Column(UTCDateTime, nullable=False)


class CheckLockout(Base):
    """Failed secret checks of one subject: the PIN of a certificate code, or the buyer of an order.
    A row exists only while there are failures to remember; a right value or a staff unlock deletes
    it. Never the PIN or the value tried, and never a certificate code in clear."""

    __tablename__ = "check_lockouts"
    __table_args__ = (
        CheckConstraint(_one_of("kind", LOCKOUT_KINDS), name="ck_lockout_kind"),
        UniqueConstraint("kind", "subject", name="uq_lockout_subject"),
    )

    id = Column(Integer, primary_key=True, autoincrement=True)
    kind = Column(String(5), nullable=False)
    subject = Column(String(64), nullable=False)  # pin: SHA-256 (hex) of the code; buyer: the order id
    label = Column(String(32), nullable=False)  # what staff and the audit see: masked code / order id
    failed_at = Column(JSON, nullable=False)  # ISO times of the failures in the window
    locked_until = Column(UTCDateTime, nullable=True)
    updated_at = Column(UTCDateTime, nullable=False)
