"""Settings of the custom actions, read from the environment (one frozen object).

``ActionSettings.from_env()`` reads:

- ``BACKOFFICE_URL`` — base URL of the back office (default ``http://127.0.0.1:8000``);
- ``BACKOFFICE_API_TOKEN`` — its bearer token (default ``dev-backoffice-token``, the demo one);
- ``BACKOFFICE_TIMEOUT_SECONDS`` — timeout of every HTTP attempt (default 5);
- ``BACKOFFICE_RETRIES`` — extra attempts of the calls that are safe to repeat (default 2);
- ``BACKOFFICE_RETRY_BACKOFF_SECONDS`` — first pause between attempts, doubled each time (default 0.2).

Empty values mean "use the default"; malformed ones raise ``ValueError`` at start-up rather than
surfacing as odd behaviour in the middle of a conversation.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional
from urllib.parse import urlsplit

from engine.env import env_float as _float
from engine.env import env_int as _int
from engine.env import env_raw as _raw

DEFAULT_BACKOFFICE_URL = "http://127.0.0.1:8000"
DEFAULT_BACKOFFICE_API_TOKEN = "dev-backoffice-token"
DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_RETRIES = 2
DEFAULT_RETRY_BACKOFF_SECONDS = 0.2
MAX_RETRIES = 10


@dataclass(frozen=True)
class ActionSettings:
    backoffice_url: str = DEFAULT_BACKOFFICE_URL
    #: never shown by ``repr`` (settings objects end up in logs and tracebacks)
    backoffice_api_token: str = field(default=DEFAULT_BACKOFFICE_API_TOKEN, repr=False)
    backoffice_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    backoffice_retries: int = DEFAULT_RETRIES
    backoffice_retry_backoff_seconds: float = DEFAULT_RETRY_BACKOFF_SECONDS

    def __post_init__(self) -> None:
        url = self.backoffice_url.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"BACKOFFICE_URL must be an http(s) URL, got {self.backoffice_url!r}")
        object.__setattr__(self, "backoffice_url", url)
        if not self.backoffice_api_token or any(c.isspace() for c in self.backoffice_api_token):
            raise ValueError("BACKOFFICE_API_TOKEN must be a non-empty token without spaces")
        timeout = float(self.backoffice_timeout_seconds)
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"BACKOFFICE_TIMEOUT_SECONDS must be > 0, got {self.backoffice_timeout_seconds!r}")
        object.__setattr__(self, "backoffice_timeout_seconds", timeout)
        if isinstance(self.backoffice_retries, bool) or not 0 <= int(self.backoffice_retries) <= MAX_RETRIES:
            raise ValueError(f"BACKOFFICE_RETRIES must be 0..{MAX_RETRIES}, got {self.backoffice_retries!r}")
        object.__setattr__(self, "backoffice_retries", int(self.backoffice_retries))
        backoff = float(self.backoffice_retry_backoff_seconds)
        if not math.isfinite(backoff) or backoff < 0:
            raise ValueError(
                f"BACKOFFICE_RETRY_BACKOFF_SECONDS must be >= 0, got {self.backoffice_retry_backoff_seconds!r}"
            )
        object.__setattr__(self, "backoffice_retry_backoff_seconds", backoff)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "ActionSettings":
        env = os.environ if environ is None else environ
        return cls(
            backoffice_url=_raw(env, "BACKOFFICE_URL") or DEFAULT_BACKOFFICE_URL,
            backoffice_api_token=_raw(env, "BACKOFFICE_API_TOKEN") or DEFAULT_BACKOFFICE_API_TOKEN,
            backoffice_timeout_seconds=_float(env, "BACKOFFICE_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS),
            backoffice_retries=_int(env, "BACKOFFICE_RETRIES", DEFAULT_RETRIES),
            backoffice_retry_backoff_seconds=_float(
                env, "BACKOFFICE_RETRY_BACKOFF_SECONDS", DEFAULT_RETRY_BACKOFF_SECONDS
            ),
        )
