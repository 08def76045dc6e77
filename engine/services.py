"""Local servers for the scale-out profile and the tests: Debian's PostgreSQL, Redis and nginx,
each run in the foreground from a folder of ours (so the stack's supervisor can watch and restart
them, and nothing is left behind when it stops).

Each class says how to prepare the server (:meth:`prepare`: a data folder, a config file), the
command that runs it, and how to tell it is ready. :func:`install_hint` names the Debian package
when a binary is missing. Used by ``engine.stack`` (``STACK_PROFILE=scale-out``) and by the test
fixtures that need real engines; in production you run these servers your own way and give the
stack their URLs.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

PACKAGES = {"postgres": "postgresql", "redis-server": "redis-server", "nginx": "nginx"}


class ServiceUnavailable(RuntimeError):
    """A server binary is missing or does not start."""


def install_hint(binary: str) -> str:
    return f"install Debian's package: apt-get install -y {PACKAGES.get(binary, binary)}"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float, process: Optional[subprocess.Popen] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceUnavailable(f"{' '.join(map(str, process.args))} exited with code {process.returncode}")
        if port_open(host, port):
            return
        time.sleep(0.2)
    raise ServiceUnavailable(f"nothing listens on {host}:{port} after {timeout:.0f} s")


# --- PostgreSQL -------------------------------------------------------------------------------


def _postgres_bin_dir() -> Optional[Path]:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return candidates[-1].parent if candidates else None


def _as_postgres_owner(command: Sequence[str]) -> List[str]:
    """initdb and postgres refuse to run as root: as root, run them as the ``postgres`` user.

    setpriv (util-linux) switches user and execs the server in place: it stays the process (and
    process group) the supervisor started, so its stop signal reaches it. ``su -c`` would run it in
    a session of its own and, signalled, send it SIGTERM (a smart shutdown that waits for every
    client) and SIGKILL 2 s later."""
    if os.geteuid() != 0:
        return list(command)
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *map(str, command)]
    import shlex

    return ["su", "postgres", "-s", "/bin/sh", "-c", "exec " + " ".join(shlex.quote(str(part)) for part in command)]


@dataclass
class LocalPostgres:
    """A PostgreSQL cluster in ``directory`` on ``port`` (trust authentication, loopback only)."""

    directory: Path
    port: int
    user: str = "postgres"

    def bin(self, name: str) -> str:
        bin_dir = _postgres_bin_dir()
        if bin_dir is None:
            raise ServiceUnavailable(f"PostgreSQL is not installed ({install_hint('postgres')})")
        return str(bin_dir / name)

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def prepare(self) -> None:
        """initdb once (the cluster, and so the conversations in it, survives restarts)."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        done = subprocess.run(
            _as_postgres_owner([self.bin("initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", self.user,
                                "-E", "UTF8", "--locale=C.UTF-8"]),
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise ServiceUnavailable(f"initdb failed: {done.stderr or done.stdout}")

    def command(self) -> List[str]:
        return _as_postgres_owner([
            self.bin("postgres"), "-D", str(self.data_dir), "-p", str(self.port), "-k", str(self.directory),
            "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "fsync=on",
        ])

    def wait_ready(self, process: Optional[subprocess.Popen] = None, timeout: float = 60) -> None:
        wait_for_port("127.0.0.1", self.port, timeout, process)
        deadline = time.monotonic() + timeout
        while True:  # the port opens before the server accepts logins
            try:
                self._execute("SELECT 1")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def _execute(self, sql: str, database: str = "postgres") -> List[tuple]:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname=database)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def create_database(self, name: str) -> str:
        """Create ``name`` unless it exists; → its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a plain database name: {name!r}")
        if not self._execute(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
            self._execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- Redis ------------------------------------------------------------------------------------


@dataclass
class LocalRedis:
    """A Redis server on ``port`` without persistence: it only holds the conversations' locks."""

    directory: Path
    port: int

    def prepare(self) -> None:
        if shutil.which("redis-server") is None:
            raise ServiceUnavailable(f"Redis is not installed ({install_hint('redis-server')})")
        self.directory.mkdir(parents=True, exist_ok=True)

    def command(self) -> List[str]:
        return ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--dir", str(self.directory), "--protected-mode", "yes"]

    def wait_ready(self, process: Optional[subprocess.Popen] = None, timeout: float = 30) -> None:
        wait_for_port("127.0.0.1", self.port, timeout, process)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


# --- nginx ------------------------------------------------------------------------------------


@dataclass
class NginxProxy:
    """A reverse proxy in front of replicas: ``routes`` maps a listening port to its upstream
    ports. HTTP is spread over the replicas (least connections; the conversations' state is in
    the shared stores, any replica can answer any turn); socket.io (``/socket.io/``) sticks to
    one replica per client address, as its long-polling handshake needs, with WebSocket upgrades.

    A request a replica cannot take (it died, it is restarting) goes to the other one, POSTs too
    (``non_idempotent``): a turn is saved only when it ends, and the back office makes money
    actions idempotent, so a turn re-run after a crash does nothing twice."""

    directory: Path
    routes: Dict[int, List[int]] = field(default_factory=dict)
    host: str = "127.0.0.1"

    def prepare(self) -> None:
        if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
            raise ServiceUnavailable(f"nginx is not installed ({install_hint('nginx')})")
        for sub in ("logs", "temp"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        (self.directory / "nginx.conf").write_text(self.config(), encoding="utf-8")

    def config(self) -> str:
        servers = []
        for listen, upstreams in sorted(self.routes.items()):
            members = "\n".join(f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;" for port in upstreams)
            servers.append(f"""
    upstream spread_{listen} {{
        least_conn;
{members}
        keepalive 64;
    }}
    upstream sticky_{listen} {{
        ip_hash;
{members}
    }}
    server {{
        listen {self.host}:{listen};
        location /socket.io/ {{
            proxy_pass http://sticky_{listen};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 3600s;
        }}
        location / {{
            proxy_pass http://spread_{listen};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 300s;
            proxy_next_upstream error non_idempotent;
            proxy_next_upstream_tries 2;
        }}
    }}""")
        temp = self.directory / "temp"
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers read our temp folders
        return f"""# generated by engine.services.NginxProxy
{user}worker_processes 1;
daemon off;
pid {self.directory / 'nginx.pid'};
error_log {self.directory / 'logs' / 'error.log'} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp / 'body'};
    proxy_temp_path {temp / 'proxy'};
    fastcgi_temp_path {temp / 'fastcgi'};
    uwsgi_temp_path {temp / 'uwsgi'};
    scgi_temp_path {temp / 'scgi'};
    client_max_body_size 2m;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
{''.join(servers)}
}}
"""

    def command(self) -> List[str]:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        return [binary, "-p", str(self.directory), "-c", str(self.directory / "nginx.conf")]

    def wait_ready(self, process: Optional[subprocess.Popen] = None, timeout: float = 30) -> None:
        for listen in self.routes:
            wait_for_port("127.0.0.1" if self.host == "0.0.0.0" else self.host, listen, timeout, process)
