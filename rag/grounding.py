"""Is every sentence of a generated answer supported by the retrieved passages?

A sentence is *supported* when

* at least ``min_overlap`` of its distinct content lemmas (nouns, verbs, adjectives... with
  function and stop words dropped; see ``rag.text``) occur in the passages (their text, title
  and heading), and
* every number it states (days, roubles, hours, counts) occurs in the passages;

optionally, a sentence whose lexical overlap falls short is still accepted when its dense
embedding is at least ``min_dense`` similar to one of the passages (paraphrases) — numbers are
checked either way. Sentences without content words («Да.», «Конечно.») are neutral. An answer
that says the knowledge base has no answer is not grounded either (the service then returns the
extractive answer, which it decided the passages do contain).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Set, Tuple

import numpy as np

from rag.answerers.base import NO_ANSWER_TEXT, Passage
from rag.text import content_lemmas, normalise, numbers, split_sentences


@dataclass(frozen=True)
class SentenceCheck:
    sentence: str
    supported: bool
    overlap: float
    missing_lemmas: Tuple[str, ...] = ()
    missing_numbers: Tuple[str, ...] = ()
    dense: Optional[float] = None


@dataclass(frozen=True)
class GroundingReport:
    grounded: bool
    sentences: Tuple[SentenceCheck, ...]
    reason: str = ""

    @property
    def unsupported(self) -> Tuple[SentenceCheck, ...]:
        return tuple(check for check in self.sentences if not check.supported)


def _passage_text(passage: Passage) -> str:
    return f"{passage.title}\n{passage.heading}\n{passage.text}"


class GroundingChecker:
    def __init__(self, min_overlap: float = 0.7, dense_encoder=None, min_dense: Optional[float] = None) -> None:
        if not 0.0 <= min_overlap <= 1.0:
            raise ValueError("min_overlap must be within 0..1")
        self.min_overlap = float(min_overlap)
        self.dense_encoder = dense_encoder  # rag.dense.DenseEncoder, only used with min_dense
        self.min_dense = min_dense

    def check(self, answer: str, passages: Sequence[Passage]) -> GroundingReport:
        sentences = split_sentences(answer)
        if not sentences:
            return GroundingReport(False, (), "empty answer")
        if normalise(NO_ANSWER_TEXT) in normalise(answer):
            return GroundingReport(False, (), "the generator found no answer in the passages")
        texts = [_passage_text(passage) for passage in passages]
        known_lemmas: Set[str] = set()
        known_numbers: Set[str] = set()
        for text in texts:
            known_lemmas.update(content_lemmas(text))
            known_numbers.update(numbers(text))
        passage_vectors = None
        checks = []
        for sentence in sentences:
            lemmas = list(dict.fromkeys(content_lemmas(sentence)))
            missing_numbers = tuple(n for n in dict.fromkeys(numbers(sentence)) if n not in known_numbers)
            if not lemmas:
                checks.append(SentenceCheck(sentence, not missing_numbers, 1.0, (), missing_numbers))
                continue
            missing = tuple(lemma for lemma in lemmas if lemma not in known_lemmas and lemma not in known_numbers)
            overlap = 1.0 - len(missing) / len(lemmas)
            supported = overlap >= self.min_overlap
            dense = None
            if not supported and self.dense_encoder is not None and self.min_dense is not None and texts:
                if passage_vectors is None:
                    passage_vectors = self.dense_encoder.encode_passages(texts)
                vector = self.dense_encoder.encode_query(sentence)
                dense = float(np.max(passage_vectors @ vector))
                supported = dense >= self.min_dense
            checks.append(
                SentenceCheck(sentence, supported and not missing_numbers, overlap, missing, missing_numbers, dense)
            )
        grounded = all(check.supported for check in checks)
        reason = "" if grounded else "; ".join(
            f"«{c.sentence[:60]}»: overlap {c.overlap:.2f}"
            + (f", numbers {', '.join(c.missing_numbers)} not in the passages" if c.missing_numbers else "")
            for c in checks if not c.supported
        )
        return GroundingReport(grounded, tuple(checks), reason)
