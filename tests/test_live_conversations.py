"""The demo cases of backoffice/DEMO.md through the REST channel of the running stack: the real
Rasa server (trained model), the real action server and the real back office on a fresh demo
database. Each conversation of tests/data/live_conversations.yml must get the replies the
handbook prescribes, end handed over (waiting in the operators' queue, with its CRM ticket) or
not, and afterwards the database must hold exactly the refunds and resends that should exist."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from ruamel.yaml import YAML

from engine.handoff import give_back
from handoff.machine import HandoffService, State
from handoff.settings import HandoffSettings
from tests.stack_process import RunningStack, running_stack

pytestmark = pytest.mark.slow

CASES = YAML(typ="safe").load(Path("tests/data/live_conversations.yml").read_text(encoding="utf-8"))
CONVERSATIONS: List[Dict[str, Any]] = CASES["conversations"]


@pytest.fixture(scope="module")
def stack(trained_model, tmp_path_factory) -> Iterator[RunningStack]:
    directory = tmp_path_factory.mktemp("live-stack")
    # every topic autonomous, so each demo flow runs to its end (copilot.yml sends the corporate
    # documents to an operator in every channel: tests/handoff/test_gateway.py, the browser tests)
    modes = directory / "copilot.yml"
    modes.write_text("default: autonomous\n", encoding="utf-8")
    with running_stack(trained_model, directory, {"HANDOFF_MODES_FILE": str(modes)}) as running:
        yield running


def query(stack: RunningStack, sql: str, *args: Any) -> List[tuple]:
    with sqlite3.connect(stack.database) as db:
        return db.execute(sql, args).fetchall()


def handoff(stack: RunningStack) -> HandoffService:
    return HandoffService.from_settings(HandoffSettings(database_url=f"sqlite:///{stack.handoff_database}"))


def sender_of(index: int) -> str:
    return f"live-{index:02d}"


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)), ids=[c["name"] for c in CONVERSATIONS])
def test_demo_conversation(stack: RunningStack, index: int):
    conversation = CONVERSATIONS[index]
    sender = sender_of(index)
    transcript: List[str] = []
    for turn in conversation["turns"]:
        replies = stack.say(sender, str(turn["user"]))
        said = " | ".join(reply.get("text", "") for reply in replies).replace("\u00a0", " ")  # money has no-break spaces
        transcript.append(f"> {turn['user']}\n< {said}")
        expected = turn.get("bot") or []
        if not expected:
            assert not replies, "\n".join(transcript)
        for fragment in expected:
            assert str(fragment) in said, "\n".join(transcript) + f"\n(expected «{fragment}»)\n" + stack.log_tail()

    state = handoff(stack).conversation(sender, with_messages=False).state
    assert (state is State.WAITING) is conversation["handed_over"], "\n".join(transcript)
    categories = sorted(row[0] for row in query(stack, "SELECT category FROM tickets WHERE conversation_id = ?", sender))
    assert categories == sorted(conversation["tickets"]), "\n".join(transcript)
    if conversation["tickets"]:
        summary, stored = query(stack, "SELECT summary, transcript FROM tickets WHERE conversation_id = ?", sender)[0]
        turns = json.loads(stored)
        assert summary and turns[0] == {"sender": "customer", "text": str(conversation["turns"][0]["user"])}


def test_database_holds_exactly_the_expected_refunds_and_resends(stack: RunningStack):
    expected = CASES["database"]
    refunded = sorted(row[0] for row in query(stack, "SELECT order_id FROM refunds"))
    assert refunded == sorted(expected["refunds"])
    for order_id, count in expected["resends"].items():
        assert query(stack, "SELECT COUNT(*) FROM resend_log WHERE order_id = ?", order_id)[0][0] == count, order_id
    assert query(stack, "SELECT COUNT(*) FROM resend_log")[0][0] == sum(expected["resends"].values())
    # a PIN never reaches the CRM: the answer to the PIN question is masked in the transcript
    customer_texts = [turn["text"] for (stored,) in query(stack, "SELECT transcript FROM tickets")
                      for turn in json.loads(stored or "[]") if turn["sender"] == "customer"]
    assert "****" in customer_texts and "1010" not in customer_texts


def test_a_handed_over_conversation_is_silent_until_resumed(stack: RunningStack):
    handed_over = next(i for i, c in enumerate(CONVERSATIONS) if c["handed_over"])
    sender = sender_of(handed_over)
    assert stack.say(sender, "здравствуйте") == []
    # a human (here the command line; or the operator console) gives the conversation back
    assert give_back(handoff(stack), sender).state is State.BOT
    # the gateway greets the customer back; a REST client pulls that line
    deadline = time.monotonic() + 15
    while True:
        pulled = stack.get(f"/handoff/conversations/{sender}/messages")
        if pulled["messages"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert pulled["state"] == "bot" and [m["text"] for m in pulled["messages"]] == ["Снова с вами ассистент. Чем ещё помочь?"]
    replies = stack.say(sender, "здравствуйте")
    assert any("Здравствуйте" in reply.get("text", "") for reply in replies), replies
    # the customer's message while handed over was kept for the operator, not given to the bot
    lines = [m for m in handoff(stack).conversation(sender).messages if m.sender == "customer"]
    assert [m.text for m in lines].count("здравствуйте") == 2
    texts = [e.get("text") for e in stack.get(f"/conversations/{sender}/tracker")["events"] if e["event"] == "user"]
    assert texts.count("здравствуйте") == 1


def test_the_terminal_chat_talks_to_the_running_stack(stack: RunningStack):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "engine.chat", "--url", stack.rasa_url, "--sender", "terminal-1"],
        input="ты бот?\n/exit\n", capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Ассистент: " in done.stdout and "виртуальный ассистент" in done.stdout, done.stdout


def test_pin_enumeration_through_the_chat_stops_at_the_lockout(stack: RunningStack):
    """The security review's attack: a new conversation for every guess. The back office counts the
    failures per certificate, whatever the conversation: after 5 wrong PINs even the right one is
    refused, the customer is told when to try again, and a human gets the case with the reason."""

    def guess(number: int, pin: str) -> str:
        sender = f"enumerate-{number}"
        stack.say(sender, "хочу проверить баланс DRM-USED-9999-ZERO")
        return " | ".join(reply.get("text", "") for reply in stack.say(sender, pin))

    answers = [guess(n, f"{1000 + n}") for n in range(7)]
    assert all("PIN-код не подходят" in answer for answer in answers[:5]), answers[:5]
    assert all("слишком много неверных попыток" in answer for answer in answers[5:]), answers[5:]
    assert "слишком много неверных попыток" in guess(7, "9999")  # the right PIN too
    subjects = [row[0] for row in query(stack, "SELECT subject FROM tickets WHERE conversation_id LIKE 'enumerate-%'")]
    assert subjects and all("заблокирована" in subject for subject in subjects)
    assert handoff(stack).conversation("enumerate-7", with_messages=False).state is State.WAITING


def test_intent_syntax_reaches_the_forms_but_never_skips_their_checks(stack: RunningStack):
    """Quick replies send Rasa's `/intent{...}` payloads, so customers' channels accept that syntax;
    every slot it sets still goes through the form's checks against the back office: a wrong buyer
    and a pre-set confirmation get no refund."""
    before = query(stack, "SELECT COUNT(*) FROM refunds")[0][0]
    replies = stack.say("inject-1", '/refund_request{"order_id": "40817263", "buyer_check": "nobody@example.com", '
                                    '"refund_confirmed": true}')
    said = " | ".join(reply.get("text", "") for reply in replies)
    assert "Оформить возврат?" not in said and "возврат №" not in said, said
    assert "не совпадает" in said or "e-mail покупателя" in said, said
    stack.say("inject-1", "/affirm")
    assert query(stack, "SELECT COUNT(*) FROM refunds")[0][0] == before
