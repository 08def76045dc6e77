"""The hand-over gateway: the one owner of who speaks in a conversation — the bot, the operators'
queue, or an operator — for every channel of the Rasa server (``credentials.yml``: web chat, REST,
callback, Telegram…).

It sits between the channels and the Rasa agent, in the Rasa server's process
(:func:`install_gateway`, applied by ``python -m engine.rasa_server``):

* **a customer message** is stored in the hand-off core (``handoff.machine``) with its channel. While
  the conversation waits for or is with an operator it goes only to the operator: the bot never sees
  it. A message whose intent is a *copilot* topic (``copilot.yml``) goes to the queue with the bot's
  draft attached, and the customer is told a specialist answers (``utter_copilot_hold``).
  Otherwise the agent handles it in-process.
* **the bot's messages** of that turn are collected and, in one transaction, checked (the bot
  still owns the conversation — an operator may have taken it meanwhile) and stored; the typed
  hand-over marker an action sends (``handoff.marker``) moves the conversation to the queue with its
  summary and transcript in the same transaction. Only then do the messages go out, the marker
  replaced by its public form (ticket and reason).
* **operator replies and the bot's lines outside a turn** (``utter_handoff_returned`` when an
  operator gives the conversation back, ``utter_handoff_closed``) wait in the outbox
  (``handoff.outbox``). A relay task delivers them to push channels (socket.io: only from the
  replica the customer's socket is connected to; callback, …); REST clients fetch them with
  ``GET /handoff/conversations/<sender>/messages?after=<last id seen>``.

* **channels inside another help desk** (``channels.omnidesk``) hear of a hand-over through
  :func:`notify_handover` (an output channel's optional ``on_handover`` hook), so they can assign
  the case there; the hand-off core stays the one source of truth.

Nothing here depends on Rasa's ``ConversationPaused``: the hand-off core is the only source of truth.
If the hand-off database is down the bot still answers (a customer must never be stuck behind an
outage of the operators' side), and says nothing about a queue it could not join.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Text, Tuple
from urllib.parse import unquote, urljoin

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, Sanic
from sanic.request import Request
from sanic.response import HTTPResponse, json as json_response

from handoff.errors import HandoffError, InvalidInput
from handoff.machine import MAX_TEXT_LENGTH, HandoffService, Route
from handoff.marker import HandoverMarker, MalformedMarker

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
#: how often the gateway looks whether copilot.yml changed (a lead moved a topic in the console)
MODES_RECHECK_SECONDS = 2.0
RETURNED_RESPONSE = "utter_handoff_returned"
CLOSED_RESPONSE = "utter_handoff_closed"
COPILOT_HOLD_RESPONSE = "utter_copilot_hold"
#: said when the domain has no such response (another deployment's domain)
FALLBACK_TEXTS = {
    "utter_message_too_long": "Сообщение слишком длинное — напишите, пожалуйста, короче, в нескольких сообщениях.",
    "utter_message_not_text": "Я понимаю только текст — напишите, пожалуйста, словами, чем помочь.",
    "utter_slow_down": "Вы пишете очень часто — подождите, пожалуйста, минуту и напишите снова.",
    RETURNED_RESPONSE: "Снова с вами ассистент. Чем ещё помочь?",
    CLOSED_RESPONSE: "Оператор завершил диалог. Если понадобится помощь — просто напишите.",
    COPILOT_HOLD_RESPONSE: "Передала ваш вопрос специалисту — он ответит здесь же.",
}
SYSTEM_LINE_RESPONSES = {"returned": RETURNED_RESPONSE, "closed": CLOSED_RESPONSE}
#: the metadata key under which a channel passes the client's network address (engine.edge limits)
CLIENT_ADDRESS_KEY = "client_address"


async def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A synchronous (SQLAlchemy) call in a worker thread, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args, **kwargs))


def transcript_text(message: Mapping[str, Any]) -> str:
    """What the hand-off transcript stores for a bot message (buttons / images / custom as text)."""
    text = message.get("text")
    if text:
        return str(text)
    if message.get("image"):
        return f"[image] {message['image']}"
    if message.get("custom") is not None:
        return "[custom] " + json.dumps(message["custom"], ensure_ascii=False)[:1000]
    if message.get("attachment"):
        return f"[attachment] {message['attachment']}"
    shown = {k: v for k, v in message.items() if v and k != "recipient_id"}
    return json.dumps(shown, ensure_ascii=False, default=str)[:1000] or "[empty]"


class TurnOutput(OutputChannel):
    """Collects the bot's messages of one turn as Rasa hands them out (``send_response``), so the
    gateway decides about them together; named like the channel the message came from (Rasa
    picks channel-specific response variants by this name)."""

    def __init__(self, channel_name: str) -> None:
        self._channel_name = channel_name
        self.messages: List[Dict[str, Any]] = []

    def name(self) -> Text:  # type: ignore[override]
        return self._channel_name

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        self.messages.append(dict(message))


class CopilotGate:
    """Whether a customer message is a copilot topic (``copilot.yml``), and if so the bot's draft."""

    def __init__(self, modes: Any = None, drafts: Any = None) -> None:
        self._modes = modes
        self._follows_file = modes is None  # the modes of copilot.yml, read again when it changes
        self._file_seen: Any = None
        self._checked_at = 0.0
        self.drafts = drafts

    @property
    def modes(self) -> Any:
        if self._follows_file and time.monotonic() - self._checked_at >= MODES_RECHECK_SECONDS:
            self._checked_at = time.monotonic()
            from handoff.copilot import CopilotModes
            from handoff.settings import HandoffSettings

            path = HandoffSettings.from_env().modes_file
            try:
                stamp = path.stat().st_mtime_ns
            except OSError:
                stamp = None
            if self._modes is None or stamp != self._file_seen:
                try:
                    self._modes = CopilotModes.load(path)
                    self._file_seen = stamp
                except Exception:  # a broken edit: keep the last good modes
                    logger.exception("copilot modes file %s unreadable; keeping the previous modes", path)
                    if self._modes is None:
                        self._modes = CopilotModes()
        return self._modes

    def active(self) -> bool:
        from handoff.copilot import Mode

        return self.modes.default is Mode.COPILOT or any(mode is Mode.COPILOT for mode in self.modes.topics.values())

    async def check(self, text: str) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
        """(the parse — passed on so Rasa does not parse the message again —, the hand-over
        summary when ``text`` is a copilot topic). No parse at all when no topic is in copilot mode."""
        if not self.active():
            return None, None
        parsed = await self.drafts.parse(text)
        intent = (parsed.get("intent") or {}).get("name")
        if not self.modes.is_copilot(intent):
            return parsed or None, None
        from handoff.drafts import draft_summary

        draft = await self.drafts.draft_for(text, parsed)
        return parsed, {"intent": intent, "reason": "copilot", "draft": draft_summary(draft, text)}


class HandoverGateway:
    """See the module doc. ``agent``: returns the Rasa agent in use (the server may load a new
    model); ``channels``: the server's input channels (their output channels deliver the outbox)."""

    def __init__(
        self,
        agent: Callable[[], Any],
        channels: Sequence[InputChannel] = (),
        *,
        service: Optional[HandoffService] = None,
        copilot: Optional[CopilotGate] = None,
        poll_seconds: float = POLL_SECONDS,
        edge: Any = None,
    ) -> None:
        self._agent = agent
        self.channels = list(channels)
        self._service = service
        self._copilot = copilot
        self.poll_seconds = poll_seconds
        self._outbox: Any = None
        self._edge: Any = edge
        self._push: Optional[Dict[str, Tuple[InputChannel, OutputChannel]]] = None
        self._relay_task: Optional[asyncio.Task] = None
        self._relay_lock = asyncio.Lock()

    # --- parts, built on first use (nothing is opened when the server merely imports this) -----

    @property
    def service(self) -> HandoffService:
        if self._service is None:
            from handoff.settings import HandoffSettings

            self._service = HandoffService.from_settings(HandoffSettings.from_env())
        return self._service

    @property
    def edge(self) -> Any:
        if self._edge is None:
            from engine.edge import EdgeGuard

            self._edge = EdgeGuard()
        return self._edge

    def edge_address_refusal(self, message: UserMessage) -> Any:
        """Channels without an HTTP request per message (socket.io) put the client's address into
        the message's metadata; HTTP webhooks are limited per address before they get here."""
        address = (message.metadata or {}).get(CLIENT_ADDRESS_KEY) if isinstance(message.metadata, dict) else None
        if not isinstance(address, str) or not address:
            return None
        from engine.edge import SLOW_DOWN_RESPONSE, Refusal

        retry = self.edge._hit(f"address:{address}", self.edge.settings.address_limit)
        if retry is None:
            return None
        return Refusal("too_many_requests", "Too many messages from this address.", 429, SLOW_DOWN_RESPONSE, retry)

    @property
    def outbox(self) -> Any:
        if self._outbox is None:
            from handoff.outbox import Outbox

            self._outbox = Outbox(self.service)
        return self._outbox

    @property
    def copilot(self) -> CopilotGate:
        if self._copilot is None:
            self._copilot = CopilotGate()
        if self._copilot.drafts is None:
            from handoff.drafts import AssistantDraftProvider
            from handoff.settings import HandoffSettings

            settings = HandoffSettings.from_env()
            # the intent from this process's agent; knowledge drafts from the action server
            self._copilot.drafts = AssistantDraftProvider(settings.rasa_url, settings.action_server_url, parser=self._parse)
        return self._copilot

    async def _parse(self, text: str) -> Dict[str, Any]:
        return await self._agent().parse_message(text)

    # --- a customer message ----------------------------------------------------------------------

    async def handle(self, message: UserMessage) -> None:
        """What every channel calls with a customer message (instead of the agent directly)."""
        sender = message.sender_id
        text = message.text if isinstance(message.text, str) else ""
        text, refusal = self.edge.check_text(sender, text)
        if refusal is None:
            refusal = self.edge_address_refusal(message)
        if refusal is not None:  # never reaches the NLU: the customer is told why
            logger.info("conversation %s: message refused at the edge (%s)", sender, refusal.code)
            said = await self.say(refusal.response or "", sender, message.output_channel.name())
            await message.output_channel.send_response(sender, {"text": said})
            return
        if text != message.text:
            message = UserMessage(text, message.output_channel, sender, parse_data=message.parse_data,
                                  input_channel=message.input_channel, message_id=message.message_id,
                                  metadata=message.metadata)
        channel = message.input_channel or message.output_channel.name()
        parse_data = message.parse_data
        # the customer line: stored with the bot's turn when the bot owns the conversation (one
        # write per turn), at once when it goes to an operator or reopens a closed conversation
        deferred: Optional[Tuple[str, str]] = None
        line_id: Optional[int] = None
        try:
            gate = await _call(self.service.gate, sender)
            if not text.strip():
                if not gate:
                    return
            elif gate:
                deferred = (text[:MAX_TEXT_LENGTH], channel)
            else:
                route, line = await _call(self.service.customer_line, sender, text[:MAX_TEXT_LENGTH], channel)
                if route is Route.OPERATOR:
                    logger.debug("conversation %s is with the operators: message kept for them", sender)
                    return
                line_id = line.id
        except HandoffError as error:
            logger.warning("conversation %s: message not recorded (%s); the bot answers", sender, error)
            return await self._unguarded(message)
        except Exception:  # the hand-off database is down: the customer must still get an answer
            logger.exception("hand-off routing failed for %s; the bot answers without it", sender)
            return await self._unguarded(message)
        if text.strip() and parse_data is None:
            try:
                parsed, copilot_summary = await self.copilot.check(text)
            except Exception:  # the copilot is an extra pair of eyes: if it fails, the bot answers
                logger.exception("copilot check failed for %s; the bot answers", sender)
                parsed, copilot_summary = None, None
            if copilot_summary is not None:
                return await self._to_copilot(message, copilot_summary, deferred)
            parse_data = parsed

        turn = TurnOutput(message.output_channel.name())
        await self._agent().handle_message(
            UserMessage(
                message.text, turn, sender, parse_data=parse_data, input_channel=message.input_channel,
                message_id=message.message_id, metadata=message.metadata,
            )
        )
        await self._finish_turn(message, turn.messages, deferred, line_id, text)

    async def _unguarded(self, message: UserMessage) -> None:
        """The agent answers directly (the hand-off core is unavailable); no marker goes out."""
        turn = TurnOutput(message.output_channel.name())
        await self._agent().handle_message(
            UserMessage(
                message.text, turn, message.sender_id, parse_data=message.parse_data,
                input_channel=message.input_channel, message_id=message.message_id, metadata=message.metadata,
            )
        )
        for bot_message in turn.messages:
            if not _is_marker(bot_message):
                await message.output_channel.send_response(message.sender_id, bot_message)

    async def _finish_turn(
        self, message: UserMessage, messages: List[Dict[str, Any]], deferred: Optional[Tuple[str, str]],
        line_id: Optional[int], text: str,
    ) -> None:
        sender = message.sender_id
        marker: Optional[HandoverMarker] = None
        outgoing: List[Dict[str, Any]] = []
        for bot_message in messages:
            if not _is_marker(bot_message):
                outgoing.append(bot_message)
                continue
            try:
                marker = HandoverMarker.from_bot_message(bot_message)
            except MalformedMarker as error:  # never shown to the customer
                logger.error("conversation %s: a malformed hand-over marker was dropped (%s)", sender, error)
                continue
            outgoing.append({"custom": marker.public()})  # type: ignore[union-attr]
        texts = [transcript_text(m) for m in outgoing if not _is_marker(m)]
        mask_line = None
        if self._answered_secret(sender):  # the PIN / buyer check: not in the operators' transcript
            if deferred is not None:
                deferred = (self._masked_secret(deferred[0]), deferred[1])
            elif line_id is not None:
                mask_line = (line_id, self._masked_secret(text))
        hand_over = None
        if marker is not None:
            summary = {**marker.summary, "reason": marker.summary.get("reason") or marker.reason}
            hand_over = (marker.ticket_id, summary, list(marker.transcript), marker.reason)
        try:
            gate: Any = await _call(
                self.service.bot_turn, sender, texts, hand_over=hand_over, mask_line=mask_line, customer=deferred
            )
        except Exception:  # the hand-off database is down: answer, but promise no queue
            logger.exception("conversation %s: the bot's turn could not be recorded; sent unguarded", sender)
            gate, outgoing = True, [m for m in outgoing if not _is_marker(m)]
        if not gate:
            logger.info("conversation %s is %s: the bot's turn was held back", sender, gate.state.value)
            return
        for bot_message in outgoing:
            await message.output_channel.send_response(sender, bot_message)
        if hand_over is not None and any(_is_marker(m) for m in outgoing):  # (not when sent unguarded)
            await notify_handover(message.output_channel, sender, {"ticket_id": hand_over[0], **hand_over[1]})

    async def _to_copilot(
        self, message: UserMessage, summary: Dict[str, Any], deferred: Optional[Tuple[str, str]]
    ) -> None:
        """A copilot topic: the conversation goes to the queue with the bot's draft attached; the
        customer is told a specialist answers."""
        sender = message.sender_id
        hold = await self.say(COPILOT_HOLD_RESPONSE, sender, message.output_channel.name())
        try:
            earlier = (await _call(self.service.conversation, sender)).messages
        except HandoffError:  # the conversation's first message
            earlier = ()
        transcript = [{"sender": line.sender, "text": line.text} for line in earlier if line.sender in ("customer", "bot")]
        if deferred is not None:
            transcript.append({"sender": "customer", "text": deferred[0]})
        gate = await _call(
            self.service.bot_turn, sender, [hold], customer=deferred,
            hand_over=(None, summary, transcript[-50:], f"copilot topic {summary.get('intent')}"),
        )
        if gate:
            await message.output_channel.send_response(sender, {"text": hold})
            await notify_handover(message.output_channel, sender, {"ticket_id": None, **summary})

    # --- personal data in the hand-off transcript ------------------------------------------------

    def _tracker_store(self) -> Any:
        store = getattr(self._agent(), "tracker_store", None)
        return getattr(store, "_tracker_store", store)  # Rasa wraps custom stores (AwaitableTrackerStore)

    def _answered_secret(self, sender: str) -> bool:
        """Whether the customer's last message answered a secret question (the PIN, the buyer
        check): the tracker store knows which question it answered (engine.tracker_store)."""
        check = getattr(self._tracker_store(), "answered_secret", None)
        try:
            return bool(check(sender)) if check is not None else False
        except Exception:
            logger.exception("could not tell whether %s answered a secret question", sender)
            return False

    def _masked_secret(self, text: str) -> str:
        policy = getattr(self._tracker_store(), "policy", None)
        if policy is not None:
            return policy.mask_text(text, secret_answer=True)
        return "".join("*" if char.isdigit() else char for char in text)

    # --- the bot's own lines (responses from the domain, in-process) -----------------------------

    async def say(self, response: str, sender: str, channel_name: Optional[str] = None) -> str:
        """The text of a domain response, generated by the agent's NLG for this conversation."""
        agent = self._agent()
        try:
            tracker = await agent.tracker_store.retrieve(sender) if agent.tracker_store else None
            if tracker is None:
                from rasa.shared.core.trackers import DialogueStateTracker

                tracker = DialogueStateTracker(sender, agent.domain.slots if agent.domain else [])
            generated = await agent.nlg.generate(response, tracker, channel_name or "")
            text = (generated or {}).get("text")
        except Exception:
            logger.exception("response %s could not be generated for %s", response, sender)
            text = None
        return str(text) if text else FALLBACK_TEXTS.get(response, "")

    # --- the outbox: operator replies and lines outside a turn -----------------------------------

    def push_channels(self) -> Dict[str, Tuple[InputChannel, OutputChannel]]:
        """The channels that can send to a customer who did not just write (not REST: its clients
        fetch their lines), with their output channels."""
        if self._push is None:
            push: Dict[str, Tuple[InputChannel, OutputChannel]] = {}
            for channel in self.channels:
                try:
                    output = channel.get_output_channel()
                except Exception as error:  # e.g. a channel that registers a webhook while building it
                    logger.warning("channel %s cannot send outside a turn (%s); its lines wait", channel.name(), error)
                    continue
                if output is None or type(output).__name__ in ("CollectingOutputChannel", "QueueOutputChannel"):
                    continue
                push[channel.name()] = (channel, output)
            self._push = push
        return self._push

    async def relay_once(self) -> int:
        """One round: act on returned / closed conversations and deliver pending lines to push
        channels; → how many lines were handled."""
        async with self._relay_lock:
            push = self.push_channels()
            deliveries = await _call(self.outbox.pending, list(push))
            blocked: set = set()
            handled = 0
            for delivery in deliveries:
                line = delivery.message
                conversation = line.conversation_id
                if conversation in blocked:
                    continue  # keep each conversation's lines in order
                if line.sender == "system":
                    if await _call(self.outbox.claim, line.id):
                        response = SYSTEM_LINE_RESPONSES.get(line.text)
                        if response:
                            text = await self.say(response, conversation, delivery.channel)
                            await _call(self.outbox.add_bot_line, conversation, text)
                        handled += 1
                    blocked.add(conversation)  # its new line goes out in the next round, after it
                    continue
                target = push.get(delivery.channel or "")
                if target is None or not _reachable(target[0], conversation):
                    blocked.add(conversation)
                    continue
                if not await _call(self.outbox.claim, line.id):
                    continue  # another replica sent it
                try:
                    await target[1].send_response(conversation, {"text": line.text})
                except Exception:
                    logger.exception("line %s to %s could not be sent; it waits for the next round", line.id, conversation)
                    await _call(self.outbox.release, line.id)
                    blocked.add(conversation)
                    continue
                handled += 1
            return handled

    async def run_relay(self) -> None:
        while True:
            try:
                while await self.relay_once():
                    pass  # what a round produced (a welcome-back line) goes out at once
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the hand-over relay failed; retrying")
            await asyncio.sleep(self.poll_seconds)

    async def start(self, *_: Any) -> None:
        """Sanic ``after_server_start`` listener: the relay task."""
        if self._relay_task is None or self._relay_task.done():
            self._relay_task = asyncio.get_running_loop().create_task(self.run_relay())

    async def stop(self, *_: Any) -> None:
        if self._relay_task is not None:
            self._relay_task.cancel()
            try:
                await self._relay_task
            except (asyncio.CancelledError, Exception):
                pass
            self._relay_task = None

    # --- pull delivery (REST) --------------------------------------------------------------------

    def blueprint(self) -> Blueprint:
        blueprint = Blueprint("handover_gateway", url_prefix="/handoff")

        @blueprint.get("/conversations/<conversation_id:path>/messages")
        async def pending(request: Request, conversation_id: str) -> HTTPResponse:
            """Operator replies and the bot's lines outside a turn that this client has not got
            yet; ``after``: the last id it got (those and older are marked delivered)."""
            conversation_id = unquote(conversation_id)  # sanic 21.12 leaves %-escapes in path parameters
            try:
                try:
                    after = int(request.args.get("after", 0))
                except ValueError:
                    raise InvalidInput("`after` is the id of the last message received (an integer).") from None
                pulled = await _call(self.outbox.for_conversation, conversation_id, after)
            except HandoffError as error:
                return json_response(error.to_dict(), status=error.http_status)
            return json_response({"conversation_id": conversation_id, **pulled.to_dict()})

        return blueprint


async def notify_handover(output: OutputChannel, recipient_id: str, summary: Mapping[str, Any]) -> None:
    """The gateway's one extension point for channels that live inside another help desk
    (``channels.omnidesk``): after a turn moved the conversation to the operators' queue (a
    hand-over marker, or a copilot topic: ``summary["reason"] == "copilot"`` with the bot's
    ``draft``), an output channel that has ``async on_handover(recipient_id, summary)`` is told,
    with the summary (``ticket_id``, ``reason``, ``intent``, …). Channels without it are untouched;
    a failing hook is logged and changes nothing here (the hand-off core already has the
    conversation in its queue)."""
    hook = getattr(output, "on_handover", None)
    if hook is None:
        return
    try:
        await hook(recipient_id, dict(summary))
    except Exception:
        logger.exception("conversation %s: the channel's hand-over hook failed", recipient_id)


def _is_marker(message: Mapping[str, Any]) -> bool:
    custom = message.get("custom")
    return isinstance(custom, Mapping) and "handoff" in custom


def _reachable(channel: InputChannel, recipient_id: str) -> bool:
    """Whether this process can reach ``recipient_id`` through ``channel`` now (the web chat: its
    socket is connected here); channels that do not say are taken as reachable."""
    check = getattr(channel, "reachable", None)
    if check is None:
        return True
    try:
        return bool(check(recipient_id))
    except Exception:
        logger.exception("channel %s could not tell whether %s is connected", channel.name(), recipient_id)
        return False


# --- installing it into `rasa run` ----------------------------------------------------------------


def register_through_gateway(
    input_channels: List[InputChannel], app: Sanic, route: Optional[Text], gateway: Optional[HandoverGateway] = None
) -> HandoverGateway:
    """Rasa's ``rasa.core.channels.channel.register``, with every channel's messages going through
    one :class:`HandoverGateway` (plus its REST pull endpoint and relay task)."""
    gateway = gateway or HandoverGateway(lambda: app.ctx.agent, input_channels)

    async def handler(message: UserMessage) -> None:
        await gateway.handle(message)

    webhook_prefix = (route or "/webhooks/").rstrip("/") + "/"
    json_webhooks = {f"{webhook_prefix}{name}/webhook" for name in JSON_MESSAGE_CHANNELS}

    @app.on_request
    async def guard_webhooks(request: Request) -> Optional[HTTPResponse]:
        """Bad or abusive webhook requests are answered before any channel parses them."""
        if request.method != "POST" or not request.path.startswith(webhook_prefix):
            return None
        edge = gateway.edge
        address = edge.client_address(request.remote_addr or request.ip, request.headers.get("x-forwarded-for"))
        if request.path in json_webhooks:
            _, refusal = edge.check_request(request.body or b"", address)
        else:  # other channels' own formats (form posts, Telegram updates…): size and rate only
            retry = edge.address_hit(address)
            from engine.edge import Refusal

            refusal = (Refusal("too_many_requests", "Too many requests from this address.", 429, retry_after=retry)
                       if retry is not None else None)
            if refusal is None and len(request.body or b"") > edge.settings.max_body_bytes:
                refusal = Refusal("payload_too_large", "The request body is too large.", 413)
        if refusal is None:
            return None
        headers = {"Retry-After": str(int(refusal.retry_after) + 1)} if refusal.retry_after is not None else None
        return json_response(refusal.to_dict(), status=refusal.status, headers=headers)

    for channel in input_channels:
        prefix = urljoin(route, channel.url_prefix()) if route else None
        app.blueprint(channel.blueprint(handler), url_prefix=prefix)
    app.ctx.input_channels = input_channels
    app.ctx.handover_gateway = gateway
    app.blueprint(gateway.blueprint())
    app.register_listener(gateway.start, "after_server_start")
    app.register_listener(gateway.stop, "before_server_stop")
    return gateway


#: channels whose webhook body is ``{"sender", "message", "metadata"}`` (checked by engine.edge)
JSON_MESSAGE_CHANNELS = ("rest", "callback")


def install_gateway() -> None:
    """Make `rasa run` in this process register its channels through the gateway."""
    from rasa.core.channels import channel as rasa_channel

    rasa_channel.register = register_through_gateway  # type: ignore[assignment]


__all__ = [
    "CopilotGate",
    "HandoverGateway",
    "TurnOutput",
    "install_gateway",
    "notify_handover",
    "register_through_gateway",
    "transcript_text",
]

