"""The GPU/offload path of the calibration engine, checked on the CPU (issue 5).

Offloaded blocks (staged through copies), streamed activations and shared accumulators must give
exactly what the in-memory path gives; 16-bit activation storage must give the same DLP plan up
to small differences; the pool statistics must equal the brute-force ones without pooling.
"""
import copy

import pytest
import torch

from dlp_lib import pruning
from dlp_lib.block_stats import compute_dense_statistics, grouped_pool_statistics, pool_statistics
from dlp_lib.calibration import CalibrationEngine, replay_logits
from dlp_lib.models import decoder_blocks, linear_sublayers, load_model
from dlp_lib.allocation import build_plan
from dlp_lib.plan import SparsityPlan
from dlp_lib.pruning import prune_model
from dlp_lib.scores import prune_mask, wanda_scores


def _ids(n=4, t=32, seed=0):
    return torch.randint(0, 250, (n, t), generator=torch.Generator().manual_seed(seed))


def _collect(model, ids, sequential=False, **options):
    """Every block's statistics (cloned) from one engine run; in sequential mode the visitor
    zeroes every other input column, so later blocks see pruned outputs."""
    seen = []

    def visit(v):
        seen.append({s: {n: t.clone() for n, t in d.items()} for s, d in v.stats.items()})
        if sequential:
            for layer in v.sublayers.values():
                layer.weight.data[:, ::2] = 0
        return sequential

    CalibrationEngine(model, ids, batch_size=2, progress=False, **options).run(
        visit, statistics=("wanda", "hessian"), sequential=sequential)
    return seen


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for s in x:
            for n in x[s]:
                assert torch.equal(x[s][n], y[s][n]), (s, n)


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize("options", [dict(offload=True), dict(stream_activations=True),
                                     dict(offload=True, stream_activations=True, prefetch=False)])
def test_offload_and_streaming_equal_in_memory(sequential, options):
    ref_model, _ = load_model("tiny-llama")
    model = copy.deepcopy(ref_model)
    ids = _ids()
    ref = _collect(ref_model, ids, sequential)
    got = _collect(model, ids, sequential, **options)
    _assert_same(ref, got)
    for (n, p), q in zip(ref_model.named_parameters(), model.parameters()):
        assert torch.equal(p, q), n  # offloaded blocks modified by the visitor were copied home
        assert q.device.type == "cpu"


def test_offloaded_pruning_equals_in_memory():
    a, _ = load_model("tiny-llama")
    b = copy.deepcopy(a)
    ids = _ids(seed=5)
    plan = SparsityPlan("manual", 0.5, [0.3, 0.5, 0.6, 0.6])
    prune_model(a, plan, "wanda", ids, progress=False)
    prune_model(b, plan, "wanda", ids, progress=False, offload=True, stream_activations=True)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n


def test_dense_statistics_offload_stream_equal():
    model, _ = load_model("tiny-llama")
    ids = _ids(seed=6)
    ref = compute_dense_statistics(model, ids, progress=False)
    got = compute_dense_statistics(model, ids, progress=False, offload=True, stream_activations=True)
    assert ref.blocks == got.blocks and ref.sublayers == got.sublayers


def test_shared_accumulators_match_brute_force(tiny):
    """q/k/v (and gate/up) read the same input: one shared accumulator, the brute-force value."""
    model, _ = tiny
    ids = _ids(n=4, t=24, seed=2)
    subs = linear_sublayers(decoder_blocks(model)[2])
    captured = {}
    hooks = [subs[n].register_forward_hook(lambda m, a, o, n=n: captured.setdefault(n, []).append(a[0].clone()))
             for n in ("self_attn.k_proj", "mlp.up_proj")]
    with torch.no_grad():
        model(ids)
    for h in hooks:
        h.remove()
    got = {}

    def visit(v):
        if v.index == 2:
            got.update(v.stats)

    CalibrationEngine(model, ids, batch_size=3, progress=False).run(visit, statistics=("wanda", "hessian"))
    for name, leader in (("self_attn.k_proj", "self_attn.q_proj"), ("mlp.up_proj", "mlp.gate_proj")):
        X = torch.cat(captured[name]).reshape(-1, subs[name].in_features)
        torch.testing.assert_close(got["wanda"][name], (X.pow(2).sum(0) / ids.shape[0]).sqrt(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["hessian"][name], 2.0 / X.shape[0] * X.T @ X, rtol=1e-4, atol=1e-6)
        assert got["wanda"][name] is got["wanda"][leader]


def test_replay_equals_full_forward_after_offloaded_run(tiny):
    model, _ = tiny
    ids = _ids(n=3, t=40, seed=3)
    CalibrationEngine(model, ids, progress=False, offload=True).run(lambda v: None)
    with torch.no_grad():
        full = model(ids).logits
    torch.testing.assert_close(replay_logits(model, ids), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["concatenated", "chunked", "chunked-fallback"])
def test_pool_statistics_exact_without_pooling(mode, monkeypatch):
    """Block and sublayer statistics equal the brute-force ones on the concatenated pool, also when
    computed chunk by chunk without concatenating (the GPU path), and when its median bracket
    misses (forced here) and the exact histogram selection takes over."""
    from dlp_lib import block_stats
    chunked = mode != "concatenated"
    monkeypatch.setattr(block_stats, "_CHUNK", 300)  # many chunks per part
    monkeypatch.setattr(block_stats, "_SAMPLE_EVERY", 4)
    if mode == "chunked-fallback":
        monkeypatch.setattr(block_stats, "_WINDOW_SIGMAS", -5.0)  # an empty bracket
    g = torch.Generator().manual_seed(0)
    weights = {"a": torch.randn(40, 24, generator=g), "b": torch.randn(33, 24, generator=g),
               "c": torch.randn(8, 50, generator=g)}
    norms = {n: torch.rand(w.shape[1], generator=g) for n, w in weights.items()}
    block, subs = grouped_pool_statistics({n: (weights[n], norms[n]) for n in weights}, chunked=chunked)
    scores = {n: wanda_scores(weights[n], norms[n]).flatten() for n in weights}
    for got, pool in [(block, torch.cat(list(scores.values())))] + [(subs[n], scores[n]) for n in weights]:
        assert got["median"] == float(pool.median()) and got["max"] == float(pool.max())
        assert got["numel"] == pool.numel()
        mean = pool.double().mean()
        assert got["mean"] == pytest.approx(float(mean), rel=1e-12)
        assert got["var"] == pytest.approx(float(pool.double().var(unbiased=False)), rel=1e-6)
        for m in (1.0, 3.0, 5.0, 7.0):
            expected = float((pool > m * mean.float()).sum()) * 100.0 / pool.numel()
            assert got["outlier_ratio"][str(m)] == expected
    ties = torch.randint(-4, 4, (1001,), generator=g).float()  # negatives and many ties
    assert pool_statistics(ties, chunked=chunked)["median"] == float(ties.median())


def test_outlier_counts_equal_brute_force():
    from dlp_lib.block_stats import _above_from_buckets, _bucket_counts
    g = torch.Generator().manual_seed(2)
    s = torch.rand(200_001, generator=g) ** 2
    t = torch.tensor([0.0, 0.1, 0.1, 0.5, 0.999, 2.0]) * s.mean()  # ties between thresholds too
    assert torch.equal(_above_from_buckets(_bucket_counts(s, t)), torch.stack([(s > x).sum() for x in t]))


def test_pool_statistics_modes_agree():
    g = torch.Generator().manual_seed(1)
    pool = torch.rand(300_001, generator=g) ** 3
    a, b = pool_statistics(pool, chunked=False), pool_statistics(pool, chunked=True)
    assert a["median"] == b["median"] and a["max"] == b["max"] and a["outlier_ratio"] == b["outlier_ratio"]
    assert a["var"] == pytest.approx(b["var"], rel=1e-12)


def test_row_chunked_wanda_pruning_equals_whole_matrix(monkeypatch):
    model, _ = load_model("tiny-llama")
    ids = _ids(seed=4)
    plan = SparsityPlan("manual", 0.5, [0.5] * 4)
    expected = {}

    def visit(v):  # the unchunked reference masks on the same statistics
        for n, layer in v.sublayers.items():
            expected[(v.index, n)] = prune_mask(wanda_scores(layer.weight, v.stats["wanda"][n]), 0.5)
        pruning.prune_sublayers(v, plan, "wanda", "per_output", None)
        return True

    monkeypatch.setattr(pruning, "_SCORE_CHUNK", 100)  # a few rows at a time
    CalibrationEngine(model, ids, progress=False).run(visit, statistics=("wanda",), sequential=True)
    for i, block in enumerate(decoder_blocks(model)):
        for n, layer in linear_sublayers(block).items():
            zeros = layer.weight == 0
            assert torch.equal(zeros, expected[(i, n)]), (i, n)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16bit_activation_storage_gives_same_plan(dtype):
    """fp16/bf16 activations (fp32 statistics) versus fp32: the same DLP plan up to small differences."""
    model, _ = load_model("tiny-llama")
    ids = _ids(n=8, t=64, seed=7)
    ref = compute_dense_statistics(model, ids, progress=False)
    got = compute_dense_statistics(model, ids, progress=False, act_dtype=dtype)
    s_ref, s_got = ref.layer_statistic("median"), got.layer_statistic("median")
    assert max(abs(a - b) / a for a, b in zip(s_ref, s_got)) < 1e-2
    p_ref = build_plan("dlp", 0.7, stats=ref, alpha=0.15).ratios
    p_got = build_plan("dlp", 0.7, stats=got, alpha=0.15).ratios
    assert max(abs(a - b) for a, b in zip(p_ref, p_got)) < 0.02


def test_bf16_model_gives_same_plan():
    """A bf16 model end to end (weights, compute, activations; fp32 statistics) versus fp32."""
    model, _ = load_model("tiny-llama")
    ids = _ids(n=8, t=64, seed=8)
    ref = compute_dense_statistics(model, ids, progress=False)
    got = compute_dense_statistics(model.to(torch.bfloat16), ids, progress=False)
    p_ref = build_plan("dlp", 0.7, stats=ref, alpha=0.15).ratios
    p_got = build_plan("dlp", 0.7, stats=got, alpha=0.15).ratios
    assert max(abs(a - b) for a, b in zip(p_ref, p_got)) < 0.03
