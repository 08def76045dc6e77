"""Incremental ingestion of the knowledge base into the index.

Every chunk has a stable id (article id + position) and a content hash (normalised text + the
dense and sparse encoders' signatures). Re-ingesting compares the hashes with the ones stored in
the index: only new or changed chunks are embedded and upserted, chunks that no longer exist are
deleted, the rest is left alone. ``rebuild=True`` drops the collection and starts over.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from rag.dense import DenseEncoder
from rag.documents import TEXT_FORMAT, Chunk, chunk_articles, load_articles
from rag.index import IndexedPoint, QdrantIndex
from rag.sparse import SparseEncoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestReport:
    articles: int
    chunks: int
    added: int
    updated: int
    unchanged: int
    deleted: int
    recreated: bool
    seconds: float

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deleted or self.recreated)

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.articles} articles, {self.chunks} chunks: {self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.deleted} deleted"
            + (" (collection created)" if self.recreated else "")
            + f" in {self.seconds:.1f} s"
        )


def embedding_signature(dense: DenseEncoder, sparse: SparseEncoder) -> str:
    return f"{TEXT_FORMAT}|{dense.signature}|{sparse.signature}"


def chunk_payload(chunk: Chunk, content_hash: str) -> Dict[str, object]:
    return {
        "article_id": chunk.article_id,
        "title": chunk.title,
        "heading": chunk.heading,
        "text": chunk.text,
        "position": chunk.position,
        "tags": list(chunk.tags),
        "links": list(chunk.links),
        "kind": chunk.kind,
        "hash": content_hash,
    }


def ingest_chunks(
    index: QdrantIndex,
    chunks: Sequence[Chunk],
    dense: DenseEncoder,
    sparse: SparseEncoder,
    rebuild: bool = False,
    progress: bool = False,
    batch_size: int = 16,
    articles: Optional[int] = None,
) -> IngestReport:
    started = time.perf_counter()
    signature = embedding_signature(dense, sparse)
    dimension = dense.passage_encoder.dimension
    recreated = index.ensure_collection(dimension, recreate=rebuild)
    existing = index.existing_hashes()
    wanted: Dict[str, Chunk] = {}
    hashes: Dict[str, str] = {}
    for chunk in chunks:
        wanted[chunk.id] = chunk
        hashes[chunk.id] = chunk.content_hash(signature)
    to_write: List[str] = [cid for cid in wanted if existing.get(cid) != hashes[cid]]
    added = sum(1 for cid in to_write if cid not in existing)
    stale = [cid for cid in existing if cid not in wanted]

    bar = None
    if progress and to_write:
        from tqdm import tqdm

        bar = tqdm(total=len(to_write), desc="embedding chunks", unit="chunk")
    for start in range(0, len(to_write), batch_size):
        batch = [wanted[cid] for cid in to_write[start : start + batch_size]]
        vectors = dense.encode_passages([chunk.embedding_text for chunk in batch], batch_size=batch_size)
        points = [
            IndexedPoint(
                id=chunk.id,
                dense=vector,
                sparse=sparse.encode_document(chunk.sparse_text),
                payload=chunk_payload(chunk, hashes[chunk.id]),
            )
            for chunk, vector in zip(batch, vectors)
        ]
        index.upsert(points)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    index.delete(stale)
    report = IngestReport(
        articles=articles if articles is not None else len({c.article_id for c in chunks}),
        chunks=len(wanted),
        added=added,
        updated=len(to_write) - added,
        unchanged=len(wanted) - len(to_write),
        deleted=len(stale),
        recreated=recreated,
        seconds=time.perf_counter() - started,
    )
    logger.info("Knowledge base ingested: %s", report.summary())
    return report


def ingest_kb(
    index: QdrantIndex,
    kb_dir: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    max_chars: int = 700,
    min_chars: int = 0,
    rebuild: bool = False,
    progress: bool = False,
) -> IngestReport:
    """Loads, chunks and (incrementally) indexes every article of ``kb_dir``."""
    articles = load_articles(Path(kb_dir))
    chunks = chunk_articles(articles, max_chars=max_chars, min_chars=min_chars)
    return ingest_chunks(index, chunks, dense, sparse, rebuild=rebuild, progress=progress, articles=len(articles))
