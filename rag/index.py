"""The chunk store: one Qdrant collection with a named dense and a named sparse vector.

This is the only module that imports ``qdrant_client``. Three ways to reach Qdrant:

* embedded local mode at a directory (the default, ``.qdrant/`` in the project root; one
  process at a time holds it — Qdrant locks the folder);
* ``:memory:`` (tests);
* a Qdrant server by URL (``RAG_QDRANT_URL``), for several processes or a large knowledge base.

The dense vector ``dense`` uses cosine distance; the sparse vector ``sparse`` carries BM25
saturated term frequencies and gets ``Modifier.IDF``, so Qdrant applies the inverse document
frequency at query time from the collection's own statistics. Hybrid search is one
``query_points`` call: a dense and a sparse prefetch fused by Reciprocal Rank Fusion.
"""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models

from rag.sparse import SparseVector

DENSE = "dense"
SPARSE = "sparse"


# Question-alias chunks (payload kind "question") are matched lexically only: the dense search
# and the dense prefetch of hybrid search leave them out (see rag.documents).
DENSE_FILTER = models.Filter(
    must_not=[models.FieldCondition(key="kind", match=models.MatchValue(value="question"))]
)


class IndexUnavailable(RuntimeError):
    """The index cannot be opened as configured (e.g. the embedded folder is locked)."""


@dataclass(frozen=True)
class IndexedPoint:
    id: str
    dense: np.ndarray
    sparse: SparseVector
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class ScoredChunk:
    id: str
    score: float
    payload: Mapping[str, Any]
    dense: Optional[np.ndarray] = field(default=None, compare=False, repr=False)
    sparse: Optional[SparseVector] = field(default=None, compare=False, repr=False)


class QdrantIndex:
    def __init__(
        self,
        collection: str,
        path: Union[str, Path, None] = None,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        """``path`` — a directory or ``":memory:"`` for the embedded mode; ``url`` — a server."""
        if not collection:
            raise ValueError("collection name must not be empty")
        self.collection = collection
        self._lock = threading.RLock()
        self.location = url or str(path or ":memory:")
        try:
            if url:
                self._client = QdrantClient(url=url, api_key=api_key, timeout=int(max(1, timeout_seconds)))
            elif path is None or str(path) == ":memory:":
                self._client = QdrantClient(location=":memory:")
            else:
                Path(path).mkdir(parents=True, exist_ok=True)
                self._client = QdrantClient(path=str(path))
        except RuntimeError as error:  # "already accessed by another instance"
            raise IndexUnavailable(
                f"Cannot open the Qdrant storage at {self.location}: {error}. The embedded mode allows "
                "one process at a time (stop the action server, or use a Qdrant server via RAG_QDRANT_URL)."
            ) from error
        self._df_cache: Optional[Tuple[Counter, int]] = None
        # Embedded mode: vectors of every chunk kept in this process (one scroll, dropped on any
        # write). Qdrant's local mode fetches the vectors of search hits by a scan per hit, which
        # costs tens of milliseconds; a server returns them cheaply, so nothing is cached there.
        self._embedded = not url
        self._vector_cache: Optional[Dict[str, Tuple[np.ndarray, SparseVector]]] = None

    @classmethod
    def in_memory(cls, collection: str = "kb") -> "QdrantIndex":
        return cls(collection, path=":memory:")

    # --- collection ---------------------------------------------------------------------------

    def collection_exists(self) -> bool:
        with self._lock:
            return bool(self._client.collection_exists(self.collection))

    def dimension(self) -> Optional[int]:
        """Size of the dense vector of the existing collection (None when there is none)."""
        if not self.collection_exists():
            return None
        with self._lock:
            info = self._client.get_collection(self.collection)
        vectors = info.config.params.vectors
        if isinstance(vectors, dict) and DENSE in vectors:
            return int(vectors[DENSE].size)
        return None

    def ensure_collection(self, dimension: int, recreate: bool = False) -> bool:
        """Creates the collection if needed (or if ``recreate`` / the dimension changed); True if created."""
        existing = self.dimension()
        with self._lock:
            if existing is not None and not recreate and existing == int(dimension):
                return False
            if self._client.collection_exists(self.collection):
                self._client.delete_collection(self.collection)
            self._client.create_collection(
                self.collection,
                vectors_config={DENSE: models.VectorParams(size=int(dimension), distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )
            self._invalidate()
            return True

    def count(self) -> int:
        if not self.collection_exists():
            return 0
        with self._lock:
            return int(self._client.count(self.collection, exact=True).count)

    # --- writing ------------------------------------------------------------------------------

    def existing_hashes(self) -> Dict[str, str]:
        """``{chunk id: content hash}`` of every stored chunk."""
        if not self.collection_exists():
            return {}
        hashes: Dict[str, str] = {}
        offset = None
        with self._lock:
            while True:
                points, offset = self._client.scroll(
                    self.collection, limit=256, offset=offset, with_payload=["hash"], with_vectors=False
                )
                for point in points:
                    hashes[str(point.id)] = str((point.payload or {}).get("hash", ""))
                if offset is None:
                    break
        return hashes

    def upsert(self, points: Sequence[IndexedPoint], batch_size: int = 64) -> int:
        structs = [
            models.PointStruct(
                id=point.id,
                vector={
                    DENSE: np.asarray(point.dense, dtype=np.float32).tolist(),
                    SPARSE: models.SparseVector(indices=list(point.sparse.indices), values=list(point.sparse.values)),
                },
                payload=dict(point.payload),
            )
            for point in points
        ]
        with self._lock:
            for start in range(0, len(structs), batch_size):
                self._client.upsert(self.collection, points=structs[start : start + batch_size], wait=True)
            self._invalidate()
        return len(structs)

    def delete(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        if ids:
            with self._lock:
                self._client.delete(self.collection, points_selector=models.PointIdsList(points=ids), wait=True)
                self._invalidate()
        return len(ids)

    # --- reading ------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> List[ScoredChunk]:
        """The stored chunks with these ids (payload only, score 0; missing ids are skipped)."""
        ids = list(ids)
        if not ids or not self.collection_exists():
            return []
        with self._lock:
            points = self._client.retrieve(self.collection, ids=ids, with_payload=True, with_vectors=False)
        return [ScoredChunk(str(point.id), 0.0, point.payload or {}) for point in points]

    def search_dense(self, vector: np.ndarray, limit: int = 10, with_vectors: bool = False) -> List[ScoredChunk]:
        with self._lock:
            response = self._client.query_points(
                self.collection, query=np.asarray(vector, dtype=np.float32).tolist(), using=DENSE,
                query_filter=DENSE_FILTER, limit=limit, with_payload=True, with_vectors=self._ask_vectors(with_vectors),
            )
        return self._results(response.points, with_vectors)

    def search_sparse(self, vector: SparseVector, limit: int = 10, with_vectors: bool = False) -> List[ScoredChunk]:
        if not len(vector):
            return []
        with self._lock:
            response = self._client.query_points(
                self.collection, query=_sparse(vector), using=SPARSE,
                limit=limit, with_payload=True, with_vectors=self._ask_vectors(with_vectors),
            )
        return self._results(response.points, with_vectors)

    def search_hybrid(
        self,
        dense: np.ndarray,
        sparse: SparseVector,
        limit: int = 10,
        prefetch_limit: int = 20,
        with_vectors: bool = False,
    ) -> List[ScoredChunk]:
        """Dense and sparse candidates fused by RRF, in one ``query_points`` call."""
        prefetch = [
            models.Prefetch(
                query=np.asarray(dense, dtype=np.float32).tolist(), using=DENSE, filter=DENSE_FILTER,
                limit=prefetch_limit,
            )
        ]
        if len(sparse):
            prefetch.append(models.Prefetch(query=_sparse(sparse), using=SPARSE, limit=prefetch_limit))
        with self._lock:
            response = self._client.query_points(
                self.collection,
                prefetch=prefetch,
                query=models.FusionQuery(fusion=models.Fusion.RRF),
                limit=limit,
                with_payload=True,
                with_vectors=self._ask_vectors(with_vectors),
            )
        return self._results(response.points, with_vectors)

    def _invalidate(self) -> None:
        self._df_cache = None
        self._vector_cache = None

    def _ask_vectors(self, with_vectors: bool) -> bool:
        return bool(with_vectors and not self._embedded)

    def _results(self, points, with_vectors: bool) -> List[ScoredChunk]:
        results = [_scored(point) for point in points]
        if not (with_vectors and self._embedded):
            return results
        cache = self._vectors()
        return [
            ScoredChunk(r.id, r.score, r.payload, *cache.get(r.id, (None, None))) for r in results
        ]

    def _vectors(self) -> Dict[str, Tuple[np.ndarray, SparseVector]]:
        with self._lock:
            if self._vector_cache is None:
                cache: Dict[str, Tuple[np.ndarray, SparseVector]] = {}
                offset = None
                while self._client.collection_exists(self.collection):
                    points, offset = self._client.scroll(
                        self.collection, limit=256, offset=offset, with_payload=False, with_vectors=True
                    )
                    for point in points:
                        scored = _scored(point)
                        cache[scored.id] = (scored.dense, scored.sparse)
                    if offset is None:
                        break
                self._vector_cache = cache
            return self._vector_cache

    def document_frequencies(self) -> Tuple[Counter, int]:
        """(document frequency of every sparse term id, number of chunks); cached until a write."""
        with self._lock:
            if self._df_cache is not None:
                return self._df_cache
            frequencies: Counter = Counter()
            total = 0
            if self._client.collection_exists(self.collection):
                offset = None
                while True:
                    points, offset = self._client.scroll(
                        self.collection, limit=256, offset=offset, with_payload=False, with_vectors=[SPARSE]
                    )
                    for point in points:
                        vector = (point.vector or {}).get(SPARSE) if isinstance(point.vector, dict) else None
                        if vector is not None:
                            total += 1
                            frequencies.update(set(vector.indices))
                    if offset is None:
                        break
            self._df_cache = (frequencies, total)
            return self._df_cache

    def close(self) -> None:
        with self._lock:
            self._client.close()

    def __enter__(self) -> "QdrantIndex":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _sparse(vector: SparseVector) -> "models.SparseVector":
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _scored(point: "models.ScoredPoint") -> ScoredChunk:
    dense = sparse = None
    if isinstance(point.vector, dict):
        if point.vector.get(DENSE) is not None:
            dense = np.asarray(point.vector[DENSE], dtype=np.float32)
        raw = point.vector.get(SPARSE)
        if raw is not None:
            sparse = SparseVector(tuple(int(i) for i in raw.indices), tuple(float(v) for v in raw.values))
    return ScoredChunk(id=str(point.id), score=float(getattr(point, "score", 0.0) or 0.0), payload=point.payload or {}, dense=dense, sparse=sparse)
