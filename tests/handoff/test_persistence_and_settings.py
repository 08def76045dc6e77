"""The state survives a restart (a fresh service on the same SQLite file); settings from the environment."""
from __future__ import annotations

from pathlib import Path

import pytest

from handoff.machine import HandoffService, Route, State
from handoff.settings import DEFAULT_MODES_FILE, PROJECT_ROOT, HandoffSettings
from tests.handoff.conftest import Clock, sqlite_service


def test_state_and_transcript_survive_a_restart(tmp_path: Path):
    path = tmp_path / "handoff.db"
    clock = Clock()
    before = sqlite_service(path, clock)
    before.customer_message("c1", "Верните деньги")
    before.hand_over("c1", "42", {"intent": "refund_request", "slots": {"order_id": "1"}}, [])
    before.hand_over("c2", "43", {"intent": "complaint"}, [])
    before.take("c1", "anna")
    reply = before.operator_reply("c1", "anna", "Здравствуйте!")
    before.session_factory.kw["bind"].dispose()  # the process ends

    clock.advance(minutes=5)
    after = sqlite_service(path, clock)
    view = after.conversation("c1")
    assert (view.state, view.operator_id, view.ticket_id) == (State.OPERATOR, "anna", "42")
    assert view.summary["slots"] == {"order_id": "1"}
    assert not after.may_bot_send("c1") and not after.record_bot_message("c1", "Я бот")
    assert after.customer_message("c1", "Жду") is Route.OPERATOR
    assert [m.id for m in after.pending_operator_messages("c1")] == [reply.id]
    [waiting] = after.queue()
    assert (waiting.conversation_id, waiting.waiting_seconds) == ("c2", 300.0)
    after.return_to_bot("c1", "anna")
    assert after.may_bot_send("c1")
    after.session_factory.kw["bind"].dispose()


def test_from_settings_creates_the_tables(tmp_path: Path):
    service = HandoffService.from_settings(HandoffSettings(database_url=f"sqlite:///{tmp_path / 'h.db'}"))
    assert service.customer_message("c1", "Привет") is Route.BOT
    assert (tmp_path / "h.db").exists()


def test_settings_defaults(monkeypatch):
    for name in ("HANDOFF_DATABASE_URL", "HANDOFF_OPERATOR_TOKEN", "HANDOFF_MODES_FILE", "HANDOFF_CONSOLE_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = HandoffSettings.from_env()
    assert settings.database_url == f"sqlite:///{PROJECT_ROOT / 'handoff.db'}"
    assert settings.operator_token == "dev-operator-token"
    assert settings.modes_file == DEFAULT_MODES_FILE == PROJECT_ROOT / "copilot.yml"


def test_settings_from_env(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("HANDOFF_DATABASE_URL", "postgresql://h@db/handoff")
    monkeypatch.setenv("HANDOFF_OPERATOR_TOKEN", " secret ")
    monkeypatch.setenv("HANDOFF_MODES_FILE", "config/modes.yml")
    monkeypatch.setenv("HANDOFF_CONSOLE_PORT", "9001")
    settings = HandoffSettings.from_env()
    assert settings.database_url == "postgresql://h@db/handoff"
    assert settings.operator_token == "secret"
    assert settings.modes_file == PROJECT_ROOT / "config" / "modes.yml"
    assert settings.port == 9001
    monkeypatch.setenv("HANDOFF_MODES_FILE", str(tmp_path / "m.yml"))
    assert HandoffSettings.from_env().modes_file == tmp_path / "m.yml"
    monkeypatch.setenv("HANDOFF_CONSOLE_PORT", "x")
    with pytest.raises(ValueError, match="HANDOFF_CONSOLE_PORT"):
        HandoffSettings.from_env()
