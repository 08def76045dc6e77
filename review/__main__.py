"""The review loop from the command line.

    python -m review add "<text>" <intent> [--entity entity:start:end ...] [--reviewer NAME]
    python -m review remove "<text>"
    python -m review list [--intent INTENT]
    python -m review evaluate <model.tar.gz> [--root DIR] [--json] [--output FILE]
    python -m review retrain [--no-load] [--json]
    python -m review status

``add`` / ``remove`` / ``list`` work on ``data/nlu/reviewed/`` of ``REVIEW_PROJECT_ROOT`` (this
checkout); ``retrain`` runs a job in the foreground with the console's settings
(``review.retrain.RetrainSettings``) and the console's lock, so it cannot overlap one started
there. Exit codes: 0 done (``loaded`` / ``accepted``), 1 refused or ``rejected``, 2 failed.
"""
from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _quiet_rasa() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    configure_logging_and_warnings(logging.WARNING)
    configure_structlog(logging.WARNING)


def _root(value: Optional[str]) -> Path:
    from engine.settings import PROJECT_ROOT

    return Path(value or os.environ.get("REVIEW_PROJECT_ROOT") or PROJECT_ROOT).expanduser().resolve()


def _entities(text: str, specs: Sequence[str]) -> List[Dict[str, Any]]:
    found = []
    for spec in specs:
        try:
            name, start, end = spec.rsplit(":", 2)
            found.append({"entity": name, "start": int(start), "end": int(end), "value": text[int(start):int(end)]})
        except ValueError:
            raise SystemExit(f"--entity must be entity:start:end, got {spec!r}")
    return found


def _table(status: Dict[str, Any]) -> str:
    def pct(result: Optional[Dict[str, Any]], key: str) -> str:
        value = (result or {}).get(key)
        return "—" if value is None else f"{value * 100:.1f} %"

    lines = [f"state        {status.get('state')}"]
    for key in ("reason", "model", "candidate", "current_model", "started_at", "finished_at", "elapsed_seconds"):
        if status.get(key) not in (None, ""):
            lines.append(f"{key:<12} {status[key]}")
    if status.get("before") or status.get("after"):
        lines.append(f"{'':<24}{'before':>10}{'after':>10}")
        for label, key in (("held-out intent accuracy", "intent_accuracy"), ("out-of-scope refused", "oos_rate")):
            lines.append(f"{label:<24}{pct(status.get('before'), key):>10}{pct(status.get('after'), key):>10}")
    if status.get("loaded_on"):
        lines.append(f"loaded on    {', '.join(status['loaded_on'])}")
    return "\n".join(lines)


EXIT = {"loaded": 0, "accepted": 0, "idle": 0, "rejected": 1, "failed": 2}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m review", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add a reviewed training example")
    add.add_argument("text")
    add.add_argument("intent")
    add.add_argument("--entity", action="append", default=[], metavar="ENTITY:START:END")
    add.add_argument("--reviewer", default=None)
    add.add_argument("--root", default=None)
    remove = commands.add_parser("remove", help="take a reviewed example out again")
    remove.add_argument("text")
    remove.add_argument("--root", default=None)
    listing = commands.add_parser("list", help="the reviewed examples")
    listing.add_argument("--intent", default=None)
    listing.add_argument("--root", default=None)
    listing.add_argument("--json", action="store_true")
    evaluate = commands.add_parser("evaluate", help="held-out accuracy of a model")
    evaluate.add_argument("model")
    evaluate.add_argument("--root", default=None)
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument("--output", default=None, help="write the JSON result to this file")
    retrain = commands.add_parser("retrain", help="train, evaluate, load if not worse")
    retrain.add_argument("--no-load", action="store_true", help="do not load the new model into the servers")
    retrain.add_argument("--json", action="store_true")
    commands.add_parser("status", help="the last (or running) retrain")
    args = parser.parse_args(argv)

    if args.command in ("add", "remove", "list"):
        from review.training import ReviewedData, ReviewRefused

        data = ReviewedData(_root(args.root))
        if args.command == "add":
            try:
                example = data.add(args.text, args.intent, entities=_entities(args.text, args.entity),
                                   reviewer=args.reviewer or getpass.getuser())
            except ReviewRefused as error:
                print(f"refused ({error.code}): {error}", file=sys.stderr)
                return 1
            _print_json(example.to_dict())
            return 0
        if args.command == "remove":
            removed = data.remove(args.text)
            if removed is None:
                print("not a reviewed example", file=sys.stderr)
                return 1
            _print_json(removed.to_dict())
            return 0
        examples = data.reviewed(args.intent)
        if args.json:
            _print_json([example.to_dict() for example in examples])
        else:
            for example in examples:
                print(f"{example.intent:<28} {example.text}")
        return 0

    if args.command == "evaluate":
        _quiet_rasa()
        from review.evaluate import heldout_accuracy, table

        result = heldout_accuracy(Path(args.model), _root(args.root))
        if args.output:
            Path(args.output).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
        if args.json:
            _print_json(result)
        elif not args.output:
            print(table(result))
        return 0

    from review.retrain import Retrainer, RetrainBusy

    retrainer = Retrainer.from_env()
    if args.command == "status":
        status = retrainer.status()
        _print_json(status)
        return EXIT.get(status.get("state"), 0)
    last_line = {"value": ""}

    def show(status: Dict[str, Any]) -> None:
        progress = f" {status['progress'] * 100:.0f} %" if status.get("progress") is not None else ""
        line = f"[{status['state']}{progress}] {status.get('step') or ''} {status.get('elapsed_seconds', 0):.0f} s"
        if line != last_line["value"] and not args.json:
            print(line, file=sys.stderr, flush=True)
            last_line["value"] = line

    try:
        status = retrainer.run(requested_by=getpass.getuser(), load=not args.no_load, on_change=show)
    except RetrainBusy as error:
        print(str(error), file=sys.stderr)
        return 1
    if args.json:
        _print_json(status)
    else:
        print(_table(status))
    return EXIT.get(status.get("state"), 2)


if __name__ == "__main__":
    sys.exit(main())
