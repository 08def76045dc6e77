"""The command line on the fixture KB: ingest, evaluate, calibrate (function calls and a subprocess)."""
import json
import subprocess
import sys

from rag.__main__ import main
from tests.conftest import PROJECT_ROOT
from tests.rag.conftest import FIXTURE_KB, FIXTURE_QUESTIONS


def test_ingest_twice_then_nothing_changes(tmp_path, capsys):
    args = ["ingest", "--kb", str(FIXTURE_KB), "--qdrant-path", str(tmp_path / "q"), "--collection", "cli", "--quiet", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["added"] == first["chunks"] > 0
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (second["added"], second["updated"], second["deleted"]) == (0, 0, 0)


def test_evaluate_writes_all_modes(tmp_path, capsys):
    output = tmp_path / "eval.json"
    assert main(["evaluate", "--kb", str(FIXTURE_KB), "--golden", str(FIXTURE_QUESTIONS), "--output", str(output), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| recall@3 |" in printed and "false answers" in printed
    report = json.loads(output.read_text(encoding="utf-8"))
    assert set(report["retrieval"]) == {"sparse", "dense", "hybrid"}
    assert report["retrieval"]["hybrid"]["recall@3"] >= 0.9
    for key in ("correct_answer_rate", "false_answer_rate", "turn_latency_ms_p95"):
        assert key in report["service"]


def test_calibrate_writes_rag_yml_keeping_comments(tmp_path, capsys):
    config = tmp_path / "rag.yml"
    config.write_text(
        "# top comment\nretrieval:\n  mode: hybrid  # why hybrid\n  sparse_weight: 0.3\n"
        "thresholds:\n  answer: 0.99\n  clarify: 0.98\n\n# trailing comment\n",
        encoding="utf-8",
    )
    assert main(["--config", str(config), "calibrate", "--kb", str(FIXTURE_KB), "--calibration", str(FIXTURE_QUESTIONS),
                 "--write", "--quiet"]) == 0
    assert "Chosen: sparse_weight" in capsys.readouterr().out
    text = config.read_text(encoding="utf-8")
    assert "# top comment" in text and "# why hybrid" in text and "# trailing comment" in text
    from rag.settings import RagSettings

    settings = RagSettings.load(config, environ={})
    assert settings.answer_threshold < 0.99 and settings.clarify_threshold <= settings.answer_threshold


def test_module_entry_point_runs(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "--kb", str(FIXTURE_KB), "--qdrant-path", str(tmp_path / "q"),
         "--collection", "ask", "как проверить баланс сертификата"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "check-balance" in completed.stdout
