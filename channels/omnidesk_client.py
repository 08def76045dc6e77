"""The Omnidesk REST API client of the Omnidesk channel (:mod:`channels.omnidesk`), with a durable
outbox: every call that changes a case (a staff reply, a private note, the hand-over assignment,
"spam") is first written to a table, then delivered; a delivery Omnidesk refuses for a while
(429, 5xx, network) stays there and is tried again by a background task, so nothing is lost
while Omnidesk is down. Each case's deliveries go out in order.

Followed, from Omnidesk's public API documentation (https://omnidesk.ru/api, "Обращения"):

* authentication: HTTP Basic with the staff member's e-mail and the API key
  (``curl -u [staff_email]:[api_key]``, https://omnidesk.ru/api/introduction/authentication),
  JSON bodies (``Content-Type: application/json``), URLs ``https://[domain].omnidesk.ru/api/….json``;
* "Добавление ответа": ``POST /api/cases/{case_id}/messages.json``
  ``{"message": {"content": …, "staff_id": …}}`` → ``{"message": {…}}``;
* "Добавление заметки": ``POST /api/cases/{case_id}/note.json`` ``{"note": {"content": …, "staff_id": …}}``;
* "Редактирование обращений": ``PUT /api/cases/{case_id}.json`` ``{"case": {"group_id": …, "status": …}}``
  → ``{"case": {…}}`` (field names as in the case object of https://omnidesk.ru/api/cases);
* "Пометить как спам": ``PUT /api/cases/{case_id}/spam.json`` (no body) → ``{"case": {…, "spam": true}}``;
* the rate limit ("500 запросов в час на активного сотрудника…, но не менее 1000 запросов в час").

The stored pages (omnidesk.ru/api) show the endpoint list and the case object; the exact bodies
of the reply / note / spam endpoints were cross-checked with the open-source Laravel client
palachX/laravel-omnidesk (``MessagesClient``: ``/api/cases/%s/messages.json``; ``NotesClient``:
``/api/cases/%s/note.json`` with a ``note`` object; ``CasesClient``: ``/api/cases/%s/spam.json``).
Where the docs were silent we assumed: the answer to a rate-limited call is HTTP 429, possibly
with ``Retry-After`` in seconds (honoured when present, else exponential back-off); any 5xx or a
network error is temporary; any other 4xx is permanent (a bad case id, a deleted case) and goes
straight to the dead letters.

Settings come from the environment (:class:`OmnideskSettings`); the deliveries and the webhook
de-duplication live in ``OMNIDESK_DATABASE_URL`` (SQLite next to the hand-off database by default,
any SQLAlchemy URL, through the project's :mod:`sqlstore`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Mapping, Optional, Tuple

import httpx
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, Text, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from sqlstore import UTCDateTime, make_engine, make_session_factory, read_transaction, write_transaction

logger = logging.getLogger(__name__)

try:  # the project's root (for the default database path); works without the engine package too
    from engine.settings import PROJECT_ROOT
except Exception:  # pragma: no cover
    from pathlib import Path

    PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_ROOT / 'omnidesk.db'}"

#: what a delivery does (the outbox's ``kind`` column)
MESSAGE, NOTE, UPDATE_CASE, SPAM = "message", "note", "update_case", "spam"
KINDS = (MESSAGE, NOTE, UPDATE_CASE, SPAM)
PENDING, SENT, DEAD = "pending", "sent", "dead"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _env(name: str, default: Optional[str] = None) -> Optional[str]:
    value = os.environ.get(name)
    return value.strip() if value and value.strip() else default


def _env_int(name: str, default: Optional[int]) -> Optional[int]:
    value = _env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _env_float(name: str, default: float) -> float:
    value = _env(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None


@dataclass(frozen=True)
class OmnideskSettings:
    """Everything the channel needs; :meth:`from_env` reads the ``OMNIDESK_*`` variables."""

    url: str = ""  # https://yourcompany.omnidesk.ru
    staff_email: str = ""
    api_key: str = field(default="", repr=False)
    webhook_secret: str = field(default="", repr=False)
    handover_group_id: Optional[int] = None  # the staff group a hand-over assigns the case to
    handover_status: str = "open"  # the case status set on a hand-over
    bot_staff_id: Optional[int] = None  # the staff member the bot's replies and notes are posted as
    database_url: str = DEFAULT_DATABASE_URL
    timeout_seconds: float = 10.0
    attempts_per_round: int = 3  # tries of one call before it waits for the background retry
    backoff_seconds: float = 1.0  # first back-off between tries (doubles, with jitter, capped)
    max_backoff_seconds: float = 30.0
    retry_interval_seconds: float = 15.0  # how often the background task looks at pending deliveries
    dead_after_attempts: int = 40  # rounds (~10 minutes with the defaults' back-off) before the dead letters

    @classmethod
    def from_env(cls, **overrides: Any) -> "OmnideskSettings":
        values: Dict[str, Any] = dict(
            url=(_env("OMNIDESK_URL", "") or "").rstrip("/"),
            staff_email=_env("OMNIDESK_STAFF_EMAIL", "") or "",
            api_key=_env("OMNIDESK_API_KEY", "") or "",
            webhook_secret=_env("OMNIDESK_WEBHOOK_SECRET", "") or "",
            handover_group_id=_env_int("OMNIDESK_HANDOVER_GROUP_ID", None),
            handover_status=_env("OMNIDESK_HANDOVER_STATUS", "open") or "open",
            bot_staff_id=_env_int("OMNIDESK_BOT_STAFF_ID", None),
            database_url=_env("OMNIDESK_DATABASE_URL", DEFAULT_DATABASE_URL) or DEFAULT_DATABASE_URL,
            timeout_seconds=_env_float("OMNIDESK_TIMEOUT_SECONDS", 10.0),
            retry_interval_seconds=_env_float("OMNIDESK_RETRY_INTERVAL_SECONDS", 15.0),
            dead_after_attempts=_env_int("OMNIDESK_DEAD_AFTER_ATTEMPTS", 40) or 40,
        )
        values.update({key: value for key, value in overrides.items() if value is not None and value != ""})
        for name in ("handover_group_id", "bot_staff_id", "attempts_per_round", "dead_after_attempts"):
            if isinstance(values.get(name), str):  # from credentials.yml (${VAR} substitutes strings)
                values[name] = int(values[name])
        for name in ("timeout_seconds", "backoff_seconds", "max_backoff_seconds", "retry_interval_seconds"):
            if isinstance(values.get(name), str):
                values[name] = float(values[name])
        values["url"] = str(values.get("url") or "").rstrip("/")
        return cls(**values)

    @property
    def configured(self) -> bool:
        return bool(self.url and self.staff_email and self.api_key)


# --- errors -------------------------------------------------------------------------------------


class OmnideskError(Exception):
    """A call to Omnidesk failed."""

    retryable = False

    def __init__(self, message: str, *, status: Optional[int] = None, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class OmnideskUnavailable(OmnideskError):
    """Temporary: 429, 5xx, a timeout or a network error — try again later."""

    retryable = True


class OmnideskRejected(OmnideskError):
    """Permanent: Omnidesk refused the call (4xx other than 429): retrying would not help."""


class OmnideskNotConfigured(OmnideskError):
    """OMNIDESK_URL / OMNIDESK_STAFF_EMAIL / OMNIDESK_API_KEY are not set: kept for later."""

    retryable = True


def _retry_after(response: httpx.Response) -> Optional[float]:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # an HTTP date: fall back to our own back-off


# --- the client ---------------------------------------------------------------------------------


class OmnideskClient:
    """Typed calls of the Omnidesk REST API; each one retries 429 / 5xx / network errors
    ``attempts_per_round`` times with back-off (``Retry-After`` honoured), then raises
    :class:`OmnideskUnavailable`. A new HTTP connection pool per :meth:`session` (the channel runs
    under more than one event loop in tests and on server restarts)."""

    def __init__(self, settings: OmnideskSettings, *, transport: Optional[httpx.AsyncBaseTransport] = None) -> None:
        self.settings = settings
        self._transport = transport

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.settings.url,
            auth=(self.settings.staff_email, self.settings.api_key),
            timeout=httpx.Timeout(self.settings.timeout_seconds),
            headers={"Accept": "application/json", "User-Agent": "support-assistant-omnidesk/1"},
            transport=self._transport,
        )

    async def request(
        self, method: str, path: str, body: Optional[Mapping[str, Any]] = None, *, http: Optional[httpx.AsyncClient] = None
    ) -> Dict[str, Any]:
        if not self.settings.configured:
            raise OmnideskNotConfigured("Omnidesk is not configured (OMNIDESK_URL, OMNIDESK_STAFF_EMAIL, OMNIDESK_API_KEY).")
        if http is None:
            async with self._http() as own:
                return await self.request(method, path, body, http=own)
        delay = self.settings.backoff_seconds
        last: Optional[OmnideskError] = None
        for attempt in range(1, max(1, self.settings.attempts_per_round) + 1):
            try:
                response = await http.request(method, path, json=dict(body) if body is not None else None)
            except httpx.HTTPError as error:
                last = OmnideskUnavailable(f"{method} {path}: {type(error).__name__}: {error}")
            else:
                if response.status_code < 300:
                    try:
                        data = response.json()
                    except ValueError:
                        data = {}
                    return data if isinstance(data, dict) else {"data": data}
                text = response.text[:300]
                if response.status_code == 429 or response.status_code >= 500:
                    last = OmnideskUnavailable(
                        f"{method} {path}: HTTP {response.status_code} {text}", status=response.status_code,
                        retry_after=_retry_after(response),
                    )
                else:
                    raise OmnideskRejected(f"{method} {path}: HTTP {response.status_code} {text}", status=response.status_code)
            if attempt < self.settings.attempts_per_round:
                wait = last.retry_after if last.retry_after is not None else delay * (1 + random.random() / 4)
                wait = min(wait, self.settings.max_backoff_seconds)
                logger.info("Omnidesk %s %s failed (%s); retry %d in %.2fs", method, path, last, attempt, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.settings.max_backoff_seconds)
        assert last is not None
        raise last

    # the calls ---------------------------------------------------------------------------------

    def _staff(self, values: Dict[str, Any]) -> Dict[str, Any]:
        if self.settings.bot_staff_id is not None:
            values["staff_id"] = self.settings.bot_staff_id
        return values

    async def post_message(self, case_id: int, content: str, *, http: Optional[httpx.AsyncClient] = None) -> Dict[str, Any]:
        """A reply to the customer, as a staff member ("Добавление ответа")."""
        return await self.request("POST", f"/api/cases/{int(case_id)}/messages.json",
                                  {"message": self._staff({"content": content})}, http=http)

    async def post_note(self, case_id: int, content: str, *, http: Optional[httpx.AsyncClient] = None) -> Dict[str, Any]:
        """A private note, seen by staff only ("Добавление заметки")."""
        return await self.request("POST", f"/api/cases/{int(case_id)}/note.json",
                                  {"note": self._staff({"content": content})}, http=http)

    async def update_case(self, case_id: int, fields: Mapping[str, Any], *, http: Optional[httpx.AsyncClient] = None) -> Dict[str, Any]:
        """Change a case's group, status… ("Редактирование обращений")."""
        return await self.request("PUT", f"/api/cases/{int(case_id)}.json", {"case": dict(fields)}, http=http)

    async def mark_spam(self, case_id: int, *, http: Optional[httpx.AsyncClient] = None) -> Dict[str, Any]:
        """"Пометить как спам"."""
        return await self.request("PUT", f"/api/cases/{int(case_id)}/spam.json", None, http=http)

    async def perform(self, kind: str, case_id: int, payload: Mapping[str, Any], *, http: Optional[httpx.AsyncClient] = None) -> Dict[str, Any]:
        if kind == MESSAGE:
            return await self.post_message(case_id, str(payload["content"]), http=http)
        if kind == NOTE:
            return await self.post_note(case_id, str(payload["content"]), http=http)
        if kind == UPDATE_CASE:
            return await self.update_case(case_id, payload, http=http)
        if kind == SPAM:
            return await self.mark_spam(case_id, http=http)
        raise OmnideskRejected(f"unknown delivery kind {kind!r}")


# --- the store: deliveries and seen webhook messages ---------------------------------------------

metadata = MetaData()
deliveries = Table(
    "omnidesk_deliveries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, unique=True),  # idempotency: one delivery per key
    Column("case_id", Integer, nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(10), nullable=False, default=PENDING, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
)
seen_messages = Table(
    "omnidesk_seen_messages", metadata,
    Column("key", String(200), primary_key=True),
    Column("case_id", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True)
class Delivery:
    id: int
    key: str
    case_id: int
    kind: str
    payload: Dict[str, Any]
    status: str
    attempts: int
    last_error: Optional[str]

    @classmethod
    def of(cls, row: Any) -> "Delivery":
        payload = row.payload if isinstance(row.payload, dict) else json.loads(row.payload or "{}")
        return cls(row.id, row.key, row.case_id, row.kind, payload, row.status, row.attempts, row.last_error)


class OmnideskStore:
    """The outbox of deliveries (pending → sent, or dead after too many failures — the dead
    letters, kept and listed, never dropped) and the Omnidesk message ids already handled."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        metadata.create_all(self.engine)
        self.sessions = make_session_factory(self.engine)

    @classmethod
    def for_settings(cls, settings: OmnideskSettings) -> "OmnideskStore":
        return cls(settings.database_url)

    def close(self) -> None:
        self.engine.dispose()

    # webhook de-duplication ----------------------------------------------------------------------

    def claim_message(self, key: str, case_id: int) -> bool:
        """True the first time ``key`` (an Omnidesk message id) is seen, False on a retry."""
        try:
            with write_transaction(self.sessions) as session:
                session.execute(insert(seen_messages).values(key=key, case_id=int(case_id), at=_now()))
            return True
        except IntegrityError:
            return False

    def release_message(self, key: str) -> None:
        """Forget ``key`` (its handling failed before anything was said: a retry may redo it)."""
        with write_transaction(self.sessions) as session:
            session.execute(delete(seen_messages).where(seen_messages.c.key == key))

    # deliveries ----------------------------------------------------------------------------------

    def enqueue(self, key: str, case_id: int, kind: str, payload: Mapping[str, Any]) -> bool:
        """Store a delivery (False: one with this key exists already — nothing is sent twice)."""
        if kind not in KINDS:
            raise ValueError(f"kind is one of {KINDS}, got {kind!r}")
        now = _now()
        try:
            with write_transaction(self.sessions) as session:
                session.execute(insert(deliveries).values(
                    key=key[:200], case_id=int(case_id), kind=kind, payload=dict(payload), status=PENDING, attempts=0,
                    next_attempt_at=now, created_at=now,
                ))
            return True
        except IntegrityError:
            return False

    def due(self, now: Optional[datetime] = None) -> List[Delivery]:
        """Pending deliveries of the cases whose oldest pending delivery is due, oldest first."""
        now = now or _now()
        with read_transaction(self.sessions) as session:
            rows = session.execute(
                select(deliveries).where(deliveries.c.status == PENDING).order_by(deliveries.c.id)
            ).all()
        blocked: set = set()
        due: List[Delivery] = []
        for row in rows:
            if row.case_id in blocked:
                continue
            if row.next_attempt_at > now:
                blocked.add(row.case_id)  # keep each case's deliveries in order
                continue
            due.append(Delivery.of(row))
        return due

    def mark_sent(self, delivery_id: int) -> None:
        with write_transaction(self.sessions) as session:
            session.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(
                status=SENT, sent_at=_now(), last_error=None))

    def mark_failed(self, delivery_id: int, error: str, *, retry_at: Optional[datetime], dead: bool) -> int:
        with write_transaction(self.sessions) as session:
            attempts = session.execute(select(deliveries.c.attempts).where(deliveries.c.id == delivery_id)).scalar_one() + 1
            session.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(
                attempts=attempts, last_error=error[:2000], status=DEAD if dead else PENDING,
                next_attempt_at=retry_at or _now()))
        return attempts

    def all(self, status: Optional[str] = None) -> List[Delivery]:
        query = select(deliveries).order_by(deliveries.c.id)
        if status is not None:
            query = query.where(deliveries.c.status == status)
        with read_transaction(self.sessions) as session:
            return [Delivery.of(row) for row in session.execute(query).all()]

    def dead_letters(self) -> List[Delivery]:
        return self.all(DEAD)

    def requeue_dead(self) -> int:
        """Put the dead letters back in the queue (after Omnidesk or a setting was fixed)."""
        with write_transaction(self.sessions) as session:
            result = session.execute(update(deliveries).where(deliveries.c.status == DEAD).values(
                status=PENDING, attempts=0, next_attempt_at=_now()))
        return int(result.rowcount or 0)


# --- delivering ---------------------------------------------------------------------------------


class DeliveryOutbox:
    """Sends what the store holds: :meth:`deliver_due` is one round (the webhook handler runs one
    right after a turn; :meth:`run` repeats it in the background)."""

    def __init__(self, client: OmnideskClient, store: OmnideskStore) -> None:
        self.client = client
        self.store = store
        self._lock: Optional[asyncio.Lock] = None
        self._lock_loop: Any = None

    def _round_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def _retry_at(self, attempts: int, error: OmnideskError) -> datetime:
        settings = self.client.settings
        wait = settings.retry_interval_seconds * (2 ** min(max(attempts - 1, 0), 5))
        if error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return _now() + timedelta(seconds=min(wait, 600.0))

    async def deliver_due(self) -> Tuple[int, int]:
        """One round: → (sent, failed)."""
        async with self._round_lock():
            pending = await asyncio.get_running_loop().run_in_executor(None, self.store.due)
            if not pending:
                return 0, 0
            sent = failed = 0
            blocked: set = set()
            async with self.client._http() as http:
                for delivery in pending:
                    if delivery.case_id in blocked:
                        continue
                    try:
                        await self.client.perform(delivery.kind, delivery.case_id, delivery.payload, http=http)
                    except OmnideskError as error:
                        failed += 1
                        blocked.add(delivery.case_id)
                        await self._failed(delivery, error)
                        continue
                    await asyncio.get_running_loop().run_in_executor(None, self.store.mark_sent, delivery.id)
                    sent += 1
            return sent, failed

    async def _failed(self, delivery: Delivery, error: OmnideskError) -> None:
        settings = self.client.settings
        attempts = delivery.attempts + 1
        dead = (not error.retryable) or attempts >= settings.dead_after_attempts
        retry_at = None if dead else self._retry_at(attempts, error)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.store.mark_failed(delivery.id, str(error), retry_at=retry_at, dead=dead))
        if dead:
            logger.error("omnidesk dead letter: delivery %s (%s to case %s, key %s) after %d attempt(s): %s",
                         delivery.id, delivery.kind, delivery.case_id, delivery.key, attempts, error)
        else:
            logger.warning("omnidesk delivery %s (%s to case %s) failed, attempt %d, kept for a retry at %s: %s",
                           delivery.id, delivery.kind, delivery.case_id, attempts, retry_at.isoformat() if retry_at else "-", error)

    async def run(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the Omnidesk delivery round failed; retrying")
            await asyncio.sleep(self.client.settings.retry_interval_seconds)


__all__ = [
    "DEAD", "Delivery", "DeliveryOutbox", "KINDS", "MESSAGE", "NOTE", "OmnideskClient", "OmnideskError",
    "OmnideskNotConfigured", "OmnideskRejected", "OmnideskSettings", "OmnideskStore", "OmnideskUnavailable",
    "PENDING", "SENT", "SPAM", "UPDATE_CASE",
]
