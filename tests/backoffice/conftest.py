"""Fixtures of the back-office tests: one temporary, seeded SQLite file per test module, the app
on it with a frozen clock, and a small JSON client that sends the bearer token."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from backoffice.app import create_app
from backoffice.db import SessionFactory, make_engine, make_session_factory, read_transaction
from backoffice.demo_data import seed
from backoffice.models import AuditLog
from backoffice.settings import BackofficeSettings

TOKEN = "test-token"
# Wednesday 12 March 2025, 11:00 Moscow time: staff on duty, a normal working week ahead.
FIXED_NOW = datetime(2025, 3, 12, 8, 0, tzinfo=timezone.utc)


@dataclass
class Database:
    path: Path
    engine: Engine
    session_factory: SessionFactory

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def count(self, model: Any, **filters: Any) -> int:
        query = select(func.count()).select_from(model)
        for name, value in filters.items():
            query = query.where(getattr(model, name) == value)
        with read_transaction(self.session_factory) as session:
            return session.execute(query).scalar_one()

    def audit(self, **filters: Any) -> list:
        query = select(AuditLog).order_by(AuditLog.id)
        for name, value in filters.items():
            query = query.where(getattr(AuditLog, name) == value)
        with read_transaction(self.session_factory) as session:
            return list(session.execute(query).scalars())


class Api:
    """``api.post(path, body)`` → ``(status, json)``; the bearer token is sent unless ``token=None``."""

    def __init__(self, app: Any, token: Optional[str] = TOKEN) -> None:
        self.app = app
        self.token = token

    def _headers(self, token: Optional[str], extra: Optional[Dict[str, str]]) -> Dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        headers.update(extra or {})
        return headers

    def request(
        self, method: str, path: str, body: Any = None, *, token: Optional[str] = TOKEN,
        headers: Optional[Dict[str, str]] = None, raw: Optional[str] = None,
    ) -> Tuple[int, Any]:
        import json

        kwargs: Dict[str, Any] = {"headers": self._headers(token, headers)}
        if method == "get":
            pass
        elif raw is not None:
            kwargs["data"] = raw
        elif body is not None:
            kwargs["data"] = json.dumps(body)
        _, response = getattr(self.app.test_client, method)(path, **kwargs)
        try:
            payload = response.json
        except Exception:
            payload = None
        return response.status, payload

    def get(self, path: str, **kwargs: Any) -> Tuple[int, Any]:
        return self.request("get", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Tuple[int, Any]:
        return self.request("post", path, body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> Tuple[int, Any]:
        return self.request("patch", path, body, **kwargs)


def seeded_database(directory: Path, now: datetime = FIXED_NOW) -> Database:
    path = directory / "backoffice.db"
    engine = make_engine(f"sqlite:///{path}")
    session_factory = make_session_factory(engine)
    seed(engine, session_factory, now)
    return Database(path, engine, session_factory)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Database:
    database = seeded_database(tmp_path_factory.mktemp("backoffice"))
    yield database
    database.engine.dispose()


@pytest.fixture(scope="module")
def settings(db: Database) -> BackofficeSettings:
    return BackofficeSettings(database_url=db.url, api_token=TOKEN)


@pytest.fixture(scope="module")
def app(settings: BackofficeSettings, db: Database):
    return create_app(settings, db.session_factory, clock=lambda: FIXED_NOW)


@pytest.fixture(scope="module")
def api(app) -> Api:
    return Api(app)
