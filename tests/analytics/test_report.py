"""The report over real databases — the event broker's table and the hand-over core — with every
number checked exactly; the autonomy advice; the CLI's table, CSV and JSON."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from analytics import __main__ as cli
from analytics.metrics import AUTONOMOUS, COPILOT, MORE_DATA, advise, wilson_lower_bound
from analytics.service import make_report, parse_moment
from analytics.settings import AnalyticsSettings
from engine.event_broker import MaskedSQLEventBroker
from handoff.copilot import Copilot, CopilotModes, Draft
from handoff.machine import HandoffService
from handoff.settings import HandoffSettings
from tests.analytics.builder import Stream
from tests.analytics.test_outcomes import refund_completed

START = 1_796_000_000.0  # 2026-11-30


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.at, tz=timezone.utc)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Six conversations on the stream and the hand-over core: confirmed (rated 5), assumed,
    handed over (insisted), a copilot hand-over, spam, abandoned mid-flow; an operator's 6 minutes."""
    events_url, handoff_url = f"sqlite:///{tmp_path / 'events.db'}", f"sqlite:///{tmp_path / 'handoff.db'}"
    broker = MaskedSQLEventBroker(host=events_url)
    streams = []
    confirmed = refund_completed()
    confirmed.sender = "confirmed"
    confirmed.ask_feedback().user("/feedback_resolved", "feedback_resolved").slot("feedback_rating", 5.0)
    streams.append(confirmed)
    assumed = Stream("assumed", START + 100).user("сколько действует сертификат?", "knowledge_question").kb()
    streams.append(assumed)
    human = Stream("human", START + 200).user("позовите оператора", "request_human").bot("utter_request_human_clarify")
    human.user("оператора!", "request_human").handover("insisted_on_human")
    streams.append(human)
    streams.append(Stream("spam", START + 300).user("Купите!", "spam"))
    abandoned = Stream("abandoned", START + 400).user("хочу вернуть деньги", "refund_request").action("refund_form")
    streams.append(abandoned.form("refund_form").bot("utter_ask_order_id"))
    for stream in streams:
        for event in stream.events_list():
            broker.publish({**event, "sender_id": stream.sender})
    broker.engine.dispose()
    clock = Clock(START + 500)
    service = HandoffService.from_settings(HandoffSettings(database_url=handoff_url), clock=clock)
    service.customer_message("b2b", "нужны закрывающие документы")
    service.hand_over("b2b", None, {"intent": "b2b_documents"}, [], reason="copilot topic b2b_documents")
    clock.at += 60
    service.take("b2b", "anna")
    copilot = Copilot(service, CopilotModes())
    for number in range(25):
        ref = copilot.draft_shown("b2b", "anna", Draft("Напишите ИНН", 0.9, "scenario:b2b_form", "b2b_documents"))
        copilot.rate(ref.id, "anna", "like" if number < 24 else "dislike")
    clock.at += 6 * 60
    service.return_to_bot("b2b", "anna")
    service.session_factory.kw["bind"].dispose()
    monkeypatch.setenv("HANDOFF_MODES_FILE", str(tmp_path / "copilot.yml"))
    (tmp_path / "copilot.yml").write_text("default: autonomous\ntopics:\n  b2b_documents: copilot\n", encoding="utf-8")
    settings = AnalyticsSettings(events_url, handoff_url, session_timeout_minutes=30, operator_cost_per_minute=10,
                                 bot_cpu_seconds_per_message=36, cpu_cost_per_hour=100)
    now = datetime.fromtimestamp(START + 4 * 3600, tz=timezone.utc)
    return settings, now


def test_every_number_of_the_report(world):
    settings, now = world
    report = make_report(settings, now=now, with_conversations=True)
    o = report.overall
    outcomes = {c["sender_id"]: c["outcome"] for c in report.conversations}
    assert outcomes == {"confirmed": "resolved_confirmed", "assumed": "resolved_assumed", "human": "handed_over",
                        "spam": "spam", "abandoned": "abandoned", "b2b": "handed_over"}
    assert (o.conversations, o.finished, o.needing_help, o.in_progress) == (6, 6, 5, 0)
    assert (o.resolved_confirmed, o.resolved_assumed, o.handed_over, o.abandoned, o.abandoned_mid_flow) == (1, 1, 2, 1, 1)
    assert o.handed_over_by_rule == {"copilot": 1, "insisted_on_human": 1}
    assert (o.resolution_rate, o.confirmed_resolution_rate, o.handover_rate) == (0.4, 0.2, 0.4)
    assert (o.turns_to_resolution_mean, o.turns_to_resolution_median) == (2.5, 2.5)  # 4 (refund) and 1 (answer)
    assert (o.csat_mean, o.csat_ratings, o.csat_distribution["5"]) == (5, 1, 1)
    assert o.customer_messages == 5 + 1 + 2 + 1 + 1  # the copilot message never reached the dialogue
    assert o.operator_minutes == 6.0
    # 10 messages × 36 CPU-s × 100 ₽/h = 10 ₽ of bot; 6 min × 10 ₽ of operator; over 6 conversations
    assert (o.cost_bot, o.cost_operators, o.cost_per_conversation) == (10.0, 60.0, round(70 / 6, 4))
    topics = {t.topic: t for t in report.topics}
    assert set(topics) == {"refund_request", "knowledge_question", "request_human", "spam", "b2b_documents"}
    b2b = topics["b2b_documents"]
    assert (b2b.conversations, b2b.mode, b2b.copilot["rated"], b2b.copilot["likes"]) == (1, "copilot", 25, 24)
    assert b2b.advice["recommendation"] == AUTONOMOUS and b2b.advice["like_rate_lower_bound"] >= 0.8
    assert topics["refund_request"].advice["recommendation"] == MORE_DATA
    assert [d["conversations"] for d in report.days] == [6]


def test_the_period_and_the_timeout(world):
    settings, now = world
    assert make_report(settings, now=now, since="2026-12-01").overall.conversations == 0
    assert make_report(settings, now=now, since="5h").overall.conversations == 6
    early = make_report(settings, now=datetime.fromtimestamp(START + 600, tz=timezone.utc))
    assert early.overall.in_progress == 2  # assumed and abandoned are not over yet; the answered, spam and hand-overs are


def test_parse_moment():
    now = datetime(2026, 12, 6, 12, tzinfo=timezone.utc)
    assert parse_moment("7d", now) == now - timedelta(days=7)
    assert parse_moment("2026-12-01", now) == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert parse_moment(None, now) is None
    with pytest.raises(ValueError, match="7d"):
        parse_moment("last tuesday", now)


def test_the_autonomy_rule():
    assert wilson_lower_bound(0, 0) is None
    assert wilson_lower_bound(24, 25) == pytest.approx(0.8046, abs=1e-3)
    assert advise(19, 19, 20, 0.8).recommendation == MORE_DATA
    assert advise(25, 24, 20, 0.8).recommendation == AUTONOMOUS
    assert advise(25, 20, 20, 0.8).recommendation == COPILOT  # 80 % liked, but the bound is far lower


def test_the_cli(world, monkeypatch, capsys):
    settings, now = world
    monkeypatch.setattr("analytics.service.AnalyticsSettings.from_env", lambda *a, **k: settings)
    real = make_report
    monkeypatch.setattr("analytics.service.make_report", lambda **kwargs: real(settings, now=now, **kwargs))
    assert cli.main(["report"]) == 0
    table = capsys.readouterr().out
    assert "6 conversations" in table and "resolution 40%" in table and "b2b_documents" in table
    assert "copilot → autonomous" in table
    assert cli.main(["report", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["topic"] == "all" and rows[0]["conversations"] == "6" and rows[0]["resolution_rate"] == "0.4"
    assert cli.main(["report", "--json", "--conversations"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["overall"]["handed_over"] == 2 and len(data["conversations"]) == 6
    assert cli.main(["report", "--since", "yesterday-ish"]) == 2
