"""Rasa 3.6's socket.io input channel, fixed for python-socketio >= 5.10.

Rasa 3.6 calls ``sio.enter_room(...)`` without ``await``; since python-socketio 5.10 that method is
a coroutine on the async server, so with ``session_persistence: true`` the socket never joins the
room of its session and the bot's answers (emitted to that room) never reach the browser
(RasaHQ/rasa#13027). Its ``send_custom_json`` also spreads the custom payload into ``emit``'s
keyword arguments. This drop-in channel (same name, same options, same events) fixes both.
Use it in credentials.yml instead of ``socketio:``::

    webchat.channel.SocketIOInput:
      user_message_evt: user_uttered
      bot_message_evt: bot_uttered
      session_persistence: true

It is only a transport: who may speak in a conversation (bot, queue, operator) is decided for
every channel by the hand-over gateway (``handoff.gateway``). The one thing the gateway asks of
it is :meth:`SocketIOInput.reachable`: whether a session's socket is connected to this process,
so that of several Rasa replicas the one holding the socket delivers an operator's reply.
"""
from __future__ import annotations

import inspect
import json
import logging
import uuid
from typing import Any, Awaitable, Callable, Dict, Optional, Text

from rasa.core.channels import socketio as rasa_socketio
from rasa.core.channels.channel import UserMessage
from sanic import Blueprint

logger = logging.getLogger(__name__)

SESSION_ID_MAX_LENGTH = 128  # the hand-off core's conversation id


async def _maybe_await(result: Any) -> Any:
    """python-socketio < 5.10 returns None from enter_room, newer versions a coroutine."""
    if inspect.isawaitable(result):
        return await result
    return result


def _valid_session_id(value: Any) -> bool:
    """A session id the widget made (a uuid hex); anything else gets a new one."""
    return isinstance(value, str) and 0 < len(value) <= SESSION_ID_MAX_LENGTH and value.isprintable()


class SocketIOOutput(rasa_socketio.SocketIOOutput):
    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        """The custom payload as the event's data (Rasa 3.6 passed its keys to ``emit`` as arguments)."""
        await self.sio.emit(self.bot_message_evt, json_message, room=recipient_id)


class SocketIOInput(rasa_socketio.SocketIOInput):
    """Rasa's ``socketio`` channel whose ``session_request`` really joins the session's room."""

    def get_output_channel(self) -> Optional[rasa_socketio.OutputChannel]:
        if self.sio is None:
            return super().get_output_channel()
        return SocketIOOutput(self.sio, self.bot_message_evt)

    def reachable(self, recipient_id: Text) -> bool:
        """Whether a socket of ``recipient_id`` (a session id, or a socket id without session
        persistence) is connected to this process."""
        if self.sio is None:
            return False
        namespace = self.namespace or "/"
        rooms = self.sio.manager.rooms.get(namespace, {})
        return bool(rooms.get(recipient_id))

    def _client_address(self, sid: Text) -> str:
        from engine.edge import EdgeGuard

        environ = self.sio.get_environ(sid, namespace=self.namespace) or {} if self.sio else {}
        if self._edge is None:
            self._edge = EdgeGuard()
        return self._edge.client_address(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"))

    _edge: Any = None

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        socketio_webhook = super().blueprint(on_new_message)
        sio = self.sio
        assert sio is not None

        # Registering a handler again replaces Rasa's for the same event and namespace.
        @sio.on("session_request", namespace=self.namespace)
        async def session_request(sid: Text, data: Optional[Dict]) -> None:
            data = data if isinstance(data, dict) else {}
            if not _valid_session_id(data.get("session_id")):
                data["session_id"] = uuid.uuid4().hex
            session_id = str(data["session_id"])
            if self.session_persistence:
                await _maybe_await(sio.enter_room(sid, session_id, namespace=self.namespace))
            await sio.emit("session_confirm", session_id, room=sid, namespace=self.namespace)
            logger.debug(f"Socket {sid} joined session {session_id}.")

        @sio.on(self.user_message_evt, namespace=self.namespace)
        async def handle_message(sid: Text, data: Dict) -> None:
            data = data if isinstance(data, dict) else {}
            if self.session_persistence:
                if not _valid_session_id(data.get("session_id")):
                    logger.warning("A socket.io message without a valid session_id was ignored (send session_request first).")
                    return
                sender_id = str(data["session_id"])
            else:
                sender_id = sid
            metadata = data.get(self.metadata_key, {})
            if isinstance(metadata, str):
                try:
                    metadata = json.loads(metadata)
                except ValueError:
                    metadata = {}
            metadata = dict(metadata) if isinstance(metadata, dict) else {}
            # the client's address, for the per-address limits at the edge (engine.edge)
            metadata["client_address"] = self._client_address(sid)
            text = data.get("message", "")
            await on_new_message(
                UserMessage(
                    text if isinstance(text, str) else "",
                    SocketIOOutput(sio, self.bot_message_evt),
                    sender_id,
                    input_channel=self.name(),
                    metadata=metadata,
                )
            )

        return socketio_webhook
