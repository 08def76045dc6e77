"""Each retrieval mode finds the right article on the fixture KB; hits are typed and aggregated."""
import pytest

from rag.retriever import ArticleHit, Hit

QUESTIONS = [
    ("сколько месяцев действует сертификат", "certificate-validity"),
    ("хочу вернуть деньги за сертификат", "refund-conditions"),
    ("сертификат не пришел на почту, отправьте повторно", "resend-certificate"),
    ("как проверить баланс сертификата", "check-balance"),
    ("на кассе магазина не принимают сертификат", "certificate-not-accepted"),
    ("нужны закрывающие документы УПД через ЭДО", "corporate-documents"),
    ("во сколько работают сотрудники поддержки", "support-hours"),
]


@pytest.mark.parametrize("mode", ["sparse", "dense", "hybrid"])
def test_every_mode_finds_the_article(retriever, mode):
    for question, article in QUESTIONS:
        retrieval = retriever.retrieve(question, mode=mode)
        assert retrieval.mode == mode
        assert retrieval.top is not None and retrieval.top.article_id == article, (mode, question, retrieval.article_ids())


def test_hits_are_typed_and_articles_unique(retriever):
    retrieval = retriever.retrieve("можно ли вернуть деньги за сертификат после 14 дней")
    assert all(isinstance(hit, Hit) for hit in retrieval.hits)
    assert all(isinstance(article, ArticleHit) for article in retrieval.articles)
    ids = retrieval.article_ids()
    assert len(ids) == len(set(ids))
    top = retrieval.top
    assert top.best in top.hits and all(hit.article_id == top.article_id for hit in top.hits)
    assert top.title == "Можно ли вернуть деньги за сертификат"
    assert top.best.text and top.best.dense_score is not None and 0 < top.best.coverage <= 1
    assert 0 < retrieval.confidence <= 1


def test_confidence_is_lower_off_topic(retriever):
    on_topic = retriever.retrieve("сколько действует сертификат").confidence
    off_topic = retriever.retrieve("рецепт борща со сметаной").confidence
    assert on_topic > off_topic


def test_sparse_mode_needs_no_dense_encoder(fixture_index, encoders):
    from rag.retriever import Retriever

    retriever = Retriever(fixture_index, encoders[1], dense=None, mode="sparse")
    retrieval = retriever.retrieve("баланс сертификата")
    assert retrieval.top.article_id == "check-balance"
    assert retrieval.top.dense_score is None and retrieval.confidence == retrieval.top.coverage
    with pytest.raises(ValueError):
        Retriever(fixture_index, encoders[1], dense=None, mode="hybrid")
