"""engine.log_masking: personal data never reaches the logs of the two servers — standard logging
records whoever logs them, and Rasa's structured logs of the customer's words."""
from __future__ import annotations

import inspect
import logging

from engine import log_masking

CODE, EMAIL, PHONE = "DRM-A1B2-C3D4-7Q2K", "ivan.petrov@mail.ru", "+7 916 123-45-67"


def test_standard_records_are_masked_whoever_logs_them(monkeypatch, caplog):
    from rasa.utils import log_utils

    monkeypatch.setattr(log_masking, "_installed", False)
    monkeypatch.setattr(log_utils, "_anonymizer", log_utils._anonymizer)  # put back afterwards
    previous = logging.getLogRecordFactory()
    try:
        log_masking.install_log_masking()
        with caplog.at_level(logging.INFO):
            logging.getLogger("sanic.access").info("code %s e-mail %s", CODE, EMAIL)
            logging.getLogger("actions.x").warning(f"phone {PHONE}, order 40817263, пин 1234")
            logging.getLogger("y").info("nothing personal: %d turns", 3)
    finally:
        logging.setLogRecordFactory(previous)
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == "code DRM-****-****-7Q2K e-mail i***@mail.ru"
    assert PHONE not in messages[1] and "40817263" in messages[1] and "1234" not in messages[1]
    assert messages[2] == "nothing personal: 3 turns"


def test_rasa_structured_logs_of_what_the_customer_typed_are_masked():
    from rasa.utils import log_utils

    seen = {}

    def original(logger, method, event_dict):
        seen.update(event_dict)
        return event_dict

    anonymize = log_masking._structlog_anonymizer(original)
    anonymize(None, "debug", {
        "event": "processor.message.parse", "parse_data_text": "4821",
        "user_message": f"мой код {CODE}", "slot_values": {"email": EMAIL, "order_id": "40817263"},
        "rasa_events": [f"UserUttered(text: {EMAIL})"], "model_id": "abc123",
    })
    assert seen["parse_data_text"] == "****"  # a bare PIN
    assert seen["user_message"] == "мой код DRM-****-****-7Q2K"
    assert seen["slot_values"] == {"email": "i***@mail.ru", "order_id": "40817263"}
    assert EMAIL not in str(seen["rasa_events"]) and seen["model_id"] == "abc123"
    # the keys are Rasa's own list (a Rasa upgrade that changes it shows up here)
    source = inspect.getsource(log_utils._anonymizer)
    assert [key for key in log_masking.USER_DATA_KEYS if f'"{key}"' not in source] == []


def test_the_action_server_entry_point_masks_its_logs(monkeypatch, caplog):
    """engine.action_server installs the masking before rasa_sdk runs (and logs)."""
    import rasa_sdk.__main__

    ran = []

    def fake_main_from_args(args):
        ran.append(args.port)
        logging.getLogger("rasa_sdk.executor").info("resend to %s", EMAIL)

    monkeypatch.setattr(rasa_sdk.__main__, "main_from_args", fake_main_from_args)
    from rasa.utils import log_utils

    monkeypatch.setattr(log_masking, "_installed", False)
    monkeypatch.setattr(log_utils, "_anonymizer", log_utils._anonymizer)  # put back afterwards
    previous = logging.getLogRecordFactory()
    try:
        from engine import action_server

        with caplog.at_level(logging.INFO):
            action_server.main(["--actions", "actions", "--port", "5999"])
    finally:
        logging.setLogRecordFactory(previous)
    assert ran == [5999]
    assert [record.getMessage() for record in caplog.records if record.name == "rasa_sdk.executor"] == [
        "resend to i***@mail.ru"]
