from pathlib import Path

import pytest

from nlu.calibration import write_threshold
from nlu.evaluation import (
    Parse,
    apply_threshold,
    choose_threshold,
    entity_metrics,
    fallback_score,
    intent_metrics,
    stock_config,
)


def test_entity_metrics_compare_normalised_values_per_message():
    gold = [[("order_id", "40817263"), ("brand", "Ozon")], [("phone", "+79161234567")]]
    predicted = [[("order_id", "40817263"), ("brand", "Лента")], []]
    result = entity_metrics(gold, predicted)
    assert result["order_id"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert result["brand"]["precision"] == 0.0 and result["brand"]["recall"] == 0.0
    assert result["phone"]["recall"] == 0.0
    assert result["ALL (micro)"]["precision"] == pytest.approx(0.5)
    assert result["ALL (micro)"]["recall"] == pytest.approx(1 / 3)


def test_intent_metrics_report_accuracy_macro_f1_and_confusions():
    result = intent_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert result["accuracy"] == 0.75
    assert result["confusions"] == [{"gold": "a", "predicted": "b", "count": 1}]
    assert 0 < result["macro_f1"] < 1


def test_threshold_keeps_in_scope_accuracy_and_catches_out_of_scope():
    in_scope = [(0.9, True)] * 90 + [(0.35, True)] * 5 + [(0.3, False)] * 5
    out_of_scope = [0.2] * 40 + [0.5] * 10 + [-1.0] * 10
    chosen = choose_threshold(in_scope, out_of_scope, max_accuracy_drop=0.02)
    assert 0.2 < chosen["threshold"] <= 0.35
    assert chosen["in_scope_accuracy"] == pytest.approx(0.95)
    assert chosen["oos_recall"] == pytest.approx(50 / 60)


def test_model_fallback_stays_fallback_under_any_threshold():
    by_model = Parse("nlu_fallback", 0.9, "greet", 0.05, [], 0.0)
    confident = Parse("greet", 0.9, "greet", 0.9, [], 0.0)
    assert fallback_score(by_model) == -1.0
    assert apply_threshold([by_model, confident], 0.3) == ["nlu_fallback", "greet"]


def test_stock_config_is_the_rasa_init_default():
    config = stock_config("ru")
    names = [component["name"] for component in config["pipeline"]]
    assert names[0] == "WhitespaceTokenizer" and "DIETClassifier" in names
    assert config["language"] == "ru"


def test_write_threshold_keeps_comments(tmp_path: Path):
    config = tmp_path / "config.yml"
    config.write_text(
        "# designers' note\npipeline:\n- name: WhitespaceTokenizer\n# why this threshold\n"
        "- name: FallbackClassifier\n  threshold: 0.5\n",
        encoding="utf-8",
    )
    write_threshold(config, 0.314)
    text = config.read_text(encoding="utf-8")
    assert "threshold: 0.31" in text
    assert "# designers' note" in text and "# why this threshold" in text
