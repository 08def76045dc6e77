"""Settings of the web chat page server, read from the environment (one frozen object)."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Mapping, Optional
from urllib.parse import urlsplit

from engine.env import env_int, env_raw


def _check_rasa_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url == "":
        return ""  # the widget then connects to the page's own origin (e.g. behind one reverse proxy)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"WEBCHAT_RASA_URL must be an http(s) URL like http://localhost:5005, got {url!r}")
    return url


def _check_path(path: str) -> str:
    path = path.strip()
    if not path.startswith("/"):
        raise ValueError(f"WEBCHAT_SOCKET_PATH must start with '/', got {path!r}")
    return path


@dataclass(frozen=True)
class WebchatSettings:
    """``WEBCHAT_HOST`` / ``WEBCHAT_PORT``: where the page is served; ``WEBCHAT_RASA_URL``: the Rasa
    server as the *browser* reaches it (its socket.io channel); ``WEBCHAT_SOCKET_PATH``: the
    channel's ``socketio_path`` (credentials.yml, default ``/socket.io``)."""

    host: str = "0.0.0.0"
    port: int = 8080
    rasa_url: str = "http://localhost:5005"
    socket_path: str = "/socket.io"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rasa_url", _check_rasa_url(self.rasa_url))
        object.__setattr__(self, "socket_path", _check_path(self.socket_path))
        if not 0 <= self.port <= 65535:
            raise ValueError(f"WEBCHAT_PORT must be a TCP port, got {self.port}")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "WebchatSettings":
        environ = os.environ if environ is None else environ
        return cls(
            host=env_raw(environ, "WEBCHAT_HOST") or cls.host,
            port=env_int(environ, "WEBCHAT_PORT", cls.port),
            rasa_url=environ.get("WEBCHAT_RASA_URL", cls.rasa_url),
            socket_path=env_raw(environ, "WEBCHAT_SOCKET_PATH") or cls.socket_path,
        )

    def with_overrides(self, **changes: object) -> "WebchatSettings":
        return replace(self, **{key: value for key, value in changes.items() if value is not None})
