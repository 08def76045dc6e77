"""Question aliases (front matter ``questions:``): parsing, alias chunks in the index, incremental
ingestion, and the rule that an alias is never shown as the answer."""
from dataclasses import replace

import pytest

from rag.answerers import ExtractiveAnswerer
from rag.documents import (
    QUESTION, QUESTION_POSITION, KnowledgeBaseError, chunk_article, is_question_chunk, parse_article,
)
from rag.index import QdrantIndex
from rag.ingest import ingest_kb
from rag.retriever import Hit, Retriever, group_by_article
from rag.service import ANSWERED, KnowledgeService, Thresholds

ARTICLE = """---
id: demo
title: Демо-статья
tags: [один]
{questions}---
Короткий прямой ответ.

## Раздел
Текст раздела.
"""
ALIASES = 'questions:\n  - "Как  пользоваться демо?"\n  - Что это за демо\n  - "как пользоваться демо?"\n'
# an alias of the fixture article certificate-validity, worded unlike its text
ALIAS = "через сколько пропадёт подаренная карточка"


def _with_alias(path, *questions):
    text = path.read_text(encoding="utf-8")
    block = "questions:\n" + "".join(f'  - "{q}"\n' for q in questions)
    head, body = text.split("\n---\n", 1)
    path.write_text(f"{head}\n{block}---\n{body}", encoding="utf-8")


def test_questions_are_parsed_normalised_and_deduplicated():
    article = parse_article(ARTICLE.format(questions=ALIASES))
    assert article.questions == ("Как пользоваться демо?", "Что это за демо")
    assert parse_article(ARTICLE.format(questions="")).questions == ()
    assert parse_article(ARTICLE.format(questions="questions: Одна строка?\n")).questions == ("Одна строка?",)


@pytest.mark.parametrize("value", ["questions: {a: b}\n", "questions: [1, 2]\n", "questions: [[x]]\n"])
def test_malformed_questions_are_reported(value):
    with pytest.raises(KnowledgeBaseError, match="questions"):
        parse_article(ARTICLE.format(questions=value))


def test_alias_chunks_follow_the_body_with_stable_ids_and_untouched_body_hashes():
    plain = chunk_article(parse_article(ARTICLE.format(questions="")))
    chunks = chunk_article(parse_article(ARTICLE.format(questions=ALIASES)))
    body, aliases = chunks[: len(plain)], chunks[len(plain):]
    assert [c.content_hash("e5") for c in body] == [c.content_hash("e5") for c in plain]
    assert [c.text for c in aliases] == ["Как пользоваться демо?", "Что это за демо"]
    assert all(c.kind == QUESTION and is_question_chunk(c) for c in aliases)
    assert not any(is_question_chunk(c) for c in body)
    assert [c.position for c in aliases] == [QUESTION_POSITION, QUESTION_POSITION + 1]
    assert aliases[0].embedding_text == "Демо-статья\nКак пользоваться демо?"
    assert aliases[0].sparse_text == "Как пользоваться демо?"
    # an alias differing from a body chunk only in kind still hashes differently
    assert replace(body[1], kind=QUESTION).content_hash("e5") != body[1].content_hash("e5")
    # a new section does not move the alias ids
    longer = ARTICLE.format(questions=ALIASES) + "\n## Ещё раздел\nЕщё текст.\n"
    assert [c.id for c in chunk_article(parse_article(longer))][-2:] == [c.id for c in aliases]


@pytest.fixture
def alias_kb(kb_copy):
    _with_alias(kb_copy / "certificate-validity.md", ALIAS, "до какого числа можно тратить подарок")
    return kb_copy


@pytest.fixture
def alias_index(alias_kb, encoders):
    dense, sparse = encoders
    index = QdrantIndex.in_memory("aliases")
    ingest_kb(index, alias_kb, dense, sparse)
    yield index
    index.close()


def test_alias_chunks_are_indexed_and_matched(alias_index, encoders, fixture_settings):
    dense, sparse = encoders
    retriever = Retriever(alias_index, sparse, dense, mode="hybrid", top_k=10)
    retrieval = retriever.retrieve(ALIAS)
    assert retrieval.top.article_id == "certificate-validity"
    alias_hit = next(h for h in retrieval.hits if h.kind == QUESTION)
    assert alias_hit.text == ALIAS and alias_hit.article_id == "certificate-validity"
    # a cosine with an alias is not evidence: it does not feed the confidence
    assert alias_hit.dense_score == 0.0
    sparse_top = retriever.retrieve(ALIAS, mode="sparse").hits[0]
    assert sparse_top.kind == QUESTION and sparse_top.article_id == "certificate-validity"
    # aliases are matched lexically only: the dense search leaves them out
    assert all(h.kind != QUESTION for h in retriever.retrieve(ALIAS, mode="dense", limit=30).hits)


def test_an_alias_is_never_the_answer(alias_index, encoders, fixture_settings):
    dense, sparse = encoders
    retriever = Retriever(alias_index, sparse, dense, mode="hybrid", top_k=10)
    service = KnowledgeService(fixture_settings, retriever=retriever, thresholds=Thresholds(0.0, 0.0))
    result = service.answer(ALIAS)
    assert result.status == ANSWERED and result.article_id == "certificate-validity"
    assert ALIAS not in result.text and "до какого числа можно тратить подарок" not in result.text
    body = result.text.rsplit("\n\n", 1)[0]
    assert any(body.startswith(h.text.strip()[:40]) for h in result.passages if h.kind == "body")


class _AliasesOnly(Retriever):
    """The top article retrieved through its aliases alone (its body chunks removed)."""

    def retrieve(self, query, mode=None, limit=None):
        retrieval = super().retrieve(query, mode, limit)
        top = next(h for h in retrieval.hits if h.kind == QUESTION).article_id
        hits = tuple(h for h in retrieval.hits if h.article_id == top and h.kind == QUESTION) + tuple(
            h for h in retrieval.hits if h.article_id != top
        )
        return replace(retrieval, hits=hits, articles=tuple(group_by_article(hits)))


def test_an_article_found_only_by_aliases_answers_with_its_lead(alias_index, encoders, fixture_settings):
    dense, sparse = encoders
    retriever = _AliasesOnly(alias_index, sparse, dense, mode="hybrid", top_k=10)
    retrieval = retriever.retrieve(ALIAS)
    assert retrieval.top.article_id == "certificate-validity"
    assert all(h.kind == QUESTION for h in retrieval.top.hits)
    lead = retriever.article_lead("certificate-validity")
    assert lead is not None and lead.position == 0 and lead.kind == "body"
    service = KnowledgeService(fixture_settings, retriever=retriever, thresholds=Thresholds(0.0, 0.0))
    result = service.answer(ALIAS)
    assert result.status == ANSWERED and result.article_id == "certificate-validity"
    assert result.text.startswith(lead.text.strip()[:60]) and ALIAS not in result.text


def _hit(article, text, kind="body", position=0, dense=0.5):
    return Hit("id-" + text[:8], article, "Статья", "", text, 1.0, position, dense, kind=kind)


def test_extractive_answerer_skips_alias_passages():
    answerer = ExtractiveAnswerer()
    alias = _hit("a", "Как вернуть деньги?", QUESTION, QUESTION_POSITION, dense=0.99)
    body = _hit("a", "Деньги возвращаются за 10 рабочих дней.", position=1, dense=0.7)
    answer = answerer.answer("как вернуть деньги", [alias, body])
    assert answer.text.startswith("Деньги возвращаются") and "Как вернуть деньги?" not in answer.text
    assert answerer.answer("как вернуть деньги", [alias]).text == ""


def test_ingestion_is_incremental_when_only_aliases_change(alias_kb, encoders):
    dense, sparse = encoders
    index = QdrantIndex.in_memory("aliases-ingest")
    first = ingest_kb(index, alias_kb, dense, sparse)
    before = index.existing_hashes()
    path = alias_kb / "certificate-validity.md"

    path.write_text(path.read_text(encoding="utf-8").replace(ALIAS, "когда сгорит подарочная карточка"), encoding="utf-8")
    edited = ingest_kb(index, alias_kb, dense, sparse)
    assert (edited.added, edited.updated, edited.deleted) == (0, 1, 0)
    after = index.existing_hashes()
    assert sum(1 for cid in after if after[cid] != before[cid]) == 1

    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('questions:\n', 'questions:\n  - "а продлить подарок можно"\n'), encoding="utf-8")
    grown = ingest_kb(index, alias_kb, dense, sparse)
    # appended first: every alias position shifts by one, the body is untouched
    assert grown.added == 1 and grown.deleted == 0 and grown.unchanged == first.chunks - 2

    path.write_text(text, encoding="utf-8")
    shrunk = ingest_kb(index, alias_kb, dense, sparse)
    assert shrunk.deleted == 1 and shrunk.added == 0 and shrunk.unchanged == first.chunks - 2
    index.close()
