"""engine.rasa_runtime against Rasa's own implementations: the patched code must do what Rasa does.

Rasa's originals. ``apply_runtime_fixes()`` replaces methods on Rasa's classes for the whole
process, and another test (or the code under test) may have called it before this module is
imported, so reading ``RemoteAction._validate_action_result`` & co. off the classes is not
reliable. Instead each Rasa module concerned is executed once more from its own source file into
a private module object (:func:`_pristine`, never put in ``sys.modules``): its classes carry
Rasa's methods as written, whatever has been patched since. They are plain functions, called on
the real objects (``ORIGINAL_RUN(runner, ...)``), and the code they call (``dask``, ``jsonschema``,
``aiohttp``, the real classes' other methods) is the real one. ``test_originals_are_rasas_own``
checks that they are Rasa's code and not the fixes.

The fixes are installed per test by the ``fixes`` fixture (``apply_runtime_fixes()`` with
``monkeypatch`` holding the previous class attributes and flag), so this module leaves the
process as it found it whatever order the suite runs in.

The trained-model test (graph runner on real messages and trackers) is ``slow``.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib.util
import json
import math
import re
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterator, List, Tuple

import aiohttp
import pytest
import rasa
import rasa.core.actions.action as action_module
import rasa.engine.runner.dask as dask_module
import rasa.utils.endpoints as endpoints_module
from aiohttp import web
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    Event,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.utils.schemas.events import EVENT_SCHEMA
from rasa.utils.endpoints import EndpointConfig, read_endpoint_config

import engine.rasa_runtime as runtime

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _pristine(module: ModuleType) -> ModuleType:
    """``module`` executed again from its source file, for nobody else (not in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(module.__name__, module.__file__)
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    return fresh


ORIGINAL_VALIDATE = _pristine(action_module).RemoteAction._validate_action_result
ORIGINAL_CALL_FORMAT = _pristine(action_module).RemoteAction._action_call_format
ORIGINAL_RUN = _pristine(dask_module).DaskGraphRunner.run
ORIGINAL_SESSION = _pristine(endpoints_module).EndpointConfig.session

#: (class, attribute, the fix apply_runtime_fixes() installs there)
PATCHED = [
    (RemoteAction, "_validate_action_result", runtime._validate_action_result),
    (RemoteAction, "_action_call_format", runtime._action_call_format),
    (DaskGraphRunner, "run", runtime._run_graph),
    (EndpointConfig, "session", runtime._shared_session),
]


@pytest.fixture
def fixes(monkeypatch):
    """``apply_runtime_fixes()`` for one test; afterwards the classes and the flag are as before."""
    for cls, name, _ in PATCHED:
        monkeypatch.setattr(cls, name, cls.__dict__[name])
    monkeypatch.setattr(runtime, "_applied", False)
    runtime.apply_runtime_fixes()


def test_originals_are_rasas_own():
    for original, (cls, name, fix) in zip(
        [ORIGINAL_VALIDATE, ORIGINAL_CALL_FORMAT, ORIGINAL_RUN, ORIGINAL_SESSION], PATCHED
    ):
        module = {RemoteAction: action_module, DaskGraphRunner: dask_module, EndpointConfig: endpoints_module}[cls]
        assert original.__qualname__ == f"{cls.__name__}.{name}"
        assert original.__code__.co_filename == module.__file__
        assert original.__code__ is not fix.__code__
        live = cls.__dict__[name]
        if live is not fix:  # not patched in this process (yet): the copy is the very same code
            assert live.__code__ == original.__code__


def test_apply_runtime_fixes_installs_all_four_once(fixes):
    for cls, name, fix in PATCHED:
        assert cls.__dict__[name] is fix
    RemoteAction._validate_action_result = ORIGINAL_VALIDATE  # a second call must not re-install
    try:
        runtime.apply_runtime_fixes()
        assert RemoteAction.__dict__["_validate_action_result"] is ORIGINAL_VALIDATE
    finally:
        RemoteAction._validate_action_result = runtime._validate_action_result


# --- 1. validating the action server's response ---------------------------------------------

ENTITY = {
    "entity": "order_id", "value": "40817263", "start": 28, "end": 36, "confidence": 0.99,
    "extractor": "RegexEntityExtractor", "role": None, "group": None,
}
PARSE_DATA = {
    "text": "хочу вернуть деньги за заказ 40817263",
    "intent": {"name": "refund_request", "confidence": 0.97},
    "intent_ranking": [{"name": "refund_request", "confidence": 0.97}, {"name": "cancel", "confidence": 0.02}],
    "entities": [ENTITY],
    "response_selector": {"all_retrieval_intents": [], "default": {"response": {"responses": None}, "ranking": []}},
}
BOT_DATA = {
    "elements": None, "quick_replies": None, "attachment": None, "image": None,
    "buttons": [{"title": "Да", "payload": "/affirm"}, {"title": "Нет", "payload": "/deny"}],
    "custom": {"type": "handoff", "ticket": "T-1029", "queue": ["оплата", 2, None]},
}
TS = 1733461200.25

#: one realistic event of every type EVENT_SCHEMA allows (more for some)
VALID_EVENTS: List[Dict[str, Any]] = [
    {"event": "user", "timestamp": TS, "text": PARSE_DATA["text"], "input_channel": "rest",
     "message_id": "6f1c", "parse_data": PARSE_DATA, "metadata": {"channel": "webchat"}},
    {"event": "user", "text": None, "parse_data": {"intent": {}, "entities": []}},
    {"event": "action", "timestamp": TS, "name": "validate_refund_form", "policy": "RulePolicy",
     "confidence": 1.0, "hide_rule_turn": False, "action_text": None},
    {"event": "action", "name": None, "policy": None, "confidence": None, "action_text": "Готово!"},
    {"event": "slot", "timestamp": TS, "name": "order_id", "value": "40817263"},
    {"event": "slot", "name": "refund_confirmed", "value": None},
    {"event": "slot", "name": "buyer_check", "value": {"email": "ivan@mail.ru", "попытки": [1, 2]}},
    {"event": "entities", "entities": [ENTITY, {"entity": "email", "value": "ivan@mail.ru"}]},
    {"event": "user_featurization", "use_text_for_featurization": False},
    {"event": "cancel_reminder", "name": "refund_reminder", "intent": "EXTERNAL_reminder", "entities": None},
    {"event": "reminder", "intent": "EXTERNAL_reminder", "entities": [ENTITY],
     "date_time": "2024-12-06T05:00:00", "name": "refund_reminder", "kill_on_user_msg": True},
    {"event": "action_execution_rejected", "name": "refund_form", "policy": None, "confidence": None},
    {"event": "form_validation", "validate": False},
    {"event": "loop_interrupted", "is_interrupted": True},
    {"event": "form", "name": "refund_form"},
    {"event": "active_loop", "timestamp": None, "name": "refund_form"},
    {"event": "active_loop", "name": None, "metadata": None},
    {"event": "reset_slots"},
    {"event": "resume"},
    {"event": "pause"},
    {"event": "followup", "name": "action_submit_refund"},
    {"event": "export", "path": "stories.yml"},
    {"event": "restart"},
    {"event": "undo"},
    {"event": "rewind"},
    {"event": "bot", "timestamp": TS, "text": "Укажите e-mail покупателя", "data": BOT_DATA,
     "metadata": {"utter_action": "utter_ask_buyer_check"}},
    {"event": "bot", "text": None, "data": {"custom": {"handoff": True}}},
    {"event": "session_started", "metadata": {}},
    {"event": "agent", "text": "Оператор подключился", "data": None},
]
RESPONSES = [
    {"text": "Заявка на возврат принята", "buttons": [{"title": "Ок", "payload": "/thank"}]},
    {"response": "utter_ask_order_id", "order_id": "40817263"},
    {"custom": {"handoff": {"queue": "оплата"}}, "image": None},
    {},
]

VALID: List[Tuple[str, Any]] = [
    ("nothing", {}),
    ("no events", {"events": []}),
    ("responses only", {"responses": RESPONSES}),
    ("all events and responses", {"events": VALID_EVENTS, "responses": RESPONSES}),
    ("extra top-level key", {"events": [], "responses": [], "tracker": {"x": 1}}),
    ("retrieval intent response selector", {"events": [{"event": "user", "parse_data": {
        "response_selector": {"all_retrieval_intents": {"faq": 1}}}}]}),
    # the first alternative of the response selector's oneOf lets anything else through
    ("junk in the response selector", {"events": [{"event": "user", "parse_data": {
        "response_selector": {"all_retrieval_intents": [], "faq": {"response": {"confidence": "high"}}}}}]}),
] + [(f"event {event['event']} #{i}", {"events": [event]}) for i, event in enumerate(VALID_EVENTS)]

INVALID: List[Tuple[str, Any]] = [
    ("result null", None),
    ("result a list", [{"event": "restart"}]),
    ("result a string", "ok"),
    ("events null", {"events": None}),
    ("events a string", {"events": "slot"}),
    ("events an object", {"events": {"event": "slot", "name": "a", "value": 1}}),
    ("responses a string", {"events": [], "responses": "Готово"}),
    ("responses an object", {"responses": {"text": "Готово"}}),
    ("a response not an object", {"responses": [{"text": "ok"}, "junk"]}),
    ("both invalid", {"events": "x", "responses": "y"}),
    ("unknown event type", {"events": [{"event": "slot_set", "name": "a", "value": 1}]}),
    ("event type in capitals", {"events": [{"event": "Slot", "name": "a", "value": 1}]}),
    ("event type missing", {"events": [{"name": "order_id", "value": "1"}]}),
    ("event type a number", {"events": [{"event": 5}]}),
    ("event type null", {"events": [{"event": None}]}),
    ("event type a list", {"events": [{"event": ["slot"], "name": "a", "value": 1}]}),
    ("event type an object", {"events": [{"event": {"type": "restart"}}]}),
    ("event a string", {"events": ["restart"]}),
    ("event null", {"events": [None]}),
    ("event a list", {"events": [["restart"]]}),
    ("slot without value", {"events": [{"event": "slot", "name": "order_id"}]}),
    ("slot without name", {"events": [{"event": "slot", "value": "1"}]}),
    ("slot name a number", {"events": [{"event": "slot", "name": 5, "value": "1"}]}),
    ("slot with a bad timestamp", {"events": [{"event": "slot", "name": "a", "value": 1, "timestamp": "вчера"}]}),
    ("bad metadata", {"events": [{"event": "bot", "text": "hi", "metadata": "x"}]}),
    ("entities missing", {"events": [{"event": "entities"}]}),
    ("entity without value", {"events": [{"event": "entities", "entities": [{"entity": "email"}]}]}),
    ("user text a number", {"events": [{"event": "user", "text": 5}]}),
    ("user intent name a number", {"events": [{"event": "user", "parse_data": {"intent": {"name": 5}}}]}),
    ("user entity without value, text a number", {"events": [
        {"event": "user", "text": 5, "parse_data": {"entities": [{"entity": "order_id"}]}}]}),
    ("user parse_data a list", {"events": [{"event": "user", "parse_data": [PARSE_DATA]}]}),
    ("response selector matching both alternatives", {"events": [
        {"event": "user", "parse_data": {"response_selector": {"faq": {"response": {}}}}}]}),
    ("action policy an object", {"events": [{"event": "action", "name": "x", "policy": {"a": 1}}]}),
    ("action hide_rule_turn a string", {"events": [{"event": "action", "name": "x", "hide_rule_turn": "no"}]}),
    ("a valid event then an invalid one", {"events": [VALID_EVENTS[4], {"event": "slot", "name": "a"}]}),
    ("two invalid events", {"events": [{"event": "nope"}, {"event": "slot", "value": 1}]}),
    ("invalid event and invalid response", {"events": [{"event": "restart", "timestamp": "x"}], "responses": [1]}),
]


def _outcome(validate: Any, result: Any) -> Any:
    """True, or everything about the ValidationError raised (anything else raised propagates)."""
    action = RemoteAction("validate_refund_form", EndpointConfig("http://127.0.0.1:1/webhook"))
    try:
        return validate(action, copy.deepcopy(result))
    except ValidationError as error:
        return (
            error.message, list(error.path), list(error.absolute_path), list(error.schema_path),
            error.validator, error.validator_value, error.instance, str(error),
        )


def test_valid_corpus_has_every_event_type():
    allowed = {alternative["properties"]["event"]["const"] for alternative in EVENT_SCHEMA["oneOf"]}
    assert {event["event"] for event in VALID_EVENTS} == allowed


@pytest.mark.parametrize("result", [case for _, case in VALID], ids=[name for name, _ in VALID])
def test_valid_responses_are_accepted_like_rasa_does(fixes, result):
    assert _outcome(ORIGINAL_VALIDATE, result) is True
    assert _outcome(RemoteAction._validate_action_result, result) is True
    assert runtime._is_valid_action_result(copy.deepcopy(result))  # by the fast path, not the fallback


@pytest.mark.parametrize("result", [case for _, case in INVALID], ids=[name for name, _ in INVALID])
def test_invalid_responses_raise_rasas_error(fixes, result):
    expected = _outcome(ORIGINAL_VALIDATE, result)
    assert expected is not True
    assert runtime._is_valid_action_result(copy.deepcopy(result)) is False
    assert _outcome(RemoteAction._validate_action_result, result) == expected


# --- 3. the request sent to the action server --------------------------------------------------


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(PROJECT_ROOT / "domain.yml"))


def _refund_tracker(domain: Domain) -> DialogueStateTracker:
    events: List[Event] = [
        ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen"),
        UserUttered("верните деньги за заказ 40817263", {"name": "refund_request", "confidence": 0.98},
                    [{"entity": "order_id", "value": "40817263", "start": 24, "end": 32}]),
        SlotSet("order_id", "40817263"), ActionExecuted("refund_form"), ActiveLoop("refund_form"),
        SlotSet("requested_slot", "buyer_check"), ActionExecuted("action_listen"),
        UserUttered("ivan@mail.ru", {"name": "inform", "confidence": 0.91},
                    [{"entity": "email", "value": "ivan@mail.ru", "start": 0, "end": 12}]),
    ]
    return DialogueStateTracker.from_events("покупатель-1", events, slots=domain.slots)


def _project_action_endpoint() -> EndpointConfig:
    endpoint = read_endpoint_config(str(PROJECT_ROOT / "endpoints.yml"), "action_endpoint")
    assert endpoint is not None and endpoint.kwargs.get("enable_selective_domain") is True
    return endpoint


def _without_responses(full: Dict[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in full.items() if key != "responses"}


def test_action_needing_the_domain_gets_it_without_responses(fixes, domain):
    endpoint = _project_action_endpoint()
    action = RemoteAction("validate_refund_form", endpoint)
    assert domain.does_custom_action_explicitly_need_domain("validate_refund_form")
    tracker = _refund_tracker(domain)

    expected = ORIGINAL_CALL_FORMAT(action, tracker, domain)
    payload = action._action_call_format(tracker, domain)

    assert expected["domain"]["responses"], "the original sends the responses"
    assert "responses" not in payload["domain"]
    assert payload["domain"] == _without_responses(expected["domain"]) == _without_responses(domain.as_dict())
    for key in ("slots", "forms", "intents", "entities", "actions", "session_config", "version"):
        assert payload["domain"][key] == domain.as_dict()[key], key
    assert {k: v for k, v in payload.items() if k != "domain"} == {k: v for k, v in expected.items() if k != "domain"}
    assert payload["next_action"] == "validate_refund_form" and payload["sender_id"] == "покупатель-1"
    assert payload["version"] == rasa.__version__
    assert payload["tracker"]["slots"]["order_id"] == "40817263"
    assert payload["tracker"]["active_loop"]["name"] == "refund_form"
    assert json.loads(json.dumps(payload)) == payload


def test_action_not_needing_the_domain_gets_none(fixes, domain):
    action = RemoteAction("action_submit_refund", _project_action_endpoint())
    assert not domain.does_custom_action_explicitly_need_domain("action_submit_refund")
    tracker = _refund_tracker(domain)
    expected = ORIGINAL_CALL_FORMAT(action, tracker, domain)
    assert "domain" not in expected
    assert action._action_call_format(tracker, domain) == expected


def test_slim_domain_is_built_once_per_domain(fixes, monkeypatch):
    domain = Domain.load(str(PROJECT_ROOT / "domain.yml"))
    action = RemoteAction("validate_refund_form", _project_action_endpoint())
    tracker = _refund_tracker(domain)
    first = action._action_call_format(tracker, domain)["domain"]
    other = Domain.load(str(PROJECT_ROOT / "domain.yml"))  # another model's domain: its own
    calls = []
    original_as_dict = Domain.as_dict
    monkeypatch.setattr(Domain, "as_dict", lambda self: calls.append(1) or original_as_dict(self))
    second = RemoteAction("validate_resend_form", _project_action_endpoint())._action_call_format(tracker, domain)
    assert second["domain"] is first
    assert calls == []
    third = action._action_call_format(tracker, other)["domain"]
    assert third is not first and third == first and calls == [1]


@pytest.mark.parametrize("endpoint", [EndpointConfig("http://127.0.0.1:5055/webhook"), None], ids=["default", "no endpoint"])
@pytest.mark.parametrize("name", ["validate_refund_form", "action_submit_refund", "action_answer_question"])
def test_without_selective_domain_every_action_gets_the_slim_domain(fixes, domain, endpoint, name):
    action = RemoteAction(name, endpoint)
    assert not action._is_selective_domain_enabled()
    tracker = _refund_tracker(domain)
    expected = ORIGINAL_CALL_FORMAT(action, tracker, domain)
    payload = action._action_call_format(tracker, domain)
    assert "responses" in expected["domain"] and payload["domain"] == _without_responses(expected["domain"])
    assert payload.keys() == expected.keys() and payload["tracker"] == expected["tracker"]


# --- 4. the shared HTTP session ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _echo_server(**runner_options: Any):
    """aiohttp server on loopback: POST /webhook answers the JSON it was sent; keeps the raw bodies."""
    bodies: List[bytes] = []

    async def echo(request: web.Request) -> web.Response:
        raw = await request.read()
        bodies.append(raw)
        return web.json_response(json.loads(raw.decode("utf-8")))

    app = web.Application()
    app.router.add_post("/webhook", echo)
    app_runner = web.AppRunner(app, **runner_options)
    await app_runner.setup()
    site = web.TCPSite(app_runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/webhook", bodies
    finally:
        await app_runner.cleanup()


async def _session_of(endpoint: EndpointConfig) -> aiohttp.ClientSession:
    async with endpoint.session() as session:
        return session


async def test_one_session_per_endpoint_settings_and_loop(fixes):
    try:
        first = EndpointConfig("http://127.0.0.1:5055/webhook")
        async with first.session() as one:
            async with first.session() as two:
                assert one is two
            assert not one.closed  # leaving the block does not close the shared session
        assert await _session_of(EndpointConfig("http://127.0.0.1:5055/webhook")) is one
        assert await _session_of(first.copy()) is one

        with_headers = [EndpointConfig("http://x/webhook", headers={"X-Key": key}) for key in ("a", "b", "a")]
        sessions = [await _session_of(endpoint) for endpoint in with_headers]
        assert sessions[0] is not sessions[1] and sessions[0] is sessions[2] and one not in sessions
        assert dict(sessions[1].headers) == {"X-Key": "b"}

        auth = EndpointConfig("http://x/webhook", basic_auth={"username": "rasa", "password": "секрет"})
        with_auth = await _session_of(auth)
        assert with_auth is not one and with_auth._default_auth == aiohttp.BasicAuth("rasa", "секрет")

        assert isinstance(one.connector, aiohttp.TCPConnector)
        assert one.connector._keepalive_timeout == runtime.KEEPALIVE_SECONDS
        from sanic.config import DEFAULT_CONFIG

        # below sanic's keep-alive (the action server's): a pooled connection is never one it is closing
        assert one.connector._keepalive_timeout < DEFAULT_CONFIG["KEEP_ALIVE_TIMEOUT"] == 5
        assert one.timeout.total == (await _original_session(first)).timeout.total
    finally:
        await runtime.close_shared_sessions()
    assert one.closed and with_auth.closed and all(session.closed for session in sessions)
    assert not [key for key in runtime._sessions if key[0] == id(asyncio.get_running_loop())]


async def _original_session(endpoint: EndpointConfig) -> aiohttp.ClientSession:
    session = ORIGINAL_SESSION(endpoint)
    await session.close()
    return session


def test_a_new_event_loop_gets_a_new_session(fixes):
    endpoint = EndpointConfig("http://127.0.0.1:5055/webhook")
    loops = [asyncio.new_event_loop(), asyncio.new_event_loop()]
    try:
        sessions = [loop.run_until_complete(_session_of(endpoint)) for loop in loops]
        assert sessions[0] is not sessions[1]
        assert [session._loop for session in sessions] == loops
        assert loops[0].run_until_complete(_session_of(endpoint)) is sessions[0]
        for loop in loops:
            loop.run_until_complete(runtime.close_shared_sessions())
        assert all(session.closed for session in sessions)
        assert loops[0].run_until_complete(_session_of(endpoint)) is not sessions[0]  # a closed one is replaced
        loops[0].run_until_complete(runtime.close_shared_sessions())
    finally:
        for loop in loops:
            loop.close()


PAYLOAD = {
    "next_action": "validate_refund_form",
    "sender_id": "покупатель-1",
    "tracker": {"latest_message": {"text": "Здравствуйте! Верните деньги за «Дарим» — заказ №40817263 🎁"}},
    "domain": {"slots": {"адрес": None, "сумма": 1500.5, "флаги": [True, False, None]}},
}


async def test_request_carries_cyrillic_as_utf8(fixes):
    try:
        async with _echo_server() as (url, bodies):
            endpoint = EndpointConfig(url)
            answer = await endpoint.request(json=PAYLOAD, method="post")
            assert answer == PAYLOAD
            raw = bodies[-1]
            assert "Верните деньги за «Дарим»".encode("utf-8") in raw and b"\\u" not in raw
            assert json.loads(raw.decode("utf-8")) == PAYLOAD

            # Rasa's own session sends the same object, escaped (and a third longer)
            async with ORIGINAL_SESSION(endpoint) as session:
                async with session.post(url, json=PAYLOAD) as response:
                    assert await response.json() == PAYLOAD
            assert b"\\u0412" in bodies[-1] and json.loads(bodies[-1]) == PAYLOAD and len(raw) < len(bodies[-1])
    finally:
        await runtime.close_shared_sessions()


async def test_request_with_a_lone_surrogate_is_sent_like_rasa_sends_it(fixes):
    # e.g. a web client cutting a message in the middle of an emoji's UTF-16 pair: json.loads
    # gives Python a lone surrogate, which has no UTF-8 encoding
    payload = {"tracker": {"latest_message": {"text": "подарок \ud83c"}}, "sender_id": "покупатель-1"}
    try:
        async with _echo_server() as (url, bodies):
            assert await EndpointConfig(url).request(json=payload, method="post") == payload
            async with ORIGINAL_SESSION(EndpointConfig(url)) as session:
                async with session.post(url, json=payload) as response:
                    assert await response.json() == payload
            assert bodies[0] == bodies[1] == json.dumps(payload).encode("ascii")
    finally:
        await runtime.close_shared_sessions()


class _RacingServer(asyncio.Protocol):
    """A keep-alive HTTP/1.1 server losing the keep-alive race on purpose: a request arriving on a
    connection idle for ``closing_after`` seconds or more finds it being closed (no answer), as when
    a server's keep-alive timeout fires while the client is writing. Answers ``{"connection": n}``."""

    def __init__(self, closing_after: float, log: List[Tuple[int, str]], counter: List[int]) -> None:
        self.closing_after, self.log, self.buffer = closing_after, log, b""
        counter[0] += 1
        self.number, self.idle_since = counter[0], time.monotonic()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, separator, body = self.buffer.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if not separator or len(body) < (int(length.group(1)) if length else 0):
            return
        self.buffer = b""
        if time.monotonic() - self.idle_since >= self.closing_after:
            self.log.append((self.number, "closed under the request"))
            self.transport.close()
            return
        answer = json.dumps({"connection": self.number}).encode()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
        )
        self.log.append((self.number, "answered"))
        self.idle_since = time.monotonic()


async def test_pooled_connection_is_never_reused_into_the_servers_keepalive_race(fixes):
    """Regression: with a pooled session, a request reusing a connection the action server is
    closing for idleness was lost ("Cannot write to closing transport", an empty reply). The
    session drops pooled connections idle more than KEEPALIVE_SECONDS (checked when a connection
    is taken from the pool, so this is deterministic), below the server's keep-alive timeout.

    A server that closes connections idle >= KEEPALIVE_SECONDS + 0.25 s (a keep-alive timeout just
    above the client's) under the next request: requests 0.2 s apart share a connection; after
    an idle pause just past that, the project's session opens a new connection and succeeds while
    a session pooling for aiohttp's default 15 s loses the request."""
    closing_after = runtime.KEEPALIVE_SECONDS + 0.25
    loop = asyncio.get_running_loop()
    log: List[Tuple[int, str]] = []
    counter = [0]
    server = await loop.create_server(lambda: _RacingServer(closing_after, log, counter), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/webhook"
    endpoint = EndpointConfig(url, headers={"X-Test": "keepalive"})
    long_pool = aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=15))

    async def pattern(post) -> List[Any]:
        outcomes = []
        for pause in (0.0, 0.2, closing_after + 0.1):
            await asyncio.sleep(pause)
            try:
                outcomes.append((await post())["connection"])
            except aiohttp.ClientError as error:
                outcomes.append(type(error).__name__)
        return outcomes

    async def long_pool_post() -> Any:
        async with long_pool.post(url, json={"text": "ещё раз"}) as response:
            return await response.json()

    try:
        project, control = await asyncio.gather(
            pattern(lambda: endpoint.request(json={"text": "ещё раз"}, method="post")),
            pattern(long_pool_post),
        )
    finally:
        await long_pool.close()
        await runtime.close_shared_sessions()
        server.close()
        await server.wait_closed()

    assert project[0] == project[1] and isinstance(project[2], int) and project[2] != project[1], (project, log)
    # the test sees the race: a longer-lived pool loses the request on the reused connection
    assert control[0] == control[1] and control[2] == "ServerDisconnectedError", (control, log)


# --- 2. the graph runner on the trained model -------------------------------------------------------


def _messages() -> List[str]:
    from nlu.evaluation import load_examples

    heldout = [example.text for example in load_examples(PROJECT_ROOT / "tests/data/nlu_heldout.yml")]
    training = [example.text for example in load_examples(PROJECT_ROOT / "data/nlu")]
    english = [text for text in heldout + training if re.fullmatch(r"[\x00-\x7f]*", text) and re.search("[a-z]{3}", text)]
    picked = heldout[:: max(1, len(heldout) // 12)][:12] + training[:: max(1, len(training) // 10)][:10] + english[:: max(1, len(english) // 4)][:4]
    return picked + ["", "😀🎁", "хочу вернуть деньги за заказ 40817263", "need an invoice for corporate order 91028374"]


@contextlib.contextmanager
def _graph_run_by(run: Any) -> Iterator[None]:
    previous = DaskGraphRunner.__dict__["run"]
    DaskGraphRunner.run = run
    try:
        yield
    finally:
        DaskGraphRunner.run = previous


def _same(a: Any, b: Any, where: str = "") -> None:
    """Equal structures; floats to 1e-9."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=0, abs_tol=1e-9), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{index}]")
    else:
        assert a == b, (where, a, b)


def _story_trackers(domain: Domain) -> List[Tuple[str, List[Event]]]:
    """(where, events) before every action of a few test stories, the way trackers look live."""
    from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader

    steps = YAMLStoryReader(domain).read_from_file(str(PROJECT_ROOT / "tests/conversations/test_flows.yml"))
    picked = steps[:: max(1, len(steps) // 4)][:4]
    assert len(picked) >= 3
    trackers = []
    for step in picked:
        events: List[Event] = [ActionExecuted("action_session_start"), SessionStarted()]
        for event in step.events:
            if isinstance(event, UserUttered) and not (
                isinstance(events[-1], ActionExecuted) and events[-1].action_name == "action_listen"
            ):
                events.append(ActionExecuted("action_listen"))
            if isinstance(event, ActionExecuted):
                trackers.append((f"{step.block_name} before {event.action_name}", list(events)))
            events.append(event)
        trackers.append((f"{step.block_name} at the end", list(events)))
    return trackers


@pytest.mark.slow
def test_graph_runs_like_dask_on_the_trained_model(agent, monkeypatch):
    import dask

    processor = agent.processor
    assert type(processor.graph_runner) is DaskGraphRunner
    dask_calls = []
    real_get = dask.get
    monkeypatch.setattr(dask, "get", lambda *args, **kwargs: dask_calls.append(1) or real_get(*args, **kwargs))

    def parse(run: Any, text: str) -> Dict[str, Any]:
        with _graph_run_by(run):
            return asyncio.run(agent.parse_message(text))

    messages = _messages()
    assert len(messages) >= 28
    intents = set()
    for text in messages:
        before = len(dask_calls)
        expected = parse(ORIGINAL_RUN, text)
        assert len(dask_calls) == before + 1
        got = parse(runtime._run_graph, text)
        assert len(dask_calls) == before + 1, "the fix ran dask"
        assert got["intent"]["name"] == expected["intent"]["name"], text
        assert math.isclose(got["intent"]["confidence"], expected["intent"]["confidence"], rel_tol=0, abs_tol=1e-9), text
        assert [r["name"] for r in got.get("intent_ranking", [])] == [r["name"] for r in expected.get("intent_ranking", [])], text
        assert [(e["entity"], e["value"], e.get("start"), e.get("end")) for e in got["entities"]] == [
            (e["entity"], e["value"], e.get("start"), e.get("end")) for e in expected["entities"]
        ], text
        _same(got, expected, text)
        intents.add(expected["intent"]["name"])
    assert len(intents) >= 8, intents

    domain = processor.domain
    actions = set()
    for where, events in _story_trackers(domain):
        results = []
        for run in (ORIGINAL_RUN, runtime._run_graph):
            tracker = DialogueStateTracker.from_events("story", events, slots=domain.slots)
            with _graph_run_by(run):
                prediction = processor._predict_next_with_tracker(tracker)
                summary = processor.predict_next_with_tracker(
                    DialogueStateTracker.from_events("story", events, slots=domain.slots)
                )
            results.append((prediction, summary))
        (expected, expected_summary), (got, got_summary) = results
        assert got == expected, where  # probabilities, policy, events, flags
        assert got.max_confidence_index == expected.max_confidence_index, where
        _same(got_summary, expected_summary, where)
        actions.add(domain.action_names_or_texts[expected.max_confidence_index])
    assert len(actions) >= 4, actions
