"""The hand-over gateway (handoff.gateway): the one owner of who speaks, for every channel.

The hand-off core is real (SQLite; the cross-replica test also runs on PostgreSQL); the Rasa
agent is a scripted stand-in whose "actions" answer through the output channel the gateway gives
them, exactly as Rasa's processor does (``send_response`` per bot message)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest
from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, OutputChannel, UserMessage

from handoff.copilot import Copilot, CopilotModes, Draft
from handoff.drafts import attached_draft
from handoff.gateway import FALLBACK_TEXTS, CopilotGate, HandoverGateway
from handoff.machine import HandoffService, State
from handoff.marker import HandoverMarker
from handoff.outbox import Outbox

MARKER = HandoverMarker(
    ticket_id="T-1",
    reason="insisted_on_human",
    summary={"intent": "request_human", "slots": {"certificate_code": "DRM-****-****-7Q2K"}, "last_messages": ["оператора!"]},
    transcript=({"sender": "customer", "text": "позовите оператора"}, {"sender": "customer", "text": "оператора!"}),
)
RESPONSES = {
    "utter_handoff_returned": "Снова с вами ассистент (из домена).",
    "utter_handoff_closed": "Оператор завершил диалог (из домена).",
    "utter_copilot_hold": "Передала специалисту (из домена).",
}


class FakeNLG:
    async def generate(self, response: str, tracker: Any, channel: str, **kwargs: Any) -> Optional[Dict[str, Any]]:
        return {"text": RESPONSES[response]} if response in RESPONSES else None


class FakeAgent:
    """Answers each text with its script (default: an echo), through the given output channel."""

    domain = None
    tracker_store = None

    def __init__(self, scripts: Optional[Dict[str, List[Dict[str, Any]]]] = None, during_turn=None) -> None:
        self.scripts = scripts or {}
        self.handled: List[UserMessage] = []
        self.parsed: List[str] = []
        self.nlg = FakeNLG()
        self.during_turn = during_turn  # called in the middle of a turn (races)

    async def parse_message(self, text: str) -> Dict[str, Any]:
        self.parsed.append(text)
        return {"intent": {"name": "inform", "confidence": 0.9}, "entities": [], "text": text}

    async def handle_message(self, message: UserMessage) -> None:
        self.handled.append(message)
        for reply in self.scripts.get(message.text, [{"text": f"эхо: {message.text}"}]):
            if self.during_turn is not None:
                self.during_turn()
            await message.output_channel.send_response(message.sender_id, dict(reply))


class RecordingOutput(OutputChannel):
    def __init__(self, sent: List[tuple], fail: bool = False) -> None:
        self.sent, self.fail = sent, fail

    @classmethod
    def name(cls) -> str:
        return "pushchat"

    async def send_response(self, recipient_id: str, message: Dict[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("the customer's channel is down")
        self.sent.append((recipient_id, dict(message)))


class PushChannel(InputChannel):
    """A channel that can reach a customer outside a turn (like socket.io or Telegram)."""

    def __init__(self, connected: Optional[set] = None) -> None:
        self.sent: List[tuple] = []
        self.connected = connected
        self.fail = False

    @classmethod
    def name(cls) -> str:
        return "pushchat"

    def get_output_channel(self) -> OutputChannel:
        return RecordingOutput(self.sent, self.fail)

    def reachable(self, recipient_id: str) -> bool:
        return self.connected is None or recipient_id in self.connected


class RestLike(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "rest"


def rest_message(text: str, sender: str = "c1") -> UserMessage:
    return UserMessage(text, CollectingOutputChannel(), sender, input_channel="rest")


def push_message(text: str, sender: str = "c1") -> UserMessage:
    return UserMessage(text, RecordingOutput([]), sender, input_channel="pushchat")


@pytest.fixture
def agent() -> FakeAgent:
    return FakeAgent({
        "позовите оператора": [{"text": "Передала разговор сотруднику, обращение №T-1."}, {"custom": MARKER.to_message()}],
    })


@pytest.fixture
def gateway(service: HandoffService, agent: FakeAgent) -> HandoverGateway:
    return HandoverGateway(lambda: agent, [RestLike(), PushChannel()], service=service,
                           copilot=CopilotGate(modes=CopilotModes()))


async def say(gateway: HandoverGateway, text: str, sender: str = "c1") -> List[Dict[str, Any]]:
    message = rest_message(text, sender)
    await gateway.handle(message)
    return [{k: v for k, v in m.items() if k != "recipient_id"} for m in message.output_channel.messages]


# --- the bot's turn -------------------------------------------------------------------------------


async def test_a_message_reaches_the_bot_and_both_lines_are_recorded_with_the_channel(gateway, service, agent):
    assert await say(gateway, "привет") == [{"text": "эхо: привет"}]
    view = service.conversation("c1")
    assert [(m.sender, m.text) for m in view.messages] == [("customer", "привет"), ("bot", "эхо: привет")]
    assert view.state is State.BOT
    assert len(agent.handled) == 1 and agent.handled[0].input_channel == "rest"


async def test_the_marker_queues_the_conversation_and_only_its_public_form_goes_out(gateway, service):
    replies = await say(gateway, "позовите оператора")
    assert replies[0] == {"text": "Передала разговор сотруднику, обращение №T-1."}
    assert replies[1] == {"custom": {"handoff": {"ticket_id": "T-1", "reason": "insisted_on_human", "state": "waiting"}}}
    assert "DRM" not in str(replies) and "transcript" not in str(replies)
    view = service.conversation("c1")
    assert view.state is State.WAITING and view.ticket_id == "T-1"
    assert view.summary["slots"] == {"certificate_code": "DRM-****-****-7Q2K"} and view.summary["reason"] == "insisted_on_human"
    assert [t["text"] for t in view.handover_transcript] == ["позовите оператора", "оператора!"]
    assert [m.sender for m in view.messages] == ["customer", "bot", "system"]
    assert service.queue()[0].conversation_id == "c1"


async def test_while_waiting_or_with_an_operator_the_bot_never_sees_the_customer(gateway, service, agent):
    await say(gateway, "позовите оператора")
    assert await say(gateway, "ну где же оператор?") == []
    assert service.queue()[0].unread == 1
    service.take("c1", "anna")
    assert await say(gateway, "здравствуйте") == []
    assert [m.text for m in agent.handled] == ["позовите оператора"]
    assert [m.text for m in service.conversation("c1").messages if m.sender == "customer"][-2:] == [
        "ну где же оператор?", "здравствуйте"]


async def test_an_operator_who_takes_the_conversation_mid_turn_silences_that_turn(service):
    def operator_takes() -> None:
        if service.gate("c1").state is State.BOT:
            service.hand_over("c1", "T-9", None, [], actor="anna")
            service.take("c1", "anna")

    agent = FakeAgent({"вопрос": [{"text": "ответ бота"}]}, during_turn=operator_takes)
    gateway = HandoverGateway(lambda: agent, [], service=service, copilot=CopilotGate(modes=CopilotModes()))
    assert await say(gateway, "вопрос") == []
    lines = service.conversation("c1").messages
    assert [m.sender for m in lines if m.sender == "bot"] == []
    # the customer's message is there for the operator who took the conversation
    assert [(m.text, m.delivered) for m in lines if m.sender == "customer"] == [("вопрос", False)]


async def test_a_malformed_marker_is_never_shown_and_hands_nothing_over(service):
    agent = FakeAgent({"x": [{"text": "ок"}, {"custom": {"handoff": {"version": 7, "reason": "?"}}}]})
    gateway = HandoverGateway(lambda: agent, [], service=service, copilot=CopilotGate(modes=CopilotModes()))
    assert await say(gateway, "x") == [{"text": "ок"}]
    assert service.conversation("c1").state is State.BOT


async def test_when_the_hand_off_database_is_down_the_bot_still_answers_but_promises_no_queue(agent):
    class Down:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> None:
                raise ConnectionError("database is down")
            return fail

    gateway = HandoverGateway(lambda: agent, [], service=Down(), copilot=CopilotGate(modes=CopilotModes()))  # type: ignore[arg-type]
    assert await say(gateway, "привет") == [{"text": "эхо: привет"}]
    assert await say(gateway, "позовите оператора") == [{"text": "Передала разговор сотруднику, обращение №T-1."}]


async def test_a_secret_answer_is_masked_in_the_hand_off_transcript(service):
    class Store:
        from engine.personal_data import AtRestPolicy

        policy = AtRestPolicy()

        def answered_secret(self, sender: str) -> bool:
            return True

    agent = FakeAgent({"мой пин 4821": [{"text": "Проверила."}]})
    agent.tracker_store = Store()
    gateway = HandoverGateway(lambda: agent, [], service=service, copilot=CopilotGate(modes=CopilotModes()))
    await say(gateway, "мой пин 4821")
    stored = [m.text for m in service.conversation("c1").messages if m.sender == "customer"]
    assert stored == ["мой пин ****"]
    assert agent.handled[0].text == "мой пин 4821"  # the dialogue itself got the PIN


# --- the outbox: operator replies and the bot's lines outside a turn -------------------------------


def push_gateway(service: HandoffService, agent: FakeAgent, connected: Optional[set] = None) -> HandoverGateway:
    return HandoverGateway(lambda: agent, [RestLike(), PushChannel(connected)], service=service,
                           copilot=CopilotGate(modes=CopilotModes()))


def push_sent(gateway: HandoverGateway) -> List[tuple]:
    return next(c for c in gateway.channels if isinstance(c, PushChannel)).sent


async def test_operator_replies_reach_a_push_channel_once(service, agent):
    gateway = push_gateway(service, agent)
    await gateway.handle(push_message("позовите оператора"))
    service.take("c1", "anna")
    service.operator_reply("c1", "anna", "Здравствуйте, я Анна.")
    assert await gateway.relay_once() == 1
    assert push_sent(gateway) == [("c1", {"text": "Здравствуйте, я Анна."})]
    assert await gateway.relay_once() == 0 and len(push_sent(gateway)) == 1


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_of_two_replicas_exactly_one_delivers_and_only_where_the_customer_is_connected(database, request, tmp_path, agent):
    from handoff.db import create_tables, make_engine, make_session_factory

    url = f"sqlite:///{tmp_path / 'h.db'}" if database == "sqlite" else request.getfixturevalue("postgres").database("gw")
    engine = make_engine(url)
    create_tables(engine)
    service = HandoffService(make_session_factory(engine))
    here, elsewhere = push_gateway(service, agent, connected={"c1"}), push_gateway(service, agent, connected=set())
    await here.handle(push_message("позовите оператора"))
    service.take("c1", "anna")
    for number in range(5):
        service.operator_reply("c1", "anna", f"строка {number}")
    await elsewhere.relay_once()  # not connected there: nothing sent, nothing claimed
    assert push_sent(elsewhere) == []
    await here.relay_once()
    await elsewhere.relay_once()
    assert [m["text"] for _, m in push_sent(here)] == [f"строка {n}" for n in range(5)]
    assert service.pending_operator_messages("c1") == []
    engine.dispose()


async def test_a_failed_send_is_retried_in_order(service, agent):
    gateway = push_gateway(service, agent)
    await gateway.handle(push_message("позовите оператора"))
    service.take("c1", "anna")
    service.operator_reply("c1", "anna", "первая")
    service.operator_reply("c1", "anna", "вторая")
    channel = next(c for c in gateway.channels if isinstance(c, PushChannel))
    channel.fail = True
    gateway._push = None  # the channel's output is built again (now failing)
    assert await gateway.relay_once() == 0
    assert [m.text for m in service.pending_operator_messages("c1")] == ["первая", "вторая"]
    channel.fail = False
    gateway._push = None
    await gateway.relay_once()
    assert [m["text"] for _, m in channel.sent] == ["первая", "вторая"]


async def test_return_to_bot_greets_the_customer_from_the_domain_and_the_bot_answers_again(service, agent):
    gateway = push_gateway(service, agent)
    await gateway.handle(push_message("позовите оператора"))
    service.take("c1", "anna")
    service.return_to_bot("c1", "anna")
    await gateway.relay_once()  # acts on «returned»: the welcome-back line is queued…
    await gateway.relay_once()  # …and delivered
    assert push_sent(gateway) == [("c1", {"text": RESPONSES["utter_handoff_returned"]})]
    await gateway.handle(push_message("а ещё вопрос"))
    assert [m.text for m in agent.handled] == ["позовите оператора", "а ещё вопрос"]


async def test_a_customer_who_writes_first_after_the_return_is_not_greeted(service, agent):
    gateway = push_gateway(service, agent)
    await gateway.handle(push_message("позовите оператора"))
    service.take("c1", "anna")
    service.return_to_bot("c1", "anna")
    await gateway.handle(push_message("я тут"))
    await gateway.relay_once()
    await gateway.relay_once()
    assert push_sent(gateway) == [] and agent.handled[-1].text == "я тут"


async def test_closing_tells_the_customer_and_the_next_message_reopens_to_the_bot(service, agent):
    gateway = push_gateway(service, agent)
    await gateway.handle(push_message("позовите оператора"))
    service.close("c1", "anna")
    await gateway.relay_once()
    await gateway.relay_once()
    assert push_sent(gateway) == [("c1", {"text": RESPONSES["utter_handoff_closed"]})]
    await gateway.handle(push_message("привет снова"))
    assert agent.handled[-1].text == "привет снова" and service.conversation("c1").state is State.BOT


async def test_a_domain_without_the_response_gets_the_built_in_line(service):
    agent = FakeAgent({"позовите оператора": [{"custom": MARKER.to_message()}]})
    agent.nlg = None  # generating fails
    gateway = push_gateway(service, agent)
    await gateway.handle(push_message("позовите оператора"))
    service.take("c1", "anna")
    service.return_to_bot("c1", "anna")
    await gateway.relay_once()
    await gateway.relay_once()
    assert push_sent(gateway) == [("c1", {"text": FALLBACK_TEXTS["utter_handoff_returned"]})]


async def test_rest_clients_pull_their_lines_and_acknowledge_them(service, agent):
    gateway = push_gateway(service, agent)
    await say(gateway, "позовите оператора")
    service.take("c1", "anna")
    first = service.operator_reply("c1", "anna", "Здравствуйте!")
    await gateway.relay_once()  # REST is not a push channel: nothing is sent, the line waits
    outbox = Outbox(service)
    pulled = outbox.for_conversation("c1").to_dict()
    assert pulled["state"] == "operator" and [m["text"] for m in pulled["messages"]] == ["Здравствуйте!"]
    assert outbox.for_conversation("c1").to_dict()["messages"][0]["id"] == first.id  # not acknowledged yet
    service.operator_reply("c1", "anna", "Сейчас проверю.")
    pulled = outbox.for_conversation("c1", acknowledged_up_to=first.id).to_dict()
    assert [m["text"] for m in pulled["messages"]] == ["Сейчас проверю."]
    service.return_to_bot("c1", "anna")
    await gateway.relay_once()  # «returned» is acted on by any replica: the welcome line waits for the pull
    last = pulled["messages"][-1]["id"]
    assert [m["text"] for m in outbox.for_conversation("c1", last).to_dict()["messages"]] == [RESPONSES["utter_handoff_returned"]]


# --- copilot topics ---------------------------------------------------------------------------------


class FakeAssistant:
    INTENTS = {"нужны закрывающие документы": "b2b_documents", "сколько действует сертификат": "knowledge_question"}

    def __init__(self) -> None:
        self.parsed: list = []

    async def parse(self, text: str) -> dict:
        self.parsed.append(text)
        return {"intent": {"name": self.INTENTS.get(text, "inform"), "confidence": 0.93}, "entities": []}

    async def draft_for(self, text: str, parsed: dict) -> Draft:
        return Draft("Напишите ИНН организации.", 0.93, "scenario:b2b_form", parsed["intent"]["name"])


async def test_a_copilot_topic_goes_to_the_queue_with_the_draft_and_skips_the_bot(service, agent):
    assistant = FakeAssistant()
    gateway = HandoverGateway(lambda: agent, [], service=service,
                              copilot=CopilotGate(CopilotModes.parse({"topics": {"b2b_documents": "copilot"}}), assistant))
    await say(gateway, "сколько действует сертификат")  # an autonomous topic: the bot answers
    assert [m.text for m in agent.handled] == ["сколько действует сертификат"]
    assert agent.handled[0].parse_data["intent"]["name"] == "knowledge_question"  # parsed once, passed on

    replies = await say(gateway, "нужны закрывающие документы")
    assert replies == [{"text": RESPONSES["utter_copilot_hold"]}]  # the draft is not sent
    assert len(agent.handled) == 1
    view = service.conversation("c1")
    assert view.state is State.WAITING and view.summary["reason"] == "copilot" and view.summary["intent"] == "b2b_documents"
    assert view.summary["draft"]["text"] == "Напишите ИНН организации."

    service.take("c1", "anna")
    await say(gateway, "ИНН 7707083893")  # with an operator: no parse, no bot
    assert assistant.parsed == ["сколько действует сертификат", "нужны закрывающие документы"]
    last = [m for m in service.conversation("c1").messages if m.sender == "customer"][-2]
    draft = attached_draft(service.conversation("c1").summary, last.text)
    assert draft == Draft("Напишите ИНН организации.", 0.93, "scenario:b2b_form", "b2b_documents")
    shown = Copilot(service, CopilotModes()).draft_shown("c1", "anna", draft, message_id=last.id)
    assert shown.topic == "b2b_documents"


async def test_when_the_copilot_check_fails_the_bot_answers(service, agent):
    class Broken(FakeAssistant):
        async def parse(self, text: str) -> dict:
            raise RuntimeError("parse exploded")

    gateway = HandoverGateway(lambda: agent, [], service=service,
                              copilot=CopilotGate(CopilotModes.parse({"default": "copilot"}), Broken()))
    await say(gateway, "нужны закрывающие документы")
    assert len(agent.handled) == 1 and service.conversation("c1").state is State.BOT


async def test_no_copilot_topic_means_no_parse_round_trip(service, agent):
    assistant = FakeAssistant()
    gateway = HandoverGateway(lambda: agent, [], service=service, copilot=CopilotGate(CopilotModes(), assistant))
    await say(gateway, "нужны закрывающие документы")
    assert assistant.parsed == [] and agent.handled[0].parse_data is None


async def test_the_copilot_parse_comes_from_the_agent_in_process(service, agent, monkeypatch):
    monkeypatch.setenv("HANDOFF_MODES_FILE", "copilot.yml")
    gateway = HandoverGateway(lambda: agent, [], service=service,
                              copilot=CopilotGate(CopilotModes.parse({"topics": {"b2b_documents": "copilot"}})))
    await say(gateway, "что-нибудь")
    assert agent.parsed == ["что-нибудь"]  # not an HTTP call to a Rasa server
