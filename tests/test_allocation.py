import warnings

import numpy as np
import pytest

from dlp_lib.allocation import (PAPER_ALPHA, RatioRangeWarning, allocate_dlp, allocate_owl, allocate_uniform,
                                paper_alpha, rebalance, relative_importance)


def test_dlp_matches_hand_computation():
    S = [1.0, 2.0, 4.0, 3.0]
    p, a = 0.5, 0.05
    # I = 1 - S/10 = [0.9, 0.8, 0.6, 0.7]; minmax -> [1, 2/3, 0, 1/3]; d = x * 0.1
    d = np.array([1.0, 2 / 3, 0.0, 1 / 3]) * 0.1
    expected = p + d.mean() - d
    got = allocate_dlp(S, p, a)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(relative_importance(S), [0.9, 0.8, 0.6, 0.7])
    # higher unimportance -> higher sparsity
    assert np.argmax(got) == 2 and np.argmin(got) == 0


@pytest.mark.parametrize("p", [0.1, 0.5, 0.7, 0.8])
def test_dlp_mean_equals_target_and_range(p):
    rng = np.random.default_rng(0)
    S = rng.lognormal(size=32)
    a = PAPER_ALPHA[p]
    r = allocate_dlp(S, p, a)
    assert abs(r.mean() - p) < 1e-12
    assert r.min() >= p - 2 * a - 1e-12 and r.max() <= p + 2 * a + 1e-12
    assert np.all((r >= 0) & (r < 1))


def test_dlp_only_depends_on_minmax_normalised_statistic():
    S = np.array([3.0, 5.0, 4.0, 9.0])
    n = (S - S.min()) / (S.max() - S.min())
    np.testing.assert_allclose(allocate_dlp(S, 0.6, 0.1), 0.6 + 0.2 * (n - n.mean()), atol=1e-12)
    # an affine change of S (scale and shift) changes I but not the plan
    np.testing.assert_allclose(allocate_dlp(S, 0.6, 0.1), allocate_dlp(10 * S + 7, 0.6, 0.1), atol=1e-12)


def test_owl_formula():
    D = [5.0, 1.0, 3.0]
    r = allocate_owl(D, 0.7, 0.08)
    d = np.array([1.0, 0.0, 0.5]) * 0.16
    np.testing.assert_allclose(r, 0.7 - (d - d.mean()))
    assert r[0] < r[2] < r[1]  # more outliers -> less sparsity


def test_out_of_range_ratios_are_clamped_rebalanced_and_warned():
    S = [1.0, 1.0, 1.0, 10.0]
    with pytest.warns(RatioRangeWarning, match="outside"):
        r = allocate_dlp(S, 0.9, 0.3)
    assert abs(r.mean() - 0.9) < 1e-9
    assert np.all((r >= 0) & (r < 1))
    with pytest.raises(ValueError, match="outside"):
        allocate_dlp(S, 0.9, 0.3, strict=True)


def test_rebalance_weighted_mean():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = rebalance([-0.2, 0.5, 1.3], 0.5, weights=[1, 2, 3])
    assert abs(np.average(r, weights=[1, 2, 3]) - 0.5) < 1e-9
    assert r.min() >= 0 and r.max() < 1


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.2])
def test_bad_sparsity(bad):
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        allocate_uniform(4, bad)
    with pytest.raises(ValueError, match="sparsity"):
        allocate_dlp([1, 2, 3], bad, 0.05)


def test_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        allocate_dlp([1, 2, 3], 0.5, 0.6)
    with pytest.raises(ValueError, match="alpha"):
        allocate_dlp([1, 2, 3], 0.5, -0.1)


def test_paper_alpha_table19():
    assert paper_alpha(0.7) == 0.15 and paper_alpha(0.5) == 0.04 and paper_alpha(0.8) == 0.12


def test_uniform():
    assert np.all(allocate_uniform(5, 0.3) == 0.3)
