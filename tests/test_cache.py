"""The cache returns only the entry it was asked for: swapped, edited, misshapen or misplaced entries
are reported, deleted and recomputed, never returned and never a traceback."""
import json
import shutil
import warnings

import pytest
import torch

from dlp_lib import cli, experiment
from dlp_lib.cache import CacheError, cache_root, cached, entries, read_entry, verify, versioned


@pytest.fixture(autouse=True)
def _fresh_labs(monkeypatch):
    monkeypatch.setattr(experiment, "_LABS", {})


def _only_entry(folder):
    (path,) = sorted(folder.glob("*.*"))
    return path


def test_swapped_result_entries_are_recomputed_with_the_right_numbers(tmp_cache, capsys):
    def prune(sparsity):
        assert cli.main(["prune", "--profile", "smoke", "--quiet", "--sparsity", str(sparsity), "--json",
                         str(tmp_cache / f"r{sparsity}.json")]) == 0
        return json.loads((tmp_cache / f"r{sparsity}.json").read_text())

    first = {s: prune(s) for s in (0.5, 0.6)}
    assert first[0.5]["perplexity"]["pruned"] != first[0.6]["perplexity"]["pruned"]
    a, b = sorted((tmp_cache / "results").glob("*.json"))
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    experiment._LABS.clear()
    again = {s: prune(s) for s in (0.5, 0.6)}
    assert capsys.readouterr().err.count("holds the entry results/") == 2  # both reported, then recomputed
    for s in (0.5, 0.6):
        assert again[s]["perplexity"] == first[s]["perplexity"] and again[s]["ratios"] == first[s]["ratios"]
    for p in entries(tmp_cache):
        read_entry(p)


def test_swapped_token_entries_are_recomputed(tmp_path, monkeypatch):
    from dlp_lib.data import token_stream
    from dlp_lib.models import load_model
    real = cache_root()
    root = tmp_path / "cache"
    root.mkdir()
    (root / "corpora").symlink_to(real / "corpora")
    monkeypatch.setenv("DLP_CACHE_DIR", str(root))
    _, tok = load_model("tiny-llama")
    brown = token_stream("brown", tok, "test")
    sotu = token_stream("sotu", tok, "test")
    a, b = sorted((root / "tokens").glob("*.pt"))
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    with pytest.warns(UserWarning, match=r"holds the entry tokens/"):
        assert torch.equal(token_stream("brown", tok, "test"), brown)
    with pytest.warns(UserWarning, match=r"holds the entry tokens/"):
        assert torch.equal(token_stream("sotu", tok, "test"), sotu)


@pytest.mark.parametrize("damage,why", [
    (lambda p: p.write_text(json.dumps({"config": {}, "value": {}})), "no 'kind', 'key' field"),
    (lambda p: p.write_text("[1, 2]"), "a list, not an entry"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "value": {}})), "does not match its checksum"),
    (lambda p: (p.unlink(), p.mkdir(), (p / "x").write_text("1")), "a directory, not a file"),
])
def test_misshapen_entries_are_healed_without_a_traceback(tmp_cache, damage, why):
    calls = []

    def compute():
        calls.append(1)
        return {"perplexity": 12.5}

    assert cached("results", versioned(("eval",), a=1), compute) == {"perplexity": 12.5}
    damage(_only_entry(tmp_cache / "results"))
    with pytest.warns(UserWarning, match=why):
        assert cached("results", versioned(("eval",), a=1), compute) == {"perplexity": 12.5}
    assert len(calls) == 2
    assert read_entry(_only_entry(tmp_cache / "results"))["value"] == {"perplexity": 12.5}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cached("results", versioned(("eval",), a=1), compute) == {"perplexity": 12.5} and len(calls) == 2


def test_a_torch_entry_copied_under_another_key_is_not_returned(tmp_cache):
    cached("dense_statistics", versioned(("data",), n=1), lambda: torch.ones(2), fmt="torch")
    first = _only_entry(tmp_cache / "dense_statistics")
    shutil.copy(first, first.with_name("0123456789abcdef0123.pt"))
    bad = verify(tmp_cache, delete=True)
    assert [p.name for p, _ in bad] == ["0123456789abcdef0123.pt"] and "holds the entry" in bad[0][1]
    assert [p.name for p in entries(tmp_cache)] == [first.name]


def test_verify_keeps_rescued_results_and_reports_a_directory_entry(tmp_cache, capsys):
    cached("results", versioned(("eval",), a=1), lambda: {"x": 1})
    rescued = tmp_cache / "unsaved" / "result.json"
    rescued.parent.mkdir()
    rescued.write_text(json.dumps({"perplexity": {"pruned": 20.0}}))
    (tmp_cache / "results" / "feedfacefeedfacefeed.json").mkdir()
    assert cli.main(["cache", "verify"]) == 1
    out = capsys.readouterr().out
    assert "feedfacefeedfacefeed.json" in out and "a directory" in out and "unsaved" not in out
    assert rescued.exists() and not (tmp_cache / "results" / "feedfacefeedfacefeed.json").exists()
    assert cli.main(["cache", "verify"]) == 0


def test_an_empty_cache_dir_setting_is_an_error_not_the_current_directory(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLP_CACHE_DIR", "")
    with pytest.raises(CacheError, match="DLP_CACHE_DIR is set but empty"):
        cache_root()
    assert cli.main(["prune", "--profile", "smoke", "--quiet"]) == 2
    assert "DLP_CACHE_DIR is set but empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_computed_value_equals_its_read_back(tmp_cache):
    """A miss returns what a hit will: the same key order and JSON types, so nothing downstream (a table's
    rows, a figure's panels) depends on whether the cache was cold."""
    value = {"sotu": 1.5, "brown": 2.5, "mobydick": (3, 4)}
    computed = cached("results", versioned(("eval",), a=2), lambda: value)
    again = cached("results", versioned(("eval",), a=2), lambda: 1 / 0)
    assert computed == again == {"brown": 2.5, "mobydick": [3, 4], "sotu": 1.5}
    assert list(computed) == list(again) == ["brown", "mobydick", "sotu"]
