"""Sparse inference path: compressed layers compute what the dense masked model computes, decode
the same tokens, stay dense above the break-even, and the byte bound is what the densities say."""
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from dlp_lib.inference import (DenseLinear, SparseLinear, break_even_density, greedy_decode, measure_break_even,
                               semi_structured_linear, sparsify_model, to_compressed)
from dlp_lib.inference import break_even as be_mod
from dlp_lib.inference.break_even import crossing
from dlp_lib.models import decoder_blocks, linear_sublayers, load_model
from dlp_lib.plan import SparsityPlan
from dlp_lib.pruning import prune_model

warnings.filterwarnings("ignore", message=".*[Ss]parse.*")


@pytest.fixture(scope="module")
def pruned():
    """tiny-llama magnitude-pruned with very different per-block ratios (density 0.9 .. 0.2)."""
    torch.set_num_threads(1)
    model, _ = load_model("tiny-llama")
    plan = SparsityPlan("manual", 0.5, [0.1, 0.4, 0.6, 0.8])
    prune_model(model, plan, "magnitude", progress=False)
    return model


def _ids(n=12, seed=0):
    return torch.randint(3, 256, (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fmt", ["csr", "bsr", "coo"])
def test_compressed_matmul_equals_dense(fmt):
    g = torch.Generator().manual_seed(1)
    W = torch.randn(32, 48, generator=g) * (torch.rand(32, 48, generator=g) < 0.3)
    lin = nn.Linear(48, 32, bias=True)
    lin.weight.data.copy_(W)
    sparse = SparseLinear.from_linear(lin, fmt)
    dense = DenseLinear.from_linear(lin)
    for shape in [(1, 1, 48), (2, 5, 48)]:
        x = torch.randn(*shape, generator=g)
        ref = x.double() @ W.double().t() + lin.bias.double()       # textbook, float64
        torch.testing.assert_close(sparse(x).double(), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dense(x).double(), ref, rtol=1e-5, atol=1e-5)
    assert sparse.nnz == int((W != 0).sum())
    if fmt != "coo":
        assert sparse.W.col_indices().dtype == torch.int32 and sparse.W.crow_indices().dtype == torch.int32


def test_sparse_logits_equal_dense_masked_model(pruned):
    ids = _ids(20)
    with torch.no_grad():
        ref = pruned(ids).logits
        for fmt in ("csr", "bsr", "coo"):
            report = sparsify_model(pruned, fmt=fmt, break_even=1.0, inplace=False)
            assert report.format_counts() == {fmt: 28}                  # every block linear compressed
            torch.testing.assert_close(report.model(ids).logits, ref, rtol=1e-5, atol=1e-5)
    # inplace=False left the HF model untouched
    assert all(isinstance(w.module, nn.Linear) for b in decoder_blocks(pruned) for w in linear_sublayers(b).values())


def test_greedy_tokens_identical_and_equal_generate(pruned):
    ids = _ids(10, seed=3)
    tokens_dense, times = greedy_decode(pruned, ids, 24)
    assert len(times) == 24 and all(t > 0 for t in times)
    gen = pruned.generate(ids, do_sample=False, max_new_tokens=24, min_new_tokens=24, use_cache=True,
                          pad_token_id=0)
    assert torch.equal(gen[0, ids.shape[1]:], tokens_dense)           # our loop = HF's greedy search
    sparse = sparsify_model(pruned, break_even=1.0, inplace=False).model
    tokens_sparse, _ = greedy_decode(sparse, ids, 24)
    assert torch.equal(tokens_sparse, tokens_dense)


def test_layers_above_break_even_stay_dense(pruned):
    report = sparsify_model(pruned, break_even=0.5, inplace=False)
    model = report.model
    assert len(report.layers) == 28
    for layer in report.layers:
        module = model.get_submodule(layer.name)
        if layer.density < 0.5:
            assert isinstance(module, SparseLinear) and layer.format == "csr"
        else:
            assert isinstance(module, DenseLinear) and layer.format == "dense"
    counts = report.format_counts()
    assert counts["csr"] == 14 and counts["dense"] == 14                 # blocks 2, 3 sparse; 0, 1 dense
    assert isinstance(model.lm_head, DenseLinear) and report.lm_head.format == "dense"
    # break_even = 0: the dense baseline, same plain path everywhere
    assert sparsify_model(pruned, break_even=0.0, inplace=False).format_counts() == {"dense": 28}
    # per-shape thresholds
    shapes = {l.shape for l in report.layers}
    per_shape = {s: (1.0 if s == (64, 64) else 0.0) for s in shapes}
    r2 = sparsify_model(pruned, break_even=per_shape, inplace=False)
    assert all((l.format == "csr") == (l.shape == (64, 64)) for l in r2.layers)


def test_byte_bound_recomputed_from_densities(pruned):
    report = sparsify_model(pruned, break_even=0.5, inplace=False)
    dense = stored = 0
    for block in decoder_blocks(pruned):
        for layer in linear_sublayers(block).values():
            rows, cols = layer.weight.shape
            nnz = int((layer.weight != 0).sum())
            dense += rows * cols * 4
            # CSR: fp32 value + int32 column index per non-zero, int32 row pointers
            stored += nnz * 8 + (rows + 1) * 4 if nnz / (rows * cols) < 0.5 else rows * cols * 4
    vocab, hidden = pruned.lm_head.weight.shape
    fixed = vocab * hidden * 4 + hidden * 4                              # lm_head + one embedding row
    fixed += sum(p.numel() * 4 for n, p in pruned.named_parameters() if "norm" in n)
    assert report.bytes_per_token() == {"dense": dense + fixed, "stored": stored + fixed}
    assert report.memory_bound_speedup() == pytest.approx((dense + fixed) / (stored + fixed))
    assert report.lm_head.dense_bytes == vocab * hidden * 4


def test_dense_path_equals_hf_linear(pruned):
    base = sparsify_model(pruned, break_even=0.0, inplace=False).model
    ids = _ids(16, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(base(ids).logits, pruned(ids).logits, rtol=1e-5, atol=1e-5)


def test_crossing_fits_a_line_robustly():
    d = [0.1, 0.2, 0.3, 0.4, 0.5]
    t = [2.0 + 20.0 * x for x in d]                                     # 4, 6, 8, 10, 12
    assert crossing(d, 9.0, t) == pytest.approx(0.35)                   # (9 - 2) / 20
    t_noisy = list(t)
    t_noisy[1] = 50.0                                                   # one disturbed timing
    assert crossing(d, 9.0, t_noisy) == pytest.approx(0.35)
    assert crossing(d, 3.0, t) == pytest.approx(0.05)
    assert crossing(d, 1.0, t) == 0.0                                   # never faster
    assert crossing(d, 100.0, t) == 0.5                                 # faster on the whole grid: top of grid


def test_break_even_measured_once_and_cached(monkeypatch):
    calls = []
    real = be_mod.measure_break_even

    def counting(*a, **k):
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr(be_mod, "measure_break_even", counting)
    monkeypatch.setattr(be_mod, "_MEASURED", {})
    opts = dict(densities=(0.1, 0.5), repeats=1, cold_bytes=1 << 16)
    first = break_even_density((16, 32), threads=1, use_cache=False, **opts)
    second = break_even_density((16, 32), threads=1, use_cache=False, **opts)
    assert first is second and len(calls) == 1
    assert first.threads == 1 and 0.0 <= first.density <= 0.5 and len(first.sparse_us) == 2
    break_even_density((16, 32), threads=2, use_cache=False, **opts)   # another thread count: measured again
    assert len(calls) == 2


def test_bad_input_is_refused(pruned):
    with pytest.raises(ValueError, match="Unknown sparse format"):
        sparsify_model(pruned, fmt="ell", break_even=0.5, inplace=False)
    with pytest.raises(ValueError, match="break_even"):
        sparsify_model(pruned, break_even=1.5, inplace=False)
    with pytest.raises(ValueError, match="no entry for shape"):
        sparsify_model(pruned, break_even={(1, 1): 0.5}, inplace=False)
    with pytest.raises(ValueError, match="densities"):
        measure_break_even((8, 8), densities=(0.0,))
    with pytest.raises(ValueError, match="divisible"):
        to_compressed(torch.zeros(6, 8), "bsr", blocksize=4)
    with pytest.raises(ValueError, match="shape"):
        greedy_decode(pruned, torch.zeros(2, 3, dtype=torch.long), 4)
    # 2:4 kernels exist only on CUDA: refused on CPU instead of silently running dense
    with pytest.raises(ValueError, match="CUDA"):
        semi_structured_linear(nn.Linear(8, 8))


# ---------------------------------------------------------------- benchmarks and verdicts (notebook 12)
@pytest.fixture(scope="module")
def tiny_lab():
    from dlp_lib.experiment import ExperimentConfig, get_lab
    cfg = ExperimentConfig.from_profile("smoke", method="wanda", allocation="dlp", nsamples=2, seqlen=32)
    return get_lab(cfg.model, cfg.device, cfg.dtype, progress=False), cfg


def test_decode_benchmark_smoke(tiny_lab):
    from dlp_lib.inference.decode_bench import DecodeGrid, run_decode_benchmark
    lab, cfg = tiny_lab
    out = run_decode_benchmark(lab, cfg, DecodeGrid(sparsities=(0.8,), threads=(1,), new_tokens=4, repeats=2,
                                                    break_even=0.5), progress=False)
    e = out["sparsities"][0]
    r = e["threads"]["1"]
    assert len(r["dense_ms_per_token"]) == 2 and r["speedup"] > 0
    assert "format_dense" not in r and out["format_dense_bytes_per_token"] is None   # CSR stores fp32 values: no twin
    assert r["memory_bound_speedup"] == pytest.approx(r["bytes_per_token_dense"] / r["bytes_per_token_stored"])
    assert r["bytes_per_token_dense"] == out["dense_bytes_per_token"]
    assert e["first_token_differing_from_masked_hf"] is None       # compressed decodes what the masked model does
    assert abs(e["achieved_sparsity"]["overall"] - 0.8) < 0.02
    # compressed exactly where the layer's density is below the threshold
    assert all((f == "csr") == (d < 0.5) for d, f in zip(r["layer_densities"], r["layer_formats"]))
    assert lab._pruned_key is None                                       # the Lab is dense again


def test_metric_time_smoke(tiny_lab):
    from dlp_lib.inference.metric_time import MetricTimeGrid, run_metric_time
    lab, cfg = tiny_lab
    out = run_metric_time(lab, cfg, MetricTimeGrid(methods=("magnitude", "wanda"), repeats=2, blocks=(0, 2)),
                          progress=False)
    assert out["timed_blocks"] == [0, 2] and out["n_blocks"] == 4
    for m in ("magnitude", "wanda"):
        for a in ("uniform", "dlp"):
            runs = out["seconds"][m][a]
            assert len(runs) == 2 and all(t > 0 for t in runs)
            # totals are the timed blocks' sum scaled to all 4 blocks
            assert runs[0] == pytest.approx(2.0 * sum(out["per_block_seconds"][m][a][0]))
            c = out["ci95"][m][a]
            assert c["low"] <= c["mean"] <= c["high"]
    assert len(set(out["ratios"]["dlp"])) > 1 and len(set(out["ratios"]["uniform"])) == 1
    assert out["dlp_ratio_computation"]["statistics_reduction_ci95"]["mean"] > 0
    with pytest.raises(ValueError, match="blocks"):
        run_metric_time(lab, cfg, MetricTimeGrid(methods=("magnitude",), repeats=2, blocks=(9,)), progress=False)


def test_t_interval_textbook():
    from dlp_lib.inference.metric_time import t_interval
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    c = t_interval(x)
    # mean 3, sample sd sqrt(2.5), t_{0.975, 4} = 2.776445 (statistical tables)
    assert c["mean"] == 3.0 and c["sd"] == pytest.approx(math.sqrt(2.5))
    assert c["half_width"] == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([1.0])


def test_speed_verdicts():
    from dlp_studies.speed import metric_time_verdict, speedup_verdict, trend_verdict
    assert "no speedup beyond noise" in speedup_verdict(1.03, 0.05, 2.0, 0.5)
    assert "SLOWER" in speedup_verdict(0.7, 0.05, 1.2, 0.5)
    v = speedup_verdict(1.5, 0.05, 2.0, 0.8)
    assert "real speedup" in v and "75% of the bound" in v and "50% of the bound's gain" in v
    assert "ABOVE the bound" in speedup_verdict(1.3, 0.05, 1.01, 0.5)
    assert "of the bound's gain" not in speedup_verdict(1.03, 0.005, 1.04, 0.5)
    with pytest.raises(ValueError):
        speedup_verdict(1.0, -1.0, 2.0, 0.5)
    assert "grows with sparsity" in trend_verdict([0.5, 0.7, 0.9], [1.0, 1.3, 1.8], [0.05, 0.05, 0.05])
    assert "NOT grow" in trend_verdict([0.5, 0.7, 0.9], [1.0, 1.6, 1.2], [0.05, 0.05, 0.05])
    assert "flat within noise" in trend_verdict([0.5, 0.9], [1.0, 1.1], [0.2, 0.2])
    # paired differences: a constant +10% gap is beyond any interval; noise around 0 is not
    assert "slower than Uniform's beyond" in metric_time_verdict("wanda", [1.0, 1.1, 0.9, 1.0], [1.1, 1.2, 1.0, 1.1 + 1e-3])
    assert "within the 95% CI" in metric_time_verdict("wanda", [1.0, 1.1, 0.9, 1.0], [1.02, 1.07, 0.92, 0.99])


def test_decode_bench_command_writes_json(tmp_path):
    import argparse
    import json

    from dlp_lib.experiment import lab_for
    from dlp_lib.inference.cli import add_arguments, checked_config, run
    out = tmp_path / "decode.json"
    args = add_arguments(argparse.ArgumentParser()).parse_args(
        ["--model", "tiny-llama", "--sparsities", "0.8", "--threads", "1", "--new-tokens", "3", "--repeats", "1",
         "--break-even", "0.5", "--nsamples", "2", "--seqlen", "32", "--out", str(out), "--no-progress"])
    cfg = checked_config(args)
    run(args, cfg, lab_for(cfg, progress=False))
    d = json.loads(out.read_text())
    assert d["provenance"]["commit"] and d["grid"]["sparsities"] == [0.8]
    # the vector extensions that decide which kernels ran, as /proc/cpuinfo lists them
    cpuinfo = Path("/proc/cpuinfo").read_text().split()
    assert all(f in cpuinfo and f.startswith(("avx", "amx", "fma", "f16c", "sse4")) for f in d["provenance"]["cpu_flags"])
    assert ("avx512_vbmi2" in d["provenance"]["cpu_flags"]) == ("avx512_vbmi2" in cpuinfo)
    assert d["sparsities"][0]["threads"]["1"]["format_counts"]["csr"] > 0
    with pytest.raises(ValueError, match="sparsities"):
        checked_config(add_arguments(argparse.ArgumentParser()).parse_args(["--model", "tiny-llama", "--sparsities",
                                                                           "1.5"]))


def test_the_unpruned_twin_counts_only_where_every_layer_is_in_the_format():
    from dlp_lib.inference.decode_bench import comparable_twin
    twin = {"pruning_speedup_paired_median": 1.7}
    assert comparable_twin({"format_counts": {"bitmask": 3}, "format_dense": twin}, "bitmask") is twin
    assert comparable_twin({"format_counts": {"bitmask": 2, "dense": 1}, "format_dense": twin}, "bitmask") is None
    assert comparable_twin({"format_counts": {"bitmask": 3}}, "bitmask") is None
