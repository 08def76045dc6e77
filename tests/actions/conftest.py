"""Fixtures of the flow-action tests: the REAL back office on loopback, the actions pointed at it
through their environment settings, fault injection (a closed port, a scripted slow / 5xx
server, a delaying proxy in front of the real service) and a small conversation simulator that
hands each action the tracker Rasa 3.6 would hand it.

How Rasa calls a form's validation action (rasa/core/actions/forms.py, ``_temporary_tracker``):
the tracker ends with ``SlotSet(requested_slot, <asked slot>)``, ``ActionExecuted(<form>)`` and
the slot candidates (the slots the NLU filled from the latest message), so its
``latest_action_name`` is the form's name. ``Conversation`` builds exactly that, and the same
kind of tracker with the digression's events when a form resumes (``action_resume_flow``).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import httpx
import pytest
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

import actions
from actions.common import action_settings, entity_formats
from nlu.entity_patterns import find_entities
from tests.backoffice_process import PROJECT_ROOT, free_port, running_backoffice
from tests.scripted_http import ScriptedServer

TOKEN = "flow-actions-test-token"
ACTION_LISTEN = "action_listen"
REQUESTED_SLOT = "requested_slot"
#: every module of the actions package, as the action server finds them
ACTION_MODULES = tuple(
    importlib.import_module(f"actions.{info.name}") for info in pkgutil.iter_modules(actions.__path__)
)


def _all_actions() -> Dict[str, type]:
    found: Dict[str, type] = {}
    for module in ACTION_MODULES:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Action) and cls.__module__ == module.__name__ and not inspect.isabstract(cls):
                try:
                    found[cls().name()] = cls
                except NotImplementedError:  # abstract bases without a name
                    continue
    return found


ACTIONS = _all_actions()


# --- the real back office ---------------------------------------------------------------------


class Backoffice:
    """A live back office and a tiny synchronous client for the test's own checks."""

    def __init__(self, url: str, token: str = TOKEN) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10,
                                 trust_env=False)

    def get(self, path: str, **params: Any) -> Dict[str, Any]:
        response = self.http.get(path, params=params or None)
        response.raise_for_status()
        return response.json()

    def order(self, order_id: str) -> Dict[str, Any]:
        return self.get(f"/orders/{order_id}")

    def audit(self, **filters: Any) -> List[Dict[str, Any]]:
        return self.get("/audit", limit=1000, **filters)["entries"]

    def tickets(self, conversation_id: Optional[str] = None) -> List[Dict[str, Any]]:
        """Every ticket created (optionally: of one conversation), full, oldest first.

        The service has no ticket list: the ``ticket.create`` audit rows name them all."""
        rows = self.audit(entity="ticket", action="ticket.create")
        ids = [row["entity_id"] for row in rows
               if conversation_id is None or row["payload"].get("conversation_id") == conversation_id]
        return [self.get(f"/tickets/{ticket_id}") for ticket_id in ids]

    def refunds_created(self, order_id: str) -> List[Dict[str, Any]]:
        return self.audit(entity="order", entity_id=order_id, action="refund.create")

    def resends_made(self, order_id: str) -> List[Dict[str, Any]]:
        return self.audit(entity="order", entity_id=order_id, action="certificate.resend")

    def close(self) -> None:
        self.http.close()


@contextmanager
def started_backoffice(directory: Path) -> Iterator[Backoffice]:
    with running_backoffice(directory, f"sqlite:///{directory / 'backoffice.db'}", TOKEN) as url:
        service = Backoffice(url)
        try:
            yield service
        finally:
            service.close()


@pytest.fixture
def point_actions(monkeypatch) -> Iterator[Callable[..., None]]:
    """``point_actions(url, timeout=5, retries=1)``: where ``actions.common.backoffice()`` goes."""

    def point(url: str, *, timeout: float = 5.0, retries: int = 1, backoff: float = 0.01, token: str = TOKEN) -> None:
        monkeypatch.setenv("BACKOFFICE_URL", url)
        monkeypatch.setenv("BACKOFFICE_API_TOKEN", token)
        monkeypatch.setenv("BACKOFFICE_TIMEOUT_SECONDS", str(timeout))
        monkeypatch.setenv("BACKOFFICE_RETRIES", str(retries))
        monkeypatch.setenv("BACKOFFICE_RETRY_BACKOFF_SECONDS", str(backoff))
        action_settings.cache_clear()

    yield point
    action_settings.cache_clear()


@pytest.fixture(scope="module")
def module_backoffice(tmp_path_factory) -> Iterator[Backoffice]:
    """One fresh, demo-seeded back office per test module."""
    with started_backoffice(tmp_path_factory.mktemp("backoffice")) as service:
        yield service


@pytest.fixture
def backoffice(module_backoffice: Backoffice, point_actions) -> Backoffice:
    """The module's back office, with the actions pointed at it."""
    point_actions(module_backoffice.url)
    return module_backoffice


@pytest.fixture
def fresh_backoffice(tmp_path, point_actions) -> Iterator[Backoffice]:
    """A back office of this test alone (the demo order 40817263 can be refunded only once)."""
    with started_backoffice(tmp_path) as service:
        point_actions(service.url)
        yield service


# --- fault injection (tests/scripted_http.py) -------------------------------------------------


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


@pytest.fixture
def closed_url() -> str:
    """A loopback port nobody listens on: the back office is down."""
    return f"http://127.0.0.1:{free_port()}"


# --- the domain and the conversation simulator ------------------------------------------------

_PLACEHOLDER = re.compile(r"{([^{}]+)}")


def check_response(domain: Dict[str, Any], message: Dict[str, Any], slots: Dict[str, Any]) -> None:
    """What the bot says exists in domain.yml, and every ``{placeholder}`` of it is filled (by the
    action's kwargs or, as Rasa's NLG does, by a slot of that name)."""
    name = message.get("response")
    if name is None:
        return
    variants = domain["responses"].get(name)
    assert variants, f"{name} is not a response of domain.yml"
    for variant in variants:
        missing = [key for key in _PLACEHOLDER.findall(variant.get("text") or "")
                   if message.get(key) is None and slots.get(key) is None]
        assert not missing, f"{name}: nothing fills {missing}"


@pytest.fixture(scope="session")
def domain() -> Dict[str, Any]:
    from rasa.shared.core.domain import Domain

    return Domain.load(str(PROJECT_ROOT / "domain.yml")).as_dict()


def slot_event(name: str, value: Any) -> Dict[str, Any]:
    return {"event": "slot", "timestamp": None, "name": name, "value": value}


@dataclass
class Turn:
    """What one step of the conversation produced."""

    events: List[Dict[str, Any]] = field(default_factory=list)
    messages: List[Dict[str, Any]] = field(default_factory=list)
    rejected: bool = False  # the form extracted nothing from an answer: Rasa asks the policies

    @property
    def responses(self) -> List[str]:
        return [message.get("response") for message in self.messages]

    def message(self, response: str) -> Dict[str, Any]:
        found = [m for m in self.messages if m.get("response") == response]
        assert found, f"{response} not among {self.responses}"
        return found[-1]

    def slots(self) -> Dict[str, Any]:
        """The SlotSet events, last value wins."""
        return {e["name"]: e["value"] for e in self.events if e.get("event") == "slot"}

    def kinds(self) -> List[str]:
        return [e.get("event") for e in self.events]

    @property
    def handed_over(self) -> bool:
        """The turn sent the hand-over marker (the gateway then queues the conversation)."""
        return any(_is_handover(message) for message in self.messages)


def _is_handover(message: Dict[str, Any]) -> bool:
    from handoff.marker import HandoverMarker

    custom = message.get("custom")
    return isinstance(custom, dict) and "handoff" in custom and HandoverMarker.from_bot_message(message) is not None


class Conversation:
    """One customer's conversation, as the action server sees it from Rasa 3.6.

    ``say()`` adds the customer's message (entities found with the NLU's own patterns, slots filled
    by the domain's from_entity / from_intent mappings) and, inside a form, runs the form's
    validation and its next question; ``run()`` runs any other action on the conversation so far.
    Bot messages are logged as ``bot`` events with their response name as text."""

    def __init__(self, domain: Dict[str, Any], sender_id: Optional[str] = None) -> None:
        self.domain = domain
        self.sender_id = sender_id or f"test-{uuid.uuid4().hex[:12]}"
        self.slots: Dict[str, Any] = {name: None for name in domain["slots"]}
        self.slots.setdefault(REQUESTED_SLOT, None)
        self.events: List[Dict[str, Any]] = [{"event": "action", "name": "action_session_start"},
                                             {"event": "session_started"},
                                             {"event": "action", "name": ACTION_LISTEN}]
        self.active_form: Optional[str] = None
        self.latest_message: Dict[str, Any] = {}
        self.latest_action = ACTION_LISTEN
        self.handed_over = False  # a hand-over marker went out (the gateway queued the conversation)
        self.followup: Optional[str] = None
        self.transcript: List[Dict[str, Any]] = []  # every bot message, in order

    # --- building trackers ------------------------------------------------------------------

    def tracker(self, extra_events: Iterable[Dict[str, Any]] = (), latest_action: Optional[str] = None,
                slots: Optional[Dict[str, Any]] = None) -> Tracker:
        events = [dict(e) for e in self.events] + [dict(e) for e in extra_events]
        current = dict(self.slots)
        for event in extra_events:
            if event.get("event") == "slot":
                current[event["name"]] = event["value"]
        current.update(slots or {})
        return Tracker(
            self.sender_id, current, dict(self.latest_message), events, False, self.followup,
            {"name": self.active_form} if self.active_form else {}, latest_action or self.latest_action,
        )

    def _log(self, events: Iterable[Dict[str, Any]]) -> None:
        for event in events:
            kind = event.get("event")
            if kind == "slot":
                self.slots[event["name"]] = event["value"]
            elif kind == "active_loop":
                self.active_form = event.get("name")
            elif kind == "followup":
                self.followup = event.get("name")
            self.events.append(dict(event))

    def _say_bot(self, messages: List[Dict[str, Any]]) -> None:
        for message in messages:
            if _is_handover(message):
                self.handed_over = True
            check_response(self.domain, message, self.slots)
            self.transcript.append(message)
            # as Rasa logs it: a response's name in metadata.utter_action, custom payloads in data
            self.events.append({"event": "bot", "text": message.get("response") or message.get("text"),
                                "data": {"custom": message.get("custom")} if message.get("custom") else {},
                                "metadata": {"utter_action": message["response"]} if message.get("response") else {}})

    # --- the customer -----------------------------------------------------------------------

    def nlu(self, text: str, intent: str, entities: Iterable[Dict[str, Any]] = ()) -> Dict[str, Any]:
        found = [{"entity": m.entity, "value": m.value, "start": m.start, "end": m.end,
                  "extractor": "PatternEntityExtractor"} for m in find_entities(text, entity_formats())]
        return {
            "text": text,
            "intent": {"name": intent, "confidence": 0.97},
            "entities": found + [dict(e) for e in entities],
            "message_id": uuid.uuid4().hex,
            "metadata": {},
        }

    def _nlu_slot_events(self, message: Dict[str, Any]) -> List[Dict[str, Any]]:
        """action_extract_slots: the domain's from_entity (no conditions here: any time) and
        from_intent mappings (conditioned on the form and the question asked)."""
        filled: Dict[str, Any] = {}
        intent = message["intent"]["name"]
        for name, slot in self.domain["slots"].items():
            for mapping in slot.get("mappings") or []:
                if mapping.get("type") == "from_entity":
                    values = [e["value"] for e in message["entities"] if e["entity"] == mapping.get("entity")]
                    if values:
                        filled[name] = values[-1]
                elif mapping.get("type") == "from_intent" and mapping.get("intent") == intent:
                    conditions = mapping.get("conditions") or [{}]
                    if any(c.get("active_loop") in (None, self.active_form)
                           and c.get("requested_slot") in (None, self.slots.get(REQUESTED_SLOT)) for c in conditions):
                        filled[name] = mapping.get("value")
        return [slot_event(name, value) for name, value in filled.items()]

    def user(self, text: str, intent: str = "inform", entities: Iterable[Dict[str, Any]] = ()) -> List[Dict[str, Any]]:
        """Log the customer's message and the slots the NLU filled; → those slot events."""
        message = self.nlu(text, intent, entities)
        self.latest_message = message
        if self.latest_action != ACTION_LISTEN:
            self.events.append({"event": "action", "name": ACTION_LISTEN})
        self.events.append({"event": "user", "text": text, "parse_data": message,
                            "message_id": message["message_id"], "metadata": {}})
        slot_events = self._nlu_slot_events(message)
        self._log(slot_events)
        self.latest_action = ACTION_LISTEN
        return slot_events

    async def say(self, text: str, intent: str = "inform", entities: Iterable[Dict[str, Any]] = ()) -> Turn:
        """The customer's message; inside a form: validation, then the next question."""
        slot_events = self.user(text, intent, entities)
        if not self.active_form:
            return Turn(events=slot_events)
        required = set(self.domain["forms"][self.active_form]["required_slots"])
        if self.slots.get(REQUESTED_SLOT):
            required.add(self.slots[REQUESTED_SLOT])
        candidates = [e for e in slot_events if e["name"] in required]
        return await self._form_step(candidates, answering=True)

    async def start(self, form: str, text: str, intent: str, entities: Iterable[Dict[str, Any]] = ()) -> Turn:
        """The message that starts ``form`` (a rule: intent → form)."""
        self.user(text, intent, entities)
        self.events.append({"event": "active_loop", "name": form})
        self.active_form = form
        prefilled = [slot_event(name, self.slots[name]) for name in self.domain["forms"][form]["required_slots"]
                     if self.slots.get(name) is not None]
        return await self._form_step(prefilled, answering=False)

    async def resume(self) -> Turn:
        """The form runs again after a digression (``action_resume_flow`` → FollowupAction)."""
        assert self.active_form, "no form to resume"
        return await self._form_step([], answering=False)

    # --- the form ---------------------------------------------------------------------------

    def validation_tracker(self, candidates: Iterable[Dict[str, Any]] = ()) -> Tracker:
        form = self.active_form
        extra = [slot_event(REQUESTED_SLOT, self.slots.get(REQUESTED_SLOT)),
                 {"event": "action", "name": form}, *candidates]
        return self.tracker(extra, latest_action=form)

    async def _form_step(self, candidates: List[Dict[str, Any]], answering: bool) -> Turn:
        form = self.active_form
        validator = ACTIONS[f"validate_{form}"]()
        dispatcher = CollectingDispatcher()
        events = await validator.run(dispatcher, self.validation_tracker(candidates), self.domain)
        turn = Turn(events=list(events), messages=list(dispatcher.messages))
        self._say_bot(dispatcher.messages)
        slot_updates = [e for e in events if e.get("event") == "slot" and e["name"] != REQUESTED_SLOT]
        requested_events = [e for e in events if e.get("event") == "slot" and e["name"] == REQUESTED_SLOT]
        if answering and self.slots.get(REQUESTED_SLOT) and not candidates and not slot_updates:
            turn.rejected = True  # ActionExecutionRejection: the policies take over
            return turn
        self.events.append({"event": "action", "name": form})
        self.latest_action = form
        self._log([e for e in events if not (e.get("event") == "slot" and e["name"] == REQUESTED_SLOT)])
        if requested_events:
            next_slot = requested_events[-1]["value"]
        else:
            next_slot = next((s for s in self.domain["forms"][form]["required_slots"] if self.slots.get(s) is None), None)
        self._log([slot_event(REQUESTED_SLOT, next_slot)])
        if next_slot is None:
            self._log([{"event": "active_loop", "name": None}])
            return turn
        ask = ACTIONS.get(f"action_ask_{form}_{next_slot}") or ACTIONS.get(f"action_ask_{next_slot}")
        if ask is not None:
            asked = await self.run(ask())
            turn.events += asked.events
            turn.messages += asked.messages
        else:
            responses = self.domain["responses"]
            name = f"utter_ask_{form}_{next_slot}" if f"utter_ask_{form}_{next_slot}" in responses else f"utter_ask_{next_slot}"
            assert name in responses, f"no question for {next_slot}"
            message = {"response": name, "template": name}
            turn.messages.append(message)
            self._say_bot([message])
        return turn

    # --- any other action -------------------------------------------------------------------

    async def run(self, action: Action, tracker: Optional[Tracker] = None) -> Turn:
        dispatcher = CollectingDispatcher()
        events = await action.run(dispatcher, tracker or self.tracker(), self.domain)
        self.events.append({"event": "action", "name": action.name()})
        self.latest_action = action.name()
        self._say_bot(dispatcher.messages)
        self._log(events)
        return Turn(events=list(events), messages=list(dispatcher.messages))

    async def utter(self, response: str) -> Turn:
        """A response the policies predict (e.g. a digression's answer)."""
        return await self.run(Utter(response))

    @property
    def requested(self) -> Optional[str]:
        return self.slots.get(REQUESTED_SLOT)


class Utter(Action):
    def __init__(self, response: str) -> None:
        self.response = response

    def name(self) -> str:
        return self.response

    async def run(self, dispatcher, tracker, domain) -> List[Dict[str, Any]]:
        dispatcher.utter_message(response=self.response)
        return []


@pytest.fixture
def conversation(domain) -> Callable[..., Conversation]:
    """``conversation()`` → a new conversation with its own sender id."""
    return lambda sender_id=None: Conversation(domain, sender_id)


@pytest.fixture
def make_tracker(domain) -> Callable[..., Tracker]:
    """A single tracker, built by hand: ``make_tracker(text, intent=..., form=..., requested_slot=...,
    slots={...}, nlu_slots={...}, form_run=True)``.

    ``nlu_slots`` are the slots the NLU filled from ``text`` (SlotSet events after the user event,
    which ``tracker.slots_to_validate()`` reads); ``events_after`` what happened since (a
    digression's answer, ``action_resume_flow``); ``form_run=True`` ends the events as Rasa's form
    does before it calls its validation action (``requested_slot``, ``ActionExecuted(<form>)``, the
    candidates again), ``form_run=False`` as a plain ``action_listen`` → user turn."""

    def build(text: str = "", *, intent: str = "inform", entities: Iterable[Dict[str, Any]] = (),
              form: Optional[str] = None, requested_slot: Optional[str] = None,
              slots: Optional[Dict[str, Any]] = None, nlu_slots: Optional[Dict[str, Any]] = None,
              form_run: bool = True, events_before: Iterable[Dict[str, Any]] = (),
              events_after: Iterable[Dict[str, Any]] = (), sender_id: Optional[str] = None) -> Tracker:
        message_id = uuid.uuid4().hex
        latest_message = {"text": text, "intent": {"name": intent, "confidence": 0.97},
                          "entities": list(entities), "message_id": message_id}
        filled = [slot_event(name, value) for name, value in (nlu_slots or {}).items()]
        events = [{"event": "action", "name": ACTION_LISTEN}, *events_before,
                  {"event": "user", "text": text, "parse_data": latest_message, "message_id": message_id}, *filled,
                  *events_after]
        if form and form_run:
            events += [slot_event(REQUESTED_SLOT, requested_slot), {"event": "action", "name": form}, *filled]
        values = {name: None for name in domain["slots"]}
        values.update({REQUESTED_SLOT: requested_slot, **(slots or {}), **(nlu_slots or {})})
        return Tracker(sender_id or f"test-{uuid.uuid4().hex[:12]}", values, latest_message, events, False, None,
                       {"name": form} if form else {}, form if form and form_run else ACTION_LISTEN)

    return build


def brand_entity(value: str) -> Dict[str, Any]:
    return {"entity": "brand", "value": value, "extractor": "LemmaLookupEntityExtractor"}
