"""``KnowledgeService``: question in, decision and reply out (what a Rasa action calls).

One instance is built once (``KnowledgeService.from_settings()``) and reused for every turn. It
loads nothing until the first question (or ``warm_up()``): then it opens the index, loads the
query encoder and, with ``sync_on_start``, brings the index up to date with the KB folder
(incremental; nothing is embedded when nothing changed).

With ``sync_on_start`` the service then *follows* the folder: before a question, at most every
``kb_check_seconds``, it compares a fingerprint of the folder (``kb_fingerprint``: names, mtimes
and sizes of the ``*.md`` files — one ``stat`` each, nothing read) with the one of the last sync,
and on a difference re-ingests incrementally in this process, so an edited, added or removed
article is answered from within seconds, in every process that holds an index, without a
restart. The thread that notices the change syncs (then answers); the other threads keep
answering from the index as it is, and one sync runs at a time. A broken article
(``KnowledgeBaseError``) is logged and the index keeps its previous content until the files change
again (the articles are all read before the index is touched, so nothing is half-applied).

A turn:

1. personal data in the question is masked (``rag.privacy``); only the masked text is used from
   here on — for retrieval, prompts and logs;
2. the retriever ranks chunks and computes a *confidence* for the best article;
3. ``confidence >= thresholds.answer`` → ``answered``: the configured answerer writes the reply;
   a generated reply must pass the grounding check, otherwise (or on any generator error) the
   extractive reply is returned; ``thresholds.clarify <= confidence < thresholds.answer`` →
   ``clarify`` with a question naming the closest article(s); below → ``no_answer``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from rag.answerers.base import Answer, Answerer, AnswererError
from rag.answerers.extractive import ExtractiveAnswerer
from rag.documents import KnowledgeBaseError, is_question_chunk
from rag.grounding import GroundingChecker, GroundingReport
from rag.privacy import PiiMasker
from rag.retriever import ArticleHit, Hit, Retrieval, Retriever
from rag.settings import RagSettings

logger = logging.getLogger(__name__)

ANSWERED = "answered"
CLARIFY = "clarify"
NO_ANSWER = "no_answer"
NO_ANSWER_TEXT = "К сожалению, в базе знаний нет ответа на этот вопрос."


@dataclass(frozen=True)
class Thresholds:
    answer: float
    clarify: float

    def __post_init__(self) -> None:
        if self.clarify > self.answer:
            raise ValueError("the clarify threshold must not exceed the answer threshold")

    def decide(self, confidence: float) -> str:
        if confidence >= self.answer:
            return ANSWERED
        if confidence >= self.clarify:
            return CLARIFY
        return NO_ANSWER


@dataclass(frozen=True)
class RagResult:
    #: "answered" | "clarify" | "no_answer"
    status: str
    #: the reply for the customer (a clarifying question for "clarify", a stock phrase for "no_answer")
    text: str
    #: title and id of the article the reply comes from (the closest one for "clarify"; None when nothing matched)
    source_title: Optional[str]
    article_id: Optional[str]
    #: the retrieval confidence the decision was made on (compare with the calibrated thresholds)
    score: float
    #: retrieved chunks, best first
    passages: Tuple[Hit, ...] = field(default=(), repr=False)
    #: answerer that produced ``text``: "extractive" | "hf-local" | "openai"; None unless answered
    answerer: Optional[str] = None
    #: True when ``text`` is supported by the passages (always for extractive replies)
    grounded: bool = False
    #: titles of the closest articles (what a clarifying question names)
    candidates: Tuple[str, ...] = ()
    #: why a generated reply was replaced by the extractive one ("" when it was not)
    fallback_reason: str = ""
    #: the question as used (personal data masked)
    masked_question: str = ""
    seconds: float = 0.0
    #: ids of the articles of ``candidates``, same order (what a clarifying question offers to pick)
    candidate_ids: Tuple[str, ...] = ()

    def as_dict(self) -> Dict[str, Any]:
        """JSON-friendly form (passages reduced to article id, heading and score)."""
        data = asdict(self)
        data["passages"] = [
            {"article_id": p.article_id, "heading": p.heading, "score": p.score} for p in self.passages
        ]
        data["candidates"] = list(self.candidates)
        return data


def clarify_text(articles: Sequence[ArticleHit]) -> str:
    titles = [article.title for article in articles[:2]]
    if len(titles) == 2:
        return f"Уточните, пожалуйста: вы про «{titles[0]}» или про «{titles[1]}»?"
    return f"Уточните, пожалуйста: вы про «{titles[0]}»?"


#: (file name, mtime in ns, size) of every article file, sorted by name
KbFingerprint = Tuple[Tuple[str, int, int], ...]


def kb_fingerprint(kb_dir: Path) -> KbFingerprint:
    """The state of the ``*.md`` files of ``kb_dir`` as the file system reports it (``()`` when
    the folder is missing). One ``stat`` per file and no reading, so it is cheap enough to take
    before a question; ingest compares the contents, so a touched but unchanged file costs no
    embedding."""
    try:
        entries = list(os.scandir(kb_dir))
    except OSError:  # missing or unreadable: a state like any other (ingest reports the error)
        return ()
    files = []
    for entry in entries:
        if not entry.name.endswith(".md"):  # the files load_articles reads (editors' temp files are not)
            continue
        try:
            if not entry.is_file():
                continue
            stat = entry.stat()
        except OSError:  # removed between the listing and the stat: the next check sees it gone
            continue
        files.append((entry.name, stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(files))


def build_answerer(settings: RagSettings) -> Answerer:
    if settings.answerer == "hf-local":
        from rag.answerers.huggingface import HuggingFaceAnswerer

        return HuggingFaceAnswerer(settings.hf_model_path or "", max_new_tokens=settings.hf_max_new_tokens)
    if settings.answerer == "openai":
        from rag.answerers.openai_compatible import OpenAICompatibleAnswerer

        return OpenAICompatibleAnswerer(
            base_url=settings.openai_base_url or "",
            model=settings.openai_model,
            api_key_env=settings.openai_api_key_env,
            timeout_seconds=settings.openai_timeout_seconds,
            max_tokens=settings.max_answer_tokens,
        )
    return ExtractiveAnswerer(max_chars=settings.extractive_max_chars)


class KnowledgeService:
    """Build once, call ``answer(question)`` per turn; thread-safe."""

    def __init__(
        self,
        settings: Optional[RagSettings] = None,
        *,
        retriever: Optional[Retriever] = None,
        answerer: Optional[Answerer] = None,
        grounding: Optional[GroundingChecker] = None,
        masker: Optional[PiiMasker] = None,
        thresholds: Optional[Thresholds] = None,
    ) -> None:
        """Pieces that are not given are built from ``settings`` on first use."""
        self.settings = settings or RagSettings.load()
        self.thresholds = thresholds or Thresholds(self.settings.answer_threshold, self.settings.clarify_threshold)
        self._retriever = retriever
        self._answerer = answerer
        self._extractive = ExtractiveAnswerer(max_chars=self.settings.extractive_max_chars)
        self._grounding = grounding or GroundingChecker(min_overlap=self.settings.grounding_min_overlap)
        self._masker = masker
        self._index = None
        self._dense = None
        self._sparse = None
        self._lock = threading.RLock()
        self.last_sync = None
        # following the KB folder (only when this service ingests it itself, see _build_retriever)
        self._follows_kb = False
        self._sync_lock = threading.Lock()  # one sync at a time; when both are held, taken after _lock
        self._kb_state: Optional[KbFingerprint] = None  # the files as last ingested (or found broken)
        self._kb_checked_at = 0.0  # time.monotonic() of the last look at the folder

    @classmethod
    def from_settings(cls, settings: Optional[RagSettings] = None) -> "KnowledgeService":
        """A service for ``settings`` (default: ``RagSettings.load()``); loads lazily."""
        return cls(settings or RagSettings.load())

    # --- lazy construction --------------------------------------------------------------------

    @property
    def masker(self) -> PiiMasker:
        if self._masker is None:
            self._masker = PiiMasker.from_config(self.settings.nlu_config_path)
        return self._masker

    @property
    def retriever(self) -> Retriever:
        with self._lock:
            if self._retriever is None:
                self._retriever = self._build_retriever()
            return self._retriever

    @property
    def answerer(self) -> Answerer:
        with self._lock:
            if self._answerer is None:
                self._answerer = build_answerer(self.settings)
            return self._answerer

    def _build_retriever(self) -> Retriever:
        from rag.components import build_dense, build_index, build_retriever, build_sparse

        settings = self.settings
        index = build_index(settings)
        dense = build_dense(settings) if settings.mode != "sparse" or settings.sync_on_start else None
        sparse = build_sparse(settings)
        self._index, self._dense, self._sparse = index, dense, sparse
        if settings.sync_on_start:
            with self._sync_lock:
                # taken before the files are read: an edit made during the sync is seen by the next check
                self._kb_state = kb_fingerprint(settings.kb_dir)
                self._kb_checked_at = time.monotonic()
                self._follows_kb = settings.kb_check_seconds > 0
                if settings.kb_dir.is_dir():
                    self._sync_kb()
        if index.count() == 0:
            logger.warning(
                "The knowledge-base index %s is empty: run `python -m rag ingest`.", settings.collection_name
            )
        return build_retriever(settings, index, dense, sparse)

    def _sync_kb(self) -> bool:
        """Incremental ingest of the KB folder into this service's index; False when an article is
        broken (logged; the index is left as it was, since ingest reads every article first)."""
        from rag.ingest import ingest_kb

        settings = self.settings
        try:
            self.last_sync = ingest_kb(
                self._index, settings.kb_dir, self._dense, self._sparse,
                max_chars=settings.max_chunk_chars, min_chars=settings.min_chunk_chars,
            )
        except KnowledgeBaseError as error:
            logger.error(
                "Knowledge base %s not ingested, answering from the index as it was: %s", settings.kb_dir, error
            )
            return False
        return True

    def _follow_kb(self) -> None:
        """Re-ingests the KB folder when its files changed since the last sync (checked at most
        every ``kb_check_seconds``). Never raises: a failed sync leaves the current index serving."""
        interval = self.settings.kb_check_seconds
        if not self._follows_kb or time.monotonic() - self._kb_checked_at < interval:
            return
        # a sync is running: answer from the index as it is rather than wait for it
        if not self._sync_lock.acquire(blocking=False):
            return
        try:
            # closed meanwhile, or another thread has just looked
            if self._index is None or time.monotonic() - self._kb_checked_at < interval:
                return
            state = kb_fingerprint(self.settings.kb_dir)
            self._kb_checked_at = time.monotonic()
            if state == self._kb_state:
                return
            logger.info("Knowledge base files changed in %s: re-ingesting", self.settings.kb_dir)
            try:
                self._sync_kb()
            except Exception:  # the index or the encoder failed: keep serving, retry at the next check
                logger.exception("Knowledge base sync failed; retrying in %.0f s", interval)
                return
            # a broken article too: tried again when the files change again, not at every check
            self._kb_state = state
        finally:
            self._sync_lock.release()

    def _following_retriever(self) -> Retriever:
        """The retriever, after the KB folder was checked for changes."""
        retriever = self.retriever
        self._follow_kb()
        return retriever

    def warm_up(self) -> "KnowledgeService":
        """Loads everything now (index, encoder, a first query) instead of on the first question."""
        self.retriever.retrieve("проверка")
        self.answerer
        return self

    # --- answering ----------------------------------------------------------------------------

    def retrieve(self, question: str) -> Retrieval:
        return self._following_retriever().retrieve(self.masker.mask(question))

    def answer(self, question: str) -> RagResult:
        started = time.perf_counter()
        masked = self.masker.mask(question or "").strip()
        if not masked:
            return RagResult(NO_ANSWER, NO_ANSWER_TEXT, None, None, 0.0, masked_question=masked)
        retrieval = self._following_retriever().retrieve(masked)
        top = retrieval.top
        status = self.thresholds.decide(retrieval.confidence) if top else NO_ANSWER
        candidates = tuple(article.title for article in retrieval.articles[:2])
        if status == ANSWERED:
            result = self._answered(masked, retrieval)
        elif status == CLARIFY:
            result = RagResult(
                CLARIFY, clarify_text(retrieval.articles), top.title, top.article_id, retrieval.confidence,
                retrieval.hits, None, False, candidates, masked_question=masked,
            )
        else:
            result = RagResult(
                NO_ANSWER, NO_ANSWER_TEXT, top.title if top else None, top.article_id if top else None,
                retrieval.confidence, retrieval.hits, None, False, candidates, masked_question=masked,
            )
        result = replace(
            result, seconds=time.perf_counter() - started,
            candidate_ids=tuple(article.article_id for article in retrieval.articles[:2]),
        )
        logger.info(
            "RAG %s (confidence %.3f, article %s, answerer %s, %.0f ms): %s",
            result.status, result.score, result.article_id, result.answerer, result.seconds * 1000, masked,
        )
        return result

    def answer_from(self, question: str, article_id: str) -> RagResult:
        """The answer from ``article_id`` — the article the customer chose after a clarifying
        question about ``question``. No answer when that article is not among the ones retrieved
        for the question (a stale button): nothing is stated that the retrieval did not find."""
        started = time.perf_counter()
        masked = self.masker.mask(question or "").strip()
        retrieval = self._following_retriever().retrieve(masked) if masked else None
        chosen = next((a for a in retrieval.articles if a.article_id == article_id), None) if retrieval else None
        if chosen is None:
            return RagResult(NO_ANSWER, NO_ANSWER_TEXT, None, None, 0.0, masked_question=masked)
        others = tuple(a for a in retrieval.articles if a.article_id != article_id)
        result = self._answered(masked, replace(retrieval, articles=(chosen, *others)))
        return replace(result, seconds=time.perf_counter() - started)

    async def answer_async(self, question: str) -> RagResult:
        """``answer`` in a worker thread, for async callers (the Rasa action server)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.answer, question)

    def _answered(self, masked: str, retrieval: Retrieval) -> RagResult:
        top = retrieval.top
        # the best article's chunks first: the answer comes from the article the decision is about.
        # Question-alias chunks only find articles: replies are built from body chunks, and an
        # article matched through its aliases alone answers with its lead.
        own = tuple(h for h in top.hits if not is_question_chunk(h))
        if not own:
            lead = self.retriever.article_lead(top.article_id)
            own = (lead,) if lead is not None else ()
        passages = own + tuple(
            h for h in retrieval.hits if h.article_id != top.article_id and not is_question_chunk(h)
        )
        extractive = self._extractive.answer(masked, passages)
        answer: Answer = extractive
        fallback_reason = ""
        answerer = self.answerer
        if not isinstance(answerer, ExtractiveAnswerer):
            try:
                generated = answerer.answer(masked, passages)
            except AnswererError as error:
                fallback_reason = f"{answerer.name} failed: {error}"
            else:
                report: GroundingReport = self._grounding.check(generated.text, generated.passages or passages)
                if report.grounded:
                    # every reply ends with its source, whichever answerer wrote it
                    answer = replace(generated, text=self._with_source(generated.text, generated.source_title or top.title))
                else:
                    fallback_reason = f"not grounded: {report.reason}"
            if fallback_reason:
                logger.warning("RAG answerer %s fell back to extractive: %s", answerer.name, fallback_reason)
        return RagResult(
            ANSWERED, answer.text, answer.source_title or top.title, answer.article_id or top.article_id,
            retrieval.confidence, retrieval.hits, answer.answerer, True,
            tuple(article.title for article in retrieval.articles[:2]), fallback_reason, masked,
        )

    def _with_source(self, text: str, title: str) -> str:
        template = self._extractive.source_template
        return f"{text.rstrip()}\n\n{template.format(title=title)}" if template and title else text

    def close(self) -> None:
        """Releases the index this service opened (an injected retriever's index is the caller's)."""
        with self._lock, self._sync_lock:  # after a running sync, which writes to that index
            self._follows_kb = False
            if self._index is not None:
                self._index.close()
                self._index = None
                self._retriever = None
