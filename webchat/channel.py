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

It is also the bot's side of the human hand-over (``handoff``): the ``{"handoff": ...}`` custom
payload of ``actions.escalation.hand_over`` is intercepted (never sent to the browser) and puts the
conversation into the operators' queue; a customer message of a conversation that is waiting or
with an operator is stored for the operator and NOT passed to Rasa; every bot message goes out
only if :meth:`HandoffService.record_bot_message` allows it; and a background task delivers the
operators' replies to the session's room (``bot_uttered`` with ``metadata.from = "operator"``) and,
when an operator gives the conversation back, resumes Rasa (``RASA_SELF_URL``, default
http://127.0.0.1:5005) and lets the bot greet the customer again.

Per-topic copilot mode (``copilot.yml``, ``handoff.copilot``): while the bot owns the conversation,
a customer message whose intent is a *copilot* topic does not reach the dialogue: the bot's would-be
answer is drafted (``handoff.drafts``), the conversation goes to the operators' queue with that
draft attached, and the customer is told a specialist will answer. Only a topic's first message
is gated so; once an operator owns the conversation everything goes to the operator anyway.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Optional, Set, Text, Tuple
from urllib.parse import quote

from rasa.core.channels import socketio as rasa_socketio
from rasa.core.channels.channel import UserMessage
from sanic import Blueprint

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
GREETING = "Снова с вами ассистент. Чем ещё помочь?"
CLOSED_TEXT = "Оператор завершил диалог. Если понадобится помощь — просто напишите."
COPILOT_HOLD_TEXT = "Передала ваш вопрос специалисту — он ответит здесь же. Пожалуйста, не закрывайте чат."
OPERATOR_METADATA = {"from": "operator"}
SYSTEM_METADATA = {"from": "system"}


# --- the hand-over service (one per process, built lazily) -------------------------------------

_service_lock = threading.Lock()
_service: Any = None


def handoff_service() -> Any:
    """The process's :class:`handoff.machine.HandoffService` (from ``HandoffSettings.from_env()``)."""
    global _service
    if _service is None:
        with _service_lock:
            if _service is None:
                from handoff.machine import HandoffService
                from handoff.settings import HandoffSettings

                _service = HandoffService.from_settings(HandoffSettings.from_env())
    return _service


def set_handoff_service(service: Any) -> None:
    """Use ``service`` in this process (tests)."""
    global _service
    _service = service


@dataclass(frozen=True)
class CopilotCheck:
    handed_over: bool
    #: Rasa's parse of the message when the check asked for it (passed on as the message's parse)
    parse_data: Optional[Dict[str, Any]] = None


class CopilotGate:
    """Decides whether a customer message is a copilot topic, and if so hands the conversation
    over with the bot's draft attached (see the module doc)."""

    def __init__(self, modes: Any = None, drafts: Any = None) -> None:
        self._modes = modes
        self._drafts = drafts

    @property
    def modes(self) -> Any:
        if self._modes is None:
            from handoff.copilot import default_modes

            self._modes = default_modes()
        return self._modes

    @property
    def drafts(self) -> Any:
        if self._drafts is None:
            from handoff.drafts import AssistantDraftProvider
            from handoff.settings import HandoffSettings

            settings = HandoffSettings.from_env()
            self._drafts = AssistantDraftProvider(rasa_self_url(), settings.action_server_url)
        return self._drafts

    def active(self) -> bool:
        from handoff.copilot import Mode

        return self.modes.default is Mode.COPILOT or any(mode is Mode.COPILOT for mode in self.modes.topics.values())

    async def check(self, conversation_id: str, text: str) -> "CopilotCheck":
        """Hands the conversation over when ``text`` is a copilot topic; the parse either way, so
        that Rasa does not parse the same message again."""
        if not self.active():
            return CopilotCheck(False)  # the usual configuration: no parse round trip at all
        parsed = await self.drafts.parse(text)
        intent = (parsed.get("intent") or {}).get("name")
        if not self.modes.is_copilot(intent):
            return CopilotCheck(False, parsed or None)
        from handoff.drafts import draft_summary

        draft = await self.drafts.draft_for(text, parsed)
        service = handoff_service()
        transcript = [
            {"sender": message.sender, "text": message.text}
            for message in (await _call(service.conversation, conversation_id)).messages
            if message.sender in ("customer", "bot")
        ]
        summary = {"intent": intent, "reason": "copilot", "draft": draft_summary(draft, text)}
        await _call(service.hand_over, conversation_id, None, summary, transcript[-50:], reason=f"copilot topic {intent}")
        return CopilotCheck(True, parsed)


_copilot_gate: Optional[CopilotGate] = None


def copilot_gate() -> CopilotGate:
    global _copilot_gate
    if _copilot_gate is None:
        _copilot_gate = CopilotGate()
    return _copilot_gate


def set_copilot_gate(gate: Optional[CopilotGate]) -> None:
    """Use ``gate`` in this process (tests); None builds one from the settings again."""
    global _copilot_gate
    _copilot_gate = gate


async def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A (synchronous SQLAlchemy) service call in a worker thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: function(*args, **kwargs))


def rasa_self_url() -> str:
    return (os.environ.get("RASA_SELF_URL") or "http://127.0.0.1:5005").rstrip("/")


def _post_json(url: str, payload: Any, timeout: float = 30.0) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


def _text_of(message: Dict[Text, Any]) -> str:
    """What the hand-over transcript stores for a bot message (buttons / images / custom as text)."""
    text = message.get("text")
    if text:
        return str(text)
    if message.get("image"):
        return f"[image] {message['image']}"
    if message.get("custom") is not None:
        return "[custom] " + json.dumps(message["custom"], ensure_ascii=False)[:1000]
    if message.get("attachment"):
        return f"[attachment] {message['attachment']}"
    return json.dumps({k: v for k, v in message.items() if v}, ensure_ascii=False, default=str)[:1000] or "[empty]"


async def _maybe_await(result: Any) -> Any:
    """python-socketio < 5.10 returns None from enter_room, newer versions a coroutine."""
    if inspect.isawaitable(result):
        return await result
    return result


def handoff_payload(message: Dict[Text, Any]) -> Optional[Dict[str, Any]]:
    custom = message.get("custom")
    if isinstance(custom, dict) and isinstance(custom.get("handoff"), dict):
        return custom["handoff"]
    return None


class SocketIOOutput(rasa_socketio.SocketIOOutput):
    """Sends a bot message only when the bot owns the conversation; intercepts the hand-over marker."""

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        marker = handoff_payload(message)
        if marker is not None:
            await self._hand_over(recipient_id, marker)
            return
        try:
            gate = await _call(handoff_service().record_bot_message, recipient_id, _text_of(message))
        except Exception:  # the hand-off database is down: the bot must still answer
            logger.exception("hand-off guard failed for %s; the bot message goes out unguarded", recipient_id)
        else:
            if not gate:
                logger.info("bot message to %s held back: the conversation is %s", recipient_id, gate.state.value)
                return
        await super().send_response(recipient_id, message)

    async def _hand_over(self, recipient_id: Text, marker: Dict[str, Any]) -> None:
        service = handoff_service()
        summary = marker.get("summary")
        if isinstance(summary, dict) and marker.get("reason"):
            summary = {**summary, "reason": summary.get("reason") or marker["reason"]}
        try:
            await _call(
                service.hand_over,
                recipient_id,
                marker.get("ticket_id"),
                summary,
                marker.get("transcript"),
                reason=marker.get("reason"),
            )
        except Exception:
            logger.exception("conversation %s could not be put into the operators' queue", recipient_id)

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        """The custom payload as the event's data (Rasa 3.6 passed its keys to ``emit`` as arguments)."""
        await self.sio.emit(self.bot_message_evt, json_message, room=recipient_id)


class OperatorRelay:
    """Delivers operator replies (and acts on ``returned`` / ``closed``) for the sessions of this
    process, polling :meth:`HandoffService.pending_operator_messages`."""

    def __init__(self, sio: Any, bot_message_evt: Text, namespace: Optional[Text], output_channel: Text = "socketio") -> None:
        self.sio = sio
        self.bot_message_evt = bot_message_evt
        self.namespace = namespace
        self.output_channel = output_channel
        self.sessions: Set[str] = set()
        self.task: Optional[asyncio.Task] = None
        # one delivery at a time: the poller and a customer's message may flush the same session
        self.lock = asyncio.Lock()

    def watch(self, session_id: str) -> None:
        self.sessions.add(session_id)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("delivering operator messages failed")
            await asyncio.sleep(POLL_SECONDS)

    async def poll_once(self) -> None:
        for session_id in list(self.sessions):
            await self.flush(session_id)

    async def flush(self, session_id: str) -> None:
        """Deliver what is pending for one session (operator lines, a return to the bot)."""
        async with self.lock:
            pending = await _call(handoff_service().pending_operator_messages, session_id)
            for message in pending:
                await self.deliver(session_id, message)

    async def hold(self, session_id: str) -> None:
        """Tell the customer a specialist will answer (a copilot topic went to the operators)."""
        await self._emit(session_id, {"text": COPILOT_HOLD_TEXT, "metadata": dict(SYSTEM_METADATA)})

    async def _emit(self, session_id: str, data: Dict[str, Any]) -> None:
        await self.sio.emit(self.bot_message_evt, data, room=session_id, namespace=self.namespace)

    async def deliver(self, session_id: str, message: Any) -> None:
        service = handoff_service()
        if message.sender == "operator":
            await self._emit(session_id, {"text": message.text, "metadata": dict(OPERATOR_METADATA)})
            await _call(service.mark_delivered, [message.id])
            return
        await _call(service.mark_delivered, [message.id])
        if message.text == "returned":
            await self.resume(session_id, greet=True)
        elif message.text == "closed":
            await self._emit(session_id, {"text": CLOSED_TEXT, "metadata": dict(SYSTEM_METADATA)})
            await self.resume(session_id, greet=False)

    async def resume(self, session_id: str, *, greet: bool) -> None:
        """Resume Rasa in the conversation; greet the customer back (the ``greet`` intent, or a
        fixed line when that does not work)."""
        base = f"{rasa_self_url()}/conversations/{quote(session_id, safe='')}"
        from engine.handoff import RESUME_EVENTS

        try:
            await _call(_post_json, f"{base}/tracker/events", RESUME_EVENTS)
        except (urllib.error.URLError, OSError, ValueError) as error:
            logger.error("could not resume Rasa in %s: %s", session_id, error)
        if not greet:
            return
        try:
            result = await _call(
                _post_json, f"{base}/trigger_intent?output_channel={quote(self.output_channel)}", {"name": "greet"}
            )
            if result and result.get("messages") is not None:
                return  # the greeting went out through the output channel (and its guard)
        except (urllib.error.URLError, OSError, ValueError) as error:
            logger.warning("greet intent in %s failed (%s): a fixed greeting instead", session_id, error)
        gate = await _call(handoff_service().record_bot_message, session_id, GREETING)
        if gate:
            await self._emit(session_id, {"text": GREETING})


class SocketIOInput(rasa_socketio.SocketIOInput):
    """Rasa's ``socketio`` channel whose ``session_request`` really joins the session's room."""

    relay: Optional[OperatorRelay] = None

    def _relay(self) -> OperatorRelay:
        if self.relay is None:
            self.relay = OperatorRelay(self.sio, self.bot_message_evt, self.namespace, self.name())
        return self.relay

    async def route(self, sender_id: str, text: str) -> Tuple[bool, Optional[Dict[str, Any]]]:
        """Store the customer line in the hand-off core; → whether Rasa gets it (not while the
        conversation is waiting for / with an operator, nor for a copilot topic) and the parse
        the copilot check already made, if any."""
        from handoff.machine import Route

        if not text or not text.strip():
            return True, None
        try:
            route = await _call(handoff_service().customer_message, sender_id, text[:4000])
        except Exception:  # the hand-off database is down: the bot must still answer
            logger.exception("hand-off routing failed for %s; the message goes to the bot", sender_id)
            return True, None
        if route is Route.OPERATOR:
            return False, None
        check = CopilotCheck(False)
        try:
            check = await copilot_gate().check(sender_id, text)
        except Exception:  # copilot is an extra pair of eyes: if it fails, the bot answers
            logger.exception("copilot check failed for %s; the message goes to the bot", sender_id)
        if check.handed_over:
            await self._relay().hold(sender_id)
            return False, None
        try:
            # an operator may have just returned the conversation: Rasa must be resumed before
            # this message reaches it, not at the relay's next poll
            await self._relay().flush(sender_id)
        except Exception:
            logger.exception("delivering pending hand-off messages of %s failed", sender_id)
        return True, check.parse_data

    def get_output_channel(self) -> Optional[rasa_socketio.OutputChannel]:
        if self.sio is None:
            return super().get_output_channel()
        return SocketIOOutput(self.sio, self.bot_message_evt)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        socketio_webhook = super().blueprint(on_new_message)
        sio = self.sio
        assert sio is not None

        # Registering a handler again replaces Rasa's for the same event and namespace.
        @sio.on("session_request", namespace=self.namespace)
        async def session_request(sid: Text, data: Optional[Dict]) -> None:
            data = data if isinstance(data, dict) else {}
            if not data.get("session_id"):
                data["session_id"] = uuid.uuid4().hex
            session_id = str(data["session_id"])
            if self.session_persistence:
                await _maybe_await(sio.enter_room(sid, session_id, namespace=self.namespace))
            await sio.emit("session_confirm", session_id, room=sid, namespace=self.namespace)
            if self.session_persistence:
                self._relay().watch(session_id)
            logger.debug(f"Socket {sid} joined session {session_id}.")

        @sio.on(self.user_message_evt, namespace=self.namespace)
        async def handle_message(sid: Text, data: Dict) -> None:
            data = data if isinstance(data, dict) else {}
            if self.session_persistence:
                if not data.get("session_id"):
                    logger.warning("A socket.io message without a session_id was ignored (send session_request first).")
                    return
                sender_id = str(data["session_id"])
            else:
                sender_id = sid
            metadata = data.get(self.metadata_key, {})
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
            text = data.get("message", "")
            if self.session_persistence:
                self._relay().watch(sender_id)
            to_rasa, parse_data = await self.route(sender_id, text)
            if not to_rasa:
                logger.debug("message of %s kept for the operator (not passed to Rasa)", sender_id)
                return
            await on_new_message(
                UserMessage(
                    data.get("message", ""),
                    SocketIOOutput(sio, self.bot_message_evt),
                    sender_id,
                    parse_data=parse_data,
                    input_channel=self.name(),
                    metadata=metadata,
                )
            )

        return socketio_webhook
