"""Telegram through Rasa's own channel (credentials.yml's commented ``telegram:`` block, enabled
as documented) in the real stack, against a local stand-in of the Bot API
(tests/channels/telegram_bot_api.py; ``TELEGRAM_API_URL``, engine/telegram_channel.py): an update
POSTed to the webhook gets the bot's reply as ``sendMessage``, buttons as an inline keyboard whose
press is understood, and a hand-over goes through the gateway — the conversation waits in the
operators' queue as a Telegram one, and an operator's reply reaches the chat through the Bot API."""
from __future__ import annotations

import json
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from handoff.machine import State
from tests.channels.telegram_bot_api import TelegramBotApi, telegram_button_press, telegram_update
from tests.stack_process import PROJECT_ROOT, RunningStack, running_stack

WEBHOOK = "/webhooks/telegram/webhook"
PUBLIC_WEBHOOK_URL = "https://bot.darim.example/webhooks/telegram/webhook"


def credentials_with_telegram(target: Path) -> Path:
    """The project's credentials.yml with its commented ``telegram:`` block uncommented, as the
    README tells a deployment to do."""
    lines, in_block = [], False
    for line in (PROJECT_ROOT / "credentials.yml").read_text(encoding="utf-8").splitlines():
        if line.startswith("#telegram:"):
            in_block = True
        elif in_block and not line.startswith("#  "):
            in_block = False
        lines.append(line[1:] if in_block else line)
    text = "\n".join(lines) + "\n"
    assert "\ntelegram:\n  access_token: ${TELEGRAM_BOT_TOKEN}" in text, "credentials.yml's telegram block changed"
    target.write_text(text, encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def bot_api() -> Iterator[TelegramBotApi]:
    with TelegramBotApi(token="7100200300:AAH-stand-in_token-for-tests", username="darim_support_bot") as api:
        yield api


@pytest.fixture(scope="module")
def stack(trained_model, tmp_path_factory, bot_api) -> Iterator[RunningStack]:
    directory = tmp_path_factory.mktemp("telegram-stack")
    env = {
        "RASA_CREDENTIALS": str(credentials_with_telegram(directory / "credentials.yml")),
        "TELEGRAM_BOT_TOKEN": bot_api.token,
        "TELEGRAM_BOT_USERNAME": bot_api.username,
        "TELEGRAM_WEBHOOK_URL": PUBLIC_WEBHOOK_URL,
        "TELEGRAM_API_URL": bot_api.url,
    }
    with running_stack(trained_model, directory, env) as running:
        yield running


def post_update(stack: RunningStack, update: Dict[str, Any]) -> str:
    """What Telegram does: POST the update as JSON to the webhook."""
    request = urllib.request.Request(stack.rasa_url + WEBHOOK, data=json.dumps(update, ensure_ascii=False).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read().decode()


def sent_to(bot_api: TelegramBotApi, chat_id: int) -> list:
    return [call.text for call in bot_api.called("sendMessage", str(chat_id))]


def test_the_webhook_is_registered_with_the_public_url_at_start(stack, bot_api):
    call = bot_api.wait_for("setWebhook")
    assert call.params["url"] == PUBLIC_WEBHOOK_URL and bot_api.webhook_url == PUBLIC_WEBHOOK_URL


def test_an_update_gets_the_bots_reply_through_the_bot_api(stack, bot_api):
    assert post_update(stack, telegram_update(1, 5001, "добрый день")) == "success"
    reply = bot_api.wait_for("sendMessage", lambda call: call.chat_id == "5001")
    assert "«Дарим»" in reply.text, reply
    assert all(call.token == bot_api.token for call in bot_api.calls)
    assert bot_api.called("getMe"), "the channel checks the bot's username (verify) on every update"


def test_buttons_are_an_inline_keyboard_and_a_press_is_understood(stack, bot_api):
    chat = 5002
    post_update(stack, telegram_update(10, chat, "здравствуйте, помогите пожалуйста"))
    with_buttons = bot_api.wait_for("sendMessage", lambda call: call.chat_id == str(chat) and "reply_markup" in call.params)
    keyboard = with_buttons.params["reply_markup"]["inline_keyboard"]
    buttons = {button["text"]: button["callback_data"] for row in keyboard for button in row}
    assert buttons.get("Проверить баланс") == "/check_balance", keyboard
    assert all(len(data.encode()) <= 64 for data in buttons.values()), "Telegram's callback_data limit"
    before = len(sent_to(bot_api, chat))
    post_update(stack, telegram_button_press(11, chat, buttons["Проверить баланс"], message_id=with_buttons.params.get("message_id", 1)))
    bot_api.wait_for("sendMessage", lambda call: call.chat_id == str(chat) and len(sent_to(bot_api, chat)) > before)
    answer = " ".join(sent_to(bot_api, chat)[before:])
    assert "сертификат" in answer.lower() or "код" in answer.lower(), answer


def test_a_hand_over_goes_to_the_queue_and_the_operators_reply_reaches_the_chat(stack, bot_api):
    chat = 5003
    post_update(stack, telegram_update(20, chat, "позовите оператора"))
    bot_api.wait_for("sendMessage", lambda call: call.chat_id == str(chat))
    post_update(stack, telegram_update(21, chat, "нет, мне нужен живой человек"))
    bot_api.wait_for("sendMessage", lambda call: call.chat_id == str(chat) and "обращение №" in call.text)

    handoff = stack.handoff()
    assert handoff.conversation(str(chat), with_messages=False).state is State.WAITING
    assert str(chat) in [item.conversation_id for item in handoff.queue()]
    with sqlite3.connect(stack.handoff_database) as db:
        assert db.execute("SELECT channel FROM conversations WHERE id = ?", (str(chat),)).fetchone() == ("telegram",)

    # while it waits, the customer's messages go to the operators only: the bot stays silent
    before = len(sent_to(bot_api, chat))
    assert post_update(stack, telegram_update(22, chat, "алло, есть кто?")) == "success"
    customer_lines = [m.text for m in handoff.conversation(str(chat)).messages if m.sender == "customer"]
    assert customer_lines[-1] == "алло, есть кто?" and len(sent_to(bot_api, chat)) == before

    # the operator answers from the console (the hand-off core): the relay sends it to Telegram
    handoff.take(str(chat), "anna")
    handoff.operator_reply(str(chat), "anna", "Здравствуйте, я Анна. Сейчас посмотрю ваш заказ.")
    bot_api.wait_for("sendMessage", lambda call: call.chat_id == str(chat) and call.text.startswith("Здравствуйте, я Анна"))

    # given back to the bot: its welcome-back line reaches the chat too, and it answers again
    handoff.return_to_bot(str(chat), "anna")
    bot_api.wait_for("sendMessage", lambda call: call.chat_id == str(chat) and "ассистент" in call.text.lower())
    assert handoff.conversation(str(chat), with_messages=False).state is State.BOT
