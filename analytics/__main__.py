"""``python -m analytics report [--since 7d] [--until …] [--csv | --json] [--conversations]``
``python -m analytics demo [--url http://localhost:5005]``

``report`` prints the metrics of the conversations that started in the period (README «Analytics»
defines every number), per topic, with the autonomy advice next to each topic's copilot mode.
``demo`` plays scripted conversations through the running stack (analytics.demo) so that a fresh
install has something to show; the numbers then come from those conversations.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Any, Dict, List, Optional

from analytics.metrics import Report, TopicMetrics

CSV_COLUMNS = [
    "topic", "conversations", "finished", "in_progress", "resolved_confirmed", "resolved_assumed", "handed_over",
    "unresolved", "abandoned", "abandoned_mid_flow", "spam", "wrong_address", "resolution_rate",
    "confirmed_resolution_rate", "handover_rate", "turns_to_resolution_mean", "turns_to_resolution_median",
    "first_reply_seconds_median", "first_reply_seconds_p95", "fallback_rate", "kb_answered", "kb_clarified",
    "kb_not_answered", "clarification_rate", "csat_mean", "csat_ratings", "operator_minutes", "cost_per_conversation",
    "drafts", "like_rate", "as_is_share", "mean_edit_distance", "mode", "advice",
]


def _row(metrics: TopicMetrics) -> Dict[str, Any]:
    data = metrics.to_dict()
    copilot = data.pop("copilot") or {}
    advice = data.pop("advice") or {}
    row = {key: data.get(key) for key in CSV_COLUMNS if key in data}
    row.update(drafts=copilot.get("drafts"), like_rate=copilot.get("like_rate"), as_is_share=copilot.get("as_is_share"),
               mean_edit_distance=copilot.get("mean_edit_distance"), advice=advice.get("recommendation"))
    return row


def to_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for metrics in [report.overall, *report.topics]:
        writer.writerow(_row(metrics))
    return buffer.getvalue()


def _pct(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.0%}"


def _num(value: Optional[float], unit: str = "") -> str:
    return "—" if value is None else f"{value:g}{unit}"


def to_table(report: Report) -> str:
    o = report.overall
    period = f"{report.since or 'the beginning'} … {report.until or 'now'}"
    lines = [
        f"Conversations started {period} (a conversation is finished after {report.session_timeout_minutes:g} min "
        "of silence)",
        f"  {o.conversations} conversations: {o.finished} finished, {o.in_progress} in progress; {o.needing_help} needed help "
        f"(spam {o.spam}, wrong address {o.wrong_address})",
        f"  resolution {_pct(o.resolution_rate)} — confirmed {o.resolved_confirmed} ({_pct(o.confirmed_resolution_rate)}), "
        f"assumed {o.resolved_assumed}; handed over {o.handed_over} ({_pct(o.handover_rate)}) "
        + (", ".join(f"{rule} {count}" for rule, count in o.handed_over_by_rule.items()) or ""),
        f"  not resolved {o.unresolved}, abandoned {o.abandoned} ({o.abandoned_mid_flow} mid-flow); "
        f"turns to resolution mean {_num(o.turns_to_resolution_mean)} / median {_num(o.turns_to_resolution_median)}; "
        f"first reply median {_num(o.first_reply_seconds_median, ' s')}, p95 {_num(o.first_reply_seconds_p95, ' s')}",
        f"  fallback {_pct(o.fallback_rate)} of messages; knowledge base answered {o.kb_answered}, clarified "
        f"{o.kb_clarified}, no answer {o.kb_not_answered}; CSAT {_num(o.csat_mean)} ({o.csat_ratings} ratings); "
        f"cost {_num(o.cost_per_conversation, ' ₽')}/conversation (operators {o.operator_minutes:g} min)",
        "",
    ]
    header = ["topic", "conv", "resolved", "res%", "handover%", "turns", "1st reply", "fallback%", "CSAT",
              "₽/conv", "drafts", "like%", "mode → advice"]
    rows: List[List[str]] = [header]
    for t in report.topics:
        advice = (t.advice or {}).get("recommendation") or "—"
        rows.append([
            t.topic, str(t.conversations), f"{t.resolved_confirmed}+{t.resolved_assumed}", _pct(t.resolution_rate),
            _pct(t.handover_rate), _num(t.turns_to_resolution_median), _num(t.first_reply_seconds_median, " s"),
            _pct(t.fallback_rate), _num(t.csat_mean), _num(t.cost_per_conversation),
            str(t.copilot.get("drafts", 0)), _pct(t.copilot.get("like_rate")), f"{t.mode or '—'} → {advice}",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analytics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="the metrics of a period")
    report.add_argument("--since", default=None, help="7d, 12h, 2026-12-01… (default: everything)")
    report.add_argument("--until", default=None, help="as --since (default: now)")
    shape = report.add_mutually_exclusive_group()
    shape.add_argument("--csv", action="store_true", help="one row per topic (and «all») as CSV")
    shape.add_argument("--json", action="store_true", help="the whole report as JSON")
    report.add_argument("--conversations", action="store_true", help="with --json: each conversation's outcome")
    demo = commands.add_parser("demo", help="play scripted conversations through the running stack")
    demo.add_argument("--url", default="http://localhost:5005", help="the Rasa server (default %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from analytics.demo import main as demo_main

        return demo_main(args.url)
    from analytics.service import make_report

    try:
        made = make_report(since=args.since, until=args.until, with_conversations=args.conversations)
    except ValueError as error:
        print(f"✗ {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(made.to_dict(), ensure_ascii=False, indent=2))
    elif args.csv:
        print(to_csv(made), end="")
    else:
        print(to_table(made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
