"""The Qdrant index: in memory, on disk (persistence), writes, and the three searches."""
import numpy as np
import pytest

from rag.index import IndexUnavailable, IndexedPoint, QdrantIndex
from rag.sparse import SparseEncoder

TEXTS = {
    "00000000-0000-0000-0000-000000000001": "Сертификат действует двенадцать месяцев с покупки",
    "00000000-0000-0000-0000-000000000002": "Возврат денег за сертификат в течение четырнадцати дней",
    "00000000-0000-0000-0000-000000000003": "Повторная отправка сертификата на почту или телефон",
}


def _points(dimension=4):
    sparse = SparseEncoder()
    rng = np.random.default_rng(0)
    return [
        IndexedPoint(id=pid, dense=rng.normal(size=dimension), sparse=sparse.encode_document(text),
                     payload={"article_id": f"a{n}", "text": text, "hash": f"h{n}"})
        for n, (pid, text) in enumerate(TEXTS.items())
    ]


def _fill(index):
    points = _points()
    index.ensure_collection(4)
    index.upsert(points)
    return points


def test_in_memory_writes_and_searches():
    index = QdrantIndex.in_memory("t")
    points = _fill(index)
    assert index.count() == 3
    assert index.existing_hashes() == {p.id: p.payload["hash"] for p in points}
    query = SparseEncoder().encode_query("вернуть деньги, возврат")
    sparse_hits = index.search_sparse(query, limit=3)
    assert sparse_hits[0].payload["article_id"] == "a1"
    dense_hits = index.search_dense(points[2].dense, limit=1, with_vectors=True)
    assert dense_hits[0].id == points[2].id and dense_hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(dense_hits[0].dense / np.linalg.norm(dense_hits[0].dense),
                       points[2].dense / np.linalg.norm(points[2].dense), atol=1e-5)
    hybrid = index.search_hybrid(points[1].dense, query, limit=3, with_vectors=True)
    assert hybrid[0].id == points[1].id  # first in both lists: first after RRF
    assert hybrid[0].sparse is not None and hybrid[0].dense is not None
    assert index.search_sparse(SparseEncoder().encode_query("и но"), limit=3) == []
    index.delete([points[0].id])
    assert set(index.existing_hashes()) == {points[1].id, points[2].id}
    frequencies, documents = index.document_frequencies()
    assert documents == 2


def test_on_disk_index_persists_across_reopening(tmp_path):
    path = tmp_path / "qdrant"
    with QdrantIndex("kb", path=path) as index:
        points = _fill(index)
    with QdrantIndex("kb", path=path) as reopened:
        assert reopened.count() == 3
        assert reopened.dimension() == 4
        assert reopened.existing_hashes() == {p.id: p.payload["hash"] for p in points}
        hits = reopened.search_hybrid(points[0].dense, SparseEncoder().encode_query("срок действия сертификата"), limit=1)
        assert hits[0].id == points[0].id


def test_embedded_folder_is_locked_for_a_second_client(tmp_path):
    with QdrantIndex("kb", path=tmp_path / "q"):
        with pytest.raises(IndexUnavailable, match="one process at a time"):
            QdrantIndex("kb", path=tmp_path / "q")


def test_a_new_dimension_recreates_the_collection():
    index = QdrantIndex.in_memory("t")
    _fill(index)
    assert index.ensure_collection(4) is False
    assert index.ensure_collection(8) is True
    assert index.count() == 0 and index.dimension() == 8
