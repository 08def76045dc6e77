"""The handbook's rules as pure functions (no database, no HTTP)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from backoffice import errors, rules
from backoffice.timeutil import MOSCOW, moscow_day_bounds

NOW = datetime(2025, 3, 12, 8, 0, tzinfo=timezone.utc)  # Wed 11:00 Moscow


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=MOSCOW).astimezone(timezone.utc)


def check(**overrides):
    facts = dict(
        is_b2b=False, purchased_at=NOW - timedelta(days=3), certificate_statuses=["active"],
        now=NOW, window_days=14, already_refunded=False,
    )
    facts.update(overrides)
    rules.check_refund_allowed(**facts)


# --- refunds ----------------------------------------------------------------------------------


def test_refund_allowed_for_fresh_untouched_b2c_order() -> None:
    check()  # no exception


@pytest.mark.parametrize(
    "status, error, code",
    [
        ("activated", errors.RefundNotAllowedActivated, "refund_not_allowed_activated"),
        ("partially_used", errors.RefundNotAllowedPartiallyUsed, "refund_not_allowed_partially_used"),
        ("used", errors.RefundNotAllowedUsed, "refund_not_allowed_used"),
        ("expired", errors.RefundNotAllowedExpired, "refund_not_allowed_expired"),
        ("refunded", errors.RefundAlreadyExists, "refund_already_exists"),
    ],
)
def test_refund_refused_for_consumed_certificates(status, error, code) -> None:
    with pytest.raises(error) as caught:
        check(certificate_statuses=["active", status])
    assert caught.value.code == code
    assert caught.value.needs_human is False
    assert caught.value.http_status == 409


def test_refund_window_is_14_calendar_days_inclusive() -> None:
    check(purchased_at=NOW - timedelta(days=14))
    with pytest.raises(errors.RefundWindowPassed) as caught:
        check(purchased_at=NOW - timedelta(days=15))
    assert caught.value.code == "refund_window_passed"
    assert caught.value.needs_human is True  # a staff member decides: ticket / escalation


def test_refund_window_counts_moscow_calendar_days_not_hours() -> None:
    bought = msk(2025, 3, 1, 23, 50)  # late evening, day 0
    # the 14th calendar day, until its last minute: still allowed
    check(purchased_at=bought, now=msk(2025, 3, 15, 23, 59))
    # only 14 days and 20 minutes have passed, but it is already the 15th calendar day in Moscow
    with pytest.raises(errors.RefundWindowPassed):
        check(purchased_at=bought, now=msk(2025, 3, 16, 0, 10))
    assert rules.calendar_days_since(msk(2025, 3, 1, 23, 59), msk(2025, 3, 2, 0, 1)) == 1
    assert rules.calendar_days_since(msk(2025, 3, 1, 0, 1), msk(2025, 3, 1, 23, 59)) == 0


def test_refund_window_is_configurable() -> None:
    with pytest.raises(errors.RefundWindowPassed):
        check(purchased_at=NOW - timedelta(days=8), window_days=7)


def test_b2b_refund_goes_to_the_manager_whatever_else() -> None:
    with pytest.raises(errors.RefundB2BManagerOnly) as caught:
        check(is_b2b=True)
    assert caught.value.code == "refund_b2b_manager_only"
    assert caught.value.needs_human is True
    with pytest.raises(errors.RefundB2BManagerOnly):
        check(is_b2b=True, certificate_statuses=["used"], purchased_at=NOW - timedelta(days=90))


def test_consumed_certificate_beats_the_window() -> None:
    """An activated certificate is never refundable, so no human is needed even after 14 days."""
    with pytest.raises(errors.RefundNotAllowedActivated):
        check(certificate_statuses=["activated"], purchased_at=NOW - timedelta(days=30))


def test_already_refunded_comes_first() -> None:
    with pytest.raises(errors.RefundAlreadyExists):
        check(already_refunded=True, is_b2b=True)


def test_effective_status_expires_unused_certificates() -> None:
    past, future = NOW - timedelta(seconds=1), NOW + timedelta(days=1)
    assert rules.effective_status("active", past, NOW) == "expired"
    assert rules.effective_status("partially_used", past, NOW) == "expired"
    assert rules.effective_status("activated", past, NOW) == "expired"
    assert rules.effective_status("used", past, NOW) == "used"
    assert rules.effective_status("refunded", past, NOW) == "refunded"
    assert rules.effective_status("active", future, NOW) == "active"


def test_refund_due_by_is_ten_working_days() -> None:
    assert rules.add_working_days(date(2025, 3, 12), 10) == date(2025, 3, 26)  # Wed → Wed, 2 weekends
    assert rules.add_working_days(date(2025, 3, 14), 1) == date(2025, 3, 17)  # Fri → Mon
    assert rules.refund_due_by(msk(2025, 3, 15, 12, 0)) == date(2025, 3, 28)  # Saturday request


# --- verification -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, ok",
    [
        ({"email": "ivan@mail.ru"}, True),
        ({"email": "  IVAN@Mail.RU "}, True),
        ({"email": "ivan@mail.com"}, False),
        ({"phone_last4": "4567"}, True),
        ({"phone_last4": "4566"}, False),
        ({"email": "ivan@mail.ru", "phone_last4": "4567"}, True),
        ({"email": "ivan@mail.ru", "phone_last4": "0000"}, False),  # everything given must match
        ({}, False),
        ({"email": "", "phone_last4": ""}, False),
    ],
)
def test_buyer_matches(given, ok) -> None:
    assert rules.buyer_matches(order_email="Ivan@mail.ru", order_phone="+79161234567", **given) is ok


def test_require_buyer_verified_errors() -> None:
    with pytest.raises(errors.VerificationRequired) as missing:
        rules.require_buyer_verified(order_email="a@b.ru", order_phone="+79161234567")
    assert missing.value.code == "verification_required"
    with pytest.raises(errors.VerificationFailed) as wrong:
        rules.require_buyer_verified(order_email="a@b.ru", order_phone="+79161234567", phone_last4="1111")
    assert wrong.value.code == "verification_failed"
    rules.require_buyer_verified(order_email="a@b.ru", order_phone="+79161234567", email="A@B.RU")


# --- resends ----------------------------------------------------------------------------------


def test_resend_limit_three_per_day() -> None:
    for sent in range(3):
        rules.check_resend_limit(sent, 3)
    with pytest.raises(errors.ResendLimitReached) as caught:
        rules.check_resend_limit(3, 3)
    assert caught.value.code == "resend_limit_reached"
    assert caught.value.http_status == 429
    assert rules.resends_left(1, 3) == 2
    assert rules.resends_left(5, 3) == 0


def test_resend_day_is_the_moscow_calendar_day() -> None:
    start, end = moscow_day_bounds(msk(2025, 3, 12, 0, 30))  # 21:30 UTC on the 11th
    assert start == datetime(2025, 3, 11, 21, 0, tzinfo=timezone.utc)
    assert end == datetime(2025, 3, 12, 21, 0, tzinfo=timezone.utc)
    assert moscow_day_bounds(msk(2025, 3, 12, 23, 59))[0] == start


DELIVERIES = [("email", "Ivan@Mail.ru")]


def destination(**kwargs):
    return rules.resolve_resend_destination(
        buyer_email="ivan@mail.ru", buyer_phone="+79161234567", deliveries=DELIVERIES, **kwargs
    )


def test_resend_destination_defaults_to_where_the_certificates_went() -> None:
    assert destination() == rules.Destination("email", "Ivan@Mail.ru", False)
    assert destination(channel="sms") == rules.Destination("sms", "+79161234567", False)
    assert destination(address="ivan@mail.ru") == rules.Destination("email", "ivan@mail.ru", False)
    assert destination(address="+79161234567").is_new is False


def test_resend_destination_flags_new_addresses() -> None:
    assert destination(address="other@mail.ru") == rules.Destination("email", "other@mail.ru", True)
    assert destination(channel="sms", address="+79990000000").is_new is True


def test_resend_destination_for_many_recipients_is_the_buyer() -> None:
    many = [("email", "a@romashka.ru"), ("email", "b@romashka.ru")]
    chosen = rules.resolve_resend_destination(
        buyer_email="hr@romashka.ru", buyer_phone="+74951234567", deliveries=many
    )
    assert chosen == rules.Destination("email", "hr@romashka.ru", False)
    # each employee's own address is one of the order's addresses
    assert rules.resolve_resend_destination(
        buyer_email="hr@romashka.ru", buyer_phone="+74951234567", deliveries=many, address="b@romashka.ru"
    ).is_new is False


def test_new_address_needs_verification() -> None:
    new = rules.Destination("email", "other@mail.ru", True)
    own = rules.Destination("email", "ivan@mail.ru", False)
    facts = dict(order_email="ivan@mail.ru", order_phone="+79161234567")
    rules.require_verification_for_new_address(own, **facts)
    with pytest.raises(errors.VerificationRequired):
        rules.require_verification_for_new_address(new, **facts)
    with pytest.raises(errors.VerificationFailed):
        rules.require_verification_for_new_address(new, email="other@mail.ru", **facts)
    rules.require_verification_for_new_address(new, phone_last4="4567", **facts)


# --- support hours ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "created, due",
    [
        (msk(2025, 3, 12, 11, 0), msk(2025, 3, 12, 13, 0)),  # working hours: within 2 hours
        (msk(2025, 3, 12, 20, 30), msk(2025, 3, 13, 10, 30)),  # 30 min today + 1.5 h tomorrow
        (msk(2025, 3, 12, 23, 0), msk(2025, 3, 13, 11, 0)),  # night: next morning
        (msk(2025, 3, 13, 3, 0), msk(2025, 3, 13, 11, 0)),  # early morning: the same morning
        (msk(2025, 3, 15, 12, 0), msk(2025, 3, 15, 14, 0)),  # support works daily, weekends too
    ],
)
def test_ticket_first_response(created, due) -> None:
    assert rules.ticket_first_response_by(created) == due


def test_staff_online_9_to_21_moscow() -> None:
    assert rules.staff_online(msk(2025, 3, 12, 9, 0))
    assert rules.staff_online(msk(2025, 3, 12, 20, 59))
    assert not rules.staff_online(msk(2025, 3, 12, 21, 0))
    assert not rules.staff_online(msk(2025, 3, 12, 8, 59))


def test_every_typed_error_has_a_unique_stable_code() -> None:
    classes = [
        value for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.BackofficeError)
    ]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    for required in ("refund_not_allowed_activated", "refund_window_passed", "refund_b2b_manager_only",
                     "verification_failed", "resend_limit_reached", "not_found", "pin_invalid"):
        assert required in codes
    error = errors.PinInvalid()
    assert error.to_dict() == {"error": {"code": "pin_invalid", "message": error.message}}
