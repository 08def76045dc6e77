"""Creating refunds: verified, by the handbook, idempotent, never two for one order.

Race safety, in layers: the order row is locked (``SELECT ... FOR UPDATE``; on SQLite the write
transaction is ``BEGIN IMMEDIATE``), an existing refund is looked up under that lock, and the
``refunds.order_id`` / ``refunds.idempotency_key`` UNIQUE constraints catch whatever slips past
(the loser's IntegrityError is turned into a replay of the winner's refund).

The buyer check is counted under the same order lock (``services.lockouts``): its outcome is
committed even when the request is refused, and the rest of the use case runs in a savepoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Optional

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backoffice import rules
from backoffice.db import SessionFactory, read_transaction
from backoffice.errors import BackofficeError, IdempotencyKeyConflict, NotFound
from backoffice.masking import mask_verification
from backoffice.models import Order, Refund
from backoffice.rules import LockoutPolicy
from backoffice.serializers import money, refund_view
from backoffice.services import audit, lockouts
from backoffice.services.orders import check_refund_allowed, load_order
from backoffice.validation import RefundRequest


@dataclass(frozen=True)
class RefundOutcome:
    created: bool
    refund: Dict[str, Any]


def _existing(session: Session, request: RefundRequest) -> Optional[Refund]:
    rows = session.execute(
        select(Refund).where(
            or_(Refund.idempotency_key == request.idempotency_key, Refund.order_id == request.order_id)
        )
    ).scalars().all()
    by_key = next((row for row in rows if row.idempotency_key == request.idempotency_key), None)
    if by_key is not None and by_key.order_id != request.order_id:
        raise IdempotencyKeyConflict(
            "This idempotency key was already used for a refund of another order."
        )
    return by_key or next((row for row in rows if row.order_id == request.order_id), None)


def _create(
    session: Session, request: RefundRequest, actor: str, now: datetime, window_days: int, lockout: LockoutPolicy
) -> RefundOutcome:
    order = load_order(session, request.order_id, for_update=True)
    lockouts.require_buyer(session, order, request.verification, now=now, policy=lockout, actor=actor)
    with session.begin_nested():  # a refusal from here on undoes only this part, not the check
        return _refund(session, order, request, actor, now, window_days)


def _refund(
    session: Session, order: Order, request: RefundRequest, actor: str, now: datetime, window_days: int
) -> RefundOutcome:
    existing = _existing(session, request)
    if existing is not None:
        return RefundOutcome(created=False, refund=refund_view(existing))

    check_refund_allowed(order, now, window_days)

    refund = Refund(
        order_id=order.id,
        amount=order.amount,
        status="pending",
        idempotency_key=request.idempotency_key,
        payment_method=order.payment_method,
        due_by=rules.refund_due_by(now),
        created_at=now,
    )
    session.add(refund)
    for certificate in order.certificates:  # a refunded certificate must not be spent
        certificate.status = "refunded"
        certificate.balance = 0
    session.flush()
    audit.record(
        session,
        action="refund.create",
        entity="order",
        entity_id=order.id,
        actor=actor,
        payload={
            "refund_id": refund.id,
            "amount": money(refund.amount),
            "payment_method": refund.payment_method,
            "idempotency_key": refund.idempotency_key,
            "verification": mask_verification(vars(request.verification)),
            "certificates_cancelled": len(order.certificates),
        },
        now=now,
    )
    return RefundOutcome(created=True, refund=refund_view(refund))


def create_refund(
    session_factory: SessionFactory,
    request: RefundRequest,
    *,
    actor: str,
    now: datetime,
    window_days: int,
    lockout: LockoutPolicy = lockouts.DEFAULT_POLICY,
) -> RefundOutcome:
    try:
        with lockouts.checked_transaction(session_factory) as session:
            return _create(session, request, actor, now, window_days, lockout)
    except IntegrityError:
        # A concurrent request committed first (possible on databases without BEGIN IMMEDIATE).
        with read_transaction(session_factory) as session:
            existing = _existing(session, request)
            if existing is None:
                raise
            return RefundOutcome(created=False, refund=refund_view(existing))
    except NotFound:
        raise
    except BackofficeError as refusal:
        audit.record_refusal(
            session_factory,
            action="refund.refused",
            entity="order",
            entity_id=request.order_id,
            actor=actor,
            error=refusal,
            payload={
                "idempotency_key": request.idempotency_key,
                "verification": mask_verification(vars(request.verification)),
            },
            now=now,
        )
        raise
