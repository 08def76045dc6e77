#!/usr/bin/env bash
# Idempotent set-up of everything the assistant needs on this machine:
#   - a Python 3.10 virtualenv at .venv (Rasa 3.6 does not run on newer Pythons),
#   - the pinned dependencies from requirements.lock (or requirements-ml.lock with --ml),
#   - this project installed in editable mode (registers the spaCy lemmatizer factory),
#   - the spaCy Russian pipeline that config.yml's SpacyNLP loads.
# Re-running it does only what is missing or stale.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WITH_ML=0
for arg in "$@"; do
  case "$arg" in
    --ml) WITH_ML=1 ;;
    *) echo "usage: $0 [--ml]" >&2; exit 2 ;;
  esac
done

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

find_python310() {
  local candidate
  for candidate in "${PYTHON310:-}" python3.10 \
      "$(command -v pyenv >/dev/null 2>&1 && pyenv root 2>/dev/null)"/versions/3.10*/bin/python3.10 \
      /usr/bin/python3.10 /usr/local/bin/python3.10; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then UV=(uv); return; fi
  if python3 -m uv --version >/dev/null 2>&1; then UV=(python3 -m uv); return; fi
  log "installing uv (fast pip replacement) from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check uv
  UV=(python3 -m uv)
}

PY310="$(find_python310)" || {
  echo "Python 3.10 is required (Rasa 3.6). Install it (e.g. 'pyenv install 3.10') or set PYTHON310=/path/to/python3.10." >&2
  exit 1
}
ensure_uv

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
  log "creating .venv with $PY310"
  rm -rf .venv
  "${UV[@]}" venv --quiet --python "$PY310" .venv
fi

LOCKS=(requirements.lock)
[ "$WITH_ML" = 1 ] && LOCKS+=(requirements-ml.lock)
stamp_file=.venv/.installed-locks
for lock in "${LOCKS[@]}"; do
  digest="$lock $(sha256sum "$lock" pyproject.toml | sha256sum | cut -c1-16)"
  if ! grep -qxF "$digest" "$stamp_file" 2>/dev/null; then
    log "installing pinned dependencies from $lock"
    "${UV[@]}" pip install --quiet --python .venv/bin/python -r "$lock"
    "${UV[@]}" pip install --quiet --python .venv/bin/python --no-deps -e .
    grep -v "^$lock " "$stamp_file" 2>/dev/null > "$stamp_file.tmp" || true
    echo "$digest" >> "$stamp_file.tmp"
    mv "$stamp_file.tmp" "$stamp_file"
  fi
done

# TensorFlow's C++ logging is configured from the environment before it is imported; a .pth file
# sets the default for every interpreter of this venv, so plain `rasa train` stays quiet too.
site_packages="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp scripts/quiet_runtime.py "$site_packages/_support_assistant_quiet.py"
echo "import _support_assistant_quiet" > "$site_packages/zz_support_assistant_quiet.pth"

.venv/bin/python -m nlu.spacy_pipeline --if-missing
log "ready: $(.venv/bin/python --version), rasa $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("rasa"))')"
