"""Study code of the notebooks: noise rule, verdict functions on inputs with a known answer, the
LOD bound against a brute-force count, the palette and the figure titles. No model runs."""
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from dlp_studies import paper, plots, report, verdicts as v  # noqa: E402


# ------------------------------------------------------------------------------------ compare

def test_compare_clear_win_tie_and_loss():
    win = v.compare([10.0, 10.5, 9.8], [20.0, 19.0, 21.0])
    assert win["verdict"] == v.A_BETTER and win["gap"] == pytest.approx(np.mean([10, 10.5, 9.8]) - 20.0)
    tie = v.compare([10.0, 12.0, 11.0], [11.5, 10.5, 12.5])
    assert tie["verdict"] == v.WITHIN_NOISE
    loss = v.compare([30.0, 31.0, 29.0], [20.0, 19.0, 21.0])
    assert loss["verdict"] == v.B_BETTER


def test_compare_noise_is_max_of_two_se_and_spread():
    a, b = [1.0, 2.0, 3.0], [5.0, 5.5, 6.0]
    c = v.compare(a, b)
    se = math.sqrt(np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 3)  # independent textbook formula
    assert c["se"] == pytest.approx(se)
    assert c["spread"] == pytest.approx(2.0)
    assert c["noise"] == pytest.approx(max(2 * se, 2.0))
    # a gap just inside / just outside the noise band
    assert v.compare([0.0, 1.0], [0.9, 1.9])["verdict"] == v.WITHIN_NOISE
    assert v.compare([0.0, 0.01], [5.0, 5.01])["verdict"] == v.A_BETTER


def test_compare_symmetry_and_identical_samples():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.normal(10, 2, size=3), rng.normal(11, 2, size=3)
        ab, ba = v.compare(a, b), v.compare(b, a)
        assert ab["gap"] == pytest.approx(-ba["gap"]) and ab["noise"] == pytest.approx(ba["noise"])
        swap = {v.A_BETTER: v.B_BETTER, v.B_BETTER: v.A_BETTER, v.WITHIN_NOISE: v.WITHIN_NOISE}
        assert swap[ab["verdict"]] == ba["verdict"]
        assert v.compare(a, a)["verdict"] == v.WITHIN_NOISE
    assert v.compare([5.0], [5.0])["verdict"] == v.WITHIN_NOISE


def test_compare_bad_input():
    with pytest.raises(ValueError, match="a_values"):
        v.compare([], [1.0])
    with pytest.raises(ValueError, match="b_values"):
        v.compare([1.0], [float("nan")])


def test_compare_means():
    assert v.compare_means(50.0, 1.0, 40.0, 1.0, lower_is_better=False)["verdict"] == v.A_BETTER
    assert v.compare_means(50.0, 2.0, 47.0, 2.0, lower_is_better=False)["verdict"] == v.WITHIN_NOISE
    assert v.compare_means(40.0, 1.0, 50.0, 1.0, lower_is_better=False)["verdict"] == v.B_BETTER


def test_spearman_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for _ in range(20):
        x, y = rng.integers(0, 5, 12).astype(float), rng.normal(size=12)
        assert v.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


# ------------------------------------------------------------------------------------ LOD bound

def test_lod_upper_bound_never_exceeded_brute_force():
    rng = np.random.default_rng(2)
    for m in (1.0, 2.0, 3.0, 5.0, 7.0, 10.0):
        for draw in (lambda n: rng.exponential(size=n), lambda n: rng.pareto(1.1, size=n),
                     lambda n: rng.exponential(size=n) * (rng.random(n) > 0.7)):  # 70% zeros, as after pruning
            x = draw(5000)
            share = 100.0 * np.count_nonzero(x > m * x.mean()) / x.size
            assert share <= v.lod_upper_bound(m) + 1e-12
    assert v.lod_upper_bound(7) == pytest.approx(100 / 7)


def test_lod_upper_bound_is_tight():
    # k equal positive values among n zeros: they exceed M x mean as long as k/n < 1/M
    n, m = 7000, 7.0
    k = n // 7 - 1
    x = np.zeros(n)
    x[:k] = 1.0
    share = 100.0 * np.count_nonzero(x > m * x.mean()) / n
    assert share == pytest.approx(100 * k / n) and v.lod_upper_bound(m) - share < 0.02


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), "7"])
def test_lod_upper_bound_bad_input(bad):
    with pytest.raises(ValueError, match="M"):
        v.lod_upper_bound(bad)


def test_paper_table2_lod_is_flagged_impossible():
    lods = {f"{m}/{a}": c["lod"] for m, by in paper.TABLE2_LOD.items() for a, c in by.items()}
    res = v.lod_consistency(lods, paper.TABLE2_OWL_M)
    assert not res["consistent"] and set(res["over"]) == set(lods) - {"dense/dense"}
    assert "cannot be per-weight fractions" in res["text"]
    assert any("Markov" in s for s in paper.KNOWN_INCONSISTENCIES)
    assert any("R-alpha" in s for s in paper.KNOWN_INCONSISTENCIES)


# ------------------------------------------------------------------------------------ verdicts

def _stats_run(median, mean, others=100.0):
    return {"sum": [mean[0]], "mean": mean, "median": median, "max": [others], "var": [others], "sd": [others]}


def test_minmax_identity_error_zero_for_dlp_formula():
    S = np.array([3.0, 1.0, 2.0, 5.0])
    n = (S - S.min()) / (S.max() - S.min())
    assert v.minmax_identity_error(S, 0.7 + 2 * 0.1 * (n - n.mean()), 0.7, 0.1) == pytest.approx(0.0, abs=1e-12)


def test_zeroshot_verdict():
    clear = {"wanda": {"uniform": (30.0, 1.0), "owl": (32.0, 1.0), "dlp": (40.0, 1.0)}}
    assert v.zeroshot_verdict(clear, chance=25.0)["holds"] == v.HOLDS
    noise = {"wanda": {"uniform": (36.0, 2.3), "owl": (35.0, 2.3), "dlp": (37.0, 2.3)}}
    assert v.zeroshot_verdict(noise, chance=25.0)["holds"] == v.NOISE
    loss = {"wanda": {"uniform": (40.0, 1.0), "owl": (42.0, 1.0), "dlp": (30.0, 1.0)}}
    assert v.zeroshot_verdict(loss, chance=25.0)["holds"] == v.FAILS
    near = {"wanda": {"uniform": (26.0, 2.0), "owl": (27.0, 2.0), "dlp": (40.0, 2.0)}}
    assert "within 2 stderr of chance: uniform, owl" in v.zeroshot_verdict(near, chance=25.0)["text"]


# ------------------------------------------------------------------------------------ grids

@pytest.mark.parametrize("nb", ["01_statistics", "05_sweep", "07_granularity", "08_alpha"])
def test_seeded_grids(nb):
    for profile, n in (("smoke", 2), ("default", 3), ("paper", 3)):
        seeds = report.STUDY_GRIDS[nb][profile]["seeds"]
        assert len(set(seeds)) == n and 0 in seeds


def test_run_seeds_expands_only_seeded_keys():
    class FakeCfg:
        def __init__(self, seed=0):
            self.seed = seed

        def replace(self, **kw):
            return FakeCfg(**kw)

    class FakeLab:
        def run(self, cfg):
            return {"seed": cfg.seed}

    out = report.run_seeds(FakeLab(), {"a": FakeCfg(), "b": FakeCfg()}, (0, 1, 2), seeded=lambda k: k == "a")
    assert [r["seed"] for r in out["a"]] == [0, 1, 2] and [r["seed"] for r in out["b"]] == [0]
    with pytest.raises(ValueError, match="seed"):
        report.run_seeds(FakeLab(), {"a": FakeCfg()}, ())


# ------------------------------------------------------------------------------------ figures

def test_palette_covers_every_allocator():
    from dlp_lib.allocation import allocator_names
    for n in (*allocator_names(), "dlp_mean", "dense"):
        assert n in plots.PALETTE and n in plots.MARKERS and n in plots.NAMES
    assert len(set(plots.PALETTE.values())) == len(plots.PALETTE)


def test_merge_identical():
    merged = plots.merge_identical({"mean": [1.0, 2.0], "sum": [1.0, 2.0], "median": [1.5, 2.0]})
    assert list(merged) == ["mean = sum", "median"]


def _title(fig):
    return fig._suptitle.get_text() if fig._suptitle is not None else ""


def _figures():
    maps = {"block": pd.DataFrame([[0.5, 0.6], [0.7, 0.8]], columns=["q_proj", "k_proj"])}
    yield "Figure 3", plots.rid_with_ratios([0.9, 0.8, 0.95], {"dlp": [0.6, 0.7, 0.8], "owl": [0.7, 0.7, 0.7]})
    yield "Table 2", plots.ratio_lines({"uniform": [1, 2], "dlp": [2, 3]}, item="Table 2")
    yield "Table 1", plots.statistic_dots({"wanda": {"median": [10, 11], "mean": [12]}}, paper=paper.TABLE1_STATISTIC)
    yield "Figure 2", plots.figure2_owl_m({5.0: 10, 7.0: 12}, {5.0: 1, 7.0: 2}, {"dlp": 9}, {"dlp": 3})
    yield "Tables 3, 20-21", plots.allocation_dots({"brown": {"wanda": {"uniform": 30, "owl": 20, "dlp": 10}}})
    yield "Table 10", plots.sparsity_lines({"ours": {"dlp": {0.5: [1, 2], 0.7: 3}}}, item="Table 10 / Figure 4")
    yield "Tables 11-12", plots.sparsity_maps(maps, maps, titles={"block": "one ratio per block"})
    yield "Table 19", plots.alpha_grid({0.5: {0.02: [10, 11], 0.04: [9]}}, {0.5: {0.02: 1.0, 0.04: 0.9}},
                                       {0.5: [12, 13]}, {0.5: {"Table 19": 0.04}})
    yield "Table 4", plots.zeroshot_bars({"ours": {"wanda": {"uniform": (30, 1), "dlp": (35, 1)}}},
                                         dense={"ours": 60}, chance=25)


def test_every_figure_has_its_paper_item_in_the_title():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure
    for item, fig in _figures():
        assert isinstance(fig, Figure)
        assert _title(fig).startswith(item), (item, _title(fig))
        for ax in fig.axes:  # no bars on a log axis
            assert not (ax.get_yscale() == "log" and ax.patches), item
        plt.close(fig)


def test_seed_sparsities_are_in_the_grids():
    for profile in ("smoke", "default", "paper"):
        assert set(report.STUDY_GRIDS["05_sweep"][profile]["seed_sparsities"]) <= \
            set(report.STUDY_GRIDS["05_sweep"][profile]["sparsities"])
        assert set(report.STUDY_GRIDS["07_granularity"][profile]["seed_sparsities"]) <= \
            set(report.STUDY_GRIDS["07_granularity"][profile]["group_sparsities"])
        assert set(report.STUDY_GRIDS["08_alpha"][profile]["seed_sparsities"]) <= \
            set(report.STUDY_GRIDS["08_alpha"][profile]["alphas"])
    assert report._ALPHA_GRID == paper.ALPHA_GRID


def test_rid_axis_starts_at_zero():
    import matplotlib.pyplot as plt
    fig = plots.rid_with_ratios([0.94, 0.96, 0.987], {"dlp": [0.6, 0.7, 0.8]})
    assert fig.axes[0].get_ylim()[0] == 0
    plt.close(fig)


def test_sparsity_ticks_are_the_sparsities_run_not_the_jittered_offsets():
    import matplotlib.pyplot as plt
    series = {a: {0.7: v} for a, v in zip(("uniform", "owl", "dlp", "global", "lamp"), (5, 4, 3, 6, 7))}
    fig = plots.sparsity_lines({"ours": series}, item="Table 9")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["70%"], labels
    plt.close(fig)


def test_seed_values_are_drawn_beside_the_mean():
    import matplotlib.pyplot as plt
    fig = plots.statistic_dots({"wanda": {"median": [100.0, 100.5, 101.0], "mean": [130.0]}})
    dots = [c for c in fig.axes[0].collections if c.get_offsets().shape[0] == 3]
    assert dots and sorted(dots[0].get_offsets()[:, 1]) == [100.0, 100.5, 101.0]
    plt.close(fig)
