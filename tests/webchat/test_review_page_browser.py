"""The review page in Chromium against a real console process (no Rasa needed): a wording
annotated with an entity lands in data/nlu/reviewed/ with Rasa's inline entity markup; customers'
text is shown inert (it is untrusted); a refused wording says why on the page."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.event_broker import MaskedSQLEventBroker
from tests.analytics.builder import Stream
from tests.backoffice_process import PROJECT_ROOT, free_port
from tests.review.test_review_api import copy_project, nlu_turn
from tests.webchat.test_handoff_browser import _wait_up, stop

expect = pytest.importorskip("playwright.sync_api", reason="the `playwright` package (test extra) is missing").expect

TOKEN = "trainer-token-for-the-page-test"
BRAND_MISS = "в спортмастере не приняли подарочку"
HOSTILE = '<img src=x onerror="window.pwned=1">подарок'


@pytest.fixture
def console(tmp_path: Path):
    project = copy_project(tmp_path / "project")
    events = tmp_path / "events.db"
    broker = MaskedSQLEventBroker(host=f"sqlite:///{events}")
    for sender, text in (("p1", BRAND_MISS), ("p2", HOSTILE)):
        for event in nlu_turn(Stream(sender), text, [("wrong_address", 0.45), ("certificate_not_accepted", 0.4)]).events_list():
            broker.publish(event)
    broker.engine.dispose()
    port = free_port()
    env = {**os.environ, "HANDOFF_DATABASE_URL": f"sqlite:///{tmp_path / 'handoff.db'}",
           "EVENTS_DATABASE_URL": f"sqlite:///{events}", "REVIEW_PROJECT_ROOT": str(project),
           "REVIEW_TRAINER_TOKEN": TOKEN, "RASA_SELF_URL": "http://127.0.0.1:9", "ACTION_SERVER_URL": "http://127.0.0.1:9"}
    process = subprocess.Popen([sys.executable, "-m", "handoff.console", "serve", "--port", str(port)],
                               cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_up(f"http://127.0.0.1:{port}/health", process)
        yield f"http://127.0.0.1:{port}", project
    finally:
        stop(process)


def test_an_entity_is_annotated_on_the_page_and_hostile_text_stays_inert(console, browser, artifacts_dir):
    url, project = console
    page = browser.new_page(locale="ru-RU", viewport={"width": 1280, "height": 900})
    errors: list = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{url}/review")
        page.get_by_label("Токен тренера").fill(TOKEN)
        page.get_by_role("button", name="Войти").click()
        card = page.locator(".cluster", has_text=BRAND_MISS)
        expect(card).to_contain_text("низкая уверенность")
        card.get_by_role("button", name="+ сущность").click()
        card.get_by_label("Значение сущности").fill("спортмастере")
        card.get_by_label("Сущность").select_option("brand")
        card.get_by_role("button", name="Добавить").click()
        expect(card).to_contain_text("[спортмастере](brand)")
        card.get_by_label("Намерение").select_option("certificate_not_accepted")
        card.get_by_role("button", name="Обучить").click()
        expect(card.locator(".results")).to_contain_text("certificate_not_accepted.yml")
        written = (project / "data" / "nlu" / "reviewed" / "certificate_not_accepted.yml").read_text(encoding="utf-8")
        assert "в [спортмастере](brand) не приняли подарочку" in written

        hostile = page.locator(".cluster", has_text="onerror")
        expect(hostile.locator(".head")).to_have_text(HOSTILE)  # shown as text, not as an element
        assert page.evaluate("window.pwned") is None and page.locator(".cluster img").count() == 0
        hostile.get_by_label("Намерение").select_option("certificate_not_accepted")
        hostile.get_by_role("button", name="Обучить").click()
        expect(hostile.locator(".results")).to_contain_text(HOSTILE)  # the outcome quotes it, as text too
        assert page.evaluate("window.pwned") is None and page.locator("img").count() == 0
        page.screenshot(path=str(artifacts_dir / "42-review-entity.png"), full_page=True)
        assert errors == [], errors
    finally:
        page.close()
