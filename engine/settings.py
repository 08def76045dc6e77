"""Settings of the assistant stack, read from the environment (one object per deployable)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from engine.env import env_float, env_int, env_raw

PROJECT_ROOT = Path(__file__).resolve().parent.parent

PROFILES = ("single", "scale-out")


@dataclass(frozen=True)
class StackSettings:
    """``python -m engine.stack``. Environment variables:

    ========================== ================================================================
    STACK_PROFILE              ``single`` (default: one of each, embedded stores) or ``scale-out``
    RASA_REPLICAS              Rasa servers behind the proxy (scale-out; default 2)
    ACTION_REPLICAS            action servers behind the proxy (scale-out; default 2)
    CONVERSATIONS_DATABASE_URL tracker store (default: endpoints.yml's SQLite file; scale-out
                               without it: a local PostgreSQL)
    EVENTS_DATABASE_URL        event broker table (same defaults)
    LOCK_STORE_URL             ``redis://host:port/db`` (scale-out without it: a local Redis)
    STACK_STATE_DIR            where the scale-out profile keeps its local servers' data (.stack)
    STACK_HOST / STACK_PUBLIC_HOST, RASA_PORT, ACTION_SERVER_PORT, BACKOFFICE_PORT, WEBCHAT_PORT,
    HANDOFF_CONSOLE_PORT, RASA_MODELS_DIR, STACK_STARTUP_TIMEOUT, STACK_RESTART_BACKOFF_MAX
    RASA_CREDENTIALS           the Rasa server's channels file (default ``credentials.yml``)
    ========================== ================================================================
    """

    host: str = "0.0.0.0"
    public_host: str = "localhost"
    rasa_port: int = 5005
    action_port: int = 5055
    backoffice_port: int = 8000
    webchat_port: int = 8080
    console_port: int = 8090
    models_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "models")
    startup_timeout_seconds: int = 300
    profile: str = "single"
    rasa_replicas: int = 1
    action_replicas: int = 1
    conversations_database_url: Optional[str] = None
    events_database_url: Optional[str] = None
    lock_store_url: Optional[str] = None
    state_dir: Path = field(default_factory=lambda: PROJECT_ROOT / ".stack")
    #: a crashed service is started again after 1, 2, 4 … seconds, at most this long
    restart_backoff_max_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"STACK_PROFILE must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if self.rasa_replicas < 1 or self.action_replicas < 1:
            raise ValueError("RASA_REPLICAS and ACTION_REPLICAS must be at least 1")
        if self.profile == "single" and (self.rasa_replicas > 1 or self.action_replicas > 1):
            raise ValueError("several replicas need STACK_PROFILE=scale-out (a shared lock store and database)")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "StackSettings":
        env = os.environ if environ is None else environ
        profile = env_raw(env, "STACK_PROFILE") or cls.profile
        replicas = 2 if profile == "scale-out" else 1
        state_dir = env_raw(env, "STACK_STATE_DIR")
        return cls(
            host=env_raw(env, "STACK_HOST") or cls.host,
            public_host=env_raw(env, "STACK_PUBLIC_HOST") or cls.public_host,
            rasa_port=env_int(env, "RASA_PORT", cls.rasa_port),
            action_port=env_int(env, "ACTION_SERVER_PORT", cls.action_port),
            backoffice_port=env_int(env, "BACKOFFICE_PORT", cls.backoffice_port),
            webchat_port=env_int(env, "WEBCHAT_PORT", cls.webchat_port),
            console_port=env_int(env, "HANDOFF_CONSOLE_PORT", cls.console_port),
            models_dir=Path(env_raw(env, "RASA_MODELS_DIR") or str(PROJECT_ROOT / "models")),
            startup_timeout_seconds=env_int(env, "STACK_STARTUP_TIMEOUT", cls.startup_timeout_seconds),
            profile=profile,
            rasa_replicas=env_int(env, "RASA_REPLICAS", replicas),
            action_replicas=env_int(env, "ACTION_REPLICAS", replicas),
            conversations_database_url=env_raw(env, "CONVERSATIONS_DATABASE_URL"),
            events_database_url=env_raw(env, "EVENTS_DATABASE_URL"),
            lock_store_url=env_raw(env, "LOCK_STORE_URL"),
            state_dir=Path(state_dir) if state_dir else PROJECT_ROOT / ".stack",
            restart_backoff_max_seconds=env_float(env, "STACK_RESTART_BACKOFF_MAX", cls.restart_backoff_max_seconds),
        )

    @property
    def scale_out(self) -> bool:
        return self.profile == "scale-out"

    @property
    def rasa_url(self) -> str:
        return f"http://{self.public_host}:{self.rasa_port}"

    @property
    def action_url(self) -> str:
        return f"http://{self.public_host}:{self.action_port}"

    @property
    def webchat_url(self) -> str:
        return f"http://{self.public_host}:{self.webchat_port}"

    @property
    def console_url(self) -> str:
        return f"http://{self.public_host}:{self.console_port}"

    @property
    def backoffice_url(self) -> str:
        return f"http://{self.public_host}:{self.backoffice_port}"
