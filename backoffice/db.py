"""The back office's database: engine from the settings and its tables (nothing is opened on import).

Engines, sessions and transactions come from ``sqlstore`` (SQLite tuned for a multi-threaded
server, ``BEGIN IMMEDIATE`` for writes); the services lock the order row with
``SELECT ... FOR UPDATE`` on other databases (PostgreSQL).
"""
from __future__ import annotations

from sqlalchemy.engine import Engine

from backoffice.models import Base
from backoffice.settings import BackofficeSettings
from sqlstore import SessionFactory, make_engine, make_session_factory, read_transaction, write_transaction

__all__ = [
    "SessionFactory",
    "create_tables",
    "drop_tables",
    "engine_from_settings",
    "make_engine",
    "make_session_factory",
    "read_transaction",
    "write_transaction",
]


def engine_from_settings(settings: BackofficeSettings) -> Engine:
    return make_engine(settings.database_url)


def create_tables(engine: Engine) -> None:
    Base.metadata.create_all(engine)


def drop_tables(engine: Engine) -> None:
    Base.metadata.drop_all(engine)
