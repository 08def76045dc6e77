"""The console's analytics: the report for BI tools (token required, bad periods refused), and
applying the autonomy advice — copilot.yml rewritten with its comments, the change audited, and
the gateway noticing the new mode."""
from __future__ import annotations

import time

import pytest

from handoff.console import create_app
from handoff.copilot import Copilot, CopilotModes
from handoff.gateway import CopilotGate
from handoff.settings import HandoffSettings
from tests.analytics.builder import Stream
from tests.handoff.conftest import sqlite_service

TOKEN = "analytics-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "X-Operator": "lead"}


@pytest.fixture
def console(tmp_path, monkeypatch):
    from engine.event_broker import MaskedSQLEventBroker

    events_url = f"sqlite:///{tmp_path / 'events.db'}"
    broker = MaskedSQLEventBroker(host=events_url)
    for event in Stream("k1").user("сколько действует сертификат?", "knowledge_question").kb().events_list():
        broker.publish(event)
    broker.engine.dispose()
    modes = tmp_path / "copilot.yml"
    modes.write_text("# who answers what\ndefault: autonomous\ntopics:\n  # corporate documents\n"
                     "  b2b_documents: copilot\n", encoding="utf-8")
    monkeypatch.setenv("EVENTS_DATABASE_URL", events_url)
    monkeypatch.setenv("HANDOFF_MODES_FILE", str(modes))
    service = sqlite_service(tmp_path / "handoff.db")
    settings = HandoffSettings(database_url=f"sqlite:///{tmp_path / 'handoff.db'}", operator_token=TOKEN, modes_file=modes)
    app = create_app(settings, service=service, copilot=Copilot(service, CopilotModes.load(modes)), drafts=object())
    return app, service, modes


async def get(app, path, headers=HEADERS):
    _, response = await app.asgi_client.get(path, headers=headers)
    return response


async def test_the_report_endpoint(console):
    app, _, _ = console
    assert (await get(app, "/api/analytics/report", headers={})).status == 401
    report = (await get(app, "/api/analytics/report?conversations=1")).json
    assert report["overall"]["conversations"] == 1 and report["overall"]["resolved_assumed"] == 1
    assert [c["topic"] for c in report["conversations"]] == ["knowledge_question"]
    bad = await get(app, "/api/analytics/report?since=someday")
    assert bad.status == 400 and bad.json["error"]["code"] == "invalid_input"
    page = await get(app, "/analytics", headers={})
    assert page.status == 200 and "chart-4.6.2.umd.min.js" in page.text
    assert (await get(app, "/static/vendor/chart-4.6.2.umd.min.js", headers={})).status == 200


async def test_applying_advice_rewrites_the_modes_file_audits_it_and_the_gateway_follows(console, monkeypatch):
    app, service, modes = console
    monkeypatch.setattr("handoff.gateway.MODES_RECHECK_SECONDS", 0.0)
    gate = CopilotGate()
    assert gate.modes.is_copilot("b2b_documents")
    _, response = await app.asgi_client.post("/api/copilot/modes", headers=HEADERS,
                                             json={"topic": "b2b_documents", "mode": "autonomous", "reason": "advice: 24/25 liked"})
    assert response.status == 201 and response.json["from_mode"] == "copilot" and response.json["operator"] == "lead"
    text = modes.read_text(encoding="utf-8")
    assert "b2b_documents: autonomous" in text and "# corporate documents" in text and "# who answers what" in text
    history = (await get(app, "/api/copilot/modes")).json
    assert history["topics"]["b2b_documents"] == "autonomous"
    assert [(c["topic"], c["to_mode"], c["reason"]) for c in history["history"]] == [
        ("b2b_documents", "autonomous", "advice: 24/25 liked")]
    time.sleep(0.01)
    assert not gate.modes.is_copilot("b2b_documents")  # no restart needed
    stats = (await get(app, "/api/copilot/stats")).json  # the console's own view follows too
    assert all(topic["mode"] == "autonomous" for topic in stats["topics"].values())
    for body in ({"topic": "b2b documents", "mode": "copilot"}, {"topic": "b2b_documents", "mode": "sometimes"}):
        _, refused = await app.asgi_client.post("/api/copilot/modes", headers=HEADERS, json=body)
        assert refused.status == 400
