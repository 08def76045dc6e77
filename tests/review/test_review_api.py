"""The trainers' API in the operator console over real parts: the masked event stream and the
hand-over database (SQLite files), the decision store, the KB folder and a real knowledge service
that follows it. A KB gap read from the stream becomes a question alias through the API and is then
answered; a new article and a correction from an operator's edit land as valid articles; decisions
take wordings out of the inbox and undoing brings them back; the trainer token is its own."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from engine.event_broker import MaskedSQLEventBroker
from handoff.console import create_app
from handoff.copilot import Copilot, CopilotModes, Draft
from handoff.settings import HandoffSettings
from engine.settings import PROJECT_ROOT
from rag.documents import load_articles
from rag.service import ANSWERED, KnowledgeService
from rag.settings import RagSettings
from review.settings import ReviewSettings
from tests.analytics.builder import Stream
from tests.handoff.conftest import sqlite_service
from tests.rag.conftest import FIXTURE_KB

TRAINER = "trainer-token-for-tests"
OPERATOR = "operator-token-for-tests"
AS_TRAINER = {"Authorization": f"Bearer {TRAINER}", "X-Trainer": "tanya"}
GAP = "сертификат сгорел что делать"  # the fixture KB does not answer it (tests/rag/test_kb_sync.py)
GAP_TOO = "Сертификат сгорел, что теперь делать?"
MISS, MISS_TOO = "касса отвергла подарочку", "магазин не взял серт"  # the landed model: wrong_address < 0.5


def kb_turn(stream: Stream, text: str, response: str, buttons=()) -> Stream:
    stream.user(text, "knowledge_question")
    stream.events[-1]["parse_data"]["intent_ranking"] = [{"name": "knowledge_question", "confidence": 0.9}]
    stream.action("action_answer_question")
    return stream._add({"event": "bot", "text": "…", "metadata": {"utter_action": response},
                        "data": {"buttons": [{"title": t, "payload": f'/knowledge_question{{"kb_article": "{a}"}}'}
                                             for t, a in buttons]}}, 0.2)


def copy_project(root: Path) -> Path:
    """What the review loop reads and writes of a project: domain, config, NLU data, held-out sets."""
    (root / "tests" / "data").mkdir(parents=True, exist_ok=True)
    for name in ("domain.yml", "config.yml"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    shutil.copytree(PROJECT_ROOT / "data" / "nlu", root / "data" / "nlu", ignore=shutil.ignore_patterns("reviewed"))
    for name in ("nlu_heldout.yml", "out_of_scope_heldout.txt"):
        shutil.copy(PROJECT_ROOT / "tests" / "data" / name, root / "tests" / "data" / name)
    return root


def nlu_turn(stream: Stream, text: str, ranking) -> Stream:
    stream.user(text, ranking[0][0])
    stream.events[-1]["parse_data"] = {"intent": {"name": ranking[0][0], "confidence": ranking[0][1]},
                                       "intent_ranking": [{"name": n, "confidence": c} for n, c in ranking]}
    return stream.bot("utter_wrong_address")


@pytest.fixture
def world(tmp_path, monkeypatch):
    copy_project(tmp_path)
    kb = tmp_path / "kb"
    shutil.copytree(FIXTURE_KB, kb)
    events_url, handoff_url = f"sqlite:///{tmp_path / 'events.db'}", f"sqlite:///{tmp_path / 'handoff.db'}"
    broker = MaskedSQLEventBroker(host=events_url)
    streams = [
        kb_turn(Stream("a"), GAP, "utter_kb_clarify", [("Срок действия", "certificate-validity")]),
        kb_turn(Stream("b"), GAP_TOO, "utter_kb_no_answer"),
        kb_turn(Stream("c"), "сколько действует сертификат", "utter_kb_answer"),  # answered: not a miss
        kb_turn(Stream("d"), "мой код DRM-A7K2-9QXM-4TPB сгорел?", "utter_kb_no_answer"),
        nlu_turn(Stream("n1"), MISS, [("wrong_address", 0.49), ("certificate_not_accepted", 0.3)]),
        nlu_turn(Stream("n2"), MISS_TOO, [("wrong_address", 0.48), ("certificate_not_accepted", 0.35)]),
    ]
    for stream in streams:
        for event in stream.events_list():
            broker.publish(event)
    broker.engine.dispose()
    monkeypatch.setenv("EVENTS_DATABASE_URL", events_url)
    service = sqlite_service(tmp_path / "handoff.db")
    settings = HandoffSettings(database_url=handoff_url, operator_token=OPERATOR, modes_file=tmp_path / "copilot.yml")
    review = ReviewSettings(events_database_url=events_url, handoff_database_url=handoff_url,
                            review_database_url=handoff_url, trainer_token=TRAINER, kb_dir=kb, project_root=tmp_path)
    copilot = Copilot(service, CopilotModes())
    app = create_app(settings, service=service, copilot=copilot, drafts=object(), review=review)
    return app, service, copilot, kb, tmp_path


async def call(app, method, path, json=None, headers=AS_TRAINER):
    if method == "get":
        _, response = await app.asgi_client.get(path, headers=headers)
    else:
        _, response = await app.asgi_client.post(path, json=json, headers=headers)
    return response


async def test_the_trainer_token_is_its_own(world):
    app = world[0]
    assert (await call(app, "get", "/api/review/inbox", headers={})).status == 401
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    assert (await call(app, "get", "/api/review/inbox", headers=operator)).status == 401
    assert (await call(app, "get", "/api/queue", headers={"Authorization": f"Bearer {TRAINER}"})).status == 401
    refused = await call(app, "post", "/api/review/login", json={"token": "wrong"}, headers={})
    assert refused.status == 401 and refused.json["error"]["code"] == "unauthorized"
    logged = await call(app, "post", "/api/review/login", json={"token": TRAINER, "trainer": "tanya"}, headers={})
    assert logged.status == 200 and TRAINER not in str(logged.json)
    assert logged.cookies.get("review_token") == TRAINER
    page = await call(app, "get", "/review", headers={})
    assert page.status == 200 and "review.js" in page.text


async def test_kb_gaps_are_clustered_masked_and_sorted(world):
    app = world[0]
    inbox = (await call(app, "get", "/api/review/inbox?area=kb")).json
    assert inbox["open"] == 5 and inbox["kinds"] == {"kb_clarified": 1, "kb_no_answer": 2, "low_confidence": 2}
    top = inbox["clusters"][0]
    assert top["count"] == 2 and {t["text"] for t in top["texts"]} == {GAP, GAP_TOO}
    assert top["articles"] == {"certificate-validity": 1} and top["area"] == "kb" and top["conversations"] == 2
    masked = inbox["clusters"][1]["text"]
    assert "A7K2" not in masked and "DRM-" in masked  # the event stream keeps codes masked
    assert [c["area"] for c in (await call(app, "get", "/api/review/inbox?area=nlu")).json["clusters"]] == ["nlu"] * 2
    bad = await call(app, "get", "/api/review/inbox?since=someday")
    assert bad.status == 400 and bad.json["error"]["code"] == "invalid_input"


async def test_a_kb_gap_becomes_an_alias_and_is_then_answered(world):
    app, _, _, kb, tmp_path = world
    knowledge = KnowledgeService.from_settings(RagSettings(
        kb_dir=kb, qdrant_path=tmp_path / "qdrant", collection="review", sync_on_start=True,
        answer_threshold=0.8, clarify_threshold=0.7, kb_check_seconds=0.2,
    )).warm_up()
    try:
        assert knowledge.answer(GAP).status != ANSWERED
        options = (await call(app, "get", "/api/review/options")).json
        assert {"id": "certificate-validity", "title": "Сколько действует сертификат"} in options["articles"]

        done = await call(app, "post", "/api/review/kb/alias",
                          json={"texts": [GAP, GAP_TOO.lower()], "article": "certificate-validity"})
        assert done.status == 200 and done.json["accepted"] == 2, done.json
        article = next(a for a in load_articles(kb) if a.id == "certificate-validity")
        assert GAP in article.questions  # a valid article with the new aliases
        time.sleep(0.3)
        answer = knowledge.answer(GAP)
        assert answer.status == ANSWERED and answer.article_id == "certificate-validity"

        inbox = (await call(app, "get", "/api/review/inbox?area=kb")).json
        assert GAP not in {t["text"] for c in inbox["clusters"] for t in c["texts"]}  # decided: out of the inbox
        assert inbox["decided"] == 2  # case and punctuation aside, the same wordings: both decided
        again = await call(app, "post", "/api/review/kb/alias", json={"texts": [GAP], "article": "certificate-validity"})
        assert again.json["refused"] == 1 and "already" in again.json["results"][0]["reason"]
        unknown = await call(app, "post", "/api/review/kb/alias", json={"texts": ["что-то новое"], "article": "nope"})
        assert unknown.json["refused"] == 1
    finally:
        knowledge.close()


async def test_personal_data_never_becomes_an_alias(world):
    app, _, _, kb, _ = world
    before = {path.name: path.read_text(encoding="utf-8") for path in kb.glob("*.md")}
    done = await call(app, "post", "/api/review/kb/alias",
                      json={"texts": ["пин 4821 не подходит к DRM-A7K2-9QXM-4TPB", "пишите на ivan@mail.ru"],
                            "article": "certificate-validity"})
    assert done.json["refused"] == 2
    assert all("4821" not in r["reason"] and "ivan@" not in r["reason"] for r in done.json["results"])
    assert {path.name: path.read_text(encoding="utf-8") for path in kb.glob("*.md")} == before


async def test_a_new_article_from_a_cluster(world):
    app, _, _, kb, _ = world
    made = await call(app, "post", "/api/review/kb/articles", json={
        "id": "expired-certificate", "title": "Если срок сертификата истёк",
        "body": "Сертификат действует год. После окончания срока его нельзя продлить.",
        "questions": [GAP, GAP_TOO]})
    assert made.status == 201 and made.json["file"].endswith("expired-certificate.md")
    article = next(a for a in load_articles(kb) if a.id == "expired-certificate")
    assert article.title == "Если срок сертификата истёк" and article.questions == (GAP, GAP_TOO)
    duplicate = await call(app, "post", "/api/review/kb/articles", json={
        "id": "expired-certificate", "title": "x", "body": "y", "questions": ["z z z"]})
    assert duplicate.status == 400 and duplicate.json["error"]["code"] == "kb_edit_refused"
    missing = await call(app, "get", "/api/review/kb/articles/no-such-article")
    assert missing.status in (400, 404)


async def test_an_operators_edit_of_a_knowledge_draft_is_offered_as_a_correction(world):
    app, service, copilot, kb, _ = world
    service.customer_message("op1", "а продлить сертификат можно?")
    service.hand_over("op1", None, {"intent": "knowledge_question"}, [], reason="copilot topic knowledge_question")
    service.take("op1", "anna")
    draft = copilot.draft_shown("op1", "anna", Draft("Сертификат действует 1 год.", 0.7, "rag:certificate-validity",
                                                     "knowledge_question"))
    copilot.send(draft.id, "anna", "Сертификат действует 1 год, продлить его нельзя, но остаток можно потратить.")
    inbox = (await call(app, "get", "/api/review/inbox?area=kb")).json
    cluster = next(c for c in inbox["clusters"] if c["text"] == "а продлить сертификат можно?")
    assert cluster["kinds"] == {"copilot_edited": 1}
    assert cluster["corrections"][0]["source"] == "rag:certificate-validity"
    article = (await call(app, "get", "/api/review/kb/articles/certificate-validity")).json
    body = article["body"] + "\n\nПродлить срок нельзя."
    fixed = await call(app, "post", "/api/review/kb/articles/certificate-validity/body",
                       json={"body": body, "texts": [cluster["text"]]})
    assert fixed.status == 200
    assert "Продлить срок нельзя." in next(a for a in load_articles(kb) if a.id == "certificate-validity").body
    assert not [c for c in (await call(app, "get", "/api/review/inbox?area=kb")).json["clusters"]
                if c["text"] == cluster["text"]]


async def test_dismiss_and_undo(world):
    app = world[0]
    dismissed = await call(app, "post", "/api/review/dismiss", json={"texts": [GAP], "note": "тест"})
    assert dismissed.json["accepted"] == 1
    history = (await call(app, "get", "/api/review/history")).json["decisions"]
    assert history[0]["decision"] == "dismissed" and history[0]["reviewer"] == "tanya"
    texts = lambda inbox: {t["text"] for c in inbox["clusters"] for t in c["texts"]}  # noqa: E731
    assert GAP not in texts((await call(app, "get", "/api/review/inbox")).json)
    undone = await call(app, "post", "/api/review/undo", json={"text": GAP})
    assert undone.status == 200 and undone.json["decision"] == "dismissed"
    assert GAP in texts((await call(app, "get", "/api/review/inbox")).json)
    assert (await call(app, "post", "/api/review/undo", json={"text": GAP})).status == 404
    for body in ({"texts": []}, {"texts": "x" * 10}, {"texts": [1]}, ["not", "an", "object"]):
        bad = await call(app, "post", "/api/review/dismiss", json=body)
        assert bad.status == 400 or (bad.status == 200 and body == {"texts": "x" * 10}), body


async def test_a_miss_is_annotated_into_valid_rasa_nlu_data_and_undone(world):
    app, _, _, _, root = world
    inbox = (await call(app, "get", "/api/review/inbox?area=nlu")).json
    wordings = {t["text"]: c for c in inbox["clusters"] for t in c["texts"]}
    assert set(wordings) == {MISS, MISS_TOO} and wordings[MISS]["kinds"] == {"low_confidence": 1}
    assert wordings[MISS]["intents"] == {"wrong_address": 1}
    options = (await call(app, "get", "/api/review/options")).json
    assert "certificate_not_accepted" in options["intents"] and "nlu_fallback" not in options["intents"]

    done = await call(app, "post", "/api/review/annotate",
                      json={"texts": [MISS, MISS_TOO], "intent": "certificate_not_accepted"})
    assert done.json["accepted"] == 2, done.json
    assert done.json["results"][0]["file"] == "data/nlu/reviewed/certificate_not_accepted.yml"
    from rasa.shared.nlu.training_data.loading import load_data

    examples = load_data(str(root / "data" / "nlu" / "reviewed" / "certificate_not_accepted.yml")).intent_examples
    assert sorted((m.get("text"), m.get("intent")) for m in examples) == sorted(
        [(MISS, "certificate_not_accepted"), (MISS_TOO, "certificate_not_accepted")])
    assert (await call(app, "get", "/api/review/inbox?area=nlu")).json["clusters"] == []

    heldout = await call(app, "post", "/api/review/annotate", json={
        "texts": [load_data(str(root / "tests" / "data" / "nlu_heldout.yml")).intent_examples[0].get("text")],
        "intent": "greet"})
    assert heldout.json["results"][0]["code"] == "heldout"
    personal = await call(app, "post", "/api/review/annotate",
                          json={"texts": ["мой телефон +7 916 123-45-67 перезвоните"], "intent": "request_human"})
    assert personal.json["results"][0]["code"] == "personal_data" and "916" not in personal.json["results"][0]["reason"]
    unknown = await call(app, "post", "/api/review/annotate", json={"texts": ["что-то"], "intent": "nope"})
    assert unknown.json["results"][0]["code"] == "unknown_intent"

    undone = await call(app, "post", "/api/review/undo", json={"text": MISS})
    assert undone.json["decision"] == "trained"
    examples = load_data(str(root / "data" / "nlu" / "reviewed" / "certificate_not_accepted.yml")).intent_examples
    assert [m.get("text") for m in examples] == [MISS_TOO]
    assert MISS in {t["text"] for c in (await call(app, "get", "/api/review/inbox?area=nlu")).json["clusters"]
                    for t in c["texts"]}
