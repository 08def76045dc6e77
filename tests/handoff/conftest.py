"""Fixtures of the hand-off tests: a service on a temporary SQLite file with a clock the test
moves, and the same on PostgreSQL: a fresh database of the test session's own server (the
``postgres`` fixture), or a fresh schema of ``HANDOFF_TEST_POSTGRES_URL`` when one is given."""
from __future__ import annotations

import os
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import text

from handoff.copilot import Copilot, CopilotModes
from handoff.db import create_tables, make_engine, make_session_factory
from handoff.machine import HandoffService

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES_URL") or os.environ.get("BACKOFFICE_TEST_POSTGRES_URL")
START = datetime(2025, 3, 12, 8, 0, tzinfo=timezone.utc)


class Clock:
    """A clock the test moves by hand (thread-safe)."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, **delta: float) -> None:
        with self._lock:
            self.now += timedelta(**delta)


def sqlite_service(path: Path, clock=None) -> HandoffService:
    engine = make_engine(f"sqlite:///{path}")
    create_tables(engine)
    return HandoffService(make_session_factory(engine), clock=clock or Clock())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(tmp_path: Path, clock: Clock) -> Iterator[HandoffService]:
    service = sqlite_service(tmp_path / "handoff.db", clock)
    yield service
    service.session_factory.kw["bind"].dispose()


@pytest.fixture
def copilot(service: HandoffService) -> Copilot:
    return Copilot(service, CopilotModes.load())


@pytest.fixture(params=["sqlite", "postgresql"])
def any_service(request, tmp_path: Path) -> Iterator[HandoffService]:
    """The real clock, on SQLite and on a real PostgreSQL server (a fresh database of it)."""
    if request.param == "sqlite":
        service = sqlite_service(tmp_path / "handoff.db", clock=lambda: datetime.now(timezone.utc))
        yield service
        service.session_factory.kw["bind"].dispose()
        return
    url = POSTGRES_URL or request.getfixturevalue("postgres").database("handoff")
    if POSTGRES_URL:  # a given server: a schema of its own
        schema = f"handoff_test_{uuid.uuid4().hex[:12]}"
        admin = make_engine(POSTGRES_URL)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = make_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"}, pool_size=20)
    else:
        admin, schema = None, None
        engine = make_engine(url, pool_size=20)
    try:
        create_tables(engine)
        yield HandoffService(make_session_factory(engine))
    finally:
        engine.dispose()
        if admin is not None:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
