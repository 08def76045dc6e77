"""What the feature actions share: reading the customer's answer, the entity formats, slot resets,
money/date wording and one back-office client per action run.

The actions of each feature live in their own module (refund_actions, resend_actions, ...); the
words they say live in ``domain.yml`` as responses — the code only picks a response and fills its
placeholders.
"""
from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

from rasa_sdk import FormValidationAction, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from ruamel.yaml import YAML

from actions.backoffice_client import BackofficeClient
from actions.settings import ActionSettings
from engine.settings import PROJECT_ROOT
from nlu.entity_patterns import find_entities

logger = logging.getLogger(__name__)

REQUESTED_SLOT = "requested_slot"

#: slots that belong to one flow; cleared when the flow ends, is cancelled or handed over.
#: Contacts (email, phone, inn) stay: they are the customer's, not the flow's.
FLOW_SLOTS = (
    "order_id",
    "certificate_code",
    "brand",
    "buyer_check",
    "verification_failures",
    "pin",
    "pin_failures",
    "order_info",
    "certificate_info",
    "refund_confirmed",
    "resend_address",
    "problem_persists",
    "b2b_reference",
    "b2b_request",
    "flow_block",
)

#: how the money goes back, by the order's payment method
PAYMENT_METHOD_WORDS = {
    "card": "на карту, с которой оплачивали",
    "sbp": "через СБП на счёт, с которого оплачивали",
    "invoice": "на счёт компании",
}
DEFAULT_PAYMENT_WORDS = "тем же способом, которым оплачивали"

#: intents whose message is never read as the answer to a form's question
NOT_ANSWERS = ("request_human", "complaint", "cancel")

#: how many wrong answers (buyer check, PIN) a flow accepts before it stops
MAX_ATTEMPTS = 3


# --- the settings and the client --------------------------------------------------------------


@lru_cache(maxsize=1)
def action_settings() -> ActionSettings:
    """Read once per action-server process (the environment does not change under it)."""
    return ActionSettings.from_env()


def backoffice() -> BackofficeClient:
    """A client for one action run: ``async with backoffice() as api: ...``."""
    return BackofficeClient.from_settings(action_settings())


# --- entity formats: config.yml is the one place they are defined ----------------------------


@lru_cache(maxsize=4)
def entity_formats(config_path: Optional[Path] = None) -> Dict[str, Dict[str, Any]]:
    """The ``entities:`` of the PatternEntityExtractor in config.yml (order_id, certificate_code, ...)."""
    path = config_path or PROJECT_ROOT / "config.yml"
    config = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    for component in config.get("pipeline") or []:
        if str(component.get("name", "")).endswith("PatternEntityExtractor"):
            return {name: dict(spec) for name, spec in (component.get("entities") or {}).items()}
    raise ValueError(f"{path} has no PatternEntityExtractor with entity formats")


def find_value(text: str, entity: str) -> Optional[str]:
    """The first normalised value of ``entity`` in ``text`` (same formats as the NLU), or None."""
    spec = entity_formats().get(entity)
    if spec is None or not text:
        return None
    matches = find_entities(text, {entity: spec})
    return matches[0].value if matches else None


_DIGIT_RUN = re.compile(r"\d[\d\s\-]*\d|\d")


def digit_runs(text: str) -> List[str]:
    """Groups of digits as typed («4081 7263» → «40817263»): candidates for malformed numbers."""
    return [re.sub(r"\D", "", run) for run in _DIGIT_RUN.findall(text or "")]


# --- the conversation -------------------------------------------------------------------------


def latest_text(tracker: Tracker) -> str:
    return (tracker.latest_message or {}).get("text") or ""


def latest_intent(tracker: Tracker) -> Optional[str]:
    return ((tracker.latest_message or {}).get("intent") or {}).get("name")


def request_id(tracker: Tracker) -> str:
    """The id of the customer's latest message: a retry of the same action run repeats it, a new
    request does not (part of idempotency keys)."""
    return (tracker.latest_message or {}).get("message_id") or str(len(tracker.events))


def active_form(tracker: Tracker) -> Optional[str]:
    return (tracker.active_loop or {}).get("name")


def answers_slot(tracker: Tracker, slot: str, *, on_activation: bool = False) -> bool:
    """True when the latest message is the customer's answer to the question for ``slot``
    (or, with ``on_activation``, the message that started the form).

    A form also runs its validation when it resumes after a digression; the digression's text
    («а сколько он действует?») has been answered by then and is not an answer to the form.
    Neither is a request for a human, a complaint or «отмена», whatever digits it holds: the form
    extracts nothing from it and the policies handle it."""
    if replied_since_latest_message(tracker) or latest_intent(tracker) in NOT_ANSWERS:
        return False
    requested = tracker.get_slot(REQUESTED_SLOT)
    return requested == slot or (on_activation and requested is None)


def replied_since_latest_message(tracker: Tracker) -> bool:
    for event in reversed(tracker.events):
        kind = event.get("event")
        if kind == "user":
            return False
        if kind == "bot":
            return True
    return False


def flow_reset_events(keep: Iterable[str] = ()) -> List[EventType]:
    kept = set(keep)
    return [SlotSet(slot, None) for slot in FLOW_SLOTS if slot not in kept]


def end_flow_events(keep: Iterable[str] = ()) -> List[EventType]:
    """Deactivate whatever form runs and forget the flow's slots."""
    return [ActiveLoop(None), SlotSet(REQUESTED_SLOT, None), *flow_reset_events(keep)]


def conversation_turns(tracker: Tracker, limit: Optional[int] = None) -> List[Dict[str, str]]:
    """The transcript as ``[{sender: customer|bot, text}]``. Answers to the PIN question are
    masked: a PIN is a password and has no place in a CRM ticket."""
    turns: List[Dict[str, str]] = []
    requested: Optional[str] = None
    for event in tracker.events:
        kind = event.get("event")
        if kind == "slot" and event.get("name") == REQUESTED_SLOT:
            requested = event.get("value")
        elif kind == "user" and event.get("text"):
            text = event["text"]
            if requested == "pin":
                text = re.sub(r"\d", "*", text)
            turns.append({"sender": "customer", "text": text})
        elif kind == "bot" and event.get("text"):
            turns.append({"sender": "bot", "text": event["text"]})
    return turns[-limit:] if limit else turns


# --- wording ----------------------------------------------------------------------------------


def money(amount: Union[Decimal, int, float, str, None]) -> str:
    """3000 → «3 000», 1800.50 → «1 800,50» (Russian grouping with a no-break space)."""
    value = Decimal(str(amount or 0))
    whole = int(value)
    text = f"{whole:,}".replace(",", "\u00a0")
    cents = abs(value - whole)
    if cents:
        text += "," + f"{cents:.2f}"[2:]
    return text


def ru_date(value: Union[date, datetime, str]) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.strftime("%d.%m.%Y")


def payment_words(method: Optional[str]) -> str:
    return PAYMENT_METHOD_WORDS.get(method or "", DEFAULT_PAYMENT_WORDS)


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


class FlowFormValidation(FormValidationAction, ABC):
    """Base of every flow's form validation: a flow that starts or goes on ends a pending
    «Вопрос решён?» (a «да» inside the flow answers the flow, not that question)."""

    @abstractmethod
    def name(self) -> str:
        """``validate_<form>`` (abstract: the action server registers only concrete actions)."""

    async def run(self, dispatcher: Any, tracker: Tracker, domain: Any) -> List[EventType]:
        events = list(await super().run(dispatcher, tracker, domain))
        if tracker.get_slot("feedback_pending"):
            events.append(SlotSet("feedback_pending", None))
        return events
