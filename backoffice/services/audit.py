"""The audit trail: one row per state change (and per refused refund / resend attempt)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.db import SessionFactory, read_transaction, write_transaction
from backoffice.errors import BackofficeError
from backoffice.models import AuditLog
from backoffice.serializers import audit_view


def record(
    session: Session,
    *,
    action: str,
    entity: str,
    entity_id: Any,
    actor: str,
    payload: Dict[str, Any],
    now: datetime,
) -> AuditLog:
    """Add an audit row to the caller's transaction. ``payload`` must already be masked."""
    entry = AuditLog(
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        actor=actor,
        payload=payload,
        created_at=now,
    )
    session.add(entry)
    return entry


def record_refusal(
    session_factory: SessionFactory,
    *,
    action: str,
    entity: str,
    entity_id: Any,
    actor: str,
    error: BackofficeError,
    payload: Optional[Dict[str, Any]],
    now: datetime,
) -> None:
    """A refused state-changing attempt, in its own transaction (the attempt's was rolled back)."""
    with write_transaction(session_factory) as session:
        record(
            session,
            action=action,
            entity=entity,
            entity_id=entity_id,
            actor=actor,
            payload={**(payload or {}), "refused": error.code},
            now=now,
        )


def list_entries(
    session_factory: SessionFactory,
    *,
    entity: Optional[str] = None,
    entity_id: Optional[str] = None,
    action: Optional[str] = None,
    limit: int = 100,
) -> List[Dict[str, Any]]:
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if entity:
        query = query.where(AuditLog.entity == entity)
    if entity_id:
        query = query.where(AuditLog.entity_id == entity_id)
    if action:
        query = query.where(AuditLog.action == action)
    with read_transaction(session_factory) as session:
        rows = session.execute(query).scalars().all()
        return [audit_view(row) for row in reversed(rows)]
