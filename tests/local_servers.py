"""Real PostgreSQL and Redis servers for the tests that need them (Debian's packages, run from a
scratch folder on free loopback ports, stopped when the test session ends).

``TEST_POSTGRES_URL`` / ``TEST_REDIS_URL`` point the tests at servers that already run instead
(``.ci/run`` starts its own and sets them). Without either a server or its binaries, the tests
that need it are skipped with the Debian package to install.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, List, Optional
from urllib.parse import urlsplit, urlunsplit

import pytest

from engine.services import LocalPostgres, LocalRedis, ServiceUnavailable
from tests.backoffice_process import free_port


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class PostgresServer:
    """A PostgreSQL server that hands out fresh databases (dropped when the session ends)."""

    admin_url: str  # any database on the server, as a superuser
    created: List[str] = field(default_factory=list)

    def _execute(self, sql: str) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(sql)
        finally:
            engine.dispose()

    def database(self, prefix: str = "test") -> str:
        """A new empty database; → its SQLAlchemy URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self._execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        parts = urlsplit(self.admin_url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))

    def drop_all(self) -> None:
        for name in self.created:
            try:
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception:  # the server is going away anyway
                pass


@contextmanager
def _local(server: Any, timeout: float, stop_signal: int) -> Iterator[Optional[str]]:
    """Start a ``LocalPostgres`` / ``LocalRedis`` (prepared in its folder); → None when it cannot
    be had, else the error-free start; stopped and its folder removed afterwards."""
    process = None
    try:
        try:
            server.prepare()
            process = subprocess.Popen(server.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            server.wait_ready(process, timeout=timeout)
        except (ServiceUnavailable, OSError) as error:
            print(f"{type(server).__name__} unavailable: {error}")
            yield None
            return
        yield "up"
    finally:
        if process is not None:
            _stop(process, stop_signal)
        shutil.rmtree(server.directory, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[Optional[PostgresServer]]:
    """``TEST_POSTGRES_URL``'s server, else a local one; None when neither can be had."""
    given = os.environ.get("TEST_POSTGRES_URL")
    if given:
        server = PostgresServer(given)
        yield server
        server.drop_all()
        return
    # the server runs as the `postgres` user when we are root: a folder it may enter
    directory = Path(tempfile.mkdtemp(prefix="test-postgres-"))
    directory.chmod(0o777)
    local = LocalPostgres(directory, free_port())
    with _local(local, 60, signal.SIGINT) as up:
        server = PostgresServer(local.url("postgres")) if up else None
        yield server
        if server is not None:
            server.drop_all()


@contextmanager
def redis_server() -> Iterator[Optional[str]]:
    """``TEST_REDIS_URL``, else a local Redis's URL; None when neither can be had."""
    given = os.environ.get("TEST_REDIS_URL")
    if given:
        yield given
        return
    local = LocalRedis(Path(tempfile.mkdtemp(prefix="test-redis-")), free_port())
    with _local(local, 30, signal.SIGTERM) as up:
        yield local.url if up else None


def require(server: object, package: str) -> None:
    if server is None:
        pytest.skip(f"needs a real server: apt-get install {package} (or set TEST_POSTGRES_URL / TEST_REDIS_URL)")
