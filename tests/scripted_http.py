"""A scripted stdlib HTTP server on loopback for fault injection: each request gets the next
scripted reply (status, JSON or raw body, delay) or forwards to an upstream with a delay."""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Deque, Dict, List, Optional

import httpx


@dataclass
class Scripted:
    status: int = 200
    body: Any = field(default_factory=dict)  # dict/list → JSON; bytes/str → as is
    delay: float = 0.0


@dataclass
class Seen:
    """A request the server received (header names lower-cased)."""

    method: str
    path: str
    headers: Dict[str, str]
    body: bytes


class ScriptedServer:
    """Answers each request with the next scripted reply, then with ``default`` (503 unless set).

    With ``upstream`` it forwards every request to that service and delays the reply by
    ``delay`` seconds: the upstream acts, the caller times out (a lost reply)."""

    def __init__(self, default: Optional[Scripted] = None) -> None:
        self.replies: Deque[Scripted] = deque()
        self.default = default or Scripted(503, {"error": {"code": "internal_error", "message": "down"}})
        self.upstream: Optional[str] = None
        self.delay = 0.0
        self.requests: List[Seen] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with owner._lock:
                    owner.requests.append(
                        Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    reply = owner.replies.popleft() if owner.replies else owner.default
                    upstream, delay = owner.upstream, owner.delay
                if upstream:
                    forwarded = httpx.request(
                        self.command, upstream + self.path, content=body, timeout=10, trust_env=False,
                        headers={k: v for k, v in self.headers.items() if k.lower() in ("authorization", "x-actor", "content-type")},
                    )
                    reply = Scripted(forwarded.status_code, forwarded.content, delay)
                if reply.delay:
                    time.sleep(reply.delay)
                raw = reply.body
                if isinstance(raw, (dict, list)):
                    raw = json.dumps(raw).encode()
                elif isinstance(raw, str):
                    raw = raw.encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeouts)

            do_GET = do_POST = do_PATCH = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def script(self, *replies: Scripted, default: Optional[Scripted] = None) -> None:
        with self._lock:
            self.replies = deque(replies)
            self.requests = []
            if default is not None:
                self.default = default

    def proxy(self, upstream: str, delay: float) -> None:
        with self._lock:
            self.upstream, self.delay, self.requests = upstream, delay, []

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
