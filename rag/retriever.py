"""Retrieval of chunks (sparse, dense or hybrid) and their aggregation to articles.

Besides the ranking, a retrieval carries a *confidence* that the best article answers the query.
Fused (RRF) scores only encode ranks, which say nothing about whether the top hit is relevant at
all, so the confidence is computed from raw evidence of the best article's retrieved chunks:

Articles are ranked by their best chunk; in hybrid mode the fused scores of an article's other
retrieved chunks are added at ``article_rest_weight`` (0.5), since RRF scores are additive.

* ``dense`` — the cosine similarity of the query and the chunk embeddings (from the returned
  vectors, exactly what Qdrant scored);
* ``coverage`` — the IDF-weighted share of the query's content lemmas that occur in the chunk
  (a query word that the knowledge base never uses — «кроссовки» — weighs the most, so
  off-topic questions that happen to share common words score low).

``confidence = (1 - sparse_weight) * dense + sparse_weight * coverage`` (each the best over the
article's chunks); in ``sparse`` mode, where no dense vector is computed, it is the coverage.
``sparse_weight`` and the thresholds on the confidence are calibrated (``python -m rag calibrate``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from rag.dense import DenseEncoder
from rag.index import QdrantIndex, ScoredChunk
from rag.sparse import SparseEncoder, SparseVector, bm25_idf

MODES = ("sparse", "dense", "hybrid")


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk."""

    chunk_id: str
    article_id: str
    title: str
    heading: str
    text: str
    #: the score of the mode's ranking (RRF in hybrid, cosine in dense, BM25 in sparse)
    score: float
    position: int = 0
    #: cosine similarity with the query (None in sparse mode)
    dense_score: Optional[float] = None
    #: BM25 score of the chunk for the query
    sparse_score: float = 0.0
    #: IDF-weighted share of the query terms found in the chunk, 0..1
    coverage: float = 0.0
    #: "body" (article text) or "question" (a question alias: helps ranking, never the answer)
    kind: str = "body"


@dataclass(frozen=True)
class ArticleHit:
    """An article with its best chunk (the first in the ranking) and all its retrieved chunks."""

    article_id: str
    title: str
    score: float
    best: Hit
    hits: Tuple[Hit, ...] = field(default=())

    @property
    def dense_score(self) -> Optional[float]:
        scores = [hit.dense_score for hit in self.hits if hit.dense_score is not None]
        return max(scores) if scores else None

    @property
    def coverage(self) -> float:
        return max((hit.coverage for hit in self.hits), default=0.0)


@dataclass(frozen=True)
class Retrieval:
    query: str
    mode: str
    hits: Tuple[Hit, ...]
    articles: Tuple[ArticleHit, ...]
    #: confidence that the top article answers the query (see the module doc), 0 when nothing found
    confidence: float
    seconds: float

    @property
    def top(self) -> Optional[ArticleHit]:
        return self.articles[0] if self.articles else None

    def article_ids(self) -> List[str]:
        return [article.article_id for article in self.articles]


def confidence_of(article: Optional[ArticleHit], sparse_weight: float) -> float:
    if article is None:
        return 0.0
    dense = article.dense_score
    if dense is None:
        return float(article.coverage)
    return float((1.0 - sparse_weight) * dense + sparse_weight * article.coverage)


def group_by_article(hits: Sequence[Hit], rest_weight: float = 0.0) -> List[ArticleHit]:
    """Articles of ``hits`` (in ranking order), each with its best chunk and all its chunks.

    An article's score is its best chunk's score plus ``rest_weight`` times the scores of its
    other retrieved chunks; articles are ordered by that score (ties: first retrieved first).
    """
    order: List[str] = []
    grouped: Dict[str, List[Hit]] = {}
    for hit in hits:
        if hit.article_id not in grouped:
            order.append(hit.article_id)
            grouped[hit.article_id] = []
        grouped[hit.article_id].append(hit)
    articles = [
        ArticleHit(
            article_id=aid, title=grouped[aid][0].title,
            score=grouped[aid][0].score + rest_weight * sum(h.score for h in grouped[aid][1:]),
            best=grouped[aid][0], hits=tuple(grouped[aid]),
        )
        for aid in order
    ]
    if rest_weight:
        articles.sort(key=lambda article: -article.score)  # stable: ties keep the retrieval order
    return articles


class Retriever:
    def __init__(
        self,
        index: QdrantIndex,
        sparse: SparseEncoder,
        dense: Optional[DenseEncoder] = None,
        mode: str = "hybrid",
        top_k: int = 10,
        prefetch_limit: int = 30,
        sparse_weight: float = 0.3,
        article_rest_weight: float = 0.5,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode != "sparse" and dense is None:
            raise ValueError(f"mode '{mode}' needs a dense encoder")
        self.index = index
        self.sparse = sparse
        self.dense = dense
        self.mode = mode
        self.top_k = int(top_k)
        self.prefetch_limit = int(prefetch_limit)
        self.sparse_weight = float(sparse_weight)
        # hybrid only: fused (RRF) scores add up, so an article matched by several chunks ranks
        # higher; cosine and BM25 scores of one article's chunks are not independent evidence
        self.article_rest_weight = float(article_rest_weight)

    def retrieve(self, query: str, mode: Optional[str] = None, limit: Optional[int] = None) -> Retrieval:
        mode = mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        limit = int(limit or self.top_k)
        started = time.perf_counter()
        sparse_query = self.sparse.encode_query(query)
        dense_query: Optional[np.ndarray] = None
        if mode != "sparse":
            if self.dense is None:
                raise ValueError(f"mode '{mode}' needs a dense encoder")
            dense_query = self.dense.encode_query(query)
        if mode == "sparse":
            scored = self.index.search_sparse(sparse_query, limit=limit, with_vectors=True)
        elif mode == "dense":
            scored = self.index.search_dense(dense_query, limit=limit, with_vectors=True)
        else:
            scored = self.index.search_hybrid(
                dense_query, sparse_query, limit=limit, prefetch_limit=max(self.prefetch_limit, limit),
                with_vectors=True,
            )
        hits = self._hits(scored, dense_query, sparse_query)
        articles = tuple(group_by_article(hits, self.article_rest_weight if mode == "hybrid" else 0.0))
        confidence = confidence_of(articles[0] if articles else None, self.sparse_weight)
        return Retrieval(query, mode, tuple(hits), articles, confidence, time.perf_counter() - started)

    def article_lead(self, article_id: str) -> Optional[Hit]:
        """The first body chunk (the lead) of ``article_id`` from the index, None when missing.

        Used when an article was retrieved only through its question aliases, which are never
        shown as an answer."""
        from rag.documents import Chunk

        chunk_id = Chunk(article_id, "", "", "", 0).id
        for stored in self.index.get([chunk_id]):
            payload = stored.payload
            return Hit(
                chunk_id=stored.id, article_id=str(payload.get("article_id", "")),
                title=str(payload.get("title", "")), heading=str(payload.get("heading", "")),
                text=str(payload.get("text", "")), score=0.0, position=int(payload.get("position", 0) or 0),
                kind=str(payload.get("kind") or "body"),
            )
        return None

    def _hits(
        self, scored: Sequence[ScoredChunk], dense_query: Optional[np.ndarray], sparse_query: SparseVector
    ) -> List[Hit]:
        frequencies, documents = self.index.document_frequencies()
        idf = {term: bm25_idf(frequencies.get(term, 0), max(documents, 1)) for term in sparse_query.indices}
        total_idf = sum(idf.values())
        hits = []
        for chunk in scored:
            payload = chunk.payload
            dense_score = None
            if dense_query is not None and payload.get("kind") == "question":
                # an alias is matched lexically; its cosine is no evidence the article answers
                dense_score = 0.0
            elif dense_query is not None and chunk.dense is not None:
                dense_score = float(np.dot(dense_query, chunk.dense) / max(np.linalg.norm(chunk.dense), 1e-12))
            doc = chunk.sparse.as_dict() if chunk.sparse is not None else {}
            matched = [term for term in sparse_query.indices if term in doc]
            bm25 = sum(idf[term] * doc[term] for term in matched)
            coverage = sum(idf[term] for term in matched) / total_idf if total_idf > 0 else 0.0
            hits.append(
                Hit(
                    chunk_id=chunk.id,
                    article_id=str(payload.get("article_id", "")),
                    title=str(payload.get("title", "")),
                    heading=str(payload.get("heading", "")),
                    text=str(payload.get("text", "")),
                    score=chunk.score,
                    position=int(payload.get("position", 0) or 0),
                    dense_score=dense_score,
                    sparse_score=float(bm25),
                    coverage=float(coverage),
                    kind=str(payload.get("kind") or "body"),
                )
            )
        return hits
