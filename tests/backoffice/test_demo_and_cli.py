"""Demo data covers every handbook branch, DEMO.md documents it, and the CLI seeds / resets."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from backoffice import __main__ as cli
from backoffice.db import make_engine, make_session_factory, read_transaction
from backoffice.demo_data import DEMO_ORDERS
from backoffice.models import MULTI_BRAND, Brand, Certificate, Order, Refund, ResendLog
from backoffice.security import verify_pin
from backoffice.settings import PROJECT_ROOT
from backoffice.timeutil import moscow_day_bounds

from .conftest import FIXED_NOW


def _all(db, model):
    with read_transaction(db.session_factory) as session:
        return list(session.execute(select(model)).scalars())


def test_demo_covers_every_branch(db) -> None:
    orders = {order.id: order for order in _all(db, Order)}
    certificates = _all(db, Certificate)
    by_order = {}
    for certificate in certificates:
        by_order.setdefault(certificate.order_id, []).append(certificate)

    statuses = {c.status for c in certificates}
    assert {"active", "activated", "partially_used", "used", "expired", "refunded"} <= statuses
    assert {c.delivery_channel for c in certificates} == {"email", "sms"}

    b2b = [o for o in orders.values() if o.is_b2b]
    assert len(b2b) == 1 and b2b[0].company_inn == "7712345671" and len(by_order[b2b[0].id]) >= 10
    assert b2b[0].amount >= 30000

    late = [o for o in orders.values() if not o.is_b2b and (FIXED_NOW - o.created_at).days > 14
            and all(c.status == "active" for c in by_order[o.id])]
    assert late  # > 14 days, untouched → a human decides

    start, end = moscow_day_bounds(FIXED_NOW)
    today = [r for r in _all(db, ResendLog) if start <= r.created_at < end]
    assert len([r for r in today if r.order_id == "40817325"]) == 3

    off = [b.name for b in _all(db, Brand) if not b.in_catalogue]
    assert off == ["Детский мир"]
    assert any(c.brand == MULTI_BRAND and c.status == "active" for c in certificates)

    expired = [c for c in certificates if c.status == "expired"]
    assert expired and all(c.expires_at < FIXED_NOW for c in expired)
    assert all(c.expires_at > FIXED_NOW for c in certificates if c.status != "expired")
    assert [r.order_id for r in _all(db, Refund)] == ["40817369"]


def test_dates_are_relative_to_now(tmp_path) -> None:
    from .conftest import seeded_database

    later = FIXED_NOW + timedelta(days=100)
    database = seeded_database(tmp_path, now=later)
    try:
        with read_transaction(database.session_factory) as session:
            order = session.get(Order, "40817263")
            assert order.created_at == later - timedelta(days=3)
    finally:
        database.engine.dispose()


def test_pins_are_only_stored_hashed(db) -> None:
    pins = {c.code: c.pin for demo in DEMO_ORDERS for c in demo.certificates}
    for certificate in _all(db, Certificate):
        pin = pins[certificate.code]
        assert certificate.pin_hash.startswith("pbkdf2_sha256$")
        assert verify_pin(pin, certificate.pin_hash)
    salts = [c.pin_hash.split("$")[2] for c in _all(db, Certificate)]
    assert len(set(salts)) == len(salts)  # per-row salt, even for the ten B2B certificates with one PIN


def test_demo_md_documents_every_case() -> None:
    text = (PROJECT_ROOT / "backoffice" / "DEMO.md").read_text(encoding="utf-8")
    for demo in DEMO_ORDERS:
        assert f"`{demo.order_id}`" in text
        assert demo.email in text
        assert f"`{demo.certificates[0].pin}`" in text
        assert demo.certificates[0].code in text


def test_codes_and_ids_have_the_handbook_formats() -> None:
    import re

    for demo in DEMO_ORDERS:
        assert re.fullmatch(r"\d{8}", demo.order_id)
        assert re.fullmatch(r"\+7\d{10}", demo.phone)
        for certificate in demo.certificates:
            assert re.fullmatch(r"DRM-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", certificate.code)
            assert re.fullmatch(r"\d{4}", certificate.pin)


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("BACKOFFICE_DATABASE_URL", url)
    return url


def _orders(url: str) -> int:
    engine = make_engine(url)
    try:
        with read_transaction(make_session_factory(engine)) as session:
            return len(list(session.execute(select(Order.id)).scalars()))
    finally:
        engine.dispose()


def test_cli_seed_then_again_then_reset(cli_env, capsys) -> None:
    assert cli.main(["seed"]) == 0
    assert "Demo data written" in capsys.readouterr().out
    assert _orders(cli_env) == len(DEMO_ORDERS)

    assert cli.main(["seed"]) == 0  # not twice
    assert "already has orders" in capsys.readouterr().out
    assert _orders(cli_env) == len(DEMO_ORDERS)

    engine = make_engine(cli_env)
    with make_session_factory(engine)() as session, session.begin():
        session.get(Certificate, 1).status = "used"
    engine.dispose()
    assert cli.main(["seed", "--reset"]) == 0
    assert "Demo data written" in capsys.readouterr().out
    engine = make_engine(cli_env)
    with make_session_factory(engine)() as session:
        assert session.get(Certificate, 1).status == "active"
    engine.dispose()


def test_cli_needs_a_command(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main([])
