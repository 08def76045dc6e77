"""Tests that attack: hostile text through the whole running stack (default copilot.yml), shown in
the customer's web chat widget and in the operator console, both in Debian's Chromium.

* (a) the customer types an injection corpus (HTML / JS, markdown links to ``javascript:``, a
  template expression, a very long line) after a hand-over whose two «оператор» requests carry
  markup: the customer's own bubbles, the console's queue line, summary and transcript;
* (b) the operator answers with the same corpus from the console: the widget shows it as the
  operator's (bot-side) messages, through its markdown renderer, and again after a reload (history);
* (c) what the bot repeats of «заказ <b>12345678</b>»: only the normalised number;
* SQL-ish order numbers and sender ids through REST: normal answers, the back office and its
  ``refunds`` table intact, the hand-off database keeping the text verbatim, the pull endpoint
  answering only for the conversation asked about.

In every page: ``window.__pwned`` stays undefined, no ``<script>``, ``<img>``, ``<svg>``, link or
``on…`` handler comes out of the text, no ``javascript:`` link exists, the text is shown literally.
Screenshots: test-artifacts/webchat/20-….
"""
from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import pytest

from tests.stack_process import RunningStack, running_stack

pytestmark = pytest.mark.slow

expect = pytest.importorskip("playwright.sync_api", reason="the `playwright` package (test extra) is missing").expect

ANSWER_TIMEOUT_MS = 30_000
OPERATOR_TOKEN = "dev-operator-token"  # the stack's development default

LONG_LINE = "Д" * 600 + '<img src=x onerror="window.__pwned=1">'
CORPUS = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=1</script>",
    '<a href="javascript:window.__pwned=1">x</a>',
    "[клик](javascript:window.__pwned=1)",
    "![x](javascript:window.__pwned=1)",
    '"><svg onload=window.__pwned=1>',
    "{{7*7}}",
    LONG_LINE,
]
#: the two hand-over requests of (a): classified request_human, and they carry markup into the
#: hand-over summary (its last customer messages) and the queue line (the last of them)
HOSTILE_OPERATOR_REQUESTS = [
    "позовите оператора <script>window.__pwned=1</script>",
    'позовите оператора <img src=x onerror="window.__pwned=1">',
]
WIDGET_AREAS = [".dwc-messages"]
CONSOLE_AREAS = ["#queue", "#mine", "#summary", "#transcript", "#draft-meta"]

# What a page made of the text: run in the page, over the areas that show conversation text.
DOM_REPORT = """(areas) => {
    const nodes = areas.flatMap(selector => [...document.querySelectorAll(selector)])
        .flatMap(root => [...root.querySelectorAll('*')]);
    const named = tag => nodes.filter(node => node.tagName.toLowerCase() === tag).length;
    const urls = [...document.querySelectorAll('[href], [src], [action], [formaction], [xlink\\\\:href]')]
        .flatMap(node => ['href', 'src', 'action', 'formaction', 'xlink:href'].map(a => node.getAttribute(a) || ''));
    return {
        pwned: typeof window.__pwned !== 'undefined',
        scripts: named('script'), images: named('img'), svgs: named('svg'), iframes: named('iframe'),
        links: named('a'), bold: named('b'),
        handlers: nodes.filter(node => [...node.attributes].some(a => a.name.toLowerCase().startsWith('on'))).length,
        javascriptUrls: urls.filter(url => /^\\s*javascript:/i.test(url)).length,
        scriptsInDocument: document.querySelectorAll('script').length,
    };
}"""
TEXTS_OF = "selector => [...document.querySelectorAll(selector)].map(node => node.textContent)"
ALL_SHOWN = """([selector, texts]) => {
    const shown = [...document.querySelectorAll(selector)].map(node => node.textContent);
    return texts.every(text => shown.includes(text));
}"""


@pytest.fixture(scope="module")
def stack(trained_model: str, tmp_path_factory) -> Iterator[RunningStack]:
    """The whole stack as the run command starts it (default copilot.yml, demo back office)."""
    with running_stack(trained_model, tmp_path_factory.mktemp("injection-stack")) as running:
        yield running


# --- pages ------------------------------------------------------------------------------------


@contextlib.contextmanager
def customer_and_operator(browser) -> Iterator[Tuple[Any, Any]]:
    """Two people on two machines: separate browser contexts; no page may raise a JS error."""
    contexts = [browser.new_context(locale="ru-RU", viewport={"width": 1100, "height": 820}) for _ in range(2)]
    pages = [context.new_page() for context in contexts]
    errors: List[str] = []
    for page in pages:
        page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield pages[0], pages[1]
        assert errors == [], errors
    finally:
        for context in contexts:
            context.close()


def open_widget(customer, stack: RunningStack) -> int:
    """The stack's chat page with the panel open and online; → the page's script count."""
    customer.goto(f"http://127.0.0.1:{stack.webchat_port}")
    customer.get_by_role("button", name="Открыть чат поддержки").click()
    expect(customer.locator("#darim-webchat")).to_have_attribute("data-state", "online", timeout=15_000)
    return customer.evaluate("document.querySelectorAll('script').length")


def say(customer, text: str) -> None:
    box = customer.get_by_label("Ваше сообщение")
    box.fill(text)
    box.press("Enter")
    expect(customer.locator(".dwc-msg-user .dwc-bubble").last).to_have_text(text, use_inner_text=False)


def bot_says(customer, fragment: str) -> str:
    """Waits for a bot message containing ``fragment``; → its text."""
    message = customer.locator(".dwc-msg-bot .dwc-bubble").filter(has_text=fragment).last
    expect(message).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    return message.text_content()


def hand_over(customer, requests: Sequence[str]) -> str:
    """«Оператор» twice (clarifying question, then the hand-over); → the ticket number."""
    say(customer, requests[0])
    bot_says(customer, "напишите «оператор» ещё раз")  # in a flow and outside one
    say(customer, requests[1])
    notice = bot_says(customer, "обращение №")
    return re.search(r"обращение №([\w-]+)", notice).group(1)


def operator_login(operator, stack: RunningStack, name: str) -> int:
    operator.goto(f"http://127.0.0.1:{stack.console_port}")
    operator.get_by_label("Имя оператора").fill(name)
    operator.get_by_label("Токен").fill(OPERATOR_TOKEN)
    operator.get_by_role("button", name="Войти").click()
    expect(operator.locator("#app")).to_be_visible()
    return operator.evaluate("document.querySelectorAll('script').length")


def open_ticket(operator, ticket: str):
    """Clicks the ticket's queue line; → the line (a locator)."""
    line = operator.locator("#queue li").filter(has_text=f"Тикет {ticket}")
    expect(line).to_be_visible(timeout=15_000)
    text = line.text_content()
    line.click()
    expect(operator.locator("#conv-title")).to_have_text(f"Тикет {ticket}", timeout=10_000)
    return text


def operator_replies(operator, texts: Sequence[str]) -> None:
    box = operator.get_by_label("Ответ")
    for text in texts:
        box.fill(text)
        operator.get_by_role("button", name="Отправить", exact=True).click()
        expect(box).to_have_value("", timeout=10_000)  # the console clears it once the reply is stored


def wait_until_shown(page, selector: str, texts: Sequence[str], timeout: int = ANSWER_TIMEOUT_MS) -> List[str]:
    """Waits until every text is the whole text of one ``selector`` element; → all their texts."""
    page.wait_for_function(ALL_SHOWN, arg=[selector, list(texts)], timeout=timeout)
    return page.evaluate(TEXTS_OF, selector)


# --- the assertions every page gets --------------------------------------------------------------


def assert_inert(page, areas: Sequence[str], scripts_at_start: int, allow_bold: bool = False) -> Dict[str, Any]:
    """Nothing ran and nothing active was made of the text (``areas``: where the text is shown)."""
    page.wait_for_timeout(300)  # an <img onerror> would have fired by now
    report = page.evaluate(DOM_REPORT, list(areas))
    assert report["pwned"] is False, "an injected handler or script ran"
    made = {key: report[key] for key in ("scripts", "images", "svgs", "iframes", "links", "handlers")}
    assert made == dict.fromkeys(made, 0), f"active markup came out of the text: {report}"
    assert allow_bold or report["bold"] == 0, report
    assert report["javascriptUrls"] == 0, report
    assert report["scriptsInDocument"] == scripts_at_start, report
    return report


def assert_literal_and_visible(page, selector: str, texts: Sequence[str], prefix: str = "") -> None:
    """Each text is the whole text content of one visible ``selector`` element (after ``prefix``)."""
    shown = wait_until_shown(page, selector, [prefix + text for text in texts])
    for text in texts:
        assert shown.count(prefix + text) >= 1
        expect(page.locator(selector).filter(has_text=text).first).to_be_visible()


def assert_long_line_wraps(customer) -> None:
    """The long line wraps inside the panel: the message log never scrolls sideways."""
    widths = customer.evaluate(
        "() => { const log = document.querySelector('.dwc-messages');"
        " return [log.scrollWidth, log.clientWidth]; }")
    assert widths[0] <= widths[1], widths


def test_the_dom_check_catches_markup_made_of_text(browser):
    """The check above is not vacuous: the corpus put in with innerHTML (the bug it guards
    against) runs a handler and leaves every kind of element it looks for."""
    page = browser.new_page()
    try:
        page.set_content("<div class='dwc-messages'></div>")
        scripts = page.evaluate("document.querySelectorAll('script').length")
        page.evaluate("corpus => { document.querySelector('.dwc-messages').innerHTML = corpus.join('<br>'); }", CORPUS)
        with pytest.raises(AssertionError, match="handler or script ran"):
            assert_inert(page, WIDGET_AREAS, scripts)
        report = page.evaluate(DOM_REPORT, WIDGET_AREAS)
        assert report["scripts"] and report["images"] and report["svgs"] and report["links"] and report["handlers"]
        assert report["javascriptUrls"] == 1  # <a href="javascript:…"> (markdown is not HTML)
        page.evaluate("delete window.__pwned")
        page.evaluate("() => { document.querySelector('.dwc-messages').innerHTML = '<b>x</b>'; }")
        with pytest.raises(AssertionError):
            assert_inert(page, WIDGET_AREAS, scripts)
    finally:
        page.close()


# --- (a) the customer's text -----------------------------------------------------------------------


def test_the_customer_s_hostile_text_is_inert_in_the_widget_and_the_console(browser, stack, artifacts_dir):
    with customer_and_operator(browser) as (customer, operator):
        widget_scripts = open_widget(customer, stack)
        ticket = hand_over(customer, HOSTILE_OPERATOR_REQUESTS)
        for text in CORPUS:  # while the conversation waits, every line goes to the operators
            say(customer, text)
        assert_literal_and_visible(customer, ".dwc-msg-user .dwc-bubble", HOSTILE_OPERATOR_REQUESTS + CORPUS)
        assert_long_line_wraps(customer)
        assert_inert(customer, WIDGET_AREAS, widget_scripts)
        customer.screenshot(path=str(artifacts_dir / "20-customer-hostile-text.png"))

        console_scripts = operator_login(operator, stack, "anna")
        queue_line = open_ticket(operator, ticket)
        assert queue_line.endswith("request_human — " + HOSTILE_OPERATOR_REQUESTS[-1]), queue_line
        expect(operator.locator("#summary")).to_contain_text(
            "Последние сообщения: " + " / ".join(HOSTILE_OPERATOR_REQUESTS), timeout=10_000)
        assert_literal_and_visible(operator, "#transcript li.customer", HOSTILE_OPERATOR_REQUESTS + CORPUS,
                                   prefix="Клиент:")
        assert_inert(operator, CONSOLE_AREAS, console_scripts, allow_bold=True)  # the queue's own <b>Тикет</b>
        operator.screenshot(path=str(artifacts_dir / "21-console-hostile-text.png"), full_page=True)


# --- (b) the operator's reply -------------------------------------------------------------------------


def test_the_operator_s_hostile_reply_is_inert_in_the_widget_also_after_a_reload(browser, stack, artifacts_dir):
    with customer_and_operator(browser) as (customer, operator):
        widget_scripts = open_widget(customer, stack)
        ticket = hand_over(customer, ["позовите оператора", "нет, мне нужен живой человек"])

        console_scripts = operator_login(operator, stack, "boris")
        open_ticket(operator, ticket)
        operator.get_by_role("button", name="Взять").click()
        expect(operator.locator("#conv-state")).to_have_text("у оператора")
        operator_replies(operator, CORPUS)
        assert_literal_and_visible(operator, "#transcript li.operator", CORPUS, prefix="Оператор (boris):")
        assert_inert(operator, CONSOLE_AREAS, console_scripts, allow_bold=True)
        operator.screenshot(path=str(artifacts_dir / "22-console-hostile-replies.png"), full_page=True)

        # the widget renders these as the bot side's messages: escaped markdown-lite
        assert_literal_and_visible(customer, ".dwc-msg-bot .dwc-bubble", CORPUS)
        assert_long_line_wraps(customer)
        assert_inert(customer, WIDGET_AREAS, widget_scripts)
        customer.screenshot(path=str(artifacts_dir / "23-customer-operator-hostile-replies.png"))

        customer.reload()  # the history in localStorage is rendered again
        expect(customer.locator("#darim-webchat")).to_have_attribute("data-state", "online", timeout=15_000)
        assert_literal_and_visible(customer, ".dwc-msg-bot .dwc-bubble", CORPUS)
        assert_inert(customer, WIDGET_AREAS, widget_scripts)


# --- (c) what the bot repeats ----------------------------------------------------------------------------


def test_the_bot_repeats_only_the_normalised_order_number(browser, stack, artifacts_dir):
    order_text = "заказ <b>12345678</b>"
    with customer_and_operator(browser) as (customer, operator):
        widget_scripts = open_widget(customer, stack)
        say(customer, "хочу оформить возврат")
        bot_says(customer, "Напишите номер заказа")
        say(customer, order_text)
        echo = bot_says(customer, "Не нашла заказ")
        assert echo.startswith("Не нашла заказ 12345678."), echo
        assert_literal_and_visible(customer, ".dwc-msg-user .dwc-bubble", [order_text])
        assert not any("<" in text for text in customer.evaluate(TEXTS_OF, ".dwc-msg-bot .dwc-bubble"))
        assert_inert(customer, WIDGET_AREAS, widget_scripts)
        customer.screenshot(path=str(artifacts_dir / "24-customer-bot-echo.png"))

        ticket = hand_over(customer, ["позовите оператора", "оператор"])
        console_scripts = operator_login(operator, stack, "vera")
        open_ticket(operator, ticket)
        assert_literal_and_visible(operator, "#transcript li.customer", [order_text], prefix="Клиент:")
        assert_literal_and_visible(operator, "#transcript li.bot", [echo], prefix="Бот:")
        assert_inert(operator, CONSOLE_AREAS, console_scripts, allow_bold=True)
        operator.screenshot(path=str(artifacts_dir / "25-console-bot-echo.png"), full_page=True)


def test_the_bot_echoes_no_markup_over_rest(stack):
    """Outside a flow, in the refund flow, with a short and an unknown number: no «<» comes back."""
    for messages in (["заказ <b>123</b>"], ["хочу оформить возврат", "заказ <b>123</b>", "заказ <i>12345678</i>"]):
        sender = "echo-" + uuid.uuid4().hex
        for text in messages:
            answers = bot_texts(stack.say(sender, text))
            assert answers and not any("<" in answer or "</" in answer for answer in answers), (text, answers)
    assert any(answer.startswith("Не нашла заказ 12345678.") for answer in answers), answers


# --- SQL-ish text through REST -----------------------------------------------------------------------------


SQLISH_ORDER_NUMBERS = ["'; DROP TABLE refunds; --", "1 OR 1=1", "99999999' --"]
NORMAL_ORDER_ANSWERS = ("Не совсем поняла вас", "Напишите номер заказа", "Номер заказа — это 8 цифр", "Не нашла заказ")


def bot_texts(messages: List[Dict[str, Any]]) -> List[str]:
    return [message["text"] for message in messages if message.get("text")]


def refund_flow(stack: RunningStack, order_text: str) -> Tuple[str, List[str]]:
    """A new REST conversation: the refund flow, then ``order_text`` as the order number."""
    sender = "sql-" + uuid.uuid4().hex
    assert any("Напишите номер заказа" in text for text in bot_texts(stack.say(sender, "хочу оформить возврат")))
    return sender, bot_texts(stack.say(sender, order_text))


def backoffice_rows(stack: RunningStack) -> Dict[str, Any]:
    with contextlib.closing(sqlite3.connect(stack.database)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {
            "tables": tables,
            "refunds": db.execute("SELECT order_id, idempotency_key FROM refunds ORDER BY order_id").fetchall(),
            "orders": db.execute("SELECT COUNT(*) FROM orders").fetchone()[0],
        }


def customer_lines(stack: RunningStack, sender: str) -> List[str]:
    return [line.text for line in stack.handoff().conversation(sender).messages if line.sender == "customer"]


def pull(stack: RunningStack, sender: str, after: str = "0", safe: str = "'=;%") -> Tuple[int, Dict[str, Any]]:
    """The gateway's pull endpoint; ``safe``: characters of ``sender`` sent as they are (quotes,
    «=», «;» need no percent-encoding in a path)."""
    url = (f"{stack.rasa_url}/handoff/conversations/{urllib.parse.quote(sender, safe=safe)}/messages"
           f"?after={urllib.parse.quote(after)}")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_sql_ish_order_numbers_get_normal_answers_and_break_nothing(stack):
    before = backoffice_rows(stack)
    assert before["refunds"] == [("40817369", "demo-refund-40817369")] and before["orders"] > 0

    for text in SQLISH_ORDER_NUMBERS:
        sender, answers = refund_flow(stack, text)
        assert answers, f"no answer to {text!r}"
        assert any(answer.startswith(NORMAL_ORDER_ANSWERS) for answer in answers), (text, answers)
        assert not any(piece in answer for answer in answers for piece in ("DROP", "1=1", "' --", "SQL", "sqlite")), answers
        assert text in customer_lines(stack, sender)  # the hand-off database keeps it verbatim
    assert any(answer.startswith("Не нашла заказ 99999999.") for answer in answers), answers

    # the quote and the comment are not part of an order number: the demo order is found
    sender, answers = refund_flow(stack, "40817263' --")
    assert any("e-mail покупателя" in answer for answer in answers), answers
    assert "40817263' --" in customer_lines(stack, sender)

    # afterwards: a new conversation finds the known demo order, the tables are all there
    _, answers = refund_flow(stack, "40817263")
    assert any("e-mail покупателя" in answer for answer in answers), answers
    assert backoffice_rows(stack) == before


def hand_over_over_rest(stack: RunningStack, sender: str, reply: str) -> None:
    """A REST conversation handed over («оператор» twice); an operator takes it and replies."""
    stack.say(sender, "позовите оператора")
    assert any("обращение №" in text for text in bot_texts(stack.say(sender, "нет, мне нужен живой человек")))
    service = stack.handoff()
    service.take(sender, "anna")
    service.operator_reply(sender, "anna", reply)


def test_sql_ish_sender_ids_reach_only_their_own_conversation(stack):
    """A conversation id that looks like SQL is just a name: its lines are stored and pulled as
    they are, and a pull for another SQL-ish id gets nothing of it."""
    sender = "x'OR'1'='1';--"
    hand_over_over_rest(stack, sender, "'; DROP TABLE messages; --")
    assert customer_lines(stack, sender) == ["позовите оператора", "нет, мне нужен живой человек"]

    status, pulled = pull(stack, sender)
    assert status == 200 and pulled["conversation_id"] == sender, (status, pulled)
    assert [line["text"] for line in pulled["messages"]] == ["'; DROP TABLE messages; --"]

    for other in ("'OR'1'='1", "x'OR'1'='1", "x'OR'1'='1';", "%25"):
        status, body = pull(stack, other)
        assert status == 404 and "messages" not in body, (other, status, body)
    status, body = pull(stack, sender, after="1 OR 1=1")
    assert status == 400 and body["error"]["code"], body
    status, pulled = pull(stack, sender)  # still there: nothing was marked delivered by the above
    assert [line["text"] for line in pulled["messages"]] == ["'; DROP TABLE messages; --"]


def test_a_percent_encoded_sender_id_is_pulled_too(stack):
    sender = "x' OR '1'='1"
    hand_over_over_rest(stack, sender, "Здравствуйте, я Анна.")
    status, pulled = pull(stack, sender, safe="")
    assert status == 200 and [line["text"] for line in pulled["messages"]] == ["Здравствуйте, я Анна."]
