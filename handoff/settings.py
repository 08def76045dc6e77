"""Settings of the hand-off core, read from the environment (one frozen object)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.env import env_int, env_raw
from engine.settings import PROJECT_ROOT

DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_ROOT / 'handoff.db'}"
DEFAULT_OPERATOR_TOKEN = "dev-operator-token"
DEFAULT_MODES_FILE = PROJECT_ROOT / "copilot.yml"


def _env_str(name: str, default: str) -> str:
    return env_raw(os.environ, name) or default


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    value = env_int(os.environ, name, default)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _env_path(name: str, default: Path) -> Path:
    """A path from the environment; a relative one is taken from the project root."""
    raw = env_raw(os.environ, name)
    if raw is None:
        return default
    path = Path(raw).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


@dataclass(frozen=True)
class HandoffSettings:
    database_url: str = DEFAULT_DATABASE_URL
    operator_token: str = DEFAULT_OPERATOR_TOKEN
    modes_file: Path = DEFAULT_MODES_FILE
    #: where the operator console listens (python -m handoff.console serve)
    host: str = "127.0.0.1"
    port: int = 8090
    #: how many of the customer's last messages the hand-over summary keeps
    summary_last_messages: int = 3
    #: the assistant that drafts copilot answers: the Rasa server (intent) and the action server
    #: (knowledge-base answers: it owns the index)
    rasa_url: str = "http://127.0.0.1:5005"
    action_server_url: str = "http://127.0.0.1:5055"

    @classmethod
    def from_env(cls) -> "HandoffSettings":
        """``HANDOFF_DATABASE_URL`` (any SQLAlchemy URL; the default is ``handoff.db`` in the
        project root), ``HANDOFF_OPERATOR_TOKEN``, ``HANDOFF_MODES_FILE`` (default ``copilot.yml``
        in the project root; a relative path is taken from the project root), ``HANDOFF_HOST``,
        ``HANDOFF_CONSOLE_PORT``, ``HANDOFF_SUMMARY_LAST_MESSAGES``, ``RASA_SELF_URL``,
        ``ACTION_SERVER_URL``."""
        return cls(
            database_url=_env_str("HANDOFF_DATABASE_URL", DEFAULT_DATABASE_URL),
            operator_token=_env_str("HANDOFF_OPERATOR_TOKEN", DEFAULT_OPERATOR_TOKEN),
            modes_file=_env_path("HANDOFF_MODES_FILE", DEFAULT_MODES_FILE),
            host=_env_str("HANDOFF_HOST", cls.host),
            port=_env_int("HANDOFF_CONSOLE_PORT", cls.port, minimum=0),
            summary_last_messages=_env_int("HANDOFF_SUMMARY_LAST_MESSAGES", cls.summary_last_messages, minimum=1),
            rasa_url=_env_str("RASA_SELF_URL", cls.rasa_url).rstrip("/"),
            action_server_url=_env_str("ACTION_SERVER_URL", cls.action_server_url).rstrip("/"),
        )
