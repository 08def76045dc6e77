"""engine.loadtest against a scripted REST server on loopback: it counts every turn, and it catches
empty replies, errors and replies that belong to another conversation (the figures the load
benchmark in docs/benchmarks.md rests on)."""
from __future__ import annotations

import asyncio
import json
import re
from typing import Dict, Optional

import pytest
from aiohttp import web

from engine.loadtest import SCRIPTS, judge, percentile, run

ORDER = re.compile(r"^9\d{7}$")


def expected_reply(message: str, last_order: Optional[str]) -> str:
    """A reply containing every fragment the scripts expect for ``message``."""
    for turns in SCRIPTS.values():
        for text, fragments in turns:
            if text == message or (text == "{order}" and ORDER.match(message)):
                return " ".join(fragment.replace("{order}", message if ORDER.match(message) else (last_order or ""))
                                for fragment in fragments) or "ок"
    return "не поняла"


async def serve(behaviour: str) -> web.AppRunner:
    orders: Dict[str, str] = {}
    counter = {"n": 0}

    async def webhook(request: web.Request) -> web.Response:
        body = await request.json()
        sender, message = body["sender"], body["message"]
        counter["n"] += 1
        if ORDER.match(message):
            orders[sender] = message
        if behaviour == "empty" and counter["n"] % 5 == 0:
            return web.json_response([])
        if behaviour == "error" and counter["n"] % 7 == 0:
            return web.Response(status=500, text="boom")
        if behaviour == "crossed" and ORDER.match(message):
            others = [order for who, order in orders.items() if who != sender]
            if others:
                message = others[-1]  # the reply of another conversation
        await asyncio.sleep(0.001)
        return web.json_response([{"recipient_id": sender, "text": expected_reply(message, orders.get(sender))}])

    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def url_of(runner: web.AppRunner) -> str:
    port = runner.addresses[0][1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("behaviour", ["right", "empty", "error", "crossed"])
async def test_the_benchmark_counts_turns_and_catches_bad_replies(behaviour):
    runner = await serve(behaviour)
    try:
        report = await run([url_of(runner)], conversations=4, rounds=1, timeout=10, prefix="t")
    finally:
        await runner.cleanup()
    assert report.conversations == 4 * len(SCRIPTS)
    if behaviour == "right":
        assert report.failed == 0 and report.turns == 4 * sum(len(turns) for turns in SCRIPTS.values())
        assert report.messages_per_second > 0 and 0 < report.p50_ms <= report.p95_ms <= report.max_ms
    else:
        counted = {"empty": report.empty, "error": report.errors, "crossed": report.wrong}[behaviour]
        assert counted > 0 and report.failed == counted, json.dumps(report.examples, ensure_ascii=False)


def test_judge_and_percentile():
    assert judge([{"text": "Не нашла заказ 91234567"}], ("Не нашла заказ 91234567",))[0]
    assert judge([{"text": "Не нашла заказ 97654321"}], ("Не нашла заказ 91234567",))[1] == "wrong"
    assert judge([], ("x",))[1] == "empty"
    assert judge({"oops": 1}, ("x",))[1] == "error"
    assert judge([{"text": "3\u00a0000 ₽"}], ("3 000 ₽",))[0]  # no-break spaces in money
    assert percentile([], 0.95) == 0.0
    assert percentile(list(range(1, 101)), 0.95) == 95 and percentile([5.0], 0.5) == 5.0
