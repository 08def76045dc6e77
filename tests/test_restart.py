"""Conversations survive restarts, in both profiles: the default one (SQLite files, one of each
server) and scale-out (two Rasa servers behind nginx, PostgreSQL, Redis lock store).

Mid-flow conversations — a refund waiting for the buyer check, a balance check waiting for the PIN
(its code sealed in the tracker store), a conversation handed over to the operators — continue where
they were after (1) every Rasa server is killed and the stack's supervisor starts them again, and
(2) the whole stack is stopped and started again on the same databases."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Dict, List

import pytest

from handoff.machine import State
from tests.stack_process import RunningStack, running_stack

pytestmark = pytest.mark.slow


def texts(replies: List[dict]) -> str:
    return " | ".join(reply.get("text", "") for reply in replies).replace("\u00a0", " ")


def rasa_server_pids(stack: RunningStack) -> List[int]:
    found = subprocess.run(["pgrep", "-f", "engine.rasa_server .*--port"], capture_output=True, text=True).stdout.split()
    ports = set(stack.rasa_replica_ports)
    pids = []
    for pid in map(int, found):
        try:
            command = open(f"/proc/{pid}/cmdline", encoding="utf-8").read().split("\0")
        except OSError:
            continue
        if "--port" in command and int(command[command.index("--port") + 1]) in ports:
            pids.append(pid)
    assert len(pids) == len(ports), (pids, ports)
    return pids


def wait_until_answering(stack: RunningStack, previous: List[int], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not set(rasa_server_pids(stack)) & set(previous) and all(
                stack.say_to(port, "restart-probe", "привет") for port in stack.rasa_replica_ports
            ):
                return
        except (OSError, AssertionError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError("the Rasa servers did not come back:\n" + stack.log_tail(60))


def start_conversations(stack: RunningStack) -> None:
    assert "e-mail покупателя" in texts(stack.say("refund", "хочу вернуть деньги за заказ 40817263"))
    assert "PIN" in texts(stack.say("balance", "хочу проверить баланс DRM-PART-4444-GOLD"))
    stack.say("human", "позовите оператора")
    assert "обращение №" in texts(stack.say("human", "нет, мне нужен живой человек"))


@pytest.fixture(params=["single", "scale-out"])
def profile_env(request) -> Dict[str, str]:
    if request.param == "single":
        return {}
    postgres, redis_url = request.getfixturevalue("postgres"), request.getfixturevalue("redis_url")
    return {
        "STACK_PROFILE": "scale-out", "RASA_REPLICAS": "2", "ACTION_REPLICAS": "1", "LOCK_STORE_URL": redis_url,
        **{name: postgres.database(name.split("_")[0].lower()) for name in (
            "CONVERSATIONS_DATABASE_URL", "EVENTS_DATABASE_URL", "HANDOFF_DATABASE_URL", "BACKOFFICE_DATABASE_URL")},
    }


def test_conversations_continue_after_the_rasa_servers_and_then_the_whole_stack_restart(
    trained_model, tmp_path, profile_env
):
    directory = tmp_path / "stack"
    directory.mkdir()
    with running_stack(trained_model, directory, profile_env) as stack:
        start_conversations(stack)
        pids = rasa_server_pids(stack)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        wait_until_answering(stack, pids)
        assert any("stopped (exit code -9)" in line for line in stack.output), stack.log_tail()
        # the refund form still waits for the buyer check: the answer is understood as such
        summary = texts(stack.say("refund", "ivan@mail.ru"))
        assert "3 000 ₽" in summary and "Оформить возврат?" in summary, summary
        # the handed-over conversation is still with the operators: the bot stays silent
        assert stack.say("human", "алло, есть кто?") == []
        assert stack.handoff().conversation("human", with_messages=False).state is State.WAITING

    with running_stack(trained_model, directory, profile_env) as stack:  # the same databases, new processes
        done = texts(stack.say("refund", "да"))
        assert "возврат №" in done and "10 рабочих дней" in done, done
        # the certificate code was sealed in the tracker store and opened again for the flow
        balance = texts(stack.say("balance", "4444"))
        assert "DRM-****-****-GOLD" in balance and "1 800 ₽" in balance, balance
        assert stack.say("human", "ну что там?") == []
        waiting = stack.handoff().conversation("human")
        assert waiting.state is State.WAITING
        assert [m.text for m in waiting.messages if m.sender == "customer"][-2:] == ["алло, есть кто?", "ну что там?"]
