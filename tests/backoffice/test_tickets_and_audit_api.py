"""CRM tickets (create / read / close) and the audit endpoint."""
from __future__ import annotations

import json

import pytest

from backoffice.app import create_app
from backoffice.models import Ticket
from backoffice.timeutil import MOSCOW

from .conftest import FIXED_NOW, Api

ESCALATION = {
    "subject": "Возврат после 14 дней",
    "summary": "Клиент просит вернуть деньги за заказ 40817270 (20 дней), сертификат не активирован.",
    "transcript": [
        {"sender": "user", "text": "хочу вернуть деньги за заказ 40817270"},
        {"sender": "bot", "text": "Прошло больше 14 дней, передаю сотруднику."},
    ],
    "priority": "high",
    "contact": "maria@yandex.ru",
    "conversation_id": "conv-42",
    "category": "refund_after_14_days",
    "order_id": "40817270",
}


def test_create_get_and_close_a_ticket(api, db) -> None:
    status, ticket = api.post("/tickets", ESCALATION, headers={"X-Actor": "assistant"})
    assert status == 201
    for field in ("subject", "summary", "transcript", "priority", "contact", "conversation_id",
                  "category", "order_id"):
        assert ticket[field] == ESCALATION[field]
    assert ticket["status"] == "open"
    assert ticket["staff_online"] is True  # 11:00 Moscow
    assert ticket["first_response_by"] == "2025-03-12T10:00:00Z"  # within 2 hours
    assert api.get(f"/tickets/{ticket['id']}") == (200, ticket)

    status, closed = api.patch(f"/tickets/{ticket['id']}", {"status": "closed"}, headers={"X-Actor": "operator-1"})
    assert status == 200 and closed["status"] == "closed"
    assert api.get(f"/tickets/{ticket['id']}")[1]["status"] == "closed"

    created, updated = db.audit(entity="ticket", entity_id=str(ticket["id"]))
    assert (created.action, created.actor) == ("ticket.create", "assistant")
    assert created.payload["contact"] == "m***@yandex.ru"
    assert created.payload["transcript_turns"] == 2
    assert "maria@" not in json.dumps(created.payload) and "хочу" not in json.dumps(created.payload)
    assert (updated.action, updated.actor) == ("ticket.update", "operator-1")
    assert updated.payload == {"changes": {"status": {"from": "open", "to": "closed"}}}


def test_minimal_ticket_gets_defaults(api) -> None:
    status, ticket = api.post("/tickets", {"subject": "Клиент просит живого сотрудника"})
    assert status == 201
    assert (ticket["priority"], ticket["status"], ticket["category"]) == ("normal", "open", "other")
    assert ticket["contact"] is None and ticket["transcript"] is None and ticket["summary"] == ""


def test_ticket_with_string_transcript(api) -> None:
    status, ticket = api.post("/tickets", {"subject": "s", "transcript": "user: привет\nbot: здравствуйте"})
    assert status == 201 and ticket["transcript"].startswith("user:")


def test_ticket_idempotency_key(api, db) -> None:
    body = {"subject": "Сертификат не принимают", "idempotency_key": "conv-7-escalation"}
    status, first = api.post("/tickets", body)
    assert status == 201
    assert api.post("/tickets", body) == (200, first)
    assert db.count(Ticket, idempotency_key="conv-7-escalation") == 1


def test_ticket_outside_support_hours_is_taken_next_morning(settings, db) -> None:
    night = FIXED_NOW.astimezone(MOSCOW).replace(hour=22, minute=15)
    api = Api(create_app(settings, db.session_factory, clock=lambda: night))
    status, ticket = api.post("/tickets", {"subject": "Ночной вопрос"})
    assert status == 201
    assert ticket["staff_online"] is False
    assert ticket["first_response_by"] == "2025-03-13T08:00:00Z"  # 11:00 Moscow next day


def test_patching_nothing_or_the_same_value(api, db) -> None:
    _, ticket = api.post("/tickets", {"subject": "s2"})
    status, body = api.patch(f"/tickets/{ticket['id']}", {})
    assert status == 400 and body["error"]["code"] == "invalid_request"
    status, same = api.patch(f"/tickets/{ticket['id']}", {"status": "open"})
    assert status == 200 and same["status"] == "open"
    status, raised = api.patch(f"/tickets/{ticket['id']}", {"priority": "high"})
    assert status == 200 and raised["priority"] == "high"
    assert [e.action for e in db.audit(entity="ticket", entity_id=str(ticket["id"]))] == [
        "ticket.create", "ticket.update"]  # a no-op change is not a state change


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"subject": ""},
        {"subject": "   "},
        {"subject": 5},
        {"subject": "x" * 201},
        {"subject": "s", "priority": "urgent"},
        {"subject": "s", "status": "closed"},
        {"subject": "s", "transcript": 42},
        {"subject": "s", "transcript": ["not an object"]},
        {"subject": "s", "order_id": "123"},
    ],
)
def test_bad_ticket_input_is_400(api, body) -> None:
    status, reply = api.post("/tickets", body)
    assert status == 400 and reply["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("body", [{"status": "pending"}, {"priority": "urgent"}, {"subject": "new"}])
def test_bad_patch_is_400(api, body) -> None:
    _, ticket = api.post("/tickets", {"subject": "s3"})
    assert api.patch(f"/tickets/{ticket['id']}", body)[0] == 400


def test_ticket_not_found_and_bad_id(api) -> None:
    assert api.get("/tickets/999999")[1]["error"]["code"] == "not_found"
    assert api.patch("/tickets/999999", {"status": "closed"})[0] == 404
    assert api.get("/tickets/abc")[0] == 400


def test_audit_endpoint_filters(api) -> None:
    api.post("/orders/40817263/resend", {"idempotency_key": "audit-resend"}, headers={"X-Actor": "tester"})
    status, reply = api.get("/audit?entity=order&entity_id=40817263")
    assert status == 200
    [entry] = reply["entries"]
    assert (entry["action"], entry["entity"], entry["entity_id"], entry["actor"]) == (
        "certificate.resend", "order", "40817263", "tester")
    assert entry["payload"]["address"] == "i***@mail.ru"
    _, tickets = api.get("/audit?entity=ticket&action=ticket.create")
    assert tickets["entries"] and all(e["action"] == "ticket.create" for e in tickets["entries"])
    _, limited = api.get("/audit?limit=2")
    assert len(limited["entries"]) == 2
    assert limited["entries"][0]["id"] < limited["entries"][1]["id"]
    _, everything = api.get("/audit")
    assert everything["entries"][0]["action"] == "demo.seed"
    for bad in ("0", "1001", "x"):
        assert api.get(f"/audit?limit={bad}")[0] == 400
