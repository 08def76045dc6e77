"""The Omnidesk channel (channels.omnidesk + channels.omnidesk_client), end to end over HTTP:
Omnidesk's rule webhooks are posted to the channel's route of a Sanic app registered exactly as
``python -m engine.rasa_server`` registers channels (through the hand-over gateway, with the real
hand-off core on SQLite); the channel talks to a stand-in Omnidesk on loopback
(tests/channels/omnidesk_server.py: the real paths, Basic auth, JSON bodies, failures on demand).
The Rasa agent is the gateway tests' scripted stand-in (no model training)."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Iterator

import pytest
from sanic import Sanic

from channels.omnidesk import OMNIDESK_OPERATOR, OmnideskInput, plain_text, render
from channels.omnidesk_client import DEAD, SENT, OmnideskClient, OmnideskSettings, OmnideskUnavailable
from handoff.copilot import Copilot, CopilotModes
from handoff.gateway import CopilotGate, HandoverGateway, register_through_gateway
from handoff.machine import HandoffService, State
from tests.channels.omnidesk_server import FakeOmnidesk, running_omnidesk
from tests.handoff.conftest import sqlite_service
from tests.handoff.test_gateway import MARKER, RESPONSES, FakeAgent, FakeAssistant

SECRET = "s3cret-webhook"
RESPONSES_HERE = {**RESPONSES, "utter_ask_what_help": "Уточните, пожалуйста, чем помочь?"}
INTENTS = {"купите дешёвые часы": "spam"}


class NLG:
    async def generate(self, response: str, tracker: Any, channel: str, **kwargs: Any) -> Any:
        return {"text": RESPONSES_HERE[response]} if response in RESPONSES_HERE else None


class Trackers:
    """The part of a tracker store the channel reads: the last message's intent."""

    def __init__(self) -> None:
        self.intents: Dict[str, str] = {}

    async def retrieve(self, sender: str) -> Any:
        return SimpleNamespace(latest_message=SimpleNamespace(intent={"name": self.intents.get(sender)}))


class Agent(FakeAgent):
    def __init__(self, scripts: Any) -> None:
        super().__init__(scripts)
        self.nlg = NLG()
        self.tracker_store = Trackers()

    async def handle_message(self, message: Any) -> None:
        self.tracker_store.intents[message.sender_id] = INTENTS.get(message.text, "inform")
        await super().handle_message(message)


SCRIPTS = {
    "позовите оператора": [{"text": "Передаю."}, {"custom": MARKER.to_message()}],
    "купите дешёвые часы": [],  # the spam rule: no answer
    "что умеешь": [{"text": "Выберите:", "buttons": [{"title": "Баланс", "payload": "/check_balance"},
                                                    {"title": "Возврат", "payload": "/refund_request"}]}],
}


@pytest.fixture
def omnidesk() -> Iterator[FakeOmnidesk]:
    with running_omnidesk() as fake:
        yield fake


def settings_for(fake: FakeOmnidesk, tmp_path: Path, **overrides: Any) -> OmnideskSettings:
    values: Dict[str, Any] = dict(
        url=fake.url, staff_email=fake.email, api_key=fake.api_key, webhook_secret=SECRET, handover_group_id=7,
        handover_status="open", bot_staff_id=42, database_url=f"sqlite:///{tmp_path / 'omnidesk.db'}",
        timeout_seconds=5.0, attempts_per_round=3, backoff_seconds=0.01, retry_interval_seconds=0.05,
        dead_after_attempts=3,
    )
    values.update(overrides)
    return OmnideskSettings(**values)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[HandoffService]:
    from datetime import datetime, timezone

    service = sqlite_service(tmp_path / "handoff.db", clock=lambda: datetime.now(timezone.utc))
    yield service
    service.session_factory.kw["bind"].dispose()


class Stack(SimpleNamespace):
    app: Sanic
    channel: OmnideskInput
    gateway: HandoverGateway
    service: HandoffService
    agent: Agent

    def post(self, body: Dict[str, Any], secret: str = SECRET, status: int = 200) -> Dict[str, Any]:
        _, response = self.app.test_client.post("/webhooks/omnidesk/webhook", json=body,
                                                headers={"X-Omnidesk-Secret": secret})
        assert response.status == status, response.text
        return response.json

    def customer(self, case_id: int, message_id: int, text: str, event: str = "message_new") -> Dict[str, Any]:
        return self.post({"type": event, "object": {"case_id": case_id, "message_id": message_id, "content": text,
                                                     "user_id": 5, "staff_id": 0, "note": False}})


def build(tmp_path: Path, fake: FakeOmnidesk, service: HandoffService, **overrides: Any) -> Stack:
    monkey_modes = tmp_path / "copilot.yml"
    monkey_modes.write_text("default: autonomous\n", encoding="utf-8")
    app = Sanic(f"omnidesk_test_{uuid.uuid4().hex[:8]}")
    agent = Agent(SCRIPTS)
    app.ctx.agent = agent
    channel = OmnideskInput(settings_for(fake, tmp_path, **overrides))
    gateway = HandoverGateway(
        lambda: app.ctx.agent, [channel], service=service,
        copilot=CopilotGate(CopilotModes.parse({"topics": {"b2b_documents": "copilot"}}), FakeAssistant()),
    )
    register_through_gateway([channel], app, "/webhooks/", gateway)
    return Stack(app=app, channel=channel, gateway=gateway, service=service, agent=agent)


@pytest.fixture
def stack(tmp_path: Path, omnidesk: FakeOmnidesk, service: HandoffService) -> Stack:
    return build(tmp_path, omnidesk, service)


# --- Done when: a new case gets a bot reply ---------------------------------------------------------


def test_a_new_case_gets_a_bot_reply_posted_as_a_staff_message(stack: Stack, omnidesk: FakeOmnidesk):
    assert stack.customer(501, 9001, "<p>привет</p>", event="case_new") == {"result": "ok"}
    assert omnidesk.replies(501) == ["эхо: привет"]
    call = omnidesk.done("message", 501)[0]
    assert call.method == "POST" and call.path == "/api/cases/501/messages.json"
    assert call.body == {"message": {"content": "эхо: привет", "staff_id": 42}}
    assert [m.text for m in stack.agent.handled] == ["привет"] and stack.agent.handled[0].sender_id == "omnidesk-501"
    assert stack.service.conversation("omnidesk-501").state is State.BOT


def test_buttons_are_posted_as_numbered_text_options(stack: Stack, omnidesk: FakeOmnidesk):
    stack.customer(502, 9002, "что умеешь")
    assert omnidesk.replies(502) == ["Выберите:\n\n1. Баланс\n2. Возврат"]


def test_the_secret_is_checked_and_staff_lines_are_not_answered(stack: Stack, omnidesk: FakeOmnidesk):
    stack.post({"type": "message_new", "object": {"case_id": 503, "message_id": 1, "content": "привет"}},
               secret="wrong", status=403)
    stack.post({"type": "message_new", "object": {"case_id": 503, "message_id": 2, "content": "привет"}},
               secret="", status=403)
    assert stack.post({"type": "message_new", "object": {"case_id": 503, "message_id": 3, "content": "ответ",
                                                          "staff_id": 42}}) == {"result": "ignored"}
    assert stack.post({"type": "message_new", "object": {"case_id": 503, "message_id": 4, "content": "заметка",
                                                          "note": True}}) == {"result": "ignored"}
    stack.post({"type": "message_new", "object": {"content": "без обращения"}}, status=400)
    assert omnidesk.calls == [] and stack.agent.handled == []


# --- Done when: a webhook retry gives no second reply -----------------------------------------------


def test_a_webhook_retry_gives_no_second_reply_even_after_a_restart(tmp_path, stack: Stack, omnidesk, service):
    assert stack.customer(510, 9100, "привет") == {"result": "ok"}
    assert stack.customer(510, 9100, "привет") == {"result": "duplicate"}
    restarted = build(tmp_path, omnidesk, service)  # a new process on the same database
    assert restarted.customer(510, 9100, "привет") == {"result": "duplicate"}
    assert omnidesk.replies(510) == ["эхо: привет"]
    assert len(stack.agent.handled) == 1 and restarted.agent.handled == []
    assert restarted.customer(510, 9101, "ещё вопрос") == {"result": "ok"}  # a new message id is answered
    assert omnidesk.replies(510) == ["эхо: привет", "эхо: ещё вопрос"]


# --- Done when: a hand-over assigns the case and silences the bot -----------------------------------


def test_a_hand_over_assigns_the_case_posts_the_summary_note_and_silences_the_bot(stack: Stack, omnidesk):
    stack.customer(520, 9200, "позовите оператора")
    assert omnidesk.replies(520) == ["Передаю."]  # the marker's public form is not posted
    update = omnidesk.done("update_case", 520)
    assert [c.body for c in update] == [{"case": {"status": "open", "group_id": 7}}]
    assert omnidesk.case(520)["group_id"] == 7
    [note] = omnidesk.notes(520)
    assert "Причина: insisted_on_human" in note and "T-1" in note and "оператора!" in note
    assert omnidesk.done("note", 520)[0].body["note"]["staff_id"] == 42
    view = stack.service.conversation("omnidesk-520")
    assert view.state is State.OPERATOR and view.operator_id == OMNIDESK_OPERATOR

    assert stack.customer(520, 9201, "жду человека") == {"result": "ok"}
    assert omnidesk.replies(520) == ["Передаю."]  # silent: the bot never saw it
    assert [m.text for m in stack.agent.handled] == ["позовите оператора"]
    assert stack.service.conversation("omnidesk-520").messages[-1].text == "жду человека"

    # the operator gives the case back in Omnidesk (the "give back" rule)
    assert stack.post({"type": "case_returned", "object": {"case_id": 520, "staff_id": 77}}) == {"result": "ok"}
    assert stack.service.conversation("omnidesk-520").state is State.BOT
    assert omnidesk.replies(520)[-1] == RESPONSES["utter_handoff_returned"]
    assert stack.post({"type": "case_returned", "object": {"case_id": 520}}) == {"result": "noop"}  # a retry
    stack.customer(520, 9202, "спасибо")
    assert omnidesk.replies(520)[-1] == "эхо: спасибо"


# --- Done when: a copilot topic posts a note, not a reply --------------------------------------------


def test_a_copilot_topic_posts_the_draft_as_a_note_never_as_a_reply_and_ratings_count(stack: Stack, omnidesk):
    stack.customer(530, 9300, "нужны закрывающие документы")
    draft = "Напишите ИНН организации."
    assert not any(draft in reply for reply in omnidesk.replies(530))
    assert omnidesk.replies(530) == [RESPONSES["utter_copilot_hold"]]
    [note] = omnidesk.notes(530)
    assert draft in note and "клиенту НЕ отправлен" in note
    assert [c.body for c in omnidesk.done("update_case", 530)] == [{"case": {"status": "open", "group_id": 7}}]
    assert stack.agent.handled == []  # the bot did not answer the topic
    copilot = Copilot(stack.service, CopilotModes())
    [shown] = [e for e in copilot.events("omnidesk-530") if e["kind"] == "draft_shown"]
    assert shown["draft_text"] == draft and shown["topic"] == "b2b_documents"

    # the operator dislikes, then likes the draft (label rules): the console's statistics
    assert stack.post({"type": "draft_rated", "object": {"case_id": 530, "staff_id": 77, "rating": "dislike"}}) == {"result": "ok"}
    assert stack.post({"type": "draft_rated", "object": {"case_id": 530, "staff_id": 77, "label": "хорошо"}}) == {"result": "ok"}
    rated = [e for e in copilot.events("omnidesk-530") if e["kind"] == "rated"]
    assert [(e["rating"], e["operator_id"]) for e in rated] == [("dislike", "omnidesk:77"), ("like", "omnidesk:77")]
    stats = copilot.stats()["b2b_documents"].to_dict()
    assert stats["drafts"] == 1 and stats["rated"] == 1 and stats["likes"] == 1 and stats["dislikes"] == 0
    assert stack.post({"type": "draft_rated", "object": {"case_id": 531, "rating": "like"}}) == {"result": "no_draft"}


# --- spam, empty messages ----------------------------------------------------------------------------


def test_a_spam_case_is_marked_as_spam_and_gets_no_reply(stack: Stack, omnidesk):
    stack.customer(540, 9400, "купите дешёвые часы", event="case_new")
    assert [c.path for c in omnidesk.done("spam")] == ["/api/cases/540/spam.json"]
    assert omnidesk.case(540)["spam"] is True and omnidesk.replies(540) == []


def test_an_empty_first_message_gets_the_clarifying_question(stack: Stack, omnidesk):
    stack.customer(550, 9500, "<p><br></p>", event="case_new")
    assert omnidesk.replies(550) == [RESPONSES_HERE["utter_ask_what_help"]]
    assert stack.agent.handled == []
    assert stack.service.conversation("omnidesk-550").messages[-1].text == RESPONSES_HERE["utter_ask_what_help"]


# --- Done when: Omnidesk 5xx → retried, then logged, nothing lost ------------------------------------


def _wait_and_deliver(channel: OmnideskInput, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not channel.store.all("pending"):
            return
        asyncio.run(channel.outbox.deliver_due())
        time.sleep(0.05)


def test_omnidesk_5xx_is_retried_then_logged_and_nothing_is_lost(stack: Stack, omnidesk, caplog):
    omnidesk.fail_next(3, status=502)  # the three tries of the webhook's own round
    with caplog.at_level(logging.WARNING, logger="channels.omnidesk_client"):
        assert stack.customer(560, 9600, "привет") == {"result": "ok"}  # the webhook is still accepted
    assert [c.status for c in omnidesk.calls] == [502, 502, 502]
    assert omnidesk.replies(560) == []
    assert any("kept for a retry" in r.getMessage() and "case 560" in r.getMessage() for r in caplog.records)
    [pending] = stack.channel.store.all("pending")
    assert pending.attempts == 1 and "502" in (pending.last_error or "")

    stack.customer(560, 9601, "ещё")  # a later line waits behind the first: the order is kept
    _wait_and_deliver(stack.channel)
    assert omnidesk.replies(560) == ["эхо: привет", "эхо: ещё"]
    assert [d.status for d in stack.channel.store.all()] == [SENT, SENT]


def test_a_long_outage_ends_in_the_dead_letters_which_are_kept_and_can_be_sent_again(stack: Stack, omnidesk, caplog):
    omnidesk.fail_next(1000, status=503)
    with caplog.at_level(logging.ERROR, logger="channels.omnidesk_client"):
        stack.customer(570, 9700, "привет")
        for _ in range(10):
            if stack.channel.store.dead_letters():
                break
            time.sleep(0.3)
            asyncio.run(stack.channel.outbox.deliver_due())
    [dead] = stack.channel.store.dead_letters()
    assert dead.status == DEAD and dead.payload == {"content": "эхо: привет"} and dead.attempts == 3
    assert any("dead letter" in r.getMessage() for r in caplog.records)
    omnidesk._failures.clear()
    assert stack.channel.store.requeue_dead() == 1
    asyncio.run(stack.channel.outbox.deliver_due())
    assert omnidesk.replies(570) == ["эхо: привет"]


async def test_429_is_retried_after_the_retry_after_delay(tmp_path, omnidesk):
    client = OmnideskClient(settings_for(omnidesk, tmp_path))
    omnidesk.fail_next(1, status=429, retry_after=0)
    answer = await client.post_note(580, "заметка")
    assert answer["message"]["note"] is True
    assert [c.status for c in omnidesk.calls] == [429, 200]
    omnidesk.fail_next(5, status=500)
    with pytest.raises(OmnideskUnavailable):
        await client.post_message(580, "ответ")
    assert [c.status for c in omnidesk.calls][-3:] == [500, 500, 500]  # attempts_per_round


async def test_wrong_credentials_are_a_permanent_error(tmp_path, omnidesk):
    from channels.omnidesk_client import OmnideskRejected

    client = OmnideskClient(settings_for(omnidesk, tmp_path, api_key="wrong"))
    with pytest.raises(OmnideskRejected) as error:
        await client.mark_spam(590)
    assert error.value.status == 401


def test_rendering_and_html():
    assert plain_text("<div>Здравствуйте,<br>не пришёл&nbsp;сертификат</div>") == "Здравствуйте,\nне пришёл\xa0сертификат"
    assert render({"custom": {"handoff": {"ticket_id": "T"}}}) is None
    assert render({"text": "Фото", "image": "https://x/y.png"}) == "Фото\n\nhttps://x/y.png"


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OMNIDESK_URL", "https://darim.omnidesk.ru/")
    monkeypatch.setenv("OMNIDESK_STAFF_EMAIL", "bot@darim.ru")
    monkeypatch.setenv("OMNIDESK_API_KEY", "key")
    monkeypatch.setenv("OMNIDESK_HANDOVER_GROUP_ID", "12")
    settings = OmnideskSettings.from_env()
    assert settings.url == "https://darim.omnidesk.ru" and settings.handover_group_id == 12 and settings.configured
    assert "key" not in repr(settings)
    assert OmnideskInput.from_credentials({"handover_status": "waiting"}).settings.handover_status == "waiting"


def test_rasa_registers_the_channel_from_credentials_yml(tmp_path, monkeypatch):
    from rasa.core.run import create_http_input_channels

    monkeypatch.setenv("OMNIDESK_HANDOVER_GROUP_ID", "12")
    credentials = tmp_path / "credentials.yml"
    credentials.write_text("channels.omnidesk.OmnideskInput:\n  bot_staff_id: '42'\n", encoding="utf-8")
    [channel] = create_http_input_channels(None, str(credentials))
    assert isinstance(channel, OmnideskInput) and channel.name() == "omnidesk"
    assert channel.settings.handover_group_id == 12 and channel.settings.bot_staff_id == 42
    # the project's own credentials.yml documents it (commented: it needs a real account)
    assert "#channels.omnidesk.OmnideskInput:" in Path("credentials.yml").read_text(encoding="utf-8")


def test_the_secret_may_come_in_the_query_string(stack: Stack, omnidesk):
    _, response = stack.app.test_client.post(
        f"/webhooks/omnidesk/webhook?secret={SECRET}",
        json={"type": "case_new", "object": {"case_id": 600, "message_id": 9900, "content": "привет"}})
    assert response.status == 200 and omnidesk.replies(600) == ["эхо: привет"]
