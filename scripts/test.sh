#!/usr/bin/env bash
# The test command of the README (and of CI): set up, then the whole pytest suite, which
# includes the integration test on smollm2-135m and every notebook under the smoke profile.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
