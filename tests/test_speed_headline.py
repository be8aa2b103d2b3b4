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
