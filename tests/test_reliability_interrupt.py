"""Ctrl-C: the command line ends with one line ("interrupted", exit 130) instead of a traceback, and
the cache it leaves is consistent: a rerun gives the numbers of a clean run."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRUNE = ["prune", "--profile", "smoke", "--nsamples", "64"]


def _env(cache: Path) -> dict:
    return {**os.environ, "DLP_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}


def _run(cache: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "dlp_lib", *PRUNE, "--quiet", "--json", str(out)],
                          env=_env(cache), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_ctrl_c_mid_run_ends_in_one_line_and_the_rerun_is_clean(tmp_cache, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "dlp_lib", *PRUNE, "--json", str(tmp_path / "never.json")],
                            env=_env(tmp_cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = bytearray()

    def read_stderr():
        for chunk in iter(lambda: os.read(proc.stderr.fileno(), 4096), b""):
            seen.extend(chunk)
    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    deadline = time.time() + 300
    while b"pruning (pass 2)" not in seen and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before pass 2 could be interrupted (test timing); rerun"
    os.kill(proc.pid, signal.SIGINT)         # mid-run: pass 1 is cached, pass 2 is running
    assert proc.wait(timeout=120) == 130
    reader.join(timeout=10)
    last = seen.decode(errors="replace").replace("\r", "\n").strip().splitlines()[-1]
    assert last == "interrupted" and b"Traceback" not in seen and b"KeyboardInterrupt" not in seen, seen[-2000:]
    assert not (tmp_path / "never.json").exists()
    from dlp_lib import cli
    assert cli.main(["cache", "verify"]) == 0      # every entry left behind reads back whole
    rerun = _run(tmp_cache, tmp_path / "rerun.json")
    clean_cache = tmp_path / "clean-cache"
    clean_cache.mkdir()
    for sub in ("corpora", "downloads", "models", "tokens"):   # the same corpora and token streams
        if (tmp_cache / sub).exists():
            os.symlink((tmp_cache / sub).resolve(), clean_cache / sub)
    clean = _run(clean_cache, tmp_path / "clean.json")
    for key in ("ratios", "perplexity", "achieved_sparsity"):
        assert rerun[key] == clean[key], key
