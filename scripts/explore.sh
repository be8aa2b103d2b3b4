#!/usr/bin/env bash
# The RID explorer (notebook 14) in JupyterLab, on the real model: sets up if needed, copies the
# notebook into explore/ (git-ignored) with profile = "default" and opens JupyterLab on the copy.
# Autosaves and figures stay in explore/: interactive use never writes a tracked file.
# Usage: bash scripts/explore.sh [profile] [jupyter lab options...]   e.g. bash scripts/explore.sh smoke --port 8899
# An existing copy is kept (delete explore/ to start from the tracked notebook again).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
profile=default
if [[ $# -gt 0 && $1 != -* ]]; then profile=$1; shift; fi
bash scripts/setup.sh
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" DLP_FIGURES_DIR="$root/explore/figures"
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
notebook=$(.venv/bin/python -c 'import sys; from dlp_lib.explorer import explorer_notebook; print(explorer_notebook(*sys.argv[1:]).name)' explore "$profile")
cd explore
echo "opening explore/$notebook in JupyterLab (run all cells; the dense pass runs by itself)"
as_root=(); [[ $(id -u) -eq 0 ]] && as_root=(--allow-root)   # containers often run as root
exec "$root/.venv/bin/jupyter" lab "${as_root[@]}" "$notebook" "$@"
