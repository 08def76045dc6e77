"""Analytics end to end: the demo conversations (analytics.demo) played through the running stack's
REST channel, the report's counts checked exactly against what each conversation should end with,
then the dashboard in Chromium — cards, charts, the topics table — and the autonomy advice applied
from it (copilot.yml rewritten, the change audited). Screenshot: test-artifacts/webchat/30-analytics.png."""
from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from analytics.demo import SCRIPTS, play
from analytics.service import make_report
from analytics.settings import AnalyticsSettings
from tests.backoffice_process import PROJECT_ROOT
from tests.stack_process import running_stack

expect = pytest.importorskip("playwright.sync_api", reason="the `playwright` package (test extra) is missing").expect
pytestmark = pytest.mark.slow

TIMEOUT_MINUTES = 0.05  # 3 s of silence ends a conversation, so the demo's silent ones count


@pytest.fixture(scope="module")
def stack(trained_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("analytics-stack")
    modes = directory / "copilot.yml"
    shutil.copy(PROJECT_ROOT / "copilot.yml", modes)
    env = {"HANDOFF_MODES_FILE": str(modes), "ANALYTICS_SESSION_TIMEOUT_MINUTES": str(TIMEOUT_MINUTES),
           # one liked draft is enough advice here (the real rule needs 20 at a 80 % bound)
           "ANALYTICS_AUTONOMY_MIN_RATED": "1", "ANALYTICS_AUTONOMY_MIN_LIKE_RATE": "0.2"}
    with running_stack(trained_model, directory, env) as running:
        running.modes_file = modes
        yield running


@pytest.fixture(scope="module")
def played(stack):
    result = play(stack.rasa_url)
    time.sleep(TIMEOUT_MINUTES * 60 + 1)
    return result


def settings_of(stack) -> AnalyticsSettings:
    return AnalyticsSettings(stack.env["EVENTS_DATABASE_URL"], stack.env["HANDOFF_DATABASE_URL"],
                             session_timeout_minutes=TIMEOUT_MINUTES)


def test_the_report_counts_each_demo_conversation_exactly(stack, played):
    report = make_report(settings_of(stack), with_conversations=True)
    outcomes = {c["sender_id"]: c for c in report.conversations}
    for sender, name, expected in played:
        assert outcomes[sender]["outcome"] == expected, (name, outcomes[sender])
    o = report.overall
    expected = Counter(outcome for _, _, outcome in SCRIPTS)
    assert (o.resolved_confirmed, o.resolved_assumed, o.unresolved, o.handed_over, o.spam, o.wrong_address, o.abandoned) == (
        expected["resolved_confirmed"], expected["resolved_assumed"], expected["unresolved"], expected["handed_over"],
        expected["spam"], expected["wrong_address"], expected["abandoned"])
    assert o.handed_over_by_rule == {"copilot": 1, "insisted_on_human": 1, "irritation": 1, "repeated_misses": 1}
    assert (o.csat_ratings, o.csat_mean) == (2, 4.5)
    assert o.abandoned_mid_flow == 1 and o.in_progress == 0
    assert o.resolution_rate == round(3 / 9, 4)  # 2 confirmed + 1 assumed of 9 that needed help
    assert o.first_reply_seconds_median is not None and o.kb_answered >= 2


def test_the_dashboard_shows_it_and_applies_the_advice(stack, played, browser, artifacts_dir):
    handoff = stack.handoff()
    copilot_conversation = next(sender for sender, name, _ in played if "copilot" in name)
    from handoff.copilot import Copilot, CopilotModes, Draft

    handoff.take(copilot_conversation, "lead")
    copilot = Copilot(handoff, CopilotModes())
    ref = copilot.draft_shown(copilot_conversation, "lead", Draft("Напишите ИНН", 0.9, "scenario:b2b_form", "b2b_documents"))
    copilot.rate(ref.id, "lead", "like")

    context = browser.new_context(locale="ru-RU", viewport={"width": 1280, "height": 1100})
    page = context.new_page()
    errors: list = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        console = f"http://127.0.0.1:{stack.console_port}"
        page.goto(console)
        page.get_by_label("Имя оператора").fill("lead")
        page.get_by_label("Токен").fill("dev-operator-token")
        page.get_by_role("button", name="Войти").click()
        page.get_by_role("link", name="Аналитика").click()
        page.get_by_role("button", name="Всё время").click()
        expect(page.locator("body")).to_have_attribute("data-loaded", "1", timeout=20_000)
        cards = page.locator("#cards")
        expect(cards).to_contain_text("Решено ботом")
        expect(cards).to_contain_text("33%")
        rows = page.locator("#topics tbody tr")
        expect(rows.filter(has_text="Документы для юрлиц")).to_contain_text("копилот")
        for canvas in ("chart-days", "chart-topics", "chart-rules"):
            assert page.evaluate(f"document.getElementById('{canvas}').width") > 0
        page.screenshot(path=str(artifacts_dir / "30-analytics.png"), full_page=True)
        row = rows.filter(has_text="Документы для юрлиц")
        row.get_by_role("button", name="Применить: сам").click()
        expect(page.locator("#history")).to_contain_text("копилот → сам", timeout=10_000)
        expect(row).to_contain_text("сам")
        assert "b2b_documents: autonomous" in Path(stack.modes_file).read_text(encoding="utf-8")
        page.screenshot(path=str(artifacts_dir / "31-analytics-advice-applied.png"), full_page=True)
        assert errors == [], errors
    finally:
        context.close()
