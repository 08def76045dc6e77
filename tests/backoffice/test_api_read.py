"""Auth, error shape, health, OpenAPI and the read-only endpoints, on the seeded demo data."""
from __future__ import annotations

import re

import pytest

from backoffice.models import AuditLog

from .conftest import TOKEN


# --- auth and error shape ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/orders/40817263"),
        ("post", "/orders/40817263/verify"),
        ("post", "/certificates/lookup"),
        ("get", "/orders/40817263/refund-eligibility"),
        ("post", "/refunds"),
        ("post", "/orders/40817263/resend"),
        ("post", "/tickets"),
        ("get", "/tickets/1"),
        ("patch", "/tickets/1"),
        ("get", "/audit"),
        ("get", "/brands"),
        ("get", "/no-such-endpoint"),
    ],
)
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_everything_but_health_and_openapi_needs_the_token(api, method, path, token) -> None:
    status, body = api.request(method, path, {"x": 1}, token=token)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"


def test_token_must_be_a_bearer_token(api) -> None:
    for header in (f"Basic {TOKEN}", TOKEN, "Bearer", f"Bearer  {TOKEN}x"):
        status, body = api.get("/orders/40817263", token=None, headers={"Authorization": header})
        assert status == 401, header
    status, _ = api.get("/orders/40817263", token=None, headers={"Authorization": f"bearer {TOKEN}"})
    assert status == 200


def test_unauthorised_calls_change_nothing(api, db) -> None:
    before = db.count(AuditLog)
    api.post("/refunds", {"order_id": "40817263", "idempotency_key": "x", "verification": {"email": "ivan@mail.ru"}},
             token=None)
    assert db.count(AuditLog) == before


def test_health_and_openapi_are_public(api) -> None:
    assert api.get("/health", token=None) == (200, {"status": "ok", "database": "ok"})
    status, spec = api.get("/openapi.json", token=None)
    assert status == 200
    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def _openapi_path(route) -> str:
    return "/" + re.sub(r"<(\w+)(?::\w+)?>", r"{\1}", route.path)


def test_openapi_describes_every_route(api, app) -> None:
    _, spec = api.get("/openapi.json")
    assert {_openapi_path(route) for route in app.router.routes} == set(spec["paths"])
    methods = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    for route in app.router.routes:
        path = _openapi_path(route)
        for method in route.methods:
            assert (path, method.lower()) in methods
    assert "refund_window_passed" in spec["components"]["schemas"]["Error"]["properties"]["error"][
        "properties"]["code"]["enum"]


def test_unknown_route_and_wrong_method_are_json(api) -> None:
    assert api.get("/nope") == (404, {"error": {"code": "not_found", "message": "No such endpoint."}})
    # the JSON body of a 405 is checked on the live server (test_live_server.py): sanic-testing's
    # client installs its own MethodNotSupported handler
    assert api.get("/refunds")[0] == 405


@pytest.mark.parametrize(
    "raw", ["{not json", "[1, 2]", "\"string\"", "", "null", "\xff"],
)
def test_bad_bodies_are_400_not_500(api, raw) -> None:
    for path in ("/refunds", "/certificates/lookup", "/orders/40817263/verify",
                 "/orders/40817263/resend", "/tickets"):
        status, body = api.post(path, raw=raw)
        assert status == 400, (path, raw)
        assert body["error"]["code"] == "invalid_request"


def test_bad_actor_header_is_400(api) -> None:
    status, body = api.post("/tickets", {"subject": "x"}, headers={"X-Actor": "bad actor!"})
    assert status == 400 and body["error"]["code"] == "invalid_request"


# --- orders -----------------------------------------------------------------------------------


def test_order_view_masks_contacts_and_codes(api) -> None:
    status, order = api.get("/orders/40817263")
    assert status == 200
    assert order["id"] == "40817263"
    assert order["buyer_email"] == "i***@mail.ru"
    assert order["buyer_phone"] == "+7***4567"
    assert order["is_b2b"] is False and order["amount"] == 3000 and order["payment_method"] == "card"
    assert order["days_since_purchase"] == 3
    [certificate] = order["certificates"]
    assert certificate == {
        "code": "DRM-****-****-7Q2K", "brand": "Ozon", "nominal": 3000, "balance": 3000,
        "status": "active", "expires_at": certificate["expires_at"], "delivery_channel": "email",
        "delivery_address": "i***@mail.ru",
    }
    text = str(order)
    assert "ivan@" not in text and "1234567" not in text and "A1B2" not in text and "pin" not in text


def test_b2b_order_shows_inn_and_all_certificates(api) -> None:
    _, order = api.get("/orders/40817314")
    assert order["is_b2b"] is True and order["company_inn"] == "7712345671"
    assert order["payment_method"] == "invoice" and order["amount"] == 50000
    assert len(order["certificates"]) == 10
    assert order["certificates"][0]["delivery_address"] == "e***@romashka.ru"


def test_sms_order_masks_the_phone_delivery(api) -> None:
    _, order = api.get("/orders/40817358")
    assert order["certificates"][0]["delivery_channel"] == "sms"
    assert order["certificates"][0]["delivery_address"] == "+7***0101"


def test_order_not_found_and_bad_id(api) -> None:
    assert api.get("/orders/99999999")[0] == 404
    assert api.get("/orders/99999999")[1]["error"]["code"] == "not_found"
    status, body = api.get("/orders/4081726x")
    assert status == 400 and body["error"]["code"] == "invalid_request"


# --- verification -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, verified",
    [
        ({"email": "ivan@mail.ru"}, True),
        ({"email": "IVAN@MAIL.RU"}, True),
        ({"phone_last4": "4567"}, True),
        ({"phone_last4": 4567}, True),
        ({"email": "ivan@mail.com"}, False),
        ({"phone_last4": "7654"}, False),
    ],
)
def test_verify(api, given, verified) -> None:
    assert api.post("/orders/40817263/verify", given) == (200, {"verified": verified})


@pytest.mark.parametrize("given", [{}, {"email": ""}, {"phone_last4": "45"}, {"email": "not-an-email"},
                                   {"phone": "+79161234567"}])
def test_verify_bad_input(api, given) -> None:
    status, body = api.post("/orders/40817263/verify", given)
    assert status == 400 and body["error"]["code"] == "invalid_request"


def test_verify_unknown_order(api) -> None:
    assert api.post("/orders/11111111/verify", {"email": "a@b.ru"})[0] == 404


# --- certificate lookup -----------------------------------------------------------------------


def test_lookup_normalises_the_code_and_masks_it(api) -> None:
    status, found = api.post("/certificates/lookup", {"code": " drm a1b2 c3d4 7q2k", "pin": "1234"})
    assert status == 200
    assert found["code"] == "DRM-****-****-7Q2K"
    assert (found["status"], found["balance"], found["nominal"], found["brand"]) == ("active", 3000, 3000, "Ozon")
    assert found["expires_at"].startswith("2026-03-0")  # 12 months after the purchase
    assert found["brand_rules"]["online"] is True and found["brand_rules"]["offline"] is False


@pytest.mark.parametrize(
    "code, pin, status, balance",
    [
        ("DRM-ACTV-3333-MULT", "3333", "activated", 10000),
        ("DRM-PART-4444-GOLD", "4444", "partially_used", 1800),
        ("DRM-EXPD-5555-SPRT", "5555", "expired", 2000),
        ("DRM-USED-9999-ZERO", "9999", "used", 0),
        ("DRM-MULT-8888-DMIR", "8888", "active", 3000),
        ("DRM-RFND-0000-DONE", "0000", "refunded", 0),
    ],
)
def test_lookup_statuses(api, code, pin, status, balance) -> None:
    code_status, found = api.post("/certificates/lookup", {"code": code, "pin": pin})
    assert code_status == 200
    assert (found["status"], found["balance"]) == (status, balance)


def test_lookup_single_purchase_brand_rules(api) -> None:
    _, found = api.post("/certificates/lookup", {"code": "DRM-SMS1-1010-LENT", "pin": "1010"})
    assert found["brand_rules"]["single_purchase"] is True and found["brand_rules"]["online"] is False


def test_lookup_errors(api) -> None:
    status, body = api.post("/certificates/lookup", {"code": "DRM-A1B2-C3D4-7Q2K", "pin": "4321"})
    assert status == 403 and body["error"]["code"] == "pin_invalid"
    status, body = api.post("/certificates/lookup", {"code": "DRM-ZZZZ-ZZZZ-ZZZZ", "pin": "1234"})
    assert status == 404 and body["error"]["code"] == "not_found"
    assert "ZZZZ-ZZZZ-ZZZZ" not in body["error"]["message"]
    for bad in ({"code": "DRM-A1B2", "pin": "1234"}, {"code": "DRM-A1B2-C3D4-7Q2K", "pin": "12"},
                {"code": "DRM-A1B2-C3D4-7Q2K"}, {"pin": "1234"}, {"code": 5, "pin": "1234"}):
        status, body = api.post("/certificates/lookup", bad)
        assert status == 400 and body["error"]["code"] == "invalid_request", bad


# --- refund eligibility: one demo case per handbook branch -------------------------------------


@pytest.mark.parametrize(
    "order_id, eligible, reason, needs_human",
    [
        ("40817263", True, None, False),
        ("40817270", False, "refund_window_passed", True),
        ("40817281", False, "refund_not_allowed_activated", False),
        ("40817292", False, "refund_not_allowed_partially_used", False),
        ("40817303", False, "refund_not_allowed_expired", False),
        ("40817314", False, "refund_b2b_manager_only", True),
        ("40817347", False, "refund_not_allowed_used", False),
        ("40817369", False, "refund_already_exists", False),
    ],
)
def test_refund_eligibility(api, order_id, eligible, reason, needs_human) -> None:
    status, reply = api.get(f"/orders/{order_id}/refund-eligibility")
    assert status == 200
    assert (reply["eligible"], reply["reason"], reply["needs_human"]) == (eligible, reason, needs_human)
    assert reply["refund_window_days"] == 14
    assert reply["payment_method"] and reply["amount"] > 0


def test_eligible_reply_says_what_and_where(api) -> None:
    _, reply = api.get("/orders/40817263/refund-eligibility")
    assert (reply["amount"], reply["payment_method"], reply["days_since_purchase"]) == (3000, "card", 3)
    _, refunded = api.get("/orders/40817369/refund-eligibility")
    assert refunded["refund"]["order_id"] == "40817369"


def test_eligibility_unknown_order(api) -> None:
    assert api.get("/orders/12345678/refund-eligibility")[0] == 404


# --- catalogue --------------------------------------------------------------------------------


def test_brands(api) -> None:
    _, all_brands = api.get("/brands")
    names = {brand["name"] for brand in all_brands["brands"]}
    assert {"Ozon", "Лента", "Детский мир"} <= names
    _, off = api.get("/brands?in_catalogue=false")
    assert [brand["name"] for brand in off["brands"]] == ["Детский мир"]
    _, on = api.get("/brands?in_catalogue=true")
    assert "Детский мир" not in {brand["name"] for brand in on["brands"]}
    assert api.get("/brands?in_catalogue=maybe")[0] == 400


def test_reads_write_no_audit(api, db) -> None:
    before = db.count(AuditLog)
    api.get("/orders/40817263")
    api.post("/orders/40817263/verify", {"email": "ivan@mail.ru"})
    api.post("/certificates/lookup", {"code": "DRM-A1B2-C3D4-7Q2K", "pin": "1234"})
    api.get("/orders/40817263/refund-eligibility")
    assert db.count(AuditLog) == before
