"""Building the parts from settings (shared by the service and the command line)."""
from __future__ import annotations

from rag.dense import DenseEncoder
from rag.index import QdrantIndex
from rag.settings import RagSettings
from rag.sparse import SparseEncoder


def build_index(settings: RagSettings) -> QdrantIndex:
    if settings.qdrant_url:
        return QdrantIndex(settings.collection_name, url=settings.qdrant_url, api_key=settings.qdrant_api_key)
    return QdrantIndex(settings.collection_name, path=settings.qdrant_path)


def build_dense(settings: RagSettings) -> DenseEncoder:
    return DenseEncoder(
        settings.encoder,
        model=settings.encoder_model,
        threads=settings.encoder_threads,
        query_prefix=settings.encoder_query_prefix,
        passage_prefix=settings.encoder_passage_prefix,
    )


def build_sparse(settings: RagSettings) -> SparseEncoder:
    return SparseEncoder(
        k1=settings.bm25_k1, b=settings.bm25_b, avg_len=settings.bm25_avg_len, synonyms=dict(settings.synonyms)
    )


def build_retriever(settings: RagSettings, index: QdrantIndex, dense, sparse: SparseEncoder):
    from rag.retriever import Retriever

    return Retriever(
        index, sparse, dense, mode=settings.mode, top_k=settings.top_k,
        prefetch_limit=settings.prefetch_limit, sparse_weight=settings.sparse_weight,
        article_rest_weight=settings.article_rest_weight,
    )
