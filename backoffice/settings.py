"""Settings of the back-office service, read from the environment (one frozen object)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_ROOT / 'backoffice.db'}"
DEFAULT_API_TOKEN = "dev-backoffice-token"
# Bounds of the lockout settings: at least one failure and one minute (0 would lock every check
# or none), at most a week (a longer lock only helps an attacker lock customers out).
LOCKOUT_MAX_FAILURES_LIMIT = 1000
LOCKOUT_WINDOW_MINUTES_LIMIT = 7 * 24 * 60


def _env_str(name: str, default: str) -> str:
    raw = os.environ.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


def _env_int(name: str, default: int, minimum: int = 0, maximum: Optional[int] = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from error
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


@dataclass(frozen=True)
class BackofficeSettings:
    database_url: str = DEFAULT_DATABASE_URL
    api_token: str = DEFAULT_API_TOKEN
    host: str = "127.0.0.1"
    port: int = 8000
    resend_daily_limit: int = 3
    refund_window_days: int = 14
    lockout_max_failures: int = 5
    lockout_window_minutes: int = 15

    @classmethod
    def from_env(cls) -> "BackofficeSettings":
        """``BACKOFFICE_DATABASE_URL`` (any SQLAlchemy URL; the default is ``backoffice.db`` in the
        project root), ``BACKOFFICE_API_TOKEN``, ``BACKOFFICE_HOST``, ``BACKOFFICE_PORT``,
        ``RESEND_DAILY_LIMIT``, ``REFUND_WINDOW_DAYS``,
        ``BACKOFFICE_LOCKOUT_MAX_FAILURES`` (5, from 1 to 1000) and
        ``BACKOFFICE_LOCKOUT_WINDOW_MINUTES`` (15, from 1 to 10080): after that many failed PIN
        checks of one certificate code, or failed buyer checks of one order, within that many
        minutes, its checks are refused (``429 too_many_attempts``) for that many minutes."""
        return cls(
            database_url=_env_str("BACKOFFICE_DATABASE_URL", DEFAULT_DATABASE_URL),
            api_token=_env_str("BACKOFFICE_API_TOKEN", DEFAULT_API_TOKEN),
            host=_env_str("BACKOFFICE_HOST", cls.host),
            port=_env_int("BACKOFFICE_PORT", cls.port, minimum=0),
            resend_daily_limit=_env_int("RESEND_DAILY_LIMIT", cls.resend_daily_limit, minimum=0),
            refund_window_days=_env_int("REFUND_WINDOW_DAYS", cls.refund_window_days, minimum=0),
            lockout_max_failures=_env_int(
                "BACKOFFICE_LOCKOUT_MAX_FAILURES", cls.lockout_max_failures,
                minimum=1, maximum=LOCKOUT_MAX_FAILURES_LIMIT,
            ),
            lockout_window_minutes=_env_int(
                "BACKOFFICE_LOCKOUT_WINDOW_MINUTES", cls.lockout_window_minutes,
                minimum=1, maximum=LOCKOUT_WINDOW_MINUTES_LIMIT,
            ),
        )
