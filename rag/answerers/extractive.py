"""The default answerer: the most relevant passage of the best article, verbatim.

It never states anything that is not in the knowledge base: the answer is the text of chunks
(cut at a sentence boundary when too long) and a pointer to their article, «Подробнее: «…»».
The best article is the one of the first passage; among its passages the one most similar to
the question is chosen (dense cosine, or lexical coverage without dense scores), preceded by the
article's lead — its short direct answer — when that is another retrieved chunk and both fit.
Question-alias chunks (``kind == "question"``) only help retrieval and are never the answer.
"""
from __future__ import annotations

import re
from typing import Sequence, Tuple

from rag.answerers.base import Answer, Passage

_SENTENCE_END_RE = re.compile(r"(?<=[.!?…])\s+")


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut after the last whole sentence (or line) that fits in ``max_chars``."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    kept = ""
    for piece in re.split(r"(\n+|(?<=[.!?…])\s+)", text):
        if len(kept) + len(piece) > max_chars:
            break
        kept += piece
    kept = kept.strip()
    return kept if kept else text[:max_chars].rsplit(" ", 1)[0] + "…"


class ExtractiveAnswerer:
    name = "extractive"

    def __init__(self, max_chars: int = 700, source_template: str = "Подробнее: «{title}».") -> None:
        self.max_chars = int(max_chars)
        self.source_template = source_template

    def select(self, passages: Sequence[Passage]) -> Tuple[Passage, ...]:
        """The passages of the answer: [lead,] the passage of the best article closest to the question."""
        if not passages:
            return ()
        article = [
            p for p in passages if p.article_id == passages[0].article_id and getattr(p, "kind", "body") != "question"
        ]
        if not article:  # the best article matched only through its question aliases
            return ()
        best = max(
            article,
            key=lambda p: (p.dense_score if p.dense_score is not None else p.coverage, -article.index(p)),
        )
        lead = next((p for p in article if p.position == 0), None)
        if lead is not None and lead is not best and len(lead.text) + len(best.text) + 2 <= self.max_chars:
            return (lead, best)
        return (best,)

    def answer(self, question: str, passages: Sequence[Passage]) -> Answer:
        chosen = self.select(passages)
        if not chosen:
            return Answer(text="", answerer=self.name)
        passage = chosen[-1]
        body = "\n\n".join(p.text.strip() for p in chosen) if len(chosen) > 1 else shorten(passage.text, self.max_chars)
        text = body
        if self.source_template:
            text = f"{body}\n\n{self.source_template.format(title=passage.title)}"
        return Answer(
            text=text,
            answerer=self.name,
            article_id=passage.article_id,
            source_title=passage.title,
            passages=chosen,
        )
