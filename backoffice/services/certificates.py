"""Certificate lookup by code + PIN (balance, status, expiry and the brand's rules), with the PIN
checks of each code counted and locked (``services.lockouts``)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Dict

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.db import SessionFactory, read_transaction
from backoffice.errors import NotFound, PinInvalid
from backoffice.masking import mask_code
from backoffice.models import Brand, Certificate
from backoffice.rules import LockoutPolicy
from backoffice.security import verify_pin
from backoffice.serializers import lookup_view
from backoffice.services import lockouts


def _certificate(session: Session, code: str, *, for_update: bool = False) -> Certificate:
    query = select(Certificate).where(Certificate.code == code)
    certificate = session.execute(query.with_for_update() if for_update else query).scalar_one_or_none()
    if certificate is None:
        raise NotFound(f"Certificate {mask_code(code)} not found.")
    return certificate


def lookup(
    session_factory: SessionFactory,
    code: str,
    pin: str,
    now: datetime,
    *,
    actor: str = "api",
    lockout: LockoutPolicy = lockouts.DEFAULT_POLICY,
) -> Dict[str, Any]:
    """``code`` is already normalised (``DRM-XXXX-XXXX-XXXX``).

    The PIN hash (deliberately slow) is computed outside the write lock, so lookups of other
    codes do not queue behind it; its result is used only if the code is still open when the
    check is decided under the certificate's row lock."""
    subject = lockouts.pin_subject(code)
    with read_transaction(session_factory) as session:
        pin_hash = _certificate(session, code).pin_hash
        lockouts.ensure_open(session, subject, now)  # a locked code costs no hashing
    passed = verify_pin(pin, pin_hash)
    with lockouts.checked_transaction(session_factory) as session:
        certificate = _certificate(session, code, for_update=True)
        lockouts.record(session, subject, passed, now=now, policy=lockout, actor=actor)
        if not passed:
            raise PinInvalid()
        return lookup_view(certificate, session.get(Brand, certificate.brand), now)
