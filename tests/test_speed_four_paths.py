"""Notebook 12's four-path table: measured cells from the DeepSparse benchmark's JSON, "not
measured" where the JSON (or a point) is absent, and the per-format bounds from the layouts."""
import pytest

from dlp_studies import speed


def _result():
    paths = {"torch-dense": {"tokens_per_s": 20.0}, "ours-bitmask-dense": {"tokens_per_s": 32.0},
             "ours-bitmask": {"tokens_per_s": 40.0, "speedup_vs_torch-dense": {"median": 2.0, "iqr": 0.1},
                              "speedup_vs_ours-bitmask-dense": {"median": 1.25, "iqr": 0.05}},
             "ds-dense": {"tokens_per_s": 25.0}, "ds-sparse": {"tokens_per_s": 50.0,
                                                                "speedup_vs_ds-dense": {"median": 2.0, "iqr": 0.2}}}
    return {"configs": [{"allocation": None, "sparsity": 0.0, "threads": {"1": {"paths": {}}}},
                        {"allocation": "dlp", "sparsity": 0.7,
                         "threads": {"1": {"paths": paths, "ours-bitmask": {"memory_bound_speedup": 3.1}}}}]}


def test_rows_without_json_say_not_measured():
    rows = speed.four_path_rows(None, sparsities=(0.7,), allocations=("dlp",))
    assert rows[0]["paper speedup (DeepSparse, 7B)"] == 2.8
    assert all(rows[0][f"{p} tok/s"] == speed.NOT_MEASURED for p in speed.DECODE_PATHS)


def test_rows_read_the_measured_point():
    rows = speed.four_path_rows(_result(), sparsities=(0.7, 0.9), allocations=("dlp",))
    r70, r90 = rows
    assert r70["ds-sparse tok/s"] == 50.0 and r70["DeepSparse sparse/dense"] == 2.0
    assert r70["ours-bitmask/torch-dense"] == 2.0 and r70["ours-bitmask bound"] == 3.1
    assert r70["ours-bitmask/ours-bitmask-dense (sparsity alone)"] == 1.25
    assert r70["ours-csr tok/s"] == speed.NOT_MEASURED and r70["ours-csr bound"] == speed.NOT_MEASURED
    assert r90["torch-dense tok/s"] == speed.NOT_MEASURED
    assert speed.four_path_rows(_result(), threads=2, sparsities=(0.7,), allocations=("dlp",))[0][
        "ds-sparse tok/s"] == speed.NOT_MEASURED


def test_format_bounds_follow_the_layouts():
    rows = {(r["format"], r["sparsity"]): r for r in speed.format_bound_rows((576, 1536), sparsities=(0.7,))}
    assert rows[("dense", 0.7)]["bound over fp32 dense"] == pytest.approx(1.0)
    assert rows[("dense-bf16", 0.7)]["bound over fp32 dense"] == pytest.approx(2.0)
    assert rows[("csr", 0.7)]["bytes per kept weight"] == pytest.approx(8.0, abs=0.01)
    assert rows[("bitmask", 0.7)]["bound over fp32 dense"] == pytest.approx(4 / (0.3 * 2 + 1 / 8), rel=0.01)
    assert speed.load_optional("benchmarks/results/no_such.json", "/") is None
