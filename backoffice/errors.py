"""Typed errors: one class per reason, each with a stable machine code and an HTTP status.

They are raised where the rule is broken (rules, services, validation) and turned into
``{"error": {"code": ..., "message": ...}}`` only at the HTTP boundary (``app.py``).
"""
from __future__ import annotations

from typing import ClassVar, Dict, Optional


class BackofficeError(Exception):
    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 400
    default_message: ClassVar[str] = "Request failed."
    #: True when the handbook sends the case to a human (ticket / escalation), not a plain "no".
    needs_human: ClassVar[bool] = False

    def __init__(self, message: Optional[str] = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}

    def http_headers(self) -> Dict[str, str]:
        """Headers the HTTP reply must carry besides the JSON body."""
        return {}


# --- request / access -------------------------------------------------------------------------


class InvalidRequest(BackofficeError):
    code = "invalid_request"
    http_status = 400
    default_message = "The request is malformed."


class Unauthorized(BackofficeError):
    code = "unauthorized"
    http_status = 401
    default_message = "A valid bearer token is required."

    def http_headers(self) -> Dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class NotFound(BackofficeError):
    code = "not_found"
    http_status = 404
    default_message = "Not found."


class MethodNotAllowed(BackofficeError):
    code = "method_not_allowed"
    http_status = 405
    default_message = "Method not allowed."


class PayloadTooLarge(BackofficeError):
    code = "payload_too_large"
    http_status = 413
    default_message = "The request body is too large."


class IdempotencyKeyConflict(BackofficeError):
    code = "idempotency_key_conflict"
    http_status = 409
    default_message = "This idempotency key was already used for another request."


class InternalError(BackofficeError):
    code = "internal_error"
    http_status = 500
    default_message = "Internal error."


# --- buyer / certificate checks ---------------------------------------------------------------


class VerificationRequired(BackofficeError):
    code = "verification_required"
    http_status = 403
    default_message = (
        "Buyer verification is required: the order's e-mail or the last 4 digits of its phone."
    )


class VerificationFailed(BackofficeError):
    code = "verification_failed"
    http_status = 403
    default_message = "The e-mail or phone digits do not match the order."


class PinInvalid(BackofficeError):
    code = "pin_invalid"
    http_status = 403
    default_message = "The PIN does not match the certificate."


class TooManyAttempts(BackofficeError):
    """Too many failed PIN / buyer checks of one certificate code / order: further checks are
    refused, even with the right value, for ``retry_after_seconds`` (or until staff unlock it)."""

    code = "too_many_attempts"
    http_status = 429
    default_message = "Too many failed checks: checking is locked for a while."

    def __init__(self, retry_after_seconds: int, message: Optional[str] = None) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(message)

    def to_dict(self) -> dict:
        reply = super().to_dict()
        reply["error"]["retry_after_seconds"] = self.retry_after_seconds
        return reply

    def http_headers(self) -> Dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


# --- refunds ----------------------------------------------------------------------------------


class RefundNotAllowed(BackofficeError):
    """Base of the refusals: the handbook forbids the refund outright."""

    code = "refund_not_allowed"
    http_status = 409
    default_message = "The order cannot be refunded."


class RefundNotAllowedActivated(RefundNotAllowed):
    code = "refund_not_allowed_activated"
    default_message = "A certificate of the order has been activated (exchanged); it cannot be refunded."


class RefundNotAllowedPartiallyUsed(RefundNotAllowed):
    code = "refund_not_allowed_partially_used"
    default_message = "A certificate of the order has been partially used; it cannot be refunded."


class RefundNotAllowedUsed(RefundNotAllowed):
    code = "refund_not_allowed_used"
    default_message = "A certificate of the order has been used; it cannot be refunded."


class RefundNotAllowedExpired(RefundNotAllowed):
    code = "refund_not_allowed_expired"
    default_message = "A certificate of the order has expired; it cannot be refunded."


class RefundAlreadyExists(RefundNotAllowed):
    code = "refund_already_exists"
    default_message = "The order has already been refunded."


class RefundWindowPassed(RefundNotAllowed):
    code = "refund_window_passed"
    needs_human = True
    default_message = (
        "More than 14 calendar days have passed since the purchase: a refund is possible only "
        "on a written request decided by a staff member (create a ticket)."
    )


class RefundB2BManagerOnly(RefundNotAllowed):
    code = "refund_b2b_manager_only"
    needs_human = True
    default_message = "Corporate (B2B) orders are refunded only through the personal manager."


# --- resends ----------------------------------------------------------------------------------


class ResendLimitReached(BackofficeError):
    code = "resend_limit_reached"
    http_status = 429
    default_message = "The daily resend limit for this order has been reached (Moscow time)."


class OrderRefunded(BackofficeError):
    code = "order_refunded"
    http_status = 409
    default_message = "The order has been refunded; its certificates are cancelled."
