"""Knowledge-base articles (Markdown with YAML front matter) and their chunks.

An article file looks like::

    ---
    id: refund-conditions
    title: Можно ли вернуть деньги за сертификат
    tags: [возврат, деньги]
    related: [refund-how-to]
    questions:                      # optional: typical customer questions ("question aliases")
      - Можно вернуть деньги за подарочный сертификат?
    ---
    The first paragraph: a short, direct answer.

    ## A section
    Paragraphs, numbered steps, links like [Повторная отправка](resend-certificate.md).

Chunks follow the structure: the lead (text before the first heading) is one chunk, every
``##``/``###`` section another; a section longer than ``max_chars`` is cut between paragraphs
(a single over-long paragraph between sentences). Chunk text is plain text: Markdown links keep
their label, emphasis marks are dropped. Each chunk has a stable id (article id + position) and a
content hash that changes when its text or the encoder that embeds it changes, which is what
makes re-ingestion incremental.

The optional ``questions:`` of the front matter are *question aliases*: typical customer
questions the article answers, as help centres list FAQ variants. Each becomes an extra chunk of
the article (``kind == "question"``, position ``QUESTION_POSITION + n``, so its id does not move
when the body is re-chunked) that the lexical (BM25) side of retrieval matches with question-like
text; the dense search leaves alias chunks out (``rag.index``: on the calibration set, aliases
in the dense search lowered recall, because short questions resemble every question). An alias
chunk only helps to *find* the article: it is never shown as the answer (``is_question_chunk``;
the answerers and the service take the reply from body chunks).
"""
from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

from rag.text import normalise

# Bump when embedding_text / sparse_text change shape: it is part of every content hash, so the
# next ingest re-embeds everything.
TEXT_FORMAT = "title-heading-tags/v2"
CHUNK_ID_NAMESPACE = uuid.UUID("6f0f3f0e-9d0b-4a53-9a55-2f4d8f1c0a11")
_FRONT_MATTER_RE = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.DOTALL)
_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK_RE = re.compile(r"!?\[([^\]]*)\]\(([^)\s]*)(?:\s+\"[^\"]*\")?\)")
_EMPHASIS_RE = re.compile(r"(\*\*|__|(?<!\w)[*_](?=\S)|(?<=\S)[*_](?!\w)|`)")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?…])\s+")
#: chunk kinds: article text, or a question alias from the front matter
BODY = "body"
QUESTION = "question"
#: positions of question-alias chunks start here (body chunks count from 0)
QUESTION_POSITION = 1000


class KnowledgeBaseError(ValueError):
    """An article cannot be read (no front matter, no title, duplicate id)."""


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    body: str
    tags: Tuple[str, ...] = ()
    related: Tuple[str, ...] = ()
    path: Optional[Path] = None
    #: question aliases (front matter ``questions:``): typical customer questions it answers
    questions: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Chunk:
    article_id: str
    title: str
    heading: str
    text: str
    position: int
    tags: Tuple[str, ...] = field(default=(), compare=False)
    links: Tuple[str, ...] = field(default=(), compare=False)
    #: BODY (article text) or QUESTION (a question alias, never shown as an answer)
    kind: str = BODY

    @property
    def id(self) -> str:
        """uuid5 of article id and position: an edited chunk keeps its id, its hash changes."""
        return str(uuid.uuid5(CHUNK_ID_NAMESPACE, f"{self.article_id}#{self.position}"))

    @property
    def embedding_text(self) -> str:
        """What the dense encoder sees: title, heading and tags give a section its context."""
        if self.kind == QUESTION:
            return f"{self.title}\n{self.text}"
        head = self.title + (f" — {self.heading}" if self.heading else "")
        if self.tags:
            head += f" ({', '.join(self.tags)})"
        return f"{head}\n{self.text}"

    @property
    def sparse_text(self) -> str:
        """What the lexical vector is built from (title, heading, tags and text; an alias: its text)."""
        if self.kind == QUESTION:
            return self.text
        return " ".join([self.title, self.heading, " ".join(self.tags), self.text])

    def content_hash(self, signature: str) -> str:
        """sha256 of the normalised content and the embedding ``signature`` (encoder, weights)."""
        parts = [signature, self.article_id, normalise(self.title), normalise(self.heading),
                 normalise(" ".join(self.tags)), normalise(self.text)]
        if self.kind != BODY:  # body hashes stay what they were before aliases existed
            parts.append(self.kind)
        content = "\x1f".join(parts)
        return hashlib.sha256(content.encode("utf-8")).hexdigest()


# --- reading ---------------------------------------------------------------------------------

def parse_article(text: str, path: Optional[Path] = None) -> Article:
    from ruamel.yaml import YAML

    where = str(path) if path else "article"
    match = _FRONT_MATTER_RE.match(text.lstrip("\ufeff"))
    if not match:
        raise KnowledgeBaseError(f"{where}: no YAML front matter (--- ... ---) at the top")
    try:
        meta = YAML(typ="safe").load(match.group(1)) or {}
    except Exception as error:  # ruamel raises several unrelated types
        raise KnowledgeBaseError(f"{where}: invalid front matter: {error}") from error
    if not isinstance(meta, dict):
        raise KnowledgeBaseError(f"{where}: front matter must be a mapping")
    article_id = str(meta.get("id") or (path.stem if path else "")).strip()
    title = str(meta.get("title") or "").strip()
    if not article_id or not title:
        raise KnowledgeBaseError(f"{where}: front matter needs `id` and `title`")
    return Article(
        id=article_id,
        title=title,
        body=text.lstrip("\ufeff")[match.end():].strip(),
        tags=_as_tuple(meta.get("tags")),
        related=_as_tuple(meta.get("related")),
        path=path,
        questions=_questions(meta.get("questions"), where),
    )


def _questions(value, where: str) -> Tuple[str, ...]:
    """``questions:`` of the front matter: a list of strings (one string = one question)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise KnowledgeBaseError(f"{where}: `questions` must be a list of strings")
    seen, questions = set(), []
    for item in value:
        text = " ".join(item.split())
        if text and normalise(text) not in seen:
            seen.add(normalise(text))
            questions.append(text)
    return tuple(questions)


def is_question_chunk(chunk) -> bool:
    """True for a question-alias chunk (a Chunk, an index payload's Hit or anything with ``kind``)."""
    return getattr(chunk, "kind", BODY) == QUESTION


def _as_tuple(value) -> Tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(item).strip() for item in value if str(item).strip())


def load_articles(kb_dir: Path) -> List[Article]:
    """Every ``*.md`` article of ``kb_dir`` (sorted by file name); README.md files are skipped."""
    kb_dir = Path(kb_dir)
    if not kb_dir.is_dir():
        raise KnowledgeBaseError(f"knowledge base directory not found: {kb_dir}")
    articles: List[Article] = []
    seen = {}
    for path in sorted(kb_dir.glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        article = parse_article(path.read_text(encoding="utf-8"), path)
        if article.id in seen:
            raise KnowledgeBaseError(f"duplicate article id '{article.id}' in {seen[article.id]} and {path}")
        seen[article.id] = path
        articles.append(article)
    return articles


# --- chunking --------------------------------------------------------------------------------

def plain_text(markdown: str) -> Tuple[str, Tuple[str, ...]]:
    """(text without Markdown links/emphasis, link targets)."""
    links = tuple(target for _, target in _LINK_RE.findall(markdown))
    text = _LINK_RE.sub(lambda match: match.group(1), markdown)
    text = _EMPHASIS_RE.sub("", text)
    return text, links


def _paragraphs(lines: Sequence[str]) -> List[str]:
    paragraphs: List[str] = []
    current: List[str] = []
    for line in lines:
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paragraphs.append("\n".join(current).strip())
            current = []
    if current:
        paragraphs.append("\n".join(current).strip())
    return [p for p in paragraphs if p]


def _sections(body: str) -> List[Tuple[str, List[str]]]:
    """[(heading, paragraphs)], the lead first with an empty heading."""
    sections: List[Tuple[str, List[str]]] = []
    heading, lines = "", []
    for line in body.splitlines():
        match = _HEADING_RE.match(line)
        if match:
            sections.append((heading, _paragraphs(lines)))
            heading, lines = match.group(2).strip(), []
        else:
            lines.append(line)
    sections.append((heading, _paragraphs(lines)))
    return [(h, p) for h, p in sections if p]


def _greedy_join(parts: Iterable[str], joiner: str, max_chars: int) -> List[str]:
    """Consecutive ``parts`` joined while the text stays within ``max_chars`` (a part longer than
    that stands alone)."""
    texts: List[str] = []
    current = ""
    for part in parts:
        if current and len(current) + len(joiner) + len(part) > max_chars:
            texts.append(current)
            current = part
        else:
            current = f"{current}{joiner}{part}" if current else part
    if current:
        texts.append(current)
    return texts


def _split_long(paragraph: str, max_chars: int) -> List[str]:
    """A paragraph over ``max_chars`` split between its lines (a list) or sentences."""
    if len(paragraph) <= max_chars:
        return [paragraph]
    lines = "\n" in paragraph
    units = paragraph.split("\n") if lines else _SENTENCE_END_RE.split(paragraph)
    parts = [part for unit in units for part in (_SENTENCE_END_RE.split(unit) if len(unit) > max_chars else [unit])]
    return _greedy_join(parts, "\n" if lines else " ", max_chars)


def _pack(paragraphs: Iterable[str], max_chars: int) -> List[str]:
    """Greedy packing of whole paragraphs into texts of at most ``max_chars`` characters."""
    pieces = [piece for paragraph in paragraphs for piece in _split_long(paragraph, max_chars)]
    return _greedy_join(pieces, "\n\n", max_chars)


def chunk_article(article: Article, max_chars: int = 900, min_chars: int = 0) -> List[Chunk]:
    """Chunks of one article: the lead, then its sections (a long section in several parts).

    A section shorter than ``min_chars`` is merged into the previous chunk of the same article
    when both fit in ``max_chars`` (its heading is kept as the first line of the merged text).
    """
    chunks: List[Chunk] = []
    for heading, paragraphs in _sections(article.body):
        text, links = plain_text("\n\n".join(paragraphs))
        heading_text, _ = plain_text(heading)
        packed = _pack(_paragraphs(text.splitlines()), max_chars)
        if (
            min_chars and chunks and len(packed) == 1 and len(packed[0]) < min_chars
            and len(chunks[-1].text) + len(packed[0]) + len(heading_text) + 4 <= max_chars
        ):
            previous = chunks.pop()
            merged = f"{previous.text}\n\n{heading_text}:\n{packed[0]}" if heading_text else f"{previous.text}\n\n{packed[0]}"
            chunks.append(
                Chunk(article.id, article.title, previous.heading, merged, previous.position,
                      article.tags, previous.links + links)
            )
            continue
        for piece in packed:
            chunks.append(
                Chunk(article.id, article.title, heading_text, piece, len(chunks), article.tags, links)
            )
    if not chunks:  # an article with a title only still answers by its title
        chunks.append(Chunk(article.id, article.title, "", article.title, 0, article.tags, ()))
    for number, question in enumerate(article.questions):
        chunks.append(
            Chunk(article.id, article.title, "", question, QUESTION_POSITION + number, article.tags, (), QUESTION)
        )
    return chunks


def chunk_articles(articles: Iterable[Article], max_chars: int = 900, min_chars: int = 0) -> List[Chunk]:
    return [chunk for article in articles for chunk in chunk_article(article, max_chars, min_chars)]
