#!/usr/bin/env bash
# Sets up whatever is missing (including the optional torch/transformers extra, which some tests
# exercise) and runs all tests. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh --ml
exec .venv/bin/python -m pytest "$@"
