"""Runs the assistant stack on embedded defaults: trains the model if it is missing or stale,
brings the knowledge-base index up to date (embedded Qdrant in .qdrant/), starts the reference
back office (demo database), the action server and the Rasa server
(REST + socket.io), prints where to talk to it and stops everything on Ctrl-C.

    python -m engine.stack            (scripts/run.sh does the set-up first, then this)
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

from ruamel.yaml import YAML

from engine.settings import PROJECT_ROOT, StackSettings


def _rasa_command() -> List[str]:
    return [str(Path(sys.executable).with_name("rasa"))]


def train_if_stale(settings: StackSettings) -> None:
    """`rasa train` re-trains only what changed (it fingerprints config, domain and data)."""
    print("• Checking the model (rasa train re-trains only if data, domain or config changed)…", flush=True)
    subprocess.run(
        [*_rasa_command(), "train", "--out", str(settings.models_dir)],
        cwd=PROJECT_ROOT,
        check=True,
    )


def ingest_knowledge_base() -> None:
    """`python -m rag ingest` embeds only the articles that changed since the last run, so the
    action server starts on an index in sync with data/kb (and the first question is not slow)."""
    print("• Indexing the knowledge base (only what changed)…", flush=True)
    done = subprocess.run([sys.executable, "-m", "rag", "ingest"], cwd=PROJECT_ROOT)
    if done.returncode != 0:
        # the scenarios work without it; the action server retries the sync on the first question
        print(f"✗ Indexing the knowledge base failed (exit code {done.returncode}): knowledge questions "
              "will be answered once the index can be built (see the error above).", flush=True)


def _wait_until_up(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(process.args[:3])} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not come up within {timeout:.0f} s")


#: numeric libraries' thread pools: one thread each. The services encode one message at a time,
#: where a second BLAS/OpenMP thread only spins (it took 60 % of a core beside the Rasa server's
#: main thread under load, for no gain in latency). Set them yourself to override.
SINGLE_THREADED_MATH = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def service_env(env: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    merged = dict(os.environ if env is None else env)
    for name, value in SINGLE_THREADED_MATH.items():
        merged.setdefault(name, value)
    return merged


def runtime_endpoints(settings: StackSettings) -> Path:
    """endpoints.yml with the action server's URL on this stack's port (ACTION_SERVER_PORT)."""
    yaml = YAML()
    endpoints = yaml.load((PROJECT_ROOT / "endpoints.yml").read_text(encoding="utf-8")) or {}
    endpoints.setdefault("action_endpoint", {})["url"] = f"http://127.0.0.1:{settings.action_port}/webhook"
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    path = settings.models_dir / ".endpoints.runtime.yml"
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(endpoints, handle)
    return path


class Stack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.processes: Dict[str, subprocess.Popen] = {}

    def _start(self, name: str, command: List[str], env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, start_new_session=True, env=service_env(env))
        self.processes[name] = process
        return process

    def start(self) -> None:
        s = self.settings
        backoffice = self._start(
            "back office",
            [sys.executable, "-m", "backoffice", "serve"],
            env={**os.environ, "BACKOFFICE_PORT": str(s.backoffice_port)},
        )
        actions = self._start(
            "action server",
            [*_rasa_command(), "run", "actions", "--actions", "actions", "--port", str(s.action_port)],
            # the actions call the back office this stack started, whatever its port
            env={**os.environ, "BACKOFFICE_URL": os.environ.get("BACKOFFICE_URL") or f"http://127.0.0.1:{s.backoffice_port}"},
        )
        local_action_url = f"http://127.0.0.1:{s.action_port}"
        rasa = self._start(
            "rasa server",
            [
                sys.executable, "-m", "engine.rasa_server",
                "--enable-api", "--cors", "*",
                "--interface", s.host, "--port", str(s.rasa_port),
                "--model", str(s.models_dir),
                "--credentials", "credentials.yml",
                "--endpoints", str(runtime_endpoints(s)),
            ],
            # the socket.io channel resumes a conversation an operator returns through this API
            env={**os.environ, "RASA_SELF_URL": f"http://127.0.0.1:{s.rasa_port}", "ACTION_SERVER_URL": local_action_url},
        )
        console = self._start(
            "operator console",
            [sys.executable, "-m", "handoff.console", "serve", "--host", s.host, "--port", str(s.console_port),
             "--rasa-url", s.rasa_url],
            # copilot drafts of knowledge questions come from the action server (it owns the index)
            env={**os.environ, "ACTION_SERVER_URL": local_action_url},
        )
        webchat = self._start(
            "web chat",
            [sys.executable, "-m", "webchat", "serve", "--host", s.host, "--port", str(s.webchat_port),
             "--rasa-url", s.rasa_url],
        )
        _wait_until_up(f"{s.backoffice_url}/health", backoffice, s.startup_timeout_seconds)
        _wait_until_up(f"{s.webchat_url}/health", webchat, s.startup_timeout_seconds)
        _wait_until_up(f"{s.console_url}/health", console, s.startup_timeout_seconds)
        _wait_until_up(f"{s.action_url}/health", actions, s.startup_timeout_seconds)
        _wait_until_up(f"{s.rasa_url}/status", rasa, s.startup_timeout_seconds)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def wait(self) -> int:
        """Blocks until a service dies (returns its exit code) or the user presses Ctrl-C."""
        while True:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    print(f"✗ The {name} stopped (exit code {process.returncode}); stopping the rest.", flush=True)
                    return process.returncode or 1
            time.sleep(0.5)


def _stop_like_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM (e.g. from a service manager) stops the stack the way Ctrl-C does."""
    raise KeyboardInterrupt


def print_banner(settings: StackSettings) -> None:
    s = settings
    print(
        f"""
✓ The assistant is running.
  Web chat:    {s.webchat_url}/   (open it in a browser)
  Operators:   {s.console_url}/   (token: HANDOFF_OPERATOR_TOKEN, default dev-operator-token)
  REST:        curl -s -X POST {s.rasa_url}/webhooks/rest/webhook \\
                 -H 'Content-Type: application/json' \\
                 -d '{{"sender": "me", "message": "хочу вернуть деньги за заказ 40817263"}}'
  NLU parse:   curl -s -X POST {s.rasa_url}/model/parse -d '{{"text": "не пришел сертификат"}}'
  socket.io:   {s.rasa_url}/socket.io  (events user_uttered / bot_uttered)
  Terminal:    .venv/bin/rasa shell   (in another terminal)
  Actions:     {s.action_url}/webhook
  Back office: {s.backoffice_url}/openapi.json  (demo cases: backoffice/DEMO.md)
Press Ctrl-C to stop everything.
""",
        flush=True,
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-train", action="store_true", help="use the latest model as it is")
    args = parser.parse_args(argv)
    settings = StackSettings.from_env()
    if not args.skip_train:
        train_if_stale(settings)
    ingest_knowledge_base()
    stack = Stack(settings)
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    try:
        print("• Starting the action server and the Rasa server…", flush=True)
        stack.start()
        print_banner(settings)
        return stack.wait()
    except KeyboardInterrupt:
        print("\n• Stopping…", flush=True)
        return 0
    finally:
        stack.stop()
        print("• Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
