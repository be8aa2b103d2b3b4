#!/usr/bin/env bash
# Main job: set up, then execute every notebook headlessly with papermill under a profile
# (default: the embedded smollm2-135m on CPU). A failing notebook does not stop the batch; a
# summary table is printed and the exit status is non-zero if any failed.
# Executed copies: results/notebooks/default/ (tracked) or outputs/<profile>/; figures: figures/<profile>/;
# under the default profile the README's generated sections are rewritten from the executed copies.
# Usage: bash run_all.sh [profile] [notebook-glob]
set -uo pipefail
cd "$(dirname "$0")"
profile=${1:-default}
pattern=${2:-*}
setup_start=$SECONDS
bash scripts/setup.sh || exit 1
export DLP_SETUP_SECONDS=$((SECONDS - setup_start))
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-$([[ $profile == paper ]] && echo 0 || echo 1)}
.venv/bin/python scripts/run_notebooks.py "$profile" "$pattern"
status=$?
if [[ $profile == default ]]; then
  # the README's generated sections (verdicts, wall times, "where the paper holds") from the executed copies
  .venv/bin/python scripts/verdicts.py results/notebooks/default --readme README.md || status=1
fi
exit $status
