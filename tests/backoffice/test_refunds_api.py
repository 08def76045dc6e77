"""POST /refunds: verification, every handbook refusal, idempotency, side effects and audit."""
from __future__ import annotations

import json

import pytest

from backoffice.models import AuditLog, Certificate, Refund


def refund(api, order_id, key, verification=None, **kwargs):
    body = {"order_id": order_id, "idempotency_key": key,
            "verification": verification if verification is not None else {"email": "ivan@mail.ru"}}
    return api.post("/refunds", body, **kwargs)


def test_refund_created_then_replayed(api, db) -> None:
    status, created = refund(api, "40817263", "refund-1", {"email": "Ivan@Mail.RU"},
                             headers={"X-Actor": "assistant"})
    assert status == 201
    assert created["order_id"] == "40817263"
    assert (created["amount"], created["payment_method"], created["status"]) == (3000, "card", "pending")
    assert created["due_by"] == "2025-03-26"  # 10 working days after Wed 12 March
    assert created["idempotency_key"] == "refund-1"

    # same key again → the same refund, 200
    assert refund(api, "40817263", "refund-1") == (200, created)
    # a new key for the same order (the client asks again) → still the same refund, no second one
    assert refund(api, "40817263", "refund-2", {"phone_last4": "4567"}) == (200, created)
    assert db.count(Refund, order_id="40817263") == 1

    # the certificate is cancelled so it cannot be spent after the money went back
    _, order = api.get("/orders/40817263")
    assert order["certificates"][0]["status"] == "refunded"
    assert order["certificates"][0]["balance"] == 0
    assert order["refund"] == created
    _, eligibility = api.get("/orders/40817263/refund-eligibility")
    assert (eligibility["eligible"], eligibility["reason"]) == (False, "refund_already_exists")

    # exactly one audit row for the change, actor recorded, no personal data
    [entry] = db.audit(action="refund.create", entity_id="40817263")
    assert entry.actor == "assistant" and entry.entity == "order"
    assert entry.payload["refund_id"] == created["id"]
    assert entry.payload["verification"] == {"method": "email"}
    assert "ivan" not in json.dumps(entry.payload, ensure_ascii=False).lower()


def test_key_reused_for_another_order_is_a_conflict(api, db) -> None:
    status, created = refund(api, "40817325", "refund-pavel", {"email": "pavel@mail.ru"})
    assert status == 201
    status, body = refund(api, "40817358", "refund-pavel", {"email": "olga@mail.ru"})
    assert status == 409 and body["error"]["code"] == "idempotency_key_conflict"
    assert db.count(Refund, order_id="40817358") == 0


def test_already_refunded_demo_order_returns_the_existing_refund(api, db) -> None:
    status, existing = refund(api, "40817369", "another-key", {"email": "kirill@mail.ru"})
    assert status == 200
    assert existing["idempotency_key"] == "demo-refund-40817369"
    assert db.count(Refund, order_id="40817369") == 1


@pytest.mark.parametrize(
    "order_id, email, code, http",
    [
        ("40817270", "maria@yandex.ru", "refund_window_passed", 409),
        ("40817281", "oleg@gmail.com", "refund_not_allowed_activated", 409),
        ("40817292", "anna@mail.ru", "refund_not_allowed_partially_used", 409),
        ("40817303", "sergey@yandex.ru", "refund_not_allowed_expired", 409),
        ("40817314", "hr@romashka.ru", "refund_b2b_manager_only", 409),
        ("40817347", "dmitry@gmail.com", "refund_not_allowed_used", 409),
    ],
)
def test_handbook_refusals_are_enforced_whatever_the_caller_says(api, db, order_id, email, code, http) -> None:
    status, body = refund(api, order_id, f"try-{order_id}", {"email": email})
    assert status == http
    assert body["error"]["code"] == code and body["error"]["message"]
    assert db.count(Refund, order_id=order_id) == 0
    refused = db.audit(action="refund.refused", entity_id=order_id)
    assert refused and refused[-1].payload["refused"] == code
    _, order = api.get(f"/orders/{order_id}")
    assert all(c["status"] != "refunded" for c in order["certificates"])


def test_verification_is_required_and_checked(api, db) -> None:
    status, body = refund(api, "40817358", "no-verification", {})
    assert status == 400 and body["error"]["code"] == "invalid_request"
    status, body = api.post("/refunds", {"order_id": "40817358", "idempotency_key": "k"})
    assert status == 400
    status, body = refund(api, "40817358", "wrong-email", {"email": "olga@mail.com"})
    assert status == 403 and body["error"]["code"] == "verification_failed"
    status, body = refund(api, "40817358", "wrong-phone", {"phone_last4": "0102"})
    assert status == 403 and body["error"]["code"] == "verification_failed"
    assert db.count(Refund, order_id="40817358") == 0
    refused = [e for e in db.audit(action="refund.refused", entity_id="40817358")
               if e.payload["refused"] == "verification_failed"]
    assert len(refused) == 2
    assert {e.payload["verification"]["method"] for e in refused} == {"email", "phone_last4"}
    assert "olga" not in json.dumps([e.payload for e in refused]) and "0102" not in json.dumps(
        [e.payload for e in refused])


def test_wrong_verification_does_not_reveal_an_existing_refund(api) -> None:
    status, body = refund(api, "40817369", "peek", {"email": "someone@else.ru"})
    assert status == 403 and body["error"]["code"] == "verification_failed"


@pytest.mark.parametrize(
    "body",
    [
        {"order_id": "4081", "idempotency_key": "k", "verification": {"email": "a@b.ru"}},
        {"order_id": "40817358", "idempotency_key": "", "verification": {"email": "a@b.ru"}},
        {"order_id": "40817358", "idempotency_key": "has space", "verification": {"email": "a@b.ru"}},
        {"order_id": "40817358", "idempotency_key": "k" * 129, "verification": {"email": "a@b.ru"}},
        {"order_id": "40817358", "idempotency_key": 7, "verification": {"email": "a@b.ru"}},
        {"order_id": "40817358", "idempotency_key": "k", "verification": "olga@mail.ru"},
        {"order_id": "40817358", "idempotency_key": "k", "verification": {"email": "a@b.ru"}, "amount": 1},
    ],
)
def test_bad_refund_input_is_400(api, body) -> None:
    status, reply = api.post("/refunds", body)
    assert status == 400 and reply["error"]["code"] == "invalid_request"


def test_unknown_order(api) -> None:
    status, body = refund(api, "10000000", "k-unknown", {"email": "a@b.ru"})
    assert status == 404 and body["error"]["code"] == "not_found"


def test_refund_leaves_other_orders_alone(api, db) -> None:
    assert db.count(Certificate, status="refunded") == 3  # demo 40817369 + the two created above
    assert db.count(Refund) == 3
    assert db.count(AuditLog, action="refund.create") == 2
