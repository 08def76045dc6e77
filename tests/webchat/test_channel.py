"""webchat.channel.SocketIOInput: Rasa's socket.io channel whose session_request joins the room."""
from __future__ import annotations

from unittest.mock import AsyncMock

from tests.webchat.socketio_channel import connected_channel
from webchat.channel import SocketIOOutput


async def test_session_request_joins_the_session_room_and_confirms():
    channel, sio, sid = await connected_channel([])
    await sio.handlers["/"]["session_request"](sid, {"session_id": "abc123"})
    assert "abc123" in sio.manager.get_rooms(sid, "/")
    sio.emit.assert_awaited_with("session_confirm", "abc123", room=sid, namespace=None)


async def test_session_request_without_an_id_gets_a_new_one():
    channel, sio, sid = await connected_channel([])
    await sio.handlers["/"]["session_request"](sid, None)
    confirmed = sio.emit.await_args.args[1]
    assert len(confirmed) == 32 and confirmed in sio.manager.get_rooms(sid, "/")


async def test_user_message_goes_to_rasa_under_the_session_id():
    received: list = []
    channel, sio, sid = await connected_channel(received)
    await sio.handlers["/"]["user_uttered"](sid, {"message": "привет", "session_id": "abc123"})
    await sio.handlers["/"]["user_uttered"](sid, {"message": "без сессии"})  # ignored, as in Rasa
    assert [(m.text, m.sender_id, m.input_channel) for m in received] == [("привет", "abc123", "socketio")]
    assert isinstance(received[0].output_channel, SocketIOOutput)


async def test_custom_json_is_sent_as_the_event_data():
    sio = AsyncMock()
    await SocketIOOutput(sio, "bot_uttered").send_custom_json("abc123", {"kind": "card", "id": 1})
    sio.emit.assert_awaited_once_with("bot_uttered", {"kind": "card", "id": 1}, room="abc123")


async def test_reachable_only_while_a_socket_of_the_session_is_connected_here():
    channel, sio, sid = await connected_channel([])
    assert not channel.reachable("abc123")
    await sio.handlers["/"]["session_request"](sid, {"session_id": "abc123"})
    assert channel.reachable("abc123") and not channel.reachable("other")
    await sio.manager.disconnect(sid, "/")
    assert not channel.reachable("abc123")


async def test_a_message_carries_the_client_address_and_bad_session_ids_are_refused():
    received: list = []
    channel, sio, sid = await connected_channel(received)
    sio.get_environ = lambda sid, namespace=None: {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    await sio.handlers["/"]["session_request"](sid, {"session_id": "x" * 500})  # too long: a new one
    confirmed = sio.emit.await_args.args[1]
    assert len(confirmed) == 32
    await sio.handlers["/"]["user_uttered"](sid, {"message": "привет", "session_id": confirmed,
                                                  "metadata": {"client_address": "spoofed"}})
    await sio.handlers["/"]["user_uttered"](sid, {"message": "привет", "session_id": "y" * 500})  # ignored
    await sio.handlers["/"]["user_uttered"](sid, {"message": {"not": "text"}, "session_id": confirmed})
    assert [(m.text, m.metadata["client_address"]) for m in received] == [("привет", "203.0.113.9"), ("", "203.0.113.9")]
