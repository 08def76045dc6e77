"""Retrieval and answering quality on a golden question set.

    python -m rag evaluate [--golden tests/data/rag_golden.yml] [--encoder usem3] [--output results/rag_eval.json]

In one run, on one freshly built in-memory index of the knowledge base:

* sparse-only, dense-only and hybrid retrieval side by side — article-level recall@1/3/5 and
  MRR on the answerable questions, and retrieval latency p50/p95;
* the whole ``KnowledgeService`` turn with the configured thresholds and answerer — the share of
  answerable questions answered from the right article, the share of unanswerable questions
  answered anyway (false answers), clarify / no-answer shares, and turn latency p50/p95.

Prints a Markdown table and writes the numbers (and the misses) as JSON.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from rag.components import build_dense, build_retriever, build_sparse
from rag.datasets import QuestionSet, load_question_set, percentile
from rag.documents import load_articles
from rag.index import QdrantIndex
from rag.ingest import IngestReport, ingest_kb
from rag.retriever import MODES, Retriever
from rag.service import ANSWERED, KnowledgeService
from rag.settings import PROJECT_ROOT, RagSettings

logger = logging.getLogger(__name__)

DEFAULT_GOLDEN = PROJECT_ROOT / "tests" / "data" / "rag_golden.yml"
DEFAULT_OUTPUT = PROJECT_ROOT / "results" / "rag_eval.json"
# chunks fetched per query for the ranking metrics (enough for five distinct articles)
RANKING_DEPTH = 30


@dataclass
class Bench:
    """An index of the knowledge base built once, with a retriever on it."""

    settings: RagSettings
    index: QdrantIndex
    retriever: Retriever
    ingest: IngestReport

    def service(self) -> KnowledgeService:
        return KnowledgeService(self.settings, retriever=self.retriever)

    def close(self) -> None:
        self.index.close()


def build_bench(settings: RagSettings, progress: bool = False) -> Bench:
    """An in-memory index of ``settings.kb_dir`` (leaves the on-disk index alone)."""
    index = QdrantIndex.in_memory(settings.collection_name)
    dense, sparse = build_dense(settings), build_sparse(settings)
    report = ingest_kb(
        index, settings.kb_dir, dense, sparse, max_chars=settings.max_chunk_chars,
        min_chars=settings.min_chunk_chars, progress=progress,
    )
    retriever = build_retriever(settings, index, dense, sparse)
    retriever.retrieve("прогрев")  # loads the query encoder and the statistics
    return Bench(settings, index, retriever, report)


def rank_of(article_ids: Sequence[str], gold: str) -> Optional[int]:
    """1-based rank of ``gold`` among the retrieved articles, None when missing."""
    for rank, article_id in enumerate(article_ids, start=1):
        if article_id == gold:
            return rank
    return None


def ranking_metrics(ranks: Sequence[Optional[int]]) -> Dict[str, float]:
    n = max(len(ranks), 1)
    return {
        "recall@1": sum(1 for r in ranks if r is not None and r <= 1) / n,
        "recall@3": sum(1 for r in ranks if r is not None and r <= 3) / n,
        "recall@5": sum(1 for r in ranks if r is not None and r <= 5) / n,
        "mrr": sum(1.0 / r for r in ranks if r is not None) / n,
    }


def evaluate_retrieval(bench: Bench, questions: QuestionSet, modes: Sequence[str] = MODES) -> Dict[str, Any]:
    results: Dict[str, Any] = {}
    for mode in modes:
        ranks, seconds, misses = [], [], []
        for question, gold in questions.answerable:
            retrieval = bench.retriever.retrieve(question, mode=mode, limit=RANKING_DEPTH)
            rank = rank_of(retrieval.article_ids(), gold)
            ranks.append(rank)
            seconds.append(retrieval.seconds)
            if rank != 1:
                misses.append({"question": question, "article": gold, "rank": rank, "top": retrieval.article_ids()[:3]})
        results[mode] = {
            **ranking_metrics(ranks),
            "latency_ms_p50": percentile(seconds, 50) * 1000,
            "latency_ms_p95": percentile(seconds, 95) * 1000,
            "misses": misses,
        }
    return results


def evaluate_service(service: KnowledgeService, questions: QuestionSet) -> Dict[str, Any]:
    counts = {"answered_correct": 0, "answered_wrong": 0, "clarify": 0, "no_answer": 0}
    unanswerable = {"answered": 0, "clarify": 0, "no_answer": 0}
    seconds: List[float] = []
    wrong, false_answers, missed = [], [], []
    for question, gold in questions.answerable:
        started = time.perf_counter()
        result = service.answer(question)
        seconds.append(time.perf_counter() - started)
        if result.status == ANSWERED:
            if result.article_id == gold:
                counts["answered_correct"] += 1
            else:
                counts["answered_wrong"] += 1
                wrong.append({"question": question, "article": gold, "answered_from": result.article_id, "score": result.score})
        else:
            counts[result.status] += 1
            missed.append({"question": question, "article": gold, "status": result.status, "score": result.score, "top": result.article_id})
    for question in questions.unanswerable:
        started = time.perf_counter()
        result = service.answer(question)
        seconds.append(time.perf_counter() - started)
        unanswerable[result.status] += 1
        if result.status == ANSWERED:
            false_answers.append({"question": question, "answered_from": result.article_id, "score": result.score})
    n_a, n_u = max(len(questions.answerable), 1), max(len(questions.unanswerable), 1)
    return {
        "answerable": len(questions.answerable),
        "unanswerable": len(questions.unanswerable),
        "correct_answer_rate": counts["answered_correct"] / n_a,
        "wrong_answer_rate": counts["answered_wrong"] / n_a,
        "answerable_clarify_rate": counts["clarify"] / n_a,
        "answerable_no_answer_rate": counts["no_answer"] / n_a,
        "false_answer_rate": unanswerable["answered"] / n_u,
        "unanswerable_clarify_rate": unanswerable["clarify"] / n_u,
        "unanswerable_no_answer_rate": unanswerable["no_answer"] / n_u,
        "turn_latency_ms_p50": percentile(seconds, 50) * 1000,
        "turn_latency_ms_p95": percentile(seconds, 95) * 1000,
        "wrong_answers": wrong,
        "false_answers": false_answers,
        "not_answered": missed,
    }


def evaluate(settings: RagSettings, golden: Path, modes: Sequence[str] = MODES, progress: bool = False) -> Dict[str, Any]:
    questions = load_question_set(golden)
    unknown = questions.check_articles(article.id for article in load_articles(settings.kb_dir))
    if unknown:
        raise ValueError(f"{golden} refers to articles that are not in {settings.kb_dir}: {', '.join(unknown)}")
    bench = build_bench(settings, progress=progress)
    try:
        retrieval = evaluate_retrieval(bench, questions, modes)
        service = evaluate_service(bench.service(), questions)
    finally:
        bench.close()
    return {
        "date": time.strftime("%Y-%m-%d"),
        "golden": _relative(golden),
        "kb_dir": _relative(settings.kb_dir),
        "articles": bench.ingest.articles,
        "chunks": bench.ingest.chunks,
        "ingest_seconds": round(bench.ingest.seconds, 2),
        "settings": {
            "encoder": settings.encoder, "encoder_model": settings.encoder_model, "mode": settings.mode,
            "answerer": settings.answerer, "max_chunk_chars": settings.max_chunk_chars,
            "bm25": {"k1": settings.bm25_k1, "b": settings.bm25_b, "avg_len": settings.bm25_avg_len},
            "sparse_weight": settings.sparse_weight,
            "thresholds": {"answer": settings.answer_threshold, "clarify": settings.clarify_threshold},
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "retrieval": retrieval,
        "service": service,
    }


def format_report(report: Dict[str, Any]) -> str:
    retrieval, service = report["retrieval"], report["service"]
    modes = [mode for mode in MODES if mode in retrieval]
    lines = [
        f"Golden set {report['golden']}: {service['answerable']} answerable, {service['unanswerable']} unanswerable; "
        f"KB {report['kb_dir']}: {report['articles']} articles, {report['chunks']} chunks; "
        f"encoder {report['settings']['encoder']}, answerer {report['settings']['answerer']}.",
        "",
        "| retrieval (article level) | " + " | ".join(modes) + " |",
        "|---|" + "---|" * len(modes),
    ]
    for key in ("recall@1", "recall@3", "recall@5", "mrr"):
        lines.append(f"| {key} | " + " | ".join(f"{retrieval[m][key]:.3f}" for m in modes) + " |")
    lines.append(
        "| latency p50 / p95, ms | "
        + " | ".join(f"{retrieval[m]['latency_ms_p50']:.1f} / {retrieval[m]['latency_ms_p95']:.1f}" for m in modes)
        + " |"
    )
    thresholds = report["settings"]["thresholds"]
    lines += [
        "",
        f"| KnowledgeService ({report['settings']['mode']}, answer ≥ {thresholds['answer']:.3f}, "
        f"clarify ≥ {thresholds['clarify']:.3f}) | value |",
        "|---|---|",
        f"| answerable: answered from the right article | {service['correct_answer_rate']:.3f} |",
        f"| answerable: answered from a wrong article | {service['wrong_answer_rate']:.3f} |",
        f"| answerable: clarify / no answer | {service['answerable_clarify_rate']:.3f} / {service['answerable_no_answer_rate']:.3f} |",
        f"| unanswerable: answered (false answers) | {service['false_answer_rate']:.3f} |",
        f"| unanswerable: clarify / no answer | {service['unanswerable_clarify_rate']:.3f} / {service['unanswerable_no_answer_rate']:.3f} |",
        f"| turn latency p50 / p95, ms | {service['turn_latency_ms_p50']:.1f} / {service['turn_latency_ms_p95']:.1f} |",
    ]
    return "\n".join(lines)


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def write_report(report: Dict[str, Any], output: Path) -> None:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
