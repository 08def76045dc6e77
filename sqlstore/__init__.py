"""SQL plumbing shared by the project's stores (the reference back office and the hand-off core):
engines, sessions, transactions and a UTC timestamp column. It imports neither of them, so the
back office stays replaceable and the engine does not depend on it.

SQLite gets what it needs for a multi-threaded server: one connection per thread, a busy
timeout, foreign keys, WAL, and ``BEGIN IMMEDIATE`` for write transactions (writers of this
process also queue on a lock), so concurrent writers queue up instead of failing or racing.
Other databases (PostgreSQL) use their own transactions; the services lock their rows with
``SELECT ... FOR UPDATE``. Nothing is opened on import.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from typing import Any, Callable, ContextManager, Iterator, Optional
from weakref import WeakKeyDictionary

from sqlalchemy import DateTime, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool, StaticPool
from sqlalchemy.types import TypeDecorator

SessionFactory = Callable[[], Session]

_SQLITE_BEGIN_OPTION = "sqlstore_sqlite_begin"
SQLITE_BUSY_TIMEOUT_SECONDS = 30

# SQLite has one writer at a time anyway: writers of this process queue on a lock instead of
# polling SQLite's busy handler (other processes still wait on BEGIN IMMEDIATE + busy timeout).
_sqlite_writer_locks: "WeakKeyDictionary[Engine, threading.Lock]" = WeakKeyDictionary()
_locks_guard = threading.Lock()


def writer_lock(engine: Engine) -> ContextManager[Any]:
    """The lock this process's writers of a SQLite database queue on (a no-op elsewhere): held
    around a write transaction, threads wait their turn instead of sleeping in SQLite's busy
    handler (milliseconds each time, with no work done)."""
    return _writer_lock(engine)


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


def make_engine(database_url: str, *, sqlite_synchronous: str = "FULL", **options: Any) -> Engine:
    """Any SQLAlchemy URL; extra ``options`` go to ``create_engine`` (non-SQLite only).
    ``sqlite_synchronous``: ``FULL`` (a commit is on disk when it returns) or ``NORMAL`` (in WAL
    mode a crash of the process loses nothing, a power cut may lose the last commits — for
    state that is rebuilt or re-said, not for money)."""
    if sqlite_synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"sqlite_synchronous is FULL or NORMAL, got {sqlite_synchronous!r}")
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, future=True, pool_pre_ping=True, **options)

    sqlite_options: dict = {
        "future": True,
        "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
    }
    if _is_memory_sqlite(url):
        sqlite_options["poolclass"] = StaticPool  # one shared in-memory database; single-threaded use only
    else:
        # SQLAlchemy 1.4 opens a new SQLite connection (and runs the PRAGMAs) per transaction by
        # default; a pool keeps them: a hot path writes here on every customer turn
        sqlite_options.update(poolclass=QueuePool, pool_size=8, max_overflow=16)
    engine = create_engine(url, **sqlite_options)
    _install_sqlite_transactions(engine, wal=not _is_memory_sqlite(url), synchronous=sqlite_synchronous)
    return engine


def _install_sqlite_transactions(engine: Engine, wal: bool, synchronous: str = "FULL") -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite must not BEGIN on its own: we do it below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def tune_sqlite_file(engine: Engine) -> None:
    """For SQLite engines made elsewhere (Rasa's tracker store and event broker): WAL journal,
    ``synchronous=NORMAL`` (in WAL mode a commit then waits for the disk once, at checkpoints,
    and a crash loses no committed transaction; a power cut may lose the last ones) and a busy
    timeout, so several processes share the file. No-op for other databases."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.close()


#: what a database says when another process is creating the same table (or holds the file)
_CREATED_MEANWHILE = ("already exists", "duplicate column", "pg_type_typname_nsp_index", "duplicate key",
                      "database is locked")


def create_all_tables(create: Callable[[], Any], attempts: int = 5) -> Any:
    """Run ``create`` (a ``metadata.create_all`` or a constructor that calls it) again when a
    process started at the same moment created the same table first: PostgreSQL reports that as
    a unique violation on its catalogue, SQLite as "already exists" or a locked file; the next try
    finds it."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(attempts):
        try:
            return create()
        except (IntegrityError, ProgrammingError, OperationalError) as error:
            text = str(getattr(error, "orig", error)).lower()
            if attempt == attempts - 1 or not any(sign in text for sign in _CREATED_MEANWHILE):
                raise
            time.sleep(0.2 * (attempt + 1))
    return None


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(bind=engine, future=True, expire_on_commit=False)


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


class UTCDateTime(TypeDecorator):
    """Stores naive UTC (SQLite has no time zones), always hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


__all__ = [
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "SessionFactory",
    "UTCDateTime",
    "create_all_tables",
    "make_engine",
    "writer_lock",
    "make_session_factory",
    "read_transaction",
    "write_transaction",
]
