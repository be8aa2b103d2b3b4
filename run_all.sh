#!/usr/bin/env bash
# Main job: set up, then execute every notebook headlessly with papermill under a profile
# (default: the embedded smollm2-135m on CPU), writing executed copies to outputs/<profile>/
# and figures to figures/. Usage: bash run_all.sh [profile] [notebook-glob]
set -euo pipefail
cd "$(dirname "$0")"
profile=${1:-default}
pattern=${2:-*}
bash scripts/setup.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-$([[ $profile == paper ]] && echo 0 || echo 1)}
out=outputs/$profile
mkdir -p "$out"
start=$(date +%s)
for nb in notebooks/$pattern.ipynb; do
  name=$(basename "$nb")
  t0=$(date +%s)
  echo "== $name (profile $profile)"
  .venv/bin/papermill --log-level WARNING "$nb" "$out/$name" -p profile "$profile"
  echo "   $(( $(date +%s) - t0 )) s"
done
echo "all notebooks: $(( $(date +%s) - start )) s; executed copies in $out, figures in figures/"
