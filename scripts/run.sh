#!/usr/bin/env bash
# Sets up whatever is missing, trains the model if it is missing or stale, and runs the assistant
# stack (Rasa server with REST + socket.io on :5005, action server on :5055). Ctrl-C stops it all.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec .venv/bin/python -m engine.stack "$@"
