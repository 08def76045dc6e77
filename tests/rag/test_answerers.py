"""Answerers: extractive (default), an OpenAI-compatible endpoint on loopback, and the service's
fallback from an unsupported generated answer to the extractive one."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag.answerers import AnswererResponseError, AnswererUnavailable, ExtractiveAnswerer, SYSTEM_PROMPT
from rag.answerers.openai_compatible import OpenAICompatibleAnswerer
from rag.documents import chunk_articles, load_articles
from rag.service import ANSWERED, KnowledgeService, Thresholds
from rag.text import normalise
from tests.rag.conftest import FIXTURE_KB


def _kb_text() -> str:
    return normalise("\n".join(c.text for c in chunk_articles(load_articles(FIXTURE_KB))))


def test_extractive_answer_is_kb_text_with_its_source(retriever):
    question = "каким способом и в какой срок возвращаются деньги за сертификат"
    passages = retriever.retrieve(question).hits
    answer = ExtractiveAnswerer().answer(question, passages)
    body, source = answer.text.rsplit("\n\n", 1)
    assert all(normalise(paragraph) in _kb_text() for paragraph in body.split("\n\n"))
    assert "10 рабочих дней" in body
    assert source == "Подробнее: «Можно ли вернуть деньги за сертификат»."
    assert answer.article_id == "refund-conditions" and answer.answerer == "extractive"
    assert not answer.generated


def test_extractive_answer_of_a_long_passage_ends_on_a_sentence(retriever):
    passages = retriever.retrieve("как отправить сертификат повторно").hits
    answer = ExtractiveAnswerer(max_chars=120).answer("как отправить сертификат повторно", passages)
    body = answer.text.rsplit("\n\n", 1)[0]
    assert len(body) <= 120 and body.rstrip()[-1] in ".!?…»"
    assert len(answer.passages) == 1
    assert normalise(body) in _kb_text()


def test_extractive_with_nothing_retrieved():
    assert ExtractiveAnswerer().answer("что-то", []).text == ""


# --- a fake OpenAI-compatible server ---------------------------------------------------------

class FakeChatServer:
    """/v1/chat/completions on 127.0.0.1: records requests, replies with ``reply`` (or ``status``)."""

    def __init__(self):
        self.requests = []
        self.reply = "Ответ."
        self.status = 200
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                server.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(self.rfile.read(length))}
                )
                if server.status != 200:
                    body = b'{"error": "boom"}'
                else:
                    body = json.dumps(
                        {"id": "x", "object": "chat.completion",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": server.reply},
                                      "finish_reason": "stop"}]},
                        ensure_ascii=False,
                    ).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server():
    server = FakeChatServer()
    yield server
    server.close()


@pytest.fixture
def openai_service(chat_server, fixture_settings, retriever):
    answerer = OpenAICompatibleAnswerer(
        chat_server.base_url, model="test-model", api_key_env="RAG_TEST_KEY",
        environ={"RAG_TEST_KEY": "secret-key"}, timeout_seconds=5,
    )
    service = KnowledgeService(
        fixture_settings, retriever=retriever, answerer=answerer, thresholds=Thresholds(answer=0.0, clarify=0.0)
    )
    yield service
    answerer.close()


QUESTION = (
    "Купил сертификат DRM-ABCD-EFGH-7Q2K, пин 5678, заказ 40817263, почта ivan.petrov@mail.ru, "
    "тел +7 916 123-45-67. Через сколько вернутся деньги?"
)
SECRETS = ["ABCD-EFGH", "5678", "40817263", "ivan.petrov", "916 123", "9161234567"]


def test_prompt_carries_masked_personal_data_only_and_a_supported_answer_is_used(openai_service, chat_server):
    chat_server.reply = "Деньги возвращаются тем же способом, которым был оплачен заказ, в течение 10 рабочих дней."
    result = openai_service.answer(QUESTION)
    assert result.status == ANSWERED
    assert result.answerer == "openai" and result.grounded and result.fallback_reason == ""
    assert result.text == chat_server.reply + "\n\nПодробнее: «Можно ли вернуть деньги за сертификат»."
    assert result.article_id == "refund-conditions"

    (request,) = chat_server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer secret-key"
    body = request["json"]
    assert body["model"] == "test-model" and body["temperature"] == 0
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    prompt = json.dumps(body, ensure_ascii=False)
    assert "DRM-****-****-7Q2K" in prompt and "пин ****" in prompt and "i***@mail.ru" in prompt
    assert not any(secret in prompt for secret in SECRETS)
    assert "10 рабочих дней" in body["messages"][1]["content"]  # the passages are in the prompt
    assert not any(secret in result.masked_question for secret in SECRETS)


def test_an_unsupported_generated_answer_falls_back_to_the_extractive_one(openai_service, chat_server):
    chat_server.reply = "Деньги вернутся за 3 дня, а ещё мы начислим бонусные баллы на карту лояльности."
    result = openai_service.answer("через сколько вернутся деньги за сертификат")
    assert result.status == ANSWERED
    assert result.answerer == "extractive" and result.grounded
    assert result.fallback_reason.startswith("not grounded")
    assert "бонусные" not in result.text and "10 рабочих дней" in result.text


def test_endpoint_errors_fall_back_too(openai_service, chat_server):
    chat_server.status = 500
    result = openai_service.answer("через сколько вернутся деньги за сертификат")
    assert result.answerer == "extractive" and "HTTP 500" in result.fallback_reason


def test_endpoint_errors_are_typed(chat_server, retriever):
    passages = retriever.retrieve("баланс").hits
    chat_server.status = 503
    with pytest.raises(AnswererResponseError, match="503"):
        OpenAICompatibleAnswerer(chat_server.base_url, "m").answer("баланс", passages)
    chat_server.status = 200
    chat_server.reply = ""
    with pytest.raises(AnswererResponseError, match="empty"):
        OpenAICompatibleAnswerer(chat_server.base_url, "m").answer("баланс", passages)
    closed = FakeChatServer()
    closed.close()
    with pytest.raises(AnswererUnavailable):
        OpenAICompatibleAnswerer(closed.base_url, "m", timeout_seconds=2).answer("баланс", passages)


def test_no_key_no_authorization_header(chat_server, retriever):
    OpenAICompatibleAnswerer(chat_server.base_url, "m", api_key_env="RAG_TEST_UNSET", environ={}).answer(
        "баланс", retriever.retrieve("баланс").hits
    )
    assert "Authorization" not in chat_server.requests[-1]["headers"]
