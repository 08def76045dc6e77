"""Personal data out of the logs of the Rasa server and the action server.

The same masks as the conversations at rest (``engine.personal_data``): certificate codes
``DRM-****-****-7Q2K``, e-mails ``i***@mail.ru``, phones, a PIN next to «пин». Installed by the two
servers' entry points (``engine.rasa_server``, ``engine.action_server``) before anything logs:

* every standard ``logging`` record is masked when it is created (its message formatted, masked,
  and stored without arguments), whoever logs it: Rasa, rasa_sdk, sanic, our code;
* Rasa's structured logs (structlog) carry the customer's words under known keys (``text``,
  ``user_message``, ``parse_data_text``, ``slot_values``…: Rasa's own list for its anonymisation
  hook); their values are masked too, and there every digit of a run of 4–6 digits is hidden as
  well — at debug level Rasa logs each message, and a bare «1234» there is a PIN.

Nothing is logged at INFO that needs it today; this keeps it so at DEBUG and for new log lines.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Callable, Dict, Optional

_DIGIT_RUN = re.compile(r"(?<!\d)\d{4,6}(?!\d)")
_installed = False
_original_factory: Optional[Callable[..., logging.LogRecord]] = None


def _policy() -> Any:
    from engine.personal_data import AtRestPolicy

    return AtRestPolicy()


def mask(text: str, policy: Any = None) -> str:
    """``text`` with codes, e-mails, phones and a PIN next to «пин» masked."""
    if not text or not any(char.isdigit() or char == "@" for char in text):
        return text  # nothing to find: the common case costs one scan
    return (policy or _policy()).mask_text(text)


def mask_user_text(value: Any, policy: Any = None) -> Any:
    """A structlog value that may hold what the customer typed: masked, and runs of 4–6 digits
    (a PIN, the last digits of a phone) hidden. Objects (Rasa events, trackers) become text."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {key: mask_user_text(item, policy) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_user_text(item, policy) for item in value]
    text = value if isinstance(value, str) else str(value)
    return _DIGIT_RUN.sub(lambda match: "*" * len(match.group(0)), mask(text, policy))


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _original_factory(*args, **kwargs)  # type: ignore[misc]
    try:
        message = record.getMessage()
    except Exception:  # a broken format string is the logger's problem, not ours
        return record
    masked = mask(message)
    if masked != message:
        record.msg, record.args = masked, None
    return record


#: the structlog keys Rasa 3.6 passes to its anonymisation hook (rasa/utils/log_utils.py): where
#: it logs the customer's words, slots and events
USER_DATA_KEYS = (
    "text", "response_text", "user_text", "slot_values", "parse_data_text", "parse_data_entities",
    "prediction_events", "tracker_latest_message", "prefilled_slots", "message", "response",
    "slot_candidates", "rasa_event", "rasa_events", "tracker_states", "current_states", "old_states",
    "successes", "current_entity", "next_entity", "states", "entity", "token_text", "user_message",
    "json_message",
)


def _structlog_anonymizer(original: Callable[..., Dict[str, Any]]) -> Callable[..., Dict[str, Any]]:
    def anonymize(logger: Any, method: str, event_dict: Dict[str, Any]) -> Dict[str, Any]:
        for key in USER_DATA_KEYS:
            if key in event_dict:
                event_dict[key] = mask_user_text(event_dict[key])
        return original(logger, method, event_dict)

    return anonymize


def install_log_masking() -> None:
    """Idempotent; call it before the server starts logging."""
    global _installed, _original_factory
    if _installed:
        return
    _original_factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(_record_factory)
    try:
        from rasa.utils import log_utils
    except ImportError:  # the action server alone (rasa_sdk) has no structlog set-up of Rasa's
        pass
    else:
        log_utils._anonymizer = _structlog_anonymizer(log_utils._anonymizer)
    _installed = True
