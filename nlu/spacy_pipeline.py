"""Builds the spaCy pipeline that Rasa's ``SpacyNLP`` loads: a blank Russian tokenizer plus
pymorphy3 lemmas. No Russian spaCy pipeline is published on PyPI, so the set-up builds this one.

Usage: ``python -m nlu.spacy_pipeline [--output spacy_models/ru_pymorphy3]``
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_OUTPUT = Path("spacy_models/ru_pymorphy3")
PIPELINE_NAME = "ru_pymorphy3"
# Bump when the pipeline's make-up changes so the set-up rebuilds it.
PIPELINE_VERSION = "1.0.0"


def build_pipeline(output: Path = DEFAULT_OUTPUT) -> Path:
    import spacy

    from nlu import spacy_lemmatizer  # noqa: F401  (registers the factory for this process)

    nlp = spacy.blank("ru")
    nlp.add_pipe("pymorphy3_lemmatizer")
    nlp.meta["name"] = PIPELINE_NAME
    nlp.meta["version"] = PIPELINE_VERSION
    nlp.meta["description"] = "Blank Russian tokenizer with pymorphy3 lemmas (built by the set-up)"
    output.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output)
    return output


def is_current(output: Path = DEFAULT_OUTPUT) -> bool:
    meta_path = output / "meta.json"
    if not meta_path.exists():
        return False
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    return meta.get("name") == PIPELINE_NAME and meta.get("version") == PIPELINE_VERSION


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--if-missing", action="store_true", help="do nothing if it is current")
    args = parser.parse_args()
    if args.if_missing and is_current(args.output):
        return
    print(f"Building the spaCy pipeline at {build_pipeline(args.output)}")


if __name__ == "__main__":
    main()
