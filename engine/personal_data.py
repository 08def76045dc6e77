"""What of a conversation may be stored, and how: the policy the tracker store and the event
broker apply to every event before it is written (``engine.tracker_store``, ``engine.event_broker``).

A conversation needs some personal data for a few turns — the certificate code until the PIN
arrives, the new e-mail until the buyer check passed — and none of it afterwards in clear text.
So, per event:

* **texts** (what the customer wrote, what the bot said, the parse's text and entity values, the
  bot's custom payloads) are *masked* for good with the assistant's own entity patterns
  (``rag.privacy.PiiMasker`` over the ``PatternEntityExtractor`` formats of ``config.yml``):
  certificate codes ``DRM-****-****-7Q2K``, e-mails ``i***@mail.ru``, phones ``+7 *** ***-**-67``,
  a PIN next to «пин»; and every digit of the answer to a *secret question* (the PIN, the buyer
  check: ``secret_answers``) — the question is known from ``requested_slot``;
* **secret slots** (``secret_slots``, the PIN) are never stored: their value becomes ``****``;
* **sealed slots** (``sealed_slots``, and any other slot whose value holds something the masker
  masks) are stored *encrypted* (Fernet, AES-128-CBC + HMAC-SHA256) and decrypted when the tracker
  is read, so a flow resumed after a restart still has them; the event broker, which other parts
  read, gets them masked instead.

Order numbers, intents, action names and the rest stay as they are: they are what analytics and
the review inbox read.

The key: ``CONVERSATION_STATE_KEY`` (one or more comma-separated passphrases; the first seals,
all open — rotate by putting the new one first), else a random key kept in a file (``key_file``,
default ``conversation-state.key`` in the project root, created 0600 on first use). Every replica
of a scaled-out stack must use the same key.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, FrozenSet, Mapping, Optional, Sequence, Tuple

from engine.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)

SEALED_PREFIX = "sealed:v1:"
SECRET_PLACEHOLDER = "****"
KEY_ENV = "CONVERSATION_STATE_KEY"
DEFAULT_KEY_FILE = PROJECT_ROOT / "conversation-state.key"
REQUESTED_SLOT = "requested_slot"
#: the endpoint options of the tracker store / event broker that configure :class:`AtRestPolicy`
POLICY_OPTIONS = ("secret_slots", "secret_answers", "sealed_slots", "masked_entities")
#: entities masked in stored texts (order numbers and INNs stay: they identify orders and companies)
DEFAULT_MASKED_ENTITIES = ("certificate_code", "email", "phone")

_DIGIT = re.compile(r"\d")


class Sealer:
    """Reversible encryption of slot values (Fernet; several keys for rotation)."""

    def __init__(self, passphrases: Sequence[str]) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        if not passphrases or not all(passphrases):
            raise ValueError("at least one key is needed, and no empty one (anyone can derive it)")
        self._fernet = MultiFernet([Fernet(_fernet_key(phrase)) for phrase in passphrases])

    @classmethod
    def from_env(cls, key_file: Optional[Path] = None, environ: Optional[Mapping[str, str]] = None) -> "Sealer":
        environ = os.environ if environ is None else environ
        raw = (environ.get(KEY_ENV) or "").strip()
        if raw:
            return cls([part.strip() for part in raw.split(",") if part.strip()])
        return cls([_key_from_file(Path(key_file) if key_file else DEFAULT_KEY_FILE)])

    def seal(self, value: Any) -> str:
        token = self._fernet.encrypt(json.dumps(value, ensure_ascii=False).encode("utf-8"))
        return SEALED_PREFIX + token.decode("ascii")

    def open(self, sealed: str) -> Any:
        """The value, or None when this key cannot open it (logged; the flow asks again)."""
        from cryptography.fernet import InvalidToken

        try:
            return json.loads(self._fernet.decrypt(sealed[len(SEALED_PREFIX):].encode("ascii")))
        except (InvalidToken, ValueError):
            logger.warning("a sealed slot value could not be opened with the configured key(s); it is dropped")
            return None


def _fernet_key(passphrase: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(passphrase.encode("utf-8")).digest())


def _key_from_file(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another replica created it first
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(base64.urlsafe_b64encode(os.urandom(32)).decode("ascii"))
            logger.info("created the conversation-state key %s (set %s in production)", path, KEY_ENV)
    key = path.read_text(encoding="utf-8").strip()
    if not key:  # an empty passphrase is a key anyone can derive: refuse rather than seal with it
        raise ValueError(f"the conversation-state key file {path} is empty (delete it for a new key, or set {KEY_ENV})")
    return key


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


@lru_cache(maxsize=8)
def _masker(entities: Sequence[str], config_path: str) -> Any:
    from rag.privacy import PiiMasker, entity_specs

    specs = entity_specs(Path(config_path))
    return PiiMasker({name: spec for name, spec in specs.items() if name in entities})


@dataclass(frozen=True)
class AtRestPolicy:
    """What :func:`stored` and :func:`broadcast` do to an event (see the module doc)."""

    secret_slots: FrozenSet[str] = frozenset({"pin"})
    secret_answers: FrozenSet[str] = frozenset({"pin", "buyer_check"})
    sealed_slots: FrozenSet[str] = frozenset({"certificate_code", "email", "phone", "buyer_check", "resend_address"})
    masked_entities: Sequence[str] = DEFAULT_MASKED_ENTITIES
    config_path: Path = field(default=PROJECT_ROOT / "config.yml")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "AtRestPolicy":
        """From the store's endpoint options (``secret_slots``, ``secret_answers``,
        ``sealed_slots``, ``masked_entities``); unknown option names are an error."""
        known = set(POLICY_OPTIONS)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown personal-data option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        defaults = cls()
        names = lambda key, default: frozenset(str(item) for item in options.get(key, default) or ())  # noqa: E731
        return cls(
            secret_slots=names("secret_slots", defaults.secret_slots),
            secret_answers=names("secret_answers", defaults.secret_answers),
            sealed_slots=names("sealed_slots", defaults.sealed_slots),
            masked_entities=tuple(options.get("masked_entities", defaults.masked_entities) or ()),
        )

    # --- texts --------------------------------------------------------------------------------

    def mask_text(self, text: Any, secret_answer: bool = False) -> Any:
        if not isinstance(text, str) or not text:
            return text
        masked = _masker(tuple(self.masked_entities), str(self.config_path)).mask(text)
        return _DIGIT.sub("*", masked) if secret_answer else masked

    def _mask_tree(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, list):
            return [self._mask_tree(item) for item in value]
        if isinstance(value, dict):
            return {key: self._mask_tree(item) for key, item in value.items()}
        return value

    def _needs_sealing(self, name: str, value: Any) -> bool:
        if value is None or is_sealed(value):
            return False
        return name in self.sealed_slots or self._mask_tree(value) != value

    # --- events -------------------------------------------------------------------------------

    def _masked(self, event: Dict[str, Any], requested_slot: Optional[str]) -> Dict[str, Any]:
        """The event with its texts masked (slot values are the callers' business)."""
        kind = event.get("event")
        if kind == "user":
            secret = requested_slot in self.secret_answers
            event["text"] = self.mask_text(event.get("text"), secret)
            parse = event.get("parse_data")
            if isinstance(parse, dict):
                parse["text"] = self.mask_text(parse.get("text"), secret)
                for entity in parse.get("entities") or ():
                    if isinstance(entity, dict) and isinstance(entity.get("value"), str):
                        entity["value"] = self.mask_text(entity["value"], secret)
        elif kind == "bot":
            event["text"] = self.mask_text(event.get("text"))
            if event.get("data"):
                event["data"] = self._mask_tree(event["data"])
        return event

    def stored(self, event: Mapping[str, Any], requested_slot: Optional[str], sealer: Sealer) -> Dict[str, Any]:
        """The event as the tracker store keeps it."""
        event = self._masked(copy.deepcopy(dict(event)), requested_slot)
        if event.get("event") == "slot":
            name, value = str(event.get("name")), event.get("value")
            if name in self.secret_slots:
                event["value"] = None if value is None else SECRET_PLACEHOLDER
            elif self._needs_sealing(name, value):
                event["value"] = sealer.seal(value)
        return event

    def broadcast(self, event: Mapping[str, Any], requested_slot: Optional[str]) -> Dict[str, Any]:
        """The event as other parts read it (event broker): nothing can be unsealed from it."""
        event = self._masked(copy.deepcopy(dict(event)), requested_slot)
        if event.get("event") == "slot":
            name, value = str(event.get("name")), event.get("value")
            if name in self.secret_slots:
                event["value"] = None if value is None else SECRET_PLACEHOLDER
            elif name in self.sealed_slots and value is not None:
                masked = self._mask_tree(value)
                event["value"] = masked if masked != value else SECRET_PLACEHOLDER
            else:
                event["value"] = self._mask_tree(value)
        return event

    def stored_and_broadcast(
        self, event: Mapping[str, Any], requested_slot: Optional[str], sealer: Sealer
    ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """:meth:`stored` and :meth:`broadcast` of one event, its texts masked once (the tracker
        store writes both on every turn)."""
        masked = self._masked(copy.deepcopy(dict(event)), requested_slot)
        if masked.get("event") != "slot":
            return masked, dict(masked)
        stored, broadcast = dict(masked), dict(masked)
        name, value = str(masked.get("name")), masked.get("value")
        if name in self.secret_slots:
            stored["value"] = broadcast["value"] = None if value is None else SECRET_PLACEHOLDER
            return stored, broadcast
        if self._needs_sealing(name, value):
            stored["value"] = sealer.seal(value)
        if name in self.sealed_slots and value is not None:
            hidden = self._mask_tree(value)
            broadcast["value"] = hidden if hidden != value else SECRET_PLACEHOLDER
        else:
            broadcast["value"] = self._mask_tree(value)
        return stored, broadcast

    @staticmethod
    def restored(event: Dict[str, Any], sealer: Sealer) -> Dict[str, Any]:
        """A stored event as the dialogue needs it (sealed slot values opened)."""
        if event.get("event") == "slot" and is_sealed(event.get("value")):
            event["value"] = sealer.open(event["value"])
        return event
