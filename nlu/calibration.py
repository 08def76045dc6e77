"""Calibrates the `FallbackClassifier` threshold of config.yml on data instead of guessing it.

    python -m nlu.calibration            # print the chosen threshold
    python -m nlu.calibration --write    # ... and write it into config.yml (comments kept)

How: the NLU training data is split into k stratified folds; for each fold our pipeline is
trained on the rest and parses the held-back fold plus the out-of-scope calibration set
(data/calibration/out_of_scope.txt, never trained on). The threshold maximises in-scope accuracy
+ out-of-scope recall among thresholds that lose at most `--max-accuracy-drop` of in-scope
accuracy (see nlu.evaluation.choose_threshold).
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

from nlu.evaluation import (
    ROOT,
    fallback_score,
    choose_threshold,
    our_config,
    parse_texts,
    read_lines,
    train_nlu_model,
)

DEFAULT_OOS = ROOT / "data" / "calibration" / "out_of_scope.txt"


def calibrate(folds: int, oos_path: Path, max_accuracy_drop: float, workdir: Path) -> dict:
    from rasa.shared.nlu.training_data.loading import load_data
    from rasa.shared.nlu.training_data.training_data import TrainingData
    from sklearn.model_selection import StratifiedKFold

    data = load_data(str(ROOT / "data" / "nlu"))
    examples = data.intent_examples
    labels = [example.get("intent") for example in examples]
    config = our_config(fallback_threshold=0.0)
    fallback_intents = set(
        next(
            (c.get("fallback_intents", ["out_of_scope"]) for c in config["pipeline"] if c["name"].endswith("CalibratedIntentClassifier")),
            ["out_of_scope"],
        )
    )
    out_of_scope_texts = read_lines(oos_path)
    in_scope: List = []
    out_of_scope: List[float] = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=13)
    for fold, (train_index, test_index) in enumerate(splitter.split(examples, labels)):
        fold_data = TrainingData(
            training_examples=[examples[i] for i in train_index],
            entity_synonyms=data.entity_synonyms,
            regex_features=data.regex_features,
            lookup_tables=data.lookup_tables,
        )
        train_file = workdir / f"fold{fold}.yml"
        train_file.write_text(fold_data.nlu_as_yaml(), encoding="utf-8")
        model, _ = train_nlu_model(config, [train_file], workdir, f"calibration-fold{fold}")
        held_back = [examples[i] for i in test_index]
        parses = parse_texts(model, [e.get("text") for e in held_back] + out_of_scope_texts)
        for example, parse in zip(held_back, parses[: len(held_back)]):
            if example.get("intent") in fallback_intents:
                out_of_scope.append(fallback_score(parse))
            else:
                in_scope.append((fallback_score(parse), parse.top_intent == example.get("intent")))
        out_of_scope += [fallback_score(parse) for parse in parses[len(held_back):]]
        print(f"  fold {fold + 1}/{folds} done", flush=True)
    chosen = choose_threshold(in_scope, out_of_scope, max_accuracy_drop)
    chosen.update({"in_scope_messages": len(in_scope), "out_of_scope_messages": len(out_of_scope)})
    return chosen


def write_threshold(config_path: Path, threshold: float) -> None:
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: keeps the designers' comments and order
    yaml.preserve_quotes = True
    yaml.width = 4096
    config = yaml.load(config_path.read_text(encoding="utf-8"))
    for component in config.get("pipeline", []):
        if component.get("name") == "FallbackClassifier":
            component["threshold"] = round(float(threshold), 2)
            break
    else:
        raise SystemExit("config.yml has no FallbackClassifier to calibrate")
    with config_path.open("w", encoding="utf-8") as handle:
        yaml.dump(config, handle)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--out-of-scope", type=Path, default=DEFAULT_OOS)
    parser.add_argument("--max-accuracy-drop", type=float, default=0.02)
    parser.add_argument("--write", action="store_true", help="write the threshold into config.yml")
    args = parser.parse_args(argv)
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    configure_logging_and_warnings(logging.WARNING)
    configure_structlog(logging.WARNING)
    # Rasa's training cache would turn a re-run's training time into a cache lookup.
    os.environ["RASA_MAX_CACHE_SIZE"] = "0"
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory(prefix="nlu-calibration-") as tmp:
        result = calibrate(args.folds, args.out_of_scope, args.max_accuracy_drop, Path(tmp))
    print(
        f"threshold {result['threshold']:.2f}: cross-validated in-scope accuracy "
        f"{result['in_scope_accuracy']:.3f} on {result['in_scope_messages']} messages, "
        f"out-of-scope recall {result['oos_recall']:.3f} on {result['out_of_scope_messages']} messages"
    )
    if args.write:
        write_threshold(ROOT / "config.yml", result["threshold"])
        print("written to config.yml")


if __name__ == "__main__":
    main()
