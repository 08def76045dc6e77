"""Secrets: PIN hashing (PBKDF2-HMAC-SHA256, per-row salt) and constant-time token checks."""
from __future__ import annotations

import hashlib
import hmac
import secrets

PIN_HASH_SCHEME = "pbkdf2_sha256"
PIN_HASH_ITERATIONS = 100_000
_SALT_BYTES = 16


def _derive(pin: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin.encode("utf-8"), salt, iterations)


def hash_pin(pin: str, *, iterations: int = PIN_HASH_ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``; the PIN itself is never stored."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _derive(pin, salt, iterations)
    return f"{PIN_HASH_SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    try:
        scheme, iterations, salt_hex, digest_hex = stored.split("$")
        if scheme != PIN_HASH_SCHEME:
            return False
        expected = bytes.fromhex(digest_hex)
        actual = _derive(pin, bytes.fromhex(salt_hex), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def tokens_match(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
