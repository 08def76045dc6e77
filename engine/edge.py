"""Guards at the edge of the assistant: what a customer's channel may send, and how often.

Applied in the Rasa server, before anything reaches the NLU (``handoff.gateway`` installs them):

* **HTTP webhooks** (REST, callback, any channel posting JSON to ``/webhooks/…/webhook``): a body
  larger than ``max_body_bytes`` → 413; not a JSON object, a ``sender`` that is not a 1–128
  character string, a missing or non-string ``message`` → 400; more than ``address_limit`` requests
  from one client address per ``window_seconds`` → 429 with ``Retry-After``. Always
  ``{"error": {"code", "message"}}``, never a 5xx or a silent ``200 []``.
* **Every message, any channel** (:meth:`EdgeGuard.check_text`): lone UTF-16 surrogates (half an
  emoji from a broken client) are replaced, and a message longer than ``max_message_chars``, one with
  no letters or digits at all, or the sender's ``sender_limit``-th message within the window gets a
  clear reply instead of going to the NLU (``utter_message_too_long``, ``utter_message_not_text``,
  ``utter_slow_down``).

Counters live in this process, or in Redis when one is configured (``EDGE_REDIS_URL``, else
``LOCK_STORE_URL``: then every replica counts together).

Settings (environment): ``EDGE_MAX_BODY_BYTES`` (65536), ``EDGE_MAX_MESSAGE_CHARS`` (4000),
``EDGE_SENDER_LIMIT`` (30), ``EDGE_ADDRESS_LIMIT`` (120), ``EDGE_WINDOW_SECONDS`` (60),
``EDGE_TRUSTED_PROXIES`` (``127.0.0.1,::1``: only from these is ``X-Forwarded-For`` believed),
``EDGE_PLATFORM_NETWORKS`` (none: messaging platforms' server networks — Telegram's, Omnidesk's —
exempt from the per-address limit, since one address carries every customer's messages).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Deque, Dict, FrozenSet, Mapping, Optional, Tuple

from engine.env import env_int, env_raw

logger = logging.getLogger(__name__)

SENDER_MAX_LENGTH = 128
TOO_LONG_RESPONSE = "utter_message_too_long"
NOT_TEXT_RESPONSE = "utter_message_not_text"
SLOW_DOWN_RESPONSE = "utter_slow_down"


@lru_cache(maxsize=16)
def _networks(specs: Tuple[str, ...]) -> Tuple[Any, ...]:
    """Parsed once per setting, not on every webhook request."""
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


@dataclass(frozen=True)
class EdgeSettings:
    max_body_bytes: int = 65_536
    max_message_chars: int = 4000
    sender_limit: int = 30
    address_limit: int = 120
    window_seconds: int = 60
    redis_url: Optional[str] = None
    trusted_proxies: FrozenSet[str] = frozenset({"127.0.0.1", "::1"})
    #: messaging platforms' servers (Telegram's, Omnidesk's: networks like 149.154.160.0/20) post
    #: every customer's messages from a few addresses: no per-address limit for them, the
    #: per-conversation limit still applies
    platform_networks: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_message_chars", "sender_limit", "address_limit", "window_seconds"):
            if getattr(self, name) < 1:
                raise ValueError(f"EDGE_{name.upper()} must be at least 1, got {getattr(self, name)}")
        for network in self.platform_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"EDGE_PLATFORM_NETWORKS: {network!r} is not an address or network") from None

    def is_platform(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip.version == network.version and ip in network for network in _networks(self.platform_networks))

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "EdgeSettings":
        env = os.environ if environ is None else environ
        proxies = env_raw(env, "EDGE_TRUSTED_PROXIES")
        return cls(
            max_body_bytes=env_int(env, "EDGE_MAX_BODY_BYTES", cls.max_body_bytes),
            max_message_chars=env_int(env, "EDGE_MAX_MESSAGE_CHARS", cls.max_message_chars),
            sender_limit=env_int(env, "EDGE_SENDER_LIMIT", cls.sender_limit),
            address_limit=env_int(env, "EDGE_ADDRESS_LIMIT", cls.address_limit),
            window_seconds=env_int(env, "EDGE_WINDOW_SECONDS", cls.window_seconds),
            redis_url=env_raw(env, "EDGE_REDIS_URL") or env_raw(env, "LOCK_STORE_URL"),
            trusted_proxies=frozenset(p.strip() for p in proxies.split(",") if p.strip()) if proxies
            else cls.trusted_proxies,
            platform_networks=tuple(n.strip() for n in (env_raw(env, "EDGE_PLATFORM_NETWORKS") or "").split(",")
                                    if n.strip()),
        )


# --- counting ---------------------------------------------------------------------------------


class LocalCounter:
    """Requests per key in a sliding window, in this process."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._hits: Dict[str, Deque[float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def hit(self, key: str, limit: int, window: float) -> Optional[float]:
        """Count one request; → None when allowed, else the seconds until the next is."""
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                return max(0.0, hits[0] + window - now)
            hits.append(now)
            if len(self._hits) > 100_000:  # forget idle keys rather than grow without bound
                for idle in [k for k, v in self._hits.items() if not v or v[-1] <= now - window]:
                    del self._hits[idle]
            return None


class RedisCounter:
    """The same in Redis (fixed windows), shared by every replica."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def hit(self, key: str, limit: int, window: float) -> Optional[float]:
        bucket = int(time.time() // window)
        name = f"supportassistant:edge:{key}:{bucket}"
        pipe = self._redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, int(window) + 1)
        count = pipe.execute()[0]
        if count > limit:
            return (bucket + 1) * window - time.time()
        return None


# --- the guard --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a message does not go to the NLU: a domain response to say, or an HTTP error."""

    code: str
    message: str
    status: int = 400
    response: Optional[str] = None  # the domain response the customer gets instead
    retry_after: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        error: Dict[str, Any] = {"code": self.code, "message": self.message}
        if self.retry_after is not None:
            error["retry_after_seconds"] = int(self.retry_after) + 1
        return {"error": error}


def clean_text(text: str) -> str:
    """Lone surrogates (half of an emoji) become U+FFFD: nothing downstream can encode them."""
    if not any("\ud800" <= char <= "\udfff" for char in text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@dataclass
class EdgeGuard:
    settings: EdgeSettings = field(default_factory=EdgeSettings.from_env)
    counter: Any = None

    def __post_init__(self) -> None:
        if self.counter is None:
            self.counter = self._counter()

    def _counter(self) -> Any:
        if self.settings.redis_url:
            try:
                counter = RedisCounter(self.settings.redis_url)
                counter._redis.ping()
                return counter
            except Exception as error:  # a missing Redis must not stop the chat
                logger.warning("edge limits count in this process only (Redis unavailable: %s)", error)
        return LocalCounter()

    def _hit(self, key: str, limit: int) -> Optional[float]:
        try:
            return self.counter.hit(key, limit, self.settings.window_seconds)
        except Exception:
            logger.exception("rate limit check failed; the message is let through")
            return None

    def check_text(self, sender: str, text: str) -> Tuple[str, Optional[Refusal]]:
        """→ (the text as the NLU may see it, a refusal or None). Empty text passes (the bot
        answers an empty message with its topic buttons)."""
        text = clean_text(text)
        retry = self._hit(f"sender:{sender}", self.settings.sender_limit)
        if retry is not None:
            return text, Refusal("too_many_messages", "Too many messages from this conversation.", 429,
                                 SLOW_DOWN_RESPONSE, retry)
        if len(text) > self.settings.max_message_chars:
            return text, Refusal("message_too_long", f"A message has at most {self.settings.max_message_chars} "
                                 "characters.", 413, TOO_LONG_RESPONSE)
        if text.strip() and not any(char.isalnum() for char in text):
            return text, Refusal("message_not_text", "The message has no letters or digits.", 400, NOT_TEXT_RESPONSE)
        return text, None

    def client_address(self, remote: Optional[str], forwarded_for: Optional[str]) -> str:
        """The customer's address: ``X-Forwarded-For``'s last untrusted hop when the request came
        through a trusted proxy, else the peer."""
        address = remote or "unknown"
        if forwarded_for and address in self.settings.trusted_proxies:
            hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
            while hops and hops[-1] in self.settings.trusted_proxies:
                hops.pop()
            if hops:
                address = hops[-1]
        return address

    def address_hit(self, address: str) -> Optional[float]:
        """Counts a request from ``address``: the seconds to wait when it is over the limit, else
        None (always None for a messaging platform's server)."""
        if self.settings.is_platform(address):
            return None
        return self._hit(f"address:{address}", self.settings.address_limit)

    def check_request(self, body: bytes, address: str) -> Tuple[Optional[Dict[str, Any]], Optional[Refusal]]:
        """A webhook's JSON body → (the parsed object, a refusal or None)."""
        retry = self.address_hit(address)
        if retry is not None:
            return None, Refusal("too_many_requests", "Too many requests from this address.", 429, retry_after=retry)
        if len(body) > self.settings.max_body_bytes:
            return None, Refusal("payload_too_large", f"A request body has at most {self.settings.max_body_bytes} "
                                 "bytes.", 413)
        try:
            data = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            return None, Refusal("invalid_json", "The body must be a JSON object.")
        if not isinstance(data, dict):
            return None, Refusal("invalid_json", "The body must be a JSON object.")
        sender = data.get("sender", "default")
        if not isinstance(sender, str) or not sender.strip() or len(sender) > SENDER_MAX_LENGTH:
            return None, Refusal("invalid_sender", f"`sender` is a string of 1 to {SENDER_MAX_LENGTH} characters.")
        if "message" not in data:
            return None, Refusal("message_missing", "`message` is required.")
        if not isinstance(data["message"], str):
            return None, Refusal("message_not_text", "`message` must be a string.")
        return data, None
