"""CRM tickets: created by the assistant on escalation, read and closed by staff."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from backoffice import rules
from backoffice.db import SessionFactory, read_transaction, write_transaction
from backoffice.errors import NotFound
from backoffice.masking import mask_contact
from backoffice.models import Ticket
from backoffice.serializers import ticket_view
from backoffice.services import audit
from backoffice.validation import TicketCreate, TicketUpdate


@dataclass(frozen=True)
class TicketOutcome:
    created: bool
    ticket: Dict[str, Any]


def _by_key(session, key: str):
    return session.execute(select(Ticket).where(Ticket.idempotency_key == key)).scalar_one_or_none()


def create_ticket(
    session_factory: SessionFactory, request: TicketCreate, *, actor: str, now: datetime
) -> TicketOutcome:
    try:
        with write_transaction(session_factory) as session:
            if request.idempotency_key:
                existing = _by_key(session, request.idempotency_key)
                if existing is not None:
                    return TicketOutcome(False, ticket_view(existing, now))
            ticket = Ticket(
                subject=request.subject,
                summary=request.summary,
                transcript=request.transcript,
                priority=request.priority,
                status="open",
                contact=request.contact,
                conversation_id=request.conversation_id,
                category=request.category,
                order_id=request.order_id,
                idempotency_key=request.idempotency_key,
                first_response_by=rules.ticket_first_response_by(now),
                created_at=now,
                updated_at=now,
            )
            session.add(ticket)
            session.flush()
            audit.record(
                session,
                action="ticket.create",
                entity="ticket",
                entity_id=ticket.id,
                actor=actor,
                payload={
                    "subject": ticket.subject,
                    "category": ticket.category,
                    "priority": ticket.priority,
                    "contact": mask_contact(ticket.contact),
                    "conversation_id": ticket.conversation_id,
                    "order_id": ticket.order_id,
                    "transcript_turns": len(ticket.transcript) if isinstance(ticket.transcript, list) else None,
                },
                now=now,
            )
            return TicketOutcome(True, ticket_view(ticket, now))
    except IntegrityError:
        if not request.idempotency_key:
            raise
        with read_transaction(session_factory) as session:
            existing = _by_key(session, request.idempotency_key)
            if existing is None:
                raise
            return TicketOutcome(False, ticket_view(existing, now))


def get_ticket(session_factory: SessionFactory, ticket_id: int, now: datetime) -> Dict[str, Any]:
    with read_transaction(session_factory) as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            raise NotFound(f"Ticket {ticket_id} not found.")
        return ticket_view(ticket, now)


def update_ticket(
    session_factory: SessionFactory, ticket_id: int, update: TicketUpdate, *, actor: str, now: datetime
) -> Dict[str, Any]:
    with write_transaction(session_factory) as session:
        ticket = session.get(Ticket, ticket_id, with_for_update=True)
        if ticket is None:
            raise NotFound(f"Ticket {ticket_id} not found.")
        changes: Dict[str, Any] = {}
        for field in ("status", "priority"):
            new = getattr(update, field)
            if new is not None and new != getattr(ticket, field):
                changes[field] = {"from": getattr(ticket, field), "to": new}
                setattr(ticket, field, new)
        if changes:
            ticket.updated_at = now
            audit.record(
                session,
                action="ticket.update",
                entity="ticket",
                entity_id=ticket.id,
                actor=actor,
                payload={"changes": changes},
                now=now,
            )
        return ticket_view(ticket, now)
