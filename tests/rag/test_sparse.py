"""Lemma-based BM25 vectors."""
import pytest

from rag.sparse import SparseEncoder, bm25_idf, term_id
from rag.text import content_lemmas


def test_terms_are_lemmas_without_stop_words():
    assert content_lemmas("Можно ли вернуть ДЕНЬГИ за сертификаты?") == ["вернуть", "деньга", "сертификат"]
    assert content_lemmas("Ещё раз пришёл") == content_lemmas("еще раз пришел")


def test_term_ids_are_stable_uint32():
    # a fixed value: ids must not depend on the process (no Python hash randomisation)
    assert term_id("сертификат") == term_id("сертификат")
    assert 0 <= term_id("сертификат") < 2**32
    assert term_id("сертификат") == int.from_bytes(
        __import__("hashlib").blake2b("сертификат".encode(), digest_size=4).digest(), "little"
    )


def test_document_weights_saturate_and_queries_are_plain():
    encoder = SparseEncoder(k1=1.2, b=0.75, avg_len=10)
    once = encoder.encode_document("сертификат подарок").as_dict()[term_id("сертификат")]
    thrice = encoder.encode_document("сертификат сертификат сертификат подарок").as_dict()[term_id("сертификат")]
    assert once < thrice < 1.2 + 1  # BM25: grows with tf, bounded by k1 + 1
    query = encoder.encode_query("сертификат сертификаты подарок")
    assert sorted(query.values) == [1.0, 1.0]
    assert encoder.encode_query("и или но").indices == ()


def test_synonyms_map_slang_to_kb_words():
    encoder = SparseEncoder(synonyms={"серт": "сертификат"})
    assert encoder.encode_query("серт").indices == (term_id("сертификат"),)
    assert "серт=сертификат" in encoder.signature


def test_idf_matches_qdrant_formula():
    from qdrant_client.local.local_collection import LocalCollection

    for df, n in [(1, 10), (3, 250), (10, 10)]:
        assert bm25_idf(df, n) == pytest.approx(LocalCollection._compute_idf(df, n))
    assert bm25_idf(10, 10) < bm25_idf(1, 10)
