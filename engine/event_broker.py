"""Rasa's SQL event broker, fed masked events, in one transaction per turn.

Configured in ``endpoints.yml``::

    event_broker:
      type: engine.event_broker.MaskedSQLEventBroker
      dialect: sqlite
      db: events.db          # or `url:` any SQLAlchemy URL (the run command: EVENTS_DATABASE_URL)

The table is Rasa's (``events``: ``id``, ``sender_id``, ``data`` = the event's JSON), so anything
written for Rasa's ``SQLEventBroker`` reads it: analytics and the review inbox read the event
stream here without touching the tracker store. The tracker store (``engine.tracker_store``)
publishes each turn's new events already masked (it knows which question a message answers);
this broker masks what reaches it by any other way too, so no clear-text personal data lands in
its table. Each batch is one transaction, not one per event.
"""
from __future__ import annotations

import json
from asyncio import AbstractEventLoop
from typing import Any, Dict, Iterable, Optional, Text

import sqlalchemy
import sqlalchemy.orm
from rasa.core.brokers.sql import SQLEventBroker
from sqlalchemy.pool import QueuePool
from rasa.utils.endpoints import EndpointConfig

from engine.personal_data import AtRestPolicy
from engine.personal_data import POLICY_OPTIONS
from sqlstore import create_all_tables, tune_sqlite_file, writer_lock


class MaskedSQLEventBroker(SQLEventBroker):
    def __init__(
        self,
        dialect: Text = "sqlite",
        host: Optional[Text] = None,
        port: Optional[int] = None,
        db: Text = "events.db",
        username: Optional[Text] = None,
        password: Optional[Text] = None,
        **options: Any,
    ) -> None:
        self.policy = AtRestPolicy.from_options({name: options.pop(name) for name in POLICY_OPTIONS if name in options})
        if options:
            raise ValueError(f"MaskedSQLEventBroker: unknown option(s) {', '.join(sorted(options))}")
        # replicas starting together create the table at the same moment
        create_all_tables(lambda: super(MaskedSQLEventBroker, self).__init__(dialect, host, port, db, username, password))
        if self.engine.dialect.name == "sqlite":  # one pool of connections, not one per event
            url = self.engine.url
            self.engine.dispose()
            self.engine = sqlalchemy.create_engine(url, poolclass=QueuePool, connect_args={"check_same_thread": False})
            self.sessionmaker = sqlalchemy.orm.sessionmaker(bind=self.engine)
        tune_sqlite_file(self.engine)
        self._insert = self.SQLBrokerEvent.__table__.insert()  # built once: its cache key is computed once

    @classmethod
    async def from_endpoint_config(
        cls, broker_config: EndpointConfig, event_loop: Optional[AbstractEventLoop] = None
    ) -> "MaskedSQLEventBroker":
        return cls(host=broker_config.url, **broker_config.kwargs)

    def publish(self, event: Dict[Text, Any]) -> None:
        self.publish_masked([self.policy.broadcast(event, None)])

    def publish_masked(self, events: Iterable[Dict[Text, Any]]) -> None:
        """Store events the caller has already passed through :meth:`AtRestPolicy.broadcast`."""
        rows = [{"sender_id": event.get("sender_id"), "data": json.dumps(event)} for event in events]
        if not rows:
            return
        with writer_lock(self.engine), self.engine.begin() as connection:
            connection.execute(self._insert, rows)
