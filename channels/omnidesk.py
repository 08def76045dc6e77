"""The Omnidesk channel: the assistant answers Omnidesk cases (https://omnidesk.ru), inside the
help desk the operators already work in.

Registered in ``credentials.yml`` as ``channels.omnidesk.OmnideskInput:`` (settings from the
``OMNIDESK_*`` environment, :class:`channels.omnidesk_client.OmnideskSettings`; any of them may
be given in the block instead: ``url``, ``staff_email``, ``api_key``, ``webhook_secret``,
``handover_group_id``, ``handover_status``, ``bot_staff_id``, ``database_url``).

**In** — ``POST /webhooks/omnidesk/webhook``, called by Omnidesk rules ("Отправить вебхук"; the
body is configured in the rule, see README «Omnidesk»), the secret in the ``X-Omnidesk-Secret``
header or the ``secret`` query parameter / body field (checked in constant time)::

    {"type": "case_new" | "message_new" | "case_returned" | "draft_rated",
     "object": {"case_id": 123, "message_id": 456, "content": "…", "user_id": 7, "staff_id": 0,
                "note": false, "rating": "like" | "dislike"}}

(the ``{"type", "object"}`` envelope and the message fields are those of the open-source
palachX/laravel-omnidesk webhook handler; a flat object with ``type`` / ``event`` is accepted too).

* ``case_new`` / ``message_new``: a customer line. Each Omnidesk message id is handled once
  (persisted: a webhook retry, even after a restart, gets ``{"result": "duplicate"}`` and no
  second reply); staff messages and notes are ignored. The text goes to the Rasa server's
  ``on_new_message`` — so the hand-over gateway decides who speaks — as conversation
  ``omnidesk-<case_id>``. An empty line (an attachment only) gets the clarifying question
  (``utter_ask_what_help``). When the NLU took the message for ``spam`` the case is marked as spam.
* ``case_returned``: an operator gave the case back to the bot (a label / status rule) →
  ``HandoffService.return_to_bot``; the gateway's relay then greets the customer back.
* ``draft_rated``: an operator liked / disliked the bot's draft (a label rule) → ``Copilot.rate``
  of the case's last draft: the same copilot statistics as the operator console.

**Out** — every bot line is posted as a staff reply (``POST /api/cases/{id}/messages.json``), buttons
as numbered text options; through the durable outbox of :mod:`channels.omnidesk_client` (retries,
dead letters, nothing lost when Omnidesk is down).

**Hand-over** — the gateway calls :meth:`OmnideskOutput.on_handover` (``handoff.gateway.notify_handover``)
after a turn put the conversation in the queue: the case is assigned to ``OMNIDESK_HANDOVER_GROUP_ID``
with status ``OMNIDESK_HANDOVER_STATUS`` and the summary is posted as a private note. The
conversation is then taken by the operator ``omnidesk`` in the hand-off core (the case is worked in
Omnidesk, not in the operator console), so the bot stays silent until the case is given back.
A copilot topic does the same, and its draft goes into the private note (never to the customer,
who gets the gateway's ``utter_copilot_hold``); the draft is recorded as shown (``Copilot.draft_shown``)
so a later rating counts.
"""
from __future__ import annotations

import asyncio
import os
import hmac
import html
import logging
import re
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Text

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint
from sanic.request import Request
from sanic.response import HTTPResponse, json as json_response

from channels.omnidesk_client import (
    MESSAGE, NOTE, SPAM, UPDATE_CASE, DeliveryOutbox, OmnideskClient, OmnideskSettings, OmnideskStore,
)

logger = logging.getLogger(__name__)

CHANNEL_NAME = "omnidesk"
SENDER_PREFIX = "omnidesk-"
#: the hand-off core's operator for conversations worked in Omnidesk
OMNIDESK_OPERATOR = "omnidesk"
CLARIFY_RESPONSE = "utter_ask_what_help"
CLARIFY_FALLBACK = "Здравствуйте! Уточните, пожалуйста, чем помочь — опишите вопрос парой слов."
SPAM_INTENT = "spam"
CUSTOMER_EVENTS = ("case_new", "message_new")
RETURN_EVENTS = ("case_returned",)
RATING_EVENTS = ("draft_rated",)
SECRET_HEADER = "X-Omnidesk-Secret"

_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"<\s*(br|/p|/div|/li)\s*/?\s*>", re.IGNORECASE)


def sender_for(case_id: int) -> str:
    return f"{SENDER_PREFIX}{int(case_id)}"


def case_of(sender_id: str) -> Optional[int]:
    if not isinstance(sender_id, str) or not sender_id.startswith(SENDER_PREFIX):
        return None
    try:
        return int(sender_id[len(SENDER_PREFIX):])
    except ValueError:
        return None


def plain_text(content: Any) -> str:
    """Omnidesk content may be HTML (e-mail cases): the text a customer wrote."""
    if not isinstance(content, str):
        return ""
    text = _BREAK.sub("\n", content)
    text = html.unescape(_TAG.sub("", text))
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def render(message: Mapping[str, Any]) -> Optional[str]:
    """A bot message as the text of a staff reply (None: nothing to post)."""
    custom = message.get("custom")
    if isinstance(custom, Mapping) and "handoff" in custom:
        return None  # the hand-over's public form: on_handover does the Omnidesk side
    parts: List[str] = []
    if message.get("text"):
        parts.append(str(message["text"]))
    buttons = message.get("buttons") or message.get("quick_replies") or []
    options = [str(b.get("title") or b.get("payload")) for b in buttons if isinstance(b, Mapping) and (b.get("title") or b.get("payload"))]
    if options:
        parts.append("\n".join(f"{number}. {title}" for number, title in enumerate(options, 1)))
    if message.get("image"):
        parts.append(str(message["image"]))
    if message.get("attachment"):
        parts.append(str(message["attachment"]))
    if not parts and custom is not None:
        logger.info("a custom bot message has no Omnidesk form; not posted: %s", str(custom)[:200])
    text = "\n\n".join(parts).strip()
    return text or None


def handover_note(summary: Mapping[str, Any], draft_id: Optional[int] = None) -> str:
    """The private note of a hand-over: why, the topic, what the bot learnt, the last lines."""
    lines = ["🤖 Ассистент передал обращение оператору."]
    reason = summary.get("reason")
    if reason == "copilot":
        lines[0] = "🤖 Тема в режиме копилота: ответ готовит оператор, ниже — черновик ассистента (клиенту НЕ отправлен)."
    elif reason:
        lines.append(f"Причина: {reason}")
    if summary.get("intent"):
        lines.append(f"Тема: {summary['intent']}")
    if summary.get("ticket_id"):
        lines.append(f"Заявка CRM: {summary['ticket_id']}")
    slots = summary.get("slots")
    if isinstance(slots, Mapping) and slots:
        lines.append("Известно: " + ", ".join(f"{key}={value}" for key, value in slots.items() if value not in (None, "")))
    last = summary.get("last_messages")
    if isinstance(last, list) and last:
        lines.append("Последние сообщения клиента:\n" + "\n".join(f"— {text}" for text in last[-5:]))
    draft = summary.get("draft")
    if isinstance(draft, Mapping) and draft.get("text"):
        lines.append("Черновик ответа:\n" + str(draft["text"]))
        if draft.get("source"):
            lines.append(f"Источник: {draft['source']}")
        lines.append("Оцените черновик меткой «черновик: хорошо» / «черновик: плохо»"
                     + (f" (черновик #{draft_id})." if draft_id is not None else "."))
    return "\n".join(lines)


async def _call(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, lambda: function(*args))


class OmnideskOutput(OutputChannel):
    """Posts the bot's lines to one case (or, from the gateway's relay, to the case named by the
    recipient id) through the outbox; ``on_handover`` is the gateway's hand-over hook."""

    def __init__(self, channel: "OmnideskInput", *, key: Optional[str] = None, service: Any = None, deliver_now: bool = True) -> None:
        self.channel = channel
        self.key = key or f"relay:{uuid.uuid4().hex}"
        self.service = service
        self.deliver_now = deliver_now
        self._count = 0

    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    def _next_key(self, what: str) -> str:
        self._count += 1
        return f"{self.key}:{what}:{self._count}"

    async def _enqueue(self, recipient_id: str, kind: str, payload: Mapping[str, Any]) -> None:
        case_id = case_of(recipient_id)
        if case_id is None:
            logger.error("recipient %r is not an Omnidesk case; %s not posted", recipient_id, kind)
            return
        await _call(self.channel.store.enqueue, self._next_key(kind), case_id, kind, dict(payload))
        if self.deliver_now:
            await self.channel.outbox.deliver_due()

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        text = render(message)
        if text:
            await self._enqueue(recipient_id, MESSAGE, {"content": text})

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        await self.send_response(recipient_id, {"text": text})

    async def mark_spam(self, recipient_id: str) -> None:
        await self._enqueue(recipient_id, SPAM, {})

    async def on_handover(self, recipient_id: str, summary: Dict[str, Any]) -> None:
        """Assign the case to the hand-over group, set its status, post the summary as a private
        note; the conversation is then Omnidesk's (the operator ``omnidesk`` takes it)."""
        settings = self.channel.settings
        fields: Dict[str, Any] = {"status": settings.handover_status}
        if settings.handover_group_id is not None:
            fields["group_id"] = settings.handover_group_id
        draft_id = None
        if self.service is not None:
            draft_id = await _call(self._take_for_omnidesk, recipient_id, summary)
        await self._enqueue(recipient_id, UPDATE_CASE, fields)
        await self._enqueue(recipient_id, NOTE, {"content": handover_note(summary, draft_id)})

    def _take_for_omnidesk(self, conversation_id: str, summary: Mapping[str, Any]) -> Optional[int]:
        from handoff.copilot import Copilot, CopilotModes
        from handoff.drafts import attached_draft
        from handoff.errors import HandoffError

        try:
            self.service.take(conversation_id, OMNIDESK_OPERATOR)
        except HandoffError as error:  # a console operator took it meanwhile: theirs
            logger.info("conversation %s not taken for Omnidesk (%s)", conversation_id, error)
            return None
        draft = summary.get("draft")
        if not isinstance(draft, Mapping) or summary.get("reason") != "copilot":
            return None
        try:
            conversation = self.service.conversation(conversation_id)
            line = next((m for m in reversed(conversation.messages)
                         if m.sender == "customer" and m.text == draft.get("for_text")), None)
            shown = attached_draft(summary, line.text if line is not None else "")
            if shown is None:
                return None
            return Copilot(self.service, CopilotModes()).draft_shown(
                conversation_id, OMNIDESK_OPERATOR, shown, message_id=line.id if line is not None else None).id
        except HandoffError as error:
            logger.warning("conversation %s: the copilot draft was not recorded (%s)", conversation_id, error)
            return None


class OmnideskInput(InputChannel):
    """See the module doc."""

    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "OmnideskInput":
        settings = OmnideskSettings.from_env(**dict(credentials or {}))
        from engine.production import require_secrets

        # production mode: no empty, default or short webhook secret or API key (named in the error)
        require_secrets("Omnidesk channel", ["OMNIDESK_WEBHOOK_SECRET", "OMNIDESK_API_KEY"],
                        {**os.environ, "OMNIDESK_WEBHOOK_SECRET": settings.webhook_secret,
                         "OMNIDESK_API_KEY": settings.api_key})
        return cls(settings)

    def __init__(self, settings: Optional[OmnideskSettings] = None, *, client: Optional[OmnideskClient] = None,
                 store: Optional[OmnideskStore] = None) -> None:
        self.settings = settings or OmnideskSettings.from_env()
        self.client = client or OmnideskClient(self.settings)
        self._store = store
        self._outbox: Optional[DeliveryOutbox] = None
        self._retry_task: Optional[asyncio.Task] = None

    # parts, opened on first use
    @property
    def store(self) -> OmnideskStore:
        if self._store is None:
            self._store = OmnideskStore.for_settings(self.settings)
        return self._store

    @property
    def outbox(self) -> DeliveryOutbox:
        if self._outbox is None:
            self._outbox = DeliveryOutbox(self.client, self.store)
        return self._outbox

    def get_output_channel(self) -> OutputChannel:
        """For the gateway's relay (operator replies, welcome-back lines): posts at once."""
        return OmnideskOutput(self)

    # --- the webhook ----------------------------------------------------------------------------

    def _secret_ok(self, request: Request, body: Mapping[str, Any]) -> bool:
        expected = self.settings.webhook_secret
        if not expected:
            return False
        given = request.headers.get(SECRET_HEADER) or request.args.get("secret") or body.get("secret") or ""
        return hmac.compare_digest(str(given).encode("utf-8"), expected.encode("utf-8"))

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        blueprint = Blueprint(f"omnidesk_webhook_{uuid.uuid4().hex[:8]}")

        @blueprint.listener("after_server_start")
        async def start_retries(app: Any, _loop: Any) -> None:
            if self._retry_task is None or self._retry_task.done():
                self._retry_task = asyncio.get_running_loop().create_task(self.outbox.run())

        @blueprint.listener("before_server_stop")
        async def stop_retries(app: Any, _loop: Any) -> None:
            if self._retry_task is not None:
                self._retry_task.cancel()
                try:
                    await self._retry_task
                except (asyncio.CancelledError, Exception):
                    pass
                self._retry_task = None

        @blueprint.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return json_response({"status": "ok", "configured": self.settings.configured})

        @blueprint.route("/webhook", methods=["POST"])
        async def webhook(request: Request) -> HTTPResponse:
            try:
                body = request.json
            except Exception:
                body = None
            if not isinstance(body, dict):
                return json_response({"error": "a JSON object is expected"}, status=400)
            if not self.settings.webhook_secret:
                return json_response({"error": "OMNIDESK_WEBHOOK_SECRET is not set"}, status=503)
            if not self._secret_ok(request, body):
                return json_response({"error": "wrong secret"}, status=403)
            event, data = _event(body)
            try:
                case_id = int(data.get("case_id"))
            except (TypeError, ValueError):
                return json_response({"error": "object.case_id (an integer) is required"}, status=400)
            gateway = getattr(request.app.ctx, "handover_gateway", None)
            if event in CUSTOMER_EVENTS:
                result = await self._customer_line(request, on_new_message, gateway, event, case_id, data)
            elif event in RETURN_EVENTS:
                result = await self._given_back(gateway, case_id)
            elif event in RATING_EVENTS:
                result = await self._rated(gateway, case_id, data)
            else:
                return json_response({"error": f"unknown event {event!r}"}, status=400)
            return json_response({"result": result})

        return blueprint

    async def _customer_line(self, request: Request, on_new_message: Callable[[UserMessage], Awaitable[Any]],
                             gateway: Any, event: str, case_id: int, data: Mapping[str, Any]) -> str:
        if _truthy(data.get("note")) or _truthy(data.get("sent_via_rule")) or _nonzero(data.get("staff_id")):
            return "ignored"  # staff replies, notes (ours too), automatic messages
        message_id = data.get("message_id")
        key = f"message:{message_id}" if message_id not in (None, "", 0, "0") else f"case:{case_id}:first"
        if not await _call(self.store.claim_message, key, case_id):
            logger.info("omnidesk %s of case %s seen before: a webhook retry, ignored", key, case_id)
            return "duplicate"
        sender = sender_for(case_id)
        service = getattr(gateway, "service", None)
        output = OmnideskOutput(self, key=key, service=service, deliver_now=False)
        text = plain_text(data.get("content") or data.get("content_html") or "")
        try:
            if not text:
                await self._clarify(gateway, output, sender)
            else:
                metadata = {"omnidesk": {"case_id": case_id, "message_id": message_id, "user_id": data.get("user_id"), "event": event}}
                await on_new_message(UserMessage(text, output, sender, input_channel=self.name(),
                                                 message_id=str(message_id) if message_id else None, metadata=metadata))
                if await self._last_intent(request, sender) == SPAM_INTENT:
                    await output.mark_spam(sender)
        except Exception:
            if output._count == 0:  # nothing said yet: let Omnidesk's retry redo it
                await _call(self.store.release_message, key)
            raise
        await self.outbox.deliver_due()
        return "ok"

    async def _clarify(self, gateway: Any, output: OmnideskOutput, sender: str) -> None:
        """An empty line (an attachment, an empty form): the clarifying question — when the bot owns
        the conversation."""
        text = CLARIFY_FALLBACK
        if gateway is not None:
            text = await gateway.say(CLARIFY_RESPONSE, sender, CHANNEL_NAME) or CLARIFY_FALLBACK
            if text == "" or text is None:
                text = CLARIFY_FALLBACK
            try:
                if not await _call(gateway.service.record_bot_message, sender, text):
                    return  # with an operator: the operator answers
            except Exception:
                logger.exception("conversation %s: the clarifying question was not recorded", sender)
        await output.send_response(sender, {"text": text})

    async def _last_intent(self, request: Request, sender: str) -> Optional[str]:
        agent = getattr(request.app.ctx, "agent", None)
        store = getattr(agent, "tracker_store", None)
        if store is None:
            return None
        try:
            tracker = await store.retrieve(sender)
            latest = getattr(tracker, "latest_message", None)
            return ((getattr(latest, "intent", None) or {}).get("name")) if latest is not None else None
        except Exception:
            logger.exception("conversation %s: the last intent could not be read", sender)
            return None

    async def _given_back(self, gateway: Any, case_id: int) -> str:
        """The case is the bot's again (the "give back" rule fired)."""
        from handoff.errors import HandoffError
        from handoff.machine import State

        if gateway is None:
            return "ignored"
        sender = sender_for(case_id)
        service = gateway.service

        def give_back() -> str:
            try:
                view = service.conversation(sender, with_messages=False)
            except HandoffError:
                return "unknown"
            if view.state is State.WAITING:
                view = service.take(sender, OMNIDESK_OPERATOR)
            if view.state is not State.OPERATOR:
                return "noop"  # already the bot's (a retried webhook) or closed
            service.return_to_bot(sender, view.operator_id or OMNIDESK_OPERATOR, reason="given back in Omnidesk")
            return "ok"

        result = await _call(give_back)
        if result == "ok":
            try:
                while await gateway.relay_once():  # the welcome-back line goes out now, not at the next poll
                    pass
            except Exception:
                logger.exception("conversation %s: the welcome-back line waits for the relay", sender)
        return result

    async def _rated(self, gateway: Any, case_id: int, data: Mapping[str, Any]) -> str:
        """An operator's like / dislike of the bot's last draft on the case."""
        from handoff.copilot import Copilot, CopilotModes
        from handoff.models import RATINGS

        rating = str(data.get("rating") or data.get("label") or "").strip().lower()
        rating = {"хорошо": "like", "плохо": "dislike", "up": "like", "down": "dislike"}.get(rating, rating)
        if rating not in RATINGS or gateway is None:
            return "ignored"
        staff = data.get("staff_id")
        operator = f"{OMNIDESK_OPERATOR}:{staff}" if _nonzero(staff) else OMNIDESK_OPERATOR
        copilot = Copilot(gateway.service, CopilotModes())

        def rate() -> str:
            drafts = [e for e in copilot.events(sender_for(case_id)) if e["kind"] == "draft_shown"]
            if not drafts:
                return "no_draft"
            copilot.rate(drafts[-1]["draft_id"], operator, rating)
            return "ok"

        return await _call(rate)


def _event(body: Mapping[str, Any]) -> "tuple[str, Mapping[str, Any]]":
    data = body.get("object") if isinstance(body.get("object"), Mapping) else body
    event = str(body.get("type") or body.get("event") or data.get("type") or data.get("event") or "").strip()
    return event, data


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes")


def _nonzero(value: Any) -> bool:
    if value in (None, "", False):
        return False
    try:
        return int(value) != 0
    except (TypeError, ValueError):
        return False


__all__ = ["OmnideskInput", "OmnideskOutput", "case_of", "handover_note", "plain_text", "render", "sender_for"]
