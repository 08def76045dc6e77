"""Engine, sessions and transactions, built from the settings (nothing is opened on import).

The same approach as the back office (``backoffice/db.py``), kept separate so the hand-off core
can live in its own database: SQLite gets one connection per thread, a busy timeout, foreign
keys, WAL and ``BEGIN IMMEDIATE`` for write transactions (writers of this process also queue on
a lock), so two writers never interleave. On PostgreSQL the service locks the conversation row
with ``SELECT ... FOR UPDATE``; on every backend the ``version`` column is compared-and-swapped
on UPDATE as the last line of defence.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, ContextManager, Iterator
from weakref import WeakKeyDictionary

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from handoff.models import Base
from handoff.settings import HandoffSettings

SessionFactory = Callable[[], Session]

_SQLITE_BEGIN_OPTION = "handoff_sqlite_begin"
SQLITE_BUSY_TIMEOUT_SECONDS = 30

_sqlite_writer_locks: "WeakKeyDictionary[Engine, threading.Lock]" = WeakKeyDictionary()
_locks_guard = threading.Lock()


def _writer_lock(engine: Engine) -> ContextManager[Any]:
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _locks_guard:
        lock = _sqlite_writer_locks.get(engine)
        if lock is None:
            lock = _sqlite_writer_locks[engine] = threading.Lock()
    return lock


def _is_memory_sqlite(url: Any) -> bool:
    return url.get_backend_name() == "sqlite" and (url.database in (None, "", ":memory:"))


def make_engine(database_url: str, **options: Any) -> Engine:
    """Any SQLAlchemy URL; extra ``options`` go to ``create_engine`` (non-SQLite only)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, future=True, pool_pre_ping=True, **options)

    sqlite_options: dict = {
        "future": True,
        "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
    }
    if _is_memory_sqlite(url):
        sqlite_options["poolclass"] = StaticPool  # one shared in-memory database; single-threaded use only
    engine = create_engine(url, **sqlite_options)
    _install_sqlite_transactions(engine, wal=not _is_memory_sqlite(url))
    return engine


def _install_sqlite_transactions(engine: Engine, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite must not BEGIN on its own: we do it below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(bind=engine, future=True, expire_on_commit=False)


def engine_from_settings(settings: HandoffSettings) -> Engine:
    return make_engine(settings.database_url)


def create_tables(engine: Engine) -> None:
    Base.metadata.create_all(engine)


def drop_tables(engine: Engine) -> None:
    Base.metadata.drop_all(engine)


@contextmanager
def read_transaction(session_factory: SessionFactory) -> Iterator[Session]:
    with session_factory() as session:
        with session.begin():
            yield session


@contextmanager
def write_transaction(session_factory: SessionFactory) -> Iterator[Session]:
    """One transaction that takes the write lock up front on SQLite (``BEGIN IMMEDIATE``);
    commits on success, rolls back on any exception."""
    with session_factory() as session:
        with _writer_lock(session.get_bind().engine):
            with session.begin():
                session.connection(execution_options={_SQLITE_BEGIN_OPTION: "IMMEDIATE"})
                yield session
