"""The operator console: a sanic app with a JSON API on :class:`HandoffService` / :class:`Copilot`
and a vanilla-JS page (``handoff/static/console.html``).

    python -m handoff.console serve [--host 127.0.0.1] [--port 8090] [--rasa-url http://127.0.0.1:5005]

Copilot drafts come from the running assistant (``handoff.drafts``: Rasa at ``RASA_SELF_URL``, the
action server at ``ACTION_SERVER_URL``).

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
    GET  /api/copilot/stats                      per topic: drafts, like rate, sent as-is, edits, mode
    GET  /api/copilot/modes                      the modes and the audit of their changes
    POST /api/copilot/modes {topic, mode, reason}  move a topic (copilot.yml rewritten, audited)
    GET  /api/analytics/report?since=7d&until=…  the analytics report (also for BI tools)
    GET  /analytics                              the dashboard page
    /review, /api/review/…                       the trainers' review inbox (own token: review/console.py)
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import itertools
import logging
import os
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from sanic import Sanic
from sanic.request import Request
from sanic.response import HTTPResponse, file, json as json_response

from engine.env import env_raw
from handoff.copilot import Copilot, CopilotModes
from handoff.drafts import AssistantDraftProvider, attached_draft
from handoff.errors import HandoffError, InvalidInput, NotFound, Unauthorized
from handoff.machine import HandoffService
from handoff.settings import HandoffSettings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
TOKEN_COOKIE = "handoff_token"
OPERATOR_COOKIE = "handoff_operator"
_names = itertools.count(1)


async def off_loop(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Runs blocking work (the database, the encoder) in a worker thread, not on the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args, **kwargs))


def _shared_knowledge_index() -> Optional[Callable[[], Any]]:
    """A local knowledge service for drafts when the index is a Qdrant server (shared by many
    processes); None with the embedded folder, which the action server holds."""
    from rag.settings import RagSettings

    try:
        settings = RagSettings.load()
    except (OSError, ValueError) as error:
        logger.warning("copilot: RAG settings unreadable (%s); drafts ask the action server only", error)
        return None
    if not settings.qdrant_url:
        return None
    from rag.service import KnowledgeService

    return lambda: KnowledgeService.from_settings(settings)


def same_token(given: str, expected: str) -> bool:
    """Constant time: how long a wrong token takes says nothing about the right one."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def with_session_cookies(response: HTTPResponse, values: Dict[str, str]) -> HTTPResponse:
    """A login's cookies: httponly (the page's scripts never see the token), same-site only."""
    for name, value in values.items():
        response.cookies[name] = value
        response.cookies[name]["httponly"] = True
        response.cookies[name]["samesite"] = "Strict"
        response.cookies[name]["path"] = "/"
    return response


def json_body(request: Request) -> Dict[str, Any]:
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
    review: Any = None,
) -> Sanic:
    settings = settings or HandoffSettings.from_env()
    service = service or HandoffService.from_settings(settings)
    copilot = copilot or Copilot(service, CopilotModes.load(settings.modes_file))
    drafts = drafts or AssistantDraftProvider(
        rasa_url or settings.rasa_url, settings.action_server_url, knowledge=_shared_knowledge_index()
    )
    app = Sanic(f"handoff_console_{next(_names)}")
    app.ctx.service, app.ctx.copilot, app.ctx.drafts = service, copilot, drafts

    def operator_of(request: Request) -> str:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE)
        if not token or not same_token(token, settings.operator_token):
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
        data = json_body(request)
        if not isinstance(data.get("token"), str) or not same_token(data["token"], settings.operator_token):
            raise Unauthorized("Wrong operator token.")
        operator = str(data.get("operator") or "operator").strip()[:64] or "operator"
        return with_session_cookies(json_response({"operator": operator}),
                                    {TOKEN_COOKIE: settings.operator_token, OPERATOR_COOKIE: operator})

    @app.get("/api/me")
    async def me(request: Request) -> HTTPResponse:
        return json_response({"operator": operator_of(request)})

    @app.get("/api/queue")
    async def queue(request: Request) -> HTTPResponse:
        operator_of(request)
        items = await off_loop(service.queue)
        return json_response({"queue": [item.to_dict() for item in items]})

    @app.get("/api/mine")
    async def mine(request: Request) -> HTTPResponse:
        operator = operator_of(request)
        rows = await off_loop(service.owned_by, operator)
        return json_response({"conversations": [row.to_dict() for row in rows]})

    @app.get("/api/conversations/<cid>")
    async def conversation(request: Request, cid: str) -> HTTPResponse:
        operator_of(request)
        try:
            after = int(request.args.get("after", 0))
        except ValueError:
            raise InvalidInput("`after` is a message id.") from None
        view = await off_loop(service.conversation, cid, with_messages=False)
        messages = await off_loop(service.messages_since, cid, after)
        data = view.to_dict()
        data["messages"] = [message.to_dict() for message in messages]
        return json_response(data)

    @app.post("/api/conversations/<cid>/take")
    async def take(request: Request, cid: str) -> HTTPResponse:
        return json_response((await off_loop(service.take, cid, operator_of(request))).to_dict())

    @app.post("/api/conversations/<cid>/return")
    async def give_back(request: Request, cid: str) -> HTTPResponse:
        return json_response((await off_loop(service.return_to_bot, cid, operator_of(request))).to_dict())

    @app.post("/api/conversations/<cid>/close")
    async def close(request: Request, cid: str) -> HTTPResponse:
        return json_response((await off_loop(service.close, cid, operator_of(request))).to_dict())

    @app.post("/api/conversations/<cid>/reply")
    async def reply(request: Request, cid: str) -> HTTPResponse:
        operator = operator_of(request)
        message = await off_loop(service.operator_reply, cid, operator, json_body(request).get("text"))
        return json_response(message.to_dict(), status=201)

    @app.post("/api/conversations/<cid>/draft")
    async def draft(request: Request, cid: str) -> HTTPResponse:
        operator = operator_of(request)
        view = await off_loop(service.conversation, cid)
        customer = [message for message in view.messages if message.sender == "customer"]
        if not customer:
            raise NotFound("The customer has not written anything to draft an answer to.")
        # a copilot hand-over attached the bot's draft for this message; else ask the assistant now
        proposal = attached_draft(view.summary, customer[-1].text) or await drafts.draft(view, customer[-1])
        ref = await off_loop(copilot.draft_shown, cid, operator, proposal, message_id=customer[-1].id)
        data = ref.to_dict()
        data["mode"] = copilot.mode_for(ref.topic).value
        return json_response(data, status=201)

    @app.get("/api/conversations/<cid>/copilot")
    async def copilot_events(request: Request, cid: str) -> HTTPResponse:
        operator_of(request)
        return json_response({"events": await off_loop(copilot.events, cid)})

    def _draft_id(value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise InvalidInput("A draft id is an integer.") from None

    @app.post("/api/drafts/<did>/rate")
    async def rate(request: Request, did: str) -> HTTPResponse:
        operator = operator_of(request)
        rating = json_body(request).get("rating")
        await off_loop(copilot.rate, _draft_id(did), operator, rating)
        return json_response({"draft_id": _draft_id(did), "rating": rating})

    @app.post("/api/drafts/<did>/send")
    async def send(request: Request, did: str) -> HTTPResponse:
        operator = operator_of(request)
        result = await off_loop(copilot.send, _draft_id(did), operator, json_body(request).get("text"))
        return json_response(
            {"draft_id": result.draft_id, "message": result.message.to_dict(),
             "edit_distance": result.edit_distance, "outcome": result.outcome},
            status=201,
        )

    @app.post("/api/drafts/<did>/discard")
    async def discard(request: Request, did: str) -> HTTPResponse:
        operator = operator_of(request)
        await off_loop(copilot.discard, _draft_id(did), operator)
        return json_response({"draft_id": _draft_id(did), "outcome": "discarded"})

    @app.get("/analytics")
    async def analytics_page(request: Request) -> HTTPResponse:
        return await file(STATIC_DIR / "analytics.html", mime_type="text/html; charset=utf-8")

    @app.get("/api/analytics/report")
    async def analytics_report(request: Request) -> HTTPResponse:
        """The analytics report (README «Analytics»): ``since`` / ``until`` (7d, 2026-12-01…),
        ``conversations=1`` for each conversation's outcome. Also for BI tools (same token)."""
        operator_of(request)
        from analytics.service import make_report
        from analytics.settings import AnalyticsSettings

        analytics_settings = AnalyticsSettings.from_env()
        analytics_settings = replace(analytics_settings, handoff_database_url=settings.database_url)
        try:
            report = await off_loop(make_report, analytics_settings, since=request.args.get("since"),
                                 until=request.args.get("until"),
                                 with_conversations=request.args.get("conversations") in ("1", "true"))
        except ValueError as error:
            raise InvalidInput(str(error)) from None
        return json_response(report.to_dict())

    @app.post("/api/copilot/modes")
    async def change_mode(request: Request) -> HTTPResponse:
        """Move a topic between autonomous and copilot (copilot.yml rewritten, audited)."""
        operator = operator_of(request)
        body = json_body(request)
        from handoff.modes import set_mode

        change = await off_loop(set_mode, service, settings.modes_file, body.get("topic"), body.get("mode"),
                             operator, body.get("reason"))
        copilot.modes = CopilotModes.load(settings.modes_file)
        return json_response(change.to_dict(), status=201)

    @app.get("/api/copilot/modes")
    async def modes(request: Request) -> HTTPResponse:
        operator_of(request)
        from handoff.modes import mode_history

        history = await off_loop(mode_history, service)
        current = copilot.modes
        return json_response({"default": current.default.value,
                              "topics": {topic: mode.value for topic, mode in current.topics.items()},
                              "history": [change.to_dict() for change in history]})

    @app.get("/api/copilot/stats")
    async def stats(request: Request) -> HTTPResponse:
        operator_of(request)
        topics = await off_loop(copilot.stats)
        # with each topic's current mode: the figures say whether to move it to autonomous
        return json_response({"topics": {
            topic: {**value.to_dict(), "mode": copilot.mode_for(topic).value} for topic, value in topics.items()
        }})

    from review.console import add_review_routes
    from review.settings import ReviewSettings

    if review is None:  # the trainers' decisions: this console's database unless REVIEW_DATABASE_URL says otherwise
        review = ReviewSettings.from_env()
        review = replace(review, handoff_database_url=settings.database_url,
                         review_database_url=env_raw(os.environ, "REVIEW_DATABASE_URL") or settings.database_url)
    add_review_routes(app, review)
    return app


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the operator console")
    serve.add_argument("--host", default=None, help="default: HANDOFF_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="default: HANDOFF_CONSOLE_PORT (8090)")
    serve.add_argument("--rasa-url", default=None, help="default: RASA_SELF_URL (http://127.0.0.1:5005)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    from engine.production import SECRETS_OF, InsecureConfiguration, require_secrets

    try:
        require_secrets("operator console", SECRETS_OF["operator console"])
    except InsecureConfiguration as error:
        print(f"✗ {error}", file=sys.stderr)
        return 2
    settings = HandoffSettings.from_env()
    app = create_app(settings, rasa_url=args.rasa_url)
    port = args.port if args.port is not None else settings.port
    app.run(host=args.host or settings.host, port=port, workers=1, access_log=False, motd=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
