"""POST /orders/<id>/resend: own vs new address, verification, the daily limit (Moscow day),
idempotency and audit."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from backoffice.app import create_app
from backoffice.models import ResendLog
from backoffice.timeutil import MOSCOW

from .conftest import FIXED_NOW, Api


def resend(api, order_id, key, **body):
    return api.post(f"/orders/{order_id}/resend", {"idempotency_key": key, **body})


def test_resend_to_the_orders_own_address_and_replay(api, db) -> None:
    before = db.count(ResendLog, order_id="40817263")
    status, sent = resend(api, "40817263", "resend-1")
    assert status == 201
    assert sent["order_id"] == "40817263"
    assert (sent["channel"], sent["address"], sent["to_new_address"]) == ("email", "i***@mail.ru", False)
    assert sent["certificates"] == ["DRM-****-****-7Q2K"]
    assert sent["resends_left_today"] == 2
    assert resend(api, "40817263", "resend-1") == (200, sent)  # same key: same resend, nothing new
    assert db.count(ResendLog, order_id="40817263") == before + 1
    [entry] = db.audit(action="certificate.resend", entity_id="40817263")
    assert entry.payload["address"] == "i***@mail.ru" and entry.payload["resend_id"] == sent["id"]
    assert "ivan" not in json.dumps(entry.payload)


def test_key_reused_for_another_order_is_a_conflict(api) -> None:
    assert resend(api, "40817281", "resend-shared")[0] == 201
    status, body = resend(api, "40817292", "resend-shared")
    assert status == 409 and body["error"]["code"] == "idempotency_key_conflict"


def test_demo_order_already_at_the_limit(api, db) -> None:
    status, body = resend(api, "40817325", "resend-over-limit")
    assert status == 429 and body["error"]["code"] == "resend_limit_reached"
    assert db.count(ResendLog, order_id="40817325") == 3
    assert db.audit(action="certificate.resend.refused", entity_id="40817325")[-1].payload["refused"] == (
        "resend_limit_reached")


def test_limit_three_per_order_per_day_replays_still_answer(api, db) -> None:
    replies = [resend(api, "40817358", f"sms-{n}") for n in range(1, 4)]
    assert [status for status, _ in replies] == [201, 201, 201]
    assert [body["resends_left_today"] for _, body in replies] == [2, 1, 0]
    assert replies[0][1]["channel"] == "sms" and replies[0][1]["address"] == "+7***0101"
    status, body = resend(api, "40817358", "sms-4")
    assert status == 429 and body["error"]["code"] == "resend_limit_reached"
    # an idempotent replay of an earlier request is not a new resend
    status, again = resend(api, "40817358", "sms-1")
    assert status == 200 and again["id"] == replies[0][1]["id"] and again["resends_left_today"] == 0
    assert db.count(ResendLog, order_id="40817358") == 3


def test_limit_resets_at_moscow_midnight_not_utc(settings, db) -> None:
    """Demo order 40817325 is at its limit on the seeding day (12 March, Moscow)."""
    late_evening = FIXED_NOW.astimezone(MOSCOW).replace(hour=23, minute=30)  # 20:30 UTC, 12 March
    just_after_midnight = late_evening + timedelta(minutes=40)  # 00:10 MSK 13 March = 21:10 UTC 12 March
    assert just_after_midnight.astimezone(FIXED_NOW.tzinfo).date() == FIXED_NOW.date()

    evening = Api(create_app(settings, db.session_factory, clock=lambda: late_evening))
    assert resend(evening, "40817325", "evening")[0] == 429
    night = Api(create_app(settings, db.session_factory, clock=lambda: just_after_midnight))
    status, sent = resend(night, "40817325", "next-day")
    assert status == 201 and sent["resends_left_today"] == 2


def test_new_address_needs_verification(api, db) -> None:
    new = {"address": "Maria.New@Gmail.com"}
    status, body = resend(api, "40817270", "new-1", **new)
    assert status == 403 and body["error"]["code"] == "verification_required"
    status, body = resend(api, "40817270", "new-2", **new, verification={"phone_last4": "0000"})
    assert status == 403 and body["error"]["code"] == "verification_failed"
    assert db.count(ResendLog, order_id="40817270") == 0
    status, sent = resend(api, "40817270", "new-3", **new, verification={"email": "MARIA@yandex.ru"})
    assert status == 201
    assert (sent["channel"], sent["address"], sent["to_new_address"]) == ("email", "m***@gmail.com", True)
    with db.session_factory() as session:
        stored = session.query(ResendLog).filter_by(idempotency_key="new-3").one()
        assert stored.address == "maria.new@gmail.com"  # normalised
    entry = db.audit(action="certificate.resend", entity_id="40817270")[-1]
    assert entry.payload["to_new_address"] is True
    assert entry.payload["verification"] == {"method": "email"}
    assert "maria" not in json.dumps(entry.payload).lower()
    refused = db.audit(action="certificate.resend.refused", entity_id="40817270")
    assert [e.payload["refused"] for e in refused] == ["verification_required", "verification_failed"]


def test_new_phone_needs_verification(api) -> None:
    status, body = resend(api, "40817292", "phone-1", channel="sms", address="+7 900 000-00-01")
    assert status == 403 and body["error"]["code"] == "verification_required"
    status, sent = resend(api, "40817292", "phone-2", channel="sms", address="+7 900 000-00-01",
                          verification={"phone_last4": "8899"})
    assert status == 201 and sent["address"] == "+7***0001" and sent["to_new_address"] is True


def test_own_addresses_in_any_spelling_need_no_verification(api) -> None:
    status, sent = resend(api, "40817336", "own-1", address="+7 (917) 555-44-33")
    assert status == 201 and sent["to_new_address"] is False and sent["channel"] == "sms"
    status, sent = resend(api, "40817336", "own-2", address="ELENA@yandex.ru")
    assert status == 201 and sent["to_new_address"] is False
    status, sent = resend(api, "40817336", "own-3", channel="sms")
    assert status == 201 and sent["address"] == "+7***4433"


def test_expired_certificate_can_be_resent_unchanged(api) -> None:
    status, sent = resend(api, "40817303", "expired-1")
    assert status == 201
    _, order = api.get("/orders/40817303")
    assert order["certificates"][0]["status"] == "expired"  # resending does not extend anything


def test_b2b_order_with_many_recipients_goes_to_the_buyer(api) -> None:
    status, sent = resend(api, "40817314", "b2b-1")
    assert status == 201
    assert (sent["channel"], sent["address"]) == ("email", "h***@romashka.ru")
    assert len(sent["certificates"]) == 10
    status, sent = resend(api, "40817314", "b2b-2", address="employee07@romashka.ru")
    assert status == 201 and sent["to_new_address"] is False


def test_refunded_order_is_not_resent(api) -> None:
    status, body = resend(api, "40817369", "refunded-1")
    assert status == 409 and body["error"]["code"] == "order_refunded"


def test_unknown_order(api) -> None:
    assert resend(api, "10000000", "unknown-1")[0] == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"idempotency_key": ""},
        {"idempotency_key": "k", "channel": "pigeon"},
        {"idempotency_key": "k", "channel": "email", "address": "+79161234567"},
        {"idempotency_key": "k", "channel": "sms", "address": "ivan@mail.ru"},
        {"idempotency_key": "k", "address": "not an address"},
        {"idempotency_key": "k", "verification": {"email": "x"}},
        {"idempotency_key": "k", "extra": True},
    ],
)
def test_bad_resend_input_is_400(api, body) -> None:
    status, reply = api.post("/orders/40817347/resend", body)
    assert status == 400 and reply["error"]["code"] == "invalid_request"
