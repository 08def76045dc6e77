"""Load benchmark: scripted multi-turn conversations against a running stack's REST channel.

Starts nothing itself: run the stack first (``./scripts/run.sh``, or the scale-out profile), then

    python -m engine.loadtest --conversations 50                 # 50 conversations at a time
    python -m engine.loadtest --conversations 200 --rounds 2
    python -m engine.loadtest --url http://127.0.0.1:5006 --url http://127.0.0.1:5007   # spread turns over replicas

Each of ``--conversations`` workers plays every script of :data:`SCRIPTS` (refund, resend, balance,
knowledge questions, small talk) ``--rounds`` times, one conversation after another, each with a
new sender id. Every reply is checked against the fragments its turn expects; the refund and resend
scripts also give an unknown order number of their own (``9xxxxxxx``) that the bot repeats, so a
reply that reached the wrong conversation is caught, not just counted. The scripts only read the
back office (no refund or resend is made), so the benchmark can be repeated on the demo data.

``--think`` makes each customer pause that long (± 50 %, seeded) after a reply before the next
message, as people do while they type; with ``--think 0`` (the default) every worker sends as
fast as the stack answers, which measures saturation throughput (and latency is then mostly
queueing: ``conversations / throughput``).

Prints msg/s, latency p50 / p95 / max, errors (HTTP failures, timeouts), empty replies (no message
where one was expected) and crossed or wrong replies; ``--json`` prints the same as JSON. The exit
code is 1 when any turn failed.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import random
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

#: a turn: what the customer says and the fragments the bot's replies must contain
#: (``{order}`` is replaced by the conversation's own unknown order number)
Turn = Tuple[str, Tuple[str, ...]]

SCRIPTS: Dict[str, Tuple[Turn, ...]] = {
    "refund": (
        ("хочу вернуть деньги", ("номер заказа",)),
        ("{order}", ("Не нашла заказ {order}",)),
        ("40817358", ("e-mail покупателя",)),
        ("olga@mail.ru", ("2 000 ₽", "Оформить возврат?")),
        ("нет", ("не оформляю",)),
    ),
    "resend": (
        ("не пришел сертификат", ("номер заказа",)),
        ("{order}", ("Не нашла заказ {order}",)),
        ("40817325", ("адрес из заказа",)),
        ("да", ("дневной лимит",)),
    ),
    "balance": (
        ("хочу проверить баланс сертификата", ("DRM-XXXX-XXXX-XXXX",)),
        ("drm a1b2 c3d4 7q2k", ("PIN-код",)),
        ("1234", ("DRM-****-****-7Q2K",)),
    ),
    "knowledge": (
        ("сколько действует сертификат?", ("12 месяцев",)),
        ("а есть пластиковые сертификаты?", ("пластиковые",)),
    ),
    "small_talk": (
        ("привет", ("",)),
        ("ты бот?", ("виртуальный ассистент",)),
        ("спасибо", ("Рада помочь",)),
    ),
}


@dataclass
class TurnResult:
    script: str
    sender: str
    latency: float
    ok: bool
    problem: Optional[str] = None  # "error" | "empty" | "wrong"
    detail: str = ""


@dataclass
class Report:
    conversations: int
    turns: int
    seconds: float
    messages_per_second: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    errors: int
    empty: int
    wrong: int
    think_seconds: float = 0.0
    urls: List[str] = field(default_factory=list)
    examples: List[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.errors + self.empty + self.wrong


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered) - 1e-9))  # the smallest value ≥ that share of all
    return ordered[min(rank, len(ordered)) - 1]


def normalise(text: str) -> str:
    return text.replace("\u00a0", " ")  # money has no-break spaces


def judge(replies: object, expected: Sequence[str]) -> Tuple[bool, Optional[str], str]:
    """→ (ok, problem, what was said) for one turn's REST reply."""
    if not isinstance(replies, list):
        return False, "error", f"not a list of messages: {str(replies)[:200]}"
    said = " | ".join(normalise(str(reply.get("text") or "")) for reply in replies if isinstance(reply, dict))
    if not replies or not said.strip():
        return False, "empty", "no message"
    missing = [fragment for fragment in expected if normalise(fragment) not in said]
    if missing:
        return False, "wrong", f"«{missing[0]}» not in «{said[:300]}»"
    return True, None, said


class UniqueOrders:
    """Unknown 8-digit order numbers, one per conversation (the bot repeats them)."""

    def __init__(self) -> None:
        self._numbers = itertools.count(int(uuid.uuid4().int % 9_000_000))

    def next(self) -> str:
        return f"9{next(self._numbers) % 10_000_000:07d}"


async def play(
    session: "aiohttp.ClientSession",  # noqa: F821
    urls: Sequence[str],
    script: str,
    sender: str,
    order: str,
    offset: int,
    timeout: float,
    think: float = 0.0,
    rng: Optional[random.Random] = None,
) -> List[TurnResult]:
    import aiohttp

    results: List[TurnResult] = []
    for index, (text, expected) in enumerate(SCRIPTS[script]):
        if think > 0 and index > 0:
            await asyncio.sleep(think * (0.5 + (rng or random).random()))
        url = urls[(offset + index) % len(urls)]
        message = text.replace("{order}", order)
        wanted = tuple(fragment.replace("{order}", order) for fragment in expected if fragment)
        started = time.perf_counter()
        try:
            async with session.post(
                f"{url}/webhooks/rest/webhook",
                json={"sender": sender, "message": message},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                body = await response.text()
                status = response.status
            latency = time.perf_counter() - started
            if status != 200:
                results.append(TurnResult(script, sender, latency, False, "error", f"HTTP {status}: {body[:200]}"))
                break
            ok, problem, detail = judge(json.loads(body) if body else [], wanted)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
            latency = time.perf_counter() - started
            results.append(TurnResult(script, sender, latency, False, "error", f"{type(error).__name__}: {error}"))
            break
        results.append(TurnResult(script, sender, latency, ok, problem, f"> {message}\n< {detail}"))
        if not ok:
            break  # the rest of this conversation would only repeat the failure
    return results


async def run(
    urls: Sequence[str], conversations: int, rounds: int, timeout: float, prefix: str, think: float = 0.0, seed: int = 7
) -> Report:
    import aiohttp

    orders = UniqueOrders()
    results: List[TurnResult] = []
    played = 0

    async def worker(number: int) -> None:
        nonlocal played
        names = list(SCRIPTS)
        rng = random.Random(seed * 100_003 + number)
        if think > 0:  # the customers do not all arrive in the same instant
            await asyncio.sleep(think * rng.random())
        for round_number in range(rounds):
            for step in range(len(names)):
                script = names[(number + step) % len(names)]  # workers start on different scripts
                sender = f"{prefix}-{number}-{round_number}-{script}-{uuid.uuid4().hex[:6]}"
                results.extend(await play(session, urls, script, sender, orders.next(), number, timeout, think, rng))
                played += 1

    connector = aiohttp.TCPConnector(limit=conversations + 8)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(number) for number in range(conversations)))
        seconds = time.perf_counter() - started

    latencies = [result.latency for result in results]
    failures = [result for result in results if not result.ok]
    return Report(
        conversations=played,
        turns=len(results),
        seconds=round(seconds, 2),
        messages_per_second=round(len(results) / seconds, 1) if seconds else 0.0,
        p50_ms=round(percentile(latencies, 0.50) * 1000, 1),
        p95_ms=round(percentile(latencies, 0.95) * 1000, 1),
        max_ms=round(max(latencies, default=0.0) * 1000, 1),
        errors=sum(1 for result in failures if result.problem == "error"),
        empty=sum(1 for result in failures if result.problem == "empty"),
        wrong=sum(1 for result in failures if result.problem == "wrong"),
        think_seconds=think,
        urls=list(urls),
        examples=[f"[{result.problem}] {result.script} {result.sender}: {result.detail}" for result in failures[:5]],
    )


def print_report(report: Report, concurrency: int) -> None:
    print(
        f"concurrent conversations {concurrency} · think {report.think_seconds} s · conversations {report.conversations} · turns {report.turns} "
        f"in {report.seconds} s\n"
        f"  throughput   {report.messages_per_second} msg/s\n"
        f"  latency      p50 {report.p50_ms} ms · p95 {report.p95_ms} ms · max {report.max_ms} ms\n"
        f"  failures     errors {report.errors} · empty replies {report.empty} · crossed/wrong replies {report.wrong}\n"
        f"  against      {', '.join(report.urls)}"
    )
    for example in report.examples:
        print("  ✗ " + example.replace("\n", "\n      "))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", action="append", help="a Rasa server (repeat to spread turns over replicas); "
                                                       "default http://127.0.0.1:5005")
    parser.add_argument("--conversations", type=int, default=50, help="conversations in flight at a time (50)")
    parser.add_argument("--rounds", type=int, default=1, help="how many times each worker plays every script (1)")
    parser.add_argument("--think", type=float, default=0.0, help="seconds a customer pauses between turns (0)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a turn may take before it is an error")
    parser.add_argument("--warmup", type=int, default=1, help="conversations played first and not measured (1)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.conversations < 1 or args.rounds < 1:
        parser.error("--conversations and --rounds must be at least 1")
    urls = [url.rstrip("/") for url in (args.url or ["http://127.0.0.1:5005"])]
    prefix = f"load-{uuid.uuid4().hex[:8]}"
    if args.warmup:
        asyncio.run(run(urls, args.warmup, 1, args.timeout, prefix + "-warmup"))
    report = asyncio.run(run(urls, args.conversations, args.rounds, args.timeout, prefix, args.think))
    if args.json:
        print(json.dumps({**asdict(report), "concurrency": args.conversations}, ensure_ascii=False, indent=2))
    else:
        print_report(report, args.conversations)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
