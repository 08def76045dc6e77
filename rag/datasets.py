"""Question sets for evaluation and calibration (``answerable`` + ``unanswerable``)::

    answerable:
      - question: "скока действует серт?"
        article: certificate-validity
    unanswerable:
      - "как вернуть кроссовки в спортмастер"
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class QuestionSet:
    answerable: Tuple[Tuple[str, str], ...]
    unanswerable: Tuple[str, ...]
    path: Optional[Path] = None

    def check_articles(self, known: Iterable[str]) -> List[str]:
        """Article ids the set expects that the knowledge base does not have."""
        known = set(known)
        return sorted({article for _, article in self.answerable if article not in known})


def load_question_set(path: Path) -> QuestionSet:
    from ruamel.yaml import YAML

    path = Path(path)
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    answerable = []
    for item in data.get("answerable") or []:
        if not isinstance(item, dict) or not item.get("question") or not item.get("article"):
            raise ValueError(f"{path}: every answerable item needs `question` and `article`, got {item!r}")
        answerable.append((str(item["question"]).strip(), str(item["article"]).strip()))
    unanswerable = []
    for item in data.get("unanswerable") or []:
        text = item.get("question") if isinstance(item, dict) else item
        if not text:
            raise ValueError(f"{path}: empty unanswerable item")
        unanswerable.append(str(text).strip())
    return QuestionSet(tuple(answerable), tuple(unanswerable), path)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
