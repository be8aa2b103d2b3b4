"""The verdict rules: headlines, the one noise rule, and one test per verdict that went wrong before
(each builds the numbers the executed notebooks showed and checks the verdict the rule now gives)."""
import numpy as np
import pytest

from dlp_studies import verdicts as v


# ------------------------------------------------------------------ headline and report

def test_headline_is_one_short_line_with_a_verdict_word():
    h = v.headline("DLP < OWL (Table 3)", v.NOISE, "one seed, seed spread unknown")
    assert h == "DLP < OWL (Table 3): cannot tell (one seed, seed spread unknown)"
    long = v.headline("claim", v.PARTLY, "; ".join(f"clause {i} " + "z" * 30 for i in range(8)))
    assert len(long) <= v.HEADLINE_MAX and long.endswith("; more in the table)") and "clause 0" in long
    with pytest.raises(ValueError, match="room within 200"):
        v.headline("x" * 200, v.HOLDS, "y")
    with pytest.raises(ValueError, match="one of"):
        v.headline("claim", "within noise-ish")


def test_report_round_trips_through_parse():
    rows = [v.row("a", "1.5", "2.5", v.HOLDS), v.row("b", "3", "", v.FAILS)]
    text = v.verdict_report(v.headline("claim", v.PARTLY, "why"), rows, ["a note with 4.2"])
    heads, parsed = v.parse_report(text)
    assert heads == ["claim: partly (why)"]
    assert parsed == rows and parsed[1]["paper"] == "-"
    with pytest.raises(ValueError, match="'\\|'"):
        v.row("a | b", "1", "2", v.HOLDS)


# ------------------------------------------------------------------ the noise rule

def test_one_seed_gap_without_a_measured_spread_cannot_tell():
    c = v.compare([391.2], [993.1])
    assert c["verdict"] == v.WITHIN_NOISE and not c["noise_known"]
    assert "cannot tell" in v.outcome(c, "DLP", "OWL")


def test_one_seed_gap_judged_against_the_measured_spread():
    # 0.5% gap (OWL 993.1 vs Uniform 998.5) under a 7% seed spread: within noise; 2.5x gap: decided
    assert v.compare([993.1], [998.5], rel_spread=0.07)["verdict"] == v.WITHIN_NOISE
    assert v.compare([391.2], [993.1], rel_spread=0.07)["verdict"] == v.A_BETTER
    assert v.compare([391.2], [993.1], rel_spread=0.07)["noise"] == pytest.approx(0.07 * 993.1)
    with pytest.raises(ValueError, match="rel_spread"):
        v.compare([1.0], [2.0], rel_spread=-0.1)


def test_relative_spread_is_the_largest_range_over_mean():
    assert v.relative_spread([90, 100, 110], [50, 50.5], [7.0]) == pytest.approx(20 / 100)
    with pytest.raises(ValueError, match="two or more seeds"):
        v.relative_spread([3.0], [4.0])


# ------------------------------------------------------------------ 00: OWL vs Uniform 0.5% apart

def test_ordering_not_holds_on_a_sub_noise_gap():
    seeds = {"dlp": [391.2, 400.0, 385.0], "owl": [993.1, 960.0, 1010.0], "uniform": [998.5, 975.0, 1001.0]}
    r = v.ordering_verdict(seeds)
    assert r["holds"] == v.PARTLY and "OWL vs UNIFORM under seed noise" in r["headline"]
    one = v.ordering_verdict({"dlp": [391.2], "owl": [993.1], "uniform": [998.5]})
    assert one["holds"] == v.NOISE and one["headline"].count("under seed noise") == 2
    clear = v.ordering_verdict({"dlp": [10.0, 10.1], "owl": [20.0, 20.2], "uniform": [40.0, 40.5]})
    assert clear["holds"] == v.HOLDS and len(clear["headline"]) <= v.HEADLINE_MAX


# ------------------------------------------------------------------ 02: flatness on the RID, not on S

def test_rid_flatness_is_judged_on_the_rid_not_on_s():
    L = 30
    S = np.linspace(1.0, 2.0, L)          # CV of S ~0.19, but I = 1 - S/sum S spans ~0.955-0.977
    rid = 1 - S / S.sum()
    ratios = np.linspace(0.6, 0.8, L)
    r = v.rid_verdict(S, ratios, ratios)
    assert r["cv"] == pytest.approx(rid.std() / rid.mean()) and r["cv"] < v.FLAT_CV
    assert r["rows"][0]["verdict"] == "does not reproduce" and "CV 0.0" in r["rows"][0]["ours"]


# ------------------------------------------------------------------ 03: collapsed methods not counted

def test_table2_does_not_count_a_collapsed_method():
    lod = {"magnitude": {"uniform": 1.95, "owl": 1.98, "dlp": 1.67}, "wanda": {"uniform": 1.7, "owl": 1.8, "dlp": 1.9}}
    ppl = {"magnitude": {"uniform": 7.5e4, "owl": 4.2e4, "dlp": 9.5e4}, "wanda": {"uniform": 998.5, "owl": 685.0, "dlp": 391.2}}
    t2 = v.table2_verdict(lod, ppl, m=7, paper_lod={"a": 50.0}, dense=30.0)
    assert t2["holds"] == v.HOLDS and t2["tested"] == 1
    assert t2["rows"][0]["verdict"] == "cannot tell" and "collapsed" in t2["rows"][0]["ours"]


def test_figure2_lod_trend_reads_its_sign_and_needs_four_points():
    f2 = v.figure2_verdict({5.0: 900.0, 7.0: 685.0, 10.0: 990.0}, {5.0: 1.7, 7.0: 1.8, 10.0: 1.9}, dlp_ppl=391.2,
                           rel_spread=0.07)
    assert f2["holds"] == v.HOLDS and f2["rows"][1]["verdict"] == "cannot tell"
    f4 = v.figure2_verdict({3.0: 1.0, 5.0: 2.0, 7.0: 3.0, 10.0: 4.0}, {3.0: 1.0, 5.0: 2.0, 7.0: 3.0, 10.0: 4.0},
                           dlp_ppl=0.5, rel_spread=0.0)
    assert "no lower perplexity" in f4["rows"][1]["ours"] and f4["rows"][1]["verdict"] == "does not reproduce"


# ------------------------------------------------------------------ 04 / 05: negative findings said

def test_main_results_names_owl_worse_than_uniform():
    cells = {"wanda brown": {"uniform": 998.5, "owl": 685.0, "dlp": 391.2},
             "wanda sotu": {"uniform": 500.0, "owl": 700.0, "dlp": 300.0}}
    r = v.main_results_verdict(cells, [{"uniform": 3.0, "owl": 2.0, "dlp": 1.0}], rel_spread=0.07)
    assert r["owl_worse_than_uniform"] == ["wanda sotu"] and "OWL worse than Uniform on wanda sotu" in r["headline"]
    assert r["holds"] == v.HOLDS


def test_sweep_one_seed_sparsity_without_spread_cannot_tell():
    ppl = {0.5: {"uniform": [72.0, 72.5, 71.8], "owl": [73.5, 74.0, 73.8], "dlp": [69.5, 69.8, 69.2]},
           0.8: {"uniform": [2e4], "owl": [3e4], "dlp": [2.5e3]}}
    unknown = v.sweep_verdict(ppl, method="wanda")
    assert unknown["holds"] == v.NOISE and "seed spread unknown" in unknown["headline"]
    known = v.sweep_verdict(ppl, method="wanda", rel_spread={0.8: 0.1})
    assert known["holds"] == v.HOLDS and known["owl_worse_than_uniform"] == [0.5, 0.8]


# ------------------------------------------------------------------ 06: a claim over sparsities not run

def test_baselines_claim_above_40_percent_with_only_70_run_is_partly():
    ours = {0.7: {"dlp": 391.2, "alphapruning": 452.1, "global": 5000.0}}
    paper = {s: {"dlp": 10.0, "alphapruning": 11.0, "global": 50.0} for s in (0.3, 0.5, 0.6, 0.7, 0.8)}
    r = v.baselines_verdict(ours, paper=paper, rel_spread={0.7: 0.07})
    assert r["holds"] == v.PARTLY and "50%, 60%, 80% not run" in r["headline"]
    assert v.baselines_verdict(ours, paper=paper)["holds"] == v.NOISE   # one seed, spread unknown


# ------------------------------------------------------------------ 07: one seed is not "beyond noise"

def test_groups_one_seed_is_not_beyond_noise_and_map_trend_is_reported():
    d = v.groups_verdict({0.5: {"per_output": [70.0, 71.0, 69.0], "per_layer": [85.0, 86.0, 84.0]},
                          0.7: {"per_output": [391.0], "per_layer": [781.0]}})
    assert d["holds"] == v.PARTLY and d["rows"][1]["verdict"] == "cannot tell"
    c = v.granularity_verdict(391.2, 764.5, paper_block=20.0, paper_sublayer=3000.0, rel_spread=0.07,
                              map_trend={"ours": 0.8, "paper": -0.6})
    both = v.granularity_groups_verdict(c, d)
    assert c["rows"][1]["verdict"] == "does not reproduce" and "opposite the paper's" in both["headline"]


# ------------------------------------------------------------------ 08: sorted rows, one-seed ties

def test_alpha_rows_sorted_and_one_seed_cannot_tell():
    r = v.alpha_verdict({0.7: {0.2: [30.0], 0.15: [20.0]}, 0.5: {0.15: [72.0, 72.1], 0.04: [70.0, 70.1]}},
                        paper_alpha={0.7: 0.15, 0.5: 0.04})
    assert [row["claim"][:3] for row in r["rows"]] == ["50%", "70%"]
    assert r["rows"][0]["verdict"] == "holds" and r["rows"][1]["verdict"] == "cannot tell"
    assert r["holds"] == v.PARTLY
    beaten = v.alpha_verdict({0.7: {0.08: [10.0], 0.15: [20.0]}}, paper_alpha={0.7: 0.15}, rel_spread={0.7: 0.05})
    assert beaten["holds"] == v.FAILS


def test_statistic_verdict_counts_only_wins_beyond_noise():
    stats = ("sum", "mean", "median", "max", "var", "sd")
    tie = {"wanda": {s: [100.0, 104.0, 98.0] for s in stats}}
    assert v.statistic_verdict(tie, dense=30.0)["holds"] == v.NOISE
    win = {"wanda": {s: [200.0, 201.0, 199.0] for s in stats} | {"median": [100.0, 101.0, 99.0]}}
    assert v.statistic_verdict(win, dense=30.0)["holds"] == v.HOLDS


# ------------------------------------------------------------------ 10: the paper counted as printed

def test_table8_counts_the_paper_without_a_hidden_tolerance_and_ours_with_the_noise_rule():
    paper = {"llama": {"uniform": {0.6: 10.0, 0.7: 20.0}, "dlp": {0.6: 9.9, 0.7: 15.0}}}   # 1% gap still counts
    ours = {"smollm2": {"uniform": {0.7: 998.5}, "dlp": {0.7: 391.2}},
            "gemma": {"uniform": {0.7: 100.0}, "dlp": {0.7: 101.0}}}
    r = v.table8_verdict(ours, paper, rel_spread={"smollm2": 0.07, "gemma": 0.05})
    assert "paper: DLP lower in 2 of 2" in r["headline"]
    assert [row["verdict"] for row in r["rows"]] == ["holds", "cannot tell"] and r["holds"] == v.PARTLY
    assert v.table8_verdict(ours, paper)["holds"] == v.NOISE   # no measured spread: one seed cannot tell


# ------------------------------------------------------------------ 11b: collapsed SVD, timing noise

def test_compression_collapsed_cells_say_nothing_and_speed_gap_is_timing_noise():
    svd = {"plain SVD": {"uniform": {0.1: 1.5e6, 0.3: 7.5e7}, "dlp": {0.1: 1.3e6, 0.3: 3.4e8}}}
    st = {"brown": {"uniform": {0.2: 101.9, 0.6: 705.3}, "dlp": {0.2: 102.0, 0.6: 742.3}}}
    r = v.compression_verdict(svd, st, dense=30.75, speedup={0.6: {"dlp": 1.27, "uniform": 1.56}}, rel_spread=0.03)
    assert [x["verdict"] for x in r["rows"][:2]] == ["cannot tell", "cannot tell"]
    assert "2 collapsed" in r["headline"] and r["holds"] == v.FAILS   # Uniform beyond noise at 60%
    assert r["rows"][-1]["verdict"] == "cannot tell"          # 0.27 above dense, under the 0.29 timing noise
    clear = v.compression_verdict({}, st, dense=30.75, speedup={0.6: {"dlp": 1.5, "uniform": 1.45}})
    assert clear["rows"][-1]["verdict"] == "holds" and clear["holds"] == v.NOISE


def test_seed_counts_read_as_english():
    assert (v.fmt_seeds(1), v.fmt_seeds(3)) == ("1 seed", "3 seeds")
