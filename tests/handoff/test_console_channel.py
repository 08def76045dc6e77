"""The channel side of the hand-over (webchat.channel): the hand-over marker is intercepted and
queues the conversation; while it is waiting / with an operator the customer's messages do not
reach Rasa and the bot's messages are held back; operator replies reach the session's room; a
return to the bot resumes Rasa and greets the customer back; a copilot topic's message goes to the
operators' queue with the bot's draft attached instead of reaching Rasa."""
from __future__ import annotations

import urllib.error

import pytest

import webchat.channel as channel_module
from handoff.copilot import Copilot, CopilotModes, Draft
from handoff.drafts import attached_draft
from handoff.machine import HandoffService, State
from tests.webchat.socketio_channel import connected_channel
from webchat.channel import CopilotGate, SocketIOOutput

MARKER = {
    "handoff": {
        "ticket_id": "T-1",
        "reason": "insisted_on_human",
        "summary": {"intent": "request_human", "slots": {"certificate_code": "DRM-****-****-7Q2K"}, "last_messages": ["оператора!"]},
        "transcript": [{"sender": "customer", "text": "позовите оператора"}, {"sender": "customer", "text": "оператора!"}],
    }
}


@pytest.fixture
def posted(monkeypatch):
    calls: list = []

    def fake_post(url, payload, timeout=30.0):
        calls.append((url, payload))
        return {"messages": []} if "trigger_intent" in url else {"paused": False}

    monkeypatch.setattr(channel_module, "_post_json", fake_post)
    monkeypatch.setenv("RASA_SELF_URL", "http://rasa.test:5005")
    return calls


@pytest.fixture
async def chat(service: HandoffService, posted):
    channel_module.set_handoff_service(service)
    channel_module.set_copilot_gate(CopilotGate(modes=CopilotModes()))  # every topic autonomous
    received: list = []
    channel, sio, sid = await connected_channel(received)
    await sio.handlers["/"]["session_request"](sid, {"session_id": "s1"})
    sio.emit.reset_mock()

    async def say(text: str) -> None:
        await sio.handlers["/"]["user_uttered"](sid, {"message": text, "session_id": "s1"})

    yield channel, sio, say, received
    if channel.relay and channel.relay.task:
        channel.relay.task.cancel()
    channel_module.set_handoff_service(None)
    channel_module.set_copilot_gate(None)


async def test_marker_queues_the_conversation_and_is_not_sent(chat, service):
    channel, sio, say, received = chat
    await say("позовите оператора")
    assert [m.text for m in received] == ["позовите оператора"]
    output = received[0].output_channel
    await output.send_response("s1", {"text": "Передаю оператору, тикет T-1."})
    await output.send_response("s1", {"custom": MARKER})
    # only the text went to the browser; the marker was intercepted
    assert [call.args[1] for call in sio.emit.await_args_list] == [{"text": "Передаю оператору, тикет T-1."}]
    view = service.conversation("s1")
    assert view.state is State.WAITING and view.ticket_id == "T-1"
    assert view.summary["slots"] == {"certificate_code": "DRM-****-****-7Q2K"} and view.summary["reason"] == "insisted_on_human"
    assert [m.sender for m in view.messages] == ["customer", "bot", "system"]


async def test_paused_conversation_customer_message_is_kept_from_rasa_and_bot_is_silent(chat, service):
    channel, sio, say, received = chat
    service.hand_over("s1", "T-1", None, [])
    await say("ну где же оператор?")
    assert received == []  # not passed to Rasa
    assert service.queue()[0].unread == 1
    await SocketIOOutput(sio, "bot_uttered").send_response("s1", {"text": "Я бот и хочу ответить"})
    sio.emit.assert_not_awaited()  # the bot does not speak while the conversation waits
    service.take("s1", "anna")
    await say("здравствуйте")
    await SocketIOOutput(sio, "bot_uttered").send_response("s1", {"text": "И снова бот"})
    assert received == [] and not sio.emit.await_args_list
    assert [m.text for m in service.conversation("s1").messages if m.sender == "bot"] == []


async def test_operator_replies_reach_the_room_and_return_resumes_rasa(chat, service, posted):
    channel, sio, say, received = chat
    service.hand_over("s1", "T-1", None, [])
    service.take("s1", "anna")
    service.operator_reply("s1", "anna", "Здравствуйте, я Анна.")
    await channel.relay.poll_once()
    sio.emit.assert_awaited_once_with(
        "bot_uttered", {"text": "Здравствуйте, я Анна.", "metadata": {"from": "operator"}}, room="s1", namespace=None
    )
    assert service.pending_operator_messages("s1") == []
    await channel.relay.poll_once()
    assert sio.emit.await_count == 1  # delivered once

    service.return_to_bot("s1", "anna")
    await channel.relay.poll_once()
    assert posted[0] == ("http://rasa.test:5005/conversations/s1/tracker/events",
                         [{"event": "resume"}, {"event": "action", "name": "action_listen"}])
    assert posted[1] == ("http://rasa.test:5005/conversations/s1/trigger_intent?output_channel=socketio", {"name": "greet"})
    assert service.pending_operator_messages("s1") == []
    await say("а ещё вопрос")
    assert [m.text for m in received] == ["а ещё вопрос"]  # the bot has it again


async def test_return_greets_with_a_fixed_line_when_the_intent_cannot_be_triggered(chat, service, monkeypatch):
    channel, sio, say, received = chat

    def failing(url, payload, timeout=30.0):
        if "trigger_intent" in url:
            raise urllib.error.URLError("down")
        return {"paused": False}

    monkeypatch.setattr(channel_module, "_post_json", failing)
    service.hand_over("s1", "T-1", None, [])
    service.take("s1", "anna")
    service.return_to_bot("s1", "anna")
    await channel.relay.poll_once()
    sio.emit.assert_awaited_once_with("bot_uttered", {"text": channel_module.GREETING}, room="s1", namespace=None)


async def test_close_tells_the_customer_and_the_next_message_reopens_to_the_bot(chat, service, posted):
    channel, sio, say, received = chat
    service.hand_over("s1", "T-1", None, [])
    service.close("s1", "anna")
    await channel.relay.poll_once()
    assert sio.emit.await_args.args[1]["text"] == channel_module.CLOSED_TEXT
    assert posted[0][0].endswith("/conversations/s1/tracker/events")
    await say("привет снова")
    assert [m.text for m in received] == ["привет снова"] and service.conversation("s1").state is State.BOT


async def test_the_background_relay_starts_on_the_first_session(chat):
    channel, sio, say, received = chat
    assert channel.relay is not None and channel.relay.task is not None and not channel.relay.task.done()
    assert "s1" in channel.relay.sessions


class FakeAssistant:
    """The draft provider the gate asks: a fixed parse per text, a draft naming its source."""

    INTENTS = {"нужны закрывающие документы": "b2b_documents", "сколько действует сертификат": "knowledge_question"}

    def __init__(self) -> None:
        self.parsed: list = []

    async def parse(self, text: str) -> dict:
        self.parsed.append(text)
        return {"intent": {"name": self.INTENTS.get(text, "inform"), "confidence": 0.93}, "entities": []}

    async def draft_for(self, text: str, parsed: dict) -> Draft:
        return Draft("Напишите ИНН организации.", 0.93, "scenario:b2b_form", parsed["intent"]["name"])


async def test_a_copilot_topic_goes_to_the_queue_with_the_draft_and_skips_rasa(chat, service):
    channel, sio, say, received = chat
    assistant = FakeAssistant()
    channel_module.set_copilot_gate(CopilotGate(CopilotModes.parse({"topics": {"b2b_documents": "copilot"}}), assistant))
    await say("сколько действует сертификат")  # an autonomous topic: the bot answers
    assert [m.text for m in received] == ["сколько действует сертификат"]
    # with the check's parse, so Rasa does not parse the message a second time
    assert received[0].parse_data["intent"]["name"] == "knowledge_question"

    await say("нужны закрывающие документы")
    assert [m.text for m in received] == ["сколько действует сертификат"]  # Rasa never saw it
    view = service.conversation("s1")
    assert view.state is State.WAITING and view.summary["reason"] == "copilot"
    assert view.summary["intent"] == "b2b_documents"
    assert view.summary["draft"]["text"] == "Напишите ИНН организации."
    assert view.summary["draft"]["for_text"] == "нужны закрывающие документы"
    # the customer is told a specialist answers; the bot's draft is not sent
    assert sio.emit.await_args.args[1] == {"text": channel_module.COPILOT_HOLD_TEXT, "metadata": {"from": "system"}}
    assert all("ИНН" not in str(call.args[1]) for call in sio.emit.await_args_list)
    assert service.queue()[0].conversation_id == "s1"

    # with an operator every message goes to the operator, without a parse
    service.take("s1", "anna")
    await say("ИНН 7707083893")
    assert assistant.parsed == ["сколько действует сертификат", "нужны закрывающие документы"]
    assert len(received) == 1

    # the operator's first draft is the attached one; a later customer message gets a fresh draft
    copilot = Copilot(service, CopilotModes())
    last = [m for m in service.conversation("s1").messages if m.sender == "customer"][-2]
    draft = attached_draft(service.conversation("s1").summary, last.text)
    assert draft == Draft("Напишите ИНН организации.", 0.93, "scenario:b2b_form", "b2b_documents")
    assert attached_draft(service.conversation("s1").summary, "ИНН 7707083893") is None
    shown = copilot.draft_shown("s1", "anna", draft, message_id=last.id)
    assert shown.topic == "b2b_documents" and shown.source == "scenario:b2b_form"


async def test_when_the_copilot_check_fails_the_bot_answers(chat, service):
    channel, sio, say, received = chat

    class Broken(FakeAssistant):
        async def parse(self, text: str) -> dict:
            raise RuntimeError("parse exploded")

    channel_module.set_copilot_gate(CopilotGate(CopilotModes.parse({"default": "copilot"}), Broken()))
    await say("нужны закрывающие документы")
    assert [m.text for m in received] == ["нужны закрывающие документы"]
    assert service.conversation("s1").state is State.BOT


async def test_no_copilot_topic_means_no_parse_round_trip(chat):
    channel, sio, say, received = chat
    assistant = FakeAssistant()
    channel_module.set_copilot_gate(CopilotGate(CopilotModes(), assistant))
    await say("нужны закрывающие документы")
    assert assistant.parsed == [] and len(received) == 1
    assert received[0].parse_data is None  # Rasa parses it itself
