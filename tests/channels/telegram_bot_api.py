"""A local stand-in of the Telegram Bot API (``https://api.telegram.org/bot<token>/<method>``) for
tests: the methods Rasa's Telegram channel (``rasa.core.channels.telegram``, aiogram 2) calls —
``getMe`` (the channel checks the bot's username on every update), ``setWebhook`` (when the
channel is built), ``sendMessage`` (text, ``reply_markup`` for buttons), ``sendChatAction``,
``sendPhoto`` — answered the way Telegram answers them, and every call recorded.

    with TelegramBotApi(token="123456:TEST", username="darim_test_bot") as api:
        # point the Rasa server at it: TELEGRAM_API_URL=api.url (engine/telegram_channel.py)
        api.wait_for("sendMessage", lambda call: call.params["chat_id"] == "42")
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import parse_qsl


@dataclass
class BotApiCall:
    """A Bot API call the stand-in received: the method and its parameters (strings, as sent;
    ``reply_markup`` and other JSON-valued fields decoded)."""

    token: str
    method: str
    params: Dict[str, Any]

    @property
    def chat_id(self) -> str:
        return str(self.params.get("chat_id", ""))

    @property
    def text(self) -> str:
        return str(self.params.get("text", ""))


JSON_FIELDS = ("reply_markup", "entities", "allowed_updates", "media")


def _parse_body(content_type: str, body: bytes) -> Dict[str, Any]:
    if not body:
        return {}
    if content_type.startswith("application/json"):
        return dict(json.loads(body))
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        return {part.get_param("name", header="content-disposition"): part.get_content()
                for part in message.iter_parts()}
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


class TelegramBotApi:
    """The stand-in on a free loopback port (``url``: what ``TELEGRAM_API_URL`` is set to); only
    ``token`` is accepted (others get Telegram's 401). ``calls``: every call, in order."""

    def __init__(self, token: str = "123456789:TEST-token_for-the-stand-in", username: str = "darim_test_bot") -> None:
        self.token = token
        self.username = username
        self.calls: List[BotApiCall] = []
        self.webhook_url: Optional[str] = None
        self._lock = threading.Lock()
        self._message_id = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "TelegramBotApi":
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- what a test asks ------------------------------------------------------------------------

    def called(self, method: str, chat_id: Optional[str] = None) -> List[BotApiCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method and (chat_id is None or c.chat_id == str(chat_id))]

    def wait_for(self, method: str, matches: Callable[[BotApiCall], bool] = lambda _: True,
                 timeout: float = 60.0) -> BotApiCall:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for call in self.called(method):
                if matches(call):
                    return call
            time.sleep(0.1)
        raise AssertionError(f"no matching {method} within {timeout} s; calls: {self.calls!r}")

    # --- the Bot API ----------------------------------------------------------------------------

    def answer(self, method: str, params: Dict[str, Any]) -> Any:
        """The ``result`` Telegram returns for ``method`` (Bot API 6.x shapes)."""
        now = int(time.time())
        if method == "getMe":
            return {"id": int(self.token.split(":")[0]), "is_bot": True, "first_name": "Дарим",
                    "username": self.username, "can_join_groups": True,
                    "can_read_all_group_messages": False, "supports_inline_queries": False}
        if method == "setWebhook":
            self.webhook_url = params.get("url") or None
            return True
        if method == "deleteWebhook":
            self.webhook_url = None
            return True
        if method == "getWebhookInfo":
            return {"url": self.webhook_url or "", "has_custom_certificate": False, "pending_update_count": 0}
        if method in ("sendMessage", "sendPhoto"):
            with self._lock:
                self._message_id += 1
                message_id = self._message_id
            message: Dict[str, Any] = {
                "message_id": message_id, "date": now,
                "from": {"id": int(self.token.split(":")[0]), "is_bot": True, "first_name": "Дарим",
                         "username": self.username},
                "chat": {"id": int(params["chat_id"]) if str(params.get("chat_id", "")).lstrip("-").isdigit()
                         else params.get("chat_id"), "type": "private"},
            }
            if method == "sendMessage":
                message["text"] = params.get("text", "")
            else:
                message["photo"] = [{"file_id": "stand-in", "file_unique_id": "stand-in", "width": 1, "height": 1}]
            if isinstance(params.get("reply_markup"), dict) and "inline_keyboard" in params["reply_markup"]:
                message["reply_markup"] = params["reply_markup"]
            return message
        return True  # sendChatAction, answerCallbackQuery, …

    def _handler(self) -> type:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self._handle()

            def do_GET(self) -> None:  # noqa: N802
                self._handle()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if len(parts) != 2 or not parts[0].startswith("bot"):
                    return self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                token, method = parts[0][3:], parts[1]
                params = _parse_body(self.headers.get("Content-Type") or "", body)
                if "?" in self.path:
                    params.update(parse_qsl(self.path.split("?", 1)[1]))
                for name in JSON_FIELDS:
                    if isinstance(params.get(name), str):
                        try:
                            params[name] = json.loads(params[name])
                        except ValueError:
                            pass
                with api._lock:
                    api.calls.append(BotApiCall(token, method, params))
                if token != api.token:
                    return self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                self._reply(200, {"ok": True, "result": api.answer(method, params)})

            def _reply(self, status: int, payload: Any) -> None:
                body = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler


def telegram_update(update_id: int, chat_id: int, text: str, *, first_name: str = "Иван",
                    username: str = "ivan_customer") -> Dict[str, Any]:
    """A text message update as Telegram POSTs it to the webhook."""
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "from": {"id": chat_id, "is_bot": False, "first_name": first_name, "username": username,
                     "language_code": "ru"},
            "chat": {"id": chat_id, "first_name": first_name, "username": username, "type": "private"},
            "date": int(time.time()),
            "text": text,
        },
    }


def telegram_button_press(update_id: int, chat_id: int, data: str, *, message_id: int = 1) -> Dict[str, Any]:
    """A press on an inline keyboard button (``callback_data`` = the button's payload)."""
    user = {"id": chat_id, "is_bot": False, "first_name": "Иван", "language_code": "ru"}
    return {
        "update_id": update_id,
        "callback_query": {
            "id": str(update_id * 1000), "from": user, "chat_instance": str(chat_id), "data": data,
            "message": {"message_id": message_id, "date": int(time.time()),
                        "chat": {"id": chat_id, "first_name": "Иван", "type": "private"}, "text": "…"},
        },
    }
