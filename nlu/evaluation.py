"""NLU evaluation: our pipeline (config.yml) against the stock `rasa init` pipeline, side by side.

    python -m nlu.evaluation heldout   # Russian held-out set (tests/data/nlu_heldout.yml)
    python -m nlu.evaluation clinc     # CLINC150 (English, standard split, with out-of-scope)
    python -m nlu.evaluation all

Both pipelines are trained on the same data in the same run; numbers are printed as Markdown
tables (paste into docs/benchmarks.md) and written as JSON under results/.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FALLBACK_INTENT = "nlu_fallback"
# A pipeline without our mapping predicts the background intent itself; the domain answers it
# like nlu_fallback, so it counts as a fallback for every pipeline.
BACKGROUND_INTENTS = (FALLBACK_INTENT, "out_of_scope")
STOCK_CONFIG = "stock (rasa init)"
OUR_CONFIG = "ours (config.yml)"

logger = logging.getLogger(__name__)


# --- data -----------------------------------------------------------------------------------

@dataclass
class Example:
    text: str
    intent: str
    entities: List[Tuple[str, str]] = field(default_factory=list)


def load_examples(path: Path) -> List[Example]:
    from rasa.shared.nlu.training_data.loading import load_data

    data = load_data(str(path))
    return [
        Example(
            text=message.get("text"),
            intent=message.get("intent"),
            entities=[(e["entity"], str(e["value"])) for e in message.get("entities", []) or []],
        )
        for message in data.intent_examples
    ]


def read_lines(path: Path) -> List[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def stock_config(language: str) -> Dict[str, Any]:
    """The default pipeline `rasa init` trains with, read from the installed Rasa."""
    import rasa.engine.recipes.default_recipe  # noqa: F401
    import rasa.shared.utils.io

    path = Path(rasa.__file__).parent / "engine" / "recipes" / "config_files" / "default_config.yml"
    config = rasa.shared.utils.io.read_yaml_file(path)
    config["language"] = language
    config["assistant_id"] = "benchmark-stock"
    return config


def our_config(
    fallback_threshold: Optional[float] = None, fallback_intents: Optional[List[str]] = None
) -> Dict[str, Any]:
    import rasa.shared.utils.io

    config = rasa.shared.utils.io.read_yaml_file(ROOT / "config.yml")
    config.pop("importers", None)
    if fallback_threshold is not None:
        set_fallback_threshold(config, fallback_threshold)
    if fallback_intents is not None:
        for component in config.get("pipeline", []):
            if component.get("name", "").endswith("CalibratedIntentClassifier"):
                component["fallback_intents"] = list(fallback_intents)
    return config


def set_fallback_threshold(config: Dict[str, Any], threshold: float) -> None:
    for component in config.get("pipeline", []):
        if component.get("name") == "FallbackClassifier":
            component["threshold"] = float(threshold)


# --- training and parsing -------------------------------------------------------------------

def train_nlu_model(config: Dict[str, Any], nlu_files: Sequence[Path], workdir: Path, name: str) -> Tuple[str, float]:
    """Trains an NLU-only model on the given files; returns (model path, seconds)."""
    import rasa.shared.utils.io
    from rasa.model_training import train_nlu

    config_path = workdir / f"{name}.config.yml"
    config = {key: value for key, value in config.items() if key != "policies"}
    rasa.shared.utils.io.write_yaml(config, config_path)
    data_dir = workdir / f"{name}.data"
    data_dir.mkdir(exist_ok=True)
    for index, path in enumerate(nlu_files):
        (data_dir / f"{index}_{Path(path).name}").write_bytes(Path(path).read_bytes())
    started = time.perf_counter()
    model = train_nlu(str(config_path), str(data_dir), str(workdir / "models"), fixed_model_name=name)
    if model is None:
        raise RuntimeError(f"Training of {name} failed")
    return model, time.perf_counter() - started


@dataclass
class Parse:
    intent: str
    confidence: float
    # best real intent (below a fallback), with its confidence
    top_intent: str
    top_confidence: float
    entities: List[Tuple[str, str]]
    seconds: float


def parse_texts(model_path: str, texts: Sequence[str]) -> List[Parse]:
    from rasa.core.agent import Agent

    agent = Agent.load(model_path)

    async def run() -> List[Parse]:
        await agent.parse_message("прогрев")  # first call builds lazy state
        results = []
        for text in texts:
            started = time.perf_counter()
            parsed = await agent.parse_message(text)
            seconds = time.perf_counter() - started
            ranking = [r for r in parsed.get("intent_ranking", []) if r["name"] != FALLBACK_INTENT]
            top = ranking[0] if ranking else {"name": FALLBACK_INTENT, "confidence": 0.0}
            results.append(
                Parse(
                    intent=parsed["intent"]["name"],
                    confidence=float(parsed["intent"].get("confidence") or 0.0),
                    top_intent=top["name"],
                    top_confidence=float(top["confidence"]),
                    entities=[(e["entity"], str(e["value"])) for e in parsed.get("entities", [])],
                    seconds=seconds,
                )
            )
        return results

    return asyncio.run(run())


# --- metrics --------------------------------------------------------------------------------

def intent_metrics(gold: Sequence[str], predicted: Sequence[str]) -> Dict[str, Any]:
    from sklearn.metrics import f1_score

    labels = sorted(set(gold))
    accuracy = float(np.mean([g == p for g, p in zip(gold, predicted)])) if gold else 0.0
    macro_f1 = float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0))
    confusions = Counter((g, p) for g, p in zip(gold, predicted) if g != p)
    return {
        "n": len(gold),
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "confusions": [{"gold": g, "predicted": p, "count": c} for (g, p), c in confusions.most_common(12)],
    }


def entity_metrics(gold: Sequence[List[Tuple[str, str]]], predicted: Sequence[List[Tuple[str, str]]]) -> Dict[str, Dict[str, float]]:
    """Precision/recall/F1 per entity on (entity, normalised value) pairs, per message."""
    counts: Dict[str, Counter] = {}
    for gold_entities, predicted_entities in zip(gold, predicted):
        gold_counter, predicted_counter = Counter(gold_entities), Counter(predicted_entities)
        for (entity, value), count in (gold_counter | predicted_counter).items():
            stats = counts.setdefault(entity, Counter())
            true_positive = min(gold_counter[(entity, value)], predicted_counter[(entity, value)])
            stats["tp"] += true_positive
            stats["fp"] += predicted_counter[(entity, value)] - true_positive
            stats["fn"] += gold_counter[(entity, value)] - true_positive
    result = {}
    total = Counter()
    for entity, stats in sorted(counts.items()):
        total.update(stats)
        result[entity] = _prf(stats)
    result["ALL (micro)"] = _prf(total)
    return result


def _prf(stats: Counter) -> Dict[str, float]:
    precision = stats["tp"] / (stats["tp"] + stats["fp"]) if stats["tp"] + stats["fp"] else 0.0
    recall = stats["tp"] / (stats["tp"] + stats["fn"]) if stats["tp"] + stats["fn"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": stats["tp"] + stats["fn"]}


def latency_ms(parses: Iterable[Parse]) -> Dict[str, float]:
    seconds = np.array([parse.seconds for parse in parses])
    return {"p50_ms": float(np.percentile(seconds, 50) * 1000), "p95_ms": float(np.percentile(seconds, 95) * 1000)}


def apply_threshold(parses: Sequence[Parse], threshold: float) -> List[str]:
    """The intent a FallbackClassifier(threshold) would give on top of the model's own output."""
    return [
        FALLBACK_INTENT if p.intent == FALLBACK_INTENT or p.top_confidence < threshold else p.top_intent
        for p in parses
    ]


def fallback_score(parse: Parse) -> float:
    """What a fallback threshold is compared with: the best real intent's confidence, or -1
    when the model itself already answered nlu_fallback (no threshold takes that back)."""
    return -1.0 if parse.intent == FALLBACK_INTENT else parse.top_confidence


def choose_threshold(
    in_scope: Sequence[Tuple[float, bool]], out_of_scope: Sequence[float], max_accuracy_drop: float = 0.02
) -> Dict[str, float]:
    """Picks the fallback threshold that maximises in-scope accuracy + out-of-scope recall,
    among thresholds that cost at most ``max_accuracy_drop`` of in-scope accuracy.

    ``in_scope``: (fallback_score, whether the best real intent is right) per message;
    ``out_of_scope``: fallback_score per out-of-scope message.
    """
    confidences = np.array([c for c, _ in in_scope])
    correct = np.array([ok for _, ok in in_scope], dtype=bool)
    oos = np.array(out_of_scope)
    base_accuracy = float(correct.mean()) if len(correct) else 0.0
    best = {"threshold": 0.0, "in_scope_accuracy": base_accuracy, "oos_recall": float((oos < 0).mean()) if len(oos) else 0.0}
    best_score = -1.0
    for threshold in np.round(np.arange(0.05, 0.96, 0.01), 2):
        accuracy = float((correct & (confidences >= threshold)).mean()) if len(correct) else 0.0
        recall = float((oos < threshold).mean()) if len(oos) else 0.0
        if base_accuracy - accuracy > max_accuracy_drop:
            continue
        if accuracy + recall > best_score:
            best_score = accuracy + recall
            best = {"threshold": float(threshold), "in_scope_accuracy": accuracy, "oos_recall": recall}
    return best


# --- benchmarks -----------------------------------------------------------------------------

def heldout_benchmark(workdir: Path, pipelines: Sequence[str]) -> Dict[str, Any]:
    # recursive: the review tool's data/nlu/reviewed/ is training data too
    train_files = sorted((ROOT / "data" / "nlu").rglob("*.yml"))
    test = load_examples(ROOT / "tests" / "data" / "nlu_heldout.yml")
    oos = read_lines(ROOT / "tests" / "data" / "out_of_scope_heldout.txt")
    report: Dict[str, Any] = {"test_examples": len(test), "oos_examples": len(oos), "pipelines": {}}
    for pipeline in pipelines:
        config = our_config() if pipeline == OUR_CONFIG else stock_config("ru")
        model, train_seconds = train_nlu_model(config, train_files, workdir, _slug(pipeline) + "-ru")
        parses = parse_texts(model, [e.text for e in test] + oos)
        test_parses, oos_parses = parses[: len(test)], parses[len(test):]
        report["pipelines"][pipeline] = {
            "train_seconds": train_seconds,
            "intents": intent_metrics([e.intent for e in test], [p.intent for p in test_parses]),
            "entities": entity_metrics([e.entities for e in test], [p.entities for p in test_parses]),
            "false_fallback_rate": float(np.mean([p.intent in BACKGROUND_INTENTS for p in test_parses])),
            "oos_fallback_recall": float(np.mean([p.intent in BACKGROUND_INTENTS for p in oos_parses])),
            "latency": latency_ms(parses),
        }
    return report


def clinc_benchmark(workdir: Path, pipelines: Sequence[str], data_path: Path) -> Dict[str, Any]:
    import rasa.shared.utils.io

    data = json.loads(data_path.read_text(encoding="utf-8"))
    train_file = workdir / "clinc_train.yml"
    by_intent: Dict[str, List[str]] = {}
    for text, intent in data["train"] + data["oos_train"]:
        by_intent.setdefault(intent, []).append(text)
    rasa.shared.utils.io.write_text_file(_nlu_yaml(by_intent), train_file)
    test_texts = [t for t, _ in data["test"]]
    test_gold = [i for _, i in data["test"]]
    oos_texts = [t for t, _ in data["oos_test"]]
    report: Dict[str, Any] = {"train_examples": sum(map(len, by_intent.values())), "pipelines": {}}
    for pipeline in pipelines:
        is_ours = pipeline == OUR_CONFIG
        config = our_config(fallback_threshold=0.0, fallback_intents=["oos"]) if is_ours else stock_config("en")
        model, train_seconds = train_nlu_model(config, [train_file], workdir, _slug(pipeline) + "-clinc")
        entry: Dict[str, Any] = {"train_seconds": train_seconds}
        if is_ours:
            # Our fallback threshold is calibrated on the validation split, as nlu.calibration does.
            val = parse_texts(model, [t for t, _ in data["val"]] + [t for t, _ in data["oos_val"]])
            n_val = len(data["val"])
            chosen = choose_threshold(
                [(fallback_score(p), p.top_intent == gold) for p, (_, gold) in zip(val[:n_val], data["val"])],
                [fallback_score(p) for p in val[n_val:]],
            )
            entry["calibrated_threshold"] = chosen["threshold"]
        parses = parse_texts(model, test_texts + oos_texts)
        test_parses, oos_parses = parses[: len(test_texts)], parses[len(test_texts):]
        if is_ours:
            test_pred = apply_threshold(test_parses, entry["calibrated_threshold"])
            oos_pred = apply_threshold(oos_parses, entry["calibrated_threshold"])
        else:
            test_pred = [p.intent for p in test_parses]
            oos_pred = [p.intent for p in oos_parses]
        is_oos = lambda intent: intent in ("oos", FALLBACK_INTENT)  # noqa: E731
        predicted_oos_in_test = sum(is_oos(p) for p in test_pred)
        true_oos = sum(is_oos(p) for p in oos_pred)
        entry.update(
            {
                "in_scope_accuracy": float(np.mean([p == g for p, g in zip(test_pred, test_gold)])),
                "oos_recall": true_oos / len(oos_pred),
                "oos_precision": true_oos / (true_oos + predicted_oos_in_test) if true_oos + predicted_oos_in_test else 0.0,
                "latency": latency_ms(parses),
            }
        )
        report["pipelines"][pipeline] = entry
    return report


def _nlu_yaml(by_intent: Dict[str, List[str]]) -> str:
    lines = ['version: "3.1"', "nlu:"]
    for intent, texts in by_intent.items():
        lines += [f"- intent: {intent}", "  examples: |"]
        lines += [f"    - {text}" for text in texts]
    return "\n".join(lines) + "\n"


def _slug(name: str) -> str:
    return "ours" if name == OUR_CONFIG else "stock"


# --- report ---------------------------------------------------------------------------------

def side_by_side_table(pipelines: Dict[str, Any], rows: Sequence[Tuple[str, Any]]) -> List[str]:
    """A Markdown table: one row per (label, getter), one column per pipeline."""
    names = list(pipelines)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, getter in rows:
        lines.append(f"| {label} | " + " | ".join(getter(pipelines[name]) for name in names) + " |")
    return lines


def markdown_heldout(report: Dict[str, Any]) -> str:
    pipelines = report["pipelines"]
    entities = sorted({e for r in pipelines.values() for e in r["entities"]})
    no_entity = {"precision": 0, "recall": 0, "f1": 0}
    rows: List[Tuple[str, Any]] = [
        ("intent accuracy", lambda r: f"{r['intents']['accuracy']:.3f}"),
        ("intent macro-F1", lambda r: f"{r['intents']['macro_f1']:.3f}"),
    ]
    rows += [
        (
            f"entity `{entity}` P / R / F1",
            lambda r, e=entity: "{precision:.3f} / {recall:.3f} / {f1:.3f}".format(**r["entities"].get(e, no_entity)),
        )
        for entity in entities
    ]
    rows += [
        ("in-scope messages sent to fallback", lambda r: f"{r['false_fallback_rate']:.3f}"),
        ("out-of-scope → nlu_fallback / out_of_scope (recall)", lambda r: f"{r['oos_fallback_recall']:.3f}"),
        ("training time, s", lambda r: f"{r['train_seconds']:.0f}"),
        ("parse latency p50 / p95, ms", lambda r: f"{r['latency']['p50_ms']:.1f} / {r['latency']['p95_ms']:.1f}"),
    ]
    lines = [
        f"Held-out Russian set: {report['test_examples']} messages, 19 intents; "
        f"{report['oos_examples']} out-of-scope messages.",
        "",
        *side_by_side_table(pipelines, rows),
    ]
    for name, result in pipelines.items():
        confusions = ", ".join(
            f"{c['gold']} → {c['predicted']}: {c['count']}" for c in result["intents"]["confusions"][:8]
        )
        lines += ["", f"Top confusions, {name} (gold → predicted: count): {confusions or 'none'}"]
    return "\n".join(lines)


def markdown_clinc(report: Dict[str, Any]) -> str:
    def threshold(r: Dict[str, Any]) -> str:
        if "calibrated_threshold" in r:
            return f"{r['calibrated_threshold']:.2f} (calibrated on val)"
        return "0.30 + ambiguity 0.1 (stock)"

    rows: List[Tuple[str, Any]] = [
        ("in-scope accuracy", lambda r: f"{r['in_scope_accuracy']:.4f}"),
        ("out-of-scope recall", lambda r: f"{r['oos_recall']:.3f}"),
        ("out-of-scope precision", lambda r: f"{r['oos_precision']:.3f}"),
        ("fallback threshold", threshold),
        ("training time, s", lambda r: f"{r['train_seconds']:.0f}"),
        ("parse latency p50 / p95, ms", lambda r: f"{r['latency']['p50_ms']:.1f} / {r['latency']['p95_ms']:.1f}"),
    ]
    return "\n".join(
        [
            f"CLINC150 (data_full: train + oos_train = {report['train_examples']} examples; "
            "test: 4500 in-scope, 1000 out-of-scope).",
            "",
            *side_by_side_table(report["pipelines"], rows),
        ]
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=["heldout", "clinc", "all"])
    parser.add_argument("--pipelines", choices=["both", "ours", "stock"], default="both")
    parser.add_argument("--clinc", type=Path, default=ROOT.parent / "shared" / "benchmarks" / "clinc150" / "data_full.json")
    parser.add_argument("--output", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    pipelines = {"both": [OUR_CONFIG, STOCK_CONFIG], "ours": [OUR_CONFIG], "stock": [STOCK_CONFIG]}[args.pipelines]
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    configure_logging_and_warnings(logging.WARNING)
    configure_structlog(logging.WARNING)
    args.output.mkdir(parents=True, exist_ok=True)
    # Rasa's training cache would turn a re-run's training time into a cache lookup.
    os.environ["RASA_MAX_CACHE_SIZE"] = "0"
    os.chdir(ROOT)  # config.yml's SpacyNLP model path is relative to the project root
    with tempfile.TemporaryDirectory(prefix="nlu-eval-") as tmp:
        workdir = Path(tmp)
        if args.benchmark in ("heldout", "all"):
            report = heldout_benchmark(workdir, pipelines)
            (args.output / f"heldout-{args.pipelines}.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
            print(markdown_heldout(report), flush=True)
        if args.benchmark in ("clinc", "all"):
            report = clinc_benchmark(workdir, pipelines, args.clinc)
            (args.output / f"clinc150-{args.pipelines}.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
            print(markdown_clinc(report), flush=True)


if __name__ == "__main__":
    main()
