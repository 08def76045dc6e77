"""What every answerer shares: the typed answer, the protocol, errors and the prompt."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Protocol, Sequence, Tuple, runtime_checkable

from rag.retriever import Hit

# Passages are retrieved chunks, best first.
Passage = Hit

SYSTEM_PROMPT = (
    "Ты — ассистент службы поддержки. Отвечай на вопрос клиента только по фрагментам базы знаний, "
    "которые даны ниже. Не добавляй фактов, чисел, сроков и условий, которых нет во фрагментах. "
    "Если во фрагментах нет ответа, так и скажи: «В базе знаний нет ответа на этот вопрос». "
    "Отвечай по-русски, кратко и вежливо, в 1–3 предложениях, без приветствий."
)
NO_ANSWER_TEXT = "В базе знаний нет ответа на этот вопрос"


class AnswererError(RuntimeError):
    """A generator could not produce an answer (the service falls back to the extractive one)."""


class AnswererUnavailable(AnswererError):
    """The model or endpoint cannot be reached or loaded (connection, timeout, missing files)."""


class AnswererResponseError(AnswererError):
    """The endpoint answered, but not with a usable completion (HTTP error, malformed JSON)."""


@dataclass(frozen=True)
class Answer:
    text: str
    #: name of the answerer that produced ``text``
    answerer: str
    article_id: Optional[str] = None
    source_title: Optional[str] = None
    #: the passages the answer was built from (extractive) or prompted with (generators)
    passages: Tuple[Passage, ...] = field(default=(), repr=False)
    #: True for generated text (which the service then checks against the passages)
    generated: bool = False


@runtime_checkable
class Answerer(Protocol):
    name: str

    def answer(self, question: str, passages: Sequence[Passage]) -> Answer:
        """An answer to ``question`` from ``passages`` (best first). ``question`` is already masked."""


def format_passages(passages: Sequence[Passage]) -> str:
    blocks: List[str] = []
    for number, passage in enumerate(passages, start=1):
        header = f"[{number}] «{passage.title}»" + (f" — {passage.heading}" if passage.heading else "")
        blocks.append(f"{header}\n{passage.text.strip()}")
    return "\n\n".join(blocks)


def build_messages(question: str, passages: Sequence[Passage]) -> List[dict]:
    """Chat messages for a generator: the Russian instruction, then passages and the question."""
    user = f"Фрагменты базы знаний:\n\n{format_passages(passages)}\n\nВопрос клиента: {question.strip()}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def prompt_passages(passages: Sequence[Passage], limit: int = 4) -> Tuple[Passage, ...]:
    """The passages a generator is shown: the best article's chunks first, then the next ones."""
    passages = [p for p in passages if getattr(p, "kind", "body") != "question"]  # aliases are not content
    if not passages:
        return ()
    best = passages[0].article_id
    ordered = [p for p in passages if p.article_id == best] + [p for p in passages if p.article_id != best]
    return tuple(ordered[:limit])
