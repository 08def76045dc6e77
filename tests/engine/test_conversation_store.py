"""Persistent conversations: ``engine.tracker_store.SealedSQLTrackerStore`` and
``engine.event_broker.MaskedSQLEventBroker`` on a real SQLite file and a real PostgreSQL server.

Trackers are Rasa's own (``DialogueStateTracker`` built from Rasa events, the domain of
``domain.yml``), the stores are used through their async API and Rasa's factories, and what is
stored is read back from the raw rows with SQLAlchemy — never through the store, which would
open its own sealed values and hide a leak.
"""
from __future__ import annotations

import json
import logging
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
import sqlalchemy as sa
from rasa.core.brokers.broker import EventBroker
from rasa.core.brokers.sql import SQLEventBroker
from rasa.core.tracker_store import TrackerStore, create_tracker_store
from rasa.core.utils import AvailableEndpoints
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    Event,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig
from ruamel.yaml import YAML

from engine.event_broker import MaskedSQLEventBroker
from engine.personal_data import KEY_ENV, SEALED_PREFIX, SECRET_PLACEHOLDER, AtRestPolicy
from engine.tracker_store import SealedSQLTrackerStore

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# The customer's data, and how rag.privacy masks it in texts (config.yml's entity patterns).
CODE, MASKED_CODE = "DRM-AB12-CD34-7Q2K", "DRM-****-****-7Q2K"
EMAIL, MASKED_EMAIL = "ivan.petrov@mail.ru", "i***@mail.ru"
PHONE_TEXT, PHONE, MASKED_PHONE = "+7 921 444-55-67", "+79214445567", "+7 *** ***-**-67"
PIN = "4821"
BUYER_DIGITS = "5567"  # the buyer check: the last four digits of the order's phone
ORDER = "58102263"  # order numbers stay readable: analytics and the review inbox need them
#: none of these may appear anywhere in a stored row (outside a sealed value)
CLEAR_VALUES = (CODE, "AB12", "CD34", EMAIL, "ivan.petrov", PHONE, "9214445567", "921 444", PIN, BUYER_DIGITS)
SEALED_TOKEN = re.compile(re.escape(SEALED_PREFIX) + r"[A-Za-z0-9_\-=]+")


# --- conversations --------------------------------------------------------------------------


class Dialogue:
    """The events of one conversation, in the order Rasa's processor logs them, on a clock of
    whole seconds: strictly increasing (a session's rows are found by timestamp) and free of
    digits that could be mistaken for a leaked PIN."""

    def __init__(self, sender_id: str, start: float = 1_700_000_000.0) -> None:
        self.sender_id = sender_id
        self.events: List[Event] = []
        self._clock = start

    def _now(self) -> float:
        self._clock += 1
        return self._clock

    def _add(self, *events: Event) -> "Dialogue":
        self.events.extend(events)
        return self

    def tracker(self, domain: Domain, events: Optional[Sequence[Event]] = None) -> DialogueStateTracker:
        """A tracker no store has read: built from these events (default: all of them)."""
        return DialogueStateTracker.from_events(self.sender_id, list(self.events if events is None else events),
                                                domain.slots)

    def session_start(self) -> "Dialogue":
        # Rasa logs `action_session_start` after running it: before the SessionStarted the action
        # returned, with a later timestamp
        started = SessionStarted(timestamp=self._now())
        return self._add(ActionExecuted("action_session_start", timestamp=self._now()), started,
                         ActionExecuted("action_listen", timestamp=self._now()))

    def user(self, text: str, intent: str, entities: Sequence[Tuple[str, str, str]] = ()) -> "Dialogue":
        """A parsed message; ``entities``: (entity, its text in the message, its value)."""
        found = [
            {"entity": name, "start": text.index(surface), "end": text.index(surface) + len(surface),
             "value": value, "extractor": "PatternEntityExtractor"}
            for name, surface, value in entities
        ]
        intent_data = {"name": intent, "confidence": 0.97}
        parse_data = {"text": text, "intent": intent_data, "entities": found,
                      "intent_ranking": [intent_data, {"name": "out_of_scope", "confidence": 0.03}]}
        return self._add(UserUttered(text, intent_data, found, parse_data, timestamp=self._now()))

    def bot(self, text: str) -> "Dialogue":
        return self._add(BotUttered(text, {"buttons": None}, timestamp=self._now()))

    def action(self, name: str) -> "Dialogue":
        return self._add(ActionExecuted(name, timestamp=self._now()))

    def slot(self, name: str, value: Any) -> "Dialogue":
        return self._add(SlotSet(name, value, timestamp=self._now()))

    def ask(self, form: str, slot: str, question: str) -> "Dialogue":
        """A form (activated) asks for ``slot`` and the bot listens."""
        self.action(form)._add(ActiveLoop(form, timestamp=self._now()))
        return self.slot("requested_slot", slot).bot(question).action("action_listen")

    def form_done(self, form: str, answer: str) -> "Dialogue":
        self.action(form)._add(ActiveLoop(None, timestamp=self._now()))
        return self.slot("requested_slot", None).bot(answer).action("action_listen")


def balance_until_pin_question(dialogue: Dialogue) -> Dialogue:
    """Mid-form: the certificate code and e-mail given, the PIN asked for."""
    return (
        dialogue.session_start()
        .user(f"Проверьте баланс сертификата {CODE}, чек пришёл на {EMAIL}", "check_balance",
              [("certificate_code", CODE, CODE), ("email", EMAIL, EMAIL)])
        .slot("certificate_code", CODE)
        .slot("email", EMAIL)
        .ask("balance_form", "pin", "Введите, пожалуйста, PIN-код с обратной стороны сертификата")
    )


def pin_answer(dialogue: Dialogue) -> Dialogue:
    """The customer retypes the code with the PIN (the masker alone would keep a bare PIN)."""
    return (
        dialogue.user(f"{CODE}, {PIN}", "inform", [("certificate_code", CODE, CODE)])
        .slot("pin", PIN)
        .form_done("balance_form", f"На сертификате 3 000 ₽, чек отправили на {EMAIL}")
    )


def refund_with_buyer_check(dialogue: Dialogue) -> Dialogue:
    return (
        dialogue.user(f"Верните деньги за заказ {ORDER}, мой телефон {PHONE_TEXT}", "refund_request",
                      [("order_id", ORDER, ORDER), ("phone", PHONE_TEXT, PHONE)])
        .slot("order_id", ORDER)
        .slot("phone", PHONE)
        .ask("refund_form", "buyer_check", "Назовите последние 4 цифры телефона из заказа")
        .user(f"заканчивается на {BUYER_DIGITS}", "inform")
        .slot("buyer_check", BUYER_DIGITS)
        .slot("requested_slot", "refund_confirmed")
    )


# --- databases --------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    new_url: Callable[[str], str]  # a new empty database → its SQLAlchemy URL

    def options(self, url: str) -> Dict[str, Any]:
        """Connection options as endpoints.yml gives them: ``dialect`` + ``db`` for a SQLite file,
        a whole URL (``url:``, which Rasa passes on as ``host``) otherwise."""
        if self.name == "sqlite":
            return {"dialect": "sqlite", "db": sa.engine.make_url(url).database}
        return {"host": url}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path: Path) -> Backend:
    if request.param == "postgresql":
        return Backend("postgresql", request.getfixturevalue("postgres").database)
    return Backend("sqlite", lambda name: f"sqlite:///{tmp_path / name}.db")


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(PROJECT_ROOT / "domain.yml"))


@pytest.fixture(autouse=True)
def state_key(monkeypatch) -> str:
    """Every test seals with a key of its own, never the project's conversation-state.key."""
    monkeypatch.setenv(KEY_ENV, "test-key-one")
    return "test-key-one"


@pytest.fixture
def engines() -> Iterator[List[sa.engine.Engine]]:
    """Engines of the stores and brokers a test opened, disposed at its end."""
    opened: List[sa.engine.Engine] = []
    yield opened
    for engine in opened:
        engine.dispose()


@pytest.fixture
def open_store(domain: Domain, backend: Backend, engines) -> Callable[..., SealedSQLTrackerStore]:
    def open_(url: str, **options: Any) -> SealedSQLTrackerStore:
        store = SealedSQLTrackerStore(domain, **backend.options(url), **options)
        engines.append(store.engine)
        return store

    return open_


@pytest.fixture
def open_broker(backend: Backend, engines) -> Callable[..., MaskedSQLEventBroker]:
    def open_(url: str, **options: Any) -> MaskedSQLEventBroker:
        broker = MaskedSQLEventBroker(**backend.options(url), **options)
        engines.append(broker.engine)
        return broker

    return open_


def rows(url: str, sender_id: Optional[str] = None) -> List[Dict[str, Any]]:
    """The ``data`` of the ``events`` table's rows (tracker store or event broker), in id order."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            query = "SELECT sender_id, data FROM events"
            query += " WHERE sender_id = :sender_id ORDER BY id" if sender_id else " ORDER BY id"
            result = connection.execute(sa.text(query), {"sender_id": sender_id} if sender_id else {})
            return [{"sender_id": row.sender_id, **json.loads(row.data)} for row in result]
    finally:
        engine.dispose()


def raw_data(url: str) -> str:
    """The whole ``data`` column as stored, with sealed values cut out."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            text = "\n".join(row.data for row in connection.execute(sa.text("SELECT data FROM events")))
    finally:
        engine.dispose()
    return SEALED_TOKEN.sub("<sealed>", text)


def assert_stored_exactly(url: str, dialogue: Dialogue, events: Optional[Sequence[Event]] = None) -> None:
    """The conversation's rows are these events, each once, in order (none duplicated or lost)."""
    expected = list(dialogue.events if events is None else events)
    assert [(row["event"], row["timestamp"]) for row in rows(url, dialogue.sender_id)] == [
        (event.type_name, event.timestamp) for event in expected
    ]


def update(tracker: DialogueStateTracker, events: Sequence[Event]) -> DialogueStateTracker:
    for event in events:
        tracker.update(event)
    return tracker


def slot_rows(stored: List[Dict[str, Any]], name: str) -> List[Any]:
    return [row["value"] for row in stored if row["event"] == "slot" and row["name"] == name]


def answer_to(stored: List[Dict[str, Any]], question: str) -> Dict[str, Any]:
    """The user row that answers ``requested_slot == question``."""
    asked = False
    for row in stored:
        if row["event"] == "slot" and row["name"] == "requested_slot":
            asked = row["value"] == question
        elif row["event"] == "user" and asked:
            return row
    raise AssertionError(f"no answer to {question} stored")


# --- 1. round trip, and only new events written ----------------------------------------------


async def test_mid_form_conversation_comes_back_from_a_new_store(backend, open_store, domain):
    url = backend.new_url("conversations")
    dialogue = balance_until_pin_question(Dialogue("customer-1"))
    tracker = dialogue.tracker(domain)
    await open_store(url).save(tracker)

    store = open_store(url)  # as after a restart
    restored = await store.retrieve("customer-1")

    assert restored is not None
    assert [(e.type_name, e.timestamp) for e in restored.events] == [(e.type_name, e.timestamp) for e in tracker.events]
    assert len(restored.events) == len(rows(url, "customer-1")) == len(dialogue.events)
    assert restored.active_loop_name == "balance_form"
    assert restored.get_slot("requested_slot") == "pin"
    assert restored.get_slot("certificate_code") == CODE
    assert restored.get_slot("email") == EMAIL
    assert restored.current_slot_values() == tracker.current_slot_values()
    latest = restored.latest_message
    assert latest.intent_name == "check_balance"
    assert latest.text == f"Проверьте баланс сертификата {MASKED_CODE}, чек пришёл на {MASKED_EMAIL}"
    assert [(e["entity"], e["value"]) for e in latest.entities] == [
        ("certificate_code", MASKED_CODE), ("email", MASKED_EMAIL)]
    assert list(await store.keys()) == ["customer-1"]
    assert await store.retrieve("somebody-else") is None


async def test_save_after_retrieve_writes_exactly_the_new_events(backend, open_store, domain):
    url = backend.new_url("conversations")
    dialogue = balance_until_pin_question(Dialogue("customer-1"))
    await open_store(url).save(dialogue.tracker(domain))

    store = open_store(url)
    tracker = await store.retrieve("customer-1")
    known = len(dialogue.events)
    pin_answer(dialogue)
    await store.save(update(tracker, dialogue.events[known:]))
    assert_stored_exactly(url, dialogue)

    await store.save(tracker)  # nothing new: nothing written
    assert_stored_exactly(url, dialogue)

    # the same tracker object saved by another instance (another replica) after one more turn
    known = len(dialogue.events)
    dialogue.user("спасибо", "thank").bot("Рада помочь!").action("action_listen")
    await open_store(url).save(update(tracker, dialogue.events[known:]))
    assert_stored_exactly(url, dialogue)
    assert (await open_store(url).retrieve("customer-1")).latest_message.intent_name == "thank"


async def test_save_of_a_tracker_the_store_did_not_read(backend, open_store, domain):
    url = backend.new_url("conversations")
    dialogue = balance_until_pin_question(Dialogue("customer-1"))
    await open_store(url).save(dialogue.tracker(domain))

    # a tracker built afresh from the stored events plus new ones, saved by a new instance
    pin_answer(dialogue)
    await open_store(url).save(dialogue.tracker(domain))
    assert_stored_exactly(url, dialogue)

    # ... across a new session: the fresh tracker holds session one, the new SessionStarted and more
    first_session = len(dialogue.events)
    refund_with_buyer_check(dialogue.session_start())
    await open_store(url).save(dialogue.tracker(domain))
    assert_stored_exactly(url, dialogue)

    # ... a full history (both sessions, the second one stored) plus a new turn
    dialogue.bot("Подтверждаете возврат?").action("action_listen").user("да", "affirm")
    await open_store(url).save(dialogue.tracker(domain))
    assert_stored_exactly(url, dialogue)

    # ... only the latest session (what `retrieve` returns) plus a new turn
    second_session = dialogue.events[first_session:]
    known = len(dialogue.events)
    dialogue.slot("refund_confirmed", True)
    await open_store(url).save(dialogue.tracker(domain, second_session + dialogue.events[known:]))
    assert_stored_exactly(url, dialogue)

    store = open_store(url)
    latest = await store.retrieve("customer-1")
    full = await store.retrieve_full_tracker("customer-1")
    assert [e.timestamp for e in latest.events] == [e.timestamp for e in dialogue.events[first_session:]]
    assert [e.timestamp for e in full.events] == [e.timestamp for e in dialogue.events]
    assert latest.get_slot("certificate_code") is None  # a new session carries no slot over here
    assert latest.get_slot("order_id") == ORDER and latest.get_slot("refund_confirmed") is True


async def test_full_tracker_read_then_saved_writes_only_new_events(backend, open_store, domain):
    url = backend.new_url("conversations")
    dialogue = pin_answer(balance_until_pin_question(Dialogue("customer-1")))
    refund_with_buyer_check(dialogue.session_start())
    await open_store(url).save(dialogue.tracker(domain))

    store = open_store(url)
    full = await store.retrieve_full_tracker("customer-1")
    assert len(full.events) == len(dialogue.events)
    known = len(dialogue.events)
    dialogue.user("да", "affirm").slot("refund_confirmed", True)
    await store.save(update(full, dialogue.events[known:]))
    assert_stored_exactly(url, dialogue)


# --- 2. personal data at rest -----------------------------------------------------------------


async def test_personal_data_is_masked_or_sealed_in_the_stored_rows(backend, open_store, domain):
    url = backend.new_url("conversations")
    dialogue = balance_until_pin_question(Dialogue("customer-1"))
    await open_store(url).save(dialogue.tracker(domain))
    # the PIN answer is saved by a store that only knows the question from the stored rows
    tracker = await open_store(url).retrieve("customer-1")
    known = len(dialogue.events)
    refund_with_buyer_check(pin_answer(dialogue))
    await open_store(url).save(update(tracker, dialogue.events[known:]))

    stored = rows(url, "customer-1")
    # the PIN itself: never stored
    assert slot_rows(stored, "pin") == [SECRET_PLACEHOLDER]
    # the answer to the PIN question: every digit masked, in the text, the parse and the entities
    answer = answer_to(stored, "pin")
    assert answer["text"] == "DRM-****-****-*Q*K, ****"
    assert answer["parse_data"]["text"] == answer["text"]
    assert [e["value"] for e in answer["parse_data"]["entities"]] == ["DRM-****-****-*Q*K"]
    assert answer["parse_data"]["intent"]["name"] == "inform"
    assert answer_to(stored, "buyer_check")["text"] == "заканчивается на ****"
    # other texts: the entity patterns' masks; order numbers stay
    first, refund = (row for row in stored if row["event"] == "user" and row["parse_data"]["intent"]["name"]
                     in ("check_balance", "refund_request"))
    assert first["text"] == first["parse_data"]["text"] == (
        f"Проверьте баланс сертификата {MASKED_CODE}, чек пришёл на {MASKED_EMAIL}")
    assert [e["value"] for e in first["parse_data"]["entities"]] == [MASKED_CODE, MASKED_EMAIL]
    assert refund["text"] == f"Верните деньги за заказ {ORDER}, мой телефон {MASKED_PHONE}"
    assert [e["value"] for e in refund["parse_data"]["entities"]] == [ORDER, MASKED_PHONE]
    bot_texts = [row["text"] for row in stored if row["event"] == "bot"]
    assert f"На сертификате 3 000 ₽, чек отправили на {MASKED_EMAIL}" in bot_texts
    # the slots a flow still needs: sealed, the clear value nowhere in them
    for name, clear in (("certificate_code", CODE), ("email", EMAIL), ("phone", PHONE), ("buyer_check", BUYER_DIGITS)):
        (value,) = slot_rows(stored, name)
        assert value.startswith(SEALED_PREFIX) and clear not in value, name
    assert slot_rows(stored, "order_id") == [ORDER]
    assert slot_rows(stored, "requested_slot") == ["pin", None, "buyer_check", "refund_confirmed"]
    # and nothing clear anywhere in the table
    everything = raw_data(url)
    assert [clear for clear in CLEAR_VALUES if clear in everything] == []
    assert ORDER in everything

    # read back: the flow has its values again (the PIN stays a placeholder)
    restored = await open_store(url).retrieve("customer-1")
    assert restored.get_slot("certificate_code") == CODE
    assert restored.get_slot("email") == EMAIL
    assert restored.get_slot("phone") == PHONE
    assert restored.get_slot("buyer_check") == BUYER_DIGITS
    assert restored.get_slot("pin") == SECRET_PLACEHOLDER
    assert restored.get_slot("order_id") == ORDER
    assert restored.active_loop_name == "refund_form"


# --- 3. keys ----------------------------------------------------------------------------------


async def test_a_store_with_another_key_cannot_open_the_sealed_values(backend, open_store, domain, monkeypatch,
                                                                      caplog):
    url = backend.new_url("conversations")
    dialogue = balance_until_pin_question(Dialogue("customer-1"))
    await open_store(url).save(dialogue.tracker(domain))

    monkeypatch.setenv(KEY_ENV, "somebody-elses-key")
    store = open_store(url)
    with caplog.at_level(logging.WARNING, logger="engine.personal_data"):
        restored = await store.retrieve("customer-1")
    assert restored.get_slot("certificate_code") is None and restored.get_slot("email") is None
    assert "could not be opened" in caplog.text
    # what was not sealed is intact, and the conversation goes on
    assert restored.active_loop_name == "balance_form" and restored.get_slot("requested_slot") == "pin"
    known = len(dialogue.events)
    pin_answer(dialogue)
    await store.save(update(restored, dialogue.events[known:]))
    assert_stored_exactly(url, dialogue)


async def test_rotated_keys_open_the_old_values_and_seal_with_the_new_key(backend, open_store, domain,
                                                                          monkeypatch):
    url = backend.new_url("conversations")
    dialogue = balance_until_pin_question(Dialogue("customer-1"))
    monkeypatch.setenv(KEY_ENV, "old-key")
    await open_store(url).save(dialogue.tracker(domain))

    monkeypatch.setenv(KEY_ENV, "new-key, old-key")
    store = open_store(url)
    tracker = await store.retrieve("customer-1")
    assert tracker.get_slot("certificate_code") == CODE and tracker.get_slot("email") == EMAIL
    known = len(dialogue.events)
    dialogue.slot("phone", PHONE)
    await store.save(update(tracker, dialogue.events[known:]))

    async def read_with(key: str) -> Tuple[Any, Any]:
        monkeypatch.setenv(KEY_ENV, key)
        restored = await open_store(url).retrieve("customer-1")
        return restored.get_slot("certificate_code"), restored.get_slot("phone")

    # the first key seals: the new value opens with the new key alone, the old one does not
    assert await read_with("new-key") == (None, PHONE)
    assert await read_with("old-key") == (CODE, None)
    assert await read_with("new-key,old-key") == (CODE, PHONE)


async def test_without_the_variable_a_key_file_is_created_0600_and_reused(backend, open_store, domain,
                                                                        monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_ENV)
    url = backend.new_url("conversations")
    key_file = tmp_path / "keys" / "conversation-state.key"
    dialogue = balance_until_pin_question(Dialogue("customer-1"))

    await open_store(url, key_file=str(key_file)).save(dialogue.tracker(domain))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    assert len(key.strip()) >= 32

    restored = await open_store(url, key_file=str(key_file)).retrieve("customer-1")
    assert key_file.read_text() == key  # reused, not replaced
    assert restored.get_slot("certificate_code") == CODE and restored.get_slot("email") == EMAIL
    # another key file is another key
    other = await open_store(url, key_file=str(tmp_path / "other.key")).retrieve("customer-1")
    assert other.get_slot("certificate_code") is None

    # an empty key file would be a key anyone can derive: refused
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        open_store(url, key_file=str(empty))


# --- 4. the event broker ----------------------------------------------------------------------


async def save_turn_by_turn(store: SealedSQLTrackerStore, domain: Domain, dialogue: Dialogue,
                            turns: Sequence[Callable[[Dialogue], Dialogue]]) -> None:
    """Each turn as the server handles it: the tracker read (or created), the turn's events
    added, the tracker saved."""
    for turn in turns:
        tracker = await store.retrieve(dialogue.sender_id) or dialogue.tracker(domain, [])
        known = len(dialogue.events)
        turn(dialogue)
        await store.save(update(tracker, dialogue.events[known:]))


async def test_event_broker_gets_each_turn_once_and_masked(backend, open_store, open_broker, domain):
    events_url = backend.new_url("events")
    conversations_url = backend.new_url("conversations")
    store = open_store(conversations_url, event_broker=open_broker(events_url))
    dialogue = Dialogue("customer-1")

    await save_turn_by_turn(store, domain, dialogue, [balance_until_pin_question, pin_answer,
                                                      refund_with_buyer_check])
    tracker = await store.retrieve("customer-1")
    await store.save(tracker)  # nothing new: nothing published

    published = rows(events_url)
    assert {row["sender_id"] for row in published} == {"customer-1"}
    assert [(row["event"], row["timestamp"]) for row in published] == [
        (event.type_name, event.timestamp) for event in dialogue.events]
    # masked, and nothing in it can be unsealed
    everything = raw_data(events_url)
    assert SEALED_PREFIX not in everything
    assert [clear for clear in CLEAR_VALUES if clear in everything] == []
    assert slot_rows(published, "certificate_code") == [MASKED_CODE]
    assert slot_rows(published, "email") == [MASKED_EMAIL]
    assert slot_rows(published, "phone") == [MASKED_PHONE]
    assert slot_rows(published, "buyer_check") == [SECRET_PLACEHOLDER]
    assert slot_rows(published, "pin") == [SECRET_PLACEHOLDER]
    assert answer_to(published, "pin")["text"] == "DRM-****-****-*Q*K, ****"
    # what analytics and the review inbox read stays readable
    assert slot_rows(published, "order_id") == [ORDER]
    assert [row["parse_data"]["intent"]["name"] for row in published if row["event"] == "user"] == [
        "check_balance", "inform", "refund_request", "inform"]
    assert [row["name"] for row in published if row["event"] == "active_loop"] == [
        "balance_form", None, "refund_form"]
    assert f"Верните деньги за заказ {ORDER}, мой телефон {MASKED_PHONE}" in [
        row["text"] for row in published if row["event"] == "user"]


async def test_publish_called_directly_masks_too(backend, open_broker):
    events_url = backend.new_url("events")
    broker = open_broker(events_url)
    for event in (
        UserUttered(f"мой пин {PIN}, код {CODE}", {"name": "inform", "confidence": 1.0},
                    [{"entity": "certificate_code", "value": CODE, "start": 16, "end": 34}]),
        SlotSet("email", EMAIL),
        SlotSet("pin", PIN),
        SlotSet("order_id", ORDER),
        BotUttered(f"Перезвоним на {PHONE_TEXT}", {"custom": {"email": EMAIL}}),
    ):
        broker.publish({"sender_id": "customer-2", **event.as_dict()})

    published = rows(events_url)
    assert [clear for clear in CLEAR_VALUES if clear in raw_data(events_url)] == []
    assert published[0]["text"] == f"мой пин ****, код {MASKED_CODE}"
    assert published[0]["parse_data"]["entities"][0]["value"] == MASKED_CODE
    assert [row.get("value") for row in published[1:4]] == [MASKED_EMAIL, SECRET_PLACEHOLDER, ORDER]
    assert published[4]["text"] == f"Перезвоним на {MASKED_PHONE}"
    assert published[4]["data"]["custom"] == {"email": MASKED_EMAIL}
    assert {row["sender_id"] for row in published} == {"customer-2"}


async def test_a_plain_rasa_broker_gets_masked_events_one_by_one(backend, open_store, engines, domain):
    events_url = backend.new_url("events")
    broker = SQLEventBroker(**backend.options(events_url))
    engines.append(broker.engine)
    store = open_store(backend.new_url("conversations"), event_broker=broker)
    dialogue = Dialogue("customer-1")
    await save_turn_by_turn(store, domain, dialogue, [balance_until_pin_question, pin_answer])

    assert [row["timestamp"] for row in rows(events_url)] == [event.timestamp for event in dialogue.events]
    everything = raw_data(events_url)
    assert SEALED_PREFIX not in everything
    assert [clear for clear in CLEAR_VALUES if clear in everything] == []


# --- 5. unknown options -----------------------------------------------------------------------


def test_unknown_options_are_refused_by_name(domain, tmp_path):
    db = tmp_path / "conversations.db"
    with pytest.raises(ValueError, match="sealed_slot\\b"):
        SealedSQLTrackerStore(domain, dialect="sqlite", db=str(db), sealed_slot=["email"])
    with pytest.raises(ValueError, match="secret_slot\\b"):
        AtRestPolicy.from_options({"secret_slot": ["pin"]})
    with pytest.raises(ValueError, match="secret_answer\\b"):
        MaskedSQLEventBroker(dialect="sqlite", db=str(tmp_path / "events.db"), secret_answer=["pin"])
    with pytest.raises(ValueError, match="batch_size"):
        MaskedSQLEventBroker(dialect="sqlite", db=str(tmp_path / "events.db"), batch_size=10)
    assert not db.exists()  # refused before anything was created
    # through Rasa's factories (which turn a failed import into an in-memory store): still refused
    config = {"type": "engine.tracker_store.SealedSQLTrackerStore", "dialect": "sqlite", "db": str(db),
              "secret_slot": ["pin"]}
    with pytest.raises(ValueError, match="secret_slot\\b"):
        TrackerStore.create(EndpointConfig.from_dict(config), domain)


async def test_unknown_broker_option_through_rasa_factory(tmp_path):
    config = {"type": "engine.event_broker.MaskedSQLEventBroker", "dialect": "sqlite",
              "db": str(tmp_path / "events.db"), "sealed_slot": ["email"]}
    with pytest.raises(ValueError, match="sealed_slot\\b"):
        await EventBroker.create(EndpointConfig.from_dict(config))


# --- 6. endpoints.yml -------------------------------------------------------------------------


def endpoints_for(backend: Backend, conversations_url: str, events_url: str, path: Path) -> Path:
    """The real endpoints.yml pointed at these databases: db paths for SQLite, a whole ``url``
    otherwise (as ``engine.stack`` writes it for CONVERSATIONS_DATABASE_URL / EVENTS_DATABASE_URL)."""
    yaml = YAML()
    endpoints = yaml.load((PROJECT_ROOT / "endpoints.yml").read_text(encoding="utf-8"))
    assert endpoints["tracker_store"]["type"] == "engine.tracker_store.SealedSQLTrackerStore"
    assert endpoints["event_broker"]["type"] == "engine.event_broker.MaskedSQLEventBroker"
    for section, url in (("tracker_store", conversations_url), ("event_broker", events_url)):
        if backend.name == "sqlite":
            endpoints[section]["db"] = sa.engine.make_url(url).database
        else:
            for option in ("dialect", "db"):
                endpoints[section].pop(option, None)
            endpoints[section]["url"] = url
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(endpoints, handle)
    return path


async def test_endpoints_yml_builds_store_and_broker_through_rasa_factories(backend, domain, engines, tmp_path):
    conversations_url, events_url = backend.new_url("conversations"), backend.new_url("events")
    endpoints = AvailableEndpoints.read_endpoints(str(endpoints_for(backend, conversations_url, events_url,
                                                                     tmp_path / "endpoints.yml")))

    broker = await EventBroker.create(endpoints.event_broker)
    store = TrackerStore.create(endpoints.tracker_store, domain, broker)
    engines.extend([broker.engine, store.engine])
    assert isinstance(broker, MaskedSQLEventBroker)
    assert isinstance(store, SealedSQLTrackerStore) and store.event_broker is broker
    configured = YAML(typ="safe").load((PROJECT_ROOT / "endpoints.yml").read_text(encoding="utf-8"))
    assert store.policy == AtRestPolicy.from_options(
        {name: configured["tracker_store"][name] for name in ("secret_slots", "secret_answers", "sealed_slots")})
    assert store.policy.secret_slots == {"pin"}

    tracker = await store.get_or_create_tracker("customer-1", append_action_listen=False)
    dialogue = pin_answer(balance_until_pin_question(Dialogue("customer-1")))
    await store.save(update(tracker, dialogue.events))

    assert_stored_exactly(conversations_url, dialogue)
    assert slot_rows(rows(conversations_url), "email")[0].startswith(SEALED_PREFIX)
    assert slot_rows(rows(events_url), "email") == [MASKED_EMAIL]
    assert len(rows(events_url)) == len(dialogue.events)
    assert [clear for clear in CLEAR_VALUES if clear in raw_data(conversations_url) + raw_data(events_url)] == []

    # Rasa's other entry point, and (SQLite) the `url:` form the run command writes: same data
    again = create_tracker_store(EndpointConfig.from_dict(
        {"type": "engine.tracker_store.SealedSQLTrackerStore", "url": str(conversations_url),
         "sealed_slots": list(configured["tracker_store"]["sealed_slots"])}), domain)
    engines.append(again.engine)
    assert isinstance(again, SealedSQLTrackerStore)
    restored = await again.retrieve("customer-1")
    assert restored.get_slot("email") == EMAIL and restored.get_slot("pin") == SECRET_PLACEHOLDER


async def test_the_store_tells_whether_the_latest_answer_was_a_secret(backend, open_store, domain):
    """The hand-over gateway masks such an answer in the operators' transcript too."""
    url = backend.new_url("conversations")
    store = open_store(url)
    dialogue = balance_until_pin_question(Dialogue("customer-1"))
    await store.save(dialogue.tracker(domain))
    assert not store.answered_secret("customer-1")  # the first message answered no question
    tracker = await store.retrieve("customer-1")
    known = len(dialogue.events)
    pin_answer(dialogue)
    await store.save(update(tracker, dialogue.events[known:]))
    assert store.answered_secret("customer-1")
    assert not store.answered_secret("somebody-else")


def test_stored_and_broadcast_together_equal_each_alone():
    """The tracker store masks an event once for both its row and the event stream."""
    from engine.personal_data import AtRestPolicy, Sealer

    policy, sealer = AtRestPolicy(), Sealer(["a-key"])
    events = [
        Dialogue("x").user(f"мой код {CODE}, почта {EMAIL}", "check_balance",
                          [("certificate_code", CODE, CODE), ("email", EMAIL, EMAIL)]).events[-1].as_dict(),
        {"event": "slot", "name": "email", "value": EMAIL, "timestamp": 1.0},
        {"event": "slot", "name": "pin", "value": PIN, "timestamp": 2.0},
        {"event": "slot", "name": "order_id", "value": ORDER, "timestamp": 3.0},
        {"event": "slot", "name": "buyer_check", "value": BUYER_DIGITS, "timestamp": 4.0},
        {"event": "bot", "text": f"Отправили на {EMAIL}", "data": {"custom": {"code": CODE}}, "timestamp": 5.0},
    ]
    for event in events:
        for requested in (None, "pin"):
            stored, broadcast = policy.stored_and_broadcast(event, requested, sealer)
            alone = policy.stored(event, requested, sealer)
            if str(alone.get("value", "")).startswith(SEALED_PREFIX):  # sealing is randomised: compare opened
                assert sealer.open(stored["value"]) == sealer.open(alone["value"])
                stored = {**stored, "value": None}
                alone = {**alone, "value": None}
            assert stored == alone
            assert broadcast == policy.broadcast(event, requested)
