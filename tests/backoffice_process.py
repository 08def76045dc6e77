"""Starts the real back office (`python -m backoffice serve`) on a free loopback port for tests."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_backoffice(directory: Path, database_url: str, token: str, reset: bool = False) -> Iterator[str]:
    """Serves the demo-seeded back office until the block ends; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "BACKOFFICE_DATABASE_URL": database_url,
        "BACKOFFICE_API_TOKEN": token,
        "BACKOFFICE_HOST": "127.0.0.1",
        "BACKOFFICE_PORT": str(port),
        "RESEND_DAILY_LIMIT": "3",
        "REFUND_WINDOW_DAYS": "14",
    }
    log_path = directory / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "backoffice", "serve", *(["--reset"] if reset else [])],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"back office exited: {log_path.read_text()}")
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"back office did not start: {log_path.read_text()}")
            time.sleep(0.1)
        yield base_url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
