import pytest

from nlu.entity_patterns import find_entities, is_valid_inn, normalise_email, normalise_phone_ru, normalise_value

SPECS = {
    "order_id": {"kind": "digits", "length": 8},
    "certificate_code": {"kind": "code", "prefix": "DRM", "groups": 3, "group_length": 4},
    "email": {"kind": "email"},
    "phone": {"kind": "phone_ru"},
    "inn": {"kind": "inn_ru"},
}


def found(text):
    return [(m.entity, m.value) for m in find_entities(text, SPECS)]


@pytest.mark.parametrize(
    "text",
    [
        "код DRM-7Q2K-AB3C-X9P1",
        "код drm-7q2k-ab3c-x9p1",
        "код drm 7q2k ab3c x9p1",
        "код DRM7Q2KAB3CX9P1",
        "код дрм-7q2k-ab3c-x9p1",
        "код DRM–7Q2K–AB3C–X9P1",  # en dashes from a phone keyboard
        "код DRM-7Q2K-АВ3С-Х9Р1",  # Cyrillic look-alikes in the body
    ],
)
def test_certificate_code_variants_normalise_to_one_value(text):
    assert found(text) == [("certificate_code", "DRM-7Q2K-AB3C-X9P1")]


@pytest.mark.parametrize(
    "text, phone",
    [
        ("8 916 123-45-67", "+79161234567"),
        ("+7(916)1234567", "+79161234567"),
        ("+7 916 123 45 67", "+79161234567"),
        ("89161234567", "+79161234567"),
        ("9161234567", "+79161234567"),
        ("8 (495) 123-45-67", "+74951234567"),
        ("8 921 44 55 310", "+79214455310"),
        ("+7 92 64718253", "+79264718253"),
    ],
)
def test_phone_formats(text, phone):
    assert found(f"мой номер {text}, спасибо") == [("phone", phone)]


def test_inn_is_checksum_validated():
    assert is_valid_inn("7707083893")  # 10 digits
    assert is_valid_inn("668656355119")  # 12 digits
    assert not is_valid_inn("7707083894")
    assert not is_valid_inn("770708389")
    assert found("ИНН 7707083893") == [("inn", "7707083893")]
    assert found("ИНН 7712345670") == []  # fails the checksum: not annotated, not an order


def test_inn_context_wins_over_a_mobile_looking_number():
    assert found("инн 9161234567") == [("inn", "9161234567")]
    assert found("мой телефон 9161234567") == [("phone", "+79161234567")]


def test_order_number_is_exactly_eight_digits():
    assert found("заказ 40817263") == [("order_id", "40817263")]
    assert found("заказ №40817263!") == [("order_id", "40817263")]
    assert found("заказ 408172631") == []
    assert found("заказ 4081726") == []


def test_email_is_lower_cased_and_not_swallowed_by_other_kinds():
    assert found("пишите на Ivan.Petrov@Mail.ru пожалуйста") == [("email", "ivan.petrov@mail.ru")]
    assert normalise_email("  A.B@Example.COM ") == "a.b@example.com"
    assert normalise_email("not an email") is None


def test_several_entities_in_one_message_do_not_overlap():
    text = "заказ 40817263, код drm 7q2k ab3c x9p1 пин 1234, почта a@b.ru, тел +7 916 123-45-67, ИНН 7707083893"
    assert found(text) == [
        ("order_id", "40817263"),
        ("certificate_code", "DRM-7Q2K-AB3C-X9P1"),
        ("email", "a@b.ru"),
        ("phone", "+79161234567"),
        ("inn", "7707083893"),
    ]


@pytest.mark.parametrize("text", ["", "   ", "😀😀😀", "5000 рублей", "пин 4821", "1" * 5000, "а" * 5000])
def test_edge_inputs_give_no_false_entities(text):
    assert found(text) == []


def test_normalisers_for_slot_validation():
    assert normalise_phone_ru("8-916-123-45-67") == "+79161234567"
    assert normalise_phone_ru("12345") is None
    assert normalise_value(SPECS["certificate_code"], " drm 7q2k ab3c x9p1 ") == "DRM-7Q2K-AB3C-X9P1"
    assert normalise_value(SPECS["order_id"], "4081726") is None


def test_another_company_changes_formats_by_configuration():
    specs = {"voucher": {"kind": "code", "prefix": "GIFT", "groups": 2, "group_length": 5}}
    assert [(m.entity, m.value) for m in find_entities("ваучер gift 12ab3 x9p1q", specs)] == [
        ("voucher", "GIFT-12AB3-X9P1Q")
    ]
