"""The trainers' decisions: one row per message wording a trainer dealt with, so that the inbox
shows each mistake until someone decides about it and never again after (however often customers
write it later, it is counted under the decision, not shown as new).

``review_decisions`` (in the hand-over database unless ``REVIEW_DATABASE_URL`` says otherwise):
the wording's key (``inbox.text_key``), the masked wording, what was decided — ``trained`` (an
intent, written to ``data/nlu/reviewed/``), ``out_of_scope`` (trained as out of scope),
``kb_alias`` / ``kb_article`` / ``kb_correction`` (an article), ``dismissed`` — by whom and when.
Undoing a decision deletes its row, so the wording returns to the inbox.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional

from sqlalchemy import Column, Integer, String, Text, select
from sqlalchemy.orm import declarative_base

from sqlstore import (
    UTCDateTime,
    create_all_tables,
    make_engine,
    make_session_factory,
    read_transaction,
    write_transaction,
)

DECISIONS = ("trained", "out_of_scope", "kb_alias", "kb_article", "kb_correction", "dismissed")

Base = declarative_base()


class DecisionRow(Base):
    __tablename__ = "review_decisions"

    id = Column(Integer, primary_key=True, autoincrement=True)
    text_key = Column(String(32), nullable=False, unique=True)
    text = Column(Text, nullable=False)  # as the inbox showed it (masked)
    decision = Column(String(16), nullable=False)
    target = Column(String(128), nullable=True)  # the intent or the article id
    reviewer = Column(String(128), nullable=False)
    note = Column(String(500), nullable=True)
    at = Column(UTCDateTime, nullable=False)


@dataclass(frozen=True)
class Decision:
    text_key: str
    text: str
    decision: str
    target: Optional[str]
    reviewer: str
    at: datetime
    note: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        data = dict(vars(self))
        data["at"] = self.at.isoformat().replace("+00:00", "Z")
        return data


def _decision(row: DecisionRow) -> Decision:
    return Decision(row.text_key, row.text, row.decision, row.target, row.reviewer, row.at, row.note)


class DecisionStore:
    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        create_all_tables(lambda: Base.metadata.create_all(self.engine))
        self._sessions = make_session_factory(self.engine)

    def record(self, text_key: str, text: str, decision: str, target: Optional[str], reviewer: str,
               note: Optional[str] = None) -> Decision:
        """Records (or replaces) the decision about one wording."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
        with write_transaction(self._sessions) as session:
            row = session.execute(select(DecisionRow).where(DecisionRow.text_key == text_key)).scalar_one_or_none()
            if row is None:
                row = DecisionRow(text_key=text_key)
                session.add(row)
            row.text, row.decision, row.target = text[:4000], decision, target
            row.reviewer, row.note, row.at = reviewer, (note or None) and note[:500], datetime.now(timezone.utc)
            session.flush()
            return _decision(row)

    def forget(self, text_key: str) -> Optional[Decision]:
        """Undoes a decision (the wording shows in the inbox again); the removed decision, if any."""
        with write_transaction(self._sessions) as session:
            row = session.execute(select(DecisionRow).where(DecisionRow.text_key == text_key)).scalar_one_or_none()
            if row is None:
                return None
            found = _decision(row)
            session.delete(row)
            return found

    def decided(self, text_keys: Optional[Iterable[str]] = None) -> Dict[str, Decision]:
        with read_transaction(self._sessions) as session:
            query = select(DecisionRow)
            if text_keys is not None:
                keys = list(text_keys)
                if not keys:
                    return {}
                query = query.where(DecisionRow.text_key.in_(keys))
            return {row.text_key: _decision(row) for row in session.execute(query).scalars()}

    def history(self, limit: int = 200) -> List[Decision]:
        with read_transaction(self._sessions) as session:
            rows = session.execute(select(DecisionRow).order_by(DecisionRow.at.desc()).limit(limit)).scalars()
            return [_decision(row) for row in rows]

    def close(self) -> None:
        self.engine.dispose()
