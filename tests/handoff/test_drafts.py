"""Copilot drafts (handoff.drafts): the scenario's first reply from the project's own domain and
rules, and knowledge-base answers from a real action server process (the one that owns the
index) with a fake Rasa ``/model/parse`` on loopback; fallbacks when either is down."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Iterator

import pytest

from handoff.drafts import GENERIC_DRAFT, AssistantDraftProvider, ScenarioReplies, attached_draft, draft_summary
from handoff.settings import PROJECT_ROOT
from tests.rag.conftest import FIXTURE_KB

KB_QUESTION = "можно ли вернуть деньги за сертификат"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeRasa(BaseHTTPRequestHandler):
    """``POST /model/parse``: the intent the test registered for the text."""

    intents: Dict[str, str] = {}

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        text = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["text"]
        entities = [{"entity": "order_id", "value": "40817263"}] if "40817263" in text else []
        body = json.dumps({"text": text, "intent": {"name": self.intents.get(text, "inform"), "confidence": 0.91},
                           "entities": entities}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def rasa_url() -> Iterator[str]:
    FakeRasa.intents = {
        KB_QUESTION: "knowledge_question",
        "хочу вернуть деньги": "refund_request",
        "хочу вернуть деньги за заказ 40817263": "refund_request",
        "нужны закрывающие документы": "b2b_documents",
        "вы мошенники": "complaint",
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRasa)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def action_server_url(tmp_path_factory) -> Iterator[str]:
    """The project's action server (rasa_sdk) over the RAG fixture articles, answering everything
    it finds (thresholds 0)."""
    port = free_port()
    env = {
        **os.environ,
        "RAG_KB_DIR": str(FIXTURE_KB),
        "RAG_QDRANT_PATH": str(tmp_path_factory.mktemp("qdrant")),
        "RAG_ANSWER_THRESHOLD": "0",
        "RAG_CLARIFY_THRESHOLD": "0",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(port)],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("the action server did not start")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_scenario_replies_come_from_the_domain_and_the_rules():
    replies = ScenarioReplies.load(PROJECT_ROOT)
    text, source = replies.reply("refund_request")
    assert text.startswith("Помогу с возвратом. Напишите номер заказа") and source == "scenario:refund_form"
    # the order number is in the message: the form's next question
    text, _ = replies.reply("refund_request", ["order_id"])
    assert "e-mail покупателя" in text
    assert replies.reply("b2b_documents")[1] == "scenario:b2b_form"
    assert replies.reply("greet")[1] == "scenario:greet"
    assert replies.reply("complaint") is None  # a custom action decides at run time
    assert replies.reply("no_such_intent") is None


async def test_a_knowledge_question_is_drafted_by_the_action_server(rasa_url, action_server_url):
    def no_local_index():
        raise AssertionError("the action server answered: the local index must not be opened")

    provider = AssistantDraftProvider(rasa_url, action_server_url, knowledge=no_local_index)
    draft = await provider.draft_for(KB_QUESTION)
    assert draft.topic == "knowledge_question"
    assert draft.text.endswith("Подробнее: «Можно ли вернуть деньги за сертификат».")
    assert draft.source.startswith("rag:") and "Можно ли вернуть деньги" in draft.source
    assert 0.0 <= draft.confidence <= 1.0


async def test_scenario_topics_get_the_flow_s_first_question(rasa_url, action_server_url):
    provider = AssistantDraftProvider(rasa_url, action_server_url)
    draft = await provider.draft_for("хочу вернуть деньги за заказ 40817263")
    assert draft.topic == "refund_request" and draft.source == "scenario:refund_form"
    assert "e-mail покупателя" in draft.text and draft.confidence == pytest.approx(0.91)
    generic = await provider.draft_for("вы мошенники")
    assert generic.text == GENERIC_DRAFT and generic.source == "generic:complaint"


async def test_without_the_action_server_the_local_index_is_used_and_then_a_generic_line(rasa_url):
    provider = AssistantDraftProvider(rasa_url, f"http://127.0.0.1:{free_port()}", knowledge=lambda: _LocalAnswers())
    draft = await provider.draft_for(KB_QUESTION)
    assert (draft.text, draft.source, draft.confidence) == ("Ответ из базы.", "rag:refund (Возврат)", 0.88)

    def broken():
        raise RuntimeError("the embedded index is locked by another process")

    provider = AssistantDraftProvider(rasa_url, f"http://127.0.0.1:{free_port()}", knowledge=broken)
    draft = await provider.draft_for(KB_QUESTION)
    assert draft.text == GENERIC_DRAFT and draft.source == "generic:knowledge_question"


async def test_rasa_down_still_gives_a_draft():
    provider = AssistantDraftProvider(f"http://127.0.0.1:{free_port()}", None, knowledge=lambda: _LocalAnswers())
    draft = await provider.draft_for("что-нибудь")
    assert draft.topic is None and draft.text == "Ответ из базы."


def test_an_attached_draft_answers_only_its_own_message():
    from handoff.copilot import Draft

    draft = Draft("Напишите ИНН.", 0.9, "scenario:b2b_form", "b2b_documents")
    summary = {"intent": "b2b_documents", "draft": draft_summary(draft, "нужны документы")}
    assert attached_draft(summary, "нужны документы") == draft
    assert attached_draft(summary, "другое сообщение") is None
    assert attached_draft({}, "нужны документы") is None and attached_draft(None, "x") is None


class _LocalAnswers:
    """A local knowledge service that always answers."""

    def answer(self, text):
        class Result:
            status, text, article_id, source_title, score = "answered", "Ответ из базы.", "refund", "Возврат", 0.88

        return Result()
