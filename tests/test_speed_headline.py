"""Notebook 12's headline verdict: a loaded machine's timings decide nothing; a speedup is real only beyond
its IQR; DLP's metric time fails only when it is slower beyond the paired 95% CI."""
import pytest

from dlp_studies import speed, verdicts


def decode_json(load):
    return {"load_start": [load, 0.0, 0.0], "provenance": {"commit": "a" * 40, "dirty": False, "loadavg": [load, 0, 0]}}


def metric_json(load, uniform, dlp):
    return {**decode_json(load), "seconds": {"wanda": {"uniform": uniform, "dlp": dlp}}}


def table5(*points):
    return [{"sparsity": s, "speedup": x, "speedup IQR": iqr, "memory bound": 2.0} for s, x, iqr in points]


EQUAL = ([1.0, 1.1, 0.9, 1.0], [1.02, 1.07, 0.92, 0.99])
SLOWER = ([1.0, 1.1, 0.9, 1.0], [1.1, 1.2, 1.0, 1.1 + 1e-3])


def test_idle_real_speedups_and_equal_metric_time_hold():
    v = speed.headline_verdict(table5((0.5, 1.2, 0.02), (0.7, 1.5, 0.03)), metric_json(0.1, *EQUAL),
                               decode_json(0.1), 1)
    assert v["holds"] == verdicts.HOLDS and v["headline"].startswith("Sparsity speeds decoding up")
    assert [r["verdict"] for r in v["rows"]] == ["holds"] * 4
    assert "best decode speedup 1.50x at 70% vs the paper's 2.8x" in v["headline"]


def test_loaded_machine_decides_nothing():
    # the same numbers from a machine with a load average of 3 at the start: every row cannot tell
    v = speed.headline_verdict(table5((0.5, 1.2, 0.02), (0.7, 1.5, 0.03)), metric_json(3.0, *SLOWER),
                               decode_json(3.0), 1)
    assert v["holds"] == verdicts.NOISE
    assert {r["verdict"] for r in v["rows"]} == {"cannot tell"}
    assert "loaded machine: Table 5, Table 6" in v["headline"]


def test_sub_iqr_speedup_and_slower_metric_do_not_hold():
    v = speed.headline_verdict(table5((0.5, 1.01, 0.03), (0.7, 1.02, 0.03)), metric_json(0.1, *SLOWER),
                               decode_json(0.1), 2)
    words = {r["claim"]: r["verdict"] for r in v["rows"]}
    assert words["Table 5: decoding is faster at 50% (2 threads)"] == "does not reproduce"
    assert words["Table 5: the speedup grows with sparsity"] == "cannot tell"   # flat within the IQRs
    assert words["Table 6: wanda metric time with DLP no more than Uniform's"] == "does not reproduce"
    assert v["holds"] == verdicts.FAILS


def test_mixed_rows_are_partly_and_untimed_points_are_skipped():
    rows = table5((0.3, float("nan"), 0.0), (0.5, 1.3, 0.02))
    v = speed.headline_verdict(rows, metric_json(0.1, *SLOWER), decode_json(0.1), 1)
    assert v["holds"] == verdicts.PARTLY and len(v["rows"]) == 2   # one speedup, one metric row; no trend of one point
    assert len(v["headline"]) <= verdicts.HEADLINE_MAX


def test_json_without_load_is_refused():
    with pytest.raises(ValueError, match="no load average"):
        speed.loaded({"provenance": {}})


def four_json(load, ratio, iqr):
    """A DeepSparse benchmark JSON with one DLP point at 70% and one thread."""
    paths = {"ds-sparse": {"tokens_per_s": 20.0, "speedup_vs_ds-dense": {"median": ratio, "iqr": iqr}}}
    return {**decode_json(load), "configs": [{"allocation": "dlp", "sparsity": 0.7, "threads": {"1": {"paths": paths}}}]}


def test_deepsparse_ratio_is_judged_like_ours_and_named_in_the_headline():
    v = speed.headline_verdict(table5((0.7, 1.5, 0.03)), metric_json(0.1, *EQUAL), decode_json(0.1), 1,
                               four=four_json(0.1, 1.45, 0.01))
    ds = [r for r in v["rows"] if r["claim"].startswith("Table 5 in DeepSparse")]
    assert [(r["ours"], r["verdict"]) for r in ds] == [("1.45x (IQR 0.01)", "holds")]
    assert "DeepSparse 1.45x at 70%" in v["headline"] and len(v["headline"]) <= verdicts.HEADLINE_MAX
    # within its IQR of 1: not faster; from a loaded machine: cannot tell
    flat = speed.headline_verdict(table5((0.7, 1.5, 0.03)), metric_json(0.1, *EQUAL), decode_json(0.1), 1,
                                  four=four_json(0.1, 1.01, 0.05))
    assert [r["verdict"] for r in flat["rows"] if r["claim"].startswith("Table 5 in DeepSparse")] == ["does not reproduce"]
    busy = speed.headline_verdict(table5((0.7, 1.5, 0.03)), metric_json(0.1, *EQUAL), decode_json(0.1), 1,
                                  four=four_json(3.0, 1.45, 0.01))
    assert "loaded machine: DeepSparse" in busy["headline"]


def timed_decode_json(load, wall_over_cpu):
    """A decode JSON whose single-thread timings took wall_over_cpu x their CPU time."""
    t = {"dense_ms_per_token": [50.0 * wall_over_cpu] * 3, "dense_cpu_ms_per_token": [50.0] * 3,
         "sparse_ms_per_token": [30.0 * wall_over_cpu] * 3, "sparse_cpu_ms_per_token": [30.0] * 3,
         "dense_median_ms": 50.0 * wall_over_cpu}
    return {**decode_json(load), "sparsities": [{"sparsity": 0.7, "threads": {"1": t}}]}


def test_contention_not_the_load_average_decides_where_cpu_times_are_recorded():
    # a high load average left by the benchmark's own earlier step, but wall == CPU time: not contended
    assert speed.contention(timed_decode_json(1.2, 1.0)) == pytest.approx(1.0)
    assert not speed.loaded(timed_decode_json(1.2, 1.0))
    # an idle start but timings stretched 1.5x by another process: contended
    assert speed.loaded(timed_decode_json(0.1, 1.5))
    # metric-time JSON (one thread): total wall over CPU seconds
    m = {**metric_json(2.0, [1.0, 1.0], [1.0, 1.0]), "cpu_seconds": {"wanda": {"uniform": [1.0, 1.0], "dlp": [0.5, 0.5]}},
         "threads": 1}
    assert speed.contention(m) == pytest.approx(1.5) and speed.loaded(m)


def test_deepsparse_json_is_judged_by_its_own_torch_paths_cpu_times():
    four = four_json(1.3, 1.45, 0.01)
    paths = four["configs"][0]["threads"]["1"]["paths"]
    paths["torch-dense"] = {"ms_per_token": [51.0, 52.0, 50.0], "cpu_ms_per_token": [50.0, 50.0, 50.0]}
    paths["ours-bitmask"] = {"ms_per_token": [25.0, 25.0], "cpu_ms_per_token": [25.0, 25.0]}
    # ratios 1.02, 1.04, 1.0, 1.0, 1.0: median 1.0 (the high load average at the start does not decide)
    assert speed.contention(four) == pytest.approx(1.0)
    assert not speed.loaded(four)
    paths["torch-dense"]["ms_per_token"] = [80.0, 80.0, 80.0]
    paths["ours-bitmask"]["ms_per_token"] = [40.0, 40.0]
    assert speed.contention(four) == pytest.approx(1.6) and speed.loaded(four)
    # a JSON without CPU times (DeepSparse's own paths only): the load average at its start decides
    del paths["torch-dense"], paths["ours-bitmask"]
    assert speed.contention(four) is None and speed.loaded(four)
    assert not speed.loaded(four_json(0.1, 1.45, 0.01))

def test_pruning_alone_decides_where_the_unpruned_twin_was_timed():
    # 2.5x over fp32 dense, but the unpruned model in the same bf16 format is already 2.4x: pruning buys 1.04x,
    # inside its IQR of 0.1, so pruning does not speed decoding up however large the total is
    row = {**table5((0.7, 2.5, 0.02))[0], "format alone": 2.4, "pruning speedup": 1.04, "pruning IQR": 0.1,
           "pruning bound": 1.8}
    v = speed.headline_verdict([row], metric_json(0.1, *EQUAL), decode_json(0.1), 1)
    r = v["rows"][0]
    assert r["claim"] == "Table 5: pruning speeds decoding up at 70% (1 thread)" and r["verdict"] == "does not reproduce"
    assert r["ours"].startswith("1.04x (IQR 0.10; bound 1.80x) over the unpruned model")
    assert "2.50x over fp32 dense, 2.40x of it the format's bf16 values alone" in r["ours"]
    assert "best pruning speedup 1.04x at 70%" in v["headline"]


def decode_result(fmt, twin):
    t = {"format_counts": {fmt: 3}, "memory_bound_speedup": 2.8, "dense_median_ms": 50.0, "sparse_median_ms": 20.0,
         "speedup_paired_median": 2.5, "speedup_paired_iqr": 0.02, "cpu_speedup_paired_median": 2.5}
    if twin:
        t["format_dense"] = {"speedup_paired_median": 1.5, "pruning_speedup_paired_median": 1.7,
                             "pruning_speedup_paired_iqr": 0.03, "pruning_memory_bound_speedup": 1.8}
    return {"grid": {"fmt": fmt}, "sparsities": [{"sparsity": 0.7, "achieved_sparsity": {"overall": 0.7},
                                                  "threads": {"1": t}}]}


def test_decode_rows_say_what_pruning_alone_buys_only_where_it_is_known():
    (bm,) = speed.decode_rows(decode_result("bitmask", twin=True))
    assert (bm["format alone"], bm["pruning speedup"], bm["pruning IQR"], bm["pruning bound"]) == (1.5, 1.7, 0.03, 1.8)
    # a bitmask JSON without the twin: bf16 values and pruning cannot be told apart
    (old,) = speed.decode_rows(decode_result("bitmask", twin=False))
    assert old["pruning speedup"] is None and old["format alone"] is None
    row = speed.headline_verdict([old], metric_json(0.1, *EQUAL), decode_json(0.1), 1)["rows"][0]
    assert row["claim"] == "Table 5: decoding is faster at 70% (1 thread)"
    assert row["ours"].endswith("over fp32 dense: the format's bf16 values and pruning together")
    # some layers kept dense fp32: the all-bitmask twin differs from the pruned model in more than its zeros
    mixed = decode_result("bitmask", twin=True)
    mixed["sparsities"][0]["threads"]["1"]["format_counts"] = {"bitmask": 2, "dense": 1}
    (m,) = speed.decode_rows(mixed)
    assert m["pruning speedup"] is None and m["format alone"] is None and "twin" in m["note"]
    # CSR keeps fp32 values, like the dense baseline: its whole speedup is pruning's
    (csr,) = speed.decode_rows(decode_result("csr", twin=False))
    assert (csr["pruning speedup"], csr["pruning IQR"], csr["pruning bound"]) == (2.5, 0.02, 2.8)
