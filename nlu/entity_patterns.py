"""Finding and normalising structured entities in customer text (pure functions, no Rasa).

Each *kind* knows how to find candidates in free text, validate them and normalise them:
``digits`` (e.g. 8-digit order numbers), ``code`` (prefixed codes such as DRM-XXXX-XXXX-XXXX,
tolerant of spaces, missing dashes, lower case and Cyrillic look-alike letters), ``email``,
``phone_ru`` (normalised to +7XXXXXXXXXX) and ``inn_ru`` (10/12 digits, checksum-validated).
Which entity uses which kind (and the company's code prefix) is configuration, so another
company changes config.yml, not this module. Actions reuse these functions to validate slots.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, List, Mapping, Optional

# Cyrillic letters that look like Latin ones, as customers type them on a Russian keyboard.
_LOOKALIKES = str.maketrans(
    {
        "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
        "С": "C", "Т": "T", "Х": "X", "У": "Y", "З": "3", "Ё": "E",
        "а": "A", "в": "B", "е": "E", "к": "K", "м": "M", "н": "H", "о": "O", "р": "P",
        "с": "C", "т": "T", "х": "X", "у": "Y", "з": "3", "ё": "E",
    }
)
# «ДРМ» typed on a Russian keyboard layout for «DRM»: transliterated rather than look-alike.
_TRANSLIT = {"Д": "D", "Л": "L", "Г": "G", "Ф": "F", "И": "I", "Б": "B", "П": "P"}


@dataclass(frozen=True)
class EntityMatch:
    entity: str
    value: str
    start: int
    end: int
    text: str


def to_latin_upper(text: str) -> str:
    upper = text.upper().translate(_LOOKALIKES)
    return "".join(_TRANSLIT.get(char, char) for char in upper)


# --- validators and normalisers ------------------------------------------------------------

def is_valid_inn(digits: str) -> bool:
    """Russian taxpayer number (ИНН): 10 digits for companies, 12 for individuals."""
    if not digits.isdigit() or len(digits) not in (10, 12):
        return False
    numbers = [int(char) for char in digits]

    def check(weights: List[int], position: int) -> bool:
        return sum(w * n for w, n in zip(weights, numbers)) % 11 % 10 == numbers[position]

    if len(numbers) == 10:
        return check([2, 4, 10, 3, 5, 9, 4, 6, 8], 9)
    return check([7, 2, 4, 10, 3, 5, 9, 4, 6, 8], 10) and check(
        [3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8], 11
    )


def normalise_phone_ru(text: str) -> Optional[str]:
    """+7XXXXXXXXXX for a Russian number written in any common way, else None."""
    digits = re.sub(r"\D", "", text)
    if len(digits) == 11 and digits[0] in "78":
        digits = digits[1:]
    if len(digits) != 10 or digits[0] not in "3489":
        return None
    return "+7" + digits


_EMAIL_RE = re.compile(
    r"(?<![\w.+-])([A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24})(?![\w-])"
)


def normalise_email(text: str) -> Optional[str]:
    match = _EMAIL_RE.fullmatch(text.strip())
    return match.group(1).lower() if match else None


# --- finders -------------------------------------------------------------------------------

Finder = Callable[[str], Iterable[EntityMatch]]

_PHONE_RE = re.compile(
    r"(?<![\w+])(\+\s?7|8|7)?[\s\-]?\(?\s?(\d{3})\s?\)?[\s\-]?(\d{3})[\s\-]?(\d{2})[\s\-]?(\d{2})(?![\d])"
)
# With an explicit +7 / 8 prefix any grouping of the ten digits is a phone («8 921 44 55 310»).
_PHONE_PREFIXED_RE = re.compile(r"(?<![\w+])(\+\s?7|8)(?:[\s\-()]{0,2}\d){10}(?!\d)")
_INN_CONTEXT_RE = re.compile(r"(инн|inn|налогов|tax\s?id|taxpayer)\W{0,3}(\w+\W{1,3}){0,2}$", re.IGNORECASE)


def _find_phones(text: str, entity: str) -> Iterable[EntityMatch]:
    for match in _PHONE_PREFIXED_RE.finditer(text):
        value = normalise_phone_ru(match.group(0))
        if value is not None:
            yield EntityMatch(entity, value, match.start(), match.end(), match.group(0))
    for match in _PHONE_RE.finditer(text):
        prefix = match.group(1)
        surface = match.group(0)
        value = normalise_phone_ru(surface)
        if value is None:
            continue
        has_layout = bool(re.search(r"[\s\-()]", surface.strip()))
        # Ten bare digits are a phone only when they look like a mobile number (9XX...).
        if not prefix and not has_layout and value[2] != "9":
            continue
        if not prefix and _INN_CONTEXT_RE.search(text[: match.start()]):
            continue
        start = match.start() + (len(surface) - len(surface.lstrip()))
        yield EntityMatch(entity, value, start, match.end(), text[start : match.end()])


def _find_inns(text: str, entity: str) -> Iterable[EntityMatch]:
    for match in re.finditer(r"(?<!\d)(\d{12}|\d{10})(?!\d)", text):
        digits = match.group(1)
        # A bare 9XXXXXXXXX is far more often a mobile number than an INN, unless the text says ИНН.
        if len(digits) == 10 and digits[0] == "9" and not _INN_CONTEXT_RE.search(text[: match.start()]):
            continue
        if is_valid_inn(digits):
            yield EntityMatch(entity, match.group(1), match.start(), match.end(), match.group(0))


def _find_emails(text: str, entity: str) -> Iterable[EntityMatch]:
    for match in _EMAIL_RE.finditer(text):
        yield EntityMatch(entity, match.group(1).lower(), match.start(1), match.end(1), match.group(1))


def _digits_finder(length: int) -> Callable[[str, str], Iterable[EntityMatch]]:
    pattern = re.compile(rf"(?<![\d\w-])(\d{{{length}}})(?![\d]|[-.,]\d)")

    def find(text: str, entity: str) -> Iterable[EntityMatch]:
        for match in pattern.finditer(text):
            yield EntityMatch(entity, match.group(1), match.start(1), match.end(1), match.group(1))

    return find


def _code_finder(prefix: str, groups: int, group_length: int) -> Callable[[str, str], Iterable[EntityMatch]]:
    alnum = r"[A-Za-zА-Яа-яЁё0-9]"
    separator = r"[\s\-–—_.]{0,2}"
    prefix_pattern = "".join(f"[{char}{char.lower()}{_cyrillic_variants(char)}]" for char in prefix)
    body = separator.join([f"({alnum}{{{group_length}}})"] * groups)
    pattern = re.compile(rf"(?<![\w])({prefix_pattern}){separator}{body}(?![\w])")

    def find(text: str, entity: str) -> Iterable[EntityMatch]:
        for match in pattern.finditer(text):
            parts = [to_latin_upper(part) for part in match.groups()[1:]]
            if not all(re.fullmatch(r"[A-Z0-9]+", part) for part in parts):
                continue
            value = "-".join([prefix.upper(), *parts])
            yield EntityMatch(entity, value, match.start(), match.end(), match.group(0))

    return find


# How a Latin prefix letter sounds in Cyrillic («дрм» for «DRM»): used for the prefix only.
_PHONETIC = {
    "A": "А", "B": "Б", "C": "Ц", "D": "Д", "E": "ЕЭ", "F": "Ф", "G": "Г", "H": "Х", "I": "И",
    "K": "К", "L": "Л", "M": "М", "N": "Н", "O": "О", "P": "П", "R": "Р", "S": "С", "T": "Т",
    "U": "У", "V": "В", "Z": "З",
}


def _cyrillic_variants(latin_char: str) -> str:
    upper = latin_char.upper()
    variants = set(_PHONETIC.get(upper, ""))
    variants |= {cyr for cyr in "АВЕКМНОРСТХУЗ" if cyr.translate(_LOOKALIKES) == upper}
    return "".join(sorted(variants | {v.lower() for v in variants}))


def build_finder(entity: str, spec: Mapping[str, Any]) -> Finder:
    """A finder for one configured entity, e.g. ``{"kind": "digits", "length": 8}``."""
    kind = spec.get("kind")
    if kind == "digits":
        inner = _digits_finder(int(spec.get("length", 8)))
    elif kind == "code":
        inner = _code_finder(
            str(spec.get("prefix", "")), int(spec.get("groups", 3)), int(spec.get("group_length", 4))
        )
    elif kind == "email":
        inner = _find_emails
    elif kind == "phone_ru":
        inner = _find_phones
    elif kind == "inn_ru":
        inner = _find_inns
    else:
        raise ValueError(f"Unknown entity kind '{kind}' for entity '{entity}'.")
    return lambda text: inner(text, entity)


# Longer spans win; at equal length the more specific kind wins (a 10-digit INN over a phone
# only when the text says «ИНН», see _find_phones).
_KIND_PRIORITY = {"code": 0, "email": 1, "inn_ru": 2, "phone_ru": 3, "digits": 4}


def find_entities(text: str, specs: Mapping[str, Mapping[str, Any]]) -> List[EntityMatch]:
    """All non-overlapping entities of ``text`` for the configured ``specs``."""
    if not text:
        return []
    candidates: List[tuple] = []
    for entity, spec in specs.items():
        for match in build_finder(entity, spec)(text):
            candidates.append((-(match.end - match.start), _KIND_PRIORITY.get(spec.get("kind"), 9), match))
    candidates.sort(key=lambda item: (item[0], item[1], item[2].start))
    chosen: List[EntityMatch] = []
    for _, _, match in candidates:
        if all(match.end <= other.start or match.start >= other.end for other in chosen):
            chosen.append(match)
    return sorted(chosen, key=lambda match: match.start)


def normalise_value(spec: Mapping[str, Any], text: str) -> Optional[str]:
    """Normalised value if the whole ``text`` is one valid entity of this spec, else None."""
    matches = [match for match in build_finder("value", spec)(text.strip())]
    stripped = text.strip()
    for match in matches:
        if match.start == 0 and match.end == len(stripped):
            return match.value
    return None
