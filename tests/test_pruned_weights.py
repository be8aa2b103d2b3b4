"""Prunings stored by pruning key and applied by the next configuration that prunes identically,
each checked against doing the work again: stored pruned weights equal a fresh pruning bit for bit."""

import pytest
import torch

from dlp_lib import experiment, pruned_weights
from dlp_lib.experiment import ExperimentConfig, Lab
from dlp_lib.models import decoder_blocks, linear_sublayers


@pytest.fixture(autouse=True)
def _fresh_labs(monkeypatch):
    monkeypatch.setattr(experiment, "_LABS", {})


def _block_weights(model) -> dict:
    return {f"{i}.{n}": l.weight.detach().clone() for i, b in enumerate(decoder_blocks(model))
            for n, l in linear_sublayers(b).items()}


def _log_lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_stored_pruning_equals_a_fresh_pruning(tmp_cache, tmp_path, monkeypatch, method):
    log = tmp_path / "cache.log"
    monkeypatch.setenv("DLP_CACHE_LOG", str(log))
    cfg = ExperimentConfig.from_profile("smoke", method=method, sparsity=0.6, eval_dtype="same")
    lab = Lab("tiny-llama", progress=False)
    first = lab.run(cfg)
    fresh = _block_weights(lab.model)
    assert first["pruned_weights_from_cache"] is False
    # another text set is another result, but the same pruning: applied, not recomputed
    other = Lab("tiny-llama", progress=False)
    calls = []
    real = experiment.prune_model
    monkeypatch.setattr(experiment, "prune_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = other.run(cfg.replace(eval=("brown", "sotu")))
    assert calls == [] and again["pruned_weights_from_cache"] is True
    assert again["prune_seconds"] == first["prune_seconds"]  # the cost of the pruning that made them
    stored = _block_weights(other.model)
    assert stored.keys() == fresh.keys()
    for k in fresh:
        assert torch.equal(stored[k], fresh[k]), k
    assert again["achieved_sparsity"] == first["achieved_sparsity"]
    assert again["perplexity"]["pruned"]["brown"] == first["perplexity"]["pruned"]["brown"]
    assert "hit pruned_weights" in _log_lines(log) and "hit perplexity" in _log_lines(log)
    # no sharing: pruned again, same weights
    third = Lab("tiny-llama", progress=False, share_pruning=False)
    third.ensure(cfg)
    assert calls == [1]
    for k, w in _block_weights(third.model).items():
        assert torch.equal(w, fresh[k]), k


def test_only_weight_updating_methods_store_values(tmp_cache):
    lab = Lab("tiny-llama", progress=False)
    for method, with_values in (("wanda", False), ("sparsegpt", True)):
        cfg = ExperimentConfig.from_profile("smoke", method=method, sparsity=0.5)
        lab.ensure(cfg)
        entry = pruned_weights.capture(lab.model, method in pruned_weights.WEIGHT_UPDATING_METHODS)
        assert (entry["values"] is not None) == with_values
        n = sum(l.weight.numel() for b in decoder_blocks(lab.model) for l in linear_sublayers(b).values())
        assert sum(m.numel() for m in entry["masks"].values()) == pytest.approx(n / 8, abs=len(entry["masks"]))
        if with_values:  # exactly the kept weights
            kept = sum(int((l.weight != 0).sum()) for b in decoder_blocks(lab.model) for l in linear_sublayers(b).values())
            assert sum(v.numel() for v in entry["values"].values()) == kept


def test_a_stored_pruning_that_does_not_fit_is_pruned_again(tmp_cache):
    cfg = ExperimentConfig.from_profile("smoke", method="wanda", sparsity=0.5)
    lab = Lab("tiny-llama", progress=False)
    lab.ensure(cfg)
    fresh = _block_weights(lab.model)
    (path,) = (tmp_cache / "pruned_weights").glob("*.pt")
    entry = torch.load(path, weights_only=False)
    entry["value"]["masks"].pop(next(iter(entry["value"]["masks"])))  # readable, but one sublayer short
    torch.save(entry, path)
    other = Lab("tiny-llama", progress=False)
    with pytest.warns(UserWarning, match="do not fit the model.*pruning again"):
        other.ensure(cfg)
    for k, w in _block_weights(other.model).items():
        assert torch.equal(w, fresh[k]), k
    assert len(torch.load(path, weights_only=False)["value"]["masks"]) == len(fresh)  # rewritten whole


def test_large_prunings_are_not_stored(tmp_cache, monkeypatch):
    monkeypatch.setattr(pruned_weights, "MAX_ENTRY_BYTES", 10)
    Lab("tiny-llama", progress=False).ensure(ExperimentConfig.from_profile("smoke", sparsity=0.5))
    assert not list((tmp_cache / "pruned_weights").glob("*.pt"))
