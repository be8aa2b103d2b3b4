"""The depth controls of DLP and block influence: formulas on hand-computed inputs, the BI statistic
against an independent computation, the warning for plans that run against depth."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from dlp_lib.allocation import AgainstDepthWarning, allocate_dlp, build_plan
from dlp_lib.allocation.block_influence import allocate_block_influence
from dlp_lib.allocation.depth_order import depth_rank_correlation, runs_against_depth
from dlp_lib.allocation.depth_ramp import allocate_depth_ramp
from dlp_lib.allocation.dlp_mirror import allocate_dlp_mirror
from dlp_lib.block_stats import DenseStatistics


def _stats(median, influence=()):
    return DenseStatistics(blocks=[{"median": float(m)} for m in median], block_influence=list(influence))


def test_depth_ramp_endpoints_and_mean():
    np.testing.assert_allclose(allocate_depth_ramp(5, 0.5, 0.1), [0.4, 0.45, 0.5, 0.55, 0.6])
    np.testing.assert_allclose(allocate_depth_ramp(1, 0.7, 0.15), [0.7])
    r = allocate_depth_ramp(30, 0.7, 0.15)
    assert r[0] == pytest.approx(0.55) and r[-1] == pytest.approx(0.85) and r.mean() == pytest.approx(0.7)


def test_depth_ramp_needs_no_statistic():
    p = build_plan("depth_ramp", 0.6, stats=_stats([1, 2, 3]), alpha=0.1)
    np.testing.assert_allclose(p.ratios, [0.5, 0.6, 0.7])


def test_dlp_mirror_reflects_dlp_about_p():
    # S = 1..4: RID = 0.9, 0.8, 0.7, 0.6 -> d = (1, 2/3, 1/3, 0) * 0.2, mean 0.1 -> DLP = 0.6 - d
    dlp = [0.4, 0.5 - 0.1 / 3, 0.5 + 0.1 / 3, 0.6]
    np.testing.assert_allclose(allocate_dlp([1, 2, 3, 4], 0.5, 0.1), dlp)
    mirror = allocate_dlp_mirror([1, 2, 3, 4], 0.5, 0.1)
    np.testing.assert_allclose(mirror, [0.6, 0.5 + 0.1 / 3, 0.5 - 0.1 / 3, 0.4])
    assert mirror.mean() == pytest.approx(0.5)
    p = build_plan("dlp_mirror", 0.5, stats=_stats([1, 2, 3, 4]), alpha=0.1)
    np.testing.assert_allclose(p.ratios, mirror)


def test_dlp_mirror_rebalanced_when_a_reflection_leaves_the_range():
    with pytest.warns(UserWarning, match="mirrored DLP ratio"):
        r = allocate_dlp_mirror([1, 5, 5, 5], 0.9, 0.12)
    assert r.max() <= 0.99 and r.mean() == pytest.approx(0.9)


def test_block_influence_most_influential_pruned_least():
    # BI = .3 .1 .2 .4: minmax -> 2/3, 0, 1/3, 1; d = that * 0.2, mean 0.1; R = 0.6 - d
    r = allocate_block_influence([0.3, 0.1, 0.2, 0.4], 0.5, 0.1)
    np.testing.assert_allclose(r, [0.6 - 0.4 / 3, 0.6, 0.6 - 0.2 / 3, 0.4])
    assert r.mean() == pytest.approx(0.5)
    # Algorithm 1 on S = 1 - BI (lower S = more important) gives the same ratios
    np.testing.assert_allclose(r, allocate_dlp(1 - np.array([0.3, 0.1, 0.2, 0.4]), 0.5, 0.1))
    p = build_plan("block_influence", 0.5, stats=_stats([1, 1, 1, 1], [0.3, 0.1, 0.2, 0.4]), alpha=0.1)
    np.testing.assert_allclose(p.ratios, r)
    assert p.block_statistic == [0.3, 0.1, 0.2, 0.4]


def test_block_influence_matches_an_independent_forward(tiny):
    """BI from pass 1's hooks equals 1 - mean cos of consecutive hidden states of a plain forward."""
    from dlp_lib.block_stats import compute_dense_statistics
    from dlp_lib.models import decoder_blocks
    model, _ = tiny
    ids = torch.randint(0, 200, (3, 24), generator=torch.Generator().manual_seed(1))
    stats = compute_dense_statistics(model, ids, batch_size=2, progress=False)
    blocks = decoder_blocks(model)
    seen = {}
    handles = [b.register_forward_hook(lambda m, a, k, o, i=i: seen.__setitem__(i, (k.get("hidden_states", a[0] if a else None), o[0] if isinstance(o, tuple) else o)), with_kwargs=True)
               for i, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            model(ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    want = [1 - torch.nn.functional.cosine_similarity(x.double(), y.double(), dim=-1).mean().item()
            for x, y in (seen[i] for i in range(len(blocks)))]
    np.testing.assert_allclose(stats.block_influence, want, rtol=1e-5, atol=1e-6)
    again = compute_dense_statistics(model, ids, batch_size=3, progress=False)  # the replay check is not counted
    np.testing.assert_allclose(again.block_influence, want, rtol=1e-5, atol=1e-6)


def test_depth_rank_correlation_by_hand():
    assert depth_rank_correlation([0.5, 0.6, 0.7]) == pytest.approx(1.0)
    assert depth_rank_correlation([0.7, 0.6, 0.5]) == pytest.approx(-1.0)
    assert depth_rank_correlation([0.6, 0.6, 0.6]) == 0.0
    # ranks 1, 3, 2, 4 against 1..4: rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert depth_rank_correlation([0.1, 0.3, 0.2, 0.4]) == pytest.approx(0.8)


def test_against_depth_rule():
    assert runs_against_depth([0.8, 0.7, 0.6, 0.5])                # rho = -1
    assert runs_against_depth([0.9, 0.5, 0.6, 0.7, 0.8])           # rho > 0 but block 0 alone is largest
    assert not runs_against_depth([0.5, 0.6, 0.7, 0.8])
    assert not runs_against_depth([0.7, 0.7, 0.7])


def test_dlp_warns_when_its_statistic_ranks_against_depth():
    falling = _stats([8, 4, 2, 1])        # large first-block statistic (Gemma-3): DLP prunes block 0 hardest
    with pytest.warns(AgainstDepthWarning, match="notebook 15.*--allocation auto"):
        p = build_plan("dlp", 0.7, stats=falling)
    assert p.ratios[0] == max(p.ratios)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AgainstDepthWarning)
        build_plan("dlp", 0.7, stats=_stats([1, 2, 4, 8]))       # rising with depth: no warning
        build_plan("dlp_mirror", 0.7, stats=falling)             # the mirror follows depth
