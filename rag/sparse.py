"""BM25-style sparse vectors over pymorphy3 lemmas.

Terms are content-word lemmas (lower case, ``ё`` -> ``е``, function words and stop words
dropped; see ``rag.text``). A term's id is the first four bytes of its BLAKE2b digest, an unsigned
32-bit integer that is the same in every run and every process, so no vocabulary has to be stored
next to the index.

*Documents* get BM25's saturated term frequency::

    w(t, d) = tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avg_len))

with a fixed ``avg_len`` (not the corpus mean) so that adding an article does not change the
vectors of all the others and re-ingestion stays incremental. The inverse document frequency is
applied by Qdrant at query time (``Modifier.IDF`` on the sparse vector), from the statistics of
the collection. *Queries* get plain term weights (1 per distinct term), so that a query's score
is the BM25 score of the document.
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from rag.text import content_lemmas


@dataclass(frozen=True)
class SparseVector:
    indices: Tuple[int, ...]
    values: Tuple[float, ...]

    def as_dict(self) -> Dict[int, float]:
        return dict(zip(self.indices, self.values))

    def __len__(self) -> int:
        return len(self.indices)


def term_id(term: str) -> int:
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "little")


def bm25_idf(document_frequency: int, documents: int) -> float:
    """The IDF Qdrant applies with ``Modifier.IDF``."""
    return math.log((documents - document_frequency + 0.5) / (document_frequency + 0.5) + 1.0)


class SparseEncoder:
    """Lemma-based BM25 document vectors and plain-weight query vectors."""

    def __init__(
        self,
        k1: float = 1.2,
        b: float = 0.75,
        avg_len: float = 60.0,
        synonyms: Optional[Mapping[str, str]] = None,
    ) -> None:
        if k1 < 0 or not 0 <= b <= 1 or avg_len <= 0:
            raise ValueError("BM25 needs k1 >= 0, 0 <= b <= 1 and avg_len > 0")
        self.k1 = float(k1)
        self.b = float(b)
        self.avg_len = float(avg_len)
        # word -> replacement words, both sides lemmatised («серт» -> «сертификат»)
        self._synonyms: Dict[str, List[str]] = {}
        for word, replacement in (synonyms or {}).items():
            source = content_lemmas(str(word))
            if len(source) == 1:
                self._synonyms[source[0]] = content_lemmas(str(replacement))

    @property
    def signature(self) -> str:
        """Changes whenever the document vectors would (part of every chunk's content hash)."""
        synonyms = ",".join(f"{k}={'+'.join(v)}" for k, v in sorted(self._synonyms.items()))
        return f"bm25-lemmas-v1:k1={self.k1:g}:b={self.b:g}:avg={self.avg_len:g}:syn={synonyms}"

    def terms(self, text: str) -> List[str]:
        result: List[str] = []
        for lemma in content_lemmas(text):
            result.extend(self._synonyms.get(lemma, [lemma]))
        return result

    def encode_document(self, text: str) -> SparseVector:
        terms = self.terms(text)
        counts = Counter(terms)
        length = len(terms)
        norm = self.k1 * (1.0 - self.b + self.b * length / self.avg_len)
        weights: Dict[int, float] = {}
        for term, tf in counts.items():
            weight = tf * (self.k1 + 1.0) / (tf + norm)
            index = term_id(term)
            weights[index] = weights.get(index, 0.0) + weight
        return _vector(weights)

    def encode_documents(self, texts: Iterable[str]) -> List[SparseVector]:
        return [self.encode_document(text) for text in texts]

    def encode_query(self, text: str) -> SparseVector:
        return _vector({term_id(term): 1.0 for term in self.terms(text)})


def _vector(weights: Mapping[int, float]) -> SparseVector:
    items = sorted(weights.items())
    return SparseVector(tuple(i for i, _ in items), tuple(float(v) for _, v in items))
