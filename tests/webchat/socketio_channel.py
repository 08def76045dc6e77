"""The project's socket.io channel wired for in-process tests: a connected socket, ``emit`` mocked."""
from __future__ import annotations

from typing import Any, List, Tuple
from unittest.mock import AsyncMock

from rasa.core.channels.channel import UserMessage

from webchat.channel import SocketIOInput


async def connected_channel(received: List[UserMessage]) -> Tuple[SocketIOInput, Any, str]:
    """(channel, its socket.io server, a connected socket id); messages for Rasa go to ``received``."""

    async def on_new_message(message: UserMessage) -> None:
        received.append(message)

    channel = SocketIOInput.from_credentials(
        {"user_message_evt": "user_uttered", "bot_message_evt": "bot_uttered", "session_persistence": True}
    )
    channel.blueprint(on_new_message)
    sio = channel.sio
    sio.emit = AsyncMock()
    sid = await sio.manager.connect("engineio-1", "/")
    return channel, sio, sid
