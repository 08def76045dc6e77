"""Runs the assistant stack and keeps it running: trains the model if it is missing or stale,
brings the knowledge-base index up to date, starts the reference back office, the action
server(s), the Rasa server(s) (REST + socket.io), the operator console and the web chat page,
prints where to talk to it, restarts a service that dies (with back-off, and says so) and stops
everything on Ctrl-C or SIGTERM.

    python -m engine.stack                       (scripts/run.sh does the set-up first, then this)
    STACK_PROFILE=scale-out python -m engine.stack    (N Rasa + M action servers behind nginx,
                                                       PostgreSQL + Redis; see docs/deployment.md)

Profiles (``engine.settings.StackSettings``):

* ``single`` (default): one of each; conversations in a SQLite file (``conversations.db``, events
  in ``events.db``), in-memory lock store — nothing else to install.
* ``scale-out``: ``RASA_REPLICAS`` Rasa servers and ``ACTION_REPLICAS`` action servers behind an
  nginx reverse proxy on the usual ports, Rasa's ``RedisLockStore`` and PostgreSQL for
  conversations, events, hand-over and back office. Servers you give by URL
  (``CONVERSATIONS_DATABASE_URL``, ``EVENTS_DATABASE_URL``, ``LOCK_STORE_URL``,
  ``HANDOFF_DATABASE_URL``, ``BACKOFFICE_DATABASE_URL``) are used as they are; the others are
  started here from Debian's packages, with their data in ``STACK_STATE_DIR`` (``.stack/``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import urlsplit

from ruamel.yaml import YAML

from engine.services import LocalPostgres, LocalRedis, NginxProxy, ServiceUnavailable
from engine.supervisor import Service, Supervisor, service_env
from engine.settings import PROJECT_ROOT, StackSettings

#: how often a service that exits while the stack starts is started again before the stack gives up
STARTUP_RETRIES = 2
#: the databases the scale-out profile creates on its local PostgreSQL
LOCAL_DATABASES = {
    "CONVERSATIONS_DATABASE_URL": "conversations",
    "EVENTS_DATABASE_URL": "events",
    "HANDOFF_DATABASE_URL": "handoff",
    "BACKOFFICE_DATABASE_URL": "backoffice",
}


def _rasa_command() -> List[str]:
    return [str(Path(sys.executable).with_name("rasa"))]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_if_stale(settings: StackSettings) -> None:
    """`rasa train` re-trains only what changed (it fingerprints config, domain and data)."""
    print("• Checking the model (rasa train re-trains only if data, domain or config changed)…", flush=True)
    subprocess.run([*_rasa_command(), "train", "--out", str(settings.models_dir)], cwd=PROJECT_ROOT, check=True)


def ingest_knowledge_base() -> None:
    """`python -m rag ingest` embeds only the articles that changed since the last run, so the
    action server starts on an index in sync with data/kb (and the first question is not slow)."""
    print("• Indexing the knowledge base (only what changed)…", flush=True)
    done = subprocess.run([sys.executable, "-m", "rag", "ingest"], cwd=PROJECT_ROOT, env=service_env())
    if done.returncode != 0:
        # the scenarios work without it; the action server retries the sync on the first question
        print(f"✗ Indexing the knowledge base failed (exit code {done.returncode}): knowledge questions "
              "will be answered once the index can be built (see the error above).", flush=True)


# --- the endpoints Rasa runs with -------------------------------------------------------------


def _redis_lock_store(url: str) -> Dict[str, object]:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"LOCK_STORE_URL must be redis://host:port/db, got {url!r}")
    store: Dict[str, object] = {"type": "redis", "url": parts.hostname or "127.0.0.1", "port": parts.port or 6379,
                                "db": int((parts.path or "/0").lstrip("/") or 0),
                                # Rasa accepts only letters and digits here (else its default)
                                "key_prefix": "supportassistant"}
    if parts.username:
        store["username"] = parts.username
    if parts.password:
        store["password"] = parts.password
    if parts.scheme == "rediss":
        store["use_ssl"] = True
    return store


def runtime_endpoints(settings: StackSettings, action_url: str, *, conversations_url: Optional[str] = None,
                      events_url: Optional[str] = None, lock_store_url: Optional[str] = None) -> Path:
    """endpoints.yml as this stack runs it: the action server's URL on this stack's port, and
    the tracker store / event broker / lock store at the URLs given (else endpoints.yml's)."""
    yaml = YAML()
    endpoints = yaml.load((PROJECT_ROOT / "endpoints.yml").read_text(encoding="utf-8")) or {}
    endpoints.setdefault("action_endpoint", {})["url"] = f"{action_url}/webhook"
    for key, url in (("tracker_store", conversations_url), ("event_broker", events_url)):
        if url:  # Rasa's SQL stores take a whole SQLAlchemy URL as `url`
            section = endpoints.setdefault(key, {})
            for option in ("dialect", "db", "host", "port", "username", "password"):
                section.pop(option, None)
            section["url"] = url
    if lock_store_url:
        endpoints["lock_store"] = _redis_lock_store(lock_store_url)
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    path = settings.models_dir / ".endpoints.runtime.yml"
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(endpoints, handle)
    return path


# --- the stack --------------------------------------------------------------------------------


class Stack:
    """The services of one profile on one machine, under a :class:`Supervisor`."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.supervisor = Supervisor(backoff_max=settings.restart_backoff_max_seconds,
                                     startup_timeout=settings.startup_timeout_seconds)
        #: environment every service gets (database URLs the scale-out profile decided)
        self.shared_env: Dict[str, str] = {}
        self.rasa_ports: List[int] = []
        self.action_ports: List[int] = []

    @property
    def processes(self) -> Dict[str, subprocess.Popen]:
        return {name: s.process for name, s in self.supervisor.services.items() if s.process is not None}

    def _env(self, **extra: str) -> Dict[str, str]:
        return {**os.environ, **self.shared_env, **extra}

    # the scale-out profile's own servers
    def _start_local_servers(self) -> None:
        s = self.settings
        needs_postgres = [name for name in LOCAL_DATABASES if not os.environ.get(name)]
        if needs_postgres:
            postgres = LocalPostgres(s.state_dir / "postgres", int(os.environ.get("STACK_POSTGRES_PORT") or 55433))
            postgres.prepare()
            self.supervisor.add(Service("PostgreSQL", postgres.command(), ready=postgres.wait_ready,
                                        stop_signal=signal.SIGINT))
            self.supervisor.start("PostgreSQL")
            for name in needs_postgres:
                self.shared_env[name] = postgres.create_database(LOCAL_DATABASES[name])
        if not s.lock_store_url:
            redis = LocalRedis(s.state_dir / "redis", int(os.environ.get("STACK_REDIS_PORT") or 56379))
            redis.prepare()
            self.supervisor.add(Service("Redis", redis.command(), ready=redis.wait_ready))
            self.supervisor.start("Redis")
            self.shared_env["LOCK_STORE_URL"] = redis.url

    def _qdrant_path_for(self, replica: int) -> Optional[str]:
        """Action-server replicas each open their own copy of the embedded index (an embedded
        Qdrant folder opens in one process only; the index is read-only while serving). With a
        Qdrant server (RAG_QDRANT_URL) they all use it."""
        if replica == 0 or os.environ.get("RAG_QDRANT_URL"):
            return None
        from rag.settings import RagSettings

        source = RagSettings.load().qdrant_path
        target = self.settings.state_dir / f"qdrant-replica-{replica}"
        if target.exists():
            shutil.rmtree(target)
        if source.exists():
            shutil.copytree(source, target)
        return str(target)

    def start(self) -> None:
        s = self.settings
        sup = self.supervisor
        if s.scale_out:
            self._start_local_servers()
        env = self._env()
        conversations_url = env.get("CONVERSATIONS_DATABASE_URL")
        events_url = env.get("EVENTS_DATABASE_URL")
        lock_url = env.get("LOCK_STORE_URL")

        sup.add(Service("back office", [sys.executable, "-m", "backoffice", "serve"],
                        self._env(BACKOFFICE_PORT=str(s.backoffice_port)), health_url=f"{s.backoffice_url}/health"))

        # action servers: one on the action port, or M behind the proxy on it
        backoffice_url = os.environ.get("BACKOFFICE_URL") or f"http://127.0.0.1:{s.backoffice_port}"
        self.action_ports = [s.action_port] if s.action_replicas == 1 else [free_port() for _ in range(s.action_replicas)]
        action_names = []
        for index, port in enumerate(self.action_ports):
            name = "action server" if s.action_replicas == 1 else f"action server {index + 1}"
            extra = {"BACKOFFICE_URL": backoffice_url}
            qdrant = self._qdrant_path_for(index)
            if qdrant:
                extra["RAG_QDRANT_PATH"] = qdrant
            sup.add(Service(name, [sys.executable, "-m", "engine.action_server", "--actions", "actions", "--port", str(port)],
                            self._env(**extra), health_url=f"http://127.0.0.1:{port}/health"))
            action_names.append(name)
        local_action_url = f"http://127.0.0.1:{s.action_port}"

        # Rasa servers: one on the Rasa port, or N behind the proxy on it
        self.rasa_ports = [s.rasa_port] if s.rasa_replicas == 1 else [free_port() for _ in range(s.rasa_replicas)]
        endpoints = runtime_endpoints(s, local_action_url, conversations_url=conversations_url,
                                      events_url=events_url, lock_store_url=lock_url)
        rasa_names = []
        for index, port in enumerate(self.rasa_ports):
            name = "rasa server" if s.rasa_replicas == 1 else f"rasa server {index + 1}"
            host = s.host if s.rasa_replicas == 1 else "127.0.0.1"
            sup.add(Service(name, [
                sys.executable, "-m", "engine.rasa_server", "--enable-api", "--cors", "*",
                "--interface", host, "--port", str(port), "--model", str(s.models_dir),
                "--credentials", os.environ.get("RASA_CREDENTIALS") or "credentials.yml", "--endpoints", str(endpoints),
            ], self._env(ACTION_SERVER_URL=local_action_url), health_url=f"http://127.0.0.1:{port}/status"))
            rasa_names.append(name)

        routes: Dict[int, List[int]] = {}
        if s.rasa_replicas > 1:
            routes[s.rasa_port] = self.rasa_ports
        if s.action_replicas > 1:
            routes[s.action_port] = self.action_ports
        proxy_names = []
        if routes:
            proxy = NginxProxy(s.state_dir / "nginx", routes, host="0.0.0.0" if s.host == "0.0.0.0" else "127.0.0.1")
            proxy.prepare()
            sup.add(Service("reverse proxy", proxy.command(), ready=proxy.wait_ready, stop_signal=signal.SIGQUIT))
            proxy_names.append("reverse proxy")

        sup.add(Service("operator console", [
            sys.executable, "-m", "handoff.console", "serve", "--host", s.host, "--port", str(s.console_port),
            "--rasa-url", s.rasa_url,
        ], self._env(ACTION_SERVER_URL=local_action_url, RASA_MODELS_DIR=str(s.models_dir),
                     # the review loop loads a retrained model into every replica
                     REVIEW_RASA_URLS=",".join(f"http://127.0.0.1:{port}" for port in self.rasa_ports)),
            health_url=f"{s.console_url}/health"))
        sup.add(Service("web chat", [
            sys.executable, "-m", "webchat", "serve", "--host", s.host, "--port", str(s.webchat_port),
            "--rasa-url", s.rasa_url,
        ], self._env(), health_url=f"{s.webchat_url}/health"))

        # the proxy first (it only forwards), then everything that does not wait on Rasa
        sup.start(*proxy_names, "back office", "web chat", "operator console", wait=False)
        sup.start(*action_names, wait=False)
        sup.start(*rasa_names, wait=False)
        for name in [*proxy_names, "back office", "web chat", "operator console", *action_names, *rasa_names]:
            sup.wait_ready(sup.services[name], retries=STARTUP_RETRIES)

    def stop(self) -> None:
        self.supervisor.stop()

    def wait(self) -> int:
        """Supervise until Ctrl-C / SIGTERM."""
        return self.supervisor.run()


def _stop_like_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM (e.g. from a service manager) stops the stack the way Ctrl-C does."""
    raise KeyboardInterrupt


def print_banner(settings: StackSettings, stack: Optional[Stack] = None) -> None:
    s = settings
    scale = ""
    if stack is not None and s.scale_out:
        scale = (f"  Scale-out:   {s.rasa_replicas} Rasa server(s) {stack.rasa_ports}, {s.action_replicas} action "
                 f"server(s) {stack.action_ports}, lock store {stack.shared_env.get('LOCK_STORE_URL') or s.lock_store_url}\n")
    print(
        f"""
✓ The assistant is running.
  Web chat:    {s.webchat_url}/   (open it in a browser)
  Operators:   {s.console_url}/   (token: HANDOFF_OPERATOR_TOKEN, default dev-operator-token)
  Analytics:   {s.console_url}/analytics   (python -m analytics report; demo data: python -m analytics demo)
  Review:      {s.console_url}/review   (trainers: REVIEW_TRAINER_TOKEN, default dev-trainer-token)
  REST:        curl -s -X POST {s.rasa_url}/webhooks/rest/webhook \\
                 -H 'Content-Type: application/json' \\
                 -d '{{"sender": "me", "message": "хочу вернуть деньги за заказ 40817263"}}'
  NLU parse:   curl -s -X POST {s.rasa_url}/model/parse -d '{{"text": "не пришел сертификат"}}'
  socket.io:   {s.rasa_url}/socket.io  (events user_uttered / bot_uttered)
  Terminal:    .venv/bin/python -m engine.chat   (a REST chat; operator replies arrive too)
  Actions:     {s.action_url}/webhook
  Back office: {s.backoffice_url}/openapi.json  (demo cases: backoffice/DEMO.md)
{scale}Press Ctrl-C to stop everything.
""",
        flush=True,
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-train", action="store_true", help="use the latest model as it is")
    parser.add_argument("--scale-out", action="store_true", help="the scale-out profile (= STACK_PROFILE=scale-out)")
    args = parser.parse_args(argv)
    if args.scale_out:
        os.environ["STACK_PROFILE"] = "scale-out"
    settings = StackSettings.from_env()
    from engine.production import SECRETS_OF, InsecureConfiguration, require_secrets

    try:  # every deployable's secrets, before anything starts
        require_secrets("stack", sorted({name for names in SECRETS_OF.values() for name in names}))
    except InsecureConfiguration as error:
        print(f"✗ {error}", flush=True)
        return 2
    if not args.skip_train:
        train_if_stale(settings)
    ingest_knowledge_base()
    stack = Stack(settings)
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    try:
        print("• Starting the services…", flush=True)
        stack.start()
        print_banner(settings, stack)
        return stack.wait()
    except KeyboardInterrupt:
        print("\n• Stopping…", flush=True)
        return 0
    except (ServiceUnavailable, RuntimeError, TimeoutError, ValueError) as error:
        print(f"✗ The stack could not start: {error}", flush=True)
        return 1
    finally:
        stack.stop()
        print("• Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
