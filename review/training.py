"""Accepted review decisions as Rasa NLU training data: ``data/nlu/reviewed/<intent>.yml``.

A trainer who labels a missed customer message gives it an intent (``out_of_scope`` too) and,
optionally, entity spans; the example is written to ``<root>/data/nlu/reviewed/<intent>.yml`` —
one file per intent, the standard Rasa 3 format, entities inline as ``[value](entity)`` — where a
plain ``rasa train`` picks it up with the rest of ``data/`` (``engine.importer``)::

    data = ReviewedData()                       # the project; ReviewedData(tmp_root) in tests
    data.add("бабки назад верните", "refund_request", reviewer="anna")
    data.add("где заказ 4 дня жду", "complaint", entities=[...])   # {"entity", "value", "start", "end"}
    data.reviewed()                             # [ReviewedExample(text, intent, entities, path)]
    data.remove("бабки назад верните")          # undo (None when it was not there)
    data.intents(), data.entity_names()         # what a trainer can choose from

An example is refused with a ``ReviewRefused`` (a ``ValueError`` with a ``.code``), and nothing is
written, when it is:

``empty`` / ``too_long``    no text, or more than ``MAX_TEXT_CHARS`` characters;
``invalid``                 a button payload (``/intent``), or text the Rasa reader would take as
                            entity markup (``[x](y)``);
``unknown_intent``          not an intent of ``domain.yml`` that has NLU examples (``nlu_fallback``
                            and the button-only intents such as ``feedback_rating`` are not);
``invalid_entity``          an entity not in the domain (or button-only), offsets outside the text,
                            a value that is not ``text[start:end]``, overlapping spans;
``personal_data``           something ``rag.privacy.PiiMasker`` with ``config.yml``'s entity
                            patterns masks — certificate codes, a PIN after «пин», e-mails, phones,
                            order numbers, INNs (the message never repeats the value, only the
                            masked form) — or what masking leaves behind (``DRM-****-…``,
                            ``i***@mail.ru``, ``****``): a customer's identifiers must not reach
                            training data, which is committed and shipped inside every model, and
                            masked junk is not a wording customers type;
``duplicate``               already a training example anywhere in ``data/`` (or already reviewed
                            under the same intent), compared normalised: case, spaces,
                            punctuation, ё/е and entity markup ignored (``normalise``);
``conflict``                already reviewed under another intent (undo that first);
``heldout``                 in a held-out test set (``tests/data/nlu_heldout.yml``,
                            ``tests/data/out_of_scope_heldout.txt``) or the fallback calibration set
                            (``data/calibration/out_of_scope.txt``): no leakage into evaluation;
``broken_data``             a file under ``data/nlu/reviewed/`` no longer parses (fix it by hand).

Writes are one at a time (a thread lock, and ``flock`` on the reviewed folder for other processes),
atomic (a temporary ``.<name>.<random>.tmp`` — not a ``*.yml`` a concurrent ``rasa train`` would
read — then ``os.replace``), and proved: the new text is parsed in memory first, the written file is
re-read with Rasa's ``load_data``, and unless it holds exactly the intended examples the old file
is put back.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from engine.settings import PROJECT_ROOT
from review.files import folder_lock, fsync_directory, write_atomic

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 300
REVIEWED_DIR = Path("data") / "nlu" / "reviewed"
HELDOUT_NLU = Path("tests") / "data" / "nlu_heldout.yml"
HELDOUT_OUT_OF_SCOPE = Path("tests") / "data" / "out_of_scope_heldout.txt"
CALIBRATION_OUT_OF_SCOPE = Path("data") / "calibration" / "out_of_scope.txt"
FALLBACK_INTENT = "nlu_fallback"
OUT_OF_SCOPE_INTENT = "out_of_scope"
HEADER = (
    "# Reviewed examples: customer messages a trainer labelled in the review console.\n"
    "# Written by review/training.py (one file per intent); `rasa train` reads it with the rest of data/.\n"
)
#: what masking leaves in a text (``DRM-****-****-7Q2K``, ``i***@mail.ru``, ``+7 *** ***-**-67``, a
#: PIN ``****``), and a sealed slot value: not something to train on
_MASKED_RE = re.compile(r"\*{2,}|sealed:v\d+:")
_INTENT_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_SPACES = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w]+")
_END_PUNCTUATION = ".!?…,;: "


class ReviewRefused(ValueError):
    """A reviewed example was refused (``code`` says why, the message explains); nothing was written."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ReviewedExample:
    text: str
    intent: str
    entities: Tuple[Dict[str, Any], ...] = ()
    path: Optional[Path] = None
    reviewer: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "text": self.text,
            "intent": self.intent,
            "entities": [dict(entity) for entity in self.entities],
            "path": str(self.path) if self.path else None,
            "reviewer": self.reviewer,
        }


def normalise(text: str) -> str:
    """How two examples are the same example for training: case, ё/е, spaces and punctuation (at the
    end and inside: «бабки назад, верните!» is «бабки назад верните» to a bag of words) ignored;
    entity markup is gone already (texts are compared as Rasa's reader returns them). A text of
    symbols only (``👍``) keeps them."""
    text = str(text or "").lower().replace("ё", "е")
    words = _SPACES.sub(" ", _NON_WORD.sub(" ", text)).strip()
    return words or _SPACES.sub(" ", text).strip().strip(_END_PUNCTUATION)


@dataclass
class _Parsed:
    stamp: Tuple[int, int]
    examples: List[Tuple[str, str, Tuple[Dict[str, Any], ...]]] = field(default_factory=list)


class ReviewedData:
    """The reviewed NLU examples of the project at ``project_root`` (see the module doc)."""

    def __init__(self, project_root: Path = PROJECT_ROOT) -> None:
        self.root = Path(project_root).resolve()
        self.folder = self.root / REVIEWED_DIR
        self.data_dir = self.root / "data"
        self.domain_path = self.root / "domain.yml"
        config = self.root / "config.yml"
        self.config_path = config if config.exists() else PROJECT_ROOT / "config.yml"
        self._cache: Dict[Path, _Parsed] = {}
        self._kinds: Dict[str, Tuple[Tuple[int, int], bool]] = {}
        self._cache_lock = threading.Lock()
        self._parse_lock = threading.RLock()
        self._masker: Any = None

    # --- what a trainer can choose from -----------------------------------------------------------

    def intents(self) -> List[str]:
        """The domain's intents a message can be labelled with, sorted: not ``nlu_fallback``, and not
        the button-only ones (``feedback_*``: no NLU examples in ``data/``, on purpose)."""
        domain_intents, _ = self._domain()
        trained = {intent for _, intent, _ in self._training_examples(include_reviewed=True)}
        return sorted(name for name in domain_intents if name != FALLBACK_INTENT and name in trained)

    def entity_names(self) -> List[str]:
        """The domain's entities that NLU examples annotate (not the button-only ``kb_article``…), sorted."""
        _, domain_entities = self._domain()
        annotated = {entity["entity"] for _, _, entities in self._training_examples(include_reviewed=True)
                     for entity in entities}
        return sorted(name for name in domain_entities if name in annotated)

    # --- reading ----------------------------------------------------------------------------------

    def reviewed(self, intent: Optional[str] = None) -> List[ReviewedExample]:
        """Every reviewed example (of ``intent``), by intent, in the order they were added."""
        found: List[ReviewedExample] = []
        for path in self._reviewed_files():
            for text, example_intent, entities in self._parsed(path).examples:
                if intent is None or example_intent == intent:
                    found.append(ReviewedExample(text, example_intent, entities, path))
        return found

    def find(self, text: str) -> Optional[ReviewedExample]:
        key = normalise(text)
        return next((example for example in self.reviewed() if normalise(example.text) == key), None)

    # --- writing ----------------------------------------------------------------------------------

    def add(self, text: str, intent: str, entities: Optional[Sequence[Mapping[str, Any]]] = None,
            reviewer: Optional[str] = None) -> ReviewedExample:
        """Writes ``text`` as an example of ``intent``; returns it (with the file it is in)."""
        text, entities_out = self._check_text(text, entities)
        intent = str(intent or "").strip()
        self._check_intent(intent)
        self._check_entities(text, entities_out)
        self._check_personal_data(text)
        key = normalise(text)
        self._check_heldout(key)
        with self._writing():
            for example in self.reviewed():
                if normalise(example.text) == key:
                    if example.intent == intent:
                        raise ReviewRefused("duplicate", f"«{text}» is already a reviewed example of '{intent}'")
                    raise ReviewRefused(
                        "conflict",
                        f"«{text}» is already a reviewed example of '{example.intent}'; undo that decision first",
                    )
            for existing, existing_intent, path in self._training_index():
                if existing == key:
                    raise ReviewRefused(
                        "duplicate",
                        f"«{text}» is already a training example of '{existing_intent}' "
                        f"({self._relative(path)})",
                    )
            path = self._file_of(intent)
            examples = [(t, i, e) for t, i, e in self._parsed(path).examples] if path.exists() else []
            examples.append((text, intent, tuple(entities_out)))
            self._replace(path, intent, examples)
        logger.info("review: %s added a reviewed example of %s to %s", reviewer or "someone", intent,
                    self._relative(path))
        return ReviewedExample(text, intent, tuple(entities_out), path, reviewer)

    def remove(self, text: str) -> Optional[ReviewedExample]:
        """Takes a reviewed example out again (an undo); returns it, or None when it is not there."""
        key = normalise(text)
        if not key:
            return None
        with self._writing():
            for path in self._reviewed_files():
                examples = self._parsed(path).examples
                kept = [example for example in examples if normalise(example[0]) != key]
                if len(kept) == len(examples):
                    continue
                removed = next(example for example in examples if normalise(example[0]) == key)
                intent = removed[1]
                if kept:
                    self._replace(path, intent, kept)
                else:
                    self._delete(path)
                logger.info("review: a reviewed example of %s was removed from %s", intent, self._relative(path))
                return ReviewedExample(removed[0], intent, removed[2], path)
        return None

    # --- checks -----------------------------------------------------------------------------------

    def _check_text(self, text: Any, entities: Optional[Sequence[Mapping[str, Any]]]
                    ) -> Tuple[str, List[Dict[str, Any]]]:
        """The text with its whitespace collapsed (one line) and the entities' offsets moved with it."""
        if not isinstance(text, str):
            raise ReviewRefused("empty", "the text must be a string")
        raw = text
        # map every kept character of the collapsed text to its offset in the raw text
        kept: List[int] = []
        pieces: List[str] = []
        pending_space = False
        for index, char in enumerate(raw):
            if char.isspace():
                pending_space = bool(pieces)
                continue
            if pending_space:
                pieces.append(" ")
                kept.append(index - 1)
                pending_space = False
            pieces.append(char)
            kept.append(index)
        clean = "".join(pieces)
        if not clean.strip(_END_PUNCTUATION):
            raise ReviewRefused("empty", "the text is empty")
        if len(clean) > MAX_TEXT_CHARS:
            raise ReviewRefused("too_long", f"the text is longer than {MAX_TEXT_CHARS} characters ({len(clean)})")
        if clean.startswith("/"):
            raise ReviewRefused("invalid", "a button payload (/intent) is not a message a customer typed")
        from rasa.shared.nlu.training_data.entities_parser import ENTITY_REGEX

        if ENTITY_REGEX.search(clean):
            raise ReviewRefused("invalid", "the text contains entity markup ([…](…)); give plain text and entity spans")
        out: List[Dict[str, Any]] = []
        raw_to_clean = {raw_index: clean_index for clean_index, raw_index in enumerate(kept)}
        for entity in entities or ():
            if not isinstance(entity, Mapping):
                raise ReviewRefused("invalid_entity", "each entity must be {entity, value, start, end}")
            name = str(entity.get("entity") or "").strip()
            start, end = entity.get("start"), entity.get("end")
            if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) \
                    or isinstance(end, bool) or not 0 <= start < end <= len(raw):
                raise ReviewRefused("invalid_entity",
                                    f"entity '{name}': start/end must be offsets into the text (0..{len(raw)})")
            span = raw[start:end]
            value = entity.get("value")
            if value is not None and str(value) != span:
                raise ReviewRefused(
                    "invalid_entity",
                    f"entity '{name}': the value does not match the text at {start}..{end}",
                )
            if span != span.strip():
                raise ReviewRefused("invalid_entity", f"entity '{name}': the span starts or ends with a space")
            if start not in raw_to_clean or (end - 1) not in raw_to_clean:
                raise ReviewRefused("invalid_entity", f"entity '{name}': the span is not within the text")
            new_start, new_end = raw_to_clean[start], raw_to_clean[end - 1] + 1
            out.append({"entity": name, "value": clean[new_start:new_end], "start": new_start, "end": new_end})
        out.sort(key=lambda entity: (entity["start"], entity["end"]))
        for before, after in zip(out, out[1:]):
            if after["start"] < before["end"]:
                raise ReviewRefused("invalid_entity",
                                    f"entities '{before['entity']}' and '{after['entity']}' overlap")
        return clean, out

    def _check_intent(self, intent: str) -> None:
        if not intent:
            raise ReviewRefused("unknown_intent", "no intent given")
        if intent == FALLBACK_INTENT:
            raise ReviewRefused("unknown_intent", f"'{FALLBACK_INTENT}' is what the NLU says when it does not "
                                                  f"understand; label it '{OUT_OF_SCOPE_INTENT}' or a real intent")
        if intent not in self.intents():
            domain_intents, _ = self._domain()
            if intent in domain_intents:
                raise ReviewRefused("unknown_intent",
                                    f"'{intent}' is a button-only intent (no NLU examples); not for typed messages")
            raise ReviewRefused("unknown_intent", f"'{intent}' is not an intent of {self.domain_path.name}")

    def _check_entities(self, text: str, entities: Sequence[Mapping[str, Any]]) -> None:
        if not entities:
            return
        names = set(self.entity_names())
        for entity in entities:
            if entity["entity"] not in names:
                raise ReviewRefused(
                    "invalid_entity",
                    f"'{entity['entity']}' is not an entity the NLU is trained on (one of: {', '.join(sorted(names))})",
                )

    def _check_personal_data(self, text: str) -> None:
        if _MASKED_RE.search(text):
            raise ReviewRefused(
                "personal_data",
                "the text contains masked personal data (***): leave the masked part out — "
                "a masked placeholder is not something customers type",
            )
        masked = self._pii_masker().mask(text)
        if masked != text:
            from nlu.entity_patterns import find_entities

            from rag.privacy import _PIN_RE  # the masker's own PIN finder

            kinds = sorted({match.entity for match in find_entities(text, self._pii_masker().specs)})
            if _PIN_RE.search(text):
                kinds.insert(0, "pin")
            excerpt = masked if len(masked) <= 80 else masked[:77] + "…"
            raise ReviewRefused(
                "personal_data",
                f"the text contains personal data ({', '.join(kinds) or 'personal data'}: «{excerpt}» once masked); "
                "training data must not hold it — remove it from the wording",
            )

    def _check_heldout(self, key: str) -> None:
        for label, keys in self._heldout_sets():
            if key in keys:
                raise ReviewRefused("heldout", f"this message is in the {label}: training on it would leak the test")

    # --- the project's files ----------------------------------------------------------------------

    def _domain(self) -> Tuple[List[str], List[str]]:
        """(intents, entities) of domain.yml (a file, or a folder of domain files)."""
        from ruamel.yaml import YAML

        paths = sorted(self.domain_path.rglob("*.yml")) if self.domain_path.is_dir() else [self.domain_path]
        intents: List[str] = []
        entities: List[str] = []
        for path in paths:
            try:
                content = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
            except FileNotFoundError as error:
                raise ReviewRefused("broken_data", f"the domain is missing: {path}") from error
            for key, into in (("intents", intents), ("entities", entities)):
                for item in content.get(key) or ():
                    names = list(item) if isinstance(item, dict) else [item]
                    into.extend(str(name) for name in names if str(name) not in into)
        return intents, entities

    def _pii_masker(self) -> Any:
        if self._masker is None:
            from rag.privacy import PiiMasker, entity_specs

            self._masker = PiiMasker(entity_specs(self.config_path))
        return self._masker

    def _heldout_sets(self) -> List[Tuple[str, set]]:
        sets = []
        heldout = self.root / HELDOUT_NLU
        if heldout.exists():
            sets.append((f"held-out test set ({HELDOUT_NLU})",
                         {normalise(text) for text, _, _ in self._parsed(heldout).examples}))
        for relative, label in ((HELDOUT_OUT_OF_SCOPE, "held-out out-of-scope test set"),
                                (CALIBRATION_OUT_OF_SCOPE, "fallback calibration set")):
            path = self.root / relative
            if path.exists():
                from nlu.evaluation import read_lines

                sets.append((f"{label} ({relative})", {normalise(line) for line in read_lines(path)}))
        return sets

    def _reviewed_files(self) -> List[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(path for path in self.folder.iterdir()
                      if path.suffix in (".yml", ".yaml") and not path.name.startswith("."))

    def _nlu_files(self) -> List[Path]:
        """Every NLU file Rasa would train on under data/ (its own filter: ``is_nlu_file``)."""
        from rasa.shared.data import get_data_files

        if not self.data_dir.is_dir():
            return []
        return sorted(Path(path).resolve() for path in get_data_files([str(self.data_dir)], self._is_nlu_file))

    def _is_nlu_file(self, path: str) -> bool:
        """Rasa's ``is_nlu_file`` (it parses the file to tell), remembered until the file changes."""
        from rasa.shared.data import is_nlu_file

        stat = os.stat(path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._cache_lock:
            known = self._kinds.get(path)
        if known is not None and known[0] == stamp:
            return known[1]
        answer = bool(is_nlu_file(path))
        with self._cache_lock:
            self._kinds[path] = (stamp, answer)
        return answer

    def _training_examples(self, include_reviewed: bool) -> List[Tuple[str, str, Tuple[Dict[str, Any], ...]]]:
        found = []
        for path in self._nlu_files():
            if not include_reviewed and self.folder in path.parents:
                continue
            found.extend(self._parsed(path).examples)
        return found

    def _training_index(self) -> List[Tuple[str, str, Path]]:
        """(normalised text, intent, file) of every training example outside the reviewed folder."""
        index = []
        for path in self._nlu_files():
            if self.folder in path.parents:
                continue
            index.extend((normalise(text), intent, path) for text, intent, _ in self._parsed(path).examples)
        return index

    def _parsed(self, path: Path) -> _Parsed:
        """The file's intent examples as Rasa's reader sees them (cached until the file changes)."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return _Parsed((0, 0), [])
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._cache_lock:
            cached = self._cache.get(path)
        if cached is not None and cached.stamp == stamp:
            return cached
        with self._parse_lock:  # one thread parses, the others then find it cached
            with self._cache_lock:
                cached = self._cache.get(path)
            if cached is not None and cached.stamp == stamp:
                return cached
            try:
                examples = _load_examples(path)
            except Exception as error:  # Rasa raises YAML, schema and value errors
                raise ReviewRefused("broken_data", f"{self._relative(path)} does not parse: {error}") from error
            parsed = _Parsed(stamp, examples)
            with self._cache_lock:
                self._cache[path] = parsed
        return parsed

    def _file_of(self, intent: str) -> Path:
        if not _INTENT_NAME_RE.fullmatch(intent):  # the domain's names; a file name must stay inside
            raise ReviewRefused("unknown_intent", f"'{intent}' cannot be a file name")
        return self.folder / f"{intent}.yml"

    def _relative(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)

    # --- atomic, serialised, proved writes --------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One write at a time, from reading the data to replacing the file (``review.files``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with folder_lock(self.folder):
            yield

    def _replace(self, path: Path, intent: str, examples: List[Tuple[str, str, Tuple[Dict[str, Any], ...]]]) -> None:
        others = sorted({example_intent for _, example_intent, _ in examples if example_intent != intent})
        if others:  # a hand edit put another intent in this intent's file: rewriting would relabel it
            raise ReviewRefused("broken_data", f"{self._relative(path)} also holds examples of "
                                               f"{', '.join(others)}; move them to their own file by hand")
        text = render(intent, examples)
        expected = [(t, intent, tuple(_entity_key(e) for e in entities)) for t, _, entities in examples]
        # parsed in memory first: a text the reader would misread never reaches the folder
        try:
            from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader

            in_memory = _examples_of(RasaYAMLReader().reads(text))
        except Exception as error:
            raise ReviewRefused("invalid", f"the example would not parse as Rasa NLU data: {error}") from error
        if _comparable(in_memory) != expected:
            raise ReviewRefused("invalid", "the example would not read back as written (unusual characters?)")
        old = path.read_bytes() if path.exists() else None
        write_atomic(path, text)
        try:
            reread = _load_examples(path)
            if _comparable(reread) != expected:
                raise ValueError("the written file holds other examples than intended")
        except Exception as error:
            if old is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                write_atomic(path, old.decode("utf-8"))
            raise ReviewRefused("invalid", f"the written file did not load back ({error}); it was restored") from error

    def _delete(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fsync_directory(path.parent)


def render(intent: str, examples: Sequence[Tuple[str, str, Sequence[Mapping[str, Any]]]]) -> str:
    """The file of ``intent``'s examples: Rasa 3 NLU YAML, entities inline (``[value](entity)``)."""
    from rasa.shared.nlu.training_data.formats.readerwriter import TrainingDataWriter

    lines = [HEADER.rstrip("\n"), 'version: "3.1"', "nlu:", f"- intent: {intent}", "  examples: |"]
    for text, _, entities in examples:
        annotated = TrainingDataWriter.generate_message({"text": text, "entities": [dict(e) for e in entities]})
        lines.append(f"    - {annotated}")
    return "\n".join(lines) + "\n"


def _load_examples(path: Path) -> List[Tuple[str, str, Tuple[Dict[str, Any], ...]]]:
    from rasa.shared.nlu.training_data.loading import load_data

    return _examples_of(load_data(str(path)))


def _examples_of(data: Any) -> List[Tuple[str, str, Tuple[Dict[str, Any], ...]]]:
    return [
        (
            message.get("text"),
            message.get("intent"),
            tuple(
                {"entity": e["entity"], "value": e.get("value"), "start": e.get("start"), "end": e.get("end")}
                for e in message.get("entities") or ()
            ),
        )
        for message in data.intent_examples
    ]


def _entity_key(entity: Mapping[str, Any]) -> Tuple[Any, ...]:
    return (entity.get("entity"), str(entity.get("value")), entity.get("start"), entity.get("end"))


def _comparable(examples: Sequence[Tuple[str, str, Sequence[Mapping[str, Any]]]]) -> List[Tuple[Any, ...]]:
    return [(text, intent, tuple(_entity_key(e) for e in entities)) for text, intent, entities in examples]


__all__ = ["ReviewedData", "ReviewedExample", "ReviewRefused", "MAX_TEXT_CHARS", "normalise", "render"]
