import torch

from dlp_lib.scores import NMPattern
from dlp_lib.sparsegpt import sparsegpt_prune_


def _problem(rows=24, cols=256, n=2048, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, cols, generator=g) @ torch.randn(cols, cols, generator=g) * 0.2
    W = torch.randn(rows, cols, generator=g)
    H = 2.0 / n * X.T @ X
    return W, X, H


def test_mask_count_per_column_block_and_zeros():
    W, X, H = _problem()
    w = W.clone()
    mask = sparsegpt_prune_(w, H, 0.5)
    for i in range(0, 256, 128):
        assert mask[:, i:i + 128].sum() == int(24 * 128 * 0.5)
    assert torch.all(w[mask] == 0)


def test_obs_update_beats_plain_masking():
    W, X, H = _problem()
    w = W.clone()
    mask = sparsegpt_prune_(w, H, 0.6)
    plain = W.clone()
    plain[mask] = 0
    err_update = ((X @ (W - w).T) ** 2).sum()
    err_plain = ((X @ (W - plain).T) ** 2).sum()
    assert err_update < 0.8 * err_plain


def test_nm():
    W, X, H = _problem(cols=128)
    w = W.clone()
    mask = sparsegpt_prune_(w, H, 0.0, nm=NMPattern(2, 4))
    assert torch.all(mask.reshape(24, 32, 4).sum(-1) == 2)
    assert torch.all(w[mask] == 0)


def test_dead_columns():
    W, X, H = _problem(cols=128)
    H[:, 5] = 0
    H[5, :] = 0
    w = W.clone()
    sparsegpt_prune_(w, H, 0.5)
    assert torch.all(w[:, 5] == 0)
