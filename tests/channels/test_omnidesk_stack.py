"""Omnidesk in the real stack with the trained model: credentials.yml's commented Omnidesk line
enabled as the README says, the channel pointed at the stand-in Omnidesk (tests/channels/
omnidesk_server.py). A new case gets the assistant's own reply as a staff message, a retried webhook
gets none, and asking for a human twice assigns the case to the hand-over group with the summary as
a private note — after which the bot stays silent on the case."""
from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from tests.channels.omnidesk_server import FakeOmnidesk, running_omnidesk
from tests.stack_process import PROJECT_ROOT, RunningStack, running_stack

pytestmark = pytest.mark.slow

SECRET = "omnidesk-webhook-secret-for-the-stack-test"
GROUP = 77


def credentials_with_omnidesk(target: Path) -> Path:
    text = (PROJECT_ROOT / "credentials.yml").read_text(encoding="utf-8")
    assert "\n#channels.omnidesk.OmnideskInput:" in text, "credentials.yml's Omnidesk line changed"
    target.write_text(text.replace("\n#channels.omnidesk.OmnideskInput:", "\nchannels.omnidesk.OmnideskInput:"),
                      encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def omnidesk() -> Iterator[FakeOmnidesk]:
    with running_omnidesk() as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(trained_model, tmp_path_factory, omnidesk) -> Iterator[RunningStack]:
    directory = tmp_path_factory.mktemp("omnidesk-stack")
    env = {"RASA_CREDENTIALS": str(credentials_with_omnidesk(directory / "credentials.yml")),
           "OMNIDESK_URL": omnidesk.url, "OMNIDESK_STAFF_EMAIL": omnidesk.email, "OMNIDESK_API_KEY": omnidesk.api_key,
           "OMNIDESK_WEBHOOK_SECRET": SECRET, "OMNIDESK_HANDOVER_GROUP_ID": str(GROUP),
           "OMNIDESK_DATABASE_URL": f"sqlite:///{directory / 'omnidesk.db'}"}
    with running_stack(trained_model, directory, env) as running:
        yield running


def webhook(stack: RunningStack, case_id: int, message_id: int, text: str, event: str = "message_new") -> Dict[str, Any]:
    body = {"type": event, "object": {"case_id": case_id, "message_id": message_id, "content": text, "user_id": 5,
                                      "staff_id": 0, "note": False}}
    request = urllib.request.Request(stack.rasa_url + "/webhooks/omnidesk/webhook", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "X-Omnidesk-Secret": SECRET})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_a_new_case_gets_the_assistants_reply_once(stack, omnidesk):
    assert webhook(stack, 801, 1, "не пришёл сертификат на почту", event="case_new") == {"result": "ok"}
    wait_for(lambda: omnidesk.replies(801))
    first = omnidesk.replies(801)
    assert any("заказ" in reply.lower() for reply in first), first  # the resend flow asks for the order
    assert webhook(stack, 801, 1, "не пришёл сертификат на почту", event="case_new") == {"result": "duplicate"}
    time.sleep(1)
    assert omnidesk.replies(801) == first


def test_asking_for_a_human_assigns_the_case_and_silences_the_bot(stack, omnidesk):
    webhook(stack, 802, 10, "позовите оператора", event="case_new")
    webhook(stack, 802, 11, "нет, мне нужен живой человек")
    wait_for(lambda: omnidesk.notes(802))
    assert omnidesk.case(802)["group_id"] == GROUP
    assert "оператор" in omnidesk.notes(802)[0].lower() or "причина" in omnidesk.notes(802)[0].lower()
    replies = omnidesk.replies(802)
    webhook(stack, 802, 12, "ау, есть кто?")
    time.sleep(1.5)
    assert omnidesk.replies(802) == replies  # the case is the operators' now
