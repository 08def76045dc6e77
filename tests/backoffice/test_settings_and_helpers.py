"""Settings from the environment, masking, PIN hashing and input normalisation."""
from __future__ import annotations

import pytest

from backoffice import masking, security, validation
from backoffice.errors import InvalidRequest
from backoffice.settings import PROJECT_ROOT, BackofficeSettings

ENV = ("BACKOFFICE_DATABASE_URL", "BACKOFFICE_API_TOKEN", "BACKOFFICE_HOST", "BACKOFFICE_PORT",
       "RESEND_DAILY_LIMIT", "REFUND_WINDOW_DAYS", "BACKOFFICE_LOCKOUT_MAX_FAILURES",
       "BACKOFFICE_LOCKOUT_WINDOW_MINUTES")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_settings_defaults(clean_env) -> None:
    settings = BackofficeSettings.from_env()
    assert settings.database_url == f"sqlite:///{PROJECT_ROOT / 'backoffice.db'}"
    assert settings.api_token == "dev-backoffice-token"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert (settings.resend_daily_limit, settings.refund_window_days) == (3, 14)
    assert (settings.lockout_max_failures, settings.lockout_window_minutes) == (5, 15)


def test_settings_from_env(clean_env) -> None:
    clean_env.setenv("BACKOFFICE_DATABASE_URL", "postgresql+psycopg2://u:p@db:5432/darim")
    clean_env.setenv("BACKOFFICE_API_TOKEN", "s3cret")
    clean_env.setenv("BACKOFFICE_HOST", "0.0.0.0")
    clean_env.setenv("BACKOFFICE_PORT", "9000")
    clean_env.setenv("RESEND_DAILY_LIMIT", "5")
    clean_env.setenv("REFUND_WINDOW_DAYS", "7")
    settings = BackofficeSettings.from_env()
    assert settings == BackofficeSettings(
        database_url="postgresql+psycopg2://u:p@db:5432/darim", api_token="s3cret", host="0.0.0.0",
        port=9000, resend_daily_limit=5, refund_window_days=7,
    )


def test_settings_reject_garbage(clean_env) -> None:
    clean_env.setenv("BACKOFFICE_PORT", "eighty")
    with pytest.raises(ValueError, match="BACKOFFICE_PORT"):
        BackofficeSettings.from_env()
    clean_env.setenv("BACKOFFICE_PORT", "8000")
    clean_env.setenv("RESEND_DAILY_LIMIT", "-1")
    with pytest.raises(ValueError, match="RESEND_DAILY_LIMIT"):
        BackofficeSettings.from_env()


def test_masking() -> None:
    assert masking.mask_email("ivan@mail.ru") == "i***@mail.ru"
    assert masking.mask_phone("+79161234567") == "+7***4567"
    assert masking.mask_code("DRM-A1B2-C3D4-7Q2K") == "DRM-****-****-7Q2K"
    assert masking.mask_contact("ivan@mail.ru") == "i***@mail.ru"
    assert masking.mask_contact("8 (916) 123-45-67") == "+7***4567"
    assert masking.mask_contact("@ivan_tg") == "@***"
    assert masking.mask_verification({"email": "ivan@mail.ru", "phone_last4": None}) == {"method": "email"}
    assert masking.mask_verification({"phone_last4": "4567"}) == {"method": "phone_last4"}


def test_pin_hash_is_salted_pbkdf2_and_never_the_pin() -> None:
    first, second = security.hash_pin("1234"), security.hash_pin("1234")
    assert first != second  # per-row salt
    scheme, iterations, salt, digest = first.split("$")
    assert scheme == "pbkdf2_sha256" and int(iterations) >= 100_000
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(digest)) == 32
    assert security.verify_pin("1234", first) and security.verify_pin("1234", second)
    assert not security.verify_pin("1235", first)
    assert not security.verify_pin("1234", "garbage")


@pytest.mark.parametrize(
    "raw, code",
    [
        ("DRM-A1B2-C3D4-7Q2K", "DRM-A1B2-C3D4-7Q2K"),
        ("drm-a1b2-c3d4-7q2k", "DRM-A1B2-C3D4-7Q2K"),
        (" drm a1b2 c3d4 7q2k ", "DRM-A1B2-C3D4-7Q2K"),
        ("DRMA1B2C3D47Q2K", "DRM-A1B2-C3D4-7Q2K"),
        ("DRM—A1B2—C3D4—7Q2K", "DRM-A1B2-C3D4-7Q2K"),  # em dashes
        ("drm-мult-8888-dмir", "DRM-MULT-8888-DMIR"),  # Cyrillic look-alikes typed by people
    ],
)
def test_certificate_code_normalisation(raw, code) -> None:
    assert validation.certificate_code(raw) == code


@pytest.mark.parametrize("raw", ["DRM-A1B2-C3D4", "ABC-A1B2-C3D4-7Q2K", "DRM-A1B2-C3D4-7Q2K-1", "", None, 42])
def test_certificate_code_rejects_garbage(raw) -> None:
    with pytest.raises(InvalidRequest):
        validation.certificate_code(raw)


@pytest.mark.parametrize(
    "raw, phone",
    [("+79161234567", "+79161234567"), ("8 (916) 123-45-67", "+79161234567"),
     ("7 916 123 45 67", "+79161234567"), ("9161234567", "+79161234567")],
)
def test_phone_normalisation(raw, phone) -> None:
    assert validation.phone(raw) == phone


@pytest.mark.parametrize("raw", ["12345", "+1 202 555 0100 1", "916-12x-45-67", ""])
def test_phone_rejects_garbage(raw) -> None:
    with pytest.raises(InvalidRequest):
        validation.phone(raw)


def test_order_id_and_pin_formats() -> None:
    assert validation.order_id(" 40817263 ") == "40817263"
    assert validation.pin("0007") == "0007"
    for bad in ("4081726", "408172634", "4081726a", None):
        with pytest.raises(InvalidRequest):
            validation.order_id(bad)
    for bad in ("123", "12345", "abcd", None, True):
        with pytest.raises(InvalidRequest):
            validation.pin(bad)
