"""Rule-based extraction of structured entities (order numbers, codes, e-mails, phones, INN)."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import (
    ENTITIES,
    ENTITY_ATTRIBUTE_END,
    ENTITY_ATTRIBUTE_START,
    ENTITY_ATTRIBUTE_TYPE,
    ENTITY_ATTRIBUTE_VALUE,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message

from nlu.entity_patterns import build_finder, find_entities

logger = logging.getLogger(__name__)


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR, is_trainable=False
)
class PatternEntityExtractor(GraphComponent, EntityExtractorMixin):
    """Finds, validates and normalises structured entities with deterministic patterns.

    Patterns beat a statistical tagger here: these entities have exact formats (and checksums),
    and a wrong order number costs more than a missed one. Values are normalised
    (``DRM-7Q2K-AB3C-X9P1``, ``+79161234567``, lower-case e-mail) so actions get clean slots.
    """

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            # entity name -> {kind: digits|code|email|phone_ru|inn_ru, ...kind options}
            # (see nlu.entity_patterns). The defaults are the reference deployment's formats.
            "entities": {
                "order_id": {"kind": "digits", "length": 8},
                "certificate_code": {"kind": "code", "prefix": "DRM", "groups": 3, "group_length": 4},
                "email": {"kind": "email"},
                "phone": {"kind": "phone_ru"},
                "inn": {"kind": "inn_ru"},
            },
        }

    def __init__(self, config: Dict[Text, Any]) -> None:
        self._config = {**self.get_default_config(), **config}
        self._specs: Dict[Text, Dict[Text, Any]] = dict(self._config["entities"] or {})

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> PatternEntityExtractor:
        return cls(config)

    @classmethod
    def validate_config(cls, config: Dict[Text, Any]) -> None:
        for entity, spec in (config.get("entities") or {}).items():
            try:
                build_finder(entity, spec or {})
            except (ValueError, TypeError) as error:
                raise InvalidConfigException(f"PatternEntityExtractor: {error}") from error

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = message.get(TEXT)
            if not text:
                continue
            found = [
                {
                    ENTITY_ATTRIBUTE_TYPE: match.entity,
                    ENTITY_ATTRIBUTE_VALUE: match.value,
                    ENTITY_ATTRIBUTE_START: match.start,
                    ENTITY_ATTRIBUTE_END: match.end,
                    "confidence_entity": 1.0,
                }
                for match in find_entities(str(text), self._specs)
            ]
            if found:
                found = self.add_extractor_name(found)
                message.set(ENTITIES, message.get(ENTITIES, []) + found, add_to_output=True)
        return messages
