"""Is every sentence of a generated answer supported by the retrieved passages?

A sentence is *supported* when

* at least ``min_overlap`` of its distinct content lemmas (nouns, verbs, adjectives... with
  function and stop words dropped; see ``rag.text``) occur in the passages (their text, title
  and heading), and
* every number it states (days, roubles, hours, counts) occurs in the passages;
* every personal datum it states (an e-mail, a phone, a certificate code, an order number, an
  INN: the entity patterns of ``rag.privacy``) occurs in the passages — a generator talked into
  it by a prompt injection must not hand a customer someone's e-mail or a code (a digit-less
  e-mail in an otherwise well-supported sentence would pass the lexical overlap);

optionally, a sentence whose lexical overlap falls short is still accepted when its dense
embedding is at least ``min_dense`` similar to one of the passages (paraphrases) — numbers are
checked either way. Sentences without content words («Да.», «Конечно.») are neutral. An answer
that says the knowledge base has no answer is not grounded either (the service then returns the
extractive answer, which it decided the passages do contain).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from nlu.entity_patterns import find_entities
from rag.answerers.base import NO_ANSWER_TEXT, Passage
from rag.privacy import DEFAULT_ENTITY_SPECS
from rag.text import content_lemmas, normalise, numbers, split_sentences


@dataclass(frozen=True)
class SentenceCheck:
    sentence: str
    supported: bool
    overlap: float
    missing_lemmas: Tuple[str, ...] = ()
    missing_numbers: Tuple[str, ...] = ()
    dense: Optional[float] = None
    #: how many personal data (e-mails, phones, codes…) the sentence states that the passages do
    #: not (a count: the values themselves stay out of reports and log lines)
    unknown_personal_data: int = 0


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
    def __init__(
        self,
        min_overlap: float = 0.7,
        dense_encoder=None,
        min_dense: Optional[float] = None,
        personal_data: Optional[Mapping[str, Mapping[str, Any]]] = None,
    ) -> None:
        if not 0.0 <= min_overlap <= 1.0:
            raise ValueError("min_overlap must be within 0..1")
        self.min_overlap = float(min_overlap)
        self.dense_encoder = dense_encoder  # rag.dense.DenseEncoder, only used with min_dense
        self.min_dense = min_dense
        #: entity patterns of personal data (``rag.privacy`` / config.yml's PatternEntityExtractor)
        specs = DEFAULT_ENTITY_SPECS if personal_data is None else personal_data
        self.personal_data = {k: dict(v) for k, v in specs.items()}

    def _personal_data(self, text: str) -> Set[str]:
        return {match.value for match in find_entities(text, self.personal_data)}

    def check(self, answer: str, passages: Sequence[Passage]) -> GroundingReport:
        sentences = split_sentences(answer)
        if not sentences:
            return GroundingReport(False, (), "empty answer")
        if normalise(NO_ANSWER_TEXT) in normalise(answer):
            return GroundingReport(False, (), "the generator found no answer in the passages")
        texts = [_passage_text(passage) for passage in passages]
        known_lemmas: Set[str] = set()
        known_numbers: Set[str] = set()
        known_personal: Set[str] = set()
        for text in texts:
            known_lemmas.update(content_lemmas(text))
            known_numbers.update(numbers(text))
            known_personal.update(self._personal_data(text))
        passage_vectors = None
        checks = []
        for sentence in sentences:
            lemmas = list(dict.fromkeys(content_lemmas(sentence)))
            missing_numbers = tuple(n for n in dict.fromkeys(numbers(sentence)) if n not in known_numbers)
            unknown_personal = len(self._personal_data(sentence) - known_personal)
            if not lemmas:
                checks.append(SentenceCheck(sentence, not missing_numbers and not unknown_personal, 1.0, (),
                                            missing_numbers, None, unknown_personal))
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
                SentenceCheck(sentence, supported and not missing_numbers and not unknown_personal, overlap, missing,
                              missing_numbers, dense, unknown_personal)
            )
        grounded = all(check.supported for check in checks)
        reason = "" if grounded else "; ".join(
            f"«{c.sentence[:60]}»: overlap {c.overlap:.2f}"
            + (f", numbers {', '.join(c.missing_numbers)} not in the passages" if c.missing_numbers else "")
            + (f", {c.unknown_personal_data} personal data not in the passages" if c.unknown_personal_data else "")
            for c in checks if not c.supported
        )
        return GroundingReport(grounded, tuple(checks), reason)
