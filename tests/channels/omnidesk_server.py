"""A stand-in Omnidesk for the tests: a real HTTP server on loopback (a thread of the test
process) implementing exactly the endpoints the channel calls, with Omnidesk's paths, HTTP Basic
authentication (staff e-mail + API key) and JSON bodies and answers:

* ``POST /api/cases/{id}/messages.json`` ``{"message": {"content", "staff_id"?}}`` → ``{"message": {…}}``
* ``POST /api/cases/{id}/note.json`` ``{"note": {"content", "staff_id"?}}`` → ``{"message": {…, "note": true}}``
* ``PUT /api/cases/{id}.json`` ``{"case": {"group_id"?, "status"?}}`` → ``{"case": {…}}``
* ``PUT /api/cases/{id}/spam.json`` → ``{"case": {…, "spam": true}}``

It records every call (``calls``, failed ones too) and can fail on demand: :meth:`fail_next`
answers the next ``n`` calls with a status (500, 503, 429 with ``Retry-After``…).
"""
from __future__ import annotations

import base64
import json
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional, Tuple

STATUSES = ("open", "waiting", "closed")


@dataclass
class Call:
    method: str
    path: str
    body: Any
    status: int
    case_id: Optional[int]
    kind: Optional[str]  # message / note / update_case / spam


@dataclass
class FakeOmnidesk:
    email: str = "bot@darim.example"
    api_key: str = "test-api-key"
    calls: List[Call] = field(default_factory=list)
    cases: Dict[int, Dict[str, Any]] = field(default_factory=dict)
    _failures: List[Tuple[int, Optional[int]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 1000
    url: str = ""

    def fail_next(self, count: int, status: int = 500, retry_after: Optional[int] = None) -> None:
        with self._lock:
            self._failures.extend([(status, retry_after)] * count)

    def done(self, kind: Optional[str] = None, case_id: Optional[int] = None) -> List[Call]:
        """The successful calls (of a kind, to a case)."""
        with self._lock:
            return [c for c in self.calls if c.status < 300 and (kind is None or c.kind == kind)
                    and (case_id is None or c.case_id == case_id)]

    def replies(self, case_id: Optional[int] = None) -> List[str]:
        return [c.body["message"]["content"] for c in self.done("message", case_id)]

    def notes(self, case_id: Optional[int] = None) -> List[str]:
        return [c.body["note"]["content"] for c in self.done("note", case_id)]

    def case(self, case_id: int) -> Dict[str, Any]:
        return self.cases.setdefault(case_id, {"case_id": case_id, "status": "open", "group_id": 1, "spam": False})

    # --- the HTTP side -----------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Any, raw: bytes) -> Tuple[int, Dict[str, str], Dict[str, Any]]:
        expected = "Basic " + base64.b64encode(f"{self.email}:{self.api_key}".encode()).decode()
        if headers.get("Authorization") != expected:
            return 401, {}, {"error": "authentication failed"}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return 400, {}, {"error": "invalid JSON"}
        routes = [
            ("POST", r"/api/cases/(\d+)/messages\.json", "message"),
            ("POST", r"/api/cases/(\d+)/note\.json", "note"),
            ("PUT", r"/api/cases/(\d+)/spam\.json", "spam"),
            ("PUT", r"/api/cases/(\d+)\.json", "update_case"),
        ]
        kind, case_id = None, None
        for route_method, pattern, name in routes:
            match = re.fullmatch(pattern, path)
            if match and method == route_method:
                kind, case_id = name, int(match.group(1))
                break
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
            if kind is None:
                status, extra, answer = 404, {}, {"error": "not found"}
            elif failure is not None:
                status, retry_after = failure
                extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                answer = {"error": "temporarily unavailable"}
            else:
                status, extra, answer = self._apply(kind, case_id, body)
            self.calls.append(Call(method, path, body, status, case_id, kind))
        return status, extra, answer

    def _apply(self, kind: str, case_id: int, body: Any) -> Tuple[int, Dict[str, str], Dict[str, Any]]:
        case = self.case(case_id)
        if kind in ("message", "note"):
            item = (body or {}).get(kind) if isinstance(body, dict) else None
            if not isinstance(item, dict) or not isinstance(item.get("content"), str) or not item["content"].strip():
                return 400, {}, {"error": f"{kind}.content is required"}
            self._next_id += 1
            return 200, {}, {"message": {"message_id": self._next_id, "case_id": case_id, "content": item["content"],
                                         "staff_id": item.get("staff_id", 0), "user_id": 0, "note": kind == "note"}}
        if kind == "update_case":
            fields = (body or {}).get("case") if isinstance(body, dict) else None
            if not isinstance(fields, dict) or not fields:
                return 400, {}, {"error": "case is required"}
            if "status" in fields and fields["status"] not in STATUSES:
                return 400, {}, {"error": "unknown status"}
            case.update(fields)
            return 200, {}, {"case": dict(case)}
        case["spam"] = True
        return 200, {}, {"case": dict(case)}


@contextmanager
def running_omnidesk(fake: Optional[FakeOmnidesk] = None) -> Iterator[FakeOmnidesk]:
    fake = fake or FakeOmnidesk()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, headers, answer = fake.handle(self.command, self.path.split("?")[0], self.headers, raw)
            data = json.dumps(answer, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_PUT = do_GET = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
