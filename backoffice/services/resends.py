"""Re-sending an order's certificates: own address freely, a new one after verification,
at most N per order per Moscow day, idempotent by key.

The buyer check (new addresses only) is counted under the order lock (``services.lockouts``): its
outcome is committed even when the request is refused, and what follows runs in a savepoint."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backoffice import rules
from backoffice.db import SessionFactory, read_transaction
from backoffice.errors import BackofficeError, IdempotencyKeyConflict, NotFound, OrderRefunded
from backoffice.masking import mask_address, mask_verification
from backoffice.models import Certificate, Order, ResendLog
from backoffice.rules import Destination, LockoutPolicy
from backoffice.serializers import resend_view
from backoffice.services import audit, lockouts
from backoffice.services.orders import load_order
from backoffice.timeutil import moscow_day_bounds
from backoffice.validation import ResendRequest


@dataclass(frozen=True)
class ResendOutcome:
    created: bool
    resend: Dict[str, Any]


def _sent_today(session: Session, order_id: str, now: datetime) -> int:
    start, end = moscow_day_bounds(now)
    return session.execute(
        select(func.count(ResendLog.id)).where(
            ResendLog.order_id == order_id,
            ResendLog.created_at >= start,
            ResendLog.created_at < end,
        )
    ).scalar_one()


def _codes(session: Session, order_id: str) -> list:
    return list(
        session.execute(
            select(Certificate.code).where(Certificate.order_id == order_id).order_by(Certificate.id)
        ).scalars()
    )


def _replay(session: Session, order_id: str, key: str, now: datetime, daily_limit: int):
    log = session.execute(select(ResendLog).where(ResendLog.idempotency_key == key)).scalar_one_or_none()
    if log is None:
        return None
    if log.order_id != order_id:
        raise IdempotencyKeyConflict("This idempotency key was already used for a resend of another order.")
    left = rules.resends_left(_sent_today(session, order_id, now), daily_limit)
    return ResendOutcome(created=False, resend=resend_view(log, _codes(session, order_id), left))


def _create(
    session: Session, order_id: str, request: ResendRequest, actor: str, now: datetime, daily_limit: int,
    lockout: LockoutPolicy,
) -> ResendOutcome:
    order = load_order(session, order_id, for_update=True)
    replay = _replay(session, order_id, request.idempotency_key, now, daily_limit)
    if replay is not None:
        return replay
    if order.refund is not None:
        raise OrderRefunded()

    destination = rules.resolve_resend_destination(
        buyer_email=order.buyer_email,
        buyer_phone=order.buyer_phone,
        deliveries=[(c.delivery_channel, c.delivery_address) for c in order.certificates],
        channel=request.channel,
        address=request.address,
    )
    if destination.is_new:  # the order's own addresses need no check (and so never hit a lock)
        lockouts.require_buyer(session, order, request.verification, now=now, policy=lockout, actor=actor)
    with session.begin_nested():  # a refusal from here on undoes only this part, not the check
        return _send(session, order, destination, request, actor, now, daily_limit)


def _send(
    session: Session, order: Order, destination: Destination, request: ResendRequest, actor: str,
    now: datetime, daily_limit: int,
) -> ResendOutcome:
    verification = request.verification
    sent_today = _sent_today(session, order.id, now)
    rules.check_resend_limit(sent_today, daily_limit)

    log = ResendLog(
        order_id=order.id,
        channel=destination.channel,
        address=destination.address,
        to_new_address=destination.is_new,
        idempotency_key=request.idempotency_key,
        created_at=now,
    )
    session.add(log)
    session.flush()
    audit.record(
        session,
        action="certificate.resend",
        entity="order",
        entity_id=order.id,
        actor=actor,
        payload={
            "resend_id": log.id,
            "channel": log.channel,
            "address": mask_address(log.channel, log.address),
            "to_new_address": log.to_new_address,
            "idempotency_key": log.idempotency_key,
            "verification": mask_verification(vars(verification)) if verification else None,
        },
        now=now,
    )
    left = rules.resends_left(sent_today + 1, daily_limit)
    return ResendOutcome(created=True, resend=resend_view(log, _codes(session, order.id), left))


def resend(
    session_factory: SessionFactory,
    order_id: str,
    request: ResendRequest,
    *,
    actor: str,
    now: datetime,
    daily_limit: int,
    lockout: LockoutPolicy = lockouts.DEFAULT_POLICY,
) -> ResendOutcome:
    try:
        with lockouts.checked_transaction(session_factory) as session:
            return _create(session, order_id, request, actor, now, daily_limit, lockout)
    except IntegrityError:
        with read_transaction(session_factory) as session:
            replay = _replay(session, order_id, request.idempotency_key, now, daily_limit)
            if replay is None:
                raise
            return replay
    except NotFound:
        raise
    except BackofficeError as refusal:
        audit.record_refusal(
            session_factory,
            action="certificate.resend.refused",
            entity="order",
            entity_id=order_id,
            actor=actor,
            error=refusal,
            payload={
                "idempotency_key": request.idempotency_key,
                "channel": request.channel,
                "address": mask_address(request.channel or "email", request.address) if request.address else None,
                "verification": mask_verification(vars(request.verification)) if request.verification else None,
            },
            now=now,
        )
        raise
