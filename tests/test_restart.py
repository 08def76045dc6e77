"""Conversations survive restarts (the default profile: SQLite files, one of each server).

Mid-flow conversations — a refund waiting for the buyer check, a balance check waiting for the PIN
(its code sealed in the tracker store), a conversation handed over to the operators — continue where
they were after (1) only the Rasa server is killed and the stack's supervisor starts it again, and
(2) the whole stack is stopped and started again on the same files."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import List

import pytest

from handoff.machine import State
from tests.stack_process import RunningStack, running_stack

pytestmark = pytest.mark.slow


def texts(replies: List[dict]) -> str:
    return " | ".join(reply.get("text", "") for reply in replies).replace("\u00a0", " ")


def rasa_server_pid(stack: RunningStack) -> int:
    found = subprocess.run(["pgrep", "-f", f"engine.rasa_server .*--port {stack.rasa_port}"],
                           capture_output=True, text=True).stdout.split()
    assert len(found) == 1, found
    return int(found[0])


def wait_until_answering(stack: RunningStack, previous_pid: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if stack.get("/status") and rasa_server_pid(stack) != previous_pid:
                return
        except (OSError, AssertionError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError("the Rasa server did not come back:\n" + stack.log_tail(60))


def start_conversations(stack: RunningStack) -> None:
    assert "e-mail покупателя" in texts(stack.say("refund", "хочу вернуть деньги за заказ 40817263"))
    assert "PIN" in texts(stack.say("balance", "хочу проверить баланс DRM-PART-4444-GOLD"))
    stack.say("human", "позовите оператора")
    assert "обращение №" in texts(stack.say("human", "нет, мне нужен живой человек"))


def test_conversations_continue_after_the_rasa_server_and_then_the_whole_stack_restart(trained_model, tmp_path):
    directory = tmp_path / "stack"
    directory.mkdir()
    with running_stack(trained_model, directory) as stack:
        start_conversations(stack)
        pid = rasa_server_pid(stack)
        os.kill(pid, signal.SIGKILL)
        wait_until_answering(stack, pid)
        assert any("The rasa server stopped" in line for line in stack.output), stack.log_tail()
        # the refund form still waits for the buyer check: the answer is understood as such
        summary = texts(stack.say("refund", "ivan@mail.ru"))
        assert "3 000 ₽" in summary and "Оформить возврат?" in summary, summary
        # the handed-over conversation is still with the operators: the bot stays silent
        assert stack.say("human", "алло, есть кто?") == []
        assert stack.handoff().conversation("human", with_messages=False).state is State.WAITING

    with running_stack(trained_model, directory) as stack:  # the same files, new processes
        done = texts(stack.say("refund", "да"))
        assert "возврат №" in done and "10 рабочих дней" in done, done
        # the certificate code was sealed in the tracker store and opened again for the flow
        balance = texts(stack.say("balance", "4444"))
        assert "DRM-****-****-GOLD" in balance and "1 800 ₽" in balance, balance
        assert stack.say("human", "ну что там?") == []
        waiting = stack.handoff().conversation("human")
        assert waiting.state is State.WAITING
        assert [m.text for m in waiting.messages if m.sender == "customer"][-2:] == ["алло, есть кто?", "ну что там?"]
