"""The hand-off core's database: engine from the settings and its tables (nothing is opened on import).

Engines, sessions and transactions come from ``sqlstore`` (shared with the back office, but the
hand-off core may live in its own database): SQLite gets ``BEGIN IMMEDIATE`` for writes, so two
writers never interleave. On PostgreSQL the service locks the conversation row with
``SELECT ... FOR UPDATE``; on every backend the ``version`` column is compared-and-swapped on
UPDATE as the last line of defence.
"""
from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from handoff.models import Base
from handoff.settings import HandoffSettings
from sqlstore import SessionFactory, create_all_tables, make_engine, make_session_factory, read_transaction, write_transaction

__all__ = [
    "SessionFactory",
    "create_tables",
    "drop_tables",
    "engine_from_settings",
    "make_engine",
    "make_session_factory",
    "read_transaction",
    "write_transaction",
]


def engine_from_settings(settings: HandoffSettings) -> Engine:
    # every customer turn writes here: on SQLite a commit must not wait for the disk each time
    # (a process crash still loses nothing; production runs on PostgreSQL)
    return make_engine(settings.database_url, sqlite_synchronous="NORMAL")


#: columns added after the first release: (table, column, DDL type), added to older databases
ADDED_COLUMNS = (("conversations", "channel", "VARCHAR(64)"),)


def create_tables(engine: Engine) -> None:
    """Missing tables, and the columns later versions added to existing ones."""
    create_all_tables(lambda: Base.metadata.create_all(engine))  # the console and the gateways start together
    for table, column, ddl_type in ADDED_COLUMNS:
        create_all_tables(lambda: _add_column(engine, table, column, ddl_type))


def _add_column(engine: Engine, table: str, column: str, ddl_type: str) -> None:
    if column not in {existing["name"] for existing in inspect(engine).get_columns(table)}:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl_type}")


def drop_tables(engine: Engine) -> None:
    Base.metadata.drop_all(engine)
