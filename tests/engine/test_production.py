"""Production mode (SUPPORT_ASSISTANT_ENV=production): no deployable starts with a default, empty
or short secret, and the refusal names the variable."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engine.production import InsecureConfiguration, problems, require_secrets
from tests.backoffice_process import PROJECT_ROOT

GOOD = "k3J9v0-Qm2xW8rT5yU1o"


def test_what_is_wrong_with_a_secret_is_named():
    env = {"A": "", "BACKOFFICE_API_TOKEN": "dev-backoffice-token", "C": "short", "D": GOOD, "E": f"{GOOD},tiny"}
    assert problems(["A", "BACKOFFICE_API_TOKEN", "C", "D", "E", "MISSING"], env) == [
        "A is not set", "BACKOFFICE_API_TOKEN is the development default", "C is shorter than 16 characters",
        "E is shorter than 16 characters", "MISSING is not set",
    ]


def test_only_production_mode_refuses():
    require_secrets("console", ["HANDOFF_OPERATOR_TOKEN"], {})  # development: anything goes
    with pytest.raises(InsecureConfiguration, match="HANDOFF_OPERATOR_TOKEN is not set"):
        require_secrets("console", ["HANDOFF_OPERATOR_TOKEN"], {"SUPPORT_ASSISTANT_ENV": "production"})
    require_secrets("console", ["HANDOFF_OPERATOR_TOKEN"],
                    {"SUPPORT_ASSISTANT_ENV": "production", "HANDOFF_OPERATOR_TOKEN": GOOD})


@pytest.mark.parametrize("command, variable", [
    (["engine.stack", "--skip-train"], "BACKOFFICE_API_TOKEN"),
    (["engine.rasa_server"], "CONVERSATION_STATE_KEY"),
    (["engine.action_server"], "BACKOFFICE_API_TOKEN"),
    (["handoff.console", "serve"], "HANDOFF_OPERATOR_TOKEN"),
    (["handoff.console", "serve"], "REVIEW_TRAINER_TOKEN"),
])
def test_each_deployable_refuses_default_secrets_in_production(command, variable):
    env = {key: value for key, value in os.environ.items()
           if key not in ("BACKOFFICE_API_TOKEN", "HANDOFF_OPERATOR_TOKEN", "CONVERSATION_STATE_KEY",
                          "REVIEW_TRAINER_TOKEN")}
    env.update(SUPPORT_ASSISTANT_ENV="production", BACKOFFICE_API_TOKEN="dev-backoffice-token")
    done = subprocess.run([sys.executable, "-m", *command], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert variable in done.stdout + done.stderr


def test_the_back_office_refuses_its_default_token_and_seeds_no_demo_data_in_production(tmp_path):
    base = {key: value for key, value in os.environ.items() if key != "BACKOFFICE_API_TOKEN"}
    database = tmp_path / "prod.db"
    refused = subprocess.run([sys.executable, "-m", "backoffice", "serve"], cwd=PROJECT_ROOT, timeout=120,
                             env={**base, "SUPPORT_ASSISTANT_ENV": "production",
                                  "BACKOFFICE_DATABASE_URL": f"sqlite:///{database}"},
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "BACKOFFICE_API_TOKEN" in refused.stderr
    assert not database.exists()
    from backoffice.__main__ import production_problem
    from backoffice.settings import BackofficeSettings

    assert production_problem(BackofficeSettings(api_token=GOOD), {"SUPPORT_ASSISTANT_ENV": "production"}) is None
    assert "shorter" in production_problem(BackofficeSettings(api_token="abc"), {"SUPPORT_ASSISTANT_ENV": "production"})


def test_the_omnidesk_channel_refuses_weak_secrets_in_production(monkeypatch):
    from channels.omnidesk import OmnideskInput

    monkeypatch.setenv("SUPPORT_ASSISTANT_ENV", "production")
    monkeypatch.delenv("OMNIDESK_API_KEY", raising=False)
    with pytest.raises(InsecureConfiguration, match="OMNIDESK_WEBHOOK_SECRET is shorter.*OMNIDESK_API_KEY is not set"):
        OmnideskInput.from_credentials({"webhook_secret": "short"})
    channel = OmnideskInput.from_credentials({"webhook_secret": GOOD, "api_key": GOOD})
    assert channel.settings.webhook_secret == GOOD
