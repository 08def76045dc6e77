"""The trained assistant: quality floor on the held-out set, edge inputs, and the running stack."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from nlu.evaluation import entity_metrics, load_examples, read_lines
from tests.backoffice_process import free_port
from tests.conftest import entity_pairs

pytestmark = pytest.mark.slow


def test_heldout_quality_floor(parse):
    examples = load_examples(Path("tests/data/nlu_heldout.yml"))
    parsed = [parse(example.text) for example in examples]
    accuracy = np.mean([p["intent"]["name"] == e.intent for p, e in zip(parsed, examples)])
    entities = entity_metrics(
        [e.entities for e in examples], [[(x["entity"], x["value"]) for x in p["entities"]] for p in parsed]
    )
    assert accuracy >= 0.93, f"held-out intent accuracy {accuracy:.3f} < 0.93"
    assert entities["ALL (micro)"]["f1"] >= 0.93, entities


def test_out_of_scope_messages_mostly_fall_back(parse):
    texts = read_lines(Path("tests/data/out_of_scope_heldout.txt"))
    fallback = np.mean([parse(t)["intent"]["name"] == "nlu_fallback" for t in texts])
    assert fallback >= 0.5, f"only {fallback:.2f} of out-of-scope messages reach nlu_fallback"


def test_refund_request_with_order_number(parse):
    parsed = parse("хочу вернуть деньги за заказ 40817263")
    assert parsed["intent"]["name"] == "refund_request"
    assert entity_pairs(parsed) == [("order_id", "40817263")]


@pytest.mark.parametrize("text", ["", "   ", "😀🎁", "1" * 5000, "верните деньги " * 400, "40817263"])
def test_edge_inputs_parse_without_errors(parse, text):
    parsed = parse(text)
    assert parsed["intent"] is None or "name" in parsed["intent"]


def _post_json(url: str, payload: dict) -> object:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_run_command_serves_rest_and_socketio_and_stops_cleanly(trained_model, tmp_path):
    rasa_port, action_port, backoffice_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "RASA_PORT": str(rasa_port),
        "ACTION_SERVER_PORT": str(action_port),
        "BACKOFFICE_PORT": str(backoffice_port),
        "BACKOFFICE_DATABASE_URL": f"sqlite:///{tmp_path / 'backoffice.db'}",
        "STACK_HOST": "127.0.0.1",
        "STACK_PUBLIC_HOST": "127.0.0.1",
        "RASA_MODELS_DIR": str(Path(trained_model).parent),
    }
    stack = subprocess.Popen(
        [sys.executable, "-m", "engine.stack", "--skip-train"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list = []
    # Drain the stack's output in the background so a full pipe never blocks the servers.
    reader = threading.Thread(target=lambda: output.extend(iter(stack.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any("The assistant is running" in line for line in output):
            assert stack.poll() is None, "".join(output[-30:])
            assert time.monotonic() < deadline, "".join(output[-30:])
            time.sleep(0.5)

        replies = _post_json(
            f"http://127.0.0.1:{rasa_port}/webhooks/rest/webhook",
            {"sender": "test-user", "message": "хочу вернуть деньги за заказ 40817263"},
        )
        assert any("40817263" in reply.get("text", "") for reply in replies), replies

        parsed = _post_json(f"http://127.0.0.1:{rasa_port}/model/parse", {"text": "хочу вернуть деньги за заказ 40817263"})
        assert parsed["intent"]["name"] == "refund_request"

        with urllib.request.urlopen(
            f"http://127.0.0.1:{rasa_port}/socket.io/?EIO=4&transport=polling", timeout=10
        ) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{action_port}/health", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{backoffice_port}/health", timeout=10) as response:
            assert response.status == 200
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.kill()
    assert stack.returncode == 0
    for port in (rasa_port, action_port, backoffice_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open after Ctrl-C"


def test_conversation_stories_pass_with_rasa_test(trained_model, tmp_path):
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("rasa")), "test", "core",
            "--model", trained_model,
            "--stories", "tests/conversations",
            "--out", str(tmp_path),
            "--fail-on-prediction-errors",
        ],
        capture_output=True, text=True, timeout=600,
    )
    failed = tmp_path / "failed_test_stories.yml"
    details = failed.read_text(encoding="utf-8") if failed.exists() else result.stdout[-3000:]
    assert result.returncode == 0, details
