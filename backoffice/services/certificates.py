"""Certificate lookup by code + PIN (balance, status, expiry and the brand's rules)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Dict

from sqlalchemy import select

from backoffice.db import SessionFactory, read_transaction
from backoffice.errors import NotFound, PinInvalid
from backoffice.masking import mask_code
from backoffice.models import Brand, Certificate
from backoffice.security import verify_pin
from backoffice.serializers import lookup_view


def lookup(session_factory: SessionFactory, code: str, pin: str, now: datetime) -> Dict[str, Any]:
    """``code`` is already normalised (``DRM-XXXX-XXXX-XXXX``)."""
    with read_transaction(session_factory) as session:
        certificate = session.execute(
            select(Certificate).where(Certificate.code == code)
        ).scalar_one_or_none()
        if certificate is None:
            raise NotFound(f"Certificate {mask_code(code)} not found.")
        if not verify_pin(pin, certificate.pin_hash):
            raise PinInvalid()
        brand = session.get(Brand, certificate.brand)
        return lookup_view(certificate, brand, now)
