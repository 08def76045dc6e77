"""The edges: app factory defaults, failures → JSON (never a stack trace), the database-level
guard against a second refund, and a schema that also compiles for PostgreSQL."""
from __future__ import annotations

from sqlalchemy import inspect, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from backoffice.app import create_app
from backoffice.models import Base, Order, Refund
from backoffice.services import refunds
from backoffice.settings import BackofficeSettings
from backoffice.validation import RefundRequest, Verification

from .conftest import FIXED_NOW, TOKEN, Api


def test_create_app_opens_the_settings_database_and_creates_tables(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    api = Api(create_app(BackofficeSettings(database_url=url, api_token=TOKEN)))
    assert api.get("/health") == (200, {"status": "ok", "database": "ok"})
    assert api.get("/orders/40817263")[1]["error"]["code"] == "not_found"  # empty, but working
    from sqlalchemy import create_engine

    engine = create_engine(url)
    assert {"orders", "certificates", "refunds", "resend_log", "tickets", "audit_log", "brands"} <= set(
        inspect(engine).get_table_names())
    engine.dispose()


def test_database_failure_is_a_json_500_and_a_degraded_health(settings) -> None:
    def broken_sessions():
        raise RuntimeError("connection refused")

    api = Api(create_app(settings, broken_sessions))
    assert api.get("/health", token=None) == (503, {"status": "degraded", "database": "unavailable"})
    status, body = api.get("/orders/40817263")
    assert status == 500
    assert body == {"error": {"code": "internal_error", "message": "Internal error."}}


def test_unique_constraint_turns_a_lost_race_into_a_replay(db, monkeypatch) -> None:
    """Simulates the race the row lock prevents: the loser saw no refund, passed the rules and
    inserted; the UNIQUE(order_id) constraint fails it, and it answers with the winner's refund."""
    request = RefundRequest("40817263", "winner", Verification(email="ivan@mail.ru"))
    winner = refunds.create_refund(db.session_factory, request, actor="t", now=FIXED_NOW, window_days=14)
    assert winner.created

    real_existing = refunds._existing
    calls = []

    def blind_first_time(session, req):
        calls.append(req.idempotency_key)
        return None if len(calls) == 1 else real_existing(session, req)

    monkeypatch.setattr(refunds, "_existing", blind_first_time)
    monkeypatch.setattr(refunds, "check_refund_allowed", lambda *args, **kwargs: None)
    loser = refunds.create_refund(
        db.session_factory, RefundRequest("40817263", "loser", Verification(phone_last4="4567")),
        actor="t", now=FIXED_NOW, window_days=14,
    )
    assert loser.created is False and loser.refund == winner.refund
    assert len(calls) == 2  # the insert failed on the constraint, then the replay lookup ran
    assert db.count(Refund, order_id="40817263") == 1


def test_schema_and_locking_compile_for_postgresql() -> None:
    dialect = postgresql.dialect()
    ddl = "\n".join(str(CreateTable(table).compile(dialect=dialect)) for table in Base.metadata.sorted_tables)
    assert "UNIQUE (order_id)" in ddl and "UNIQUE (idempotency_key)" in ddl
    locked = select(Order).where(Order.id == "40817263").with_for_update()
    assert "FOR UPDATE" in str(locked.compile(dialect=dialect))
