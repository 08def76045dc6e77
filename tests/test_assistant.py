"""The trained assistant: quality floor on the held-out set, edge inputs, and the running stack."""
from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from nlu.evaluation import entity_metrics, load_examples, read_lines
from tests.conftest import entity_pairs
from tests.stack_process import running_stack

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


def test_run_command_serves_rest_and_socketio_and_stops_cleanly(trained_model, tmp_path):
    with running_stack(trained_model, tmp_path) as stack:
        replies = stack.say("test-user", "хочу вернуть деньги за заказ 40817263")
        assert any("e-mail покупателя" in reply.get("text", "") for reply in replies), replies

        parsed = stack.post("/model/parse", {"text": "хочу вернуть деньги за заказ 40817263"})
        assert parsed["intent"]["name"] == "refund_request"

        with urllib.request.urlopen(f"{stack.rasa_url}/socket.io/?EIO=4&transport=polling", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.action_port}/health", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.backoffice_port}/health", timeout=10) as response:
            assert response.status == 200
    assert stack.process.returncode == 0, stack.log_tail()
    for port in (stack.rasa_port, stack.action_port, stack.backoffice_port):
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
