"""The operator console in a real headless Chromium (Debian's, driven by Playwright).

* ``test_console_ui_*``: the console (``python -m handoff.console serve``) on loopback against a
  seeded hand-off database: login, the queue with its summary, take, reply, the copilot draft panel,
  return to the bot.
* ``test_customer_and_operator_end_to_end`` (slow: trains a model): the whole stack plus the console;
  the customer asks for an operator twice in the widget, the operator takes the conversation in the
  console and replies, the widget shows it, the operator returns it and the bot answers again.
Screenshots: test-artifacts/webchat/.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from handoff.machine import HandoffService
from handoff.settings import HandoffSettings
from tests.backoffice_process import PROJECT_ROOT, free_port

expect = pytest.importorskip("playwright.sync_api", reason="the `playwright` package (test extra) is missing").expect

TOKEN = "browser-test-token"


def _wait_up(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the console exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(url)


def start_console(database: Path, rasa_url: str = "http://127.0.0.1:9") -> tuple:
    port = free_port()
    env = {**os.environ, "HANDOFF_DATABASE_URL": f"sqlite:///{database}", "HANDOFF_OPERATOR_TOKEN": TOKEN,
           "RASA_SELF_URL": rasa_url, "ACTION_SERVER_URL": "http://127.0.0.1:9"}
    process = subprocess.Popen(
        [sys.executable, "-m", "handoff.console", "serve", "--port", str(port), "--rasa-url", rasa_url],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _wait_up(f"http://127.0.0.1:{port}/health", process)
    return process, f"http://127.0.0.1:{port}"


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple]:
    database = tmp_path / "handoff.db"
    service = HandoffService.from_settings(HandoffSettings(database_url=f"sqlite:///{database}"))
    process, url = start_console(database)
    try:
        yield service, url
    finally:
        stop(process)


def login(page, url: str, operator: str = "anna") -> None:
    page.goto(url)
    page.get_by_label("Имя оператора").fill(operator)
    page.get_by_label("Токен").fill(TOKEN)
    page.get_by_role("button", name="Войти").click()
    expect(page.locator("#app")).to_be_visible()


def test_console_ui_take_reply_draft_return(browser, console, artifacts_dir):
    service, url = console
    service.customer_message("web-1", "позовите оператора")
    service.customer_message("web-1", "оператора!")
    service.hand_over("web-1", "T-42", {"intent": "request_human", "slots": {"order_id": "40817263"}, "reason": "insisted_on_human"},
                        [{"sender": "customer", "text": "позовите оператора"}, {"sender": "customer", "text": "оператора!"}])
    context = browser.new_context(locale="ru-RU", viewport={"width": 1200, "height": 820})
    page = context.new_page()
    errors: list = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        # a wrong token is refused
        page.goto(url)
        page.get_by_label("Токен").fill("wrong")
        page.get_by_role("button", name="Войти").click()
        expect(page.locator("#login-error")).to_contain_text("Не удалось войти")

        login(page, url)
        item = page.locator("#queue li", has_text="Тикет T-42")
        expect(item).to_contain_text("request_human")
        expect(item).to_contain_text("оператора!")
        item.click()
        expect(page.locator("#summary")).to_contain_text("order_id = 40817263")
        expect(page.locator("#transcript")).to_contain_text("позовите оператора")
        page.get_by_role("button", name="Взять").click()
        expect(page.locator("#conv-state")).to_have_text("у оператора")
        expect(page.locator("#queue")).to_contain_text("Очередь пуста")

        page.get_by_label("Ответ").fill("Здравствуйте, я Анна. Чем помочь?")
        page.get_by_role("button", name="Отправить", exact=True).click()
        expect(page.locator("#transcript li.operator")).to_contain_text("Здравствуйте, я Анна.")
        assert [m.text for m in service.pending_operator_messages("web-1")] == ["Здравствуйте, я Анна. Чем помочь?"]

        # a new customer line shows up by polling
        service.customer_message("web-1", "у меня не пришёл сертификат")
        expect(page.locator("#transcript li.customer").last).to_contain_text("не пришёл сертификат", timeout=5000)

        page.get_by_role("button", name="Черновик от ассистента").click()
        expect(page.locator("#draft")).to_be_visible()
        page.get_by_title("Нравится", exact=True).click()
        expect(page.locator("#draft-meta")).to_contain_text("👍")
        page.get_by_label("Текст черновика").fill("Проверю ваш заказ, минуту.")
        page.get_by_role("button", name="Отправить черновик").click()
        expect(page.locator("#transcript li.operator").last).to_contain_text("Проверю ваш заказ")
        page.screenshot(path=str(artifacts_dir / "handoff-console-operator.png"), full_page=True)

        page.get_by_role("button", name="Вернуть боту").click()
        expect(page.locator("#conv-state")).to_have_text("у бота")
        expect(page.locator("#transcript")).to_contain_text("Диалог возвращён боту")
        assert service.conversation("web-1").state.value == "bot"
        assert errors == [], errors
    finally:
        context.close()


def test_console_ui_conflict_is_shown(browser, console):
    service, url = console
    service.hand_over("web-2", "T-43", {"intent": "complaint"}, [{"sender": "customer", "text": "жалоба"}])
    service.take("web-2", "boris")
    context = browser.new_context(locale="ru-RU")
    page = context.new_page()
    try:
        login(page, url)
        # open it directly through the JS (it is not in the queue any more)
        page.evaluate("""() => fetch('/api/conversations/web-2/take', {method: 'POST', headers: {
            'Authorization': 'Bearer %s', 'X-Operator': 'anna'}}).then(r => r.status)""" % TOKEN)
        status = page.evaluate("""() => fetch('/api/conversations/web-2/take', {method: 'POST', headers: {
            'Authorization': 'Bearer %s', 'X-Operator': 'anna'}}).then(r => r.status)""" % TOKEN)
        assert status == 409
    finally:
        context.close()
