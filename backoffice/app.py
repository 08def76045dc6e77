"""The HTTP boundary: routes, bearer-token auth, JSON in and out, typed errors → JSON.

Handlers parse input (``validation``), run a use case (``services``) in a worker thread (the
database calls are blocking) and shape the reply; nothing else happens here.
"""
from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
from datetime import timedelta
from typing import Any, Callable, Optional, TypeVar

from sanic import Sanic
from sanic.exceptions import SanicException
from sanic.request import Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response
from sqlalchemy import text

from backoffice import validation
from backoffice.db import (
    SessionFactory,
    create_tables,
    engine_from_settings,
    make_session_factory,
    read_transaction,
)
from backoffice.errors import (
    BackofficeError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from backoffice.openapi import build_openapi
from backoffice.security import tokens_match
from backoffice.rules import LockoutPolicy
from backoffice.services import audit, catalogue, certificates, lockouts, orders, refunds, resends, tickets
from backoffice.settings import BackofficeSettings
from backoffice.timeutil import Clock, utcnow

logger = logging.getLogger("backoffice")

PUBLIC_PATHS = frozenset({"/health", "/openapi.json"})
MAX_BODY_BYTES = 1_000_000
_app_numbers = itertools.count(1)

T = TypeVar("T")


def _reply(body: Any, status: int = 200, headers: Optional[dict] = None) -> HTTPResponse:
    return json_response(
        body, status=status, headers=headers, dumps=functools.partial(json.dumps, ensure_ascii=False)
    )


def error_reply(error: BackofficeError) -> HTTPResponse:
    return _reply(error.to_dict(), status=error.http_status, headers=error.http_headers() or None)


def _from_sanic(exception: SanicException) -> BackofficeError:
    status = getattr(exception, "status_code", 500) or 500
    if status == 404:
        return NotFound("No such endpoint.")
    if status == 405:
        return MethodNotAllowed()
    if status == 413:
        return PayloadTooLarge()
    if 400 <= status < 500:
        return InvalidRequest(str(exception) or None)
    return InternalError()


def _bearer_token(request: Request) -> Optional[str]:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def create_app(
    settings: BackofficeSettings,
    session_factory: Optional[SessionFactory] = None,
    *,
    clock: Clock = utcnow,
) -> Sanic:
    """Build the service. Without ``session_factory`` the database of ``settings`` is opened and
    its tables are created if missing."""
    if session_factory is None:
        engine = engine_from_settings(settings)
        create_tables(engine)
        session_factory = make_session_factory(engine)
    sessions: SessionFactory = session_factory
    lockout = LockoutPolicy(settings.lockout_max_failures, timedelta(minutes=settings.lockout_window_minutes))

    app = Sanic(f"darim_backoffice_{next(_app_numbers)}", configure_logging=False)
    app.config.REQUEST_MAX_SIZE = MAX_BODY_BYTES
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.ctx.settings = settings
    app.ctx.session_factory = sessions

    async def run(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(function, *args, **kwargs))

    def actor_of(request: Request) -> str:
        return validation.actor(request.headers.get("x-actor"))

    # --- boundary: auth and errors ------------------------------------------------------------

    @app.middleware("request")
    async def require_token(request: Request) -> Optional[HTTPResponse]:
        if request.path in PUBLIC_PATHS:
            return None
        token = _bearer_token(request)
        if token is None or not tokens_match(token, settings.api_token):
            return error_reply(Unauthorized())
        return None

    @app.exception(BackofficeError)
    async def on_typed_error(_request: Request, error: BackofficeError) -> HTTPResponse:
        return error_reply(error)

    @app.exception(SanicException)
    async def on_sanic_error(_request: Request, error: SanicException) -> HTTPResponse:
        return error_reply(_from_sanic(error))

    @app.exception(Exception)
    async def on_unexpected(request: Request, error: Exception) -> HTTPResponse:
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return error_reply(InternalError())

    # --- public -------------------------------------------------------------------------------

    def _database_ok() -> bool:
        with read_transaction(sessions) as session:
            session.execute(text("SELECT 1"))
        return True

    @app.get("/health")
    async def health(_request: Request) -> HTTPResponse:
        try:
            await run(_database_ok)
        except Exception:  # report, don't crash: the assistant escalates when we're down
            logger.exception("Database check failed")
            return _reply({"status": "degraded", "database": "unavailable"}, status=503)
        return _reply({"status": "ok", "database": "ok"})

    @app.get("/openapi.json")
    async def openapi(_request: Request) -> HTTPResponse:
        return _reply(build_openapi())

    # --- orders -------------------------------------------------------------------------------

    @app.get("/orders/<order_id>")
    async def get_order(_request: Request, order_id: str) -> HTTPResponse:
        return _reply(await run(orders.get_order, sessions, validation.order_id(order_id), clock()))

    @app.post("/orders/<order_id>/verify")
    async def verify(request: Request, order_id: str) -> HTTPResponse:
        parsed_id = validation.order_id(order_id)
        given = validation.verify_request(validation.parse_json_object(request.body))
        verified = await run(
            orders.verify_buyer, sessions, parsed_id, given, now=clock(), actor=actor_of(request), lockout=lockout
        )
        return _reply({"verified": verified})

    @app.get("/orders/<order_id>/refund-eligibility")
    async def refund_eligibility(_request: Request, order_id: str) -> HTTPResponse:
        reply = await run(
            orders.refund_eligibility, sessions, validation.order_id(order_id), clock(),
            settings.refund_window_days,
        )
        return _reply(reply)

    @app.post("/orders/<order_id>/resend")
    async def resend(request: Request, order_id: str) -> HTTPResponse:
        parsed_id = validation.order_id(order_id)
        parsed = validation.resend_request(validation.parse_json_object(request.body))
        outcome = await run(
            resends.resend, sessions, parsed_id, parsed, actor=actor_of(request), now=clock(),
            daily_limit=settings.resend_daily_limit, lockout=lockout,
        )
        return _reply(outcome.resend, status=201 if outcome.created else 200)

    # --- certificates and catalogue -----------------------------------------------------------

    @app.post("/certificates/lookup")
    async def lookup(request: Request) -> HTTPResponse:
        code, pin = validation.lookup_request(validation.parse_json_object(request.body))
        found = await run(certificates.lookup, sessions, code, pin, clock(), actor=actor_of(request), lockout=lockout)
        return _reply(found)

    @app.get("/brands")
    async def brands(request: Request) -> HTTPResponse:
        raw = request.args.get("in_catalogue")
        if raw not in (None, "", "true", "false", "1", "0"):
            raise InvalidRequest("'in_catalogue' must be true or false.")
        in_catalogue = None if raw in (None, "") else raw in ("true", "1")
        found = await run(
            catalogue.list_brands, sessions, name=request.args.get("name"), in_catalogue=in_catalogue
        )
        return _reply({"brands": found})

    # --- refunds ------------------------------------------------------------------------------

    @app.post("/refunds")
    async def create_refund(request: Request) -> HTTPResponse:
        parsed = validation.refund_request(validation.parse_json_object(request.body))
        outcome = await run(
            refunds.create_refund, sessions, parsed, actor=actor_of(request), now=clock(),
            window_days=settings.refund_window_days, lockout=lockout,
        )
        return _reply(outcome.refund, status=201 if outcome.created else 200)

    # --- tickets ------------------------------------------------------------------------------

    @app.post("/tickets")
    async def create_ticket(request: Request) -> HTTPResponse:
        parsed = validation.ticket_create(validation.parse_json_object(request.body))
        outcome = await run(tickets.create_ticket, sessions, parsed, actor=actor_of(request), now=clock())
        return _reply(outcome.ticket, status=201 if outcome.created else 200)

    @app.get("/tickets/<ticket_id>")
    async def get_ticket(_request: Request, ticket_id: str) -> HTTPResponse:
        return _reply(await run(tickets.get_ticket, sessions, validation.integer_id(ticket_id), clock()))

    @app.patch("/tickets/<ticket_id>")
    async def update_ticket(request: Request, ticket_id: str) -> HTTPResponse:
        parsed_id = validation.integer_id(ticket_id)
        update = validation.ticket_update(validation.parse_json_object(request.body))
        reply = await run(
            tickets.update_ticket, sessions, parsed_id, update, actor=actor_of(request), now=clock()
        )
        return _reply(reply)

    # --- lockouts of PIN / buyer checks (staff) ------------------------------------------------

    @app.get("/lockouts")
    async def lockout_status(request: Request) -> HTTPResponse:
        where = validation.lockout_subject(request.args.get("kind"), request.args.get("subject"))
        reply = await run(lockouts.status, sessions, where.kind, where.subject, now=clock(), policy=lockout)
        return _reply(reply)

    @app.post("/lockouts/unlock")
    async def lockout_unlock(request: Request) -> HTTPResponse:
        parsed = validation.unlock_request(validation.parse_json_object(request.body))
        return _reply(await run(lockouts.unlock, sessions, parsed, now=clock(), policy=lockout))

    # --- audit --------------------------------------------------------------------------------

    @app.get("/audit")
    async def audit_log(request: Request) -> HTTPResponse:
        limit = validation.positive_int(request.args.get("limit"), "limit", default=100, maximum=1000)
        entries = await run(
            audit.list_entries,
            sessions,
            entity=request.args.get("entity"),
            entity_id=request.args.get("entity_id"),
            action=request.args.get("action"),
            limit=limit,
        )
        return _reply({"entries": entries})

    return app
