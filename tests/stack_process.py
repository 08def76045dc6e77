"""Runs the assistant stack (`python -m engine.stack --skip-train`) on free loopback ports for tests."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from tests.backoffice_process import PROJECT_ROOT, free_port


@dataclass
class RunningStack:
    rasa_port: int
    action_port: int
    backoffice_port: int
    database: Path
    process: subprocess.Popen
    output: List[str] = field(default_factory=list)
    webchat_port: int = 0
    console_port: int = 0
    handoff_database: Path = Path("handoff.db")
    env: Dict[str, str] = field(default_factory=dict)

    @property
    def rasa_url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    def post(self, path: str, payload: Any) -> Any:
        request = urllib.request.Request(
            self.rasa_url + path, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
        return json.loads(body) if body else None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.rasa_url + path, timeout=60) as response:
            return json.loads(response.read())

    def say(self, sender: str, text: str) -> List[dict]:
        return self.post("/webhooks/rest/webhook", {"sender": sender, "message": text})

    def say_to(self, port: int, sender: str, text: str) -> List[dict]:
        """A message to one Rasa server (a replica) instead of the stack's public port."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/webhooks/rest/webhook",
            data=json.dumps({"sender": sender, "message": text}).encode(), headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"[]")

    def handoff(self) -> Any:
        """The stack's hand-off core (whatever database it runs on)."""
        from handoff.machine import HandoffService
        from handoff.settings import HandoffSettings

        return HandoffService.from_settings(HandoffSettings(database_url=self.env["HANDOFF_DATABASE_URL"]))

    def pull(self, sender: str, after: int = 0) -> Dict[str, Any]:
        """The REST client's pending operator / bot lines (the gateway's pull endpoint)."""
        return self.get(f"/handoff/conversations/{sender}/messages?after={after}")

    @property
    def rasa_replica_ports(self) -> List[int]:
        """The scale-out profile's Rasa servers (from its banner), else the one Rasa port."""
        for line in self.output:
            if "Scale-out:" in line:
                return [int(port) for port in line.split("[", 1)[1].split("]", 1)[0].split(",")]
        return [self.rasa_port]

    def log_tail(self, lines: int = 40) -> str:
        return "".join(self.output[-lines:])


@contextmanager
def running_stack(trained_model: str, directory: Path, env: Optional[Dict[str, str]] = None) -> Iterator[RunningStack]:
    """The whole stack on its demo back office (SQLite files in ``directory``: fresh the first
    time, kept when the same directory runs a stack again); ``env`` overrides (a profile, database
    URLs). Stopped with Ctrl-C (SIGINT) when the block ends."""
    stack = RunningStack(free_port(), free_port(), free_port(), directory / "backoffice.db", None,  # type: ignore[arg-type]
                         webchat_port=free_port(), console_port=free_port(),
                         handoff_database=directory / "handoff.db")
    env = {
        **os.environ,
        "RASA_PORT": str(stack.rasa_port),
        "ACTION_SERVER_PORT": str(stack.action_port),
        "BACKOFFICE_PORT": str(stack.backoffice_port),
        "WEBCHAT_PORT": str(stack.webchat_port),
        "HANDOFF_CONSOLE_PORT": str(stack.console_port),
        "HANDOFF_DATABASE_URL": f"sqlite:///{stack.handoff_database}",
        "STACK_RESTART_BACKOFF_MAX": "2",
        "BACKOFFICE_DATABASE_URL": f"sqlite:///{stack.database}",
        "STACK_HOST": "127.0.0.1",
        "STACK_PUBLIC_HOST": "127.0.0.1",
        "RASA_MODELS_DIR": str(Path(trained_model).parent),
        "RAG_QDRANT_PATH": str(directory / "qdrant"),
        # conversations and their event stream in this test's folder, never the project's files
        "CONVERSATIONS_DATABASE_URL": f"sqlite:///{directory / 'conversations.db'}",
        "EVENTS_DATABASE_URL": f"sqlite:///{directory / 'events.db'}",
        "CONVERSATION_STATE_KEY": "test-conversation-state-key",
        "STACK_STATE_DIR": str(directory / "state"),
        **(env or {}),
    }
    stack.env = env
    stack.process = subprocess.Popen(
        [sys.executable, "-m", "engine.stack", "--skip-train"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    # Drain the stack's output in the background so a full pipe never blocks the servers.
    reader = threading.Thread(target=lambda: stack.output.extend(iter(stack.process.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not any("The assistant is running" in line for line in stack.output):
            if stack.process.poll() is not None:
                reader.join(timeout=10)  # whatever the stack printed before it died
                raise AssertionError(f"the stack exited with {stack.process.returncode}:\n{stack.log_tail(80)}")
            assert time.monotonic() < deadline, stack.log_tail()
            time.sleep(0.5)
        yield stack
    finally:
        stack.process.send_signal(signal.SIGINT)
        try:
            stack.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.process.kill()
            stack.process.wait()
