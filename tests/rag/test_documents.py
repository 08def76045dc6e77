"""Reading articles and cutting them into chunks."""
from pathlib import Path

import pytest

from rag.documents import KnowledgeBaseError, chunk_article, load_articles, parse_article
from tests.rag.conftest import FIXTURE_KB

ARTICLE = """---
id: demo
title: Демо-статья
tags: [один, два]
related: [other]
---
Короткий **прямой** ответ. Смотрите [Повторная отправка](resend-certificate.md).

## Первый раздел
Текст первого раздела.

1. Шаг один.
2. Шаг два.

## Длинный раздел
{long}
"""


def test_front_matter_and_body():
    article = parse_article(ARTICLE.format(long="Абзац."))
    assert article.id == "demo"
    assert article.title == "Демо-статья"
    assert article.tags == ("один", "два")
    assert article.related == ("other",)
    assert article.body.startswith("Короткий")


def test_chunks_follow_headings_and_drop_markdown():
    chunks = chunk_article(parse_article(ARTICLE.format(long="Абзац.")))
    assert [c.heading for c in chunks] == ["", "Первый раздел", "Длинный раздел"]
    lead = chunks[0]
    assert lead.text == "Короткий прямой ответ. Смотрите Повторная отправка."
    assert lead.links == ("resend-certificate.md",)
    assert "1. Шаг один.\n2. Шаг два." in chunks[1].text
    assert all(c.article_id == "demo" and c.title == "Демо-статья" for c in chunks)
    assert [c.position for c in chunks] == [0, 1, 2]
    assert "Первый раздел" in chunks[1].embedding_text and "Демо-статья" in chunks[1].embedding_text


def test_long_sections_are_split_within_the_limit():
    paragraphs = "\n\n".join(f"Абзац номер {i}. " + "Слово " * 30 for i in range(12))
    chunks = chunk_article(parse_article(ARTICLE.format(long=paragraphs)), max_chars=300)
    long_parts = [c for c in chunks if c.heading == "Длинный раздел"]
    assert len(long_parts) > 3
    assert all(len(c.text) <= 300 for c in long_parts)
    assert "Абзац номер 0." in long_parts[0].text and "Абзац номер 11." in long_parts[-1].text


def test_ids_are_stable_and_hashes_follow_content_and_encoder():
    first = chunk_article(parse_article(ARTICLE.format(long="Абзац.")))
    again = chunk_article(parse_article(ARTICLE.format(long="Абзац.")))
    edited = chunk_article(parse_article(ARTICLE.format(long="Другой абзац.")))
    assert [c.id for c in first] == [c.id for c in again] == [c.id for c in edited]
    assert [c.content_hash("e5") for c in first] == [c.content_hash("e5") for c in again]
    assert first[0].content_hash("e5") == edited[0].content_hash("e5")
    assert first[2].content_hash("e5") != edited[2].content_hash("e5")
    assert first[0].content_hash("e5") != first[0].content_hash("use")
    # normalisation: case, ё and spacing do not change the hash
    spaced = chunk_article(parse_article(ARTICLE.format(long="абзац.  ")))
    assert spaced[2].content_hash("e5") == first[2].content_hash("e5")


def test_fixture_kb_loads():
    articles = load_articles(FIXTURE_KB)
    assert len(articles) == 7
    assert {a.id for a in articles} >= {"refund-conditions", "certificate-validity"}


@pytest.mark.parametrize(
    "text, message",
    [("без front matter", "front matter"), ("---\nid: x\n---\nтекст", "`id` and `title`")],
)
def test_bad_articles_are_reported(text, message):
    with pytest.raises(KnowledgeBaseError, match=message):
        parse_article(text, Path("bad.md"))


def test_duplicate_ids_are_reported(tmp_path):
    for name in ("a.md", "b.md"):
        (tmp_path / name).write_text("---\nid: same\ntitle: T\n---\nтекст", encoding="utf-8")
    with pytest.raises(KnowledgeBaseError, match="duplicate"):
        load_articles(tmp_path)
