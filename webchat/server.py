"""A tiny static server for the web chat: the demo page at ``/`` (with the Rasa socket.io URL of
this deployment written into the widget's ``<script>`` tag), the widget at ``/static/``, ``/health``."""
from __future__ import annotations

import html
import itertools
import re
from pathlib import Path

from sanic import Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse

from webchat.settings import WebchatSettings

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX_FILE = STATIC_DIR / "index.html"

_app_numbers = itertools.count(1)
_ATTRIBUTE = r'({name}=")[^"]*(")'


def render_index(settings: WebchatSettings, template: str | None = None) -> str:
    """index.html with ``data-socket-url`` / ``data-socket-path`` set from the settings (HTML-escaped)."""
    page = INDEX_FILE.read_text(encoding="utf-8") if template is None else template
    for name, value in (("data-socket-url", settings.rasa_url), ("data-socket-path", settings.socket_path)):
        escaped = html.escape(value, quote=True)
        page, count = re.subn(_ATTRIBUTE.format(name=name), lambda m: m.group(1) + escaped + m.group(2), page, count=1)
        if count != 1:
            raise ValueError(f"index.html has no {name}=\"…\" attribute to fill in")
    return page


def create_app(settings: WebchatSettings) -> Sanic:
    app = Sanic(f"darim_webchat_{next(_app_numbers)}", configure_logging=False)
    app.config.FALLBACK_ERROR_FORMAT = "json"
    index = render_index(settings)  # rendered once: the settings are frozen
    no_cache = {"Cache-Control": "no-cache"}

    @app.get("/")
    async def page(_: Request) -> HTTPResponse:
        return response.html(index, headers=no_cache)

    @app.get("/health")
    async def health(_: Request) -> HTTPResponse:
        return response.json({"status": "ok", "rasa_url": settings.rasa_url, "socket_path": settings.socket_path})

    app.static("/static", str(STATIC_DIR))
    return app
