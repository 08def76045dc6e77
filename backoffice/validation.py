"""Input parsing: raw JSON / path / query values → normalised, typed requests, or InvalidRequest."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Union

from backoffice.errors import InvalidRequest
from backoffice.models import DELIVERY_CHANNELS, LOCKOUT_KINDS, TICKET_PRIORITIES, TICKET_STATUSES

ORDER_ID = re.compile(r"^\d{8}$")
CODE_BODY = re.compile(r"^DRM[A-Z0-9]{12}$")
PIN = re.compile(r"^\d{4}$")
PHONE_LAST4 = re.compile(r"^\d{4}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces
ACTOR = re.compile(r"^[\w.:@/-]{1,64}$")

# Cyrillic letters that look like Latin ones, as people type codes from a screen
_LOOKALIKES = str.maketrans("АВЕКМНОРСТУХ", "ABEKMHOPCTYX")


@dataclass(frozen=True)
class Verification:
    email: Optional[str] = None
    phone_last4: Optional[str] = None


@dataclass(frozen=True)
class RefundRequest:
    order_id: str
    idempotency_key: str
    verification: Verification


@dataclass(frozen=True)
class ResendRequest:
    idempotency_key: str
    channel: Optional[str] = None
    address: Optional[str] = None
    verification: Optional[Verification] = None


@dataclass(frozen=True)
class TicketCreate:
    subject: str
    summary: str
    transcript: Optional[Union[str, List[Dict[str, Any]]]]
    priority: str
    contact: Optional[str]
    conversation_id: Optional[str]
    category: str
    order_id: Optional[str]
    idempotency_key: Optional[str]


@dataclass(frozen=True)
class TicketUpdate:
    status: Optional[str] = None
    priority: Optional[str] = None


@dataclass(frozen=True)
class LockoutSubject:
    kind: str  # pin / buyer
    subject: str  # the normalised certificate code / the order id


@dataclass(frozen=True)
class UnlockRequest:
    kind: str
    subject: str
    staff: str
    reason: str


# --- primitives -------------------------------------------------------------------------------


def parse_json_object(body: bytes) -> Dict[str, Any]:
    if not body or not body.strip():
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidRequest("The request body is not valid JSON.") from error
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return data


def _string(data: Mapping[str, Any], field: str, *, required: bool, max_length: int) -> Optional[str]:
    value = data.get(field)
    if value is None:
        if required:
            raise InvalidRequest(f"'{field}' is required.")
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"'{field}' must be a string.")
    value = value.strip()
    if not value:
        if required:
            raise InvalidRequest(f"'{field}' must not be empty.")
        return None
    if len(value) > max_length:
        raise InvalidRequest(f"'{field}' is longer than {max_length} characters.")
    return value


def _reject_unknown(data: Mapping[str, Any], allowed: set, where: str = "body") -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidRequest(f"Unknown field(s) in {where}: {', '.join(unknown)}.")


def order_id(value: Any) -> str:
    if not isinstance(value, str) or not ORDER_ID.match(value.strip()):
        raise InvalidRequest("An order number is 8 digits, e.g. 40817263.")
    return value.strip()


def certificate_code(value: Any) -> str:
    """Upper case, Cyrillic look-alikes → Latin, any separators → ``DRM-XXXX-XXXX-XXXX``."""
    if not isinstance(value, str):
        raise InvalidRequest("'code' must be a string like DRM-XXXX-XXXX-XXXX.")
    compact = re.sub(r"[^0-9A-Z]", "", value.upper().translate(_LOOKALIKES))
    if not CODE_BODY.match(compact):
        raise InvalidRequest("A certificate code looks like DRM-XXXX-XXXX-XXXX.")
    return f"DRM-{compact[3:7]}-{compact[7:11]}-{compact[11:15]}"


def pin(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"{value:04d}"
    if not isinstance(value, str) or not PIN.match(value.strip()):
        raise InvalidRequest("A PIN is 4 digits.")
    return value.strip()


def email(value: Any, field: str = "email") -> str:
    if not isinstance(value, str) or len(value.strip()) > 254 or not EMAIL.match(value.strip()):
        raise InvalidRequest(f"'{field}' is not a valid e-mail address.")
    return value.strip().lower()


def phone(value: Any, field: str = "phone") -> str:
    """Russian mobile in any grouping (+7 / 8 / 10 digits) → ``+7XXXXXXXXXX``."""
    if not isinstance(value, str):
        raise InvalidRequest(f"'{field}' must be a string.")
    digits = re.sub(r"\D", "", value)
    if len(digits) == 11 and digits[0] in "78":
        digits = digits[1:]
    if len(digits) != 10 or re.search(r"[^\d\s()+-]", value):
        raise InvalidRequest(f"'{field}' is not a valid Russian phone number (+7XXXXXXXXXX).")
    return f"+7{digits}"


def idempotency_key(value: Any) -> str:
    if not isinstance(value, str) or not IDEMPOTENCY_KEY.match(value):
        raise InvalidRequest("'idempotency_key' must be 1–128 printable ASCII characters without spaces.")
    return value


def actor(value: Optional[str]) -> str:
    if value is None or value.strip() == "":
        return "api"
    if not ACTOR.match(value.strip()):
        raise InvalidRequest("The X-Actor header must be 1–64 characters: letters, digits, . : @ / - _")
    return value.strip()


def positive_int(value: Optional[str], field: str, default: int, maximum: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise InvalidRequest(f"'{field}' must be an integer from 1 to {maximum}.")
    return int(value)


def integer_id(value: Any, field: str = "id") -> int:
    if not isinstance(value, str) or not value.isdigit() or len(value) > 18:
        raise InvalidRequest(f"'{field}' must be a positive integer.")
    return int(value)


# --- requests ---------------------------------------------------------------------------------


def verification(value: Any, *, required: bool) -> Optional[Verification]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("'verification' must be an object with 'email' or 'phone_last4'.")
    _reject_unknown(value, {"email", "phone_last4"}, "verification")
    given_email = value.get("email")
    given_last4 = value.get("phone_last4")
    if isinstance(given_last4, int) and not isinstance(given_last4, bool):
        given_last4 = f"{given_last4:04d}"
    if given_email in (None, "") and given_last4 in (None, ""):
        if required:
            raise InvalidRequest("'verification' needs 'email' or 'phone_last4'.")
        return None
    parsed_email = email(given_email, "verification.email") if given_email not in (None, "") else None
    parsed_last4 = None
    if given_last4 not in (None, ""):
        if not isinstance(given_last4, str) or not PHONE_LAST4.match(given_last4.strip()):
            raise InvalidRequest("'phone_last4' must be exactly 4 digits.")
        parsed_last4 = given_last4.strip()
    return Verification(email=parsed_email, phone_last4=parsed_last4)


def verify_request(data: Mapping[str, Any]) -> Verification:
    parsed = verification(data, required=True)
    assert parsed is not None
    return parsed


def lookup_request(data: Mapping[str, Any]) -> tuple:
    _reject_unknown(data, {"code", "pin"})
    if "code" not in data or "pin" not in data:
        raise InvalidRequest("'code' and 'pin' are required.")
    return certificate_code(data["code"]), pin(data["pin"])


def refund_request(data: Mapping[str, Any]) -> RefundRequest:
    _reject_unknown(data, {"order_id", "idempotency_key", "verification"})
    parsed = verification(data.get("verification"), required=True)
    if parsed is None:
        raise InvalidRequest("'verification' is required: the order's e-mail or phone_last4.")
    return RefundRequest(
        order_id=order_id(data.get("order_id")),
        idempotency_key=idempotency_key(data.get("idempotency_key")),
        verification=parsed,
    )


def resend_request(data: Mapping[str, Any]) -> ResendRequest:
    _reject_unknown(data, {"idempotency_key", "channel", "address", "verification"})
    channel = _string(data, "channel", required=False, max_length=5)
    if channel is not None:
        channel = channel.lower()
        if channel not in DELIVERY_CHANNELS:
            raise InvalidRequest("'channel' must be 'email' or 'sms'.")
    raw_address = _string(data, "address", required=False, max_length=254)
    address = None
    if raw_address is not None:
        if channel is None:
            channel = "email" if "@" in raw_address else "sms"
        address = email(raw_address, "address") if channel == "email" else phone(raw_address, "address")
    return ResendRequest(
        idempotency_key=idempotency_key(data.get("idempotency_key")),
        channel=channel,
        address=address,
        verification=verification(data.get("verification"), required=False),
    )


def _transcript(value: Any) -> Optional[Union[str, List[Dict[str, Any]]]]:
    if value is None or isinstance(value, str):
        if isinstance(value, str) and len(value) > 200_000:
            raise InvalidRequest("'transcript' is too long.")
        return value
    if isinstance(value, list) and all(isinstance(turn, dict) for turn in value):
        if len(value) > 1000:
            raise InvalidRequest("'transcript' has too many turns.")
        return value
    raise InvalidRequest("'transcript' must be a string or a list of objects ({sender, text}).")


def _choice(data: Mapping[str, Any], field: str, allowed: tuple, default: Optional[str]) -> Optional[str]:
    value = _string(data, field, required=False, max_length=32)
    if value is None:
        return default
    if value not in allowed:
        raise InvalidRequest(f"'{field}' must be one of: {', '.join(allowed)}.")
    return value


def ticket_create(data: Mapping[str, Any]) -> TicketCreate:
    _reject_unknown(
        data,
        {"subject", "summary", "transcript", "priority", "contact", "conversation_id",
         "category", "order_id", "idempotency_key"},
    )
    raw_order = data.get("order_id")
    key = data.get("idempotency_key")
    return TicketCreate(
        subject=_string(data, "subject", required=True, max_length=200) or "",
        summary=_string(data, "summary", required=False, max_length=10_000) or "",
        transcript=_transcript(data.get("transcript")),
        priority=_choice(data, "priority", TICKET_PRIORITIES, "normal") or "normal",
        contact=_string(data, "contact", required=False, max_length=254),
        conversation_id=_string(data, "conversation_id", required=False, max_length=128),
        category=_string(data, "category", required=False, max_length=64) or "other",
        order_id=order_id(raw_order) if raw_order not in (None, "") else None,
        idempotency_key=idempotency_key(key) if key is not None else None,
    )


def ticket_update(data: Mapping[str, Any]) -> TicketUpdate:
    _reject_unknown(data, {"status", "priority"})
    update = TicketUpdate(
        status=_choice(data, "status", TICKET_STATUSES, None),
        priority=_choice(data, "priority", TICKET_PRIORITIES, None),
    )
    if update.status is None and update.priority is None:
        raise InvalidRequest("Nothing to update: give 'status' (open/closed) and/or 'priority'.")
    return update


def lockout_subject(kind: Any, subject: Any) -> LockoutSubject:
    """``kind=pin`` with a certificate code (any spelling), ``kind=buyer`` with an order id."""
    if kind not in LOCKOUT_KINDS:
        raise InvalidRequest("'kind' must be 'pin' or 'buyer'.")
    if subject is None or (isinstance(subject, str) and not subject.strip()):
        raise InvalidRequest("'subject' is required: a certificate code (pin) or an order id (buyer).")
    return LockoutSubject(kind, certificate_code(subject) if kind == "pin" else order_id(subject))


def unlock_request(data: Mapping[str, Any]) -> UnlockRequest:
    _reject_unknown(data, {"kind", "subject", "staff", "reason"})
    where = lockout_subject(data.get("kind"), data.get("subject"))
    staff = _string(data, "staff", required=True, max_length=64) or ""
    if not ACTOR.match(staff):
        raise InvalidRequest("'staff' must be 1–64 characters: letters, digits, . : @ / - _")
    reason = _string(data, "reason", required=True, max_length=500) or ""
    return UnlockRequest(kind=where.kind, subject=where.subject, staff=staff, reason=reason)
