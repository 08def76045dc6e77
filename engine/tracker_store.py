"""Rasa's ``SQLTrackerStore`` with personal data kept out of its rows and one read per save.

Configured in ``endpoints.yml`` (SQLite file by default; any SQLAlchemy URL as ``url``, which the
run command sets from ``CONVERSATIONS_DATABASE_URL``)::

    tracker_store:
      type: engine.tracker_store.SealedSQLTrackerStore
      dialect: sqlite
      db: conversations.db
      secret_slots: [pin]                       # see engine/personal_data.py
      secret_answers: [pin, buyer_check]
      sealed_slots: [certificate_code, email, phone, buyer_check, resend_address]

Same table, same rows, same queries as Rasa's store — ``rasa export``, ``rasa interactive`` and the
HTTP API read it as usual — except that every event goes through
:class:`engine.personal_data.AtRestPolicy` before it is written (texts masked, the PIN never kept,
the slots a flow still needs encrypted) and sealed values are opened when a tracker is read.

Differences in how it works, all for speed (the store was half the server's time per message):
Rasa's ``save`` reads the whole tracker back from the database to find which events are new, then
counts them again; this one remembers how many events of the session it read (a conversation is
locked while a message is handled, so nothing else writes it meanwhile; a tracker it did not read
is counted), inserts the new ones in one statement and publishes them (masked) after the commit,
in one batch when the broker can take one. It uses SQLAlchemy Core rather than ORM sessions, and
for SQLite one pool of connections (instead of a new connection per query) in WAL mode with
``synchronous=NORMAL`` and a busy timeout. Reads and writes run in worker threads, so the server
goes on with other conversations while one waits for its database.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
from collections import OrderedDict
from functools import cached_property

import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy.pool import QueuePool
from pathlib import Path
from typing import Any, Dict, List, Optional, Text

from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import AllSlotsReset, Event, Restarted, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY

from engine.personal_data import POLICY_OPTIONS, REQUESTED_SLOT, AtRestPolicy, Sealer
from sqlstore import tune_sqlite_file, writer_lock

logger = logging.getLogger(__name__)

#: conversations whose latest answer this process remembers (see answered_secret)
REMEMBERED_ANSWERS = 10_000
#: set on a tracker this store read or wrote: (sender id, how many of its events are stored)
STORED_EVENTS_ATTRIBUTE = "_sealed_store_stored_events"
#: the endpoint options besides the policy's (``url`` arrives as ``host``)
STORE_OPTIONS = ("dialect", "host", "port", "db", "username", "password", "login_db", "query", "key_file")



async def _in_thread(function: Any, *args: Any) -> Any:
    """Database work off the event loop: while one conversation waits for its commit (PostgreSQL
    waits for the disk) the server goes on with the others."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(function, *args))


def _requested_slots(events: List[Event]) -> List[Optional[str]]:
    """For each event, the ``requested_slot`` in force when it happened (a user message is the
    answer to that question)."""
    current: Optional[str] = None
    out: List[Optional[str]] = []
    for event in events:
        out.append(current)
        if isinstance(event, SlotSet) and event.key == REQUESTED_SLOT:
            current = event.value
        elif isinstance(event, (Restarted, SessionStarted, AllSlotsReset)):
            current = None
    return out


class SealedSQLTrackerStore(SQLTrackerStore):
    """See the module doc. Extra options: those of :class:`AtRestPolicy` and ``key_file``."""

    def __init__(
        self,
        domain: Optional[Domain] = None,
        dialect: Text = "sqlite",
        host: Optional[Text] = None,
        port: Optional[int] = None,
        db: Text = "rasa.db",
        username: Text = None,
        password: Text = None,
        event_broker: Optional[EventBroker] = None,
        login_db: Optional[Text] = None,
        query: Optional[Dict] = None,
        key_file: Optional[Text] = None,
        **kwargs: Any,
    ) -> None:
        policy_options = {name: kwargs.pop(name) for name in POLICY_OPTIONS if name in kwargs}
        if kwargs:  # Rasa's store swallows any option: a misspelt one would silently not apply
            raise ValueError(
                f"SealedSQLTrackerStore: unknown option(s) {', '.join(sorted(kwargs))}; "
                f"known: {', '.join(sorted(STORE_OPTIONS + POLICY_OPTIONS))}"
            )
        self.policy = AtRestPolicy.from_options(policy_options)
        self._secret_answers: "OrderedDict[str, bool]" = OrderedDict()
        self._answers_lock = threading.Lock()
        self.sealer = Sealer.from_env(Path(key_file) if key_file else None)
        super().__init__(domain, dialect, host, port, db, username, password, event_broker, login_db, query)
        self._use_pooled_sqlite()
        tune_sqlite_file(self.engine)

    def _use_pooled_sqlite(self) -> None:
        """Rasa's SQLite engine opens a new connection per session (SQLAlchemy 1.4's NullPool for
        files): that, and ORM bookkeeping, were half the server's time per message. One pool of
        connections, used from the event loop's thread and the executor's."""
        if self.engine.dialect.name != "sqlite":
            return
        url = self.engine.url
        self.engine.dispose()
        self.engine = sa.create_engine(url, poolclass=QueuePool, pool_size=4, max_overflow=8,
                                       connect_args={"check_same_thread": False})
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)

    def _session_clause(self, sender_id: Any) -> Any:
        """Rasa's "events since the latest SessionStarted" filter, as a Core clause."""
        table = self.SQLEvent.__table__
        latest_start = (
            sa.select(sa.func.max(table.c.timestamp))
            .where(table.c.sender_id == sender_id, table.c.type_name == SessionStarted.type_name)
            .scalar_subquery()
        )
        return sa.and_(
            table.c.sender_id == sender_id,
            sa.or_(table.c.timestamp >= latest_start, latest_start.is_(None)),
        )

    @cached_property
    def _statements(self) -> Dict[str, Any]:
        """The hot path's statements, built once: SQLAlchemy computes a statement's cache key per
        statement object, which for these took more time than the queries themselves."""
        table = self.SQLEvent.__table__
        sender = sa.bindparam("sender_id")
        return {
            "session": sa.select(table.c.data).where(self._session_clause(sender)).order_by(table.c.id),
            "all": sa.select(table.c.data).where(table.c.sender_id == sender).order_by(table.c.id),
            "insert": table.insert(),
        }

    async def _retrieve(
        self, sender_id: Text, fetch_events_from_all_sessions: bool
    ) -> Optional[DialogueStateTracker]:
        return await _in_thread(self._retrieve_now, sender_id, fetch_events_from_all_sessions)

    def _retrieve_now(self, sender_id: Text, fetch_events_from_all_sessions: bool) -> Optional[DialogueStateTracker]:
        query = self._statements["all" if fetch_events_from_all_sessions else "session"]
        with self.engine.connect() as connection:
            rows = connection.execute(query, {"sender_id": sender_id}).fetchall()
        events = [self.policy.restored(json.loads(row.data), self.sealer) for row in rows]
        if not (self.domain and events):
            return None
        tracker = DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
        # every event it holds is stored (the full history too: counting the latest session's rows
        # for it would write the earlier sessions again): the next save writes only what follows
        setattr(tracker, STORED_EVENTS_ATTRIBUTE, (sender_id, len(tracker.events)))
        return tracker

    async def save(self, tracker: DialogueStateTracker) -> None:
        published = await _in_thread(self._save_now, tracker)
        if not published:
            return
        if getattr(self.event_broker, "publish_masked", None) is not None:  # engine.event_broker: SQL too
            await _in_thread(self._publish, published)
        else:  # other brokers (Kafka, RabbitMQ…) belong to the event loop
            self._publish(published)

    def _save_now(self, tracker: DialogueStateTracker) -> List[Dict[str, Any]]:
        """Write the tracker's new events; → them as the event broker gets them."""
        events = list(tracker.events)
        published: List[Dict[str, Any]] = []
        with writer_lock(self.engine), self.engine.begin() as connection:
            known = getattr(tracker, STORED_EVENTS_ATTRIBUTE, None)
            if known and known[0] == tracker.sender_id and known[1] <= len(events):
                stored = known[1]
            else:
                stored = self._count_stored(connection, tracker.sender_id, events)
            rows = []
            asked = _requested_slots(events)
            for event, requested in zip(events[stored:], asked[stored:]):
                data = event.as_dict()
                if isinstance(event, UserUttered):
                    self._remember_answer(tracker.sender_id, requested in self.policy.secret_answers)
                stored, broadcast = self.policy.stored_and_broadcast(data, requested, self.sealer)
                rows.append({
                    "sender_id": tracker.sender_id,
                    "type_name": event.type_name,
                    "timestamp": data.get("timestamp"),
                    "intent_name": (data.get("parse_data") or {}).get("intent", {}).get(INTENT_NAME_KEY),
                    "action_name": data.get("name"),
                    "data": json.dumps(stored),
                })
                if self.event_broker is not None:
                    published.append({"sender_id": tracker.sender_id, **broadcast})
            if rows:
                connection.execute(self._statements["insert"], rows)
        setattr(tracker, STORED_EVENTS_ATTRIBUTE, (tracker.sender_id, len(events)))
        return published

    def _remember_answer(self, sender_id: Text, secret: bool) -> None:
        with self._answers_lock:  # saves run in worker threads
            answers = self._secret_answers
            answers.pop(sender_id, None)
            answers[sender_id] = secret
            while len(answers) > REMEMBERED_ANSWERS:
                answers.popitem(last=False)

    def answered_secret(self, sender_id: Text) -> bool:
        """Whether the customer's latest message this process saved answered a secret question
        (the PIN, the buyer check): the hand-over gateway masks it in the operators' transcript."""
        return self._secret_answers.get(sender_id, False)

    def _count_stored(self, connection: Any, sender_id: Text, events: List[Event]) -> int:
        """How many events of a tracker this store did not read are stored already. Rasa counts
        the rows of the latest session, right only for a tracker that starts with that session:
        the tracker's events from before it (a full history) are stored too."""
        table = self.SQLEvent.__table__
        latest_start = connection.execute(
            sa.select(sa.func.max(table.c.timestamp))
            .where(table.c.sender_id == sender_id, table.c.type_name == SessionStarted.type_name)
        ).scalar()
        in_session = connection.execute(
            sa.select(sa.func.count()).select_from(table).where(self._session_clause(sender_id))
        ).scalar_one()
        if latest_start is None:
            return in_session
        # the session's rows are those from its start on (Rasa logs `action_session_start` just
        # before the SessionStarted it returned, with a later timestamp)
        before = next((i for i, event in enumerate(events) if event.timestamp >= latest_start), len(events))
        return before + in_session

    def _publish(self, events: List[Dict[str, Any]]) -> None:
        broker = self.event_broker
        publish_masked = getattr(broker, "publish_masked", None)
        if publish_masked is not None:  # engine.event_broker: the batch in one transaction
            publish_masked(events)
            return
        for event in events:
            broker.publish(event)  # type: ignore[union-attr]
