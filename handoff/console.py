"""The operator console: a sanic app with a JSON API on :class:`HandoffService` / :class:`Copilot`
and a vanilla-JS page (``handoff/static/console.html``).

    python -m handoff.console serve [--host 127.0.0.1] [--port 8090] [--rasa-url http://127.0.0.1:5005]

Auth: ``Authorization: Bearer <HANDOFF_OPERATOR_TOKEN>`` (the operator's name in ``X-Operator``),
or the cookies ``POST /api/login {token, operator}`` sets. API (errors: ``{"error": {code, message}}``
with the error's HTTP status)::

    GET  /api/queue                              waiting conversations (summary, waiting time)
    GET  /api/mine                               conversations this operator has taken
    GET  /api/conversations/<id>?after=<msg id>  the conversation, messages after the cursor
    POST /api/conversations/<id>/take | return | close
    POST /api/conversations/<id>/reply  {text}
    POST /api/conversations/<id>/draft           copilot draft for the last customer message
    GET  /api/conversations/<id>/copilot         the conversation's copilot events
    POST /api/drafts/<id>/rate {rating: like|dislike} | send {text} | discard
    GET  /api/copilot/stats
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from sanic import Sanic
from sanic.request import Request
from sanic.response import HTTPResponse, file, json as json_response

from handoff.copilot import Copilot, CopilotModes, Draft
from handoff.errors import HandoffError, InvalidInput, NotFound, Unauthorized
from handoff.machine import ConversationView, HandoffService, MessageView
from handoff.settings import PROJECT_ROOT, HandoffSettings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_RASA_URL = "http://127.0.0.1:5005"
TOKEN_COOKIE = "handoff_token"
OPERATOR_COOKIE = "handoff_operator"
#: intents answered from the knowledge base: the draft is the RAG answer
KNOWLEDGE_INTENTS = ("knowledge_question",)
GENERIC_DRAFT = "Здравствуйте! Спасибо, что подождали. Уточните, пожалуйста, детали — я помогу."

_names = itertools.count(1)


async def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args, **kwargs))


def _post_json(url: str, payload: Any, timeout: float = 15.0) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


@lru_cache(maxsize=1)
def _responses() -> Dict[str, str]:
    """The first text of each domain response (``utter_<intent>`` drafts)."""
    from ruamel.yaml import YAML

    try:
        domain = YAML(typ="safe").load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8")) or {}
    except OSError:
        return {}
    texts: Dict[str, str] = {}
    for name, variants in (domain.get("responses") or {}).items():
        for variant in variants or ():
            if isinstance(variant, dict) and variant.get("text") and "{" not in variant["text"]:
                texts[name] = variant["text"]
                break
    return texts


class RasaDraftProvider:
    """A draft from the running assistant: intent + confidence of the customer's message from the
    Rasa server's ``/model/parse``; the knowledge-base answer (with its article) for knowledge
    questions; else the intent's own response from the domain, or a generic line."""

    def __init__(self, rasa_url: str, knowledge: Optional[Callable[[], Any]] = None) -> None:
        self.rasa_url = rasa_url.rstrip("/")
        self._knowledge_factory = knowledge
        self._knowledge: Any = None

    def knowledge(self) -> Any:
        if self._knowledge is None:
            if self._knowledge_factory is not None:
                self._knowledge = self._knowledge_factory()
            else:
                from rag.service import KnowledgeService

                self._knowledge = KnowledgeService.from_settings()
        return self._knowledge

    async def parse(self, text: str) -> Dict[str, Any]:
        try:
            return await _call(_post_json, f"{self.rasa_url}/model/parse", {"text": text}) or {}
        except (urllib.error.URLError, OSError, ValueError) as error:
            logger.warning("copilot: /model/parse failed (%s)", error)
            return {}

    async def draft(self, conversation: ConversationView, message: MessageView) -> Draft:
        parsed = await self.parse(message.text)
        intent = (parsed.get("intent") or {}).get("name")
        confidence = (parsed.get("intent") or {}).get("confidence")
        confidence = float(confidence) if isinstance(confidence, (int, float)) else None
        if intent in KNOWLEDGE_INTENTS:
            try:
                result = await _call(self.knowledge().answer, message.text)
            except Exception as error:  # the index is not there: fall through to the generic draft
                logger.warning("copilot: knowledge answer failed (%s)", error)
            else:
                if result.status == "answered":
                    source = f"rag:{result.article_id}" + (f" ({result.source_title})" if result.source_title else "")
                    return Draft(result.text, confidence, source, intent)
        text = _responses().get(f"utter_{intent}") if intent else None
        if text:
            return Draft(text, confidence, f"scenario:{intent}", intent)
        return Draft(GENERIC_DRAFT, confidence, f"generic:{intent or 'unknown'}", intent)


def _body(request: Request) -> Dict[str, Any]:
    try:
        data = request.json
    except Exception:
        raise InvalidInput("The body must be JSON.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInput("The body must be a JSON object.")
    return data


def create_app(
    settings: Optional[HandoffSettings] = None,
    *,
    service: Optional[HandoffService] = None,
    copilot: Optional[Copilot] = None,
    drafts: Any = None,
    rasa_url: Optional[str] = None,
) -> Sanic:
    settings = settings or HandoffSettings.from_env()
    service = service or HandoffService.from_settings(settings)
    copilot = copilot or Copilot(service, CopilotModes.load(settings.modes_file))
    drafts = drafts or RasaDraftProvider(rasa_url or os.environ.get("RASA_SELF_URL") or DEFAULT_RASA_URL)
    app = Sanic(f"handoff_console_{next(_names)}")
    app.ctx.service, app.ctx.copilot, app.ctx.drafts = service, copilot, drafts

    def operator_of(request: Request) -> str:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE)
        if not token or token != settings.operator_token:
            raise Unauthorized()
        operator = (request.headers.get("x-operator") or request.cookies.get(OPERATOR_COOKIE) or "operator").strip()
        if not operator or len(operator) > 64:
            raise InvalidInput("The operator name is 1..64 characters.")
        return operator

    @app.exception(HandoffError)
    async def handoff_error(request: Request, error: HandoffError) -> HTTPResponse:
        return json_response(error.to_dict(), status=error.http_status)

    @app.get("/")
    async def index(request: Request) -> HTTPResponse:
        return await file(STATIC_DIR / "console.html", mime_type="text/html; charset=utf-8")

    app.static("/static", str(STATIC_DIR))

    @app.get("/health")
    async def health(request: Request) -> HTTPResponse:
        return json_response({"status": "ok"})

    @app.post("/api/login")
    async def login(request: Request) -> HTTPResponse:
        data = _body(request)
        if data.get("token") != settings.operator_token:
            raise Unauthorized("Wrong operator token.")
        operator = str(data.get("operator") or "operator").strip()[:64] or "operator"
        response = json_response({"operator": operator})
        for name, value in ((TOKEN_COOKIE, settings.operator_token), (OPERATOR_COOKIE, operator)):
            response.cookies[name] = value
            response.cookies[name]["httponly"] = True
            response.cookies[name]["samesite"] = "Strict"
            response.cookies[name]["path"] = "/"
        return response

    @app.get("/api/me")
    async def me(request: Request) -> HTTPResponse:
        return json_response({"operator": operator_of(request)})

    @app.get("/api/queue")
    async def queue(request: Request) -> HTTPResponse:
        operator_of(request)
        items = await _call(service.queue)
        return json_response({"queue": [item.to_dict() for item in items]})

    @app.get("/api/mine")
    async def mine(request: Request) -> HTTPResponse:
        operator = operator_of(request)
        rows = await _call(service.owned_by, operator)
        return json_response({"conversations": [row.to_dict() for row in rows]})

    @app.get("/api/conversations/<cid>")
    async def conversation(request: Request, cid: str) -> HTTPResponse:
        operator_of(request)
        try:
            after = int(request.args.get("after", 0))
        except ValueError:
            raise InvalidInput("`after` is a message id.") from None
        view = await _call(service.conversation, cid, with_messages=False)
        messages = await _call(service.messages_since, cid, after)
        data = view.to_dict()
        data["messages"] = [message.to_dict() for message in messages]
        return json_response(data)

    @app.post("/api/conversations/<cid>/take")
    async def take(request: Request, cid: str) -> HTTPResponse:
        return json_response((await _call(service.take, cid, operator_of(request))).to_dict())

    @app.post("/api/conversations/<cid>/return")
    async def give_back(request: Request, cid: str) -> HTTPResponse:
        return json_response((await _call(service.return_to_bot, cid, operator_of(request))).to_dict())

    @app.post("/api/conversations/<cid>/close")
    async def close(request: Request, cid: str) -> HTTPResponse:
        return json_response((await _call(service.close, cid, operator_of(request))).to_dict())

    @app.post("/api/conversations/<cid>/reply")
    async def reply(request: Request, cid: str) -> HTTPResponse:
        operator = operator_of(request)
        message = await _call(service.operator_reply, cid, operator, _body(request).get("text"))
        return json_response(message.to_dict(), status=201)

    @app.post("/api/conversations/<cid>/draft")
    async def draft(request: Request, cid: str) -> HTTPResponse:
        operator = operator_of(request)
        view = await _call(service.conversation, cid)
        customer = [message for message in view.messages if message.sender == "customer"]
        if not customer:
            raise NotFound("The customer has not written anything to draft an answer to.")
        proposal = await drafts.draft(view, customer[-1])
        ref = await _call(copilot.draft_shown, cid, operator, proposal, message_id=customer[-1].id)
        data = ref.to_dict()
        data["mode"] = copilot.mode_for(ref.topic).value
        return json_response(data, status=201)

    @app.get("/api/conversations/<cid>/copilot")
    async def copilot_events(request: Request, cid: str) -> HTTPResponse:
        operator_of(request)
        return json_response({"events": await _call(copilot.events, cid)})

    def _draft_id(value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise InvalidInput("A draft id is an integer.") from None

    @app.post("/api/drafts/<did>/rate")
    async def rate(request: Request, did: str) -> HTTPResponse:
        operator = operator_of(request)
        rating = _body(request).get("rating")
        await _call(copilot.rate, _draft_id(did), operator, rating)
        return json_response({"draft_id": _draft_id(did), "rating": rating})

    @app.post("/api/drafts/<did>/send")
    async def send(request: Request, did: str) -> HTTPResponse:
        operator = operator_of(request)
        result = await _call(copilot.send, _draft_id(did), operator, _body(request).get("text"))
        return json_response(
            {"draft_id": result.draft_id, "message": result.message.to_dict(),
             "edit_distance": result.edit_distance, "outcome": result.outcome},
            status=201,
        )

    @app.post("/api/drafts/<did>/discard")
    async def discard(request: Request, did: str) -> HTTPResponse:
        operator = operator_of(request)
        await _call(copilot.discard, _draft_id(did), operator)
        return json_response({"draft_id": _draft_id(did), "outcome": "discarded"})

    @app.get("/api/copilot/stats")
    async def stats(request: Request) -> HTTPResponse:
        operator_of(request)
        topics = await _call(copilot.stats)
        return json_response({"topics": {topic: value.to_dict() for topic, value in topics.items()}})

    return app


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the operator console")
    serve.add_argument("--host", default=None, help="default: HANDOFF_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="default: HANDOFF_CONSOLE_PORT (8090)")
    serve.add_argument("--rasa-url", default=None, help=f"default: RASA_SELF_URL or {DEFAULT_RASA_URL}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    settings = HandoffSettings.from_env()
    app = create_app(settings, rasa_url=args.rasa_url)
    port = args.port if args.port is not None else settings.port
    app.run(host=args.host or settings.host, port=port, workers=1, access_log=False, motd=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
