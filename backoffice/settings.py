"""Settings of the back-office service, read from the environment (one frozen object)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_ROOT / 'backoffice.db'}"
DEFAULT_API_TOKEN = "dev-backoffice-token"


def _env_str(name: str, default: str) -> str:
    raw = os.environ.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from error
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class BackofficeSettings:
    database_url: str = DEFAULT_DATABASE_URL
    api_token: str = DEFAULT_API_TOKEN
    host: str = "127.0.0.1"
    port: int = 8000
    resend_daily_limit: int = 3
    refund_window_days: int = 14

    @classmethod
    def from_env(cls) -> "BackofficeSettings":
        """``BACKOFFICE_DATABASE_URL`` (any SQLAlchemy URL; the default is ``backoffice.db`` in the
        project root), ``BACKOFFICE_API_TOKEN``, ``BACKOFFICE_HOST``, ``BACKOFFICE_PORT``,
        ``RESEND_DAILY_LIMIT``, ``REFUND_WINDOW_DAYS``."""
        return cls(
            database_url=_env_str("BACKOFFICE_DATABASE_URL", DEFAULT_DATABASE_URL),
            api_token=_env_str("BACKOFFICE_API_TOKEN", DEFAULT_API_TOKEN),
            host=_env_str("BACKOFFICE_HOST", cls.host),
            port=_env_int("BACKOFFICE_PORT", cls.port, minimum=0),
            resend_daily_limit=_env_int("RESEND_DAILY_LIMIT", cls.resend_daily_limit, minimum=0),
            refund_window_days=_env_int("REFUND_WINDOW_DAYS", cls.refund_window_days, minimum=0),
        )
