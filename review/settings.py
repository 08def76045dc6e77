"""Settings of the review loop, read from the environment (one frozen object).

================================ =====================================================================
``REVIEW_TRAINER_TOKEN``         the trainers' token for the console's ``/review`` page and ``/api/review``
                                 (``dev-trainer-token``; production mode refuses it)
``EVENTS_DATABASE_URL``          the event stream the misses are read from (endpoints.yml's ``events.db``)
``HANDOFF_DATABASE_URL``         copilot drafts and the hand-over core (the operators' edits)
``REVIEW_DATABASE_URL``          the trainers' decisions (default: the hand-over database)
``REVIEW_LOW_CONFIDENCE``        an intent below this confidence is a miss (0.5)
``REVIEW_AMBIGUOUS_MARGIN``      the two best intents closer than this are a miss (0.1)
``REVIEW_EDITED_DISTANCE``       a copilot draft sent with at least this many characters changed is a miss (20)
``REVIEW_CLUSTER_SIMILARITY``    sentence-encoder cosine at which two wordings are the same question (0.8)
``REVIEW_KB_DIR``                the knowledge-base articles the editor writes (the RAG service's ``kb_dir``)
``REVIEW_PROJECT_ROOT``          the project whose ``data/nlu/reviewed/`` receives examples (this checkout)
================================ =====================================================================
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from engine.env import env_float, env_int, env_raw
from engine.settings import PROJECT_ROOT

DEFAULT_TRAINER_TOKEN = "dev-trainer-token"


@dataclass(frozen=True)
class ReviewSettings:
    events_database_url: str
    handoff_database_url: str
    review_database_url: str
    trainer_token: str = DEFAULT_TRAINER_TOKEN
    low_confidence: float = 0.5
    ambiguous_margin: float = 0.1
    edited_distance: int = 20
    cluster_similarity: float = 0.8
    kb_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "data" / "kb")
    project_root: Path = PROJECT_ROOT

    def __post_init__(self) -> None:
        if not self.trainer_token.strip():
            raise ValueError("REVIEW_TRAINER_TOKEN must not be empty")
        for name in ("low_confidence", "ambiguous_margin", "cluster_similarity"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"REVIEW_{name.upper()} must be within 0..1")
        if self.edited_distance < 1:
            raise ValueError("REVIEW_EDITED_DISTANCE must be >= 1")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "ReviewSettings":
        env = os.environ if environ is None else environ
        from analytics.settings import AnalyticsSettings

        analytics = AnalyticsSettings.from_env(env)
        root = Path(env_raw(env, "REVIEW_PROJECT_ROOT") or PROJECT_ROOT).expanduser().resolve()
        kb_dir = env_raw(env, "REVIEW_KB_DIR")
        if not kb_dir and root == PROJECT_ROOT:  # the folder the knowledge service answers from
            from rag.settings import RagSettings

            kb_dir = str(RagSettings.load(environ=env).kb_dir)
        return cls(
            events_database_url=analytics.events_database_url,
            handoff_database_url=analytics.handoff_database_url,
            review_database_url=env_raw(env, "REVIEW_DATABASE_URL") or analytics.handoff_database_url,
            trainer_token=env_raw(env, "REVIEW_TRAINER_TOKEN") or DEFAULT_TRAINER_TOKEN,
            low_confidence=env_float(env, "REVIEW_LOW_CONFIDENCE", cls.low_confidence),
            ambiguous_margin=env_float(env, "REVIEW_AMBIGUOUS_MARGIN", cls.ambiguous_margin),
            edited_distance=env_int(env, "REVIEW_EDITED_DISTANCE", cls.edited_distance),
            cluster_similarity=env_float(env, "REVIEW_CLUSTER_SIMILARITY", cls.cluster_similarity),
            kb_dir=Path(kb_dir).expanduser().resolve() if kb_dir else root / "data" / "kb",
            project_root=root,
        )
