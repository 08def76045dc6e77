"""The page server: settings from the environment, the page with the socket URL filled in, /health."""
from __future__ import annotations

import pytest

from webchat.server import STATIC_DIR, create_app, render_index
from webchat.settings import WebchatSettings


def test_settings_from_env_and_overrides():
    settings = WebchatSettings.from_env(
        {"WEBCHAT_HOST": "127.0.0.1", "WEBCHAT_PORT": "9090", "WEBCHAT_RASA_URL": "https://bot.example/"}
    )
    assert (settings.host, settings.port, settings.rasa_url, settings.socket_path) == (
        "127.0.0.1", 9090, "https://bot.example", "/socket.io")
    assert WebchatSettings.from_env({}) == WebchatSettings()
    assert settings.with_overrides(port=8081, rasa_url=None).port == 8081
    assert WebchatSettings(rasa_url="").rasa_url == ""  # the page's own origin


@pytest.mark.parametrize("environ", [
    {"WEBCHAT_PORT": "eighty"}, {"WEBCHAT_PORT": "70000"},
    {"WEBCHAT_RASA_URL": "localhost:5005"}, {"WEBCHAT_RASA_URL": "javascript:alert(1)"},
    {"WEBCHAT_SOCKET_PATH": "socket.io"},
])
def test_bad_settings_are_refused(environ):
    with pytest.raises(ValueError):
        WebchatSettings.from_env(environ)


def test_index_gets_the_socket_url_escaped():
    page = render_index(WebchatSettings(rasa_url='http://bot.example:5005/?a="x"&b=<y>', socket_path="/chat/socket.io"))
    assert 'data-socket-url="http://bot.example:5005/?a=&quot;x&quot;&amp;b=&lt;y&gt;"' in page
    assert 'data-socket-path="/chat/socket.io"' in page
    assert page.count("<script") == 1  # one tag embeds the widget
    with pytest.raises(ValueError):
        render_index(WebchatSettings(), template="<html></html>")


def test_vendored_socketio_client_and_its_license_are_shipped():
    client = (STATIC_DIR / "vendor" / "socket.io.min.js").read_text(encoding="utf-8")
    assert client.startswith("/*!\n * Socket.IO v4.")
    assert "MIT License" in (STATIC_DIR / "vendor" / "socket.io-client.LICENSE").read_text(encoding="utf-8")


def test_routes():
    app = create_app(WebchatSettings(rasa_url="http://127.0.0.1:5999"))
    _, page = app.test_client.get("/")
    assert page.status == 200 and 'data-socket-url="http://127.0.0.1:5999"' in page.text
    assert "text/html" in page.headers["content-type"]
    _, health = app.test_client.get("/health")
    assert health.json == {"status": "ok", "rasa_url": "http://127.0.0.1:5999", "socket_path": "/socket.io"}
    for path in ("/static/widget.js", "/static/widget.css", "/static/vendor/socket.io.min.js"):
        _, asset = app.test_client.get(path)
        assert asset.status == 200, path
    _, missing = app.test_client.get("/static/../server.py")
    assert missing.status in (400, 404)
