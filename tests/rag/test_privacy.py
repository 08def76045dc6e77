"""Masking personal data with the assistant's entity patterns."""
import pytest

from rag.privacy import PiiMasker, entity_specs
from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def masker():
    return PiiMasker.from_config(PROJECT_ROOT / "config.yml")


@pytest.mark.parametrize(
    "text, masked, secrets",
    [
        ("мой код DRM-ABCD-EFGH-7Q2K не работает", "мой код DRM-****-****-7Q2K не работает", ["ABCD", "EFGH"]),
        ("код drm 7q2k abcd 1234", "код DRM-****-****-1234", ["7q2k", "abcd"]),
        ("пин 5678", "пин ****", ["5678"]),
        ("PIN-код: 0042, а номер заказа 40817263", "PIN-код: ****, а номер заказа ******63", ["0042", "408172"]),
        ("пишите на Ivan.Petrov@mail.ru", "пишите на i***@mail.ru", ["Ivan", "Petrov"]),
        ("мой телефон 8 (916) 123-45-67", "мой телефон +7 *** ***-**-67", ["916", "123-45"]),
        ("ИНН компании 7707083893", "ИНН компании ********93", ["77070838"]),
    ],
)
def test_personal_data_is_masked(masker, text, masked, secrets):
    result = masker.mask(text)
    assert result == masked
    assert not any(secret in result for secret in secrets)


def test_plain_text_and_numbers_stay(masker):
    text = "сертификат на 5000 рублей действует 12 месяцев, возврат 14 дней"
    assert masker.mask(text) == text


def test_specs_come_from_config_yml():
    specs = entity_specs(PROJECT_ROOT / "config.yml")
    assert specs["certificate_code"]["prefix"] == "DRM"
    assert entity_specs(PROJECT_ROOT / "missing.yml")["order_id"]["length"] == 8
