"""Picking the confidence mix and the two thresholds on a calibration set.

    python -m rag calibrate [--calibration data/kb_calibration.yml] [--write]

Every calibration question is retrieved once (configured mode and encoder, fresh in-memory
index). The confidence is linear in two features of the best article (dense cosine, lexical
coverage; see ``rag.retriever``): ``(1 - sparse_weight) * dense + sparse_weight * coverage``.

* ``sparse_weight``: from a logistic regression of right answers vs unanswerable questions on
  the two features (all questions, so it is stable); the summary also shows, for reference, the
  objective below at every weight 0, 0.05, ..., 1 (not used to choose: it rests on the few
  unanswerable questions near the threshold and varies a lot from sample to sample);

* ``answer`` threshold: among thresholds that answer at most ``max_false`` (5%) of the
  unanswerable questions, the one with the most answerable questions answered from the right
  article minus those answered from a wrong one; it is placed halfway between the last score
  it keeps and the next one, for margin;
* ``clarify`` threshold: the lowest one below ``answer`` that sends at most
  ``max_unanswerable_clarify`` (25%) of the unanswerable questions to a clarifying question.

``--write`` stores
``retrieval.sparse_weight`` and ``thresholds`` in ``rag.yml``, keeping its comments and layout.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from rag.datasets import QuestionSet, load_question_set
from rag.retriever import ArticleHit, Retriever, confidence_of
from rag.settings import DEFAULT_CONFIG_PATH, PROJECT_ROOT, RagSettings

DEFAULT_CALIBRATION = PROJECT_ROOT / "data" / "kb_calibration.yml"
WEIGHTS = tuple(round(0.05 * step, 2) for step in range(21))


@dataclass(frozen=True)
class Sample:
    question: str
    answerable: bool
    correct: bool  # the top article is the expected one (False for unanswerable questions)
    top: Optional[ArticleHit] = field(repr=False, default=None)

    def confidence(self, sparse_weight: float) -> float:
        return confidence_of(self.top, sparse_weight)


@dataclass(frozen=True)
class Calibration:
    sparse_weight: float
    answer: float
    clarify: float
    correct_rate: float
    wrong_rate: float
    false_rate: float
    answerable_clarify_rate: float
    unanswerable_clarify_rate: float
    answerable: int
    unanswerable: int
    per_weight: Tuple[Tuple[float, float, float], ...] = ()  # (weight, objective, answer threshold)
    curve: Tuple[Tuple[float, float, float, float], ...] = ()  # (threshold, correct, wrong, false)


def collect_samples(retriever: Retriever, questions: QuestionSet) -> List[Sample]:
    samples = []
    for question, gold in questions.answerable:
        top = retriever.retrieve(question).top
        samples.append(Sample(question, True, bool(top and top.article_id == gold), top))
    for question in questions.unanswerable:
        samples.append(Sample(question, False, False, retriever.retrieve(question).top))
    return samples


def _rates(samples: Sequence[Sample], weight: float, threshold: float) -> Tuple[float, float, float]:
    answerable = [s for s in samples if s.answerable]
    unanswerable = [s for s in samples if not s.answerable]
    above = [s for s in samples if s.confidence(weight) >= threshold]
    correct = sum(1 for s in above if s.answerable and s.correct) / max(len(answerable), 1)
    wrong = sum(1 for s in above if s.answerable and not s.correct) / max(len(answerable), 1)
    false = sum(1 for s in above if not s.answerable) / max(len(unanswerable), 1)
    return correct, wrong, false


def _midpoint_below(scores: Sequence[float], threshold: float) -> float:
    """Halfway between ``threshold`` and the highest score below it."""
    lower = [s for s in scores if s < threshold]
    return (threshold + max(lower)) / 2 if lower else threshold - 1e-3


def partial_auc(samples: Sequence[Sample], weight: float, max_fpr: float = 0.1) -> float:
    """Area under the ROC curve of right answers vs unanswerable questions, for FPR <= ``max_fpr``."""
    positives = sorted((s.confidence(weight) for s in samples if s.answerable and s.correct), reverse=True)
    negatives = sorted((s.confidence(weight) for s in samples if not s.answerable), reverse=True)
    if not positives or not negatives:
        return 0.0
    area = 0.0
    allowed = max(1, int(max_fpr * len(negatives)))
    for rank, negative in enumerate(negatives[:allowed]):
        area += sum(1 for p in positives if p > negative) / len(positives)
    return area / allowed


def _answer_threshold(samples: Sequence[Sample], weight: float, max_false: float) -> Tuple[float, float]:
    scores = sorted({round(s.confidence(weight), 6) for s in samples}, reverse=True)
    best: Optional[Tuple[float, float, float]] = None  # (objective, -false, threshold)
    for threshold in scores:
        correct, wrong, false = _rates(samples, weight, threshold)
        if false > max_false + 1e-9:
            continue
        key = (correct - wrong, -false, threshold)
        if best is None or key > best:
            best = key
    if best is None:  # nothing is safe: answer nothing
        return max(scores) + 1e-3 if scores else 1.0, 0.0
    threshold = _midpoint_below(scores, best[2])
    return threshold, best[0]


def _clarify_threshold(samples: Sequence[Sample], weight: float, answer: float, max_unanswerable: float) -> float:
    unanswerable = sorted((s.confidence(weight) for s in samples if not s.answerable), reverse=True)
    below = [score for score in unanswerable if score < answer]
    allowed = int(max_unanswerable * len(unanswerable) + 1e-9)
    if len(below) <= allowed:
        candidates = [s.confidence(weight) for s in samples if s.answerable and s.confidence(weight) < answer]
        return min(candidates + [answer]) - 1e-3
    # the highest unanswerable score that must stay below the clarify threshold, with margin above it
    cut = below[allowed]
    higher = [score for score in (s.confidence(weight) for s in samples) if cut < score < answer]
    return (cut + min(higher)) / 2 if higher else min(answer, cut + 1e-3)


def fit_sparse_weight(samples: Sequence[Sample], l2: float = 1e-3, steps: int = 50) -> float:
    """The mix weight from a logistic regression of right answers vs unanswerable questions on
    (dense cosine, coverage): ``w = b_coverage / (b_dense + b_coverage)``, clipped to 0..1.

    It uses every calibration question, so it varies much less with the sample than a weight
    picked by the tail of a few unanswerable questions (where the thresholds live).
    """
    rows = [s for s in samples if s.top is not None and s.top.dense_score is not None and (s.correct or not s.answerable)]
    if len({s.answerable for s in rows}) < 2:
        return 0.0
    x = np.array([[s.top.dense_score, s.top.coverage] for s in rows], dtype=np.float64)
    y = np.array([1.0 if s.answerable else 0.0 for s in rows])
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([(x - mean) / std, np.ones((len(rows), 1))])
    beta = np.zeros(3)
    for _ in range(steps):  # Newton's method
        p = 1.0 / (1.0 + np.exp(-z @ beta))
        gradient = z.T @ (p - y) + l2 * np.r_[beta[:2], 0.0]
        hessian = (z * (p * (1 - p))[:, None]).T @ z + l2 * np.diag([1.0, 1.0, 0.0])
        beta -= np.linalg.solve(hessian, gradient)
    dense_coef, coverage_coef = max(beta[0] / std[0], 0.0), max(beta[1] / std[1], 0.0)
    if dense_coef + coverage_coef <= 0:
        return 0.0
    return float(np.clip(coverage_coef / (dense_coef + coverage_coef), 0.0, 1.0))


def calibrate_samples(
    samples: Sequence[Sample],
    weights: Sequence[float] = WEIGHTS,
    max_false: float = 0.05,
    max_unanswerable_clarify: float = 0.25,
    dense_available: bool = True,
) -> Calibration:
    if not any(s.answerable for s in samples) or not any(not s.answerable for s in samples):
        raise ValueError("calibration needs answerable and unanswerable questions")
    weights = tuple(weights) if dense_available else (1.0,)
    per_weight = []
    for weight in weights:
        threshold, objective = _answer_threshold(samples, weight, max_false)
        per_weight.append((weight, round(objective, 6), threshold))
    weight = round(fit_sparse_weight(samples), 3) if dense_available else 1.0
    answer, _ = _answer_threshold(samples, weight, max_false)
    clarify = _clarify_threshold(samples, weight, answer, max_unanswerable_clarify)
    correct, wrong, false = _rates(samples, weight, answer)
    answerable = [s for s in samples if s.answerable]
    unanswerable = [s for s in samples if not s.answerable]
    in_band = lambda s: clarify <= s.confidence(weight) < answer  # noqa: E731
    scores = sorted({s.confidence(weight) for s in samples})
    grid = [scores[int(i * (len(scores) - 1) / 10)] for i in range(11)]
    curve = tuple((t, *_rates(samples, weight, t)) for t in sorted(set(grid + [answer, clarify])))
    return Calibration(
        sparse_weight=weight,
        answer=round(answer, 4),
        clarify=round(min(clarify, answer), 4),
        correct_rate=correct,
        wrong_rate=wrong,
        false_rate=false,
        answerable_clarify_rate=sum(1 for s in answerable if in_band(s)) / len(answerable),
        unanswerable_clarify_rate=sum(1 for s in unanswerable if in_band(s)) / len(unanswerable),
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        per_weight=tuple(per_weight),
        curve=curve,
    )


def calibrate(retriever: Retriever, questions: QuestionSet, **options: Any) -> Calibration:
    samples = collect_samples(retriever, questions)
    return calibrate_samples(samples, dense_available=retriever.mode != "sparse", **options)


def format_calibration(calibration: Calibration) -> str:
    lines = [
        f"{calibration.answerable} answerable, {calibration.unanswerable} unanswerable questions.",
        "",
        "For reference, sparse_weight -> objective (answered right - answered wrong) at the best safe threshold:",
        "  " + ", ".join(f"{w:.2f}: {o:.3f}" for w, o, _ in calibration.per_weight),
        "",
        f"Curve at sparse_weight {calibration.sparse_weight:.2f} (answer when confidence >= threshold):",
        "| threshold | answered right | answered wrong | unanswerable answered |",
        "|---|---|---|---|",
    ]
    for threshold, correct, wrong, false in calibration.curve:
        mark = " ← answer" if abs(threshold - calibration.answer) < 1e-9 else (
            " ← clarify" if abs(threshold - calibration.clarify) < 1e-9 else "")
        lines.append(f"| {threshold:.4f}{mark} | {correct:.3f} | {wrong:.3f} | {false:.3f} |")
    lines += [
        "",
        f"Chosen: sparse_weight {calibration.sparse_weight:.2f}, answer >= {calibration.answer:.4f}, "
        f"clarify >= {calibration.clarify:.4f}",
        f"  answerable: {calibration.correct_rate:.3f} answered right, {calibration.wrong_rate:.3f} wrong, "
        f"{calibration.answerable_clarify_rate:.3f} clarify; unanswerable: {calibration.false_rate:.3f} answered, "
        f"{calibration.unanswerable_clarify_rate:.3f} clarify",
    ]
    return "\n".join(lines)


def write_calibration(calibration: Calibration, settings: RagSettings, source: Path, config_path: Path = DEFAULT_CONFIG_PATH) -> None:
    """Stores the weight and thresholds in ``rag.yml`` (round trip: comments and order survive)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML()  # round-trip
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    config_path = Path(config_path)
    data = yaml.load(config_path.read_text(encoding="utf-8")) if config_path.exists() else None
    if data is None:
        data = CommentedMap()
    retrieval = data.setdefault("retrieval", CommentedMap())
    retrieval["sparse_weight"] = float(calibration.sparse_weight)
    thresholds = data.setdefault("thresholds", CommentedMap())
    thresholds["answer"] = float(calibration.answer)
    thresholds["clarify"] = float(calibration.clarify)
    try:
        source_name = str(Path(source).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        source_name = str(source)
    note = (
        f"{time.strftime('%Y-%m-%d')} on {source_name} ({settings.encoder}, {settings.mode}): "
        f"{calibration.correct_rate:.3f} answered right, {calibration.false_rate:.3f} of unanswerable answered"
    )
    if "calibrated" in thresholds:
        thresholds["calibrated"] = note
    else:  # first in the mapping: a comment or blank line after the last key stays where it is
        thresholds.insert(0, "calibrated", note)
    with config_path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)


def load_calibration_set(path: Path) -> QuestionSet:
    return load_question_set(path)
