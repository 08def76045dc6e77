"""Lookup-table entities matched on lemmas, so inflected forms map to the canonical name."""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Text, Tuple

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import (
    ENTITIES,
    ENTITY_ATTRIBUTE_END,
    ENTITY_ATTRIBUTE_START,
    ENTITY_ATTRIBUTE_TYPE,
    ENTITY_ATTRIBUTE_VALUE,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu.spacy_lemmatizer import is_common_word, lemma_candidates, lemmatize_word

logger = logging.getLogger(__name__)

_WORD_RE = re.compile(r"[0-9A-Za-zА-Яа-яЁё]+(?:'[A-Za-z]+)?")
# Before a brand that is also an ordinary word («Лента», «Магнит», «Подружка»), one of these
# lemmas (or a capital letter) is required: «в Ленте», «сертификат Магнит», but not «подружке».
_BRAND_CONTEXT_LEMMAS = frozenset({"в", "во", "из", "на", "магазин", "бренд", "от", "in", "at"})


@dataclass(frozen=True)
class _Word:
    text: str
    lemma: str
    start: int
    end: int

    @property
    def lemmas(self) -> frozenset:
        return lemma_candidates(self.text) | {self.text.lower().replace("ё", "е")}


def _words(text: str) -> List[_Word]:
    return [
        _Word(match.group(0), lemmatize_word(match.group(0)), match.start(), match.end())
        for match in _WORD_RE.finditer(text)
    ]


def _alias_key(alias: str) -> Tuple[str, ...]:
    return tuple(word.lemma for word in _words(alias))


def _edit_distance_at_most_one(left: str, right: str) -> bool:
    """Damerau-Levenshtein distance <= 1 (one typo: insert, delete, replace or swap)."""
    if left == right:
        return True
    if abs(len(left) - len(right)) > 1:
        return False
    if len(left) == len(right):
        diffs = [i for i, (a, b) in enumerate(zip(left, right)) if a != b]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and left[diffs[0]] == right[diffs[1]]
            and left[diffs[1]] == right[diffs[0]]
        )
    shorter, longer = sorted((left, right), key=len)
    for i in range(len(longer)):
        if longer[:i] + longer[i + 1 :] == shorter:
            return True
    return False


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR, is_trainable=True
)
class LemmaLookupEntityExtractor(GraphComponent, EntityExtractorMixin):
    """Matches the training data's lookup tables (and their synonyms) on pymorphy3 lemmas.

    Designers list canonical names in ``lookup: brand`` and spellings in ``synonym:`` blocks;
    «в Спортмастере», «спортмастера», «sportmaster» and «спортмастр» (one typo) all yield
    ``brand = Спортмастер``. Only lookups named in ``entities`` are used.
    """

    ALIASES_FILE = "aliases.json"
    # Bump when what persist() writes changes, so `rasa train` retrains old models.
    FORMAT_VERSION = "2"

    @classmethod
    def fingerprint_addon(cls, config: Dict[Text, Any]) -> Optional[Text]:
        return f"{cls.__name__}-format-{cls.FORMAT_VERSION}"

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            # Lookup tables (by name) that become entities of the same name.
            "entities": ["brand"],
            # Single-word aliases at least this long also match with one typo.
            "fuzzy_min_length": 6,
        }

    def __init__(
        self,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        aliases: Optional[Dict[Text, Dict[Text, Text]]] = None,
        confirmed_words: Optional[Sequence[Text]] = None,
    ) -> None:
        self._config = {**self.get_default_config(), **config}
        self._model_storage = model_storage
        self._resource = resource
        # entity -> alias text -> canonical value
        self._aliases: Dict[Text, Dict[Text, Text]] = aliases or {}
        # Dictionary words that the training data shows are used as names here (annotated far
        # more often than not): they match without the context an ordinary word needs.
        self._confirmed_words = set(confirmed_words or [])
        # first lemma of an alias -> [(all its lemmas, entity, canonical value, ambiguous)]
        self._index: Dict[str, List[Tuple[Tuple[str, ...], str, str, bool]]] = {}
        self._fuzzy_by_length: Dict[int, List[Tuple[str, str, str, bool]]] = {}
        self._fuzzy_cache: Dict[str, Optional[Tuple[str, str, bool]]] = {}
        self._max_words = 1
        self._build_index()

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> LemmaLookupEntityExtractor:
        return cls(config, model_storage, resource)

    def _build_index(self) -> None:
        self._index.clear()
        self._fuzzy_by_length.clear()
        self._fuzzy_cache.clear()
        for entity, aliases in self._aliases.items():
            for alias, canonical in aliases.items():
                key = _alias_key(alias)
                if not key:
                    continue
                ambiguous = len(key) == 1 and key[0] not in self._confirmed_words and is_common_word(key[0])
                entries = self._index.setdefault(key[0], [])
                if all(existing[0] != key for existing in entries):
                    entries.append((key, entity, canonical, ambiguous))
                self._max_words = max(self._max_words, len(key))
                compact = "".join(word.text.lower() for word in _words(alias)).replace("ё", "е")
                if len(key) == 1 and len(compact) >= self._config["fuzzy_min_length"]:
                    self._fuzzy_by_length.setdefault(len(compact), []).append(
                        (compact, entity, canonical, ambiguous)
                    )

    def train(self, training_data: TrainingData) -> Resource:
        aliases: Dict[Text, Dict[Text, Text]] = {}
        for table in training_data.lookup_tables:
            if table.get("name") not in self._config["entities"]:
                continue
            canonical_names = {str(element) for element in table.get("elements", [])}
            entity_aliases = {name: name for name in canonical_names}
            for surface, canonical in training_data.entity_synonyms.items():
                if canonical in canonical_names:
                    entity_aliases[surface] = canonical
            aliases[table["name"]] = entity_aliases
        missing = set(self._config["entities"]) - set(aliases)
        if missing:
            logger.warning(f"LemmaLookupEntityExtractor: no lookup table for {sorted(missing)}.")
        self._aliases = aliases
        self._confirmed_words = self._words_used_as_names(training_data)
        self._build_index()
        self.persist()
        return self._resource

    def _words_used_as_names(self, training_data: TrainingData) -> set:
        """Single-word lemmas annotated as one of our entities at least 3 times and at least 3
        times as often as they appear unannotated in the training examples."""
        annotated: Dict[str, int] = {}
        total: Dict[str, int] = {}
        for example in training_data.training_examples:
            text = example.get(TEXT) or ""
            for word in _words(text):
                total[word.lemma] = total.get(word.lemma, 0) + 1
            for entity in example.get(ENTITIES) or []:
                if entity.get(ENTITY_ATTRIBUTE_TYPE) not in self._config["entities"]:
                    continue
                span = _words(text[entity[ENTITY_ATTRIBUTE_START] : entity[ENTITY_ATTRIBUTE_END]])
                if len(span) == 1:
                    annotated[span[0].lemma] = annotated.get(span[0].lemma, 0) + 1
        return {
            lemma
            for lemma, count in annotated.items()
            if count >= 3 and count >= 3 * (total.get(lemma, 0) - count)
        }

    def persist(self) -> None:
        with self._model_storage.write_to(self._resource) as directory:
            (directory / self.ALIASES_FILE).write_text(
                json.dumps(
                    {"aliases": self._aliases, "confirmed_words": sorted(self._confirmed_words)},
                    ensure_ascii=False,
                ),
                encoding="utf-8",
            )

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> LemmaLookupEntityExtractor:
        try:
            with model_storage.read_from(resource) as directory:
                stored = json.loads((directory / cls.ALIASES_FILE).read_text(encoding="utf-8"))
        except (ValueError, FileNotFoundError, KeyError):
            logger.warning("LemmaLookupEntityExtractor: no trained aliases found, extracting nothing.")
            stored = {}
        return cls(
            config, model_storage, resource, stored.get("aliases"), stored.get("confirmed_words")
        )

    def _fuzzy_match(self, word: _Word) -> Optional[Tuple[str, str, bool]]:
        surface = word.text.lower().replace("ё", "е")
        if len(surface) < self._config["fuzzy_min_length"] - 1:
            return None
        if surface not in self._fuzzy_cache:
            if len(self._fuzzy_cache) > 50_000:
                self._fuzzy_cache.clear()
            self._fuzzy_cache[surface] = self._closest_alias(surface, word.lemma)
        return self._fuzzy_cache[surface]

    def _closest_alias(self, surface: str, lemma: str) -> Optional[Tuple[str, str, bool]]:
        # Also try without a short inflection ending («спортмастре» ← «спортмастере»).
        forms = {surface, lemma} | {surface[:-cut] for cut in (1, 2) if len(surface) - cut >= 5}
        for form in forms:
            for length in (len(form) - 1, len(form), len(form) + 1):
                for alias, entity, canonical, ambiguous in self._fuzzy_by_length.get(length, ()):
                    if _edit_distance_at_most_one(form, alias):
                        return entity, canonical, ambiguous
        return None

    def extract(self, text: str) -> List[Dict[Text, Any]]:
        words = _words(text)
        found: List[Dict[Text, Any]] = []
        position = 0
        while position < len(words):
            match = self._longest_match(words, position)
            if match is None:
                position += 1
                continue
            length, entity, canonical = match
            first, last = words[position], words[position + length - 1]
            found.append(
                {
                    ENTITY_ATTRIBUTE_TYPE: entity,
                    ENTITY_ATTRIBUTE_VALUE: canonical,
                    ENTITY_ATTRIBUTE_START: first.start,
                    ENTITY_ATTRIBUTE_END: last.end,
                    "confidence_entity": 1.0,
                }
            )
            position += length
        return found

    def _longest_match(self, words: Sequence[_Word], position: int) -> Optional[Tuple[int, str, str]]:
        candidates = [
            entry for lemma in words[position].lemmas for entry in self._index.get(lemma, [])
        ]
        for key, entity, canonical, ambiguous in sorted(candidates, key=lambda entry: -len(entry[0])):
            window = words[position : position + len(key)]
            if len(window) < len(key) or any(lemma not in word.lemmas for lemma, word in zip(key, window)):
                continue
            if ambiguous and not self._has_brand_context(words, position):
                continue
            return len(key), entity, canonical
        if self._fuzzy_by_length:
            fuzzy = self._fuzzy_match(words[position])
            if fuzzy is not None and (not fuzzy[2] or self._has_brand_context(words, position)):
                return 1, fuzzy[0], fuzzy[1]
        return None

    @staticmethod
    def _has_brand_context(words: Sequence[_Word], position: int) -> bool:
        word = words[position]
        if word.text[:1].isupper() and position > 0:
            return True
        return position > 0 and words[position - 1].lemma in _BRAND_CONTEXT_LEMMAS

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = message.get(TEXT)
            if not text or not self._index:
                continue
            found = self.extract(str(text))
            if found:
                found = self.add_extractor_name(found)
                message.set(ENTITIES, message.get(ENTITIES, []) + found, add_to_output=True)
        return messages
