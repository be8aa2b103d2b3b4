"""The bitmask-bf16 format: packing keeps exactly the bf16-rounded non-zeros, the C++ kernel
computes the dense product of those weights within fp32 summation error (vectorised and scalar,
1 and 2 threads), whole models decode what the bf16-rounded masked model decodes, and the byte
counts of every format are what the layouts store."""
import pytest
import torch
from torch import nn

from dlp_lib.inference import DenseLinear, SparseLinear, greedy_decode, measure_break_even, sparsify_model
from dlp_lib.inference import native
from dlp_lib.inference.bitmask import BitmaskLinear, BitmaskMatrix
from dlp_lib.inference.traffic import bytes_per_kept_weight, format_bytes, memory_bound_speedup
from dlp_lib.models import decoder_blocks, linear_modules, linear_sublayers, load_model
from dlp_lib.plan import SparsityPlan
from dlp_lib.pruning import prune_model

U = 2.0 ** -24  # fp32 unit roundoff


def _bf16_rounded_blocks(model):
    """The model with every decoder-block linear weight rounded to bf16 (what the format stores)."""
    import copy
    ref = copy.deepcopy(model)
    for block in decoder_blocks(ref):
        for layer in linear_modules(linear_sublayers(block), "bf16 rounding").values():
            layer.weight.data = layer.weight.data.bfloat16().float()
    return ref


@pytest.mark.parametrize("density", [0.02, 0.1, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("shape", [(64, 96), (37, 77), (5, 1000)])
def test_matvec_equals_dense_product_of_bf16_weights(density, shape):
    g = torch.Generator().manual_seed(int(density * 100) + shape[1])
    W = torch.randn(*shape, generator=g) * (torch.rand(*shape, generator=g) < density)
    x = torch.randn(shape[1], generator=g)
    B = BitmaskMatrix.from_dense(W)
    Wb = W.bfloat16().float()
    assert B.nnz == int((W != 0).sum())
    # the stored matrix read back column by column: W e_j is one exact product per row
    stored = torch.stack([B.matvec(e, threads=1) for e in torch.eye(shape[1])], dim=1)
    assert torch.equal(stored, Wb)
    ref = Wb.double() @ x.double()
    # recursive fp32 summation of n products: |error| <= n u sum |w x| (+ one rounding per product)
    bound = (shape[1] + 1) * U * (Wb.double().abs() @ x.double().abs()) + 1e-30
    paths = [(v, t) for v in ((True, False) if native.has_avx512() else (False,)) for t in (1, 2)]
    for vectorised, threads in paths:
        y = B.matvec(x, threads=threads, vectorised=vectorised).double()
        err = (y - ref).abs()
        assert bool((err <= bound).all()), f"max abs diff {err.max():.3g} above the fp32 bound ({vectorised=}, {threads=})"
        assert float((err / bound).max()) < 0.05      # in practice far inside the worst case


def test_layer_matches_dense_layer_and_counts_bytes():
    g = torch.Generator().manual_seed(3)
    lin = nn.Linear(96, 40, bias=True)
    lin.weight.data = torch.randn(40, 96, generator=g) * (torch.rand(40, 96, generator=g) < 0.3)
    layer = BitmaskLinear.from_linear(lin)
    ref_lin = nn.Linear(96, 40, bias=True)
    ref_lin.weight.data, ref_lin.bias.data = lin.weight.data.bfloat16().float(), lin.bias.data
    for shape in [(1, 1, 96), (2, 3, 96)]:
        x = torch.randn(*shape, generator=g)
        torch.testing.assert_close(layer(x), ref_lin(x), rtol=1e-5, atol=1e-5)
    nnz = int((lin.weight != 0).sum())
    assert layer.stored_bytes() == 40 * 3 * 4 + nnz * 2 + 41 * 4      # 3 mask words per row, bf16, int32 offsets
    assert layer.stored_bytes() == format_bytes("bitmask", (40, 96), nnz)


def test_format_bytes_match_the_stored_layers():
    g = torch.Generator().manual_seed(4)
    lin = nn.Linear(48, 32, bias=False)
    lin.weight.data = torch.randn(32, 48, generator=g) * (torch.rand(32, 48, generator=g) < 0.4)
    nnz = int((lin.weight != 0).sum())
    for fmt in ("csr", "coo"):
        assert SparseLinear.from_linear(lin, fmt).stored_bytes() == format_bytes(fmt, (32, 48), nnz)
    assert DenseLinear.from_linear(lin).stored_bytes() == format_bytes("dense", (32, 48), nnz)
    assert format_bytes("dense-bf16", (32, 48), nnz) == 32 * 48 * 2
    # per kept weight at 30% density: CSR 8 (+ row pointers), bitmask 2 + 1/(8 * 0.3)
    shape = (576, 1536)
    assert bytes_per_kept_weight("csr", shape, 0.3) == pytest.approx(8, abs=0.01)
    assert bytes_per_kept_weight("bitmask", shape, 0.3) == pytest.approx(2 + 1 / 2.4, abs=0.01)
    assert memory_bound_speedup("csr", shape, 0.3) == pytest.approx(4 / (0.3 * 8), rel=0.01)
    assert memory_bound_speedup("bitmask", shape, 0.3, baseline="dense-bf16") == pytest.approx(
        2 / (0.3 * 2 + 1 / 8), rel=0.01)
    for bad, msg in [(lambda: format_bytes("bsr", shape, 1), "Unknown weight format 'bsr'"),
                     (lambda: format_bytes("csr", shape, -1), "nnz must be in"),
                     (lambda: bytes_per_kept_weight("csr", shape, 0.0), "density must be in"),
                     (lambda: BitmaskMatrix.from_dense(torch.ones(4)), "2-D weight"),
                     (lambda: BitmaskMatrix.from_dense(torch.ones(2, 2)).matvec(torch.ones(3)), r"shape \(2,\)")]:
        with pytest.raises(ValueError, match=msg):
            bad()


@pytest.fixture(scope="module")
def tiny_pruned():
    torch.set_num_threads(1)
    model, _ = load_model("tiny-llama")
    prune_model(model, SparsityPlan("manual", 0.5, [0.1, 0.4, 0.6, 0.8]), "magnitude", progress=False)
    return model


def test_tiny_model_logits_and_tokens_equal_bf16_rounded_model(tiny_pruned):
    report = sparsify_model(tiny_pruned, fmt="bitmask", break_even=1.0, inplace=False)
    assert report.format_counts() == {"bitmask": 28}
    ref = _bf16_rounded_blocks(tiny_pruned)
    ids = torch.randint(3, 256, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (report.model(ids).logits - ref(ids).logits).abs().max().item()
    assert diff < 1e-4, f"max logit difference {diff:.3g}"
    tokens, _ = greedy_decode(report.model, ids[:, :8], 12)
    ref_tokens, _ = greedy_decode(ref, ids[:, :8], 12)
    assert torch.equal(tokens, ref_tokens)
    # stored bytes per token are the layouts' counts, layer by layer
    assert sum(l.stored_bytes for l in report.layers) == sum(
        format_bytes("bitmask", l.shape, round(l.density * l.shape[0] * l.shape[1])) for l in report.layers)


def test_break_even_measures_the_bitmask_kernel():
    be = measure_break_even((64, 128), fmt="bitmask", threads=1, densities=(0.2, 0.6, 1.0), repeats=2,
                            cold_bytes=1 << 20)
    assert be.format == "bitmask" and len(be.sparse_us) == 3 and 0.0 <= be.density <= 1.0


@pytest.mark.integration
def test_smollm2_logits_equal_bf16_rounded_model():
    """The real model, 70% magnitude-pruned: one forward through the bitmask layers."""
    torch.set_num_threads(2)
    model, _ = load_model("smollm2-135m")
    prune_model(model, SparsityPlan("uniform", 0.7, [0.7] * len(decoder_blocks(model))), "magnitude", progress=False)
    report = sparsify_model(model, fmt="bitmask", break_even=1.0, inplace=False)
    ids = torch.randint(100, 40000, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = _bf16_rounded_blocks(model)(ids).logits
        out = report.model(ids).logits
    diff = (out - ref).abs().max().item()
    print(f"smollm2-135m 70% bitmask-bf16 vs bf16-rounded dense: max |logit difference| {diff:.3g} "
          f"(logit scale {ref.abs().max().item():.1f})")
    assert diff < 1e-3                     # fp32 summation-order noise on logits of magnitude ~10-30


def test_decode_benchmark_bitmask_path():
    from dlp_lib.experiment import ExperimentConfig, get_lab
    from dlp_lib.inference.decode_bench import DecodeGrid, run_decode_benchmark
    cfg = ExperimentConfig.from_profile("smoke", method="wanda", allocation="dlp", nsamples=2, seqlen=32)
    lab = get_lab(cfg.model, cfg.device, cfg.dtype, progress=False)
    out = run_decode_benchmark(lab, cfg, DecodeGrid(sparsities=(0.7,), threads=(1,), new_tokens=4, repeats=3,
                                                    fmt="bitmask", break_even=1.0), progress=False)
    e = out["sparsities"][0]
    r = e["threads"]["1"]
    assert set(r["layer_formats"]) == {"bitmask"}
    assert e["first_token_differing_from_masked_hf"] is None      # decodes what the bf16-rounded masked model does
    assert r["memory_bound_speedup"] == pytest.approx(r["bytes_per_token_dense"] / r["bytes_per_token_stored"])
    # the third arm, the unpruned model in the same format: timed in every repeat, and the two speedups it
    # splits the total into are medians of the paired per-repeat ratios
    f = r["format_dense"]
    assert len(f["ms_per_token"]) == len(r["dense_ms_per_token"]) == 3
    fd, d, sp = f["ms_per_token"], r["dense_ms_per_token"], r["sparse_ms_per_token"]
    assert f["speedup_paired_median"] == pytest.approx(sorted(a / b for a, b in zip(d, fd))[1])
    assert f["pruning_speedup_paired_median"] == pytest.approx(sorted(a / b for a, b in zip(fd, sp))[1])
    assert f["pruning_memory_bound_speedup"] == pytest.approx(out["format_dense_bytes_per_token"]
                                                              / r["bytes_per_token_stored"])
    # its bytes: every block weight in the format at density 1, so more than the 70%-pruned model's, fewer than fp32
    assert r["bytes_per_token_stored"] < out["format_dense_bytes_per_token"] < out["dense_bytes_per_token"]
    assert f["memory_bound_speedup"] == pytest.approx(out["dense_bytes_per_token"] / out["format_dense_bytes_per_token"])


def test_break_even_of_one_compresses_unpruned_layers():
    """The dense model in the bitmask format (the bf16 twin of the fp32 baseline): every layer
    compressed, even at density 1; the fp32 dense baseline (break-even 0) none."""
    model, _ = load_model("tiny-llama")
    assert sparsify_model(model, fmt="bitmask", break_even=1.0, inplace=False).format_counts() == {"bitmask": 28}
    assert sparsify_model(model, fmt="bitmask", break_even=0.0, inplace=False).format_counts() == {"dense": 28}
