"""``actions.backoffice_client`` against the REAL back office (``python -m backoffice serve`` on a
free loopback port, a temporary SQLite file seeded with the demo cases of ``backoffice/DEMO.md``),
plus fault injection with a tiny scripted stdlib HTTP server: refused connections, 503s, slow
replies and garbage bodies."""
from __future__ import annotations

import json
import logging
import re
import time
from decimal import Decimal
from typing import Any, Dict, Iterator

import pytest

from tests.backoffice_process import free_port, running_backoffice
from tests.scripted_http import Scripted, ScriptedServer

from actions.backoffice_client import (
    BackofficeAuthError,
    BackofficeClient,
    BackofficeError,
    BackofficeProtocolError,
    BackofficeRefused,
    BackofficeUnavailable,
    Brand,
    Certificate,
    Eligibility,
    ErrorCode,
    Order,
    Refund,
    Resend,
    Ticket,
    TranscriptTurn,
    Verification,
    idempotency_key,
    mask_code,
    mask_contact,
    mask_email,
    mask_phone,
)
from actions.settings import ActionSettings

TOKEN = "actions-client-test-token"




# --- the real back office ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """The real service on a free port and a fresh, demo-seeded SQLite file; → its base URL."""
    directory = tmp_path_factory.mktemp("backoffice-live")
    with running_backoffice(directory, f"sqlite:///{directory / 'backoffice.db'}", TOKEN) as base_url:
        yield base_url


@pytest.fixture
async def backoffice(server: str) -> BackofficeClient:
    async with BackofficeClient(server, TOKEN, timeout_seconds=5, retries=1, backoff_seconds=0.05) as client:
        yield client


# --- fault injection: a scripted stdlib HTTP server (tests/scripted_http.py) ----------------


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedServer]:
    fake = ScriptedServer(default=Scripted(500, b"script exhausted"))
    yield fake
    fake.close()


def fake_client(url: str, *, timeout: float = 2.0, retries: int = 2) -> BackofficeClient:
    return BackofficeClient(url, TOKEN, timeout_seconds=timeout, retries=retries, backoff_seconds=0.01)


def error(code: str, message: str = "x") -> Dict[str, Any]:
    return {"error": {"code": code, "message": message}}


BRANDS = {"brands": [{"name": "Ozon", "in_catalogue": True, "online": True, "offline": False,
                      "single_purchase": False, "note": None}]}
TICKET = {
    "id": 7, "subject": "s", "summary": "", "transcript": None, "priority": "normal", "status": "open",
    "contact": None, "conversation_id": "c", "category": "other", "order_id": None,
    "first_response_by": "2025-03-12T10:00:00Z", "staff_online": True,
    "created_at": "2025-03-12T08:00:00Z", "updated_at": "2025-03-12T08:00:00Z",
}
REFUND = {
    "id": 1, "order_id": "40817263", "amount": 3000, "status": "pending", "payment_method": "card",
    "due_by": "2025-03-26", "idempotency_key": "refund:abc", "created_at": "2025-03-12T08:00:00Z",
}


# --- settings, keys, masking ------------------------------------------------------------------


def test_settings_defaults_and_overrides() -> None:
    defaults = ActionSettings.from_env({})
    assert defaults.backoffice_url == "http://127.0.0.1:8000"
    assert defaults.backoffice_api_token == "dev-backoffice-token"
    assert defaults.backoffice_timeout_seconds == 5.0 and defaults.backoffice_retries == 2
    custom = ActionSettings.from_env({
        "BACKOFFICE_URL": "https://bo.internal:9000/", "BACKOFFICE_API_TOKEN": "s3cret",
        "BACKOFFICE_TIMEOUT_SECONDS": "1.5", "BACKOFFICE_RETRIES": "0", "BACKOFFICE_RETRIES_UNUSED": "x",
    })
    assert custom.backoffice_url == "https://bo.internal:9000"
    assert (custom.backoffice_timeout_seconds, custom.backoffice_retries) == (1.5, 0)
    assert "s3cret" not in repr(custom)
    assert ActionSettings.from_env({"BACKOFFICE_RETRIES": " "}).backoffice_retries == 2
    for bad in ({"BACKOFFICE_URL": "ftp://x"}, {"BACKOFFICE_TIMEOUT_SECONDS": "0"},
                {"BACKOFFICE_TIMEOUT_SECONDS": "soon"}, {"BACKOFFICE_RETRIES": "-1"},
                {"BACKOFFICE_RETRIES": "two"}):
        with pytest.raises(ValueError):
            ActionSettings.from_env(bad)


def test_settings_read_os_environ(monkeypatch) -> None:
    monkeypatch.setenv("BACKOFFICE_URL", "http://10.0.0.5:8000")
    monkeypatch.setenv("BACKOFFICE_RETRIES", "3")
    settings = ActionSettings.from_env()
    assert settings.backoffice_url == "http://10.0.0.5:8000" and settings.backoffice_retries == 3


def test_idempotency_keys_are_deterministic_and_distinct() -> None:
    key = idempotency_key("refund", "conv-1", "40817263")
    assert key == idempotency_key("refund", "conv-1", "40817263")
    assert re.fullmatch(r"refund:[0-9a-f]{64}", key)
    others = {
        idempotency_key("resend", "conv-1", "40817263"),
        idempotency_key("refund", "conv-2", "40817263"),
        idempotency_key("refund", "conv-1", "40817270"),
        idempotency_key("refund", "conv-1", "40817263", "+79260000001"),
        idempotency_key("ticket", "conv-1", None),
    }
    assert key not in others and len(others) == 5
    assert "conv-1" not in key
    with pytest.raises(ValueError):
        idempotency_key("Refund now", "conv-1", "40817263")
    with pytest.raises(ValueError):
        idempotency_key("refund", "", "40817263")


def test_masking_helpers_and_masked_reprs() -> None:
    assert mask_email("Ivan@Mail.ru") == "I***@Mail.ru"
    assert mask_phone("+7 926 000-00-01") == "+7***0001"
    assert mask_code("drm a1b2 c3d4 7q2k") == "DRM-****-****-7Q2K"
    assert mask_contact("ivan@mail.ru") == "i***@mail.ru" and mask_contact("8 916 123 45 67") == "+7***4567"
    shown = repr(Verification(email="ivan@mail.ru", phone_last4="4567"))
    assert "ivan@" not in shown and "4567" not in shown
    with pytest.raises(ValueError):
        Verification()


# --- the real back office: happy paths and refusals (backoffice/DEMO.md) ----------------------


async def test_get_order_parses_a_masked_b2b_order(backoffice: BackofficeClient) -> None:
    order = await backoffice.get_order("40817314")
    assert isinstance(order, Order)
    assert order.id == "40817314" and order.is_b2b and order.company_inn == "7712345671"
    assert order.buyer_email == "h***@romashka.ru" and order.buyer_phone == "+7***4567"
    assert len(order.certificates) == 10 and order.refund is None
    assert order.certificates[0].code.startswith("DRM-****-****-")
    assert order.certificates[0].nominal == Decimal("5000") and order.amount == Decimal("50000")
    assert order.created_at.tzinfo is not None and order.days_since_purchase == 7


async def test_not_found_and_bad_ids_are_refusals(backoffice: BackofficeClient) -> None:
    for call in (backoffice.get_order("99999999"), backoffice.refund_eligibility("99999999"),
                 backoffice.get_ticket(987654)):
        with pytest.raises(BackofficeRefused) as refused:
            await call
        assert (refused.value.code, refused.value.status) == (ErrorCode.NOT_FOUND, 404)
    with pytest.raises(BackofficeRefused) as refused:
        await backoffice.get_order("4081726")
    assert refused.value.code == ErrorCode.INVALID_REQUEST and refused.value.status == 400
    with pytest.raises(BackofficeRefused):  # encoded: cannot reach another endpoint
        await backoffice.get_order("../tickets/1")


async def test_verify_buyer(backoffice: BackofficeClient) -> None:
    assert await backoffice.verify_buyer("40817263", email="IVAN@mail.ru") is True
    assert await backoffice.verify_buyer("40817263", phone_last4="4567") is True
    assert await backoffice.verify_buyer("40817263", email="someone@mail.ru") is False
    assert await backoffice.verify_buyer("40817263", phone_last4="0000") is False
    with pytest.raises(ValueError):
        await backoffice.verify_buyer("40817263")
    with pytest.raises(BackofficeRefused) as refused:
        await backoffice.verify_buyer("99999999", email="ivan@mail.ru")
    assert refused.value.code == ErrorCode.NOT_FOUND


async def test_lookup_certificate_and_its_refusals(backoffice: BackofficeClient) -> None:
    certificate = await backoffice.lookup_certificate("drm sms1 1010 lent", "1010")
    assert isinstance(certificate, Certificate)
    assert certificate.code == "DRM-****-****-LENT" and certificate.status == "active"
    assert certificate.brand == "Лента" and certificate.balance == Decimal("2000")
    assert isinstance(certificate.brand_rules, Brand)
    assert certificate.brand_rules.offline and not certificate.brand_rules.online
    assert certificate.brand_rules.single_purchase

    with pytest.raises(BackofficeRefused) as refused:
        await backoffice.lookup_certificate("DRM-SMS1-1010-LENT", "9999")
    assert (refused.value.code, refused.value.status) == (ErrorCode.PIN_INVALID, 403)
    assert not isinstance(refused.value, BackofficeAuthError)  # a business 403, not our credentials
    with pytest.raises(BackofficeRefused) as refused:
        await backoffice.lookup_certificate("DRM-ZZZZ-ZZZZ-ZZZZ", "1234")
    assert refused.value.code == ErrorCode.NOT_FOUND


async def test_refund_eligibility_reasons(backoffice: BackofficeClient) -> None:
    late = await backoffice.refund_eligibility("40817270")
    assert isinstance(late, Eligibility)
    assert not late.eligible and late.reason == ErrorCode.REFUND_WINDOW_PASSED and late.needs_human
    activated = await backoffice.refund_eligibility("40817281")
    assert activated.reason == ErrorCode.REFUND_NOT_ALLOWED_ACTIVATED and not activated.needs_human
    done = await backoffice.refund_eligibility("40817369")
    assert done.reason == ErrorCode.REFUND_ALREADY_EXISTS and isinstance(done.refund, Refund)


async def test_refund_flow_is_idempotent(backoffice: BackofficeClient) -> None:
    eligibility = await backoffice.refund_eligibility("40817263")
    assert eligibility.eligible and eligibility.reason is None and eligibility.amount == Decimal("3000")

    key = idempotency_key("refund", "conversation-refund", "40817263")
    with pytest.raises(BackofficeRefused) as refused:
        await backoffice.create_refund("40817263", key, Verification(email="petr@mail.ru"))
    assert (refused.value.code, refused.value.status) == (ErrorCode.VERIFICATION_FAILED, 403)

    refund = await backoffice.create_refund("40817263", key, Verification(email="Ivan@Mail.ru"))
    assert isinstance(refund, Refund) and refund.created
    assert refund.order_id == "40817263" and refund.amount == Decimal("3000") and refund.status == "pending"
    assert refund.idempotency_key == key and refund.due_by > refund.created_at.date()

    again = await backoffice.create_refund("40817263", key, {"phone_last4": "4567"})
    assert again.id == refund.id and not again.created
    other_key = await backoffice.create_refund("40817263", idempotency_key("refund", "c-2", "40817263"),
                                               {"email": "ivan@mail.ru"})
    assert other_key.id == refund.id and not other_key.created  # never a second refund per order

    order = await backoffice.get_order("40817263")
    assert order.refund is not None and order.refund.id == refund.id
    assert {c.status for c in order.certificates} == {"refunded"}
    assert (await backoffice.refund_eligibility("40817263")).reason == ErrorCode.REFUND_ALREADY_EXISTS
    with pytest.raises(BackofficeRefused) as refused:
        await backoffice.resend_certificate("40817263", idempotency_key("resend", "c-1", "40817263"))
    assert refused.value.code == ErrorCode.ORDER_REFUNDED


@pytest.mark.parametrize(
    "order_id, verification, code, needs_human",
    [
        ("40817281", {"email": "oleg@gmail.com"}, ErrorCode.REFUND_NOT_ALLOWED_ACTIVATED, False),
        ("40817292", {"phone_last4": "8899"}, ErrorCode.REFUND_NOT_ALLOWED_PARTIALLY_USED, False),
        ("40817303", {"email": "sergey@yandex.ru"}, ErrorCode.REFUND_NOT_ALLOWED_EXPIRED, False),
        ("40817270", {"email": "maria@yandex.ru"}, ErrorCode.REFUND_WINDOW_PASSED, True),
        ("40817314", {"email": "hr@romashka.ru"}, ErrorCode.REFUND_B2B_MANAGER_ONLY, True),
    ],
)
async def test_refund_refusals(backoffice, order_id, verification, code, needs_human) -> None:
    with pytest.raises(BackofficeRefused) as refused:
        await backoffice.create_refund(order_id, idempotency_key("refund", "c-refusals", order_id), verification)
    assert refused.value.code == code and refused.value.status == 409
    assert refused.value.needs_human is needs_human


async def test_already_refunded_order_returns_the_existing_refund(backoffice: BackofficeClient) -> None:
    refund = await backoffice.create_refund(
        "40817369", idempotency_key("refund", "c-done", "40817369"), {"email": "kirill@mail.ru"}
    )
    assert not refund.created and refund.order_id == "40817369" and refund.amount == Decimal("1000")


async def test_resend_to_a_new_phone_after_verification(backoffice: BackofficeClient) -> None:
    key = idempotency_key("resend", "conversation-resend", "40817358", "+79260000001")
    with pytest.raises(BackofficeRefused) as refused:
        await backoffice.resend_certificate("40817358", key, address="+7 926 000-00-01")
    assert (refused.value.code, refused.value.status) == (ErrorCode.VERIFICATION_REQUIRED, 403)

    resend = await backoffice.resend_certificate(
        "40817358", key, address="+7 926 000-00-01", verification=Verification(phone_last4="0101")
    )
    assert isinstance(resend, Resend) and resend.created
    assert resend.channel == "sms" and resend.address == "+7***0001" and resend.to_new_address
    assert resend.certificates == ("DRM-****-****-LENT",) and resend.resends_left_today == 2
    again = await backoffice.resend_certificate(
        "40817358", key, address="+7 926 000-00-01", verification={"phone_last4": "0101"}
    )
    assert again.id == resend.id and not again.created and again.resends_left_today == 2


async def test_resend_to_the_order_address_and_the_daily_limit(backoffice: BackofficeClient) -> None:
    own = await backoffice.resend_certificate("40817292", idempotency_key("resend", "c-own", "40817292"))
    assert own.created and not own.to_new_address and own.channel == "email"
    with pytest.raises(BackofficeRefused) as refused:
        await backoffice.resend_certificate("40817325", idempotency_key("resend", "c-limit", "40817325"))
    assert (refused.value.code, refused.value.status) == (ErrorCode.RESEND_LIMIT_REACHED, 429)


async def test_tickets(backoffice: BackofficeClient) -> None:
    key = idempotency_key("ticket", "conversation-ticket", "40817270")
    turns = [TranscriptTurn("user", "Верните деньги за заказ 40817270"), {"sender": "bot", "text": "Передаю"}]
    ticket = await backoffice.create_ticket(
        "Возврат после 14 дней", "Клиент просит возврат", turns, "high", "maria@yandex.ru",
        "conversation-ticket", "refund_after_14_days", order_id="40817270", idempotency_key=key,
    )
    assert isinstance(ticket, Ticket) and ticket.created and ticket.status == "open"
    assert ticket.priority == "high" and ticket.category == "refund_after_14_days"
    assert ticket.order_id == "40817270" and ticket.contact == "maria@yandex.ru"
    assert ticket.transcript == (TranscriptTurn("user", "Верните деньги за заказ 40817270"),
                                 TranscriptTurn("bot", "Передаю"))
    assert ticket.first_response_by >= ticket.created_at
    assert "maria@" not in repr(ticket)

    again = await backoffice.create_ticket(
        "Возврат после 14 дней", "Клиент просит возврат", turns, "high", "maria@yandex.ru",
        "conversation-ticket", "refund_after_14_days", order_id="40817270", idempotency_key=key,
    )
    assert again.id == ticket.id and not again.created
    fetched = await backoffice.get_ticket(ticket.id)
    assert fetched.id == ticket.id and fetched.transcript == ticket.transcript and fetched.subject == ticket.subject

    plain = await backoffice.create_ticket("Позовите человека", "", "просто текст", "normal", None, "c-x", "other")
    assert plain.created and plain.id != ticket.id and plain.transcript == "просто текст"
    with pytest.raises(BackofficeRefused) as refused:
        await backoffice.create_ticket("s", priority="urgent")
    assert refused.value.code == ErrorCode.INVALID_REQUEST


async def test_list_brands_and_health(backoffice: BackofficeClient) -> None:
    off = await backoffice.list_brands(in_catalogue=False)
    assert "Детский мир" in {brand.name for brand in off}
    on = {brand.name: brand for brand in await backoffice.list_brands(in_catalogue=True)}
    assert "Ozon" in on and "Детский мир" not in on and on["Ozon"].online
    assert await backoffice.is_healthy()


async def test_wrong_token_is_an_auth_error(server: str) -> None:
    async with BackofficeClient(server, "wrong-token", retries=2, backoff_seconds=0.01) as client:
        started = time.monotonic()
        with pytest.raises(BackofficeAuthError) as failed:
            await client.get_order("40817263")
    assert (failed.value.code, failed.value.status) == (ErrorCode.UNAUTHORIZED, 401)
    assert time.monotonic() - started < 1  # a 4xx is never retried


async def test_from_settings_uses_the_environment(server: str, monkeypatch) -> None:
    monkeypatch.setenv("BACKOFFICE_URL", server)
    monkeypatch.setenv("BACKOFFICE_API_TOKEN", TOKEN)
    async with BackofficeClient.from_settings() as client:
        assert (await client.get_order("40817336")).certificates[0].brand == "Дарим Мульти"


async def test_personal_data_never_reaches_the_log(backoffice: BackofficeClient, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    await backoffice.lookup_certificate("DRM-EXPD-5555-SPRT", "5555")
    await backoffice.verify_buyer("40817303", email="sergey@yandex.ru")
    with pytest.raises(BackofficeRefused):
        await backoffice.resend_certificate("40817303", "k-log-1", address="new.person@mail.ru")
    await backoffice.create_ticket("s", "", None, "low", "+7 916 111-00-55", "c-log", "other")
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert "backoffice POST /certificates/lookup -> 200" in messages
    for secret in ("EXPD", "5555", "sergey@", "new.person", "916 111", "9161110055", TOKEN):
        assert secret not in messages


# --- fault injection --------------------------------------------------------------------------


async def test_nothing_listening_is_unavailable_quickly() -> None:
    port = free_port()  # bound and released: nothing listens there
    started = time.monotonic()
    async with fake_client(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(BackofficeUnavailable) as failed:
            await client.get_order("40817263")
    assert failed.value.code == ErrorCode.CONNECT_ERROR and failed.value.attempts == 3
    assert time.monotonic() - started < 2


async def test_get_is_retried_after_503(scripted: ScriptedServer) -> None:
    scripted.script(Scripted(503, error("internal_error")), Scripted(200, BRANDS))
    async with fake_client(scripted.url) as client:
        brands = await client.list_brands(in_catalogue=True)
    assert brands == (Brand("Ozon", True, True, False, False, None),)
    assert [(r.method, r.path) for r in scripted.requests] == [("GET", "/brands?in_catalogue=true")] * 2
    assert scripted.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert scripted.requests[0].headers["x-actor"] == "rasa-assistant"


async def test_read_only_posts_are_retried(scripted: ScriptedServer) -> None:
    scripted.script(Scripted(503, b""), Scripted(200, {"verified": True}))
    async with fake_client(scripted.url) as client:
        assert await client.verify_buyer("40817263", phone_last4="4567") is True
    assert [(r.method, r.path) for r in scripted.requests] == [("POST", "/orders/40817263/verify")] * 2


async def test_persistent_5xx_is_unavailable_after_the_retries(scripted: ScriptedServer) -> None:
    scripted.script(*[Scripted(503, error("internal_error"))] * 3, Scripted(200, BRANDS))
    async with fake_client(scripted.url, retries=2) as client:
        with pytest.raises(BackofficeUnavailable) as failed:
            await client.list_brands()
    assert (failed.value.status, failed.value.attempts) == (503, 3) and len(scripted.requests) == 3


async def test_post_without_idempotency_key_is_not_retried(scripted: ScriptedServer) -> None:
    scripted.script(Scripted(503, b"busy"), Scripted(201, TICKET))
    async with fake_client(scripted.url) as client:
        with pytest.raises(BackofficeUnavailable) as failed:
            await client.create_ticket("s", "", None, "normal", None, "c", "other")
    assert failed.value.status == 503 and failed.value.code == ErrorCode.SERVER_ERROR
    assert len(scripted.requests) == 1


async def test_keyed_posts_are_retried_with_the_same_key(scripted: ScriptedServer) -> None:
    scripted.script(Scripted(503, b""), Scripted(201, TICKET))
    async with fake_client(scripted.url) as client:
        ticket = await client.create_ticket("s", "", None, "normal", None, "c", "other", idempotency_key="t-1")
        assert ticket.id == 7 and ticket.created
        assert len(scripted.requests) == 2 and scripted.requests[0].body == scripted.requests[1].body

        scripted.script(Scripted(502, b"bad gateway"), Scripted(200, REFUND))
        refund = await client.create_refund("40817263", "refund:abc", {"email": "ivan@mail.ru"})
    assert refund.id == 1 and not refund.created
    sent = [json.loads(r.body) for r in scripted.requests]
    assert len(sent) == 2 and sent[0] == sent[1] and sent[0]["idempotency_key"] == "refund:abc"


async def test_4xx_is_never_retried(scripted: ScriptedServer) -> None:
    scripted.script(Scripted(429, error("resend_limit_reached")), Scripted(201, {}))
    async with fake_client(scripted.url) as client:
        with pytest.raises(BackofficeRefused) as refused:
            await client.resend_certificate("40817325", "k-1")
        assert refused.value.code == ErrorCode.RESEND_LIMIT_REACHED and len(scripted.requests) == 1

        scripted.script(Scripted(403, error("forbidden")), Scripted(200, BRANDS))
        with pytest.raises(BackofficeAuthError):
            await client.list_brands()
        assert len(scripted.requests) == 1


async def test_slow_server_is_unavailable_after_the_timeout(scripted: ScriptedServer) -> None:
    scripted.script(Scripted(200, BRANDS, delay=1.5), Scripted(200, BRANDS, delay=1.5))
    started = time.monotonic()
    async with fake_client(scripted.url, timeout=0.3, retries=1) as client:
        with pytest.raises(BackofficeUnavailable) as failed:
            await client.list_brands()
    assert failed.value.code == ErrorCode.TIMEOUT and failed.value.attempts == 2
    assert time.monotonic() - started < 1.4 and len(scripted.requests) == 2

    scripted.script(Scripted(201, TICKET, delay=1.5), Scripted(201, TICKET))
    async with fake_client(scripted.url, timeout=0.3, retries=2) as client:
        with pytest.raises(BackofficeUnavailable):
            await client.create_ticket("s", "", None, "normal", None, "c", "other")
    assert len(scripted.requests) == 1  # no key: a lost reply is not repeated


@pytest.mark.parametrize(
    "status, body",
    [
        (200, b"<html>oops</html>"),
        (200, b"\xff\xfe garbage"),
        (200, [1, 2, 3]),
        (200, {"brands": [{"name": "Ozon"}]}),  # wrong shape
        (200, {"brands": "Ozon"}),
        (404, b"<html>Not Found</html>"),  # a 4xx without the service's error envelope
        (302, b""),
    ],
    ids=["html", "undecodable", "json-list", "missing-fields", "wrong-type", "404-html", "302"],
)
async def test_unparseable_replies_are_protocol_errors(scripted: ScriptedServer, status, body) -> None:
    scripted.script(Scripted(status, body), Scripted(200, BRANDS))
    async with fake_client(scripted.url) as client:
        with pytest.raises(BackofficeProtocolError) as failed:
            await client.list_brands()
    assert isinstance(failed.value, BackofficeError) and failed.value.status == status
    assert len(scripted.requests) == 1


async def test_a_wrongly_shaped_order_is_a_protocol_error(scripted: ScriptedServer) -> None:
    scripted.script(Scripted(200, {"id": "40817263", "created_at": "yesterday"}))
    async with fake_client(scripted.url) as client:
        with pytest.raises(BackofficeProtocolError):
            await client.get_order("40817263")
