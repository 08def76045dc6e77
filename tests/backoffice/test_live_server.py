"""The real server (``python -m backoffice serve``) on a free loopback port, hammered concurrently:
the same refund 100 times → exactly one refund row.

Runs on a temporary SQLite file and on PostgreSQL: ``BACKOFFICE_TEST_POSTGRES_URL`` when it points
to a throw-away database (its back-office tables are dropped and re-seeded), else a fresh database
of the test session's local server (``postgres`` in tests/conftest.py)."""
from __future__ import annotations

import http.client
import json

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Tuple

import httpx
import pytest

from tests.backoffice_process import running_backoffice
from sqlalchemy import func, select

from backoffice.db import make_engine, make_session_factory, read_transaction
from backoffice.models import CheckLockout, Order, Refund, ResendLog
from backoffice.settings import BackofficeSettings

TOKEN = "live-test-token"
CONCURRENCY = 100




class LiveServer:
    def __init__(self, base_url: str, database_url: str) -> None:
        self.base_url = base_url
        self.engine = make_engine(database_url)
        self.sessions = make_session_factory(self.engine)

    def count(self, model, **filters) -> int:
        query = select(func.count()).select_from(model)
        for name, value in filters.items():
            query = query.where(getattr(model, name) == value)
        with read_transaction(self.sessions) as session:
            return session.execute(query).scalar_one()


POSTGRES_URL = os.environ.get("BACKOFFICE_TEST_POSTGRES_URL")


def _database_url(request, directory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{directory / 'live.db'}"
    return POSTGRES_URL or request.getfixturevalue("postgres").database("backoffice_live")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("live")
    database_url = _database_url(request, directory)
    with running_backoffice(directory, database_url, TOKEN, reset=request.param != "sqlite") as base_url:
        live = LiveServer(base_url, database_url)
        try:
            yield live
        finally:
            live.engine.dispose()


def _fire(server: LiveServer, path: str, bodies: List[dict]) -> List[Tuple[int, dict]]:
    """POST every body at once: all threads wait on a barrier, then send."""
    barrier = threading.Barrier(len(bodies))
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def send(body: dict) -> Tuple[int, dict]:
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
            barrier.wait()
            response = client.post(path, json=body)
            return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(send, bodies))


def test_serve_seeds_an_empty_database(server) -> None:
    assert server.count(Order) == 11
    reply = httpx.get(f"{server.base_url}/orders/40817263", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 200 and reply.json()["buyer_email"] == "i***@mail.ru"


def test_the_same_refund_100_times_concurrently_makes_exactly_one(server) -> None:
    body = {"order_id": "40817263", "idempotency_key": "same-request",
            "verification": {"email": "ivan@mail.ru"}}
    replies = _fire(server, "/refunds", [body] * CONCURRENCY)
    statuses = sorted(status for status, _ in replies)
    assert statuses == [200] * (CONCURRENCY - 1) + [201]
    assert len({reply["id"] for _, reply in replies}) == 1
    assert server.count(Refund, order_id="40817263") == 1
    assert server.count(Refund, idempotency_key="same-request") == 1


def test_100_different_keys_for_one_order_still_make_one_refund(server) -> None:
    bodies = [{"order_id": "40817358", "idempotency_key": f"key-{n}", "verification": {"phone_last4": "0101"}}
              for n in range(CONCURRENCY)]
    replies = _fire(server, "/refunds", bodies)
    assert sorted(status for status, _ in replies).count(201) == 1
    assert {status for status, _ in replies} == {200, 201}
    assert len({reply["id"] for _, reply in replies}) == 1
    assert server.count(Refund, order_id="40817358") == 1


def test_concurrent_resends_respect_the_daily_limit(server) -> None:
    bodies = [{"idempotency_key": f"resend-{n}"} for n in range(20)]
    replies = _fire(server, "/orders/40817336/resend", bodies)
    statuses = sorted(status for status, _ in replies)
    assert statuses == [201] * 3 + [429] * 17
    assert server.count(ResendLog, order_id="40817336") == 3


def test_concurrent_wrong_pins_are_decided_one_at_a_time(server) -> None:
    """20 wrong PINs for one code at once: exactly the limit are evaluated, the rest locked out."""
    settings = BackofficeSettings.from_env()  # what the served process reads too
    limit = settings.lockout_max_failures
    bodies = [{"code": "DRM-MULT-8888-DMIR", "pin": f"{1000 + n}"} for n in range(20)]
    replies = _fire(server, "/certificates/lookup", bodies)
    assert sorted(status for status, _ in replies) == [403] * limit + [429] * (20 - limit)
    locked = [reply["error"] for status, reply in replies if status == 429]
    assert {error["code"] for error in locked} == {"too_many_attempts"}
    # ≈ the window: each request's clock is read before it queues, so a refused one may have read
    # it a moment before the failure that locked (then it waits that moment longer)
    window = settings.lockout_window_minutes * 60
    assert all(abs(error["retry_after_seconds"] - window) <= 30 for error in locked)
    assert server.count(CheckLockout, kind="pin") == 1


def test_errors_are_json_on_the_real_server(server) -> None:
    reply = httpx.get(f"{server.base_url}/refunds", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 405
    assert reply.json()["error"]["code"] == "method_not_allowed"
    reply = httpx.get(f"{server.base_url}/orders/40817263")
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "Bearer"
    assert reply.json()["error"]["code"] == "unauthorized"
    # announce a body over the limit without sending it: the server must refuse on the header
    # (sending the whole body races the server closing the connection: a broken pipe, not a reply)
    host, port = server.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/refunds")
    connection.putheader("Authorization", f"Bearer {TOKEN}")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", "1100000")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"]["code"] == "payload_too_large"
    connection.close()
