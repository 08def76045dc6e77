"""The operator console's JSON API (handoff.console) on a temporary SQLite service, through
sanic-testing's ASGI client: auth, the queue, take / reply / return / close, the copilot round trip."""
from __future__ import annotations

from typing import Any, Dict

import pytest

from handoff.console import create_app
from handoff.copilot import Copilot, CopilotModes, Draft
from handoff.machine import HandoffService, State
from handoff.settings import HandoffSettings

TOKEN = "test-token"


class FakeDrafts:
    def __init__(self) -> None:
        self.seen: list = []

    async def draft(self, conversation, message) -> Draft:
        self.seen.append(message.text)
        return Draft("Сертификат придёт на почту в течение 15 минут.", 0.87, "rag:delivery-time", "knowledge_question")


@pytest.fixture
def drafts() -> FakeDrafts:
    return FakeDrafts()


@pytest.fixture
def app(service: HandoffService, drafts: FakeDrafts):
    settings = HandoffSettings(database_url="sqlite://", operator_token=TOKEN)
    return create_app(settings, service=service, copilot=Copilot(service, CopilotModes.load()), drafts=drafts)


def headers(operator: str = "anna") -> Dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "X-Operator": operator}


async def call(app, method: str, path: str, operator: str = "anna", body: Any = None, auth: bool = True):
    client = app.asgi_client
    kwargs: Dict[str, Any] = {"headers": headers(operator) if auth else {}}
    if body is not None:
        kwargs["json"] = body
    _, response = await getattr(client, method)(path, **kwargs)
    return response


def handed_over(service: HandoffService, cid: str = "c1") -> None:
    service.customer_message(cid, "позовите оператора")
    service.record_bot_message(cid, "Уточните, пожалуйста, вопрос.")
    service.customer_message(cid, "оператора!")
    service.hand_over(
        cid, "T-7", {"intent": "request_human", "slots": {"order_id": "40817263"}, "reason": "insisted_on_human"},
        [{"sender": "customer", "text": "позовите оператора"}, {"sender": "customer", "text": "оператора!"}],
    )


async def test_requests_without_the_token_are_refused(app, service):
    handed_over(service)
    response = await call(app, "get", "/api/queue", auth=False)
    assert response.status == 401 and response.json["error"]["code"] == "unauthorized"
    _, response = await app.asgi_client.get("/api/queue", headers={"Authorization": "Bearer wrong"})
    assert response.status == 401


async def test_login_sets_cookies_that_authenticate(app, service):
    _, bad = await app.asgi_client.post("/api/login", json={"token": "nope", "operator": "anna"})
    assert bad.status == 401
    _, ok = await app.asgi_client.post("/api/login", json={"token": TOKEN, "operator": "anna"})
    assert ok.status == 200 and ok.json == {"operator": "anna"}
    cookies = {"handoff_token": TOKEN, "handoff_operator": "anna"}
    _, me = await app.asgi_client.get("/api/me", cookies=cookies)
    assert me.status == 200 and me.json == {"operator": "anna"}


async def test_console_page_and_static_files_are_served(app):
    _, page = await app.asgi_client.get("/")
    assert page.status == 200 and "Консоль оператора" in page.text and "/static/console.js" in page.text
    _, script = await app.asgi_client.get("/static/console.js")
    assert script.status == 200 and "/api/queue" in script.text


async def test_queue_take_reply_return_close(app, service):
    handed_over(service)
    queue = (await call(app, "get", "/api/queue")).json["queue"]
    assert [item["conversation_id"] for item in queue] == ["c1"]
    assert queue[0]["ticket_id"] == "T-7" and queue[0]["summary"]["intent"] == "request_human"
    assert queue[0]["summary"]["slots"] == {"order_id": "40817263"} and "waiting_seconds" in queue[0]

    # a reply before taking is refused with the core's error
    refused = await call(app, "post", "/api/conversations/c1/reply", body={"text": "Здравствуйте"})
    assert refused.status == 409 and refused.json["error"]["code"] == "illegal_transition"

    taken = await call(app, "post", "/api/conversations/c1/take")
    assert taken.status == 200 and taken.json["state"] == "operator" and taken.json["operator_id"] == "anna"
    other = await call(app, "post", "/api/conversations/c1/take", operator="boris")
    assert other.status == 409 and other.json["error"]["code"] == "already_taken"
    assert (await call(app, "get", "/api/queue")).json["queue"] == []
    assert [c["id"] for c in (await call(app, "get", "/api/mine")).json["conversations"]] == ["c1"]

    reply = await call(app, "post", "/api/conversations/c1/reply", body={"text": "Здравствуйте, я Анна."})
    assert reply.status == 201 and reply.json["sender"] == "operator" and reply.json["delivered"] is False
    assert [m.text for m in service.pending_operator_messages("c1")] == ["Здравствуйте, я Анна."]
    empty = await call(app, "post", "/api/conversations/c1/reply", body={"text": "  "})
    assert empty.status == 400 and empty.json["error"]["code"] == "invalid_input"
    not_mine = await call(app, "post", "/api/conversations/c1/reply", operator="boris", body={"text": "я"})
    assert not_mine.status == 403 and not_mine.json["error"]["code"] == "not_owner"

    full = (await call(app, "get", "/api/conversations/c1")).json
    assert [m["sender"] for m in full["messages"]][:3] == ["customer", "bot", "customer"]
    cursor = full["messages"][-2]["id"]
    tail = (await call(app, "get", f"/api/conversations/c1?after={cursor}")).json["messages"]
    assert [m["text"] for m in tail] == ["Здравствуйте, я Анна."]

    back = await call(app, "post", "/api/conversations/c1/return")
    assert back.status == 200 and back.json["state"] == "bot"
    assert [m.text for m in service.pending_operator_messages("c1")][-1] == "returned"
    closed = await call(app, "post", "/api/conversations/c1/close")
    assert closed.status == 200 and closed.json["state"] == "closed"
    missing = await call(app, "get", "/api/conversations/nope")
    assert missing.status == 404 and missing.json["error"]["code"] == "conversation_not_found"


async def test_copilot_round_trip_is_stored_with_its_events(app, service, drafts):
    handed_over(service)
    service.customer_message("c1", "когда придёт сертификат?")
    await call(app, "post", "/api/conversations/c1/take")
    draft = await call(app, "post", "/api/conversations/c1/draft")
    assert draft.status == 201, draft.json
    assert draft.json["text"].startswith("Сертификат придёт") and draft.json["confidence"] == 0.87
    assert draft.json["source"] == "rag:delivery-time" and draft.json["topic"] == "knowledge_question"
    assert drafts.seen == ["когда придёт сертификат?"]
    draft_id = draft.json["id"]

    assert (await call(app, "post", f"/api/drafts/{draft_id}/rate", body={"rating": "like"})).status == 200
    bad = await call(app, "post", f"/api/drafts/{draft_id}/rate", body={"rating": "meh"})
    assert bad.status == 400
    sent = await call(app, "post", f"/api/drafts/{draft_id}/send", body={"text": "Сертификат придёт на почту в течение 15 минут!"})
    assert sent.status == 201 and sent.json["outcome"] == "edited" and sent.json["edit_distance"] == 1
    again = await call(app, "post", f"/api/drafts/{draft_id}/discard")
    assert again.status == 409 and again.json["error"]["code"] == "draft_already_resolved"

    events = (await call(app, "get", "/api/conversations/c1/copilot")).json["events"]
    assert [e["kind"] for e in events] == ["draft_shown", "rated", "sent"]
    assert [m.text for m in service.pending_operator_messages("c1")] == ["Сертификат придёт на почту в течение 15 минут!"]

    second = (await call(app, "post", "/api/conversations/c1/draft")).json
    assert (await call(app, "post", f"/api/drafts/{second['id']}/discard")).status == 200
    stats = (await call(app, "get", "/api/copilot/stats")).json["topics"]["knowledge_question"]
    assert stats["drafts"] == 2 and stats["likes"] == 1 and stats["sent"] == 1 and stats["discarded"] == 1
    assert stats["mode"] == "autonomous"  # knowledge questions are autonomous in copilot.yml
    missing = await call(app, "post", "/api/drafts/999/send", body={"text": "x"})
    assert missing.status == 404


async def test_a_draft_needs_the_owner(app, service):
    handed_over(service)
    response = await call(app, "post", "/api/conversations/c1/draft")
    assert response.status in (403, 409), response.json
    assert service.conversation("c1").state is State.WAITING


async def test_a_copilot_hand_over_s_attached_draft_is_the_first_one_shown(app, service, drafts):
    from handoff.drafts import draft_summary

    service.customer_message("c9", "нужны закрывающие документы")
    attached = Draft("Напишите ИНН организации.", 0.93, "scenario:b2b_form", "b2b_documents")
    service.hand_over("c9", None, {"intent": "b2b_documents", "reason": "copilot",
                                   "draft": draft_summary(attached, "нужны закрывающие документы")}, [])
    queued = (await call(app, "get", "/api/queue")).json["queue"][0]
    assert queued["summary"]["draft"]["text"] == "Напишите ИНН организации."
    await call(app, "post", "/api/conversations/c9/take")
    first = (await call(app, "post", "/api/conversations/c9/draft")).json
    assert (first["text"], first["source"], first["topic"], first["mode"]) == (
        "Напишите ИНН организации.", "scenario:b2b_form", "b2b_documents", "copilot")
    assert drafts.seen == []  # the assistant was not asked again
    service.customer_message("c9", "ИНН 7707083893")
    second = (await call(app, "post", "/api/conversations/c9/draft")).json
    assert drafts.seen == ["ИНН 7707083893"] and second["text"].startswith("Сертификат придёт")
    topics = (await call(app, "get", "/api/copilot/stats")).json["topics"]
    assert topics["b2b_documents"]["mode"] == "copilot" and topics["b2b_documents"]["drafts"] == 1
