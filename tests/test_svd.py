"""SVD low-rank compression (paper Table 16): ranks, factorisations, activation-aware variants, model."""
import math

import pytest
import torch
from torch import nn

from dlp_lib.calibration import STATISTICS, CalibrationEngine
from dlp_lib.compression.report import count_parameters
from dlp_lib.compression.svd import (SVDConfig, factorize, low_rank_linear, svd_compress,
                                     svd_rank)
from dlp_lib.models import decoder_blocks, linear_sublayers, tiny_llama
from dlp_lib.plan import SparsityPlan


def _brute_rank(m, n, ratio):
    """Largest k >= 1 with k(m+n) <= (1-ratio) mn, or None when it would not save parameters."""
    if ratio == 0:
        return None
    best = 1
    for k in range(1, min(m, n) + 1):
        if k * (m + n) <= (1 - ratio) * m * n + 1e-9:
            best = k
    return None if best * (m + n) >= m * n else best


@pytest.mark.parametrize("m,n", [(64, 64), (64, 160), (160, 64), (576, 1536), (7, 5)])
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 0.5, 0.9, 0.99])
def test_rank_matches_brute_force(m, n, ratio):
    assert svd_rank(m, n, ratio) == _brute_rank(m, n, ratio)


def test_rank_rejects_bad_ratio():
    with pytest.raises(ValueError, match="ratio"):
        svd_rank(8, 8, 1.0)
    with pytest.raises(ValueError, match="variant"):
        SVDConfig(variant="svd++")


def _correlated_inputs(T=400, n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(n, n, generator=g, dtype=torch.float64)
    scale = torch.logspace(-1, 1.3, n, dtype=torch.float64)[torch.randperm(n, generator=g)]  # outlier columns
    return (torch.randn(T, n, generator=g, dtype=torch.float64) @ mix) * scale


def _stat(variant, X):
    return {"plain": None, "asvd": X.abs().mean(0), "svdllm": X.T @ X}[variant]


@pytest.mark.parametrize("variant", ["plain", "asvd", "svdllm"])
def test_full_rank_reproduces_W(variant):
    g = torch.Generator().manual_seed(1)
    W = torch.randn(16, 24, generator=g, dtype=torch.float64)
    X = _correlated_inputs()
    A, B = factorize(W, 16, variant, _stat(variant, X), damping=1e-10)
    assert A.shape == (16, 24) and B.shape == (16, 16)
    assert torch.allclose(B @ A, W, atol=1e-8)


def test_plain_error_is_the_tail_singular_values():
    g = torch.Generator().manual_seed(2)
    W = torch.randn(30, 20, generator=g, dtype=torch.float64)
    sigma = torch.linalg.svdvals(W)
    for k in (1, 5, 12):
        A, B = factorize(W, k, "plain")
        E = W - B @ A
        assert torch.allclose(torch.linalg.norm(E), sigma[k:].square().sum().sqrt(), rtol=1e-10)
        assert torch.allclose(torch.linalg.matrix_norm(E, ord=2), sigma[k], rtol=1e-10)


def test_activation_aware_lowers_output_error():
    g = torch.Generator().manual_seed(3)
    W = torch.randn(32, 24, generator=g, dtype=torch.float64)
    X = _correlated_inputs()
    Y = X @ W.T
    err = {}
    for variant in ("plain", "asvd", "svdllm"):
        A, B = factorize(W, 6, variant, _stat(variant, X), damping=1e-12)
        err[variant] = float(torch.linalg.norm(Y - X @ (B @ A).T))
    assert err["asvd"] < err["plain"]
    assert err["svdllm"] < err["asvd"]
    # SVD-LLM is the optimum of the output error: the tail singular values of Y = X W^T
    tail = float(torch.linalg.svdvals(Y)[6:].square().sum().sqrt())
    assert err["svdllm"] == pytest.approx(tail, rel=1e-6)


def test_low_rank_linear_is_two_linears_with_bias_on_second():
    layer = nn.Linear(10, 6)
    A, B = factorize(layer.weight.detach(), 6, "plain")
    seq = low_rank_linear(layer, A, B)
    assert [type(m) for m in seq] == [nn.Linear, nn.Linear]
    assert seq[0].bias is None and seq[1].bias is not None
    x = torch.randn(3, 10)
    assert torch.allclose(seq(x), layer(x), atol=1e-5)


def test_abs_mean_accumulator_matches_brute_force():
    layer = nn.Linear(5, 3)
    acc = STATISTICS["abs_mean"](layer)
    xs = [torch.randn(2, 7, 5) for _ in range(3)]
    for x in xs:
        acc.add(x)
    ref = torch.cat([x.reshape(-1, 5) for x in xs]).abs().mean(0)
    assert torch.allclose(acc.finish(3), ref, atol=1e-6)


def _expected_params(dense_model, ratios):
    total = sum(p.numel() for p in dense_model.parameters())
    for block, r in zip(decoder_blocks(dense_model), ratios):
        for layer in linear_sublayers(block).values():
            m, n = layer.weight.shape
            k = _brute_rank(m, n, r)
            if k is not None:
                total -= m * n - k * (m + n)
    return total


@pytest.mark.parametrize("variant", ["plain", "asvd", "svdllm"])
def test_compressed_model_runs_and_counts_exactly(variant):
    dense, _ = tiny_llama()
    model, _ = tiny_llama()
    ids = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    ratios = [0.1, 0.3, 0.0, 0.5]
    plan = SparsityPlan("dlp", 0.225, ratios)
    report = svd_compress(model, plan, SVDConfig(variant=variant), calib_ids=ids, progress=False)
    assert count_parameters(model) == _expected_params(dense, ratios)
    assert report.ranks[2] == {name: None for name in linear_sublayers(decoder_blocks(dense)[2])}
    assert report.achieved_ratios[2] == 0.0
    for r, a in zip(ratios[:2] + ratios[3:], report.achieved_ratios[:2] + report.achieved_ratios[3:]):
        assert r <= a < r + 0.1  # floor of the rank: at least the budget is removed
    with torch.no_grad():
        out = model(ids).logits
    assert out.shape == (2, 32, model.config.vocab_size) and torch.isfinite(out).all()
    # the dense block is untouched
    with torch.no_grad():
        d = decoder_blocks(dense)[2].mlp.down_proj.weight
        assert torch.equal(decoder_blocks(model)[2].mlp.down_proj.weight, d)


def test_activation_variant_uses_engine_statistics_of_dense_inputs():
    """The asvd factors of block 1 equal factorize() fed mean |x| of block 1's dense inputs."""
    model, _ = tiny_llama()
    ref, _ = tiny_llama()
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(4))
    seen = {}
    CalibrationEngine(ref, ids, progress=False).run(
        lambda v: seen.update({v.index: v.stats["abs_mean"]["mlp.down_proj"].clone()}), statistics=("abs_mean",))
    # brute force: hook down_proj's input in a plain forward of the dense model
    captured = []
    h = decoder_blocks(ref)[1].mlp.down_proj.register_forward_hook(lambda m, a, o: captured.append(a[0].detach()))
    with torch.no_grad():
        ref(ids)
    h.remove()
    brute = torch.cat([c.reshape(-1, c.shape[-1]) for c in captured]).abs().mean(0)
    assert torch.allclose(seen[1], brute, atol=1e-5)
    plan = SparsityPlan("uniform", 0.4, [0.4] * 4)
    svd_compress(model, plan, SVDConfig(variant="asvd"), calib_ids=ids, progress=False)
    W = decoder_blocks(ref)[1].mlp.down_proj.weight.detach()
    k = svd_rank(*W.shape, 0.4)
    A, B = factorize(W, k, "asvd", brute)
    got = decoder_blocks(model)[1].mlp.down_proj
    assert torch.allclose(got[1].weight @ got[0].weight, B @ A, atol=1e-4)


def test_needs_calibration_for_activation_variants():
    model, _ = tiny_llama()
    with pytest.raises(ValueError, match="calib_ids"):
        svd_compress(model, SparsityPlan("uniform", 0.2, [0.2] * 4), SVDConfig(variant="asvd"), progress=False)
    with pytest.raises(ValueError, match="ratios"):
        svd_compress(model, SparsityPlan("uniform", 0.2, [0.2] * 3), SVDConfig(variant="plain"), progress=False)


def test_svd_result_on_the_lab_follows_the_dlp_plan(tmp_cache):
    from dlp_lib.runs.svd import svd_result
    from dlp_lib.experiment import ExperimentConfig, get_lab
    cfg = ExperimentConfig.from_profile("smoke", allocation="dlp")
    lab = get_lab(cfg.model, cfg.device, cfg.dtype, progress=False)
    lab.ensure(None)  # the process-wide Lab may hold an earlier test's pruning
    before = {k: v.clone() for k, v in lab.model.state_dict().items()}
    res = svd_result(lab, cfg, 0.3, "plain")
    assert res["ratios"] == pytest.approx(lab.plan(cfg.replace(sparsity=0.3)).ratios)
    assert 0.3 <= res["achieved_reduction"] < 0.35
    assert res["params"]["model_before"] - res["params"]["model_after"] == \
        res["params"]["blocks_before"] - res["params"]["blocks_after"]
    assert set(res["perplexity"]) == {"brown"} and math.isfinite(res["perplexity"]["brown"])
    zero = svd_result(lab, cfg, 0.0, "plain")
    assert zero["perplexity"] == pytest.approx(zero["dense_perplexity"])
    assert all(torch.equal(v, lab.model.state_dict()[k]) for k, v in before.items())  # lab left dense
    assert svd_result(lab, cfg, 0.3, "plain") == res  # cached


def test_saved_and_reloaded_svd_model_gives_identical_logits(tmp_path):
    from dlp_lib.compression.svd import load_svd, save_svd
    model, tok = tiny_llama()
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(5))
    report = svd_compress(model, SparsityPlan("dlp", 0.3, [0.2, 0.4, 0.0, 0.6]), SVDConfig(variant="svdllm"),
                          calib_ids=ids, progress=False)
    save_svd(model, tok, tmp_path / "svd", report)
    loaded = load_svd(tmp_path / "svd")
    assert count_parameters(loaded) == count_parameters(model)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_compress_command_checks_before_loading_and_writes_json(tmp_path, tmp_cache):
    import argparse
    import json
    from dlp_lib.experiment import ExperimentConfig, get_lab
    from dlp_lib.runs.compress_command import add_arguments, run, technique_config
    parser = add_arguments(argparse.ArgumentParser())
    with pytest.raises(ValueError, match="reduction"):
        technique_config(parser.parse_args(["--technique", "svd", "--reduction", "1.5"]))
    with pytest.raises(ValueError, match="block_range"):
        technique_config(parser.parse_args(["--technique", "structured", "--reduction", "0.2", "--block-range", "3", "1"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--technique", "svd", "--reduction", "0.2", "--variant", "nope"])
    cfg = ExperimentConfig.from_profile("smoke", allocation="uniform")
    lab = get_lab(cfg.model, cfg.device, cfg.dtype, progress=False)
    args = parser.parse_args(["--technique", "svd", "--reduction", "0.2", "--variant", "plain",
                              "--json", str(tmp_path / "r.json")])
    assert run(args, cfg, lab) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["ratios"] == [0.2] * 4 and res["variant"] == "plain"


def test_shared_asvd_statistics_give_the_same_model_as_the_engine_pass(tmp_cache):
    """svd_result's once-per-data-key ASVD statistics == svd_compress running the engine itself."""
    import copy

    from dlp_lib.experiment import ExperimentConfig, get_lab
    from dlp_lib.runs.svd import dense_abs_mean, svd_model
    cfg = ExperimentConfig.from_profile("smoke", allocation="dlp", sparsity=0.3)
    lab = get_lab(cfg.model, cfg.device, cfg.dtype, progress=False)
    shared, plan, _, _ = svd_model(lab, cfg, 0.3, SVDConfig(variant="asvd"))
    assert dense_abs_mean(lab, cfg) is dense_abs_mean(lab, cfg)       # computed once
    lab.ensure(None)
    direct = copy.deepcopy(lab.model)
    svd_compress(direct, plan, SVDConfig(variant="asvd"), calib_ids=lab.calibration(cfg), progress=False)
    ids = lab.calibration(cfg)[:2]
    with torch.no_grad():
        assert torch.allclose(shared(ids).logits, direct(ids).logits, atol=1e-5)
