"""Lockouts where secrets are checked: failed PIN checks per certificate code and failed buyer
checks per order are counted; after 5 (``BACKOFFICE_LOCKOUT_MAX_FAILURES``) within 15 minutes
(``BACKOFFICE_LOCKOUT_WINDOW_MINUTES``) further checks are refused with ``429 too_many_attempts`` —
even with the right value — until 15 minutes after the failure that reached the limit, or until
staff unlock it (audited). Every route that checks goes through it; concurrent wrong attempts are
decided one after another (SQLite and PostgreSQL).

Each test gets a freshly seeded SQLite file and a clock it moves by hand."""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
from sqlalchemy import inspect, select, text

from backoffice import rules
from backoffice.app import create_app
from backoffice.db import make_engine, make_session_factory, read_transaction
from backoffice.demo_data import seed
from backoffice.errors import BackofficeError, PinInvalid, TooManyAttempts, VerificationFailed
from backoffice.models import AuditLog, CheckLockout, Refund, ResendLog
from backoffice.rules import LockoutPolicy
from backoffice.services import certificates, orders, refunds
from backoffice.settings import BackofficeSettings
from backoffice.validation import RefundRequest, Verification

from .conftest import FIXED_NOW, TOKEN, Api, Database, seeded_database

WINDOW = timedelta(minutes=15)
CODE = "DRM-A1B2-C3D4-7Q2K"  # order 40817263, PIN 1234, ivan@mail.ru, +7 916 123-45-67
WRONG_PINS = ["4821", "7395", "6047", "9513", "3768", "2584", "8139", "5902", "6471", "3356"]
WRONG_LAST4 = ["1111", "2222", "3333", "5555", "6666", "7777", "8888", "9999", "1212", "3434"]


@dataclass
class Clock:
    now: datetime = FIXED_NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Client:
    """The app on a fresh database: ``call`` → (status, json, headers)."""

    api: Api
    db: Database
    clock: Clock

    def call(self, method: str, path: str, body: Any = None, actor: str = "assistant") -> Tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}", "X-Actor": actor}
        kwargs: Dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["data"] = json.dumps(body)
        _, response = getattr(self.api.app.test_client, method)(path, **kwargs)
        return response.status, response.json, response.headers

    def lookup(self, pin: str, code: str = CODE, actor: str = "assistant") -> Tuple[int, Any, Any]:
        return self.call("post", "/certificates/lookup", {"code": code, "pin": pin}, actor)

    def verify(self, order_id: str, **given: str) -> Tuple[int, Any, Any]:
        return self.call("post", f"/orders/{order_id}/verify", given)

    def refund(self, order_id: str, key: str, **given: str) -> Tuple[int, Any, Any]:
        return self.call("post", "/refunds", {"order_id": order_id, "idempotency_key": key, "verification": given})

    def resend(self, order_id: str, key: str, **body: Any) -> Tuple[int, Any, Any]:
        return self.call("post", f"/orders/{order_id}/resend", {"idempotency_key": key, **body})

    def status(self, kind: str, subject: str) -> Dict[str, Any]:
        status, body, _ = self.call("get", f"/lockouts?kind={kind}&subject={subject}")
        assert status == 200, body
        return body

    def unlock(self, **body: Any) -> Tuple[int, Any, Any]:
        return self.call("post", "/lockouts/unlock", body)


@pytest.fixture
def client(tmp_path) -> Iterator[Client]:
    db = seeded_database(tmp_path)
    clock = Clock()
    settings = BackofficeSettings(database_url=db.url, api_token=TOKEN)
    yield Client(Api(create_app(settings, db.session_factory, clock=clock)), db, clock)
    db.engine.dispose()


def assert_locked(reply: Tuple[int, Any, Any], retry_after: int) -> None:
    status, body, headers = reply
    assert status == 429, body
    assert body["error"]["code"] == "too_many_attempts" and body["error"]["message"]
    assert body["error"]["retry_after_seconds"] == retry_after
    assert headers["retry-after"] == str(retry_after)


def lockout_rows(db: Database) -> List[CheckLockout]:
    with read_transaction(db.session_factory) as session:
        return list(session.execute(select(CheckLockout)).scalars())


# --- the attack -----------------------------------------------------------------------


def test_ten_wrong_pins_then_the_right_one_is_locked_until_the_window_passes(client) -> None:
    """Each try from a "new conversation" (another actor): the back office counts per code anyway."""
    replies = [client.lookup(pin, actor=f"conversation-{n}") for n, pin in enumerate(WRONG_PINS)]
    assert [status for status, _, _ in replies] == [403] * 5 + [429] * 5
    assert {body["error"]["code"] for _, body, _ in replies[:5]} == {"pin_invalid"}
    for reply in replies[5:]:
        assert_locked(reply, 900)  # 15 minutes after the 5th failure (the clock stood still)

    assert_locked(client.lookup("1234"), 900)  # the right PIN too: the lock cannot be probed
    client.clock.advance(seconds=10)
    assert_locked(client.lookup("1234"), 890)
    client.clock.advance(minutes=14, seconds=49, milliseconds=500)  # 0.5 s before the end
    assert_locked(client.lookup("1234"), 1)  # rounded up: never "retry in 0 s" while locked

    client.clock.advance(milliseconds=500)  # exactly 15 minutes after the 5th failure
    status, found, _ = client.lookup("1234")
    assert status == 200 and found["balance"] == 3000 and found["code"] == "DRM-****-****-7Q2K"
    assert client.status("pin", CODE)["failures"] == 0  # the right PIN cleared the count


def test_ten_wrong_buyer_checks_via_verify(client) -> None:
    replies = [client.verify("40817263", phone_last4=last4) for last4 in WRONG_LAST4]
    assert [(s, b) for s, b, _ in replies[:5]] == [(200, {"verified": False})] * 5
    for reply in replies[5:]:
        assert_locked(reply, 900)
    assert_locked(client.verify("40817263", email="ivan@mail.ru"), 900)
    assert_locked(client.verify("40817263", phone_last4="4567"), 900)

    client.clock.advance(minutes=15)
    assert client.verify("40817263", phone_last4="4567")[:2] == (200, {"verified": True})


def test_ten_wrong_buyer_checks_via_refund_creation(client) -> None:
    replies = [client.refund("40817263", f"guess-{n}", phone_last4=last4) for n, last4 in enumerate(WRONG_LAST4)]
    assert [status for status, _, _ in replies] == [403] * 5 + [429] * 5
    assert {body["error"]["code"] for _, body, _ in replies[:5]} == {"verification_failed"}
    for reply in replies[5:]:
        assert_locked(reply, 900)
    assert_locked(client.refund("40817263", "right-too-early", email="ivan@mail.ru"), 900)
    assert client.db.count(Refund, order_id="40817263") == 0  # nothing refunded while locked
    refused = [e.payload["refused"] for e in client.db.audit(action="refund.refused", entity_id="40817263")]
    assert refused == ["verification_failed"] * 5 + ["too_many_attempts"] * 6

    client.clock.advance(minutes=15)
    status, created, _ = client.refund("40817263", "right", email="ivan@mail.ru")
    assert status == 201 and created["amount"] == 3000


def test_ten_wrong_buyer_checks_via_a_resend_to_a_new_address(client) -> None:
    new_phone = {"channel": "sms", "address": "+7 926 000-00-01"}
    replies = [client.resend("40817358", f"guess-{n}", **new_phone, verification={"phone_last4": last4})
               for n, last4 in enumerate(WRONG_LAST4)]
    assert [status for status, _, _ in replies] == [403] * 5 + [429] * 5
    assert {body["error"]["code"] for _, body, _ in replies[:5]} == {"verification_failed"}
    for reply in replies[5:]:
        assert_locked(reply, 900)
    assert_locked(client.resend("40817358", "right-too-early", **new_phone,
                                verification={"phone_last4": "0101"}), 900)
    assert client.db.count(ResendLog, order_id="40817358") == 0

    # the order's own address is not a check: the customer still gets the certificate there
    status, own, _ = client.resend("40817358", "own-address")
    assert status == 201 and own["to_new_address"] is False

    client.clock.advance(minutes=15)
    status, sent, _ = client.resend("40817358", "right", **new_phone, verification={"phone_last4": "0101"})
    assert status == 201 and sent["to_new_address"] is True


def test_every_route_counts_against_the_same_order(client) -> None:
    """The chat may check through /verify, a refund or a resend: one count per order."""
    assert client.verify("40817263", email="petr@mail.ru")[0] == 200
    assert client.verify("40817263", phone_last4="0000")[0] == 200
    assert client.refund("40817263", "r-1", email="petr@mail.ru")[0] == 403
    assert client.refund("40817263", "r-2", phone_last4="0000")[0] == 403
    new = {"address": "friend@mail.ru", "verification": {"email": "petr@mail.ru"}}
    assert client.resend("40817263", "s-1", **new)[0] == 403
    assert_locked(client.verify("40817263", email="ivan@mail.ru"), 900)
    assert client.status("buyer", "40817263")["failures"] == 5
    # other orders and the certificate's PIN are separate subjects
    assert client.verify("40817358", phone_last4="0101")[:2] == (200, {"verified": True})
    assert client.lookup("1234")[0] == 200


# --- counting rules ---------------------------------------------------------------------------


def test_a_right_value_before_the_limit_clears_the_count(client) -> None:
    for pin in WRONG_PINS[:4]:
        assert client.lookup(pin)[0] == 403
    assert client.status("pin", CODE)["failures"] == 4
    assert client.lookup("1234")[0] == 200
    assert client.status("pin", CODE)["failures"] == 0
    assert lockout_rows(client.db) == []  # nothing kept once cleared
    for pin in WRONG_PINS[4:8]:
        assert client.lookup(pin)[0] == 403  # four more: still not locked
    assert client.lookup("1234")[0] == 200


def test_a_right_value_clears_even_when_the_request_is_then_refused(client) -> None:
    """The check's outcome is committed with the refusal: a verified buyer of a 20-day-old order
    (refund_window_passed) or of an order at its resend limit is cleared, a wrong one counted."""
    for n, last4 in enumerate(WRONG_LAST4[:4]):
        assert client.refund("40817270", f"late-{n}", phone_last4=last4)[0] == 403
    status, body, _ = client.refund("40817270", "late-right", email="maria@yandex.ru")
    assert status == 409 and body["error"]["code"] == "refund_window_passed"
    assert client.status("buyer", "40817270")["failures"] == 0

    new = {"address": "pavel.new@mail.ru"}
    for n, last4 in enumerate(WRONG_LAST4[:4]):
        assert client.resend("40817325", f"limit-{n}", **new, verification={"phone_last4": last4})[0] == 403
    assert client.status("buyer", "40817325")["failures"] == 4
    status, body, _ = client.resend("40817325", "limit-right", **new, verification={"email": "pavel@mail.ru"})
    assert status == 429 and body["error"]["code"] == "resend_limit_reached"
    assert client.status("buyer", "40817325")["failures"] == 0
    assert client.db.count(ResendLog, order_id="40817325") == 3  # the seeded three, nothing more


def test_failures_count_within_a_sliding_window(client) -> None:
    for pin in WRONG_PINS[:4]:
        assert client.lookup(pin)[0] == 403
    client.clock.advance(minutes=15)  # those four have left the window
    assert client.status("pin", CODE)["failures"] == 0
    assert client.lookup(WRONG_PINS[4])[0] == 403
    client.clock.advance(minutes=10)
    for pin in WRONG_PINS[5:8]:
        assert client.lookup(pin)[0] == 403
    client.clock.advance(minutes=4, seconds=59)  # all four within 15 minutes of each other
    assert client.status("pin", CODE)["failures"] == 4
    assert client.lookup(WRONG_PINS[8])[0] == 403  # the 5th within the window locks
    assert_locked(client.lookup("1234"), 900)


def test_the_lock_lasts_a_window_from_the_failure_that_reached_the_limit(client) -> None:
    started = client.clock.now
    for pin in WRONG_PINS[:5]:  # one a minute: 0, 1, 2, 3, 4
        assert client.lookup(pin)[0] == 403
        client.clock.advance(minutes=1)
    locked_until = started + timedelta(minutes=4) + WINDOW
    client.clock.now = started + timedelta(minutes=15, seconds=30)  # the first failure left the window
    status = client.status("pin", CODE)
    assert status["locked"] and status["locked_until"] == "2025-03-12T08:19:00Z"
    assert status["retry_after_seconds"] == 210 and status["failures"] == 4
    assert_locked(client.lookup("1234"), 210)  # still locked: retry = ceil(locked_until - now)
    client.clock.now = locked_until
    assert client.lookup("1234")[0] == 200


def test_unknown_codes_and_orders_are_not_counted(client) -> None:
    for _ in range(10):
        status, body, _ = client.lookup("1234", code="DRM-ZZZZ-ZZZZ-ZZZZ")
        assert status == 404 and body["error"]["code"] == "not_found"
        assert client.verify("11111111", email="a@b.ru")[0] == 404
        assert client.refund("11111111", "k", email="a@b.ru")[0] == 404
    assert lockout_rows(client.db) == []
    status, body, _ = client.call("get", "/lockouts?kind=pin&subject=DRM-ZZZZ-ZZZZ-ZZZZ")
    assert status == 404 and body["error"]["code"] == "not_found"
    assert client.unlock(kind="buyer", subject="11111111", staff="anna", reason="x")[0] == 404


def test_nothing_given_is_not_a_failure(client) -> None:
    new = {"address": "friend@mail.ru"}
    for n in range(6):
        status, body, _ = client.resend("40817263", f"nothing-{n}", **new)
        assert status == 403 and body["error"]["code"] == "verification_required"
    assert client.status("buyer", "40817263")["failures"] == 0


# --- storage ----------------------------------------------------------------------------------


def test_codes_pins_and_tried_values_are_never_stored(client) -> None:
    for pin in WRONG_PINS[:6]:
        client.lookup(pin)
    for email in ("petr.secret@mail.ru", "olga.guess@yandex.ru"):
        client.verify("40817263", email=email)
    with client.db.engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(text("SELECT * FROM check_lockouts"))]
    stored = json.dumps(rows, default=str)
    assert {row["kind"] for row in rows} == {"pin", "buyer"}
    pin_row = next(row for row in rows if row["kind"] == "pin")
    assert len(pin_row["subject"]) == 64 and int(pin_row["subject"], 16) >= 0  # a SHA-256 digest
    assert pin_row["label"] == "DRM-****-****-7Q2K"
    for secret in ("A1B2", "C3D4", "A1B2C3D4", "1234", *WRONG_PINS[:6], "petr", "olga", "4567"):
        assert secret not in stored, secret
    audit = json.dumps([e.payload for e in client.db.audit()] + [e.entity_id for e in client.db.audit()])
    for secret in ("A1B2", *WRONG_PINS[:6], "petr", "olga"):
        assert secret not in audit, secret


def test_an_existing_database_gets_the_table(tmp_path) -> None:
    """A database from before the lockouts: opening it (``create_all``) adds the missing table."""
    db = seeded_database(tmp_path)
    CheckLockout.__table__.drop(db.engine)
    assert "check_lockouts" not in inspect(db.engine).get_table_names()
    db.engine.dispose()

    api = Api(create_app(BackofficeSettings(database_url=db.url, api_token=TOKEN), clock=lambda: FIXED_NOW))
    assert "check_lockouts" in inspect(make_engine(db.url)).get_table_names()
    assert api.post("/certificates/lookup", {"code": CODE, "pin": "4821"})[0] == 403
    status, body = api.get(f"/lockouts?kind=pin&subject={CODE}")
    assert status == 200 and body["failures"] == 1


# --- staff ------------------------------------------------------------------------------------


def test_staff_see_and_unlock_a_lock_and_it_is_audited(client) -> None:
    assert client.status("pin", "drm a1b2 c3d4 7q2k") == {
        "kind": "pin", "subject": "DRM-****-****-7Q2K", "failures": 0, "max_failures": 5,
        "window_seconds": 900, "locked": False, "locked_until": None, "retry_after_seconds": None,
    }
    for pin in WRONG_PINS[:5]:
        client.lookup(pin, actor="conversation-7")
    client.clock.advance(minutes=2)
    assert client.status("pin", CODE) == {
        "kind": "pin", "subject": "DRM-****-****-7Q2K", "failures": 5, "max_failures": 5,
        "window_seconds": 900, "locked": True, "locked_until": "2025-03-12T08:15:00Z",
        "retry_after_seconds": 780,
    }
    [locked] = client.db.audit(action="lockout.locked")
    assert (locked.entity, locked.entity_id, locked.actor) == ("certificate", "DRM-****-****-7Q2K", "conversation-7")
    assert locked.payload == {"kind": "pin", "failures": 5, "locked_until": "2025-03-12T08:15:00Z"}

    status, reply, _ = client.unlock(kind="pin", subject=CODE, staff="anna.support",
                                     reason="Клиент подтвердил личность по телефону")
    assert status == 200
    assert reply["locked"] is False and reply["failures"] == 0
    assert reply["cleared"] == {"failures": 5, "was_locked": True}
    [entry] = client.db.audit(action="lockout.unlock")
    assert (entry.entity, entry.entity_id, entry.actor) == ("certificate", "DRM-****-****-7Q2K", "anna.support")
    assert entry.payload == {
        "kind": "pin", "order_id": "40817263", "reason": "Клиент подтвердил личность по телефону",
        "failures_cleared": 5, "was_locked": True, "locked_until": "2025-03-12T08:15:00Z",
    }
    status, found, _ = client.lookup("1234")
    assert status == 200 and found["balance"] == 3000
    _, entries = client.api.get("/audit?action=lockout.unlock")
    assert entries["entries"][0]["actor"] == "anna.support"


def test_staff_unlock_an_orders_buyer_check(client) -> None:
    for last4 in WRONG_LAST4[:5]:
        client.verify("40817358", phone_last4=last4)
    assert_locked(client.verify("40817358", phone_last4="0101"), 900)
    status, reply, _ = client.unlock(kind="buyer", subject="40817358", staff="oleg", reason="called back")
    assert status == 200 and reply["cleared"] == {"failures": 5, "was_locked": True}
    assert client.verify("40817358", phone_last4="0101")[:2] == (200, {"verified": True})
    [entry] = client.db.audit(action="lockout.unlock", entity_id="40817358")
    assert entry.entity == "order" and entry.payload["reason"] == "called back"
    # unlocking an open subject is harmless, and still on record
    status, reply, _ = client.unlock(kind="buyer", subject="40817358", staff="oleg", reason="check")
    assert status == 200 and reply["cleared"] == {"failures": 0, "was_locked": False}
    assert client.db.count(AuditLog, action="lockout.unlock") == 2


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "pin", "subject": CODE, "staff": "anna"},  # no reason
        {"kind": "pin", "subject": CODE, "reason": "x"},  # no staff
        {"kind": "pin", "subject": CODE, "staff": "anna smith!", "reason": "x"},
        {"kind": "pin", "subject": CODE, "staff": "anna", "reason": "x" * 501},
        {"kind": "everything", "subject": CODE, "staff": "anna", "reason": "x"},
        {"kind": "pin", "subject": "DRM-A1B2", "staff": "anna", "reason": "x"},
        {"kind": "buyer", "subject": "4081726", "staff": "anna", "reason": "x"},
        {"kind": "buyer", "staff": "anna", "reason": "x"},
        {"kind": "buyer", "subject": "40817263", "staff": "anna", "reason": "x", "force": True},
    ],
)
def test_bad_unlock_requests_are_400(client, body) -> None:
    status, reply, _ = client.unlock(**body)
    assert status == 400 and reply["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("query", ["", "?kind=pin", "?subject=40817263", "?kind=order&subject=40817263",
                                   "?kind=buyer&subject=DRM-A1B2-C3D4-7Q2K"])
def test_bad_status_queries_are_400(client, query) -> None:
    status, reply, _ = client.call("get", f"/lockouts{query}")
    assert status == 400 and reply["error"]["code"] == "invalid_request"


def test_lockout_routes_need_the_token(client) -> None:
    api = client.api
    assert api.get(f"/lockouts?kind=pin&subject={CODE}", token=None)[0] == 401
    body = {"kind": "pin", "subject": CODE, "staff": "anna", "reason": "x"}
    assert api.post("/lockouts/unlock", body, token="wrong")[0] == 401
    assert client.db.count(AuditLog, action="lockout.unlock") == 0


# --- concurrency: SQLite and PostgreSQL -------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'concurrent.db'}"
    return request.getfixturevalue("postgres").database("lockouts")


@pytest.fixture
def sessions(database_url) -> Iterator[Any]:
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    seed(engine, factory, FIXED_NOW)
    yield factory
    engine.dispose()


def all_at_once(attempt: Callable[[int], Any], count: int = 20) -> List[str]:
    """Run ``attempt(n)`` in ``count`` threads released together; → each outcome (an error code
    or "ok:<result>")."""
    barrier = threading.Barrier(count)

    def run(number: int) -> str:
        barrier.wait()
        try:
            return f"ok:{attempt(number)}"
        except BackofficeError as error:
            return error.code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def stored_failures(sessions, kind: str) -> List[CheckLockout]:
    with read_transaction(sessions) as session:
        return list(session.execute(select(CheckLockout).where(CheckLockout.kind == kind)).scalars())


def test_concurrent_wrong_pins_evaluate_exactly_max_failures(sessions) -> None:
    outcomes = all_at_once(lambda n: certificates.lookup(sessions, CODE, f"{5000 + n}", FIXED_NOW))
    assert sorted(outcomes) == ["pin_invalid"] * 5 + ["too_many_attempts"] * 15
    [row] = stored_failures(sessions, "pin")
    assert len(row.failed_at) == 5 and row.locked_until == FIXED_NOW + WINDOW


def test_concurrent_wrong_buyer_checks_evaluate_exactly_max_failures(sessions) -> None:
    outcomes = all_at_once(lambda n: orders.verify_buyer(
        sessions, "40817263", Verification(phone_last4=f"{1000 + n}"), now=FIXED_NOW))
    assert sorted(outcomes) == ["ok:False"] * 5 + ["too_many_attempts"] * 15
    refund_tries = all_at_once(lambda n: refunds.create_refund(
        sessions, RefundRequest("40817358", f"k-{n}", Verification(email=f"guess{n}@mail.ru")),
        actor="t", now=FIXED_NOW, window_days=14))
    assert sorted(refund_tries) == ["too_many_attempts"] * 15 + ["verification_failed"] * 5
    assert sorted(len(row.failed_at) for row in stored_failures(sessions, "buyer")) == [5, 5]


def test_concurrent_right_values_are_all_answered(sessions) -> None:
    """Right values do not crowd each other out: the same refund asked 20 times at once."""
    outcomes = all_at_once(lambda n: refunds.create_refund(
        sessions, RefundRequest("40817263", f"same-{n}", Verification(email="ivan@mail.ru")),
        actor="t", now=FIXED_NOW, window_days=14).created)
    assert sorted(outcomes) == ["ok:False"] * 19 + ["ok:True"]


# --- the service layer and settings -----------------------------------------------------------


def test_a_custom_policy_and_the_typed_errors(tmp_path) -> None:
    db = seeded_database(tmp_path)
    strict = LockoutPolicy(max_failures=2, window=timedelta(minutes=1))
    for pin in WRONG_PINS[:2]:
        with pytest.raises(PinInvalid):
            certificates.lookup(db.session_factory, CODE, pin, FIXED_NOW, lockout=strict)
    with pytest.raises(TooManyAttempts) as locked:
        certificates.lookup(db.session_factory, CODE, "1234", FIXED_NOW + timedelta(seconds=59.9), lockout=strict)
    assert locked.value.retry_after_seconds == 1 and locked.value.http_status == 429
    assert locked.value.http_headers() == {"Retry-After": "1"}
    assert certificates.lookup(db.session_factory, CODE, "1234", FIXED_NOW + timedelta(minutes=1),
                               lockout=strict)["balance"] == 3000
    with pytest.raises(VerificationFailed):
        refunds.create_refund(db.session_factory, RefundRequest("40817263", "k", Verification(email="x@y.ru")),
                              actor="t", now=FIXED_NOW, window_days=14, lockout=strict)
    db.engine.dispose()


def test_retry_after_rule() -> None:
    until = FIXED_NOW + WINDOW
    assert rules.retry_after_seconds(until, FIXED_NOW) == 900
    assert rules.retry_after_seconds(until, until - timedelta(microseconds=1)) == 1
    assert rules.retry_after_seconds(until, FIXED_NOW + timedelta(seconds=0.2)) == 900  # rounded up
    rules.check_not_locked(until, until, "x")  # over at exactly locked_until
    rules.check_not_locked(None, FIXED_NOW, "x")
    with pytest.raises(TooManyAttempts):
        rules.check_not_locked(until, until - timedelta(seconds=1), "x")


LOCKOUT_ENV = ("BACKOFFICE_LOCKOUT_MAX_FAILURES", "BACKOFFICE_LOCKOUT_WINDOW_MINUTES")


def test_lockout_settings_from_env(monkeypatch) -> None:
    for name in LOCKOUT_ENV:
        monkeypatch.delenv(name, raising=False)
    defaults = BackofficeSettings.from_env()
    assert (defaults.lockout_max_failures, defaults.lockout_window_minutes) == (5, 15)
    monkeypatch.setenv("BACKOFFICE_LOCKOUT_MAX_FAILURES", " 3 ")
    monkeypatch.setenv("BACKOFFICE_LOCKOUT_WINDOW_MINUTES", "60")
    custom = BackofficeSettings.from_env()
    assert (custom.lockout_max_failures, custom.lockout_window_minutes) == (3, 60)


@pytest.mark.parametrize(
    "name, raw",
    [
        ("BACKOFFICE_LOCKOUT_MAX_FAILURES", "0"),
        ("BACKOFFICE_LOCKOUT_MAX_FAILURES", "-5"),
        ("BACKOFFICE_LOCKOUT_MAX_FAILURES", "five"),
        ("BACKOFFICE_LOCKOUT_MAX_FAILURES", "1001"),
        ("BACKOFFICE_LOCKOUT_WINDOW_MINUTES", "0"),
        ("BACKOFFICE_LOCKOUT_WINDOW_MINUTES", "1.5"),
        ("BACKOFFICE_LOCKOUT_WINDOW_MINUTES", "10081"),
    ],
)
def test_bad_lockout_settings_are_refused_by_name(monkeypatch, name, raw) -> None:
    for other in LOCKOUT_ENV:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, raw)
    with pytest.raises(ValueError, match=name):
        BackofficeSettings.from_env()


def test_a_policy_that_could_never_lock_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="max_failures"):
        LockoutPolicy(max_failures=0)
    with pytest.raises(ValueError, match="window"):
        LockoutPolicy(window=timedelta(0))
    with pytest.raises(ValueError):
        create_app(BackofficeSettings(database_url=f"sqlite:///{tmp_path / 'x.db'}", lockout_max_failures=0))


# --- the OpenAPI document ---------------------------------------------------------------------


def test_openapi_describes_the_lockouts(client) -> None:
    _, spec = client.api.get("/openapi.json")
    paths = spec["paths"]
    assert set(paths["/lockouts"]) == {"get"} and set(paths["/lockouts/unlock"]) == {"post"}
    assert {p["name"] for p in paths["/lockouts"]["get"]["parameters"]} == {"kind", "subject"}
    unlock_body = paths["/lockouts/unlock"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(unlock_body["required"]) == {"kind", "subject", "staff", "reason"}
    for path, method in [("/certificates/lookup", "post"), ("/orders/{order_id}/verify", "post"),
                         ("/refunds", "post"), ("/orders/{order_id}/resend", "post")]:
        locked = paths[path][method]["responses"]["429"]
        assert "too_many_attempts" in locked["description"] and "Retry-After" in locked["headers"], path
    error = spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert "too_many_attempts" in error["code"]["enum"] and error["retry_after_seconds"]["type"] == "integer"
    assert "LockoutStatus" in spec["components"]["schemas"]
