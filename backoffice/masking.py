"""Masking of personal data and certificate codes for replies and the audit log."""
from __future__ import annotations

import re
from typing import Any, Mapping, Optional

_DIGITS = re.compile(r"\D")


def mask_email(email: Optional[str]) -> Optional[str]:
    """``ivan@mail.ru`` → ``i***@mail.ru``."""
    if not email:
        return email
    local, sep, domain = email.partition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: Optional[str]) -> Optional[str]:
    """``+79161234567`` → ``+7***4567``."""
    if not phone:
        return phone
    digits = _DIGITS.sub("", phone)
    if len(digits) < 4:
        return "***"
    prefix = "+7" if len(digits) == 11 and digits[0] in "78" else "+"
    return f"{prefix}***{digits[-4:]}"


def mask_code(code: Optional[str]) -> Optional[str]:
    """``DRM-A1B2-C3D4-7Q2K`` → ``DRM-****-****-7Q2K``."""
    if not code:
        return code
    return f"DRM-****-****-{code[-4:]}"


def mask_contact(contact: Optional[str]) -> Optional[str]:
    """An e-mail or a phone, whichever it looks like; anything else keeps only its ends."""
    if not contact:
        return contact
    local, at, domain = contact.partition("@")
    if local and at and "." in domain:
        return mask_email(contact)
    if len(_DIGITS.sub("", contact)) >= 10:
        return mask_phone(contact)
    return f"{contact[:1]}***" if len(contact) > 1 else "***"


def mask_address(channel: str, address: Optional[str]) -> Optional[str]:
    return mask_email(address) if channel == "email" else mask_phone(address)


def mask_verification(verification: Optional[Mapping[str, Any]]) -> Optional[dict]:
    """Keep only *how* the buyer was verified, never the e-mail or the digits."""
    if not verification:
        return None
    return {"method": "email" if verification.get("email") else "phone_last4"}
