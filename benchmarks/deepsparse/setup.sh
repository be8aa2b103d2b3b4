#!/usr/bin/env bash
# One command: the DeepSparse engine's venv (.venv here) and the ONNX exporter's package dir
# (.export-deps here, used by export.py from the project's venv). Idempotent.
# Skips (exit 0, one line saying why) where the engine cannot be installed: DeepSparse 1.8.0 ships
# a binary wheel for CPython 3.11 on x86-64 Linux only.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON311:-python3.11}
if ! command -v "$PY" >/dev/null 2>&1 || [[ "$("$PY" -c 'import sys; print(sys.version_info[:2] == (3, 11))')" != True ]]; then
  echo "DeepSparse skipped: deepsparse 1.8.0 has a wheel for Python 3.11 only and '$PY' is not a Python 3.11 (set PYTHON311)"
  exit 0
fi
if [[ "$(uname -s -m)" != "Linux x86_64" ]]; then
  echo "DeepSparse skipped: its wheel is for x86-64 Linux, this is $(uname -s -m)"
  exit 0
fi
stamp=.venv/.setup-$(sha1sum requirements.txt | cut -c1-12)
if [[ ! -f "$stamp" ]]; then
  [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --only-binary=:all: -r requirements.txt
  touch "$stamp"
fi
PROJECT_PY=${PROJECT_PYTHON:-../../.venv/bin/python}
[[ -x "$PROJECT_PY" ]] || PROJECT_PY=python3
estamp=.export-deps/.setup-$(sha1sum export-requirements.txt | cut -c1-12)
if [[ ! -f "$estamp" ]]; then
  rm -rf .export-deps && "$PROJECT_PY" -m pip install -q --only-binary=:all: --no-deps --target .export-deps -r export-requirements.txt
  touch "$estamp"
fi
echo "DeepSparse ready: $(.venv/bin/python -c 'import deepsparse; print("deepsparse", deepsparse.__version__)' 2>/dev/null | tail -1)"
