"""Table 9 allocators (Global, ER, ER-Plus, LAMP, AlphaPruning) and the Appendix C granularity option."""
import warnings

import numpy as np
import pytest
import torch

from types import SimpleNamespace

from dlp_lib import allocation as alloc
from dlp_lib.allocation import alphapruning, er, global_threshold, lamp
from dlp_lib.block_stats import compute_dense_statistics
from dlp_lib.experiment import ExperimentConfig
from dlp_lib.models import decoder_blocks, linear_sublayers, load_model
from dlp_lib.allocation import allocator_names, build_plan
from dlp_lib.scores import wanda_scores

BUDGETED = ("global", "er", "er_plus", "lamp", "alphapruning")
ab = SimpleNamespace(er_densities=er.er_densities, lamp_ratios=lamp.lamp_ratios,
                     threshold_ratios=global_threshold.threshold_ratios,
                     hill_alpha=alphapruning.hill_alpha, alphapruning_ratios=alphapruning.alphapruning_ratios)


@pytest.fixture(scope="module")
def tiny():
    model, _ = load_model("tiny-llama")
    ids = torch.randint(0, 250, (4, 32), generator=torch.Generator().manual_seed(0))
    stats = compute_dense_statistics(model, ids, progress=False)
    return model, ids, stats


def _numels(model):
    return [{n: layer.weight.numel() for n, layer in linear_sublayers(b).items()} for b in decoder_blocks(model)]


def _kept_fraction(plan, numels):
    """Parameter-weighted kept fraction implied by the plan (per sublayer if it has sublayer ratios)."""
    kept = total = 0.0
    for b, subs in enumerate(numels):
        for name, n in subs.items():
            kept += (1 - plan.ratio(b, name)) * n
            total += n
    return kept / total, total


def test_registered_on_import():
    assert set(BUDGETED) <= set(allocator_names())
    for name in BUDGETED:
        ExperimentConfig(model="tiny-llama", allocation=name)  # accepted by the config validation


@pytest.mark.parametrize("name", BUDGETED)
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.7])
def test_parameter_budget_and_range(tiny, name, sparsity):
    model, ids, stats = tiny
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", alloc.RatioRangeWarning)
        plan = build_plan(name, sparsity, stats=stats, model=model)
    numels = _numels(model)
    kept, total = _kept_fraction(plan, numels)
    assert abs(kept - (1 - sparsity)) <= max(1e-6, 1.0 / total)
    ratios = [plan.ratio(b, n) for b, subs in enumerate(numels) for n in subs]
    assert all(0.0 <= r < 1.0 for r in ratios + list(plan.ratios))
    if plan.sublayer_ratios is not None:  # per-block ratio = parameter-weighted mean of its sublayers
        for b, subs in enumerate(numels):
            w = np.array(list(subs.values()), dtype=float)
            r = np.array([plan.sublayer_ratios[b][n] for n in subs])
            assert plan.ratios[b] == pytest.approx(float((w * r).sum() / w.sum()), abs=1e-12)


def test_er_matches_hand_computation():
    shapes = [(4, 8), (8, 8), (16, 8)]  # (C_out, C_in)
    n = np.array([32, 64, 128.0])
    raw = np.array([(4 + 8) / 32, (8 + 8) / 64, (16 + 8) / 128])  # 0.375, 0.25, 0.1875
    p = 0.6
    eps = (1 - p) * n.sum() / (raw * n).sum()
    d = ab.er_densities(shapes, 1 - p)
    np.testing.assert_allclose(d, eps * raw)
    assert (d * n).sum() == pytest.approx((1 - p) * n.sum())
    # at 10% sparsity eps*raw[0] > 1: layer 0 becomes dense; then eps'*raw[1] = 1.06 > 1: layer 1 too;
    # the last layer keeps the rest of the budget
    d = ab.er_densities(shapes, 0.9)
    assert (0.9 * n.sum() - n[0]) / (raw[1:] * n[1:]).sum() * raw[1] == pytest.approx(1.06)
    np.testing.assert_allclose(d, [1.0, 1.0, (0.9 * n.sum() - n[0] - n[1]) / n[2]])


def test_er_plus_keeps_last_block_dense_when_possible(tiny):
    model, _, _ = tiny
    plan = build_plan("er_plus", 0.5, model=model)
    assert all(r == 0.0 for r in plan.sublayer_ratios[-1].values())
    assert plan.ratios[-1] == 0.0
    er = build_plan("er", 0.5, model=model)
    assert all(plan.ratios[b] > er.ratios[b] for b in range(len(plan.ratios) - 1))
    # 4 blocks: the last holds 25% of the weights, so at 90% sparsity it cannot be dense
    with pytest.warns(alloc.RatioRangeWarning, match="cannot be dense"):
        fallback = build_plan("er_plus", 0.9, model=model)
    assert fallback.sublayer_ratios == build_plan("er", 0.9, model=model).sublayer_ratios


def test_lamp_ratios_match_brute_force_global_prune():
    g = torch.Generator().manual_seed(2)
    weights = [torch.randn(5, 8, generator=g), 3 * torch.randn(4, 4, generator=g), torch.randn(9, 3, generator=g)]
    p = 0.55
    def brute_lamp(w):   # w_u^2 / sum of the squares >= w_u^2 (the values are distinct)
        w2 = w.double().pow(2).flatten()
        return torch.stack([w2[i] / w2[w2 >= w2[i]].sum() for i in range(w2.numel())])
    scores = torch.cat([brute_lamp(w) for w in weights])
    assert float(scores.max()) == pytest.approx(1.0)   # the largest weight of a sublayer scores 1
    pruned = torch.zeros_like(scores, dtype=torch.bool)
    pruned[torch.argsort(scores)[:int(p * scores.numel())]] = True
    expected, start = [], 0
    for w in weights:
        expected.append(float(pruned[start:start + w.numel()].float().mean()))
        start += w.numel()
    np.testing.assert_allclose(ab.lamp_ratios(weights, p), expected)


def test_pass1_column_norms_are_dense_input_norms(tiny):
    """Global's Wanda scores come from pass 1's stored norms: ||X_j||_2 of the DENSE model's inputs."""
    model, ids, stats = tiny
    inputs = {}
    hooks = [layer.register_forward_hook(lambda m, a, o, key=(b, n): inputs.setdefault(key, []).append(a[0].detach()))
             for b, block in enumerate(decoder_blocks(model)) for n, layer in linear_sublayers(block).items()]
    with torch.no_grad():
        model(ids)
    for h in hooks:
        h.remove()
    assert len(stats.column_norms) == len(decoder_blocks(model))
    for (b, n), xs in inputs.items():
        X = torch.cat(xs).reshape(-1, xs[0].shape[-1])
        expected = (X.pow(2).sum(0) / ids.shape[0]).sqrt()   # as Wanda: per-sequence sums averaged
        torch.testing.assert_close(stats.column_norms[b][n], expected, rtol=1e-4, atol=1e-6)


def test_dense_statistics_cache_keeps_column_norms(tiny, tmp_path, monkeypatch):
    from dlp_lib.block_stats import dense_statistics
    from dlp_lib.cache import versioned
    model, ids, stats = tiny
    monkeypatch.setenv("DLP_CACHE_DIR", str(tmp_path))
    key = versioned(("data", "statistics"), model="tiny-llama", test="column-norms")
    first = dense_statistics(model, ids, key, progress=False)
    assert list((tmp_path / "dense_statistics").glob("*.pt"))
    again = dense_statistics(model, ids, key, progress=False)   # read back from disk
    for a, b in zip(again.column_norms, stats.column_norms):
        for n in b:
            torch.testing.assert_close(a[n], b[n], rtol=0, atol=0)
    assert again.blocks == first.blocks


def test_global_needs_pass1_statistics(tiny):
    model, ids, _ = tiny
    with pytest.raises(ValueError, match="dense statistics"):
        build_plan("global", 0.5, model=model)


def test_global_threshold_is_exact_kth_score(tiny):
    model, ids, stats = tiny
    scores = [wanda_scores(layer.weight, stats.column_norms[b][n]) for b, block in enumerate(decoder_blocks(model))
              for n, layer in linear_sublayers(block).items()]
    flat = torch.cat([s.flatten() for s in scores])
    for p in (0.1, 0.5, 0.7):
        k = int(p * flat.numel())
        r = ab.threshold_ratios(scores, p)
        pruned = sum(ri * s.numel() for ri, s in zip(r, scores))
        assert pruned == pytest.approx(k)
        t = float(flat.kthvalue(k).values)
        for ri, s in zip(r, scores):  # each sublayer prunes exactly its scores below the threshold (no ties here)
            assert ri * s.numel() == pytest.approx(float((s <= t).sum()))


def test_threshold_ratios_split_ties_exactly():
    scores = [torch.zeros(4), torch.zeros(6), torch.ones(10)]
    np.testing.assert_allclose(ab.threshold_ratios(scores, 0.25), [1.0, 1 / 6, 0.0])


def test_hill_alpha_recovers_pareto_exponent():
    g = torch.Generator().manual_seed(0)
    alpha = 2.5  # density ~ x^-alpha  <=>  survival ~ x^-(alpha-1)
    x = (1 - torch.rand(4000, generator=g, dtype=torch.float64)) ** (-1 / (alpha - 1))
    assert ab.hill_alpha(x) == pytest.approx(alpha, abs=0.25)


def test_alphapruning_mapping():
    a = [2.0, 3.0, 4.0, 6.0]
    n = [1, 1, 2, 1]
    for scale in ("sparsity", "density"):
        r = ab.alphapruning_ratios(a, n, 0.6, 0.2, scale=scale)
        assert np.all(np.diff(r) > 0)  # smaller alpha_hat (heavier tail) -> lower sparsity
        assert float(np.dot(r, n) / np.sum(n)) == pytest.approx(0.6)
    r = ab.alphapruning_ratios(a, n, 0.6, 0.2)
    np.testing.assert_allclose(r / r[0], np.array([0.8, 0.9, 1.0, 1.2]) / 0.8)  # linear map to [1-e, 1+e]
    with pytest.warns(alloc.RatioRangeWarning):  # 0.8 * 1.2 * scale > 0.99: clamped, budget kept
        r = ab.alphapruning_ratios(a, n, 0.85, 0.3)
    assert r.max() <= alloc.MAX_RATIO and float(np.dot(r, n) / np.sum(n)) == pytest.approx(0.85)


@pytest.mark.parametrize("allocation", ["dlp", "owl"])
def test_sublayer_granularity_mean_is_p(tiny, allocation):
    model, _, stats = tiny
    p = 0.7
    plan = build_plan(allocation, p, stats=stats, model=model, granularity="sublayer")
    flat = [r for subs in plan.sublayer_ratios for r in subs.values()]
    assert len(flat) == sum(len(s) for s in stats.sublayers)
    assert np.mean(flat) == pytest.approx(p)
    assert len(set(np.round(flat, 9))) > len(plan.ratios)  # ratios differ inside blocks
    assert all(0 <= r < 1 for r in flat)
    block = build_plan(allocation, p, stats=stats, model=model)
    assert block.sublayer_ratios is None and np.mean(block.ratios) == pytest.approx(p)


def test_sublayer_granularity_uses_the_dlp_formula(tiny):
    model, _, stats = tiny
    plan = build_plan("dlp", 0.6, stats=stats, model=model, granularity="sublayer", alpha=0.1)
    keys = [(b, n) for b, subs in enumerate(stats.sublayers) for n in subs]
    expected = alloc.allocate_dlp([stats.sublayers[b][n]["median"] for b, n in keys], 0.6, 0.1)
    np.testing.assert_allclose([plan.sublayer_ratios[b][n] for b, n in keys], expected)


def test_granularity_config_validation():
    cfg = ExperimentConfig(model="tiny-llama", allocation="dlp", granularity="sublayer")
    assert cfg.to_dict()["granularity"] == "sublayer"
    block = ExperimentConfig(model="tiny-llama", allocation="dlp")
    assert cfg.key("plan", "fp")["granularity"] == "sublayer" and cfg.key("plan", "fp") != block.key("plan", "fp")
    with pytest.raises(ValueError, match="granularity"):
        ExperimentConfig(model="tiny-llama", allocation="uniform", granularity="sublayer")
    with pytest.raises(ValueError, match="granularity"):
        ExperimentConfig(model="tiny-llama", granularity="row")


def test_cli_accepts_granularity():
    from dlp_lib.cli import build_parser, prune_config

    a = build_parser().parse_args(["prune", "--profile", "smoke", "--granularity", "sublayer"])
    assert prune_config(a).granularity == "sublayer"
