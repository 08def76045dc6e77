"""Reading orders: the masked view, buyer verification (counted, see ``services.lockouts``) and
refund eligibility."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Dict

from sqlalchemy.orm import Session

from backoffice import rules
from backoffice.db import SessionFactory, read_transaction, write_transaction
from backoffice.errors import NotFound, RefundNotAllowed
from backoffice.models import Order
from backoffice.rules import LockoutPolicy
from backoffice.serializers import money, order_view, refund_view
from backoffice.services import lockouts
from backoffice.validation import Verification


def load_order(session: Session, order_id: str, *, for_update: bool = False) -> Order:
    order = session.get(Order, order_id, with_for_update=for_update or None)
    if order is None:
        raise NotFound(f"Order {order_id} not found.")
    return order


def get_order(session_factory: SessionFactory, order_id: str, now: datetime) -> Dict[str, Any]:
    with read_transaction(session_factory) as session:
        return order_view(load_order(session, order_id), now)


def verify_buyer(
    session_factory: SessionFactory,
    order_id: str,
    verification: Verification,
    *,
    now: datetime,
    actor: str = "api",
    lockout: LockoutPolicy = lockouts.DEFAULT_POLICY,
) -> bool:
    """A mismatch is an answer (False), not an error, so its counted failure commits normally."""
    with write_transaction(session_factory) as session:
        order = load_order(session, order_id, for_update=True)  # checks of one order queue up
        return lockouts.check_buyer(session, order, verification, now=now, policy=lockout, actor=actor)


def check_refund_allowed(order: Order, now: datetime, window_days: int) -> None:
    rules.check_refund_allowed(
        is_b2b=order.is_b2b,
        purchased_at=order.created_at,
        certificate_statuses=[
            rules.effective_status(c.status, c.expires_at, now) for c in order.certificates
        ],
        now=now,
        window_days=window_days,
        already_refunded=order.refund is not None,
    )


def refund_eligibility(
    session_factory: SessionFactory, order_id: str, now: datetime, window_days: int
) -> Dict[str, Any]:
    with read_transaction(session_factory) as session:
        order = load_order(session, order_id)
        reply: Dict[str, Any] = {
            "order_id": order.id,
            "eligible": True,
            "reason": None,
            "message": "A full refund is possible after buyer verification and the client's consent.",
            "needs_human": False,
            "amount": money(order.amount),
            "payment_method": order.payment_method,
            "days_since_purchase": rules.calendar_days_since(order.created_at, now),
            "refund_window_days": window_days,
            "refund": refund_view(order.refund) if order.refund is not None else None,
        }
        try:
            check_refund_allowed(order, now, window_days)
        except RefundNotAllowed as refusal:
            reply.update(
                eligible=False,
                reason=refusal.code,
                message=refusal.message,
                needs_human=refusal.needs_human,
            )
        return reply
