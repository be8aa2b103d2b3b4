"""Hostile but fair use: bad input fails early with a clear message, the cache never returns a
stale or partial value, and work is not lost to a late error. All on tiny-llama."""
import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dlp_lib import cli, experiment

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_labs(monkeypatch):
    monkeypatch.setattr(experiment, "_LABS", {})


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the model is loaded: the error had to come before."""
    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before the bad input was reported")
    monkeypatch.setattr(experiment, "load_model", forbidden)


def _prune(capsys, *args):
    code = cli.main(["prune", "--profile", "smoke", "--quiet", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------ bad input, before any work
@pytest.mark.parametrize("args,message", [
    (["--seqlen", "0"], "seqlen = 0 is not allowed; expected an integer >= 2"),
    (["--seqlen", "-5"], "seqlen = -5"),
    (["--nsamples", "0"], "nsamples = 0 is not allowed; expected an integer >= 1"),
    (["--nsamples", "-3"], "nsamples = -3"),
    (["--seed", "-1"], "seed = -1"),
    (["--sparsity", "1.2"], "sparsity must be in [0, 1), got 1.2"),
    (["--sparsity", "-0.1"], "sparsity must be in [0, 1), got -0.1"),
    (["--sparsity", "0.7", "--nm", "2:4", "--allocation", "uniform"], "N:M 2:4 keeps 2 of 4 weights, i.e. sparsity 0.5"),
    (["--nm", "2:4", "--allocation", "dlp", "--quantize-bits", "4"], "--quantize-bits with a mixed N:M model"),
    (["--quantize-bits", "4", "--zero-shot", "offline"], "not available with mixed N:M or --quantize-bits"),
    (["--group-size", "64"], "--group-size and --quantize-dense need --quantize-bits"),
    (["--nm", "4:4", "--allocation", "uniform"], "0 < N (kept) < M"),
    (["--nm", "two:four", "--allocation", "uniform"], "N:M pattern must look like '2:4'"),
    (["--alpha", "0.7"], "alpha = 0.7 is not allowed"),
    (["--lamda", "0.6", "--allocation", "owl"], "lamda = 0.6"),
    (["--owl-m", "7.5", "--allocation", "owl"], "owl_m = 7.5"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "cuda:99"], "device = "),
    (["--device", "tpu"], "device = 'tpu'"),
    (["--calib", "/no/such/file.txt"], "does not exist"),
    (["--eval", "/no/such/file.txt"], "does not exist"),
    (["--calib", "wikitext2"], "Offline sources"),
    (["--zero-shot", "nosuchtask"], "Unknown zero-shot task"),
    (["--alpha", "auto", "--allocation", "uniform"], "--alpha auto chooses DLP's alpha"),
    (["--alpha-grid", "0.1", "0.2"], "--alpha-grid is only used with --alpha auto"),
    (["--granularity", "sublayer", "--allocation", "uniform"], "granularity = 'sublayer'"),
])
def test_bad_input_fails_before_loading(capsys, no_model_load, args, message):
    code, out, err = _prune(capsys, *args)
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err  # one line


@pytest.mark.parametrize("args,message", [
    (["--neval", "0"], "neval must be a positive integer or 'all'"),
    (["--neval", "-2"], "neval must be a positive integer or 'all'"),
    (["--sparsity", "abc"], "invalid float value"),
    (["--allocation", "nope"], "invalid choice: 'nope'"),
    (["--method", "obs"], "invalid choice: 'obs'"),
])
def test_bad_option_values_are_refused_by_the_parser(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(["prune", "--profile", "smoke", *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_neval_all_means_every_window():
    a = cli.build_parser().parse_args(["prune", "--profile", "smoke", "--neval", "all"])
    assert cli._config_from_args(a).neval is None


def test_nm_alone_sets_its_sparsity():
    a = cli.build_parser().parse_args(["prune", "--profile", "smoke", "--nm", "2:4", "--allocation", "uniform"])
    assert cli._config_from_args(a).sparsity == 0.5


def test_unwritable_outputs_fail_before_loading(capsys, no_model_load, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = [(["--json", str(blocker / "out.json")], "--json"),
             (["--json", str(tmp_path)], "is a directory"),
             (["--save", str(blocker)], "exists and is not a directory"),
             (["--save", str(blocker / "sub")], "cannot be written")]
    for args, message in cases:
        code, _, err = _prune(capsys, *args)
        assert code == 2 and message in err, (args, err)


def test_unwritable_cache_fails_before_loading(capsys, no_model_load, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("DLP_CACHE_DIR", str(blocker / "cache"))
    code, _, err = _prune(capsys)
    assert code == 2 and "cannot write to" in err and "DLP_CACHE_DIR" in err, err


@pytest.mark.parametrize("content,message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 50, "not valid UTF-8"),
    ("caf\u00e9 ".encode("latin-1") * 100, "not valid UTF-8"),
    (b"text\x00with\x00nuls " * 100, "NUL bytes"),
    (b"   \n\n  ", "is empty"),
])
def test_bad_text_files_are_refused(capsys, tmp_path, content, message):
    path = tmp_path / "calib.txt"
    path.write_bytes(content)
    code, _, err = _prune(capsys, "--calib", str(path))
    assert code == 2 and message in err, err


def test_a_directory_is_not_a_text_file(capsys, tmp_path):
    (tmp_path / "corpus").mkdir()
    code, _, err = _prune(capsys, "--calib", str(tmp_path / "corpus"))
    assert code == 2 and "is a directory" in err, err


def test_seqlen_beyond_the_models_positions(capsys, tmp_cache):
    code, _, err = _prune(capsys, "--seqlen", "5000")
    assert code == 2 and "exceeds tiny-llama's maximum of 4096 positions" in err, err


def test_dlp_on_an_already_sparse_model_explains_itself(tmp_cache):
    from dlp_lib.allocation import build_plan
    from dlp_lib.block_stats import compute_dense_statistics
    from dlp_lib.models import decoder_blocks, linear_sublayers, tiny_llama
    model, _ = tiny_llama()
    with torch.no_grad():
        for block in decoder_blocks(model):
            for layer in linear_sublayers(block).values():
                w = layer.weight
                w.masked_fill_(w.abs() <= w.abs().flatten().kthvalue(int(0.6 * w.numel())).values, 0)
    ids = torch.randint(0, 250, (2, 32), generator=torch.Generator().manual_seed(0))
    stats = compute_dense_statistics(model, ids, progress=False)
    with pytest.raises(ValueError, match="already at least 50% sparse"):
        build_plan("dlp", 0.7, stats=stats)
    build_plan("dlp", 0.7, stats=stats, statistic="mean")  # the suggested way out works


def test_clamp_warning_is_shown_on_the_command_line(capsys, tmp_cache):
    code, out, err = _prune(capsys, "--alpha", "0.45", "--sparsity", "0.8")
    assert code == 0 and "warning:" in err and "clamped and re-balanced" in err, err
    code, out, err = _prune(capsys, "--alpha", "0.45", "--sparsity", "0.8")  # cached: still shown
    assert code == 0 and "clamped and re-balanced" in err


def test_nm_reports_the_pattern_not_a_contradicting_sparsity(capsys, tmp_cache):
    code, out, _ = _prune(capsys, "--nm", "2:4", "--allocation", "uniform")
    assert code == 0 and "at N:M 2:4" in out and "achieved 0.5000" in out, out


# ------------------------------------------------------------------ the cache
def _entry_paths(root: Path, kind: str) -> list[Path]:
    return sorted((root / kind).glob("*.*"))


def test_corrupt_entries_are_reported_deleted_and_recomputed(tmp_cache):
    from dlp_lib.experiment import ExperimentConfig, Lab
    cfg = ExperimentConfig.from_profile("smoke", sparsity=0.5)
    first = Lab("tiny-llama", progress=False).run(cfg)
    for kind, garbage in (("results", b'{"config": {"a": 1}, "val'), ("dense_statistics", b"\x00garbage"),
                          ("perplexity", b"not json at all"), ("pruned_weights", b"PK\x03\x04 torn zip"),
                          ("tokens", b"PK\x03\x04 torn zip")):
        paths = _entry_paths(tmp_cache, kind) if kind != "tokens" else []
        for p in paths:
            p.write_bytes(garbage)
    experiment._LABS.clear()
    with pytest.warns(UserWarning, match=r"unreadable cache entry .*results.*deleted, recomputing"):
        again = Lab("tiny-llama", progress=False).run(cfg)
    assert again["perplexity"] == first["perplexity"] and again["ratios"] == first["ratios"]
    for kind in ("results", "dense_statistics", "perplexity", "pruned_weights"):  # healed: readable again
        from dlp_lib.cache import read_entry
        for p in _entry_paths(tmp_cache, kind):
            read_entry(p)


def test_no_cache_recomputes_every_stage(tmp_cache, monkeypatch):
    from dlp_lib import block_stats, data
    from dlp_lib.experiment import ExperimentConfig, Lab
    calls = {"stats": 0, "tokens": 0}
    real_stats, real_tokens = block_stats.compute_dense_statistics, data.token_stream

    def count_stats(*a, **k):
        calls["stats"] += 1
        return real_stats(*a, **k)

    def count_tokens(*a, **k):
        if k.get("use_cache") is False:
            calls["tokens"] += 1
        return real_tokens(*a, **k)

    monkeypatch.setattr(block_stats, "compute_dense_statistics", count_stats)
    monkeypatch.setattr(data, "token_stream", count_tokens)
    cfg = ExperimentConfig.from_profile("smoke", sparsity=0.5)
    Lab("tiny-llama", progress=False).run(cfg)
    assert calls["stats"] == 1
    Lab("tiny-llama", progress=False).run(cfg)  # cached: no second pass 1
    assert calls["stats"] == 1
    Lab("tiny-llama", progress=False, use_cache=False).run(cfg)  # --no-cache: everything again
    assert calls["stats"] == 2 and calls["tokens"] >= 2


def test_a_checkpoint_rewritten_in_place_is_a_new_model(tmp_cache, tmp_path, capsys):
    from dlp_lib.models import tiny_llama
    model, tok = tiny_llama()
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    out1 = tmp_path / "r1.json"
    assert cli.main(["prune", "--profile", "smoke", "--quiet", "--model", str(ckpt), "--json", str(out1)]) == 0
    with torch.no_grad():  # change one tensor only (the last one, which a sampled hash could skip)
        name, param = list(model.named_parameters())[-2]
        param.mul_(1.5)
    model.save_pretrained(ckpt)
    experiment._LABS.clear()
    out2 = tmp_path / "r2.json"
    assert cli.main(["prune", "--profile", "smoke", "--quiet", "--model", str(ckpt), "--json", str(out2)]) == 0
    r1, r2 = json.loads(out1.read_text()), json.loads(out2.read_text())
    assert r1["model_fingerprint"] != r2["model_fingerprint"]
    assert r1["perplexity"]["dense"] != r2["perplexity"]["dense"]


def test_fingerprint_sees_every_tensor_and_ignores_threads():
    from dlp_lib.fingerprint import model_fingerprint
    from dlp_lib.models import tiny_llama
    model, _ = tiny_llama()
    base = model_fingerprint(model)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert model_fingerprint(model) == base
    finally:
        torch.set_num_threads(n)
    with torch.no_grad():
        for name, p in model.named_parameters():  # every single tensor matters, one ulp is enough
            old = p.view(-1)[0].clone()
            p.view(-1)[0] = torch.nextafter(old, old + 1)
            assert model_fingerprint(model) != base, name
            p.view(-1)[0] = old
    assert model_fingerprint(model) == base


_WRITER = """
import sys, torch
from dlp_lib.cache import cached
cached("killtest", {"n": 1}, lambda: torch.zeros(60_000_000), fmt="torch")
"""


def test_kill_during_a_cache_write_leaves_no_partial_entry(tmp_cache):
    from dlp_lib.cache import cached, clean_orphans
    folder = tmp_cache / "killtest"
    env = {**os.environ, "DLP_CACHE_DIR": str(tmp_cache), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not list(folder.glob("*.tmp")):
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(folder.glob("*.pt")), "a partial entry was left under the final name"
    orphans = list(folder.glob("*.tmp"))
    assert orphans, "the writer was killed before it started writing (test timing); rerun"
    assert clean_orphans(folder, older_than=0) == orphans
    value = cached("killtest", {"n": 1}, lambda: torch.ones(3), fmt="torch")
    assert torch.equal(value, torch.ones(3))  # recomputed, not read from a torn file


def test_cache_command(tmp_cache, capsys):
    from dlp_lib.cache import cached
    cached("results", {"a": 1}, lambda: {"x": 1})
    bad = tmp_cache / "results" / "deadbeef.json"
    bad.write_text("{")
    old_tmp = tmp_cache / "results" / "x.json.123.tmp"
    old_tmp.write_text("partial")
    os.utime(old_tmp, (time.time() - 7200, time.time() - 7200))
    assert cli.main(["cache", "ls"]) == 0
    assert "results" in capsys.readouterr().out
    assert cli.main(["cache", "verify"]) == 1  # found (and deleted) one unreadable entry
    out = capsys.readouterr().out
    assert "deadbeef.json" in out and not bad.exists() and not old_tmp.exists()
    assert cli.main(["cache", "verify"]) == 0
    assert cli.main(["cache", "clear", "--kind", "results"]) == 0
    assert "deleted 1 entries" in capsys.readouterr().out


def test_every_module_belongs_to_a_code_stage():
    from dlp_lib.cache import CODE_STAGES, NOT_COMPUTING, stage_modules
    package = ROOT / "dlp_lib"
    staged = {p for stage in CODE_STAGES for p in stage_modules(stage)}
    unstaged = [p.relative_to(package) for p in package.rglob("*.py")
                if p not in staged and str(p.relative_to(package)) not in NOT_COMPUTING
                and not (p.name == "__init__.py" and p.parent != package)]
    assert not unstaged, f"modules in no CODE_STAGES entry (their edits would not invalidate the cache): {unstaged}"


def test_code_version_changes_with_the_code_not_the_comments(tmp_path, monkeypatch):
    from dlp_lib import cache
    src = "def f(x):\n    'doc'\n    return x + 1  # comment\n"
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text(src)
    b.write_text(src.replace("'doc'", "'other doc'").replace("# comment", "# another"))
    c.write_text(src.replace("x + 1", "x + 2"))
    assert cache._code_ast(a) == cache._code_ast(b) != cache._code_ast(c)


# ------------------------------------------------------------------ the batch runner
def test_batch_runner_survives_a_failing_notebook(tmp_path):
    import nbformat
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name, code in (("01_good", "print('a verdict that holds')"), ("02_bad", "raise RuntimeError('broken on purpose')"),
                       ("03_good", "print('also fine')")):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        params = nbformat.v4.new_code_cell("profile = 'smoke'")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell("import sys\nprint('x', file=sys.stderr)"),
                    nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, nbs / f"{name}.ipynb")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), "smoke", "*",
                           "--notebooks", str(nbs), "--out", str(tmp_path / "out"), "--figures", str(tmp_path / "f")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "DLP_SETUP_SECONDS": "90"})
    assert proc.returncode == 1
    total = re.search(r"whole batch: set-up 1\.5 min \+ notebooks ([0-9.]+) min = ([0-9.]+) min wall", proc.stdout)
    assert total and float(total.group(2)) == pytest.approx(1.5 + float(total.group(1)), abs=0.11)
    assert "02_bad" in proc.stderr and "RuntimeError" in proc.stderr and "broken on purpose" in proc.stderr
    assert "(2 ok, 1 failed)" in proc.stdout
    good = nbformat.read(tmp_path / "out" / "03_good.ipynb", as_version=4)
    assert good.metadata["dlp_run"]["status"] == "ok" and good.metadata["dlp_run"]["profile"] == "smoke"
    assert not list((tmp_path / "out").glob(".*partial*"))   # partial copies are replaced when a run ends


def test_a_stopped_batch_leaves_no_half_executed_notebook_among_the_results(tmp_path):
    """papermill rewrites its output after every cell; killing the batch mid-notebook must leave the
    previous executed copy (or none), never the half-executed one."""
    import nbformat
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    nbs.mkdir()
    out.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("profile = 'smoke'")
    params.metadata["tags"] = ["parameters"]
    marker = tmp_path / "started"
    nb.cells = [params, nbformat.v4.new_code_cell(f"open({str(marker)!r}, 'w').write('x')\nprint('first cell')"),
                nbformat.v4.new_code_cell("import time\ntime.sleep(120)")]
    nbformat.write(nb, nbs / "01_slow.ipynb")
    (out / "01_slow.ipynb").write_text("previous executed copy")
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), "smoke", "*",
                             "--notebooks", str(nbs), "--out", str(out), "--figures", str(tmp_path / "f")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.5)
        assert marker.exists(), "the notebook never started"
        time.sleep(2)   # papermill has written the partial copy with the first cell's output
    finally:
        proc.kill()
        proc.wait()
    assert (out / "01_slow.ipynb").read_text() == "previous executed copy"


def test_stored_outputs_drop_progress_bars():
    import nbformat
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from run_notebooks import strip_progress
    finally:
        sys.path.pop(0)
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="blocks:  50%|#####     | 2/4\rblocks: 100%|##########| 4/4\n"),
                    nbformat.v4.new_output("stream", name="stderr", text="warning: kept\n"),
                    # unknown-total bars (datasets) go too
                    nbformat.v4.new_output("stream", name="stderr", text="Generating test split: 0 examples [00:00, ? examples/s]\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="verdict\n"),
                    # tqdm.auto in a kernel: a widget whose text fallback is the bar
                    nbformat.v4.new_output("display_data", data={
                        "application/vnd.jupyter.widget-view+json": {"model_id": "ab", "version_major": 2},
                        "text/plain": "perplexity brown:   0%|          | 0/32 [00:00<?, ?it/s]"}),
                    nbformat.v4.new_output("display_data", data={"text/plain": "<Figure size 9x3>"})]
    nb = nbformat.v4.new_notebook()
    nb.cells = [cell]
    assert strip_progress(nb) == 3
    outs = nb.cells[0].outputs
    assert [o.get("text") for o in outs[:2]] == ["warning: kept\n", "verdict\n"]
    assert len(outs) == 3 and outs[2]["data"]["text/plain"] == "<Figure size 9x3>"


def test_batch_counts_every_result_kind_and_no_intermediate(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from run_notebooks import _count_cache
    finally:
        sys.path.pop(0)
    log = tmp_path / "cache.log"
    log.write_text("miss results\nhit results\nmiss zeroshot\nmiss finetune\nhit mixed_nm\n"
                   "miss tokens\nmiss dense_statistics\nhit finetune_task_items\n")
    assert _count_cache(log) == (3, 2)
    assert _count_cache(tmp_path / "absent.log") == (0, 0)


def test_saved_widget_state_keeps_only_what_an_output_displays():
    import nbformat
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from run_notebooks import strip_progress
    finally:
        sys.path.pop(0)
    view = "application/vnd.jupyter.widget-view+json"
    shown = nbformat.v4.new_code_cell("explorer")
    shown.outputs = [nbformat.v4.new_output("display_data", data={view: {"model_id": "aa", "version_major": 2},
                                                                  "text/plain": "VBox(...)"})]
    bar = nbformat.v4.new_code_cell("tqdm")
    bar.outputs = [nbformat.v4.new_output("display_data", data={view: {"model_id": "bb", "version_major": 2},
                                                                "text/plain": " 50%|#####     | 1/2 [00:01<00:01]"})]
    state = {"aa": {"state": {"children": ["IPY_MODEL_cc"]}}, "cc": {"state": {"layout": "IPY_MODEL_dd"}},
             "dd": {"state": {}}, "bb": {"state": {"layout": "IPY_MODEL_ee"}}, "ee": {"state": {}}}
    nb = nbformat.v4.new_notebook()
    nb.cells = [shown, bar]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state, "version_major": 2}}
    strip_progress(nb)
    # the explorer and everything it refers to stay; the removed bar's models go
    assert set(nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]) == {"aa", "cc", "dd"}
    nb.cells = [bar]
    strip_progress(nb)
    assert "widgets" not in nb.metadata   # nothing displayed any more: no saved state at all


def test_readme_verdict_table_comes_from_executed_notebooks(tmp_path):
    import nbformat
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import verdicts
    finally:
        sys.path.pop(0)
    folder = ROOT / "results" / "notebooks" / "_test_tmp"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("print(...)")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="Verdict: DLP beats Uniform | 2.2x\n")]
        nb.cells = [cell]
        nb.metadata["dlp_run"] = {"commit": "abc1234", "date": "2026-12-01 20:00 UTC", "wall_seconds": 90,
                                  "status": "ok", "profile": "default", "results_computed": 3, "results_reused": 2}
        nbformat.write(nb, folder / "00_quickstart.ipynb")
        nb.metadata["dlp_run"] = {**nb.metadata["dlp_run"], "commit": "def5678", "wall_seconds": 30,
                                  "results_computed": 1, "results_reused": 0, "counted_kinds": ["results"]}
        nbformat.write(nb, folder / "01_empirical_study_I_statistics.ipynb")
        readme = tmp_path / "README.md"
        readme.write_text(f"intro\n{verdicts.BEGIN}\nold\n{verdicts.END}\nmiddle\n"
                          f"{verdicts.WALL_BEGIN}\nold wall\n{verdicts.WALL_END}\noutro\n")
        assert verdicts.main([str(folder), "--readme", str(readme)]) == 0
        text = readme.read_text()
        assert "old" not in text and text.startswith("intro") and text.rstrip().endswith("outro")
        assert "`abc1234`" in text and "1.5 min" in text and "DLP beats Uniform \\| 2.2x" in text
        assert "figures/default/00_quickstart_rid.png" in text  # the committed figure of notebook 00 is linked
        assert "old wall" not in text and "middle" in text
        # a stamp without counted_kinds comes from a runner that counted perplexity results only
        assert "| 00_quickstart | `abc1234` | 1.5 min | 3* | 2* |" in text and "perplexity configurations only" in text
        assert "| 01_empirical_study_I_statistics | `def5678` | 0.5 min | 1 | 0 |" in text
        # the total adds the stamps and says the copies do not come from one batch
        assert "**2.0 min** | 4 | 2 |" in text and "2 different commits" in text
    finally:
        import shutil
        shutil.rmtree(folder)
