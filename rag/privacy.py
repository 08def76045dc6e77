"""Masking personal data in a customer's question before it reaches a prompt or a log line.

The finders are the assistant's own entity patterns (``nlu/entity_patterns.py``), configured in
``config.yml`` (``PatternEntityExtractor.entities``), so a company that changes its code format
there gets the same masking here. What is masked, and how:

* certificate codes — all groups but the last: ``DRM-****-****-7Q2K`` (the support handbook's form);
* a PIN next to «пин», «PIN», «пин-код» (up to three words after it) — ``****``;
* e-mails — the first letter of the mailbox and the domain stay: ``i***@mail.ru``;
* phones — the last two digits stay: ``+7 *** ***-**-67``;
* INN (ИНН) and order numbers — all digits but the last two: ``********63``.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from nlu.entity_patterns import EntityMatch, find_entities

# The same patterns config.yml gives the PatternEntityExtractor (used when it cannot be read).
DEFAULT_ENTITY_SPECS: Dict[str, Dict[str, Any]] = {
    "order_id": {"kind": "digits", "length": 8},
    "certificate_code": {"kind": "code", "prefix": "DRM", "groups": 3, "group_length": 4},
    "email": {"kind": "email"},
    "phone": {"kind": "phone_ru"},
    "inn": {"kind": "inn_ru"},
}
_PIN_RE = re.compile(
    # up to three short words between the label and the digits: «пин 1234», «пин-код: 1234»,
    # «мой пин от сертификата 1234», «ПИН код сертификата — 9876»
    r"(?P<label>(?<![\w])(?:пин|pin)(?:[\s\-]?(?:код|code))?(?:[а-яё]{0,3})?\W{0,3}(?:[а-яёa-z]{1,12}\W{1,3}){0,3})"
    r"(?P<pin>\d{4,6})(?!\d)",
    re.IGNORECASE,
)


@lru_cache(maxsize=8)
def _specs_from_config(path: str) -> Optional[Dict[str, Dict[str, Any]]]:
    from ruamel.yaml import YAML

    config_path = Path(path)
    if not config_path.exists():
        return None
    try:
        config = YAML(typ="safe").load(config_path.read_text(encoding="utf-8")) or {}
    except Exception:  # a broken config.yml is Rasa's to report; masking keeps its defaults
        return None
    for component in config.get("pipeline") or []:
        if str(component.get("name", "")).endswith("PatternEntityExtractor") and component.get("entities"):
            return {str(name): dict(spec) for name, spec in component["entities"].items()}
    return None


def entity_specs(config_path: Optional[Path] = None) -> Dict[str, Dict[str, Any]]:
    """The entity patterns of ``config.yml`` (or the defaults)."""
    if config_path is not None:
        specs = _specs_from_config(str(config_path))
        if specs:
            return specs
    return dict(DEFAULT_ENTITY_SPECS)


def _mask_match(match: EntityMatch, kind: str) -> str:
    if kind == "code":
        groups = match.value.split("-")
        if len(groups) >= 2:
            return "-".join([groups[0], *("*" * len(g) for g in groups[1:-1]), groups[-1]])
        return "*" * len(match.value)
    if kind == "email":
        local, _, domain = match.value.partition("@")
        return f"{local[:1]}***@{domain}"
    if kind == "phone_ru":
        return f"+7 *** ***-**-{match.value[-2:]}"
    digits = re.sub(r"\D", "", match.value)
    return "*" * max(len(digits) - 2, 0) + digits[-2:]


class PiiMasker:
    def __init__(self, specs: Optional[Mapping[str, Mapping[str, Any]]] = None) -> None:
        self.specs: Dict[str, Dict[str, Any]] = {k: dict(v) for k, v in (specs or DEFAULT_ENTITY_SPECS).items()}

    @classmethod
    def from_config(cls, config_path: Optional[Path] = None) -> "PiiMasker":
        return cls(entity_specs(config_path))

    def mask(self, text: str) -> str:
        if not text:
            return text
        # PINs first: a 4-digit PIN is never any other entity, and «пин 1234» must not survive.
        text = _PIN_RE.sub(lambda m: m.group("label") + "*" * len(m.group("pin")), text)
        pieces = []
        last = 0
        for match in find_entities(text, self.specs):
            kind = str(self.specs.get(match.entity, {}).get("kind", ""))
            pieces.append(text[last : match.start])
            pieces.append(_mask_match(match, kind))
            last = match.end
        pieces.append(text[last:])
        return "".join(pieces)

    __call__ = mask


def mask_pii(text: str, specs: Optional[Mapping[str, Mapping[str, Any]]] = None) -> str:
    return PiiMasker(specs).mask(text)
