"""The trainers' part of the operator console: the ``/review`` page and the ``/api/review`` API,
behind their own token (``REVIEW_TRAINER_TOKEN``: an operator's token does not open it, nor the
other way round). Errors are ``{"error": {code, message}}`` like the rest of the console.

    POST /api/review/login {token, trainer}           cookies for the page
    GET  /api/review/inbox?area=nlu|kb&since=7d       undecided misses, clustered, by volume
    GET  /api/review/options                          intents, entities, articles
    POST /api/review/annotate {texts, intent, entities?}  training examples (intent or out_of_scope)
    POST /api/review/dismiss {texts, note?}           out of the inbox, nothing trained
    POST /api/review/undo {text}                      a decision taken back
    GET  /api/review/history                          the latest decisions
    POST /api/review/kb/alias {texts, article}        question aliases of an article
    POST /api/review/kb/articles {id, title, body, questions, tags?}  a new article
    GET  /api/review/kb/articles/<id>                 an article (to correct it)
    POST /api/review/kb/articles/<id>/body {body, texts?}  a corrected body
    POST /api/review/retrain {load?}                  a background `rasa train`, evaluated, loaded if not worse
    GET  /api/review/retrain                          its progress / last result
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from sanic import Sanic
from sanic.request import Request
from sanic.response import HTTPResponse, file, json as json_response

from handoff.console import json_body, off_loop, same_token, with_session_cookies
from handoff.errors import HandoffError
from review.settings import ReviewSettings

STATIC_DIR = Path(__file__).resolve().parent.parent / "handoff" / "static"
TOKEN_COOKIE = "review_token"
TRAINER_COOKIE = "review_trainer"


class _ApiError(HandoffError):
    """A refusal with its own code and status, answered like every console error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.http_status, self.code = status, code


def _texts(data: Dict[str, Any], key: str = "texts") -> list:
    texts = data.get(key)
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts) or len(texts) > 200:
        raise _ApiError(400, "invalid_input", f"'{key}' must be a list of 1..200 strings.")
    return texts


def _string(data: Dict[str, Any], key: str, limit: int = 20000) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise _ApiError(400, "invalid_input", f"'{key}' must be a non-empty string (at most {limit} characters).")
    return value


def add_review_routes(app: Sanic, settings: Optional[ReviewSettings] = None, *,
                      service: Any = None, retrainer: Any = None) -> None:
    """Adds the review page and API to the console app (the service and the retrainer are made
    on first use: the sentence encoder and the training data are not loaded for operators)."""
    settings = settings or ReviewSettings.from_env()
    made: Dict[str, Any] = {"service": service, "retrainer": retrainer}
    making = threading.Lock()

    def review_service() -> Any:
        with making:
            if made["service"] is None:
                from review.service import ReviewService

                made["service"] = ReviewService(settings)
            return made["service"]

    def the_retrainer() -> Any:
        with making:
            if made["retrainer"] is None:
                from review.retrain import Retrainer

                made["retrainer"] = Retrainer.from_env()
            return made["retrainer"]

    app.ctx.review = made

    def trainer_of(request: Request) -> str:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE)
        if not token or not same_token(token, settings.trainer_token):
            raise _ApiError(401, "unauthorized", "A valid trainer token is required.")
        trainer = (request.headers.get("x-trainer") or request.cookies.get(TRAINER_COOKIE) or "trainer").strip()
        if not trainer or len(trainer) > 64:
            raise _ApiError(400, "invalid_input", "The trainer name is 1..64 characters.")
        return trainer

    async def guarded(request: Request, work: Callable[[str], Any], status: int = 200) -> HTTPResponse:
        """Authenticates, runs ``work(trainer)`` off the event loop, turns refusals into 4xx."""
        trainer = trainer_of(request)
        from review.kb_editor import KbEditError
        from review.service import ReviewError

        try:
            result = await off_loop(work, trainer)
        except KbEditError as error:
            raise _ApiError(400, "kb_edit_refused", str(error)) from None
        except ReviewError as error:
            raise _ApiError(404 if error.code == "not_found" else 400, error.code, str(error)) from None
        except LookupError as error:  # an unknown article
            raise _ApiError(404, "not_found", str(error)) from None
        return json_response(result, status=status)

    @app.get("/review")
    async def review_page(request: Request) -> HTTPResponse:
        return await file(STATIC_DIR / "review.html", mime_type="text/html; charset=utf-8")

    @app.post("/api/review/login")
    async def review_login(request: Request) -> HTTPResponse:
        data = json_body(request)
        token = data.get("token")
        if not isinstance(token, str) or not same_token(token, settings.trainer_token):
            raise _ApiError(401, "unauthorized", "Wrong trainer token.")
        trainer = str(data.get("trainer") or "trainer").strip()[:64] or "trainer"
        return with_session_cookies(json_response({"trainer": trainer}),
                                    {TOKEN_COOKIE: settings.trainer_token, TRAINER_COOKIE: trainer})

    @app.get("/api/review/me")
    async def review_me(request: Request) -> HTTPResponse:
        return json_response({"trainer": trainer_of(request)})

    @app.get("/api/review/inbox")
    async def review_inbox(request: Request) -> HTTPResponse:
        from datetime import datetime, timezone

        from analytics.service import parse_moment

        try:
            since = parse_moment(request.args.get("since"), datetime.now(timezone.utc))
        except ValueError as error:
            raise _ApiError(400, "invalid_input", str(error)) from None
        area = request.args.get("area") or None
        return await guarded(request, lambda trainer: review_service().inbox(
            since=since.timestamp() if since else None, area=area))

    @app.get("/api/review/options")
    async def review_options(request: Request) -> HTTPResponse:
        return await guarded(request, lambda trainer: review_service().options())

    @app.post("/api/review/annotate")
    async def review_annotate(request: Request) -> HTTPResponse:
        data = json_body(request)
        texts, intent = _texts(data), _string(data, "intent", 64)
        entities = data.get("entities") or {}
        if not isinstance(entities, dict):
            raise _ApiError(400, "invalid_input", "'entities' maps a text to its [{entity, value, start, end}].")
        return await guarded(request, lambda trainer: review_service().annotate(texts, intent, trainer, entities))

    @app.post("/api/review/dismiss")
    async def review_dismiss(request: Request) -> HTTPResponse:
        data = json_body(request)
        texts, note = _texts(data), data.get("note")
        if note is not None and not isinstance(note, str):
            raise _ApiError(400, "invalid_input", "'note' must be a string.")
        return await guarded(request, lambda trainer: review_service().dismiss(texts, trainer, note))

    @app.post("/api/review/undo")
    async def review_undo(request: Request) -> HTTPResponse:
        text = _string(json_body(request), "text", 4000)
        return await guarded(request, lambda trainer: review_service().undo(text, trainer))

    @app.get("/api/review/history")
    async def review_history(request: Request) -> HTTPResponse:
        return await guarded(request, lambda trainer: {"decisions": review_service().history()})

    @app.post("/api/review/kb/alias")
    async def review_alias(request: Request) -> HTTPResponse:
        data = json_body(request)
        texts, article = _texts(data), _string(data, "article", 64)
        return await guarded(request, lambda trainer: review_service().add_alias(texts, article, trainer))

    @app.post("/api/review/kb/articles")
    async def review_new_article(request: Request) -> HTTPResponse:
        data = json_body(request)
        article_id, title, body = _string(data, "id", 64), _string(data, "title", 200), _string(data, "body")
        questions = _texts(data, "questions")
        tags = data.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise _ApiError(400, "invalid_input", "'tags' must be a list of strings.")
        return await guarded(request, lambda trainer: review_service().create_article(
            article_id, title, body, questions, trainer, tags=tags), status=201)

    @app.get("/api/review/kb/articles/<article_id>")
    async def review_article(request: Request, article_id: str) -> HTTPResponse:
        return await guarded(request, lambda trainer: review_service().article(article_id))

    @app.post("/api/review/kb/articles/<article_id>/body")
    async def review_correct(request: Request, article_id: str) -> HTTPResponse:
        data = json_body(request)
        body = _string(data, "body")
        texts = _texts(data) if data.get("texts") else []
        return await guarded(request, lambda trainer: review_service().correct_article(article_id, body, trainer, texts))

    @app.post("/api/review/retrain")
    async def review_retrain(request: Request) -> HTTPResponse:
        data = json_body(request)
        load = data.get("load", True)
        if not isinstance(load, bool):
            raise _ApiError(400, "invalid_input", "'load' must be true or false.")
        from review.retrain import RetrainBusy

        def start(trainer: str) -> Any:
            try:
                return the_retrainer().start(requested_by=trainer, load=load)
            except RetrainBusy as error:
                raise _ApiError(409, "retrain_running", str(error)) from None

        return await guarded(request, start, status=202)

    @app.get("/api/review/retrain")
    async def review_retrain_status(request: Request) -> HTTPResponse:
        return await guarded(request, lambda trainer: the_retrainer().status())
