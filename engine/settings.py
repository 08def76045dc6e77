"""Settings of the assistant stack, read from the environment (one object per deployable)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.env import env_int

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StackSettings:
    host: str = "0.0.0.0"
    public_host: str = "localhost"
    rasa_port: int = 5005
    action_port: int = 5055
    backoffice_port: int = 8000
    webchat_port: int = 8080
    console_port: int = 8090
    models_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "models")
    startup_timeout_seconds: int = 300

    @classmethod
    def from_env(cls) -> "StackSettings":
        return cls(
            host=os.environ.get("STACK_HOST", cls.host),
            public_host=os.environ.get("STACK_PUBLIC_HOST", cls.public_host),
            rasa_port=env_int(os.environ, "RASA_PORT", cls.rasa_port),
            action_port=env_int(os.environ, "ACTION_SERVER_PORT", cls.action_port),
            backoffice_port=env_int(os.environ, "BACKOFFICE_PORT", cls.backoffice_port),
            webchat_port=env_int(os.environ, "WEBCHAT_PORT", cls.webchat_port),
            console_port=env_int(os.environ, "HANDOFF_CONSOLE_PORT", cls.console_port),
            models_dir=Path(os.environ.get("RASA_MODELS_DIR", str(PROJECT_ROOT / "models"))),
            startup_timeout_seconds=env_int(os.environ, "STACK_STARTUP_TIMEOUT", cls.startup_timeout_seconds),
        )

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
