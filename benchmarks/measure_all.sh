#!/usr/bin/env bash
# Re-measure every speed number of notebook 12 on an IDLE machine, one command:
#   benchmarks/measure_all.sh            (from the repository root, the project's venv in .venv or $PYTHON)
# Writes benchmarks/results/{decode_smollm2-135m.json, decode_smollm2-135m_bitmask.json,
# deepsparse_smollm2-135m.json, metric_time_smollm2-135m.json}. 61 minutes on an idle 2-core Xeon
# (2026-12-07, both arms through the lean decoder): decode csr 6.5 min, decode bitmask 12.5 min, DeepSparse
# set-up under 1 min (first time, from PyPI) and four paths 39 min, Table 6 3 min. The bitmask grid's third arm
# (the unpruned model in the same format), added since, times a third model in every repeat: about half as
# long again (22 min on an AMD EPYC, where the CSR grid took 13).
# Refuses to start on a loaded machine (1-minute load average above LOAD_MAX, default 0.5): timings
# taken while other processes compete for the cores are not reportable. The DeepSparse step is
# skipped (with the reason) where its environment cannot be built (Python != 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
# absolute (setup.sh runs in its own folder), without resolving the venv's symlink to the base Python
[[ "$PY" == */* ]] && PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
LOAD_MAX=${LOAD_MAX:-0.5}
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" -v m="$LOAD_MAX" 'BEGIN { exit !(l > m) }'; then
  echo "refusing to measure: 1-minute load average $load > LOAD_MAX=$LOAD_MAX (other processes share the cores)"
  exit 2
fi
# OpenMP's wait policy left at libgomp's default (idle threads spin briefly, then sleep): PASSIVE (sleep at
# once) makes each of a token's ~210 small parallel products pay a thread wake-up, which throttled the
# 2-thread rows of both arms; ACTIVE (spin forever) would hold a core while DeepSparse's worker runs
unset OMP_WAIT_POLICY
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
step() { echo "== $(date -u +%H:%M:%S) $*"; }
step "Table 5, torch CSR path (full grid)";     "$PY" benchmarks/decode_speed.py --no-progress
step "Table 5, bitmask-bf16 path (full grid)";  "$PY" benchmarks/decode_speed.py --format bitmask --no-progress
step "DeepSparse environment";                  PROJECT_PYTHON="$PY" benchmarks/deepsparse/setup.sh
if [[ -x benchmarks/deepsparse/.venv/bin/python ]]; then
  step "four paths: torch dense, ours (csr, bitmask), DeepSparse dense/sparse"
  "$PY" benchmarks/deepsparse/bench.py
fi
step "Table 6, metric time";                    OMP_NUM_THREADS=1 "$PY" benchmarks/metric_time.py --blocks 0 3 6 9 12 15 18 21 24 27 \
  --nsamples 4 --seqlen 128 --no-progress   # the committed run's grid
step "done"
