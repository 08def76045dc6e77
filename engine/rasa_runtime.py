"""Runtime fixes for Rasa 3.6: work it repeats on every message, removed without changing what it
does. :func:`apply_runtime_fixes` installs them; the stack's Rasa server (``engine.rasa_server``)
calls it; tests/engine/test_rasa_runtime.py compares each with Rasa's own code. Found by profiling
the server under load with py-spy (docs/benchmarks.md, «Load»).

- **Action results are validated against compiled schemas.** Rasa checks every action server
  response with ``jsonschema.validate(result, schema)``, which first validates the *schema*
  against its meta-schema — with jsonschema 4.17 that was two thirds of the server's CPU under
  load. And each event is matched against all 23 alternatives of the event schema's ``oneOf``
  (≈ 0.25 ms an event). The alternatives are told apart by their ``event`` constant, so an event
  is valid exactly when it matches the base schema plus the one alternative with its ``event``:
  that is what is checked, with validators built once. Anything that fails is validated again
  the original way, so the ``ValidationError`` raised is the one Rasa would raise.
- **The graph runs without dask.** Every parse and every policy prediction runs the model's
  graph through ``dask.get`` (a scheduler built for parallel task graphs; ~10 % of the server's
  CPU for a dozen nodes in a row) after recomputing the minimal sub-graph. A memoised
  depth-first evaluation runs the same nodes with the same inputs, each once.
- **The action server gets what it reads.** A form validation is sent the domain (rasa_sdk
  reads its ``slots`` and ``forms``); Rasa serialises the whole domain for every call, its
  responses being most of it (≈ 50 kB of a ≈ 70 kB request). It now goes without ``responses``
  (the action server never renders a response: it names them), serialised once per model, and
  the JSON carries Cyrillic as UTF-8 rather than ``\\uXXXX`` escapes (a third of the bytes).
- **One HTTP session per endpoint.** Rasa opens a new aiohttp session (and TCP connection) for
  every action call; the calls now share one session per endpoint and event loop (keep-alive,
  shorter than the action server's so a reused connection is never one it is closing), closed
  with the server.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Dict, List, Optional, Text, Tuple

_applied = False


def _compiled(schema: Dict[str, Any]) -> Any:
    from jsonschema.validators import validator_for

    return validator_for(schema)(schema)


def _compiled_draft7(schema: Dict[str, Any]) -> Any:
    """The fast path: these schemas use only keywords that mean the same in draft 7 as in the
    latest draft, and draft 7's validator has no dynamic-scope bookkeeping (several times faster)."""
    from jsonschema import Draft7Validator

    return Draft7Validator(schema)


@lru_cache(maxsize=1)
def _action_result_validator() -> Any:
    """The whole response schema, as Rasa validates it (used to raise Rasa's error)."""
    from rasa.core.actions.action import RemoteAction

    return _compiled(RemoteAction.action_response_format_spec())


@lru_cache(maxsize=1)
def _fast_validators() -> Tuple[Any, Dict[str, Any]]:
    """(the response without its events' alternatives, {event type: base + its alternative})."""
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.utils.schemas.events import EVENT_SCHEMA

    envelope = dict(RemoteAction.action_response_format_spec())
    envelope["properties"] = {**envelope["properties"], "events": {"type": "array"}}
    base = {key: value for key, value in EVENT_SCHEMA.items() if key != "oneOf"}
    by_type: Dict[str, Any] = {}
    for alternative in EVENT_SCHEMA["oneOf"]:
        kind = alternative["properties"]["event"]["const"]
        by_type[kind] = _compiled_draft7({"allOf": [base, alternative]})
    return _compiled_draft7(envelope), by_type


def _is_valid_action_result(result: Any) -> bool:
    envelope, by_type = _fast_validators()
    if not envelope.is_valid(result):
        return False
    for event in result.get("events") or ():
        kind = event.get("event") if isinstance(event, dict) else None
        validator = by_type.get(kind) if isinstance(kind, str) else None  # a list or dict is unhashable
        if validator is None or not validator.is_valid(event):
            return False
    return True


def _validate_action_result(self: Any, result: Dict[Text, Any]) -> bool:
    from jsonschema import ValidationError
    from jsonschema.exceptions import best_match
    from rasa.shared.constants import DOCS_BASE_URL

    if _is_valid_action_result(result):
        return True
    # the error jsonschema.validate raises: the best match of all errors (not the first one, which
    # is what Validator.validate raises), descending into oneOf alternatives as it does
    error: Optional[ValidationError] = best_match(_action_result_validator().iter_errors(result))
    if error is None:
        return True
    error.message += (
        f". Failed to validate Action server response from API, "
        f"make sure your response from the Action endpoint is valid. "
        f"For more information about the format visit "
        f"{DOCS_BASE_URL}/custom-actions"
    )
    raise error


# --- the graph runner -------------------------------------------------------------------------


def _minimal_schema(runner: Any, targets: Tuple[str, ...]) -> Any:
    cache = runner.__dict__.setdefault("_minimal_schemas", {})
    if targets not in cache:
        cache[targets] = runner._graph_schema.minimal_graph_schema(list(targets))
    return cache[targets]


def _run_graph(self: Any, inputs: Optional[Dict[Text, Any]] = None, targets: Optional[List[Text]] = None) -> Dict[Text, Any]:
    """``DaskGraphRunner.run`` without dask: the same nodes, each run once, in dependency order."""
    from rasa.engine.exceptions import GraphRunError

    run_targets = tuple(targets if targets else self._graph_schema.target_names)
    schema = _minimal_schema(self, run_targets)
    given = dict(inputs or {})
    for name in given:
        if name in schema.nodes:
            raise GraphRunError(
                f"Input value '{name}' clashes with a node name. Make sure "
                f"that none of the input names passed to the `run` method are the "
                f"same as node names in the graph schema."
            )
    results: Dict[Text, Any] = {}

    def value(name: Text) -> Any:
        if name not in results:
            if name in given:
                results[name] = (name, given[name])  # what dask hands a node for a graph input
            else:
                needs = schema.nodes[name].needs.values()
                results[name] = self._instantiated_nodes[name](*(value(need) for need in needs))
        return results[name]

    try:
        # each node returns (its name, its output); dask's result is a dict of those pairs
        return dict(value(target) for target in run_targets)
    except RuntimeError as error:
        raise GraphRunError("Error running runner.") from error


# --- the action server's request ------------------------------------------------------------

#: domain keys the action server is not sent (rasa_sdk reads slots and forms; responses are rendered by Rasa)
UNSENT_DOMAIN_KEYS = ("responses",)


def _action_call_format(self: Any, tracker: Any, domain: Any) -> Dict[Text, Any]:
    """``RemoteAction._action_call_format`` with the slim domain, built once per model."""
    import rasa
    from rasa.shared.core.trackers import EventVerbosity

    result = {
        "next_action": self._name,
        "sender_id": tracker.sender_id,
        "tracker": tracker.current_state(EventVerbosity.ALL),
        "version": rasa.__version__,
    }
    if not self._is_selective_domain_enabled() or domain.does_custom_action_explicitly_need_domain(self.name()):
        slim = getattr(domain, "_action_server_domain", None)
        if slim is None:
            slim = {key: value for key, value in domain.as_dict().items() if key not in UNSENT_DOMAIN_KEYS}
            domain._action_server_domain = slim  # a model's domain does not change while it serves
        result["domain"] = slim
    return result


# --- pooled HTTP sessions ---------------------------------------------------------------------

_sessions: Dict[Tuple[Any, ...], Any] = {}
KEEPALIVE_SECONDS = 2.0


def _json_utf8(value: Any) -> str:
    """JSON with Cyrillic as UTF-8; a text with a lone surrogate (a client cut an emoji's UTF-16
    pair in two) has no UTF-8 form, so it goes escaped, as Rasa sends everything."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value)
    return text


class _BorrowedSession:
    """``async with endpoint.session() as session`` on a shared session: leaving does not close it."""

    def __init__(self, session: Any) -> None:
        self._session = session

    async def __aenter__(self) -> Any:
        return self._session

    async def __aexit__(self, *exc_info: Any) -> None:
        return None


def _shared_session(self: Any) -> Any:
    import asyncio

    import aiohttp
    from rasa.core.constants import DEFAULT_REQUEST_TIMEOUT

    loop = asyncio.get_running_loop()
    auth = (self.basic_auth.get("username"), self.basic_auth.get("password")) if self.basic_auth else None
    key = (id(loop), tuple(sorted(self.headers.items())), auth)
    session = _sessions.get(key)
    if session is None or session.closed or session._loop is not loop:
        session = aiohttp.ClientSession(
            # a pooled connection is dropped after 2 s idle, before the server's keep-alive
            # timeout (sanic: 5 s) closes it under a request being written ("Cannot write to
            # closing transport": the action's turn lost, an empty reply)
            connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_SECONDS),
            json_serialize=_json_utf8,
            headers=self.headers,
            auth=aiohttp.BasicAuth(*auth) if auth else None,
            timeout=aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT),
        )
        _sessions[key] = session
    return _BorrowedSession(session)


async def close_shared_sessions() -> None:
    """Close the pooled sessions of the running loop (the server calls it when it stops)."""
    import asyncio

    loop_id = id(asyncio.get_running_loop())
    for key in [key for key in _sessions if key[0] == loop_id]:
        session = _sessions.pop(key)
        if not session.closed:
            await session.close()


# --- installing them --------------------------------------------------------------------------


def apply_runtime_fixes() -> None:
    """Idempotent; call it before the Rasa server (or an in-process agent) handles a message."""
    global _applied
    if _applied:
        return
    from rasa.core.actions.action import RemoteAction
    from rasa.engine.runner.dask import DaskGraphRunner
    from rasa.utils.endpoints import EndpointConfig

    RemoteAction._action_call_format = _action_call_format  # type: ignore[assignment]
    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[assignment]
    DaskGraphRunner.run = _run_graph  # type: ignore[assignment]
    EndpointConfig.session = _shared_session  # type: ignore[assignment]
    _applied = True
