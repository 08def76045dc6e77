"""The web chat widget in a real headless Chromium (Debian's, driven by Playwright) against the
whole running stack: answers, quick replies, a reload that keeps the conversation and the session,
the «Позвать оператора» button, the reconnection notice. Screenshots: test-artifacts/webchat/."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from handoff.copilot import Copilot, CopilotModes
from handoff.machine import HandoffService
from handoff.settings import HandoffSettings
from tests.stack_process import running_stack

pytestmark = pytest.mark.slow

expect = pytest.importorskip("playwright.sync_api", reason="the `playwright` package (test extra) is missing").expect

ANSWER_TIMEOUT_MS = 30_000


@dataclass
class Chat:
    page_url: str
    rasa_url: str
    console_url: str
    handoff_database: Path


async def _socketio_delivers_answers(rasa_url: str, timeout: float = 15.0) -> bool:
    """Does this Rasa's socket.io channel (session_persistence: true) deliver the bot's answer?"""
    import socketio

    client = socketio.AsyncClient(reconnection=False)
    confirmed, answered = asyncio.Event(), asyncio.Event()
    client.on("session_confirm", lambda data: confirmed.set())
    client.on("bot_uttered", lambda data: answered.set())
    # long-polling: the locked aiohttp (3.9) is too old for python-engineio's websocket client
    await client.connect(rasa_url, socketio_path="/socket.io", transports=["polling"], wait_timeout=10)
    try:
        session_id = "probe-" + uuid.uuid4().hex
        await client.emit("session_request", {"session_id": session_id})
        await asyncio.wait_for(confirmed.wait(), 10)
        await client.emit("user_uttered", {"message": "привет", "session_id": session_id})
        await asyncio.wait_for(answered.wait(), timeout)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        await client.disconnect()


def _probe(rasa_url: str) -> bool:
    # in a thread of its own: Playwright's sync API owns this thread's event loop
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _socketio_delivers_answers(rasa_url)).result()


@pytest.fixture(scope="module")
def chat(trained_model: str, tmp_path_factory) -> Iterator[Chat]:
    """The whole stack as the run command starts it; the widget is the stack's own web chat page."""
    with running_stack(trained_model, tmp_path_factory.mktemp("webchat-stack")) as stack:
        yield Chat(f"http://127.0.0.1:{stack.webchat_port}", stack.rasa_url,
                   f"http://127.0.0.1:{stack.console_port}", stack.handoff_database)


@pytest.fixture
def page(browser, chat):
    context = browser.new_context(locale="ru-RU", viewport={"width": 1100, "height": 820})
    page = context.new_page()
    errors: list = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(chat.page_url)
    yield page
    context.close()
    assert errors == [], errors


def _open_widget(page) -> None:
    page.get_by_role("button", name="Открыть чат поддержки").click()
    expect(page.locator("#darim-webchat")).to_have_attribute("data-state", "online", timeout=15_000)
    expect(page.get_by_label("Ваше сообщение")).to_be_focused()


def _watch_typing(page) -> None:
    page.evaluate("""() => {
        window.__typingSeen = false;
        const typing = document.querySelector('.dwc-typing');
        new MutationObserver(() => { if (!typing.hidden) window.__typingSeen = true; })
            .observe(typing, {attributes: true});
    }""")


def _bot(page, fragment: str):
    return page.locator(".dwc-msg-bot").filter(has_text=fragment)


@contextlib.contextmanager
def customer_and_operator(browser) -> Iterator[Tuple[object, object]]:
    """A customer's page and an operator's page in separate browser contexts (as two people on
    two machines); no page may raise a JavaScript error."""
    contexts = [browser.new_context(locale="ru-RU", viewport={"width": width, "height": 820}) for width in (1100, 1200)]
    pages = [context.new_page() for context in contexts]
    errors: list = []
    for page in pages:
        page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield pages[0], pages[1]
        assert errors == [], errors
    finally:
        for context in contexts:
            context.close()


def _operator_login(operator, console_url: str, name: str) -> None:
    operator.goto(console_url)
    operator.get_by_label("Имя оператора").fill(name)
    operator.get_by_label("Токен").fill("dev-operator-token")
    operator.get_by_role("button", name="Войти").click()


def test_conversation_quick_replies_and_reload(page, chat, artifacts_dir):
    _open_widget(page)
    expect(page.get_by_role("log", name="Сообщения чата")).to_have_attribute("aria-live", "polite")

    _watch_typing(page)
    page.get_by_label("Ваше сообщение").fill("сколько действует сертификат?")
    page.keyboard.press("Enter")
    expect(page.locator(".dwc-msg-user").last).to_have_text(re.compile("сколько действует сертификат"))
    expect(_bot(page, "Подробнее: «Сколько действует сертификат»")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    assert page.evaluate("window.__typingSeen"), "no typing indicator while the bot was answering"
    expect(page.locator(".dwc-typing")).to_be_hidden()
    page.screenshot(path=str(artifacts_dir / "01-answer.png"))

    page.get_by_label("Ваше сообщение").fill("здравствуйте, помогите пожалуйста")
    page.get_by_role("button", name="Отправить").click()
    balance = page.get_by_role("group", name="Варианты ответа").get_by_role("button", name="Проверить баланс")
    expect(balance).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    page.screenshot(path=str(artifacts_dir / "02-quick-replies.png"))
    balance.click()
    expect(page.locator(".dwc-msg-user").last).to_have_text(re.compile("Проверить баланс"))
    expect(page.locator(".dwc-quick-replies")).to_have_count(0)
    expect(_bot(page, "код сертификата")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)

    session_id = page.evaluate("DarimWebchat.sessionId()")
    assert re.fullmatch(r"[0-9a-f]{32}", session_id)
    messages_before = page.locator(".dwc-msg").count()

    page.reload()
    # the panel is still open, the conversation is still there, in the same session
    expect(page.locator("#darim-webchat")).to_have_attribute("data-state", "online", timeout=15_000)
    expect(page.locator("#darim-webchat")).to_have_attribute("data-session-id", session_id)
    assert page.evaluate("DarimWebchat.sessionId()") == session_id
    expect(page.locator(".dwc-msg")).to_have_count(messages_before)
    expect(_bot(page, "Подробнее: «Сколько действует сертификат»")).to_be_visible()
    expect(page.locator(".dwc-msg-user").filter(has_text="Проверить баланс")).to_be_visible()

    # … and so does the bot: the balance flow goes on with the code
    page.get_by_label("Ваше сообщение").fill("DRM-A1B2-C3D4-7Q2K")
    page.keyboard.press("Enter")
    expect(_bot(page, "PIN-код")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    page.screenshot(path=str(artifacts_dir / "03-after-reload.png"))


def test_operator_button_and_phone_layout(browser, chat, artifacts_dir):
    context = browser.new_context(locale="ru-RU", viewport={"width": 390, "height": 760}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(chat.page_url)
        _open_widget(page)
        panel = page.locator(".dwc-panel").bounding_box()
        assert panel["width"] >= 389 and panel["height"] >= 700, panel  # full screen on a phone
        page.get_by_role("button", name="Позвать оператора").click()
        expect(page.locator(".dwc-msg-user").last).to_have_text(re.compile("Позовите оператора"))
        expect(_bot(page, "в чём вопрос")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        page.screenshot(path=str(artifacts_dir / "04-operator-phone.png"))
    finally:
        context.close()


def test_reconnects_with_a_visible_notice(page, artifacts_dir):
    _open_widget(page)
    status = page.get_by_role("status").filter(has_text="Нет соединения, переподключаемся…")
    page.context.set_offline(True)
    page.evaluate("DarimWebchat.widget.socket.io.engine.close()")
    expect(status).to_be_visible(timeout=10_000)
    expect(page.locator("#darim-webchat")).to_have_attribute("data-state", "offline")
    page.screenshot(path=str(artifacts_dir / "05-offline.png"))
    # a message typed while offline waits and goes out after the reconnection
    page.get_by_label("Ваше сообщение").fill("сколько действует сертификат?")
    page.keyboard.press("Enter")
    page.context.set_offline(False)
    expect(page.locator("#darim-webchat")).to_have_attribute("data-state", "online", timeout=15_000)
    expect(status).to_be_hidden()
    expect(_bot(page, "Подробнее: «Сколько действует сертификат»")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)


def test_the_stacks_own_socketio_channel_delivers_answers(chat):
    # Rasa 3.6's built-in channel never joins the session's room with python-socketio >= 5.10
    # (RasaHQ/rasa#13027); credentials.yml names the fixed webchat.channel.SocketIOInput
    assert _probe(chat.rasa_url)


def test_a_customer_is_handed_to_an_operator_who_answers_and_gives_the_conversation_back(browser, chat, artifacts_dir):
    """The issue's end-to-end path: «позовите оператора» twice in the widget → the conversation is
    in the console's queue → the operator takes it, asks the copilot for a draft, dislikes and
    edits it, sends it → the customer sees it → the operator returns the conversation to the bot
    → the bot answers again."""
    with customer_and_operator(browser) as (customer, operator):
        customer.goto(chat.page_url)
        _open_widget(customer)
        box = customer.get_by_label("Ваше сообщение")
        box.fill("позовите оператора")
        box.press("Enter")
        expect(_bot(customer, "в чём вопрос")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        box.fill("нет, мне нужен живой человек")
        box.press("Enter")
        expect(_bot(customer, "обращение №")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        session_id = customer.evaluate("DarimWebchat.sessionId()")
        # while nobody has taken it, the customer's words wait for the operator, the bot is silent
        box.fill("у меня не пришёл сертификат на почту")
        box.press("Enter")

        _operator_login(operator, chat.console_url, "anna")
        item = operator.locator("#queue li").first
        expect(item).to_contain_text("request_human", timeout=15_000)
        item.click()
        expect(operator.locator("#transcript")).to_contain_text("не пришёл сертификат", timeout=10_000)
        operator.get_by_role("button", name="Взять").click()
        expect(operator.locator("#conv-state")).to_have_text("у оператора")

        operator.get_by_role("button", name="Черновик от ассистента").click()
        expect(operator.locator("#draft")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        operator.get_by_title("Не нравится", exact=True).click()
        operator.get_by_label("Текст черновика").fill("Здравствуйте, я Анна. Сейчас отправлю сертификат ещё раз.")
        operator.get_by_role("button", name="Отправить черновик").click()
        expect(operator.locator("#transcript li.operator").last).to_contain_text("я Анна")
        expect(customer.locator(".dwc-msg-bot").filter(has_text="я Анна")).to_be_visible(timeout=15_000)
        operator.screenshot(path=str(artifacts_dir / "10-operator-console.png"), full_page=True)
        customer.screenshot(path=str(artifacts_dir / "11-customer-with-operator.png"))

        operator.get_by_role("button", name="Вернуть боту").click()
        expect(operator.locator("#conv-state")).to_have_text("у бота")
        box.fill("сколько действует сертификат?")
        box.press("Enter")
        expect(_bot(customer, "Подробнее: «Сколько действует сертификат»")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        customer.screenshot(path=str(artifacts_dir / "12-customer-back-with-the-bot.png"))

    # the copilot round trip is stored with its events
    service = HandoffService.from_settings(HandoffSettings(database_url=f"sqlite:///{chat.handoff_database}"))

    events = Copilot(service, CopilotModes.load()).events(session_id)
    kinds = [event["kind"] for event in events]
    assert "draft_shown" in kinds and "rated" in kinds and "sent" in kinds
    rated = next(event for event in events if event["kind"] == "rated")
    sent = next(event for event in events if event["kind"] == "sent")
    assert rated["rating"] == "dislike" and sent["outcome"] == "edited" and sent["edit_distance"] > 0
    assert service.conversation(session_id).state.value == "bot"


def test_a_copilot_topic_goes_to_an_operator_with_the_bot_s_draft(browser, chat, artifacts_dir):
    """copilot.yml puts corporate documents in copilot mode: the customer's request is not answered
    by the bot but queued with the bot's draft; the operator likes it and sends it as is."""
    with customer_and_operator(browser) as (customer, operator):
        customer.goto(chat.page_url)
        _open_widget(customer)
        box = customer.get_by_label("Ваше сообщение")
        box.fill("нужны закрывающие документы по нашему заказу для бухгалтерии")
        box.press("Enter")
        expect(customer.locator(".dwc-msg").filter(has_text="Передала ваш вопрос специалисту")).to_be_visible(
            timeout=ANSWER_TIMEOUT_MS)
        session_id = customer.evaluate("DarimWebchat.sessionId()")

        _operator_login(operator, chat.console_url, "boris")
        item = operator.locator("#queue li").filter(has_text="b2b_documents")
        expect(item).to_be_visible(timeout=15_000)
        item.click()
        expect(operator.locator("#summary")).to_contain_text("Черновик бота: ", timeout=10_000)
        operator.get_by_role("button", name="Взять").click()
        # the attached draft opens by itself
        expect(operator.locator("#draft")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        draft_text = operator.get_by_label("Текст черновика").input_value()
        assert "ИНН" in draft_text
        operator.get_by_title("Нравится", exact=True).click()
        operator.get_by_role("button", name="Отправить черновик").click()
        expect(customer.locator(".dwc-msg-bot").filter(has_text="ИНН")).to_be_visible(timeout=15_000)
        stats_row = operator.locator("#stats tr").filter(has_text="b2b_documents")
        expect(stats_row).to_contain_text("копилот", timeout=10_000)
        expect(stats_row).to_contain_text("100%")  # liked, sent as is
        operator.screenshot(path=str(artifacts_dir / "13-copilot-topic-console.png"), full_page=True)
        customer.screenshot(path=str(artifacts_dir / "14-copilot-topic-customer.png"))

    service = HandoffService.from_settings(HandoffSettings(database_url=f"sqlite:///{chat.handoff_database}"))
    view = service.conversation(session_id)
    assert view.summary["reason"] == "copilot" and view.summary["intent"] == "b2b_documents"
    assert view.state.value == "operator" and view.operator_id == "boris"
    # the bot itself said nothing but the hand-over notice (kept in the operators' transcript)
    assert [m.text for m in view.messages if m.sender == "bot"] == [
        "Передала ваш вопрос специалисту — он ответит здесь же. Пожалуйста, не закрывайте чат."]
    events = Copilot(service, CopilotModes.load()).events(session_id)
    assert [event["kind"] for event in events] == ["draft_shown", "rated", "sent"]
    assert events[0]["source"] == "scenario:b2b_form" and events[0]["topic"] == "b2b_documents"
    assert events[1]["rating"] == "like" and events[2]["outcome"] == "as_is" and events[2]["edit_distance"] == 0
