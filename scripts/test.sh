#!/usr/bin/env bash
# The test command of the README (and of CI): set up, then the whole pytest suite, which
# includes the integration test on smollm2-135m and every notebook under the smoke profile.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser test (tests/test_explorer_browser.py) drives JupyterLab with Debian's headless Chromium:
# installed here when missing and when this runs as root (in CI a missing browser fails that test).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -q chromium chromium-driver \
      || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }; } >/dev/null 2>&1 \
      || echo "warning: could not install chromium and chromium-driver" >&2
  fi
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
