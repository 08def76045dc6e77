"""The scale-out profile on real engines: two Rasa servers and two action servers behind nginx,
conversations and events in PostgreSQL, Rasa's RedisLockStore, the hand-over on PostgreSQL.

* One conversation's turns sent alternately to the two Rasa replicas get exactly the dialogue the
  same turns get on one replica, and the tracker store and the event stream hold each event once.
* Turns of one conversation sent to both replicas at the same time are serialised by the lock
  store: nothing lost, nothing duplicated, every turn answered.
* A REST hand-over on one replica is in the operators' queue; the operator's reply is pulled
  through the other; after the operator returns the conversation the bot answers on either.
* A killed Rasa replica is restarted by the supervisor while the proxy keeps answering through the
  other one, and the conversation goes on where it was.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List

import pytest
import sqlalchemy as sa

from engine.handoff import give_back
from handoff.machine import State
from tests.stack_process import RunningStack, running_stack

pytestmark = pytest.mark.slow

#: a dialogue that reads the back office but changes nothing in it, so it can be played twice
SCRIPT = [
    "хочу вернуть деньги",
    "40817358",
    "olga@mail.ru",
    "нет",
    "хочу проверить баланс",
    "drm a1b2 c3d4 7q2k",
    "1234",
    "сколько действует сертификат?",
    "спасибо",
]


@pytest.fixture(scope="module")
def urls(postgres, redis_url) -> Dict[str, str]:
    return {
        "CONVERSATIONS_DATABASE_URL": postgres.database("conversations"),
        "EVENTS_DATABASE_URL": postgres.database("events"),
        "HANDOFF_DATABASE_URL": postgres.database("handoff"),
        "BACKOFFICE_DATABASE_URL": postgres.database("backoffice"),
        "LOCK_STORE_URL": redis_url,
    }


@pytest.fixture(scope="module")
def stack(trained_model, tmp_path_factory, urls) -> Iterator[RunningStack]:
    env = {"STACK_PROFILE": "scale-out", "RASA_REPLICAS": "2", "ACTION_REPLICAS": "2", **urls}
    with running_stack(trained_model, tmp_path_factory.mktemp("scale-out"), env) as running:
        assert len(running.rasa_replica_ports) == 2, running.log_tail()
        yield running


def shown(replies: List[dict]) -> List[str]:
    return [reply.get("text") or json.dumps(reply.get("custom"), ensure_ascii=False) for reply in replies]


def stored_events(url: str, sender: str, table: str = "events") -> List[Dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(f"SELECT data FROM {table} WHERE sender_id = :sender ORDER BY id"), {"sender": sender}
            ).fetchall()
    finally:
        engine.dispose()
    return [json.loads(row.data) for row in rows]


def shape(events: List[Dict[str, Any]]) -> List[tuple]:
    """What the dialogue did, without timestamps and ids."""
    out = []
    for event in events:
        kind = event.get("event")
        if kind == "user":
            out.append((kind, event.get("text"), (event.get("parse_data") or {}).get("intent", {}).get("name")))
        elif kind == "bot":
            out.append((kind, event.get("text")))
        elif kind == "action":
            out.append((kind, event.get("name")))
        elif kind in ("slot", "active_loop"):
            value = event.get("value") if kind == "slot" else event.get("name")
            out.append((kind, event.get("name") if kind == "slot" else None,
                        "sealed" if str(value).startswith("sealed:") else value))
        else:
            out.append((kind,))
    return out


def test_turns_alternating_between_replicas_make_the_same_dialogue_as_one_replica(stack, urls):
    first, second = stack.rasa_replica_ports
    alone = [shown(stack.say_to(first, "one-replica", text)) for text in SCRIPT]
    alternating = [shown(stack.say_to((first, second)[i % 2], "two-replicas", text)) for i, text in enumerate(SCRIPT)]
    assert alternating == alone
    assert all(replies for replies in alone), alone  # every turn was answered

    one = stored_events(urls["CONVERSATIONS_DATABASE_URL"], "one-replica")
    two = stored_events(urls["CONVERSATIONS_DATABASE_URL"], "two-replicas")
    assert shape(two) == shape(one)
    for events in (one, two):  # each event stored once
        stamps = [(e["event"], e.get("timestamp"), e.get("name"), e.get("text")) for e in events]
        assert len(stamps) == len(set(stamps))
        assert sum(1 for e in events if e["event"] == "user") == len(SCRIPT)
    # the event stream got every event exactly once too (masked: the same count, the same kinds)
    streamed = stored_events(urls["EVENTS_DATABASE_URL"], "two-replicas")
    assert [e["event"] for e in streamed] == [e["event"] for e in two]
    assert not any("7Q2K" in json.dumps(e) and "A1B2" in json.dumps(e) for e in streamed)  # the code masked


def test_concurrent_turns_of_one_conversation_on_both_replicas_are_serialised(stack, urls):
    first, second = stack.rasa_replica_ports
    stack.say_to(first, "burst", "привет")
    messages = [f"сколько действует сертификат? ({n})" for n in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda item: stack.say_to((first, second)[item[0] % 2], "burst", item[1]),
                                enumerate(messages)))
    assert all(any("12 месяцев" in (r.get("text") or "") for r in reply) for reply in replies), replies
    events = stored_events(urls["CONVERSATIONS_DATABASE_URL"], "burst")
    users = [e["text"] for e in events if e["event"] == "user"]
    assert sorted(users) == sorted(["привет", *messages])
    # each customer message is followed by its own turn before the next one starts (the lock)
    kinds = [e["event"] for e in events]
    starts = [i for i, kind in enumerate(kinds) if kind == "user"]
    for begin, end in zip(starts, starts[1:] + [len(kinds)]):
        turn = events[begin:end]
        assert any(e["event"] == "bot" for e in turn), turn
        assert (turn[-1]["event"], turn[-1].get("name")) == ("action", "action_listen"), turn[-1]


def test_a_rest_hand_over_on_one_replica_is_handled_across_both(stack):
    first, second = stack.rasa_replica_ports
    stack.say_to(first, "rest-human", "позовите оператора")
    handed = stack.say_to(second, "rest-human", "нет, мне нужен живой человек")
    assert any((r.get("custom") or {}).get("handoff", {}).get("state") == "waiting" for r in handed), handed
    handoff = stack.handoff()
    assert "rest-human" in [item.conversation_id for item in handoff.queue()]
    assert stack.say_to(first, "rest-human", "я жду") == []
    handoff.take("rest-human", "anna")
    reply = handoff.operator_reply("rest-human", "anna", "Здравствуйте, я Анна.")
    pulled = stack.pull("rest-human")
    assert [m["text"] for m in pulled["messages"]] == ["Здравствуйте, я Анна."] and pulled["state"] == "operator"
    assert stack.pull("rest-human", after=reply.id)["messages"] == []
    assert give_back(handoff, "rest-human").state is State.BOT
    deadline = time.monotonic() + 15
    while not stack.pull("rest-human", after=reply.id)["messages"] and time.monotonic() < deadline:
        time.sleep(0.3)
    assert [m["text"] for m in stack.pull("rest-human", after=reply.id)["messages"]] == [
        "Снова с вами ассистент. Чем ещё помочь?"]
    assert any("12 месяцев" in (r.get("text") or "") for r in stack.say_to(second, "rest-human", "сколько действует сертификат?"))


def test_a_killed_replica_is_restarted_while_the_other_answers(stack):
    first, second = stack.rasa_replica_ports
    assert "e-mail покупателя" in " ".join(shown(stack.say("killed", "хочу вернуть деньги за заказ 40817358")))
    found = subprocess.run(["pgrep", "-f", f"engine.rasa_server .*--port {first}"], capture_output=True, text=True)
    pid = int(found.stdout.split()[0])
    os.kill(pid, signal.SIGKILL)
    # the proxy keeps answering (the other replica) and the flow goes on where it was
    summary = " ".join(shown(stack.say("killed", "olga@mail.ru"))).replace("\u00a0", " ")
    assert "2 000 ₽" in summary, summary
    # once restarted, the killed replica answers the same conversation where it was
    deadline = time.monotonic() + 240
    while True:
        assert time.monotonic() < deadline, stack.log_tail(60)
        try:
            declined = stack.say_to(first, "killed", "нет")
            break
        except OSError:
            time.sleep(1)
    assert "не оформляю" in " ".join(shown(declined)), declined
    assert any("rasa server 1 stopped" in line for line in stack.output), stack.log_tail()
