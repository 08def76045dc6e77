"""The OpenAPI 3 description of the back-office API (hand-written, served at /openapi.json)."""
from __future__ import annotations

from typing import Any, Dict

from backoffice.models import CERTIFICATE_STATUSES, LOCKOUT_KINDS, TICKET_PRIORITIES, TICKET_STATUSES

_ERROR_CODES = [
    "invalid_request", "unauthorized", "not_found", "method_not_allowed", "payload_too_large",
    "idempotency_key_conflict", "internal_error", "verification_required", "verification_failed",
    "pin_invalid", "refund_not_allowed_activated", "refund_not_allowed_partially_used",
    "refund_not_allowed_used", "refund_not_allowed_expired", "refund_already_exists",
    "refund_window_passed", "refund_b2b_manager_only", "resend_limit_reached", "order_refunded",
    "too_many_attempts",
]


def _ref(name: str) -> Dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Dict[str, Any], description: str) -> Dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Dict[str, Any]:
    return _json(_ref("Error"), description)


def _locked(description: str = "too_many_attempts") -> Dict[str, Any]:
    """The 429 of a locked PIN / buyer check: the wait is in the body and in ``Retry-After``."""
    return {
        **_error(f"{description}: too many failed PIN / buyer checks of this certificate code / order; "
                 "refused even with the right value until `retry_after_seconds` have passed or staff "
                 "unlock it (POST /lockouts/unlock)"),
        "headers": {"Retry-After": {
            "description": "Seconds until checks are taken again (= error.retry_after_seconds)",
            "schema": {"type": "integer", "minimum": 1},
        }},
    }


def _body(schema: Dict[str, Any]) -> Dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_ORDER_ID_PARAM = {
    "name": "order_id", "in": "path", "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]{8}$"}, "example": "40817263",
}
_TICKET_ID_PARAM = {"name": "ticket_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_ACTOR_HEADER = {
    "name": "X-Actor", "in": "header", "required": False,
    "description": "Who acts (written to the audit log); default 'api'.",
    "schema": {"type": "string", "maxLength": 64},
}

_MONEY = {"type": "number", "description": "Roubles"}
_SCHEMAS: Dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": _ERROR_CODES},
                    "message": {"type": "string"},
                    "retry_after_seconds": {
                        "type": "integer", "minimum": 1,
                        "description": "too_many_attempts only: whole seconds (rounded up) until the lock "
                                       "ends, i.e. `window` after the failure that reached the limit",
                    },
                },
            }
        },
    },
    "Verification": {
        "type": "object",
        "description": "The order's buyer e-mail (case-insensitive) or the last 4 digits of its phone.",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "phone_last4": {"type": "string", "pattern": "^[0-9]{4}$"},
        },
    },
    "Certificate": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "example": "DRM-****-****-7Q2K", "description": "Masked"},
            "brand": {"type": "string"},
            "nominal": _MONEY,
            "balance": _MONEY,
            "status": {"type": "string", "enum": list(CERTIFICATE_STATUSES)},
            "expires_at": {"type": "string", "format": "date-time"},
            "delivery_channel": {"type": "string", "enum": ["email", "sms"]},
            "delivery_address": {"type": "string", "description": "Masked"},
        },
    },
    "Refund": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "order_id": {"type": "string"},
            "amount": _MONEY,
            "status": {"type": "string", "enum": ["pending", "completed"]},
            "payment_method": {"type": "string", "description": "The money goes back the same way."},
            "due_by": {"type": "string", "format": "date", "description": "10 working days"},
            "idempotency_key": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "Order": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "buyer_email": {"type": "string", "example": "i***@mail.ru"},
            "buyer_phone": {"type": "string", "example": "+7***4567"},
            "is_b2b": {"type": "boolean"},
            "company_inn": {"type": "string", "nullable": True},
            "payment_method": {"type": "string"},
            "amount": _MONEY,
            "days_since_purchase": {"type": "integer"},
            "certificates": {"type": "array", "items": _ref("Certificate")},
            "refund": {"allOf": [_ref("Refund")], "nullable": True},
        },
    },
    "Brand": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "in_catalogue": {"type": "boolean"},
            "online": {"type": "boolean"},
            "offline": {"type": "boolean"},
            "single_purchase": {"type": "boolean"},
            "note": {"type": "string", "nullable": True},
        },
    },
    "Lookup": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "example": "DRM-****-****-7Q2K"},
            "status": {"type": "string", "enum": list(CERTIFICATE_STATUSES)},
            "balance": _MONEY,
            "nominal": _MONEY,
            "brand": {"type": "string"},
            "expires_at": {"type": "string", "format": "date-time"},
            "brand_rules": {"allOf": [_ref("Brand")], "nullable": True},
        },
    },
    "Eligibility": {
        "type": "object",
        "properties": {
            "order_id": {"type": "string"},
            "eligible": {"type": "boolean"},
            "reason": {"type": "string", "nullable": True, "enum": [c for c in _ERROR_CODES if c.startswith("refund_")]},
            "message": {"type": "string"},
            "needs_human": {"type": "boolean", "description": "Escalate: a ticket for a staff member / the manager."},
            "amount": _MONEY,
            "payment_method": {"type": "string"},
            "days_since_purchase": {"type": "integer"},
            "refund_window_days": {"type": "integer"},
            "refund": {"allOf": [_ref("Refund")], "nullable": True},
        },
    },
    "Resend": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "order_id": {"type": "string"},
            "channel": {"type": "string", "enum": ["email", "sms"]},
            "address": {"type": "string", "description": "Masked"},
            "to_new_address": {"type": "boolean"},
            "certificates": {"type": "array", "items": {"type": "string"}},
            "idempotency_key": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "resends_left_today": {"type": "integer"},
        },
    },
    "TicketCreate": {
        "type": "object",
        "required": ["subject"],
        "properties": {
            "subject": {"type": "string", "maxLength": 200},
            "summary": {"type": "string"},
            "transcript": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "object", "properties": {
                        "sender": {"type": "string"}, "text": {"type": "string"}}}},
                ]
            },
            "priority": {"type": "string", "enum": list(TICKET_PRIORITIES), "default": "normal"},
            "contact": {"type": "string"},
            "conversation_id": {"type": "string"},
            "category": {"type": "string", "default": "other",
                         "example": "refund_after_14_days"},
            "order_id": {"type": "string", "pattern": "^[0-9]{8}$"},
            "idempotency_key": {"type": "string"},
        },
    },
    "Ticket": {
        "allOf": [
            _ref("TicketCreate"),
            {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "status": {"type": "string", "enum": list(TICKET_STATUSES)},
                    "first_response_by": {"type": "string", "format": "date-time",
                                          "description": "2 working hours, support works 9:00–21:00 Moscow"},
                    "staff_online": {"type": "boolean"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                },
            },
        ]
    },
    "LockoutStatus": {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": list(LOCKOUT_KINDS)},
            "subject": {"type": "string", "example": "DRM-****-****-7Q2K",
                        "description": "Masked certificate code (pin) or order id (buyer)"},
            "failures": {"type": "integer", "description": "Failed checks within the window ending now"},
            "max_failures": {"type": "integer", "description": "BACKOFFICE_LOCKOUT_MAX_FAILURES"},
            "window_seconds": {"type": "integer", "description": "BACKOFFICE_LOCKOUT_WINDOW_MINUTES × 60"},
            "locked": {"type": "boolean"},
            "locked_until": {"type": "string", "format": "date-time", "nullable": True},
            "retry_after_seconds": {"type": "integer", "nullable": True},
        },
    },
    "AuditEntry": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "action": {"type": "string"},
            "entity": {"type": "string"},
            "entity_id": {"type": "string"},
            "actor": {"type": "string"},
            "payload": {"type": "object", "description": "Personal data masked"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
}

_COMMON_ERRORS = {"400": _error("Bad input"), "401": _error("Missing or wrong bearer token")}


def _op(summary: str, responses: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
    return {"summary": summary, "responses": {**responses, **_COMMON_ERRORS}, **extra}


def build_openapi() -> Dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "«Дарим» back office (admin panel + CRM API)",
            "version": "1.0.0",
            "description": (
                "Orders, certificates, refunds, resends and CRM tickets of the reference deployment. "
                "Every call except /health and /openapi.json needs `Authorization: Bearer <token>`. "
                "Errors: `{\"error\": {\"code\", \"message\"}}` with a stable code; "
                "`too_many_attempts` (429) adds `retry_after_seconds` and a `Retry-After` header."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
        },
        "paths": {
            "/health": {"get": {
                "summary": "Liveness and database check", "security": [],
                "responses": {"200": _json({"type": "object", "properties": {
                    "status": {"type": "string"}, "database": {"type": "string"}}}, "OK")},
            }},
            "/openapi.json": {"get": {
                "summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI 3 document"}},
            }},
            "/orders/{order_id}": {"get": _op(
                "An order with masked buyer contacts and masked certificate codes",
                {"200": _json(_ref("Order"), "The order"), "404": _error("No such order")},
                parameters=[_ORDER_ID_PARAM],
            )},
            "/orders/{order_id}/verify": {"post": _op(
                "Check the buyer: order + e-mail or last 4 phone digits",
                {"200": _json({"type": "object", "properties": {"verified": {"type": "boolean"}}},
                              "Result (a mismatch counts as a failed buyer check)"),
                 "404": _error("No such order"), "429": _locked()},
                parameters=[_ORDER_ID_PARAM], requestBody=_body(_ref("Verification")),
            )},
            "/orders/{order_id}/refund-eligibility": {"get": _op(
                "Whether a full refund is possible, and if not, why and whether a human decides",
                {"200": _json(_ref("Eligibility"), "Eligibility"), "404": _error("No such order")},
                parameters=[_ORDER_ID_PARAM],
            )},
            "/orders/{order_id}/resend": {"post": _op(
                "Re-send the order's certificates (own address, or a new one after verification); "
                "at most RESEND_DAILY_LIMIT per order per Moscow day; idempotent by key",
                {"201": _json(_ref("Resend"), "Sent"),
                 "200": _json(_ref("Resend"), "Replay of the same idempotency key"),
                 "403": _error("verification_required / verification_failed (new address)"),
                 "404": _error("No such order"),
                 "409": _error("order_refunded / idempotency_key_conflict"),
                 "429": _locked("resend_limit_reached (no Retry-After) / too_many_attempts (new address)")},
                parameters=[_ORDER_ID_PARAM, _ACTOR_HEADER],
                requestBody=_body({"type": "object", "required": ["idempotency_key"], "properties": {
                    "idempotency_key": {"type": "string"},
                    "channel": {"type": "string", "enum": ["email", "sms"]},
                    "address": {"type": "string", "description": "E-mail or +7 phone; new ones need verification"},
                    "verification": _ref("Verification"),
                }}),
            )},
            "/certificates/lookup": {"post": _op(
                "Status, balance and expiry of a certificate by code + PIN (code normalised, reply masked)",
                {"200": _json(_ref("Lookup"), "The certificate"),
                 "403": _error("pin_invalid"), "404": _error("No such code"), "429": _locked()},
                requestBody=_body({"type": "object", "required": ["code", "pin"], "properties": {
                    "code": {"type": "string", "example": "drm a1b2 c3d4 7q2k"},
                    "pin": {"type": "string", "pattern": "^[0-9]{4}$"},
                }}),
            )},
            "/refunds": {"post": _op(
                "Create a full B2C refund (handbook rules enforced); idempotent; one per order",
                {"201": _json(_ref("Refund"), "Created"),
                 "200": _json(_ref("Refund"), "The existing refund of this key / order"),
                 "403": _error("verification_required / verification_failed"),
                 "404": _error("No such order"),
                 "409": _error("refund_not_allowed_* / refund_window_passed / refund_b2b_manager_only / "
                               "idempotency_key_conflict"),
                 "429": _locked()},
                parameters=[_ACTOR_HEADER],
                requestBody=_body({"type": "object", "required": ["order_id", "idempotency_key", "verification"],
                                   "properties": {
                                       "order_id": {"type": "string", "pattern": "^[0-9]{8}$"},
                                       "idempotency_key": {"type": "string"},
                                       "verification": _ref("Verification"),
                                   }}),
            )},
            "/tickets": {"post": _op(
                "Create a CRM ticket (escalation); optional idempotency_key",
                {"201": _json(_ref("Ticket"), "Created"), "200": _json(_ref("Ticket"), "Replay")},
                parameters=[_ACTOR_HEADER], requestBody=_body(_ref("TicketCreate")),
            )},
            "/tickets/{ticket_id}": {
                "get": _op("A ticket", {"200": _json(_ref("Ticket"), "The ticket"), "404": _error("No such ticket")},
                           parameters=[_TICKET_ID_PARAM]),
                "patch": _op(
                    "Change a ticket's status (open/closed) and/or priority",
                    {"200": _json(_ref("Ticket"), "Updated"), "404": _error("No such ticket")},
                    parameters=[_TICKET_ID_PARAM, _ACTOR_HEADER],
                    requestBody=_body({"type": "object", "properties": {
                        "status": {"type": "string", "enum": list(TICKET_STATUSES)},
                        "priority": {"type": "string", "enum": list(TICKET_PRIORITIES)},
                    }}),
                ),
            },
            "/brands": {"get": _op(
                "The partner catalogue (what a «Дарим Мульти» can be exchanged for now; brand rules)",
                {"200": _json({"type": "object", "properties": {
                    "brands": {"type": "array", "items": _ref("Brand")}}}, "Brands")},
                parameters=[
                    {"name": "name", "in": "query", "schema": {"type": "string"}},
                    {"name": "in_catalogue", "in": "query", "schema": {"type": "boolean"}},
                ],
            )},
            "/lockouts": {"get": _op(
                "Staff: failed checks and lock of a certificate code's PIN (kind=pin) or an order's "
                "buyer check (kind=buyer)",
                {"200": _json(_ref("LockoutStatus"), "Status"),
                 "404": _error("No such certificate / order (their checks are never counted)")},
                parameters=[
                    {"name": "kind", "in": "query", "required": True,
                     "schema": {"type": "string", "enum": list(LOCKOUT_KINDS)}},
                    {"name": "subject", "in": "query", "required": True, "schema": {"type": "string"},
                     "description": "Certificate code (any spelling) for pin, 8-digit order id for buyer",
                     "example": "DRM-A1B2-C3D4-7Q2K"},
                ],
            )},
            "/lockouts/unlock": {"post": _op(
                "Staff: clear the failed checks (and so the lock) of a certificate code / order; "
                "written to the audit log (action lockout.unlock) with who and why",
                {"200": _json({"allOf": [_ref("LockoutStatus"), {"type": "object", "properties": {
                    "cleared": {"type": "object", "properties": {
                        "failures": {"type": "integer"}, "was_locked": {"type": "boolean"}}},
                }}]}, "Unlocked: the status after, and what was cleared"),
                 "404": _error("No such certificate / order")},
                requestBody=_body({"type": "object", "required": ["kind", "subject", "staff", "reason"],
                                   "properties": {
                                       "kind": {"type": "string", "enum": list(LOCKOUT_KINDS)},
                                       "subject": {"type": "string", "example": "40817263"},
                                       "staff": {"type": "string", "maxLength": 64,
                                                 "description": "Who unlocks (the audit's actor)"},
                                       "reason": {"type": "string", "maxLength": 500},
                                   }}),
            )},
            "/audit": {"get": _op(
                "Audit log (oldest first within the last `limit` rows)",
                {"200": _json({"type": "object", "properties": {
                    "entries": {"type": "array", "items": _ref("AuditEntry")}}}, "Entries")},
                parameters=[
                    {"name": "entity", "in": "query", "schema": {"type": "string"}, "example": "order"},
                    {"name": "entity_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "action", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 100, "maximum": 1000}},
                ],
            )},
        },
    }
