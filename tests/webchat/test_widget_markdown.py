"""The widget's formatting of the bot's text, run in Chromium on a blank page (no stack needed)."""
from __future__ import annotations

import pytest

from webchat.server import STATIC_DIR

CASES = [
    ("просто текст", "просто текст"),
    ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;"),
    ('a & b "c" \'d\'', "a &amp; b &quot;c&quot; &#39;d&#39;"),
    ("**Важно:** срок *12 месяцев*", "<strong>Важно:</strong> срок <em>12 месяцев</em>"),
    ("строка 1\nстрока 2", "строка 1<br>строка 2"),
    ("код DRM-****-****-7Q2K", "код DRM-****-****-7Q2K"),
    ("2 * 3 * 4", "2 * 3 * 4"),
    ("[Правила](https://darim.example/rules?a=1&b=2)",
     '<a href="https://darim.example/rules?a=1&amp;b=2" target="_blank" rel="noopener noreferrer">Правила</a>'),
    ("[**жирная** ссылка](https://darim.example)",
     '<a href="https://darim.example" target="_blank" rel="noopener noreferrer"><strong>жирная</strong> ссылка</a>'),
    ("[клик](javascript:alert(1))", "[клик](javascript:alert(1))"),
    # not a markdown link (a quote in the URL): the bare URL stops at the quote, which stays text
    ('[x](https://a.example/"onmouseover=alert(1))',
     '[x](<a href="https://a.example/" target="_blank" rel="noopener noreferrer">https://a.example/</a>'
     "&quot;onmouseover=alert(1))"),
    ("Подробнее: https://darim.example/help.",
     'Подробнее: <a href="https://darim.example/help" target="_blank" rel="noopener noreferrer">'
     "https://darim.example/help</a>."),
    ("сайт www.darim.example, и всё",
     'сайт <a href="https://www.darim.example" target="_blank" rel="noopener noreferrer">www.darim.example</a>, и всё'),
    ("«https://darim.example»",
     '«<a href="https://darim.example" target="_blank" rel="noopener noreferrer">https://darim.example</a>»'),
]


@pytest.fixture(scope="module")
def blank(browser):
    page = browser.new_page()
    page.add_init_script("window.DarimWebchatConfig = {autostart: false};")
    page.goto("about:blank")
    page.add_script_tag(path=str(STATIC_DIR / "widget.js"))
    yield page
    page.close()


def test_markdown_is_escaped_then_formatted(blank):
    rendered = blank.evaluate("cases => cases.map(text => DarimWebchat.renderMarkdown(text))", [c[0] for c in CASES])
    assert list(zip([c[0] for c in CASES], rendered)) == [(c[0], c[1]) for c in CASES]
    assert blank.evaluate("document.querySelector('#darim-webchat')") is None  # autostart: false


def test_bot_payloads_are_normalized(blank):
    normalize = "payload => DarimWebchat.normalizeBotMessage(payload)"
    assert blank.evaluate(normalize, {"text": "Привет"}) == {"from": "bot", "text": "Привет"}
    assert blank.evaluate(normalize, {
        "text": "С чем нужна помощь?",
        "quick_replies": [{"content_type": "text", "title": "Проверить баланс", "payload": "/check_balance"}],
    }) == {"from": "bot", "text": "С чем нужна помощь?", "buttons": [{"title": "Проверить баланс", "payload": "/check_balance"}]}
    assert blank.evaluate(normalize, {"text": "?", "buttons": [{"title": "Да", "payload": "/affirm"}]})["buttons"] == [
        {"title": "Да", "payload": "/affirm"}]
    assert blank.evaluate(normalize, {"attachment": {"type": "image", "payload": {"src": "https://x.example/a.png"}}}) == {
        "from": "bot", "image": "https://x.example/a.png"}
    assert blank.evaluate(normalize, {"image": "https://x.example/b.png"})["image"] == "https://x.example/b.png"
    for ignored in ({"custom": {"kind": "card"}}, {"image": "javascript:alert(1)"}, None, 42,
                    {"attachment": {"type": "template", "payload": {}}}):
        assert blank.evaluate(normalize, ignored) is None
