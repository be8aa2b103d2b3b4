import pytest
import torch

from dlp_lib.compression.gptq import (check_quantization, gptq_quantize_, minmax_grid, quantize_model,
                                      rtn_quantize_, sparsegpt_quantize_, verify_layer)
from dlp_lib.sparsegpt import sparsegpt_prune_


def _problem(rows=24, cols=256, n=2048, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, cols, generator=g) @ torch.randn(cols, cols, generator=g) * 0.2  # correlated inputs
    W = torch.randn(rows, cols, generator=g)
    H = 2.0 / n * X.T @ X
    return W, X, H


def _textbook_rtn(W, bits, group=None):
    """Round-to-nearest written out element by element per row/group (independent of the library)."""
    maxq = 2 ** bits - 1
    out = torch.empty_like(W)
    g = group or W.shape[1]
    for r in range(W.shape[0]):
        for c0 in range(0, W.shape[1], g):
            seg = W[r, c0:c0 + g]
            lo, hi = min(float(seg.min()), 0.0), max(float(seg.max()), 0.0)
            if lo == 0 and hi == 0:
                lo, hi = -1.0, 1.0
            scale = (hi - lo) / maxq
            zero = round(-lo / scale)
            for c in range(seg.numel()):
                q = min(max(round(float(seg[c]) / scale) + zero, 0), maxq)
                out[r, c0 + c] = scale * (q - zero)
    return out


def _assert_on_grid(W, layer, bits):
    """Every kept weight is scale * (q - zero) with an integer q in [0, 2^b - 1] of its row/group."""
    g = torch.arange(W.shape[1]) // (layer.group_size or W.shape[1])
    scale, zero = layer.scale[:, g], layer.zero[:, g]
    q = torch.round(W / scale + zero)
    kept = ~layer.pruned
    assert torch.all((q[kept] >= 0) & (q[kept] <= 2 ** bits - 1))
    assert torch.allclose(W[kept], (scale * (q - zero))[kept], rtol=0, atol=1e-5)
    assert torch.all(zero == torch.round(zero))


@pytest.mark.parametrize("bits,group", [(3, None), (4, None), (4, 64), (8, 128)])
def test_identity_hessian_gptq_is_rtn(bits, group):
    # H = I: the Cholesky factor of (1.01 I)^-1 is diagonal, no error reaches other columns
    W, _, _ = _problem(cols=256)
    w = W.clone()
    gptq_quantize_(w, torch.eye(256), bits, group_size=group)
    ref = _textbook_rtn(W, bits, group)
    assert torch.allclose(w, ref, rtol=0, atol=1e-6)
    r = W.clone()
    rtn_quantize_(r, bits, group_size=group)
    assert torch.allclose(r, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("bits", [3, 4])
def test_gptq_reconstruction_beats_rtn_on_correlated_data(bits):
    W, X, H = _problem()
    q_gptq, q_rtn = W.clone(), W.clone()
    gptq_quantize_(q_gptq, H, bits)
    rtn_quantize_(q_rtn, bits)
    err_gptq = torch.linalg.norm(X @ W.T - X @ q_gptq.T)
    err_rtn = torch.linalg.norm(X @ W.T - X @ q_rtn.T)
    assert err_gptq < 0.9 * err_rtn


@pytest.mark.parametrize("group", [None, 32])
def test_pruned_weights_stay_zero_and_values_on_grid(group):
    W, X, H = _problem()
    pruned_w = W.clone()
    mask = sparsegpt_prune_(pruned_w, H, 0.7)
    assert torch.equal(pruned_w == 0, mask)
    w = pruned_w.clone()
    layer = gptq_quantize_(w, H, 3, group_size=group)
    assert torch.equal(layer.pruned, mask)
    zeros = w == 0
    assert torch.all(zeros[mask])                       # every pruned weight is exactly zero
    # the only other zeros are kept weights whose grid level is the zero point (0 is on the grid)
    g = torch.arange(w.shape[1]) // (group or w.shape[1])
    level = torch.round(w / layer.scale[:, g] + layer.zero[:, g])
    assert torch.equal(zeros, mask | (level == layer.zero[:, g]))
    _assert_on_grid(w, layer, 3)
    report = verify_layer(w, layer)
    assert report["pruned"] == report["pruned_still_zero"] == int(mask.sum())
    assert report["max_grid_residual"] < 1e-3 and report["levels_in_range"]
    # with its zeros fixed, GPTQ still reconstructs the pruned layer better than RTN
    r = pruned_w.clone()
    rtn_quantize_(r, 3, group_size=group)
    assert torch.linalg.norm(X @ (pruned_w - w).T) < torch.linalg.norm(X @ (pruned_w - r).T)


def test_joint_prune_and_quantize():
    W, X, H = _problem()
    w = W.clone()
    layer = sparsegpt_quantize_(w, H, 0.6, 4)
    for i in range(0, 256, 128):
        assert layer.pruned[:, i:i + 128].sum() == int(24 * 128 * 0.6)
    assert torch.all(w[layer.pruned] == 0)
    _assert_on_grid(w, layer, 4)
    # joint (one loop) beats pruning then rounding without error feedback
    p = W.clone()
    sparsegpt_prune_(p, H, 0.6)
    rtn_quantize_(p, 4)
    assert torch.linalg.norm(X @ (W - w).T) < torch.linalg.norm(X @ (W - p).T)


def test_minmax_grid_contains_zero_and_extremes():
    W = torch.tensor([[0.5, 1.5, 3.0], [-2.0, -1.0, -0.5], [0.0, 0.0, 0.0]])
    scale, zero = minmax_grid(W, 2)
    assert torch.allclose(scale, torch.tensor([1.0, 2.0 / 3, 2.0 / 3]))
    assert torch.equal(zero, torch.tensor([0.0, 3.0, 2.0]))  # row 0: [0, 3]; row 1: [-2, 0]; row 2: [-1, 1]


def test_bad_input():
    with pytest.raises(ValueError, match="bits"):
        check_quantization(5, None)
    with pytest.raises(ValueError, match="group_size"):
        check_quantization(4, 100)
    with pytest.raises(ValueError, match="mode"):
        check_quantization(4, None, "awq")


def test_quantize_model_tiny(tiny):
    import copy

    from dlp_lib.data import calibration_windows
    from dlp_lib.models import decoder_blocks, linear_sublayers
    from dlp_lib.plan import SparsityPlan
    from dlp_lib.pruning import prune_model

    model, tok = tiny
    model = copy.deepcopy(model)
    calib = calibration_windows("bbc", tok, 4, 64, 0)
    plan = SparsityPlan("uniform", 0.7, [0.7] * len(decoder_blocks(model)))
    prune_model(model, plan, "sparsegpt", calib, progress=False)
    masks = {(i, n): l.weight.data == 0 for i, b in enumerate(decoder_blocks(model))
             for n, l in linear_sublayers(b).items()}
    report = quantize_model(model, calib, 4, group_size=32, progress=False)
    assert report["pruned"] == report["pruned_still_zero"] == sum(int(m.sum()) for m in masks.values())
    assert report["levels_in_range"] and report["zero_points_integer"] and report["max_grid_residual"] < 1e-3
    for i, b in enumerate(decoder_blocks(model)):
        for n, l in linear_sublayers(b).items():
            assert torch.all(l.weight.data[masks[(i, n)]] == 0)
            levels = {round(v, 6) for v in l.weight.data[0, :32].tolist()}
            assert len(levels) <= 16
    with pytest.raises(ValueError, match="plan"):
        quantize_model(model, calib, 4, mode="joint")


def _reference_gptq(W, H, bits, groupsize=-1, blocksize=128, percdamp=0.01):
    """IST-DASLab/gptq's `GPTQ.fasterquant` (no act-order, no static groups) with its `Quantizer`
    (per-row asymmetric min-max, weight=True), written out here as a separate copy."""
    maxq = 2 ** bits - 1

    def find_params(x):
        xmin = torch.minimum(x.min(1).values, torch.zeros(x.shape[0]))
        xmax = torch.maximum(x.max(1).values, torch.zeros(x.shape[0]))
        tmp = (xmin == 0) & (xmax == 0)
        xmin[tmp], xmax[tmp] = -1, +1
        scale = (xmax - xmin) / maxq
        return scale.unsqueeze(1), torch.round(-xmin / scale).unsqueeze(1)

    def quant(x, scale, zero):
        return scale * (torch.clamp(torch.round(x / scale) + zero, 0, maxq) - zero)

    W, H = W.clone().float(), H.clone()
    columns = W.shape[1]
    scale, zero = find_params(W)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    Q = torch.zeros_like(W)
    H[range(columns), range(columns)] += percdamp * torch.mean(torch.diag(H))
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        W1 = W[:, i1:i2].clone()
        Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w, d = W1[:, i], Hinv1[i, i]
            if groupsize != -1 and (i1 + i) % groupsize == 0:
                scale, zero = find_params(W[:, i1 + i:i1 + i + groupsize])
            q = quant(w.unsqueeze(1), scale, zero).flatten()
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return Q


@pytest.mark.parametrize("group", [None, 32, 64])
def test_gptq_equals_reference_copy_on_random_matrix(group):
    """Grids fitted where the reference fits them: per-row on W before dead columns are zeroed (a
    dead column holds each row's largest weight here), groups on the outer W at the group's first
    column (not on the block copy the earlier columns of the block have updated)."""
    W, _, H = _problem(rows=16, cols=256, seed=3)
    dead = torch.tensor([5, 70, 200])
    H[dead, :] = 0
    H[:, dead] = 0
    W[:, 5] = W.abs().max(1).values * 3          # only a grid fitted before zeroing dead columns sees it
    expected = _reference_gptq(W, H, 4, groupsize=group or -1)
    got = W.clone()
    gptq_quantize_(got, H, 4, group_size=group, pruned=torch.zeros_like(W, dtype=torch.bool))
    mismatched = (got - expected).abs() > 1e-4
    assert int(mismatched.sum()) <= 2, int(mismatched.sum())     # a rounding tie may flip one level
