"""Replicas that start at the same moment on a fresh database all come up: the event broker's and
the hand-off core's tables are created once, whoever is first (found by CI: two Rasa servers
creating `events` together on PostgreSQL, one crashed)."""
from __future__ import annotations

import threading
from typing import Callable, List

import pytest
import sqlalchemy as sa


def together(count: int, start: Callable[[], object]) -> List[BaseException]:
    barrier, errors = threading.Barrier(count), []

    def run() -> None:
        barrier.wait()
        try:
            start()
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("postgres").database("fresh")


def test_event_brokers_started_together_all_come_up(fresh_url):
    from engine.event_broker import MaskedSQLEventBroker

    brokers: list = []
    errors = together(6, lambda: brokers.append(MaskedSQLEventBroker(host=fresh_url)))
    assert errors == [] and len(brokers) == 6
    brokers[0].publish({"event": "action", "name": "action_listen", "sender_id": "x"})
    engine = sa.create_engine(fresh_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM events").scalar() == 1
    engine.dispose()
    for broker in brokers:
        broker.engine.dispose()


def test_hand_off_tables_created_together(fresh_url):
    from handoff.db import create_tables, make_engine

    engines = [make_engine(fresh_url) for _ in range(6)]
    errors = together(6, lambda: create_tables(engines[threading.get_ident() % 6]))
    assert errors == []
    columns = {column["name"] for column in sa.inspect(engines[0]).get_columns("conversations")}
    assert "channel" in columns
    for engine in engines:
        engine.dispose()
