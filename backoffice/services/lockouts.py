"""Lockouts where secrets are checked: failed PIN checks per certificate code and failed buyer
checks per order are counted in ``check_lockouts``; after ``max_failures`` of them within the
window the subject's checks are refused (``TooManyAttempts``, 429) — even with the right value —
until the window has passed since the failure that reached the limit, or staff unlock it.
A right value while not locked clears the subject's failures.

Atomicity: a check is decided while the subject's own row is locked (the certificate / the order,
``SELECT ... FOR UPDATE``; on SQLite the write transaction is ``BEGIN IMMEDIATE``), and its outcome
is written in that transaction, so concurrent checks of one subject are decided one after another
and at most ``max_failures`` of them are evaluated within a window; the rest are refused.

Unknown codes and orders are not counted: there is no secret behind them to guess (the 404 already
tells everything a repeat could), and counting them would let anyone add a row per random code.
Guessing codes or order numbers is a per-client rate problem (the edge's limits), not a lockout.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Tuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice import rules
from backoffice.db import SessionFactory, read_transaction, write_transaction
from backoffice.errors import BackofficeError, NotFound, VerificationFailed, VerificationRequired
from backoffice.masking import mask_code
from backoffice.models import Certificate, CheckLockout, Order
from backoffice.rules import LockoutPolicy
from backoffice.services import audit
from backoffice.timeutil import iso
from backoffice.validation import UnlockRequest, Verification

PIN = "pin"
BUYER = "buyer"
DEFAULT_POLICY = LockoutPolicy()
_ENTITY = {PIN: "certificate", BUYER: "order"}
# Domain-separates the stored digest from any other SHA-256 of a code.
_PIN_DIGEST_PREFIX = b"darim-backoffice:pin-lockout:"


@dataclass(frozen=True)
class Subject:
    """What failures are counted against: ``key`` is stored, ``label`` shown, ``what`` said."""

    kind: str
    key: str
    label: str
    what: str


def pin_subject(code: str) -> Subject:
    """A normalised certificate code, stored only as a digest: the table never holds a code."""
    digest = hashlib.sha256(_PIN_DIGEST_PREFIX + code.encode("utf-8")).hexdigest()
    masked = mask_code(code) or ""
    return Subject(PIN, digest, masked, f"the PIN of certificate {masked}")


def buyer_subject(order_id: str) -> Subject:
    return Subject(BUYER, order_id, order_id, f"the buyer of order {order_id}")


# --- checks -----------------------------------------------------------------------------------


def _row(session: Session, subject: Subject) -> Optional[CheckLockout]:
    return session.execute(
        select(CheckLockout).where(CheckLockout.kind == subject.kind, CheckLockout.subject == subject.key)
    ).scalar_one_or_none()


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def _failures(row: Optional[CheckLockout], now: datetime, policy: LockoutPolicy) -> List[datetime]:
    if row is None:
        return []
    return rules.failures_in_window((_parse(moment) for moment in row.failed_at or []), now, policy.window)


def _lock_end(row: Optional[CheckLockout], now: datetime) -> Optional[datetime]:
    """The end of the subject's lock if it is locked at ``now``."""
    if row is None or row.locked_until is None or now >= row.locked_until:
        return None
    return row.locked_until


def ensure_open(session: Session, subject: Subject, now: datetime) -> None:
    """TooManyAttempts while ``subject`` is locked (a cheap early refusal; ``record`` decides)."""
    row = _row(session, subject)
    rules.check_not_locked(row.locked_until if row else None, now, subject.what)


def record(
    session: Session, subject: Subject, passed: bool, *, now: datetime, policy: LockoutPolicy, actor: str
) -> bool:
    """Decide one check of ``subject``; the caller holds the subject's row lock. Refused while
    locked, whatever ``passed`` says (so a lock cannot be probed with guesses); else a success
    clears the failures and a failure is counted. → ``passed``."""
    row = _row(session, subject)
    rules.check_not_locked(row.locked_until if row else None, now, subject.what)
    if passed:
        if row is not None:
            session.delete(row)
        return True
    _count_failure(session, row, subject, now, policy, actor)
    return False


def _count_failure(
    session: Session, row: Optional[CheckLockout], subject: Subject, now: datetime,
    policy: LockoutPolicy, actor: str,
) -> None:
    recent = _failures(row, now, policy)
    lock_end = rules.lock_end_after_failure(len(recent), now, policy)
    if row is None:
        row = CheckLockout(kind=subject.kind, subject=subject.key, label=subject.label)
        session.add(row)
    row.failed_at = [iso(moment) for moment in [*recent, now]]  # only times: never the value tried
    row.locked_until = lock_end
    row.updated_at = now
    if lock_end is not None:
        audit.record(
            session,
            action="lockout.locked",
            entity=_ENTITY[subject.kind],
            entity_id=subject.label,
            actor=actor,
            payload={"kind": subject.kind, "failures": len(recent) + 1, "locked_until": iso(lock_end)},
            now=now,
        )


def check_buyer(
    session: Session, order: Order, verification: Optional[Verification], *, now: datetime,
    policy: LockoutPolicy, actor: str,
) -> bool:
    """The buyer check of ``order`` (its row locked by the caller), counted. Nothing given is
    ``VerificationRequired``: nothing was tried, so nothing is counted."""
    if verification is None or not (verification.email or verification.phone_last4):
        raise VerificationRequired()
    passed = rules.buyer_matches(
        order_email=order.buyer_email,
        order_phone=order.buyer_phone,
        email=verification.email,
        phone_last4=verification.phone_last4,
    )
    return record(session, buyer_subject(order.id), passed, now=now, policy=policy, actor=actor)


def require_buyer(
    session: Session, order: Order, verification: Optional[Verification], *, now: datetime,
    policy: LockoutPolicy, actor: str,
) -> None:
    """:func:`check_buyer`, refusing with ``VerificationFailed``; run it in a
    :func:`checked_transaction` so the counted failure is committed with the refusal."""
    if not check_buyer(session, order, verification, now=now, policy=policy, actor=actor):
        raise VerificationFailed()


@contextmanager
def checked_transaction(session_factory: SessionFactory) -> Iterator[Session]:
    """A write transaction for a use case that checks a secret: a typed refusal escaping the block
    still commits what was written before it — the check's counted failure, or the failures a
    right value cleared — and then propagates. Otherwise a wrong guess would be forgotten, and a
    right value followed by, say, ``refund_window_passed`` would not clear the count.

    So the block writes nothing of its own before the check, and puts what follows it in a
    savepoint (``session.begin_nested()``), which a refusal undoes."""
    refusal: Optional[BackofficeError] = None
    with write_transaction(session_factory) as session:
        try:
            yield session
        except BackofficeError as error:
            refusal = error
    if refusal is not None:
        raise refusal


# --- staff: status and unlock -----------------------------------------------------------------


def _resolve(session: Session, kind: str, value: str, *, for_update: bool) -> Tuple[Subject, Dict[str, Any]]:
    """The subject staff ask about, its own row locked when ``for_update`` (as the checks do);
    NotFound for an unknown code / order: they are never counted."""
    if kind == PIN:
        query = select(Certificate).where(Certificate.code == value)
        certificate = session.execute(query.with_for_update() if for_update else query).scalar_one_or_none()
        if certificate is None:
            raise NotFound(f"Certificate {mask_code(value)} not found.")
        return pin_subject(value), {"order_id": certificate.order_id}
    if session.get(Order, value, with_for_update=for_update or None) is None:
        raise NotFound(f"Order {value} not found.")
    return buyer_subject(value), {}


def _status(subject: Subject, row: Optional[CheckLockout], now: datetime, policy: LockoutPolicy) -> Dict[str, Any]:
    lock_end = _lock_end(row, now)
    return {
        "kind": subject.kind,
        "subject": subject.label,
        "failures": len(_failures(row, now, policy)),
        "max_failures": policy.max_failures,
        "window_seconds": int(policy.window.total_seconds()),
        "locked": lock_end is not None,
        "locked_until": iso(lock_end) if lock_end is not None else None,
        "retry_after_seconds": rules.retry_after_seconds(lock_end, now) if lock_end is not None else None,
    }


def status(
    session_factory: SessionFactory, kind: str, value: str, *, now: datetime, policy: LockoutPolicy = DEFAULT_POLICY
) -> Dict[str, Any]:
    """Failures in the window and the lock (if any) of a certificate code's PIN / an order's buyer."""
    with read_transaction(session_factory) as session:
        subject, _ = _resolve(session, kind, value, for_update=False)
        return _status(subject, _row(session, subject), now, policy)


def unlock(
    session_factory: SessionFactory, request: UnlockRequest, *, now: datetime, policy: LockoutPolicy = DEFAULT_POLICY
) -> Dict[str, Any]:
    """Staff clear a subject's failures (and so its lock); audited with who and why."""
    with write_transaction(session_factory) as session:
        subject, context = _resolve(session, request.kind, request.subject, for_update=True)
        row = _row(session, subject)
        before = _status(subject, row, now, policy)
        if row is not None:
            session.delete(row)
        audit.record(
            session,
            action="lockout.unlock",
            entity=_ENTITY[subject.kind],
            entity_id=subject.label,
            actor=request.staff,
            payload={
                "kind": subject.kind,
                **context,
                "reason": request.reason,
                "failures_cleared": before["failures"],
                "was_locked": before["locked"],
                "locked_until": before["locked_until"],
            },
            now=now,
        )
        return {
            **_status(subject, None, now, policy),
            "cleared": {"failures": before["failures"], "was_locked": before["locked"]},
        }
