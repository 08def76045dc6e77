"""Typed async client of the «Дарим» back office (``backoffice/``), for the custom actions.

One method per endpoint the actions need; replies come back as small frozen dataclasses, failures
as one of four typed errors:

- ``BackofficeUnavailable`` — nothing answered in time, the connection failed, or a 5xx persisted
  after the retries. The action apologises and escalates (handbook: escalation rule 5).
- ``BackofficeRefused`` — a 4xx with the service's machine ``code`` (``refund_not_allowed_activated``,
  ``resend_limit_reached``, ``verification_failed``, ``pin_invalid``, ``not_found``, ...): a business
  answer the action turns into words. ``needs_human`` says when the handbook hands the case to staff.
- ``BackofficeAuthError`` — 401 (or a 403 that is not a business refusal): misconfiguration.
- ``BackofficeProtocolError`` — a reply that cannot be understood (not JSON, wrong shape, a redirect).

Retries (with a short exponential backoff) happen only where repeating cannot do harm: GETs, the
read-only POSTs (``/orders/{id}/verify``, ``/certificates/lookup``) and the POSTs that carry an
idempotency key (refunds, resends, tickets with a key). A ticket without a key is sent once; a 4xx
is never retried. Use ``idempotency_key(kind, conversation_id, order_id)`` for the keys: the same
conversation asking again about the same order gets the same key, so the back office replays the
first refund instead of creating a second one.

Personal data is never logged unmasked: logs carry the method, the path, the status, the machine
code and masked identifiers; bodies, PINs, tokens and server messages are not logged.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import ssl
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from types import TracebackType
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
)
from urllib.parse import quote

import httpx

from actions.settings import ActionSettings

logger = logging.getLogger(__name__)

__all__ = [
    "BackofficeClient",
    "BackofficeError",
    "BackofficeUnavailable",
    "BackofficeRefused",
    "BackofficeAuthError",
    "BackofficeProtocolError",
    "ErrorCode",
    "Verification",
    "Order",
    "OrderCertificate",
    "Certificate",
    "Brand",
    "Eligibility",
    "Refund",
    "Resend",
    "Ticket",
    "TranscriptTurn",
    "idempotency_key",
    "mask_email",
    "mask_phone",
    "mask_code",
    "mask_contact",
]

DEFAULT_ACTOR = "rasa-assistant"
MAX_BACKOFF_SECONDS = 2.0


# --- masking ----------------------------------------------------------------------------------

_NON_DIGITS = re.compile(r"\D")
_NON_ALNUM = re.compile(r"[\W_]")


def mask_email(email: Optional[str]) -> str:
    """``ivan@mail.ru`` → ``i***@mail.ru``."""
    if not email:
        return "-"
    local, at, domain = email.strip().partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: Optional[str]) -> str:
    """``+7 916 123-45-67`` → ``+7***4567``; anything too short → ``***``."""
    if not phone:
        return "-"
    digits = _NON_DIGITS.sub("", phone)
    if len(digits) < 4:
        return "***"
    prefix = "+7" if len(digits) == 11 and digits[0] in "78" else "+"
    return f"{prefix}***{digits[-4:]}"


def mask_code(code: Optional[str]) -> str:
    """Any spelling of a certificate code → ``DRM-****-****-7Q2K`` (only the last 4 characters)."""
    if not code:
        return "-"
    compact = _NON_ALNUM.sub("", code).upper()
    if len(compact) < 8:
        return "DRM-****"
    return f"DRM-****-****-{compact[-4:]}"


def mask_contact(contact: Optional[str]) -> str:
    """An e-mail or a phone, whichever it looks like."""
    if not contact:
        return "-"
    if "@" in contact:
        return mask_email(contact)
    if len(_NON_DIGITS.sub("", contact)) >= 10:
        return mask_phone(contact)
    return "***"


# --- idempotency keys -------------------------------------------------------------------------

_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def idempotency_key(kind: str, conversation_id: str, order_id: Optional[str], *extra: str) -> str:
    """``"refund:" + sha256(...)`` — deterministic for (kind, conversation, order[, extra...]).

    A retried or repeated request of the same conversation for the same order carries the same
    key, and the back office replays the first result instead of acting twice. ``extra`` parts
    (e.g. a new delivery address) make deliberately different requests distinct. The hash keeps
    conversation ids and addresses out of the back office's key column; the key is 71 printable
    ASCII characters (the service accepts up to 128).
    """
    if not _KIND.match(kind):
        raise ValueError("kind must be 1-32 lower-case letters, digits, '-' or '_', e.g. 'refund'")
    if not conversation_id:
        raise ValueError("conversation_id is required for an idempotency key")
    parts = [kind, conversation_id, order_id or "", *extra]
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return f"{kind}:{digest}"


# --- errors -----------------------------------------------------------------------------------


class ErrorCode:
    """The back office's machine codes (``components.schemas.Error`` of its OpenAPI), plus the
    client's own codes of ``BackofficeUnavailable`` / ``BackofficeProtocolError``."""

    INVALID_REQUEST = "invalid_request"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    IDEMPOTENCY_KEY_CONFLICT = "idempotency_key_conflict"
    INTERNAL_ERROR = "internal_error"
    VERIFICATION_REQUIRED = "verification_required"
    VERIFICATION_FAILED = "verification_failed"
    PIN_INVALID = "pin_invalid"
    REFUND_NOT_ALLOWED_ACTIVATED = "refund_not_allowed_activated"
    REFUND_NOT_ALLOWED_PARTIALLY_USED = "refund_not_allowed_partially_used"
    REFUND_NOT_ALLOWED_USED = "refund_not_allowed_used"
    REFUND_NOT_ALLOWED_EXPIRED = "refund_not_allowed_expired"
    REFUND_ALREADY_EXISTS = "refund_already_exists"
    REFUND_WINDOW_PASSED = "refund_window_passed"
    REFUND_B2B_MANAGER_ONLY = "refund_b2b_manager_only"
    RESEND_LIMIT_REACHED = "resend_limit_reached"
    ORDER_REFUNDED = "order_refunded"
    #: too many failed PIN / buyer checks of this certificate or order: refused even when right
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    # client side
    TIMEOUT = "timeout"
    CONNECT_ERROR = "connect_error"
    TRANSPORT_ERROR = "transport_error"
    SERVER_ERROR = "server_error"
    BAD_REPLY = "bad_reply"


#: refusals after which the handbook sends the case to a staff member (ticket + hand-over)
HUMAN_DECIDES: FrozenSet[str] = frozenset({ErrorCode.REFUND_WINDOW_PASSED, ErrorCode.REFUND_B2B_MANAGER_ONLY})
#: 403 codes that are business answers about the buyer / certificate, not about our credentials
_BUSINESS_403: FrozenSet[str] = frozenset(
    {ErrorCode.VERIFICATION_REQUIRED, ErrorCode.VERIFICATION_FAILED, ErrorCode.PIN_INVALID}
)


class BackofficeError(Exception):
    """Base of every error of this client."""

    def __init__(self, code: str, message: str, *, status: Optional[int] = None) -> None:
        self.code = code
        self.message = message
        self.status = status
        super().__init__(f"{code}: {message}" + (f" (HTTP {status})" if status is not None else ""))


class BackofficeUnavailable(BackofficeError):
    """Connection failed, timed out, or the service kept answering 5xx: apologise and escalate."""

    def __init__(self, code: str, message: str, *, status: Optional[int] = None, attempts: int = 1) -> None:
        super().__init__(code, message, status=status)
        self.attempts = attempts


class BackofficeRefused(BackofficeError):
    """A 4xx business answer with the service's machine ``code`` (see ``ErrorCode``);
    ``retry_after_seconds`` when the service says when to try again (``too_many_attempts``)."""

    def __init__(self, code: str, message: str, *, status: Optional[int] = None,
                 retry_after_seconds: Optional[int] = None) -> None:
        super().__init__(code, message, status=status)
        self.retry_after_seconds = retry_after_seconds

    @property
    def needs_human(self) -> bool:
        return self.code in HUMAN_DECIDES


class BackofficeAuthError(BackofficeError):
    """The service rejected our credentials (401, or a 403 that is not a business refusal)."""


class BackofficeProtocolError(BackofficeError):
    """The reply could not be understood: not JSON, an unexpected shape, an unexpected status."""


# --- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """How the buyer proved the order is theirs: its e-mail or the last 4 digits of its phone.

    ``repr`` is masked: this object may end up in logs and tracebacks."""

    email: Optional[str] = None
    phone_last4: Optional[str] = None

    def __post_init__(self) -> None:
        email = self.email.strip() if self.email else None
        last4 = self.phone_last4.strip() if self.phone_last4 else None
        if not email and not last4:
            raise ValueError("verification needs an e-mail or the last 4 digits of the phone")
        object.__setattr__(self, "email", email or None)
        object.__setattr__(self, "phone_last4", last4 or None)

    @classmethod
    def of(cls, value: Union["Verification", Mapping[str, Optional[str]]]) -> "Verification":
        if isinstance(value, Verification):
            return value
        if isinstance(value, Mapping):
            return cls(email=value.get("email"), phone_last4=value.get("phone_last4"))
        raise TypeError("verification must be a Verification or a mapping with 'email' / 'phone_last4'")

    def to_json(self) -> Dict[str, str]:
        body: Dict[str, str] = {}
        if self.email:
            body["email"] = self.email
        if self.phone_last4:
            body["phone_last4"] = self.phone_last4
        return body

    def __repr__(self) -> str:
        shown = f"email={mask_email(self.email)!r}" if self.email else ""
        if self.phone_last4:
            shown += (", " if shown else "") + "phone_last4='****'"
        return f"Verification({shown})"


@dataclass(frozen=True)
class Brand:
    name: str
    in_catalogue: bool
    online: bool
    offline: bool
    single_purchase: bool
    note: Optional[str] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Brand":
        return cls(
            name=_str(data, "name"),
            in_catalogue=_bool(data, "in_catalogue"),
            online=_bool(data, "online"),
            offline=_bool(data, "offline"),
            single_purchase=_bool(data, "single_purchase"),
            note=_opt_str(data, "note"),
        )


@dataclass(frozen=True)
class Refund:
    id: int
    order_id: str
    amount: Decimal
    status: str
    payment_method: str
    due_by: date
    idempotency_key: str
    created_at: datetime
    #: False when the back office returned an existing refund (same key, or the order's refund)
    created: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, created: bool = False) -> "Refund":
        return cls(
            id=_int(data, "id"),
            order_id=_str(data, "order_id"),
            amount=_money(data, "amount"),
            status=_str(data, "status"),
            payment_method=_str(data, "payment_method"),
            due_by=_date(data, "due_by"),
            idempotency_key=_str(data, "idempotency_key"),
            created_at=_datetime(data, "created_at"),
            created=created,
        )


@dataclass(frozen=True)
class OrderCertificate:
    """A certificate as part of an order: code and delivery address come masked."""

    code: str
    brand: str
    nominal: Decimal
    balance: Decimal
    status: str
    expires_at: datetime
    delivery_channel: str
    delivery_address: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "OrderCertificate":
        return cls(
            code=_str(data, "code"),
            brand=_str(data, "brand"),
            nominal=_money(data, "nominal"),
            balance=_money(data, "balance"),
            status=_str(data, "status"),
            expires_at=_datetime(data, "expires_at"),
            delivery_channel=_str(data, "delivery_channel"),
            delivery_address=_str(data, "delivery_address"),
        )


@dataclass(frozen=True)
class Order:
    """An order; buyer contacts (``i***@mail.ru``, ``+7***4567``) and codes come masked."""

    id: str
    created_at: datetime
    buyer_email: Optional[str]
    buyer_phone: Optional[str]
    is_b2b: bool
    company_inn: Optional[str]
    payment_method: str
    amount: Decimal
    days_since_purchase: int
    certificates: Tuple[OrderCertificate, ...]
    refund: Optional[Refund]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Order":
        refund = data.get("refund")
        return cls(
            id=_str(data, "id"),
            created_at=_datetime(data, "created_at"),
            buyer_email=_opt_str(data, "buyer_email"),
            buyer_phone=_opt_str(data, "buyer_phone"),
            is_b2b=_bool(data, "is_b2b"),
            company_inn=_opt_str(data, "company_inn"),
            payment_method=_str(data, "payment_method"),
            amount=_money(data, "amount"),
            days_since_purchase=_int(data, "days_since_purchase"),
            certificates=tuple(OrderCertificate.from_json(c) for c in _list(data, "certificates")),
            refund=Refund.from_json(_object(refund)) if refund is not None else None,
        )


@dataclass(frozen=True)
class Certificate:
    """The result of a lookup by code + PIN: status, balance, expiry and the brand's rules."""

    code: str
    status: str
    balance: Decimal
    nominal: Decimal
    brand: str
    expires_at: datetime
    brand_rules: Optional[Brand]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Certificate":
        rules = data.get("brand_rules")
        return cls(
            code=_str(data, "code"),
            status=_str(data, "status"),
            balance=_money(data, "balance"),
            nominal=_money(data, "nominal"),
            brand=_str(data, "brand"),
            expires_at=_datetime(data, "expires_at"),
            brand_rules=Brand.from_json(_object(rules)) if rules is not None else None,
        )


@dataclass(frozen=True)
class Eligibility:
    order_id: str
    eligible: bool
    #: a ``refund_*`` code of ``ErrorCode`` when not eligible
    reason: Optional[str]
    message: str
    #: escalate: a ticket for a staff member / the personal manager
    needs_human: bool
    amount: Decimal
    payment_method: str
    days_since_purchase: int
    refund_window_days: int
    refund: Optional[Refund]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Eligibility":
        refund = data.get("refund")
        return cls(
            order_id=_str(data, "order_id"),
            eligible=_bool(data, "eligible"),
            reason=_opt_str(data, "reason"),
            message=_str(data, "message"),
            needs_human=_bool(data, "needs_human"),
            amount=_money(data, "amount"),
            payment_method=_str(data, "payment_method"),
            days_since_purchase=_int(data, "days_since_purchase"),
            refund_window_days=_int(data, "refund_window_days"),
            refund=Refund.from_json(_object(refund)) if refund is not None else None,
        )


@dataclass(frozen=True)
class Resend:
    id: int
    order_id: str
    channel: str
    #: masked
    address: str
    to_new_address: bool
    #: masked codes
    certificates: Tuple[str, ...]
    idempotency_key: str
    created_at: datetime
    resends_left_today: int
    #: False when the back office replayed an earlier resend with the same key
    created: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, created: bool = False) -> "Resend":
        return cls(
            id=_int(data, "id"),
            order_id=_str(data, "order_id"),
            channel=_str(data, "channel"),
            address=_str(data, "address"),
            to_new_address=_bool(data, "to_new_address"),
            certificates=tuple(_as_str(code, "certificates[]") for code in _list(data, "certificates")),
            idempotency_key=_str(data, "idempotency_key"),
            created_at=_datetime(data, "created_at"),
            resends_left_today=_int(data, "resends_left_today"),
            created=created,
        )


@dataclass(frozen=True)
class TranscriptTurn:
    sender: str
    text: str

    def to_json(self) -> Dict[str, str]:
        return {"sender": self.sender, "text": self.text}


Transcript = Union[str, Sequence[Union[TranscriptTurn, Mapping[str, Any]]]]


@dataclass(frozen=True)
class Ticket:
    """A CRM ticket. ``contact``, ``summary`` and ``transcript`` hold personal data: kept out of
    ``repr``."""

    id: int
    subject: str
    status: str
    priority: str
    category: str
    conversation_id: Optional[str]
    order_id: Optional[str]
    first_response_by: datetime
    staff_online: bool
    created_at: datetime
    updated_at: datetime
    summary: str = field(default="", repr=False)
    transcript: Union[str, Tuple[TranscriptTurn, ...], None] = field(default=None, repr=False)
    contact: Optional[str] = field(default=None, repr=False)
    #: False when the back office replayed an earlier ticket with the same key
    created: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, created: bool = False) -> "Ticket":
        raw = data.get("transcript")
        transcript: Union[str, Tuple[TranscriptTurn, ...], None]
        if raw is None or isinstance(raw, str):
            transcript = raw
        elif isinstance(raw, list):
            transcript = tuple(
                TranscriptTurn(sender=str(_object(turn).get("sender", "")), text=str(_object(turn).get("text", "")))
                for turn in raw
            )
        else:
            raise _BadShape("'transcript' must be a string or a list")
        return cls(
            id=_int(data, "id"),
            subject=_str(data, "subject"),
            status=_str(data, "status"),
            priority=_str(data, "priority"),
            category=_str(data, "category"),
            conversation_id=_opt_str(data, "conversation_id"),
            order_id=_opt_str(data, "order_id"),
            first_response_by=_datetime(data, "first_response_by"),
            staff_online=_bool(data, "staff_online"),
            created_at=_datetime(data, "created_at"),
            updated_at=_datetime(data, "updated_at"),
            summary=_opt_str(data, "summary") or "",
            transcript=transcript,
            contact=_opt_str(data, "contact"),
            created=created,
        )


# --- JSON field readers: a wrong shape is a protocol error, never a KeyError in an action -----


class _BadShape(ValueError):
    pass


def _object(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _BadShape("expected a JSON object")
    return value


def _field(data: Mapping[str, Any], name: str) -> Any:
    if name not in data:
        raise _BadShape(f"missing field {name!r}")
    return data[name]


def _as_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _BadShape(f"{name!r} must be a string")
    return value


def _str(data: Mapping[str, Any], name: str) -> str:
    return _as_str(_field(data, name), name)


def _opt_str(data: Mapping[str, Any], name: str) -> Optional[str]:
    value = data.get(name)
    return None if value is None else _as_str(value, name)


def _bool(data: Mapping[str, Any], name: str) -> bool:
    value = _field(data, name)
    if not isinstance(value, bool):
        raise _BadShape(f"{name!r} must be a boolean")
    return value


def _int(data: Mapping[str, Any], name: str) -> int:
    value = _field(data, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadShape(f"{name!r} must be an integer")
    return value


def _money(data: Mapping[str, Any], name: str) -> Decimal:
    value = _field(data, name)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _BadShape(f"{name!r} must be a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as error:
        raise _BadShape(f"{name!r} must be a number") from error
    if not amount.is_finite():
        raise _BadShape(f"{name!r} must be a finite number")
    return amount


def _datetime(data: Mapping[str, Any], name: str) -> datetime:
    raw = _str(data, name)
    try:
        moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith("Z") else raw)
    except ValueError as error:
        raise _BadShape(f"{name!r} must be an ISO date-time") from error
    if moment.tzinfo is None:
        raise _BadShape(f"{name!r} must carry a time zone")
    return moment


def _date(data: Mapping[str, Any], name: str) -> date:
    try:
        return date.fromisoformat(_str(data, name))
    except ValueError as error:
        raise _BadShape(f"{name!r} must be an ISO date") from error


def _list(data: Mapping[str, Any], name: str) -> List[Any]:
    value = _field(data, name)
    if not isinstance(value, list):
        raise _BadShape(f"{name!r} must be a list")
    return value


def _error_envelope(response: httpx.Response) -> Optional[Tuple[str, str]]:
    """``{"error": {"code", "message"}}`` → (code, message), or None when the body is not that."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return None
    message = error.get("message")
    return error["code"], message if isinstance(message, str) else ""


def _retry_after(response: httpx.Response) -> Optional[int]:
    """Seconds until the service takes the request again: the error's ``retry_after_seconds``,
    else the ``Retry-After`` header (seconds); None when it says neither."""
    try:
        body = response.json()
        value = body["error"].get("retry_after_seconds") if isinstance(body.get("error"), dict) else None
    except (ValueError, AttributeError, KeyError):
        value = None
    if value is None:
        value = response.headers.get("retry-after")
    try:
        return max(0, int(float(value))) if value is not None else None
    except (TypeError, ValueError):
        return None


T = TypeVar("T")


# --- the client -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """One verifying context per process: building one loads the CA bundle, which took a fifth
    of the action server's CPU when every action run made its own client."""
    return httpx.create_ssl_context()


class BackofficeClient:
    """``async with BackofficeClient.from_settings() as backoffice: order = await backoffice.get_order(...)``.

    Every attempt has the configured timeout; safe calls get ``retries`` extra attempts on a
    connection error, a timeout or a 5xx, with ``backoff_seconds`` × 2ⁿ (+ jitter) pauses."""

    def __init__(
        self,
        base_url: str,
        api_token: str,
        *,
        timeout_seconds: float = 5.0,
        retries: int = 2,
        backoff_seconds: float = 0.2,
        actor: str = DEFAULT_ACTOR,
        transport: Optional[httpx.AsyncBaseTransport] = None,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be > 0")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if backoff_seconds < 0:
            raise ValueError("backoff_seconds must be >= 0")
        self._timeout = httpx.Timeout(timeout_seconds)
        self._retries = retries
        self._backoff = backoff_seconds
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {api_token}",
                "Accept": "application/json",
                "X-Actor": actor,
            },
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,  # an internal service: no proxies or .netrc from the environment
            verify=_ssl_context(),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Optional[ActionSettings] = None, **kwargs: Any) -> "BackofficeClient":
        settings = settings or ActionSettings.from_env()
        return cls(
            settings.backoffice_url,
            settings.backoffice_api_token,
            timeout_seconds=settings.backoffice_timeout_seconds,
            retries=settings.backoffice_retries,
            backoff_seconds=settings.backoffice_retry_backoff_seconds,
            **kwargs,
        )

    async def __aenter__(self) -> "BackofficeClient":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- orders -------------------------------------------------------------------------------

    async def get_order(self, order_id: str) -> Order:
        status, body = await self._call("GET", f"/orders/{_segment(order_id)}", retry=True)
        return self._parse(status, lambda: Order.from_json(body))

    async def verify_buyer(
        self, order_id: str, email: Optional[str] = None, phone_last4: Optional[str] = None
    ) -> bool:
        """True when the e-mail (any letter case) or the last 4 phone digits match the order."""
        verification = Verification(email=email, phone_last4=phone_last4)
        logger.debug("verify_buyer order=%s with %r", order_id, verification)
        status, body = await self._call(
            "POST", f"/orders/{_segment(order_id)}/verify", json=verification.to_json(), retry=True
        )
        return self._parse(status, lambda: _bool(body, "verified"))

    async def refund_eligibility(self, order_id: str) -> Eligibility:
        status, body = await self._call("GET", f"/orders/{_segment(order_id)}/refund-eligibility", retry=True)
        return self._parse(status, lambda: Eligibility.from_json(body))

    # --- certificates and catalogue -----------------------------------------------------------

    async def lookup_certificate(self, code: str, pin: str) -> Certificate:
        """Status, balance, expiry and brand rules by code (any spelling) + PIN."""
        logger.debug("lookup_certificate code=%s", mask_code(code))
        status, body = await self._call("POST", "/certificates/lookup", json={"code": code, "pin": pin}, retry=True)
        return self._parse(status, lambda: Certificate.from_json(body))

    async def list_brands(self, name: Optional[str] = None, in_catalogue: Optional[bool] = None) -> Tuple[Brand, ...]:
        params: Dict[str, str] = {}
        if name is not None:
            params["name"] = name
        if in_catalogue is not None:
            params["in_catalogue"] = "true" if in_catalogue else "false"
        status, body = await self._call("GET", "/brands", params=params or None, retry=True)
        return self._parse(status, lambda: tuple(Brand.from_json(_object(b)) for b in _list(body, "brands")))

    # --- refunds and resends (idempotent by key: retried) ------------------------------------

    async def create_refund(
        self,
        order_id: str,
        idempotency_key: str,
        verification: Union[Verification, Mapping[str, Optional[str]]],
    ) -> Refund:
        """A full B2C refund. The same key (or the same order) returns the existing refund with
        ``created=False``; handbook refusals raise ``BackofficeRefused``."""
        checked = Verification.of(verification)
        logger.debug("create_refund order=%s with %r", order_id, checked)
        payload = {"order_id": order_id, "idempotency_key": _key(idempotency_key), "verification": checked.to_json()}
        status, body = await self._call("POST", "/refunds", json=payload, retry=True)
        return self._parse(status, lambda: Refund.from_json(body, created=status == 201))

    async def resend_certificate(
        self,
        order_id: str,
        idempotency_key: str,
        address: Optional[str] = None,
        channel: Optional[str] = None,
        verification: Union[Verification, Mapping[str, Optional[str]], None] = None,
    ) -> Resend:
        """Re-send the order's certificates to its own address, or to ``address`` (a new one needs
        ``verification``). A replay of the same key returns the first resend with ``created=False``."""
        payload: Dict[str, Any] = {"idempotency_key": _key(idempotency_key)}
        if channel is not None:
            payload["channel"] = channel
        if address is not None:
            payload["address"] = address
        if verification is not None:
            payload["verification"] = Verification.of(verification).to_json()
        logger.debug(
            "resend_certificate order=%s channel=%s address=%s verified=%s",
            order_id, channel or "-", mask_contact(address), verification is not None,
        )
        status, body = await self._call("POST", f"/orders/{_segment(order_id)}/resend", json=payload, retry=True)
        return self._parse(status, lambda: Resend.from_json(body, created=status == 201))

    # --- tickets ------------------------------------------------------------------------------

    async def create_ticket(
        self,
        subject: str,
        summary: str = "",
        transcript: Optional[Transcript] = None,
        priority: str = "normal",
        contact: Optional[str] = None,
        conversation_id: Optional[str] = None,
        category: str = "other",
        order_id: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> Ticket:
        """A CRM ticket (escalation). Retried only when ``idempotency_key`` is given — without it
        a lost reply could mean a duplicate ticket, so it is sent exactly once."""
        payload: Dict[str, Any] = {"subject": subject, "summary": summary, "priority": priority, "category": category}
        if transcript is not None:
            payload["transcript"] = _transcript_json(transcript)
        if contact is not None:
            payload["contact"] = contact
        if conversation_id is not None:
            payload["conversation_id"] = conversation_id
        if order_id is not None:
            payload["order_id"] = order_id
        if idempotency_key is not None:
            payload["idempotency_key"] = _key(idempotency_key)
        logger.debug(
            "create_ticket category=%s priority=%s order=%s contact=%s keyed=%s",
            category, priority, order_id or "-", mask_contact(contact), idempotency_key is not None,
        )
        status, body = await self._call("POST", "/tickets", json=payload, retry=idempotency_key is not None)
        return self._parse(status, lambda: Ticket.from_json(body, created=status == 201))

    async def get_ticket(self, ticket_id: int) -> Ticket:
        status, body = await self._call("GET", f"/tickets/{_segment(str(ticket_id))}", retry=True)
        return self._parse(status, lambda: Ticket.from_json(body))

    # --- health -------------------------------------------------------------------------------

    async def is_healthy(self) -> bool:
        """One quick attempt at ``/health``: True when the service and its database answer."""
        try:
            _, body = await self._call("GET", "/health", retry=False)
        except BackofficeError:
            return False
        return body.get("status") == "ok"

    # --- transport ----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        retry: bool,
        json: Optional[Mapping[str, Any]] = None,
        params: Optional[Mapping[str, str]] = None,
    ) -> Tuple[int, Dict[str, Any]]:
        """Send with retries where ``retry``; → (status, JSON object) of a 2xx, or a typed error."""
        attempts = 1 + (self._retries if retry else 0)
        failure: Optional[BackofficeUnavailable] = None
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                response = await self._http.request(method, path, json=json, params=params, timeout=self._timeout)
            except httpx.TimeoutException as error:
                failure = BackofficeUnavailable(
                    ErrorCode.TIMEOUT, f"no reply within {self._timeout.read} s", attempts=attempt
                )
                cause: Optional[BaseException] = error
            except httpx.ConnectError as error:
                failure = BackofficeUnavailable(ErrorCode.CONNECT_ERROR, "cannot connect", attempts=attempt)
                cause = error
            except httpx.TransportError as error:
                failure = BackofficeUnavailable(
                    ErrorCode.TRANSPORT_ERROR, f"transport error: {type(error).__name__}", attempts=attempt
                )
                cause = error
            except httpx.RequestError as error:  # e.g. an undecodable Content-Encoding
                raise BackofficeProtocolError(ErrorCode.BAD_REPLY, f"unreadable reply: {type(error).__name__}") from error
            else:
                elapsed_ms = (time.monotonic() - started) * 1000
                status = response.status_code
                if status < 500:
                    logger.info("backoffice %s %s -> %d in %.0f ms", method, path, status, elapsed_ms)
                    return status, self._accept(method, path, response)
                envelope = _error_envelope(response)
                failure = BackofficeUnavailable(
                    envelope[0] if envelope else ErrorCode.SERVER_ERROR,
                    envelope[1] if envelope else "the service failed",
                    status=status,
                    attempts=attempt,
                )
                cause = None
            if attempt < attempts:
                delay = min(self._backoff * (2 ** (attempt - 1)), MAX_BACKOFF_SECONDS)
                delay += random.uniform(0, delay / 10) if delay else 0.0
                logger.warning(
                    "backoffice %s %s failed (%s%s), retry %d/%d in %.2f s",
                    method, path, failure.code, f", HTTP {failure.status}" if failure.status else "",
                    attempt, attempts - 1, delay,
                )
                await asyncio.sleep(delay)
                continue
            logger.error(
                "backoffice %s %s unavailable (%s%s) after %d attempt(s)",
                method, path, failure.code, f", HTTP {failure.status}" if failure.status else "", attempt,
            )
            raise failure from cause
        raise AssertionError("unreachable")  # pragma: no cover

    def _accept(self, method: str, path: str, response: httpx.Response) -> Dict[str, Any]:
        status = response.status_code
        if 200 <= status < 300:
            try:
                body = response.json()
            except ValueError as error:
                logger.error("backoffice %s %s -> %d with a body that is not JSON", method, path, status)
                raise BackofficeProtocolError(ErrorCode.BAD_REPLY, "the reply is not JSON", status=status) from error
            if not isinstance(body, dict):
                raise BackofficeProtocolError(ErrorCode.BAD_REPLY, "the reply is not a JSON object", status=status)
            return body
        envelope = _error_envelope(response)
        if status == 401 or (status == 403 and (envelope is None or envelope[0] not in _BUSINESS_403)):
            code, message = envelope or (ErrorCode.UNAUTHORIZED, "access denied")
            logger.error("backoffice %s %s -> %d %s: check BACKOFFICE_API_TOKEN", method, path, status, code)
            raise BackofficeAuthError(code, message, status=status)
        if 400 <= status < 500 and envelope is not None:
            logger.info("backoffice %s %s refused: %d %s", method, path, status, envelope[0])
            raise BackofficeRefused(envelope[0], envelope[1], status=status, retry_after_seconds=_retry_after(response))
        logger.error("backoffice %s %s -> unexpected %d", method, path, status)
        raise BackofficeProtocolError(ErrorCode.BAD_REPLY, f"unexpected HTTP {status} reply", status=status)

    @staticmethod
    def _parse(status: int, build: Callable[[], T]) -> T:
        try:
            return build()
        except _BadShape as error:
            logger.error("backoffice reply of an unexpected shape: %s", error)
            raise BackofficeProtocolError(
                ErrorCode.BAD_REPLY, f"unexpected reply shape: {error}", status=status
            ) from error


def _segment(value: str) -> str:
    """A path segment, percent-encoded so that no input can change the endpoint."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("an id is required")
    return quote(value.strip(), safe="")


def _key(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("an idempotency key is required (see idempotency_key())")
    return value


def _transcript_json(transcript: Transcript) -> Union[str, List[Dict[str, Any]]]:
    if isinstance(transcript, str):
        return transcript
    turns: List[Dict[str, Any]] = []
    for turn in transcript:
        if isinstance(turn, TranscriptTurn):
            turns.append(turn.to_json())
        elif isinstance(turn, Mapping):
            turns.append(dict(turn))
        else:
            raise TypeError("transcript turns must be TranscriptTurn or mappings {sender, text}")
    return turns
