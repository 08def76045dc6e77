"""ORM rows → JSON-ready dicts. Buyer contacts and certificate codes leave here masked."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Dict, Optional, Union

from backoffice import rules
from backoffice.masking import mask_address, mask_code, mask_email, mask_phone
from backoffice.models import AuditLog, Brand, Certificate, Order, Refund, ResendLog, Ticket
from backoffice.timeutil import iso


def money(value: Optional[Decimal]) -> Union[int, float, None]:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def certificate_view(certificate: Certificate, now: datetime) -> Dict[str, Any]:
    return {
        "code": mask_code(certificate.code),
        "brand": certificate.brand,
        "nominal": money(certificate.nominal),
        "balance": money(certificate.balance),
        "status": rules.effective_status(certificate.status, certificate.expires_at, now),
        "expires_at": iso(certificate.expires_at),
        "delivery_channel": certificate.delivery_channel,
        "delivery_address": mask_address(certificate.delivery_channel, certificate.delivery_address),
    }


def refund_view(refund: Refund) -> Dict[str, Any]:
    return {
        "id": refund.id,
        "order_id": refund.order_id,
        "amount": money(refund.amount),
        "status": refund.status,
        "payment_method": refund.payment_method,
        "due_by": refund.due_by.isoformat(),
        "idempotency_key": refund.idempotency_key,
        "created_at": iso(refund.created_at),
    }


def order_view(order: Order, now: datetime) -> Dict[str, Any]:
    return {
        "id": order.id,
        "created_at": iso(order.created_at),
        "buyer_email": mask_email(order.buyer_email),
        "buyer_phone": mask_phone(order.buyer_phone),
        "is_b2b": order.is_b2b,
        "company_inn": order.company_inn,
        "payment_method": order.payment_method,
        "amount": money(order.amount),
        "days_since_purchase": rules.calendar_days_since(order.created_at, now),
        "certificates": [certificate_view(c, now) for c in order.certificates],
        "refund": refund_view(order.refund) if order.refund is not None else None,
    }


def brand_view(brand: Brand) -> Dict[str, Any]:
    return {
        "name": brand.name,
        "in_catalogue": brand.in_catalogue,
        "online": brand.online,
        "offline": brand.offline,
        "single_purchase": brand.single_purchase,
        "note": brand.note,
    }


def lookup_view(certificate: Certificate, brand: Optional[Brand], now: datetime) -> Dict[str, Any]:
    return {
        "code": mask_code(certificate.code),
        "status": rules.effective_status(certificate.status, certificate.expires_at, now),
        "balance": money(certificate.balance),
        "nominal": money(certificate.nominal),
        "brand": certificate.brand,
        "expires_at": iso(certificate.expires_at),
        "brand_rules": brand_view(brand) if brand is not None else None,
    }


def resend_view(log: ResendLog, certificate_codes: list, left_today: int) -> Dict[str, Any]:
    return {
        "id": log.id,
        "order_id": log.order_id,
        "channel": log.channel,
        "address": mask_address(log.channel, log.address),
        "to_new_address": log.to_new_address,
        "certificates": [mask_code(code) for code in certificate_codes],
        "idempotency_key": log.idempotency_key,
        "created_at": iso(log.created_at),
        "resends_left_today": left_today,
    }


def ticket_view(ticket: Ticket, now: datetime) -> Dict[str, Any]:
    return {
        "id": ticket.id,
        "subject": ticket.subject,
        "summary": ticket.summary,
        "transcript": ticket.transcript,
        "priority": ticket.priority,
        "status": ticket.status,
        "contact": ticket.contact,  # operators need it to reply; the audit log keeps it masked
        "conversation_id": ticket.conversation_id,
        "category": ticket.category,
        "order_id": ticket.order_id,
        "first_response_by": iso(ticket.first_response_by),
        "staff_online": rules.staff_online(now),
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
    }


def audit_view(entry: AuditLog) -> Dict[str, Any]:
    return {
        "id": entry.id,
        "action": entry.action,
        "entity": entry.entity,
        "entity_id": entry.entity_id,
        "actor": entry.actor,
        "payload": entry.payload,
        "created_at": iso(entry.created_at),
    }
