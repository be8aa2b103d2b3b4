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
    (["--allocation", "nope"], "allocation = 'nope' is not allowed; allowed: "),
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


def _subparser(name: str):
    import argparse

    from dlp_lib import cli
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _choices(name: str, option: str):
    return tuple(next(a for a in _subparser(name)._actions if option in a.option_strings).choices)


def test_names_come_from_their_registries():
    """Every subcommand offers the allocator registry's names, the pruning methods and the dtype names
    from the one place that defines them (a new allocator appears everywhere at once). prune and
    compress list the allocators in --allocation's help and leave the check to the configuration
    (validation's wording, as api.py's)."""
    from dlp_lib.allocation import allocator_names
    from dlp_lib.pruning import METHODS
    from dlp_lib.validation import DTYPE_CHOICES
    for name in ("prune", "compress", "finetune"):
        action = next(a for a in _subparser(name)._actions if "--allocation" in a.option_strings)
        assert action.choices is None and f"one of {', '.join(allocator_names())} (" in action.help, name
    assert _choices("prune", "--method") == tuple(METHODS)
    for option, names in (("--allocation", allocator_names()), ("--method", METHODS)):
        action = next(a for a in _subparser("decode-bench")._actions if option in a.option_strings)
        assert action.choices is None and f"one of {', '.join(names)}" in action.help, option
    for name in ("prune", "compress", "finetune", "zero-shot"):
        assert _choices(name, "--dtype") == tuple(DTYPE_CHOICES), name


def test_decode_bench_default_output_is_under_the_current_directory(fresh_labs, no_model_load, tmp_path,
                                                                      monkeypatch):
    """Without --out the JSON goes to benchmarks/results/ where the command runs, never next to the library."""
    from pathlib import Path

    from dlp_lib import cli, validation
    checked = []
    monkeypatch.setattr(validation, "check_output_file", lambda path, what, inputs=(): checked.append((path, what)))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="loaded before"):
        cli.main(["decode-bench", "--model", "tiny-llama", "--quick", "--no-progress", "--format", "bsr"])
    assert checked == [(Path("benchmarks") / "results" / "decode_tiny-llama_bsr_quick.json", "--out")]


@pytest.mark.parametrize("option, field", [("--allocation", "allocation"), ("--method", "method")])
def test_decode_bench_refuses_a_bad_registry_name_in_one_line(option, field, fresh_labs, no_model_load, run_cli):
    """decode-bench checks its method and allocator with validation's functions, before the model
    loads: one `error:` line naming the bad value and the allowed ones, exit code 2."""
    from dlp_lib.allocation import allocator_names
    from dlp_lib.pruning import METHODS
    allowed = {"allocation": allocator_names(), "method": METHODS}[field]
    code, out, err = run_cli("decode-bench", "--model", "tiny-llama", "--quick", "--no-progress", option, "nope")
    assert code == 2 and out == ""
    assert err == f"error: {field} = 'nope' is not allowed; allowed: {', '.join(allowed)}\n"


@pytest.mark.parametrize("option, value", [("--allocation", "owl"), ("--method", "magnitude")])
def test_decode_bench_takes_a_good_registry_name(option, value, fresh_labs, no_model_load, tmp_path, monkeypatch):
    from dlp_lib import cli
    a = cli.build_parser().parse_args(["decode-bench", "--model", "tiny-llama", option, value])
    assert getattr(a, option[2:]) == value
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="loaded before"):   # past every check, at the model load
        cli.main(["decode-bench", "--model", "tiny-llama", "--quick", "--no-progress", option, value])


def test_compress_builds_its_configuration_without_rewriting_its_arguments(fresh_labs, monkeypatch):
    """compress goes through the same config builder as prune and leaves the parsed arguments as parsed."""
    from dlp_lib import cli

    class Loaded(Exception):
        pass

    configs = []

    def lab_for(cfg, **kwargs):
        configs.append(cfg)
        raise Loaded
    monkeypatch.setattr(cli, "lab_for", lab_for)
    a = cli.build_parser().parse_args(["compress", "--profile", "smoke", "--technique", "svd", "--reduction", "0.3",
                                       "--allocation", "owl", "--quiet"])
    parsed = dict(vars(a))
    with pytest.raises(Loaded):
        cli.cmd_compress(a)
    assert vars(a) == parsed
    assert configs == [cli.config_from_args(a, method="wanda", sparsity=0.3, seed=a.seed)]
    assert (configs[0].allocation, configs[0].sparsity, configs[0].nm, configs[0].group) == ("owl", 0.3, None, None)


def test_architecture_lists_every_subcommand():
    import re
    from pathlib import Path

    from dlp_lib import cli
    text = (Path(__file__).resolve().parents[1] / "ARCHITECTURE.md").read_text()
    table = text.split("## Subcommands", 1)[1].split("\n## ", 1)[0]
    assert sorted(re.findall(r"^\| `([a-z-]+)`", table, re.M)) == sorted(cli.subcommands())
