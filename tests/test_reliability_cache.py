"""The cache never returns a stale or partial value: corrupt entries are healed, --no-cache
recomputes, a rewritten checkpoint is a new model, a killed write leaves no entry, code versions
follow the code. All on tiny-llama."""
import json
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
pytestmark = pytest.mark.usefixtures("fresh_labs")


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
from dlp_lib.cache import cached, versioned
cached("killtest", versioned(("data",), n=1), lambda: torch.zeros(60_000_000), fmt="torch")
"""


def test_kill_during_a_cache_write_leaves_no_partial_entry(tmp_cache):
    from dlp_lib.cache import cached, clean_orphans, versioned
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
    value = cached("killtest", versioned(("data",), n=1), lambda: torch.ones(3), fmt="torch")
    assert torch.equal(value, torch.ones(3))  # recomputed, not read from a torn file


def test_cache_command(tmp_cache, capsys):
    from dlp_lib.cache import cached, versioned
    cached("results", versioned(("eval",), a=1), lambda: {"x": 1})
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


def test_stage_modules_follow_the_layout_and_refuse_an_undeclared_module(monkeypatch):
    from dlp_lib import cache, layout
    package = ROOT / "dlp_lib"
    names = {stage: {str(p.relative_to(package)) for p in cache.stage_modules(stage)} for stage in layout.STAGES}
    # pass 1's statistics are their own stage: editing an allocator keeps them, editing block_stats does not
    assert "block_stats.py" in names["statistics"] and "block_stats.py" not in names["data"]
    assert "allocation/dlp.py" in names["plan"] and "allocation/dlp.py" not in names["statistics"]
    assert "experiment.py" in names["eval"] and "engine/replay.py" in names["prune"]
    assert not any("cli.py" in n for n in names.values())
    monkeypatch.setattr(layout, "MODULES", {k: v for k, v in layout.MODULES.items() if k != "sweep"})
    cache.code_version.cache_clear()
    try:
        with pytest.raises(cache.CacheError, match="'sweep' has no entry in dlp_lib/layout.py"):
            cache.code_version("eval")
    finally:
        cache.code_version.cache_clear()


def test_cached_refuses_a_key_without_current_code_versions(tmp_path, monkeypatch):
    from dlp_lib import cache
    monkeypatch.setenv("DLP_CACHE_DIR", str(tmp_path))
    good = cache.versioned(("data", "eval"), n=1)
    assert set(good["code"]) == {"data", "eval"} and cache.cached("demo", good, lambda: 7) == 7
    for bad, says in (({"n": 1}, "needs the code versions"),
                      ({"n": 1, "code": "abc"}, "needs the code versions"),
                      ({"n": 1, "code": {"eval": "000000000000"}}, "stale"),
                      ({"n": 1, "code": {"evaluation": good["code"]["eval"]}}, "unknown")):
        with pytest.raises(ValueError, match=says):
            cache.cached("demo", bad, lambda: 8)
    with pytest.raises(ValueError, match="'code'"):
        cache.versioned(("data",), code=1)


def test_code_version_changes_with_the_code_not_the_comments(tmp_path, monkeypatch):
    from dlp_lib import cache
    src = "def f(x):\n    'doc'\n    return x + 1  # comment\n"
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text(src)
    b.write_text(src.replace("'doc'", "'other doc'").replace("# comment", "# another"))
    c.write_text(src.replace("x + 1", "x + 2"))
    assert cache._code_ast(a) == cache._code_ast(b) != cache._code_ast(c)
