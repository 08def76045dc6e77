"""review.retrain: a real (tiny) `rasa train` in a scratch project, evaluated on a tiny held-out set,
loaded into a real `rasa run --enable-api` server only when it is not worse.

The project: 4 intents × 6 examples, WhitespaceTokenizer + CountVectorsFeaturizer +
LogisticRegressionClassifier, no policies — `rasa train` takes ~20 s, a held-out evaluation ~20 s.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from review.retrain import RetrainBusy, Retrainer, RetrainSettings, judge
from review.training import ReviewedData

CONFIG = """\
recipe: default.v1
assistant_id: review-retrain-test
language: ru
pipeline:
- name: WhitespaceTokenizer
- name: CountVectorsFeaturizer
- name: LogisticRegressionClassifier
policies: []
"""
DOMAIN = """\
version: "3.1"
intents: [greet, refund_request, check_balance, out_of_scope]
"""
NLU = """\
version: "3.1"
nlu:
- intent: greet
  examples: |
    - привет
    - здравствуйте
    - добрый день
    - доброе утро
    - привет бот
    - здравствуйте у меня вопрос
- intent: refund_request
  examples: |
    - верните деньги
    - хочу вернуть деньги
    - оформите возврат
    - нужен возврат денег за сертификат
    - как вернуть деньги за подарок
    - возврат средств пожалуйста
- intent: check_balance
  examples: |
    - какой баланс
    - сколько осталось на сертификате
    - проверить баланс
    - остаток на карте
    - сколько денег на сертификате
    - покажите баланс сертификата
- intent: out_of_scope
  examples: |
    - какая погода завтра
    - расскажи анекдот
    - кто выиграл матч
    - посоветуй фильм
    - как приготовить борщ
    - сколько лет луне
"""
# «бабки назад хочу» uses words the base data does not have: the first model gets it wrong
HELDOUT = """\
version: "3.1"
nlu:
- intent: greet
  examples: |
    - привет всем
    - добрый вечер
- intent: refund_request
  examples: |
    - бабки назад хочу
    - верните деньги пожалуйста
- intent: check_balance
  examples: |
    - какой остаток
    - баланс подскажите
"""
OUT_OF_SCOPE = "погода в москве\nанекдот про кота\n"


def tiny_project(root: Path, config: str = CONFIG) -> Path:
    (root / "data" / "nlu").mkdir(parents=True)
    (root / "tests" / "data").mkdir(parents=True)
    (root / "config.yml").write_text(config, encoding="utf-8")
    (root / "domain.yml").write_text(DOMAIN, encoding="utf-8")
    (root / "data" / "nlu" / "base.yml").write_text(NLU, encoding="utf-8")
    (root / "tests" / "data" / "nlu_heldout.yml").write_text(HELDOUT, encoding="utf-8")
    (root / "tests" / "data" / "out_of_scope_heldout.txt").write_text(OUT_OF_SCOPE, encoding="utf-8")
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env() -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", RASA_TELEMETRY_ENABLED="false")


@pytest.fixture
def project(tmp_path) -> Path:
    return tiny_project(tmp_path / "project")


@pytest.fixture
def rasa_server(project):
    """A real Rasa server with the HTTP API on loopback, started on an empty models folder (it then
    runs without a model until one is PUT)."""
    models = project / "models"
    models.mkdir()
    port = free_port()
    log = open(project / "rasa-server.log", "wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("rasa")), "run", "--enable-api", "--interface", "127.0.0.1",
         "--port", str(port), "--model", str(models)],
        cwd=project, env=child_env(), stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    yield process, url
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def wait_until_up(process: subprocess.Popen, url: str, project: Path, timeout: float = 150.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, (project / "rasa-server.log").read_text(errors="replace")[-3000:]
        try:
            if httpx.get(f"{url}/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("the Rasa server did not start: " + (project / "rasa-server.log").read_text(errors="replace")[-3000:])


def server_model(url: str):
    response = httpx.get(f"{url}/status", timeout=10)
    return response.json().get("model_file") if response.status_code == 200 else None


def wait_for(retrainer: Retrainer, timeout: float = 240.0) -> dict:
    """Polls the job as the console page does; the final status, with the states seen on the way."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = retrainer.status()
        if not seen or seen[-1] != status["state"]:
            seen.append(status["state"])
        if status["state"] not in ("training", "evaluating", "loading"):
            break
        assert status["elapsed_seconds"] >= 0 and isinstance(status["log_tail"], list)
        time.sleep(0.2)
    status = retrainer.wait(5)
    assert status["state"] in ("loaded", "accepted", "rejected", "failed"), status
    status["seen"] = seen
    return status


# --- the decision and the settings (no training) ---------------------------------------------------

def test_judge_compares_intent_accuracy_and_out_of_scope_detection():
    before = {"intent_accuracy": 0.80, "oos_rate": 0.90}
    assert judge(None, before)[0]
    assert judge(before, {"intent_accuracy": 0.80, "oos_rate": 0.90})[0]
    assert judge(before, {"intent_accuracy": 0.85, "oos_rate": 0.89})[0]        # oos within 0.02
    worse, why = judge(before, {"intent_accuracy": 0.79, "oos_rate": 0.95})
    assert not worse and "80.0 %" in why and "79.0 %" in why
    assert not judge(before, {"intent_accuracy": 0.90, "oos_rate": 0.85})[0]    # oos lost 5 points
    assert judge(before, {"intent_accuracy": 0.79, "oos_rate": 0.90}, tolerance=0.02)[0]
    assert judge(before, {"intent_accuracy": 0.9, "oos_rate": None})[0]          # no oos set


def test_settings_come_from_the_environment(tmp_path):
    settings = RetrainSettings.from_env({
        "REVIEW_PROJECT_ROOT": str(tmp_path), "RASA_MODELS_DIR": "trained",
        "REVIEW_RASA_URLS": "http://10.0.0.1:5005/, http://10.0.0.2:5005", "REVIEW_RETRAIN_TOLERANCE": "0.01",
    })
    assert settings.models_dir == tmp_path / "trained" and settings.state_dir == tmp_path / ".review"
    assert settings.rasa_urls == ("http://10.0.0.1:5005", "http://10.0.0.2:5005")
    assert settings.tolerance == 0.01 and settings.oos_tolerance == 0.02
    assert settings.state_file == tmp_path / ".review" / "retrain.json"
    defaults = RetrainSettings.from_env({"REVIEW_PROJECT_ROOT": str(tmp_path)})
    assert defaults.rasa_urls == ("http://127.0.0.1:5005",) and defaults.models_dir == tmp_path / "models"
    with pytest.raises(ValueError):
        RetrainSettings.from_env({"REVIEW_RASA_URLS": "127.0.0.1:5005"})
    with pytest.raises(ValueError):
        RetrainSettings.from_env({"REVIEW_RETRAIN_TOLERANCE": "2"})


def test_a_job_a_restart_interrupted_is_reported_failed_and_the_last_result_survives(tmp_path):
    state = tmp_path / ".review" / "retrain.json"
    retrainer = Retrainer(tmp_path, tmp_path / "models", [], state)
    assert retrainer.status() == {"state": "idle"}
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"job_id": "x", "state": "training", "stage": "training", "started_at": "t"}))
    status = Retrainer(tmp_path, tmp_path / "models", [], state).status()
    assert status["state"] == "failed" and "interrupted" in status["reason"] and status["stage"] == "training"
    state.write_text(json.dumps({"job_id": "y", "state": "rejected", "reason": "worse", "log_tail": ["a"]}))
    assert Retrainer(tmp_path, tmp_path / "models", [], state).status()["state"] == "rejected"


# --- real trainings --------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_model_is_loaded_only_when_it_is_not_worse(project, rasa_server):
    process, url = rasa_server  # starting while the first model trains
    models = project / "models"
    state = project / ".review" / "retrain.json"

    # 1. the first model, with no server to load it into: nothing to compare with, accepted
    first_retrainer = Retrainer(project, models, [], state)
    status = first_retrainer.start(requested_by="anna")
    assert status["state"] == "training" and status["requested_by"] == "anna"
    with pytest.raises(RetrainBusy):
        first_retrainer.start(requested_by="boris")
    retrainer = Retrainer(project, models, [url], state)  # another console worker: same files
    with pytest.raises(RetrainBusy):
        retrainer.start(requested_by="boris")
    assert retrainer.status()["state"] in ("training", "evaluating", "loading")
    first = wait_for(first_retrainer)
    assert first["state"] == "accepted" and "no Rasa server" in first["reason"], first
    assert first["before"] is None and first["loaded_on"] == []
    assert first["after"]["n_intent"] == 6 and first["after"]["n_oos"] == 2
    assert first["after"]["errors_by_intent"] == {"refund_request": 1}  # «бабки назад хочу»
    model_a = Path(first["model"])
    assert model_a.parent == models and model_a.is_file()
    assert not list((models / "candidates").glob("*.tar.gz"))
    wait_until_up(process, url, project)
    assert server_model(url) is None  # started on an empty folder: no model yet

    # 2. a trainer labels the missed wording's siblings: the held-out message is right now
    data = ReviewedData(project)
    data.add("бабки назад верните", "refund_request", reviewer="anna")
    data.add("отдайте мои бабки", "refund_request", reviewer="anna")
    second = wait_for_job(retrainer)
    assert second["state"] == "loaded", second
    assert second["seen"][:2] == ["training", "evaluating"] and second["stage"] == "loading"
    # the server had no model: the current one is the newest in the folder, its result cached
    assert second["current_model"] == str(model_a)
    assert second["before"]["intent_accuracy"] == first["after"]["intent_accuracy"]
    assert second["after"]["intent_accuracy"] > second["before"]["intent_accuracy"]
    assert second["after"]["errors_by_intent"] == {}
    model_b = Path(second["model"])
    assert server_model(url) == model_b.name and model_b.parent == models and model_a.is_file()
    assert "(held-out result of" in "\n".join(second["log_tail"])  # the current model's result was cached

    # 3. mislabelled examples: the greetings of the held-out set go wrong — rejected, nothing loaded
    for text in ("всем привет", "добрый вечер друзья", "привет привет", "вечер добрый", "добрый всем вечер"):
        data.add(text, "check_balance", reviewer="boris")
    third = wait_for_job(retrainer)
    assert third["state"] == "rejected", third
    assert "loading" not in third["seen"] and third["stage"] == "evaluating"
    assert third["after"]["intent_accuracy"] < third["before"]["intent_accuracy"]
    assert third["after"]["errors_by_intent"].get("greet")
    rejected = Path(third["candidate"])
    assert rejected.parent == models / "rejected" and rejected.is_file()
    assert third["model"] is None and third["loaded_on"] == []
    assert server_model(url) == model_b.name  # no PUT: the server still runs the second model
    assert sorted(p.name for p in models.glob("*.tar.gz")) == sorted([model_a.name, model_b.name])

    # the console restarted: the last result is still there
    again = Retrainer(project, models, [url], state).status()
    del third["seen"]
    assert again["state"] == "rejected" and again["job_id"] == third["job_id"]
    assert again["before"] == third["before"] and again["log_tail"]


def wait_for_job(retrainer: Retrainer) -> dict:
    retrainer.start(requested_by="test")
    return wait_for(retrainer)


@pytest.mark.slow
def test_a_failed_training_is_reported_with_rasa_s_log_and_loads_nothing(tmp_path):
    broken = CONFIG.replace("LogisticRegressionClassifier", "NoSuchClassifier")
    project = tiny_project(tmp_path / "project", config=broken)
    retrainer = Retrainer(project, project / "models", ["http://127.0.0.1:9"], project / ".review" / "retrain.json")
    status = retrainer.run(requested_by="cli")
    assert status["state"] == "failed" and status["stage"] == "training"
    assert "rasa train exited with code" in status["reason"]
    assert any("NoSuchClassifier" in line for line in status["log_tail"])
    assert Path(status["log_file"]).read_text(encoding="utf-8").count("NoSuchClassifier") >= 1
    assert not list((project / "models").glob("*.tar.gz")) and status["loaded_on"] == []
