"""The handbook's rules as pure functions: facts in, a value or a typed refusal out.

No database, no clock: callers pass ``now`` (aware UTC) and plain values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable, List, Optional, Sequence, Tuple

from backoffice import errors
from backoffice.timeutil import MOSCOW, moscow_date, require_aware

REFUND_WORKING_DAYS = 10
SUPPORT_OPENS = time(9, 0)
SUPPORT_CLOSES = time(21, 0)
TICKET_RESPONSE = timedelta(hours=2)

# Statuses that block a refund, most "consumed" first: the first one found is the reason given.
_BLOCKING_STATUSES = (
    ("used", errors.RefundNotAllowedUsed),
    ("partially_used", errors.RefundNotAllowedPartiallyUsed),
    ("activated", errors.RefundNotAllowedActivated),
    ("expired", errors.RefundNotAllowedExpired),
    ("refunded", errors.RefundAlreadyExists),
)
_CAN_EXPIRE = ("active", "activated", "partially_used")


# --- certificates -----------------------------------------------------------------------------


def effective_status(status: str, expires_at: datetime, now: datetime) -> str:
    """The stored status, except that a not-yet-used certificate past its date is ``expired``."""
    if status in _CAN_EXPIRE and require_aware(expires_at) <= require_aware(now):
        return "expired"
    return status


# --- refunds ----------------------------------------------------------------------------------


def calendar_days_since(purchased_at: datetime, now: datetime) -> int:
    """Calendar days (Moscow dates) from the purchase to ``now``: same day = 0."""
    return (moscow_date(now) - moscow_date(purchased_at)).days


def check_refund_allowed(
    *,
    is_b2b: bool,
    purchased_at: datetime,
    certificate_statuses: Iterable[str],
    now: datetime,
    window_days: int = 14,
    already_refunded: bool = False,
) -> None:
    """Raise the refusal the handbook gives for this order, or return if a full refund is allowed.

    ``certificate_statuses`` are *effective* statuses (see :func:`effective_status`).
    Order of reasons: already refunded → B2B (only the manager decides anything) → a certificate
    used / partially used / activated / expired (never refundable) → more than ``window_days``
    calendar days since the purchase (a staff member decides on a written request).
    """
    if already_refunded:
        raise errors.RefundAlreadyExists()
    if is_b2b:
        raise errors.RefundB2BManagerOnly()
    statuses = set(certificate_statuses)
    for status, refusal in _BLOCKING_STATUSES:
        if status in statuses:
            raise refusal()
    if calendar_days_since(purchased_at, now) > window_days:
        raise errors.RefundWindowPassed(
            f"More than {window_days} calendar days have passed since the purchase: a refund is "
            "possible only on a written request decided by a staff member (create a ticket)."
        )


def add_working_days(start: date, days: int) -> date:
    """``start`` + ``days`` working days (Monday–Friday; public holidays are not modelled)."""
    current = start
    left = days
    while left > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            left -= 1
    return current


def refund_due_by(requested_at: datetime, working_days: int = REFUND_WORKING_DAYS) -> date:
    return add_working_days(moscow_date(requested_at), working_days)


# --- buyer verification -----------------------------------------------------------------------
# The comparisons only: the services check a buyer through ``services.lockouts`` (check_buyer /
# require_buyer), which counts failures per order and refuses a locked one — never call these
# directly on a request path, or the last 4 phone digits can be enumerated.


def buyer_matches(
    *,
    order_email: str,
    order_phone: str,
    email: Optional[str] = None,
    phone_last4: Optional[str] = None,
) -> bool:
    """Order + e-mail (case-insensitive) or + the last 4 digits of the buyer's phone.
    Every piece given must match; giving nothing never verifies."""
    if not email and not phone_last4:
        return False
    if email and email.strip().casefold() != order_email.strip().casefold():
        return False
    if phone_last4:
        digits = "".join(ch for ch in order_phone if ch.isdigit())
        if len(digits) < 4 or phone_last4.strip() != digits[-4:]:
            return False
    return True


def require_buyer_verified(
    *,
    order_email: str,
    order_phone: str,
    email: Optional[str] = None,
    phone_last4: Optional[str] = None,
) -> None:
    if not email and not phone_last4:
        raise errors.VerificationRequired()
    if not buyer_matches(
        order_email=order_email, order_phone=order_phone, email=email, phone_last4=phone_last4
    ):
        raise errors.VerificationFailed()


# --- failed-check lockouts --------------------------------------------------------------------


@dataclass(frozen=True)
class LockoutPolicy:
    """After ``max_failures`` failed checks of one subject (a certificate's PIN, an order's buyer)
    within ``window``, its checks are refused for ``window`` from the failure that reached the
    limit — so the lock ends when the window has passed since all the failures that caused it."""

    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, got {self.max_failures}")
        if self.window <= timedelta(0):
            raise ValueError(f"window must be positive, got {self.window}")


def failures_in_window(failed_at: Iterable[datetime], now: datetime, window: timedelta) -> List[datetime]:
    """The failures after ``now - window``, oldest first (later ones count too: a clock that went
    back must not forget them)."""
    start = require_aware(now) - window
    return sorted(moment for moment in failed_at if moment > start)


def retry_after_seconds(locked_until: datetime, now: datetime) -> int:
    """Whole seconds from ``now`` to the lock's end, rounded up (never 0 while locked): a caller
    that waits exactly that long finds the lock over."""
    return max(1, math.ceil((require_aware(locked_until) - require_aware(now)).total_seconds()))


def check_not_locked(locked_until: Optional[datetime], now: datetime, what: str) -> None:
    """Refuse a check while its subject is locked, whatever value is given."""
    if locked_until is None or require_aware(now) >= locked_until:
        return
    wait = retry_after_seconds(locked_until, now)
    raise errors.TooManyAttempts(
        wait,
        f"Too many failed checks of {what}: checks are locked for {math.ceil(wait / 60)} more "
        "minute(s), or until staff unlock them.",
    )


def lock_end_after_failure(recent_failures: int, now: datetime, policy: LockoutPolicy) -> Optional[datetime]:
    """When a failure at ``now``, after ``recent_failures`` in the window, reaches the limit: the
    lock's end (``now + window``); else None."""
    return now + policy.window if recent_failures + 1 >= policy.max_failures else None


# --- resends ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    channel: str
    address: str
    is_new: bool


def resolve_resend_destination(
    *,
    buyer_email: str,
    buyer_phone: str,
    deliveries: Sequence[Tuple[str, str]],
    channel: Optional[str] = None,
    address: Optional[str] = None,
) -> Destination:
    """Where a resend goes. The order's own addresses are the buyer's e-mail and phone and the
    addresses its certificates were delivered to; anything else is a NEW address.

    - nothing given: where the certificates went (if to one place), else the buyer's e-mail;
    - only a channel: that channel's delivery address (if one), else the buyer's contact;
    - an address (normalised): as given, flagged new unless it is one of the order's own.
    """
    own = {("email", buyer_email.strip().lower()), ("sms", buyer_phone)}
    own |= {(ch, addr.strip().lower() if ch == "email" else addr) for ch, addr in deliveries}
    if address is not None:
        chosen = channel or ("email" if "@" in address else "sms")
        return Destination(chosen, address, (chosen, address) not in own)
    wanted = sorted({d for d in deliveries if channel is None or d[0] == channel})
    if len(wanted) == 1:
        return Destination(wanted[0][0], wanted[0][1], False)
    if channel == "sms":
        return Destination("sms", buyer_phone, False)
    return Destination("email", buyer_email, False)


def require_verification_for_new_address(
    destination: Destination,
    *,
    order_email: str,
    order_phone: str,
    email: Optional[str] = None,
    phone_last4: Optional[str] = None,
) -> None:
    """A new e-mail or phone only after buyer verification; the order's own need none."""
    if destination.is_new:
        require_buyer_verified(
            order_email=order_email, order_phone=order_phone, email=email, phone_last4=phone_last4
        )


def check_resend_limit(sent_today: int, daily_limit: int = 3) -> None:
    """At most ``daily_limit`` resends per order per Moscow calendar day."""
    if sent_today >= daily_limit:
        raise errors.ResendLimitReached(
            f"The order was already re-sent {sent_today} time(s) today; the limit is {daily_limit} "
            "per calendar day (Moscow time)."
        )


def resends_left(sent_today: int, daily_limit: int = 3) -> int:
    return max(0, daily_limit - sent_today)


# --- support hours ----------------------------------------------------------------------------


def staff_online(now: datetime) -> bool:
    """Support staff work daily 9:00–21:00 Moscow time."""
    local = require_aware(now).astimezone(MOSCOW).time()
    return SUPPORT_OPENS <= local < SUPPORT_CLOSES


def ticket_first_response_by(created_at: datetime) -> datetime:
    """Taken into work within 2 working hours (9:00–21:00 Moscow, daily): a ticket opened in the
    evening or at night is taken the next morning."""
    local = require_aware(created_at).astimezone(MOSCOW)
    remaining = TICKET_RESPONSE
    cursor = local
    while True:
        opens = datetime.combine(cursor.date(), SUPPORT_OPENS, tzinfo=MOSCOW)
        closes = datetime.combine(cursor.date(), SUPPORT_CLOSES, tzinfo=MOSCOW)
        if cursor < opens:
            cursor = opens
        if cursor >= closes:
            cursor = datetime.combine(cursor.date() + timedelta(days=1), SUPPORT_OPENS, tzinfo=MOSCOW)
            continue
        available = closes - cursor
        if remaining <= available:
            return (cursor + remaining).astimezone(timezone.utc)
        remaining -= available
        cursor = closes
