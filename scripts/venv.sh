#!/usr/bin/env bash
# Create or update <repo>/.venv with the pinned Python test dependencies (tests/requirements.txt).
# Built from the system Python (/usr/bin/python3), whose stdlib sqlite3 can load extensions.
# Fast no-op when the venv's stamp file is newer than requirements.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${SUBCOG_PYTHON:-/usr/bin/python3}"
VENV="$ROOT/.venv"
REQ="$ROOT/tests/requirements.txt"
STAMP="$VENV/.requirements.stamp"

# Up to date: stamp exists, is newer than requirements.txt, and the interpreter still runs.
if [[ -f "$STAMP" && "$STAMP" -nt "$REQ" ]] && "$VENV/bin/python" -c '' 2>/dev/null; then
  echo "venv: $VENV is up to date"
  exit 0
fi

if ! "$VENV/bin/python" -c '' 2>/dev/null; then
  echo "venv: creating $VENV with $PY"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" || { echo "venv: '$PY -m venv' failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }
  echo '*' > "$VENV/.gitignore"   # keep the venv out of git (Python >= 3.13 does this itself)
fi

# The venv must be able to load SQLite extensions, or the tests cannot load subcog.
"$VENV/bin/python" -c 'import sqlite3; sqlite3.connect(":memory:").enable_load_extension(True)' \
  || { echo "venv: $PY's sqlite3 cannot load extensions; use a Python built with them" >&2; exit 1; }

echo "venv: installing $REQ"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
touch "$STAMP"
echo "venv: ready ($VENV/bin/python)"
