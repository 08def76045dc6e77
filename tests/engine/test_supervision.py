"""The stack's supervision with real processes: the Supervisor (restarts, back-off, readiness,
stopping process groups), the endpoints and settings the stack runs with, and the local servers
of the scale-out profile (Debian's Redis, PostgreSQL and nginx).

Every process a test starts is stopped in a fixture's teardown, even when the test fails.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest
from ruamel.yaml import YAML

import engine.supervisor as supervisor_module
from engine.services import LocalPostgres, LocalRedis, NginxProxy, _postgres_bin_dir, port_open
from engine.settings import PROJECT_ROOT, StackSettings
from engine.stack import runtime_endpoints
from engine.supervisor import Service, Supervisor
from tests.backoffice_process import free_port

PYTHON = sys.executable

#: answers its pid on any path; GET /exit ends it with exit code 3
HTTP_SERVICE = r"""
import http.server, os, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/exit":
            os._exit(3)
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

#: an nginx upstream: answers JSON with its port and the Connection/Upgrade headers it got; a
#: WebSocket upgrade (both headers) gets 101, then the line sent is echoed back as b"<port>:<line>"
UPSTREAM = r"""
import http.server, json, sys
PORT = int(sys.argv[1])
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if (self.headers.get("Upgrade", "").lower() == "websocket"
                and "upgrade" in self.headers.get("Connection", "").lower()):
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            self.wfile.write(b"%d:" % PORT + self.rfile.readline())
            self.wfile.flush()
            self.close_connection = True
            return
        body = json.dumps({"port": PORT, "connection": self.headers.get("Connection"),
                           "upgrade": self.headers.get("Upgrade")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
"""


# --- helpers ----------------------------------------------------------------------------------


def _until(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def _stat(pid: int) -> List[str]:
    """/proc/<pid>/stat's fields after the command name: [state, ppid, pgrp, …]."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it is not)."""
    try:
        return _stat(pid)[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def _group(pgid: int) -> List[int]:
    """The live processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def _processes_mentioning(text: str) -> List[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (FileNotFoundError, ProcessLookupError):
                continue
            if text in cmdline and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _read_pid(path: Path, timeout: float = 10.0) -> int:
    assert _until(lambda: path.exists() and path.read_text().strip(), timeout), f"{path} was never written"
    return int(path.read_text())


@pytest.fixture
def make_supervisor() -> Iterator[Callable[..., Supervisor]]:
    """Supervisors whose report lines are collected in ``.lines``; all stopped at teardown."""
    made: List[Supervisor] = []

    def make(**options: object) -> Supervisor:
        lines: List[str] = []
        options.setdefault("stop_grace_seconds", 3.0)
        sup = Supervisor(report=lines.append, **options)  # type: ignore[arg-type]
        sup.lines = lines  # type: ignore[attr-defined]
        made.append(sup)
        return sup

    try:
        yield make
    finally:
        for sup in made:
            sup.stop()


@pytest.fixture
def stray_pids() -> Iterator[List[int]]:
    """Pids of grandchildren a test learns about: SIGKILLed at teardown whatever happened."""
    pids: List[int] = []
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


# --- Supervisor: restarts and back-off --------------------------------------------------------


def test_a_service_that_exits_is_restarted_and_its_recovery_reported(make_supervisor) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    sup = make_supervisor()
    service = sup.add(Service("web", [PYTHON, "-c", HTTP_SERVICE, str(port)], health_url=url))
    sup.start("web")
    first = service.process
    assert service.up and _get(url) == str(first.pid)

    with contextlib.suppress(Exception):
        _get(url + "exit")
    first.wait(timeout=10)
    sup.check()
    assert sup.lines == ["✗ The web stopped (exit code 3); restarting it (restart 1)."]
    assert not service.up and service.restart_at is not None

    sup.check()  # the first restart is due at once
    assert service.process is not first and service.process.poll() is None
    assert _until(lambda: (sup.check(), service.up)[1], timeout=15), sup.lines
    assert sup.lines[1:] == ["✓ The web is running again."]
    assert _get(url) == str(service.process.pid)
    sup.check()
    assert len(sup.lines) == 2  # a service that is up is reported once


def _crash_and_notice(sup: Supervisor, service: Service) -> float:
    """Wait for the service's process to exit, run one check(); → the back-off it was given."""
    service.process.wait(timeout=10)
    before = time.monotonic()
    sup.check()
    assert service.restart_at is not None, sup.lines
    return service.restart_at - before


def _restart_now(sup: Supervisor, service: Service) -> None:
    """Skip the back-off's wait (test_restart_waits_for_its_back_off checks the wait itself)."""
    previous = service.process
    service.restart_at = time.monotonic()
    sup.check()
    assert service.process is not previous and service.restart_at is None


def test_quick_crashes_back_off_1_2_4_seconds_capped_at_backoff_max(make_supervisor) -> None:
    sup = make_supervisor(backoff_max=4)
    service = sup.add(Service("crasher", [PYTHON, "-c", "import sys; sys.exit(5)"]))
    sup.start("crasher", wait=False)
    delays = []
    for _ in range(6):
        delays.append(_crash_and_notice(sup, service))
        _restart_now(sup, service)
    assert [round(delay) for delay in delays] == [0, 1, 2, 4, 4, 4], delays
    assert sup.lines == [
        "✗ The crasher stopped (exit code 5); restarting it (restart 1).",
        "✗ The crasher stopped (exit code 5); restarting it in 1 s (restart 2).",
        "✗ The crasher stopped (exit code 5); restarting it in 2 s (restart 3).",
        "✗ The crasher stopped (exit code 5); restarting it in 4 s (restart 4).",
        "✗ The crasher stopped (exit code 5); restarting it in 4 s (restart 5).",
        "✗ The crasher stopped (exit code 5); restarting it in 4 s (restart 6).",
    ]


def test_restart_waits_for_its_back_off(make_supervisor) -> None:
    sup = make_supervisor(backoff_max=2)
    service = sup.add(Service("crasher", [PYTHON, "-c", "import sys; sys.exit(5)"]))
    sup.start("crasher", wait=False)
    assert _crash_and_notice(sup, service) < 0.5
    _restart_now(sup, service)
    assert 0.5 < _crash_and_notice(sup, service) <= 1.5
    _restart_now(sup, service)
    assert 1.5 < _crash_and_notice(sup, service) <= 2.5  # capped: backoff_max is 2
    due = service.restart_at
    waiting = service.process
    sup.check()
    assert service.process is waiting, "restarted before its back-off was over"
    time.sleep(max(0.0, due - time.monotonic()) + 0.05)
    sup.check()
    assert service.process is not waiting and service.started_at >= due


def test_a_service_that_ran_stable_restarts_at_once(make_supervisor, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(supervisor_module, "STABLE_AFTER_SECONDS", 1.0)
    lifetime = tmp_path / "lifetime"
    lifetime.write_text("0")
    script = "import pathlib, sys, time; time.sleep(float(pathlib.Path(sys.argv[1]).read_text())); sys.exit(6)"
    sup = make_supervisor(backoff_max=30)
    service = sup.add(Service("worker", [PYTHON, "-c", script, str(lifetime)]))
    sup.start("worker", wait=False)
    _crash_and_notice(sup, service)
    _restart_now(sup, service)
    assert _crash_and_notice(sup, service) >= 0.5  # a quick crash again: it waits
    assert service.restarts == 2 and "restarting it in " in sup.lines[-1]

    lifetime.write_text("1.3")  # this time it runs longer than STABLE_AFTER_SECONDS
    _restart_now(sup, service)
    assert _crash_and_notice(sup, service) < 0.5
    assert service.restarts == 1
    assert sup.lines[-1] == "✗ The worker stopped (exit code 6); restarting it (restart 1)."


# --- Supervisor: readiness --------------------------------------------------------------------


def test_wait_ready_says_when_the_process_dies_before_it_is_ready(make_supervisor) -> None:
    sup = make_supervisor()
    service = sup.add(Service("flaky api", [PYTHON, "-c", "import sys; sys.exit(4)"],
                              health_url=f"http://127.0.0.1:{free_port()}/health"))
    sup.start("flaky api", wait=False)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"the flaky api exited with code 4"):
        sup.wait_ready(service, timeout=30)
    assert time.monotonic() - started < 15  # it noticed the death, not the timeout
    assert not service.up


def test_a_service_that_dies_while_starting_is_started_again_when_retries_are_allowed(make_supervisor, tmp_path) -> None:
    """The stack allows a couple (two replicas racing to create a table, found by CI): the
    first start exits, the second comes up, the death is reported."""
    marker, port = tmp_path / "tried", free_port()
    script = (
        "import pathlib, runpy, sys\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.write_text('x'); sys.exit(5)\n"
        f"sys.argv = ['web', '{port}']\n"
        f"exec({HTTP_SERVICE!r})\n"
    )
    sup = make_supervisor()
    service = sup.add(Service("racy api", [PYTHON, "-c", script], health_url=f"http://127.0.0.1:{port}/"))
    sup.start("racy api", wait=False)
    sup.wait_ready(service, timeout=30, retries=2)
    assert service.up and service.restarts == 0
    assert any("racy api stopped while starting (exit code 5)" in line for line in sup.lines)


def test_wait_ready_times_out_when_the_health_url_never_answers(make_supervisor) -> None:
    url = f"http://127.0.0.1:{free_port()}/health"
    sup = make_supervisor()
    service = sup.add(Service("silent", [PYTHON, "-c", "import time; time.sleep(120)"], health_url=url))
    sup.start("silent", wait=False)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=re.escape(url)):
        sup.wait_ready(service, timeout=1)
    assert 0.9 <= time.monotonic() - started < 8
    assert not service.up and service.process.poll() is None


# --- Supervisor: stopping ---------------------------------------------------------------------

#: starts two children (one ignores SIGTERM), each writes its pid to a file once it is set up;
#: once both are, it lives argv[3] seconds more and exits with code 9
FAMILY = r"""
import pathlib, subprocess, sys, time
child = "import os, pathlib, signal, sys, time; {ignore} pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); time.sleep(120)"
subprocess.Popen([sys.executable, "-c", child.format(ignore=""), sys.argv[1]])
subprocess.Popen([sys.executable, "-c", child.format(ignore="signal.signal(signal.SIGTERM, signal.SIG_IGN);"), sys.argv[2]])
deadline = time.monotonic() + 30
while not all(pathlib.Path(name).exists() for name in sys.argv[1:3]) and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(float(sys.argv[3]))
sys.exit(9)
"""


def test_stop_ends_the_whole_process_group_even_a_child_that_ignores_sigterm(make_supervisor, stray_pids,
                                                                             tmp_path) -> None:
    sup = make_supervisor(stop_grace_seconds=2)
    plain, stubborn = tmp_path / "plain.pid", tmp_path / "stubborn.pid"
    service = sup.add(Service("family", [PYTHON, "-c", FAMILY, str(plain), str(stubborn), "120"]))
    sup.start("family", wait=False)
    children = [_read_pid(plain), _read_pid(stubborn)]
    stray_pids.extend(children)
    assert sorted(_group(service.process.pid)) == sorted([service.process.pid, *children])

    started = time.monotonic()
    sup.stop()
    assert time.monotonic() - started < 10
    assert service.process.poll() is not None
    assert _until(lambda: not _group(service.process.pid), timeout=5), \
        f"left running: {_group(service.process.pid)}"


def test_a_dead_service_leaves_nothing_behind_before_it_restarts(make_supervisor, stray_pids, tmp_path) -> None:
    """Leftovers of a dead service (nginx's workers keep its port) would make its restart fail."""
    sup = make_supervisor()
    plain, stubborn = tmp_path / "plain.pid", tmp_path / "stubborn.pid"
    service = sup.add(Service("family", [PYTHON, "-c", FAMILY, str(plain), str(stubborn), "0"]))
    sup.start("family", wait=False)
    children = [_read_pid(plain), _read_pid(stubborn)]
    stray_pids.extend(children)
    first = service.process
    first.wait(timeout=10)
    assert first.returncode == 9 and all(_alive(pid) for pid in children)
    sup.check()
    assert sup.lines == ["✗ The family stopped (exit code 9); restarting it (restart 1)."]
    assert _until(lambda: not any(_alive(pid) for pid in children), timeout=5), "the leftovers still run"


def test_stop_sigkills_a_service_that_ignores_sigterm_after_the_grace_period(make_supervisor, tmp_path) -> None:
    assert Supervisor().stop_grace_seconds == 20  # the default stays
    ready = tmp_path / "ready"
    script = ("import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "pathlib.Path(sys.argv[1]).write_text('1'); time.sleep(120)")
    sup = make_supervisor(stop_grace_seconds=1)
    service = sup.add(Service("stubborn", [PYTHON, "-c", script, str(ready)]))
    sup.start("stubborn", wait=False)
    _read_pid(ready)
    started = time.monotonic()
    sup.stop()
    elapsed = time.monotonic() - started
    assert service.process.returncode == -signal.SIGKILL
    assert 0.9 <= elapsed < 10


# --- the endpoints the stack runs Rasa with ---------------------------------------------------


def _yaml(path: Path) -> Dict:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}


def test_runtime_endpoints_with_database_and_lock_store_urls(tmp_path) -> None:
    settings = StackSettings(models_dir=tmp_path / "models")
    conversations = "postgresql+psycopg2://rasa:secret@db.internal:5432/conversations"
    events = "postgresql+psycopg2://rasa:secret@db.internal:5432/events"
    path = runtime_endpoints(settings, "http://127.0.0.1:5055", conversations_url=conversations,
                             events_url=events, lock_store_url="redis://:pw@cache.internal:6380/2")
    assert path.parent == settings.models_dir
    written, original = _yaml(path), _yaml(PROJECT_ROOT / "endpoints.yml")

    for key, url in (("tracker_store", conversations), ("event_broker", events)):
        section = written[key]
        assert section["url"] == url
        assert not {"dialect", "db", "host", "port", "username", "password"} & set(section), section
        # everything else of endpoints.yml's section (type, personal-data options) is kept
        kept = {k: v for k, v in original[key].items() if k not in ("dialect", "db")}
        assert {k: v for k, v in section.items() if k != "url"} == kept

    lock = written["lock_store"]
    assert lock["type"] == "redis"
    # Rasa's RedisLockStore takes the host as the endpoint's `url`
    assert (lock["url"], lock["port"], lock["db"], lock["password"]) == ("cache.internal", 6380, 2, "pw")
    assert written["action_endpoint"]["url"] == "http://127.0.0.1:5055/webhook"


def test_runtime_lock_store_is_what_rasa_builds_its_redis_lock_store_from(tmp_path) -> None:
    from rasa.core.lock_store import LockStore, RedisLockStore
    from rasa.core.utils import read_endpoints_from_path

    settings = StackSettings(models_dir=tmp_path / "models")
    path = runtime_endpoints(settings, "http://127.0.0.1:5055", lock_store_url="redis://:pw@cache.internal:6380/2")
    store = LockStore.create(read_endpoints_from_path(str(path)).lock_store)  # builds a client, connects lazily
    assert isinstance(store, RedisLockStore)
    connection = store.red.connection_pool.connection_kwargs
    assert (connection["host"], connection["port"], connection["db"], connection["password"]) == \
        ("cache.internal", 6380, 2, "pw")


def test_runtime_lock_store_key_prefix_is_the_one_rasa_uses(tmp_path) -> None:
    from rasa.core.lock_store import LockStore
    from rasa.core.utils import read_endpoints_from_path

    settings = StackSettings(models_dir=tmp_path / "models")
    path = runtime_endpoints(settings, "http://127.0.0.1:5055", lock_store_url="redis://127.0.0.1:6379/0")
    prefix = _yaml(path)["lock_store"]["key_prefix"]
    store = LockStore.create(read_endpoints_from_path(str(path)).lock_store)
    assert store.key_prefix.startswith(f"{prefix}:")


@pytest.mark.parametrize("url", ["postgresql://127.0.0.1/locks", "http://127.0.0.1:6379/0", "127.0.0.1:6379"])
def test_runtime_endpoints_refuse_a_lock_store_url_that_is_not_redis(tmp_path, url) -> None:
    settings = StackSettings(models_dir=tmp_path / "models")
    with pytest.raises(ValueError, match="LOCK_STORE_URL"):
        runtime_endpoints(settings, "http://127.0.0.1:5055", lock_store_url=url)


def test_runtime_endpoints_without_urls_are_endpoints_yml_but_the_action_url(tmp_path) -> None:
    settings = StackSettings(models_dir=tmp_path / "models")
    path = runtime_endpoints(settings, "http://127.0.0.1:6055")
    written, original = _yaml(path), _yaml(PROJECT_ROOT / "endpoints.yml")
    assert written["action_endpoint"]["url"] == "http://127.0.0.1:6055/webhook"
    assert original["action_endpoint"]["url"] != written["action_endpoint"]["url"]
    written["action_endpoint"]["url"] = original["action_endpoint"]["url"]
    assert written == original


# --- StackSettings.from_env -------------------------------------------------------------------


def test_settings_defaults() -> None:
    s = StackSettings.from_env({})
    assert (s.profile, s.scale_out, s.rasa_replicas, s.action_replicas) == ("single", False, 1, 1)
    assert (s.rasa_port, s.action_port, s.backoffice_port, s.webchat_port, s.console_port) == \
        (5005, 5055, 8000, 8080, 8090)
    assert (s.conversations_database_url, s.events_database_url, s.lock_store_url) == (None, None, None)
    assert s.models_dir == PROJECT_ROOT / "models" and s.state_dir == PROJECT_ROOT / ".stack"
    assert s.restart_backoff_max_seconds == 30.0 and s.startup_timeout_seconds == 300


def test_settings_scale_out_runs_two_and_two_replicas_by_default() -> None:
    s = StackSettings.from_env({"STACK_PROFILE": "scale-out", "LOCK_STORE_URL": " redis://h:1/0 ",
                                "STACK_STATE_DIR": "/srv/stack", "STACK_RESTART_BACKOFF_MAX": "5"})
    assert (s.scale_out, s.rasa_replicas, s.action_replicas) == (True, 2, 2)
    assert s.lock_store_url == "redis://h:1/0" and s.state_dir == Path("/srv/stack")
    assert s.restart_backoff_max_seconds == 5.0
    s = StackSettings.from_env({"STACK_PROFILE": "scale-out", "RASA_REPLICAS": "3"})
    assert (s.rasa_replicas, s.action_replicas) == (3, 2)


@pytest.mark.parametrize("name", ["RASA_REPLICAS", "ACTION_REPLICAS"])
def test_settings_refuse_replicas_without_scale_out(name) -> None:
    with pytest.raises(ValueError, match="STACK_PROFILE=scale-out"):
        StackSettings.from_env({name: "2"})


def test_settings_refuse_an_unknown_profile_and_no_replicas() -> None:
    with pytest.raises(ValueError, match=r"STACK_PROFILE must be one of single, scale-out, got 'cluster'"):
        StackSettings.from_env({"STACK_PROFILE": "cluster"})
    with pytest.raises(ValueError, match="at least 1"):
        StackSettings.from_env({"STACK_PROFILE": "scale-out", "ACTION_REPLICAS": "0"})


# --- the scale-out profile's local servers ----------------------------------------------------


def _need(binary: str) -> None:
    if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
        pytest.skip(f"{binary} is not installed (apt-get install the Debian package)")


def test_local_redis_answers_ping_and_stops(make_supervisor, tmp_path) -> None:
    _need("redis-server")
    import redis

    local = LocalRedis(tmp_path / "redis", free_port())
    local.prepare()
    sup = make_supervisor()
    sup.add(Service("Redis", local.command(), ready=local.wait_ready))
    sup.start("Redis")
    client = redis.Redis.from_url(local.url, socket_timeout=5)
    try:
        assert client.ping() is True
        client.set("lock:test", "1")
        assert client.get("lock:test") == b"1"
        assert client.connection_pool.connection_kwargs["port"] == local.port
    finally:
        client.close()
    sup.stop()
    assert not port_open("127.0.0.1", local.port)


@pytest.fixture
def postgres_dir() -> Iterator[Path]:
    if _postgres_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    # as root the server runs as the `postgres` user: a folder it may enter (not under pytest's 0700 tmp)
    directory = Path(tempfile.mkdtemp(prefix="test-supervision-postgres-"))
    directory.chmod(0o777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _cluster_state(local: LocalPostgres) -> str:
    done = subprocess.run([local.bin("pg_controldata"), str(local.data_dir)], capture_output=True, text=True)
    match = re.search(r"^Database cluster state:\s*(.+)$", done.stdout, re.M)
    assert match, done.stdout + done.stderr
    return match.group(1).strip()


def test_local_postgres_keeps_its_data_across_a_restart(postgres_dir, make_supervisor) -> None:
    import sqlalchemy as sa

    local = LocalPostgres(postgres_dir / "pg", free_port())
    local.prepare()
    version = (local.data_dir / "PG_VERSION").read_text()
    sup = make_supervisor(stop_grace_seconds=20)
    sup.add(Service("PostgreSQL", local.command(), ready=local.wait_ready, stop_signal=signal.SIGINT))
    sup.start("PostgreSQL")

    url = local.create_database("conversations")
    assert url == local.create_database("conversations") == local.url("conversations")
    assert local._execute("SELECT count(*) FROM pg_database WHERE datname = 'conversations'") == [(1,)]
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE turns (id int PRIMARY KEY, text text)")
            connection.exec_driver_sql("INSERT INTO turns VALUES (1, 'привет')")
        held = engine.connect()  # a client still connected when the server stops, as a Rasa server is
        held.exec_driver_sql("SELECT 1")
        started = time.monotonic()
        sup.stop()
        stop_seconds = time.monotonic() - started
        with contextlib.suppress(Exception):
            held.close()
    finally:
        engine.dispose()
    assert not _processes_mentioning(str(local.data_dir)), "a postgres process outlived stop()"
    # SIGINT is PostgreSQL's fast shutdown: it ends the sessions and shuts down cleanly
    assert _cluster_state(local) == "shut down"
    assert stop_seconds < 10

    local.prepare()  # the cluster is there already: kept, not made again
    assert (local.data_dir / "PG_VERSION").read_text() == version
    sup.start("PostgreSQL")
    assert local.create_database("conversations") == url
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT id, text FROM turns").fetchall() == [(1, "привет")]
    finally:
        engine.dispose()


# nginx


class Upstreams:
    """Tiny HTTP servers (real processes) an NginxProxy spreads requests over."""

    def __init__(self, count: int) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.processes: Dict[int, subprocess.Popen] = {}
        for port in self.ports:
            self.processes[port] = subprocess.Popen([PYTHON, "-c", UPSTREAM, str(port)], start_new_session=True)
        for port in self.ports:
            assert _until(lambda: port_open("127.0.0.1", port), timeout=10), f"upstream {port} did not start"

    def kill(self, port: int) -> None:
        process = self.processes[port]
        if process.poll() is None:
            process.kill()
            process.wait()

    def close(self) -> None:
        for port in self.ports:
            self.kill(port)


@pytest.fixture
def proxy(make_supervisor, tmp_path):
    _need("nginx")
    upstreams = Upstreams(2)
    try:
        listen = free_port()
        nginx = NginxProxy(tmp_path / "nginx", {listen: upstreams.ports})
        nginx.prepare()
        sup = make_supervisor(stop_grace_seconds=5)
        service = sup.add(Service("reverse proxy", nginx.command(), ready=nginx.wait_ready,
                                  stop_signal=signal.SIGQUIT))
        sup.start("reverse proxy")
        yield {"listen": listen, "upstreams": upstreams, "nginx": nginx, "supervisor": sup, "service": service}
        sup.stop()
    finally:
        upstreams.close()


def _via(listen: int, path: str = "/") -> Dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{listen}{path}", timeout=5) as response:  # Connection: close
        return json.loads(response.read())


def test_nginx_config_passes_nginx_t(proxy) -> None:
    directory = proxy["nginx"].directory
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    done = subprocess.run([binary, "-t", "-p", str(directory), "-c", str(directory / "nginx.conf")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_nginx_spreads_http_over_both_upstreams(proxy) -> None:
    answered = Counter(_via(proxy["listen"], f"/status?n={n}")["port"] for n in range(20))
    assert set(answered) == set(proxy["upstreams"].ports), answered
    plain = _via(proxy["listen"])
    assert plain["upgrade"] is None and plain["connection"] in (None, "")  # keep-alive to the upstream


def test_nginx_keeps_answering_when_one_upstream_is_down(proxy) -> None:
    upstreams = proxy["upstreams"]
    down, alive = upstreams.ports
    upstreams.kill(down)
    assert {_via(proxy["listen"], f"/status?n={n}")["port"] for n in range(10)} == {alive}
    assert {_via(proxy["listen"], "/socket.io/?EIO=4&transport=polling")["port"] for _ in range(3)} == {alive}


def test_nginx_keeps_socket_io_on_one_upstream_with_websocket_upgrade(proxy) -> None:
    listen = proxy["listen"]
    polled = {_via(listen, f"/socket.io/?EIO=4&transport=polling&n={n}")["port"] for n in range(20)}
    assert len(polled) == 1, polled
    (sticky,) = polled

    # the upstream answers 101 only when nginx passed both Upgrade and Connection: upgrade on
    with socket.create_connection(("127.0.0.1", listen), timeout=5) as sock:
        sock.sendall(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: localhost\r\n"
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.sendall(b"hello\n")
        while not rest.endswith(b"\n"):
            chunk = sock.recv(4096)
            assert chunk, rest
            rest += chunk
    assert rest == f"{sticky}:hello\n".encode()  # the tunnel reaches the same upstream


def test_nginx_master_killed_is_restarted_without_its_old_workers(proxy, stray_pids) -> None:
    sup, service = proxy["supervisor"], proxy["service"]
    first = service.process
    old_group = _group(first.pid)
    stray_pids.extend(pid for pid in old_group if pid != first.pid)
    assert len(old_group) >= 2  # the master and its worker
    first.kill()
    first.wait()
    sup.check()
    assert sup.lines == ["✗ The reverse proxy stopped (exit code -9); restarting it (restart 1)."]
    assert _until(lambda: not _group(first.pid), timeout=5), "the old workers still hold the port"
    assert _until(lambda: (sup.check(), service.up)[1], timeout=15), sup.lines
    assert sup.lines[-1] == "✓ The reverse proxy is running again."
    time.sleep(1)  # a master that could not bind its port gives up within a few seconds
    assert service.process.poll() is None and _via(proxy["listen"])["port"] in proxy["upstreams"].ports
