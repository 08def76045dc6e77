"""The gateway inside `rasa run`'s app: Rasa's own channel registration (configure_app), patched
as ``python -m engine.rasa_server`` patches it, sends REST messages through the gateway and serves
the REST clients' pull endpoint."""
from __future__ import annotations

import pytest
from rasa.core.channels import channel as rasa_channel
from rasa.core.channels.rest import RestInput

from handoff.gateway import register_through_gateway
from handoff.machine import HandoffService, State
from handoff.settings import HandoffSettings
from tests.handoff.test_gateway import MARKER, FakeAgent


@pytest.fixture
def app(tmp_path, monkeypatch):
    from rasa.core.run import configure_app

    monkeypatch.setenv("HANDOFF_DATABASE_URL", f"sqlite:///{tmp_path / 'handoff.db'}")
    modes = tmp_path / "copilot.yml"
    modes.write_text("default: autonomous\n", encoding="utf-8")
    monkeypatch.setenv("HANDOFF_MODES_FILE", str(modes))
    monkeypatch.setattr(rasa_channel, "register", register_through_gateway)
    app = configure_app([RestInput()], enable_api=False, port=0)
    app.ctx.agent = FakeAgent({"позовите оператора": [{"text": "Передаю."}, {"custom": MARKER.to_message()}]})
    return app


def post(app, text: str, sender: str = "rest-1"):
    _, response = app.test_client.post("/webhooks/rest/webhook", json={"sender": sender, "message": text})
    assert response.status == 200
    return response.json


def test_a_rest_hand_over_reaches_the_queue_and_operator_replies_are_pulled(app, tmp_path):
    assert post(app, "привет") == [{"recipient_id": "rest-1", "text": "эхо: привет"}]
    handed = post(app, "позовите оператора")
    assert handed[-1]["custom"] == {"handoff": {"ticket_id": "T-1", "reason": "insisted_on_human", "state": "waiting"}}
    service = HandoffService.from_settings(HandoffSettings(database_url=f"sqlite:///{tmp_path / 'handoff.db'}"))
    assert [item.conversation_id for item in service.queue()] == ["rest-1"]
    assert post(app, "жду человека") == []  # kept for the operator, the bot is silent
    service.take("rest-1", "anna")
    service.operator_reply("rest-1", "anna", "Здравствуйте, я Анна.")

    _, response = app.test_client.get("/handoff/conversations/rest-1/messages")
    body = response.json
    assert response.status == 200 and body["state"] == "operator"
    assert [(m["sender"], m["text"]) for m in body["messages"]] == [("operator", "Здравствуйте, я Анна.")]
    _, again = app.test_client.get(f"/handoff/conversations/rest-1/messages?after={body['messages'][-1]['id']}")
    assert again.json["messages"] == []
    assert service.conversation("rest-1").state is State.OPERATOR


def test_the_pull_endpoint_answers_clear_errors(app):
    _, unknown = app.test_client.get("/handoff/conversations/nobody/messages")
    assert unknown.status == 404 and unknown.json["error"]["code"] == "conversation_not_found"
    post(app, "привет", sender="x")
    _, bad = app.test_client.get("/handoff/conversations/x/messages?after=abc")
    assert bad.status == 400 and bad.json["error"]["code"] == "invalid_input"
