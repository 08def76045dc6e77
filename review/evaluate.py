"""How good a trained model is on the held-out sets (never trained on), for the retrain gate.

``heldout_accuracy(model_path, root)`` parses ``<root>/tests/data/nlu_heldout.yml`` and
``<root>/tests/data/out_of_scope_heldout.txt`` with the model (``nlu.evaluation.parse_texts``) and
returns::

    {"model", "intent_accuracy", "macro_f1", "n_intent",        # in-scope held-out messages
     "false_fallback_rate",                                    # of those, sent to the fallback
     "oos_rate", "n_oos",                                      # out-of-scope messages the model refused
     "errors_by_intent": {intent: count}, "n_by_intent": {intent: count},
     "confusions": [{gold, predicted, count}], "seconds"}

As in ``nlu.evaluation``, ``nlu_fallback`` and ``out_of_scope`` are one answer (the
``BACKGROUND_INTENTS``: the domain answers both the same way): a prediction of either is
``nlu_fallback`` here, and so is a held-out example labelled either. ``oos_rate`` is None when
there is no out-of-scope set, ``intent_accuracy`` None when there is no held-out set.

Loading a full model costs memory (TensorFlow, spaCy, the sentence encoder): the retrainer runs
this in a child process, ``python -m review evaluate <model> --output <file>``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from engine.settings import PROJECT_ROOT
from nlu.evaluation import BACKGROUND_INTENTS, FALLBACK_INTENT, intent_metrics, load_examples, parse_texts, read_lines
from review.training import HELDOUT_NLU, HELDOUT_OUT_OF_SCOPE


def _canonical(intent: Optional[str]) -> str:
    return FALLBACK_INTENT if intent in BACKGROUND_INTENTS or not intent else str(intent)


def heldout_accuracy(model_path: Path, root: Path = PROJECT_ROOT) -> Dict[str, Any]:
    """The model's held-out intent accuracy and out-of-scope detection rate (see the module doc)."""
    root = Path(root).resolve()
    model_path = Path(model_path).resolve()
    if not model_path.is_file():
        raise FileNotFoundError(f"no model at {model_path}")
    heldout_path, oos_path = root / HELDOUT_NLU, root / HELDOUT_OUT_OF_SCOPE
    test = load_examples(heldout_path) if heldout_path.exists() else []
    oos = read_lines(oos_path) if oos_path.exists() else []
    started = time.perf_counter()
    # a model refers to project files by relative paths (config.yml's spaCy pipeline), as `rasa run` does
    previous = os.getcwd()
    os.chdir(root)
    try:
        parses = parse_texts(str(model_path), [example.text for example in test] + oos) if test or oos else []
    finally:
        os.chdir(previous)
    test_parses, oos_parses = parses[: len(test)], parses[len(test):]
    gold = [_canonical(example.intent) for example in test]
    predicted = [_canonical(parse.intent) for parse in test_parses]
    metrics = intent_metrics(gold, predicted) if test else {"accuracy": None, "macro_f1": None, "confusions": []}
    n_by_intent: Dict[str, int] = {}
    errors_by_intent: Dict[str, int] = {}
    for wanted, got in zip(gold, predicted):
        n_by_intent[wanted] = n_by_intent.get(wanted, 0) + 1
        if wanted != got:
            errors_by_intent[wanted] = errors_by_intent.get(wanted, 0) + 1
    in_scope = [p for g, p in zip(gold, predicted) if g != FALLBACK_INTENT]
    return {
        "model": str(model_path),
        "intent_accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "n_intent": len(test),
        "false_fallback_rate": (sum(p == FALLBACK_INTENT for p in in_scope) / len(in_scope)) if in_scope else None,
        "oos_rate": (sum(_canonical(p.intent) == FALLBACK_INTENT for p in oos_parses) / len(oos)) if oos else None,
        "n_oos": len(oos),
        "errors_by_intent": dict(sorted(errors_by_intent.items(), key=lambda item: (-item[1], item[0]))),
        "n_by_intent": dict(sorted(n_by_intent.items())),
        "confusions": metrics["confusions"],
        "seconds": round(time.perf_counter() - started, 2),
    }


def table(result: Dict[str, Any]) -> str:
    """A short plain-text report of one ``heldout_accuracy`` result."""
    def pct(value: Optional[float]) -> str:
        return "—" if value is None else f"{value * 100:.1f} %"

    lines = [
        f"model                 {result['model']}",
        f"intent accuracy       {pct(result['intent_accuracy'])}  (n={result['n_intent']})",
        f"macro F1              {pct(result['macro_f1'])}",
        f"in-scope → fallback   {pct(result['false_fallback_rate'])}",
        f"out-of-scope refused  {pct(result['oos_rate'])}  (n={result['n_oos']})",
    ]
    if result["errors_by_intent"]:
        lines.append("errors by intent:")
        width = max(len(name) for name in result["errors_by_intent"])
        for intent, count in result["errors_by_intent"].items():
            lines.append(f"  {intent:<{width}}  {count} of {result['n_by_intent'].get(intent, 0)}")
    return "\n".join(lines)


__all__: List[str] = ["heldout_accuracy", "table"]
