"""Incremental ingestion: unchanged chunks are left alone, edits and deletions are followed."""
from rag.index import QdrantIndex
from rag.ingest import ingest_kb


def _ingest(index, kb, encoders, **options):
    dense, sparse = encoders
    return ingest_kb(index, kb, dense, sparse, **options)


def test_second_ingest_changes_nothing_then_edits_and_deletions_are_followed(kb_copy, encoders):
    index = QdrantIndex.in_memory("kb")
    first = _ingest(index, kb_copy, encoders)
    assert first.recreated and first.added == first.chunks > 7
    assert (first.updated, first.unchanged, first.deleted) == (0, 0, 0)

    again = _ingest(index, kb_copy, encoders)
    assert (again.added, again.updated, again.deleted) == (0, 0, 0)
    assert again.unchanged == first.chunks and not again.changed

    before = index.existing_hashes()
    article = kb_copy / "refund-conditions.md"
    article.write_text(
        article.read_text(encoding="utf-8").replace("10 рабочих дней", "7 рабочих дней"), encoding="utf-8"
    )
    edited = _ingest(index, kb_copy, encoders)
    assert (edited.added, edited.updated, edited.deleted) == (0, 1, 0)
    after = index.existing_hashes()
    changed = {cid for cid in after if after[cid] != before[cid]}
    assert len(changed) == 1
    (hit,) = index.search_sparse(encoders[1].encode_query("рабочих дней вернутся деньги"), limit=1)
    assert hit.id in changed and "7 рабочих дней" in hit.payload["text"]

    refund_chunks = {cid for cid, _ in after.items()} - {
        cid for cid in after if cid not in changed
    }
    (kb_copy / "support-hours.md").unlink()
    deleted = _ingest(index, kb_copy, encoders)
    assert deleted.deleted == 2 and deleted.added == deleted.updated == 0
    remaining = index.existing_hashes()
    assert len(remaining) == first.chunks - 2
    assert refund_chunks <= set(remaining)
    assert all(h.payload["article_id"] != "support-hours"
               for h in index.search_sparse(encoders[1].encode_query("поддержка круглосуточно"), limit=10))


def test_rebuild_starts_over(kb_copy, encoders):
    index = QdrantIndex.in_memory("kb")
    first = _ingest(index, kb_copy, encoders)
    rebuilt = _ingest(index, kb_copy, encoders, rebuild=True)
    assert rebuilt.recreated and rebuilt.added == first.chunks


def test_another_encoder_signature_reembeds_everything(kb_copy, encoders):
    from rag.sparse import SparseEncoder

    index = QdrantIndex.in_memory("kb")
    first = _ingest(index, kb_copy, encoders)
    dense, _ = encoders
    changed = ingest_kb(index, kb_copy, dense, SparseEncoder(k1=2.0))
    assert changed.updated == first.chunks and changed.added == 0
