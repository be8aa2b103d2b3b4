import json
import subprocess
import sys

import pytest


def _cli(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "dlp_lib", *args], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.mark.parametrize("allocation", ["uniform", "owl", "dlp"])
def test_prune_contract(tmp_path, allocation):
    out = tmp_path / "r.json"
    _cli("prune", "--profile", "smoke", "--method", "wanda", "--allocation", allocation, "--sparsity", "0.6",
         "--json", str(out), "--quiet")
    r = json.loads(out.read_text())
    for key in ("ratios", "rid", "perplexity", "achieved_sparsity", "config"):
        assert key in r
    assert len(r["ratios"]) == 4 and abs(sum(r["ratios"]) / 4 - 0.6) < 1e-9
    assert set(r["perplexity"]) == {"dense", "pruned"} and "brown" in r["perplexity"]["pruned"]
    assert r["config"]["allocation"] == allocation
    assert abs(r["achieved_sparsity"]["mean_over_blocks"] - 0.6) < 0.02


def test_save_and_reload(tmp_path):
    from dlp_lib.evaluation import achieved_sparsity
    from dlp_lib.models import load_model
    from dlp_lib.plan import SparsityPlan
    _cli("prune", "--profile", "smoke", "--method", "magnitude", "--allocation", "dlp", "--sparsity", "0.5",
         "--eval", "brown", "sotu", "--save", str(tmp_path / "ckpt"), "--quiet")
    model, _ = load_model(str(tmp_path / "ckpt"))
    plan = SparsityPlan.load(tmp_path / "ckpt" / "plan.json")
    got = achieved_sparsity(model)
    assert abs(got["mean_over_blocks"] - 0.5) < 0.02
    assert plan.allocation == "dlp" and len(plan.ratios) == 4


@pytest.mark.parametrize("args,msg", [
    (["--sparsity", "1.2"], "sparsity must be in [0, 1), got 1.2"),
    (["--allocation", "nope"], "invalid choice: 'nope'"),
    (["--calib", "wikitext2"], "Offline sources"),
    (["--eval", "/does/not/exist.txt"], "does not exist"),
    (["--alpha", "0.7"], "alpha must be in [0, 0.5)"),
])
def test_bad_inputs(args, msg):
    r = _cli("prune", "--profile", "smoke", "--quiet", *args, check=False)
    assert r.returncode != 0
    assert msg in r.stderr


def test_text_file_sources(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("The quick brown fox jumps over the lazy dog. " * 300)
    out = tmp_path / "r.json"
    _cli("prune", "--profile", "smoke", "--calib", str(p), "--eval", str(p), "brown", "--json", str(out), "--quiet")
    r = json.loads(out.read_text())
    assert set(r["perplexity"]["pruned"]) == {"notes.txt", "brown"}


@pytest.mark.parametrize("allocation,extra", [("dlp", {"statistic": "mean"}), ("owl", {"owl_m": 7.0, "lod_m": 7.0})])
def test_cli_recomputes_the_notebook_numbers(tmp_path, allocation, extra):
    """What a notebook shows (report.run_configs on a profile's Lab, possibly from the cache) equals a
    fresh CLI run of the same configuration (--no-cache)."""
    from dlp_studies.report import run_configs, setup
    base, lab, _ = setup("smoke", method="wanda", allocation=allocation, sparsity=0.6, **extra)
    notebook = run_configs(lab, {"k": base})["k"]
    out = tmp_path / "r.json"
    args = ["prune", "--profile", "smoke", "--method", "wanda", "--allocation", allocation, "--sparsity", "0.6",
            "--no-cache", "--json", str(out), "--quiet"]
    if "statistic" in extra:
        args += ["--statistic", extra["statistic"]]
    if "owl_m" in extra:
        args += ["--owl-m", str(extra["owl_m"])]
    _cli(*args)
    cli = json.loads(out.read_text())
    assert cli["ratios"] == pytest.approx(notebook["ratios"], abs=1e-12)
    for text, ppl in notebook["perplexity"]["pruned"].items():
        assert cli["perplexity"]["pruned"][text] == pytest.approx(ppl, rel=1e-5)
    assert cli["achieved_sparsity"]["overall"] == pytest.approx(notebook["achieved_sparsity"]["overall"], abs=1e-9)
