"""The README's benchmark tables (scripts/benchmark_tables.py) against the committed JSONs they are
generated from: each value is recomputed here from the JSON, and the README holds what the
generators write."""
import copy
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import benchmark_tables as B  # noqa: E402

sys.path.pop(0)
RESULTS = ROOT / "benchmarks" / "results"


def _load(name):
    return json.loads((RESULTS / B.BLOCKS[name][0]).read_text())


def _row(markdown, first_cell):
    rows = [line for line in markdown.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, (first_cell, rows)
    return [c.strip() for c in rows[0].strip("|").split("|")]


def test_cpu_cost_rows_are_the_json_seconds_and_their_ratio_to_the_floor():
    d = _load("bench-cpu-cost")
    md = B.cpu_cost_markdown(d, "benchmarks/results/x.json")
    floor = d["floor"]["seconds"]
    assert _row(md, "SparseGPT pruning pass")[1:] == [f"{d['sparsegpt']['seconds']:.1f}",
                                                      f"{d['sparsegpt']['seconds'] / floor:.2f}"]
    assert _row(md, "**DLP + Wanda end to end**")[1] == f"**{d['dlp_wanda']['seconds']:.1f}**"
    assert "[`x.json`](benchmarks/results/x.json)" in md
    slower = copy.deepcopy(d)
    slower["wanda"]["seconds"] *= 2
    assert _row(B.cpu_cost_markdown(slower, "x.json"), "Wanda pruning pass")[1] == f"{2 * d['wanda']['seconds']:.1f}"


def test_eval_dtype_summary_is_the_largest_difference_over_models_that_have_not_collapsed():
    d = _load("bench-eval-dtype")
    runs = d["runs"]
    kept = [r["rel_autocast"] for run, by in runs.items() for t, r in by.items()
            if r["fp32"] <= 50 * runs["dense"][t]["fp32"]]
    md = B.eval_dtype_markdown(d, "x.json")
    assert f"at most {max(kept, key=abs):+.2%}" in md
    assert "within the 1% we accept" in md
    assert _row(md, "Magnitude + Uniform 70% (collapsed)")[4] == f"{runs['magnitude/uniform 70%']['brown']['rel_autocast']:+.2%}"
    assert len([line for line in md.splitlines() if line.startswith("| ") and "---" not in line]) == 1 + len(kept) + 1
    worse = copy.deepcopy(d)
    worse["runs"]["wanda/dlp 70%"]["brown"]["rel_autocast"] = 0.02
    assert "**outside the 1% we accept**" in B.eval_dtype_markdown(worse, "x.json")


def test_cpu_dtype_marks_changes_beyond_the_tolerance_and_writes_the_total_speedup():
    d = _load("bench-cpu-dtype")
    md = B.cpu_dtype_markdown(d, "x.json")
    uniform = d["bfloat16_vs_float32"]["runs"]["wanda/uniform"]["ppl_rel_diff"]
    cell = _row(md, "Wanda + Uniform 70%")[3]
    assert cell == "perplexity " + ", ".join(f"**{uniform[t]:+.1%}**" for t in ("brown", "sotu", "mobydick"))
    assert f"{d['bfloat16_vs_float32']['total_speedup']:.2f}x faster" in md
    assert _row(md, "pass 1 (dense statistics)")[1] == f"{d['float32']['pass1_seconds']:.1f} s"


def test_restore_memory_rows_are_the_json_megabytes():
    d = _load("bench-restore-memory")
    md = B.restore_memory_markdown(d, "x.json")
    disk = d["modes"]["disk"]
    assert _row(md, "`disk`")[1:] == [f"+{disk['resident_copy_mib']:.1f} MiB",
                                      f"+{disk['cycle_peak_over_baseline_mib']:.1f} MiB", "yes"]
    broken = copy.deepcopy(d)
    broken["modes"]["disk"]["restored_exactly"] = False
    assert _row(B.restore_memory_markdown(broken, "x.json"), "`disk`")[3] == "**no**"


def test_gpu_speed_end_to_end_peak_is_the_larger_of_its_phases():
    d = _load("bench-gpu-speed")
    md = B.gpu_speed_markdown(d, "x.json")
    peak = max(d["pass1"]["peak_allocated_gib"], d["sparsegpt"]["peak_allocated_gib"])
    sgpt = [c for c in md.splitlines() if c.startswith("| DLP + SparseGPT end to end")][0]
    assert sgpt.endswith(f"| {d['dlp_sparsegpt']['seconds']:.1f} | {d['dlp_sparsegpt']['x_floor']:.2f} | {peak:.1f} |")
    assert "paper Table 6: 254 s" in sgpt   # dlp_studies/paper.py: SparseGPT's metric on LLaMA1-7B, 254.32 s
    assert d["info"]["device"] in md


@pytest.mark.parametrize("name", sorted(B.BLOCKS))
def test_readme_holds_what_the_generator_writes(name):
    begin, end = B.markers(name)
    readme = (ROOT / "README.md").read_text()
    assert readme.count(begin) == 1 and readme.count(end) == 1
    assert readme.split(begin, 1)[1].split(end, 1)[0].strip("\n") == B.blocks()[name]


def test_bitmask_table_splits_the_speedup_where_the_unpruned_twin_was_timed():
    d = copy.deepcopy(_load("bench-decode-bitmask"))
    for e in d["sparsities"]:
        for r in e["threads"].values():
            r.pop("format_dense", None)
    assert "pruning alone" not in B.decode_markdown(d, "x.json")   # no twin: no such column
    e = next(e for e in d["sparsities"] if e["sparsity"] == 0.7)
    e["threads"]["1"]["format_dense"] = {"speedup_paired_median": 1.49, "pruning_speedup_paired_median": 1.72,
                                         "pruning_speedup_paired_iqr": 0.03, "pruning_memory_bound_speedup": 1.79}
    md = B.decode_markdown(d, "x.json")
    cells = [line for line in md.splitlines() if line.startswith("| 70% | 1 |")][0].strip("|").split("|")
    assert [c.strip() for c in cells[6:8]] == ["1.49x", "1.72x (0.03) [1.79x]"]
    other = [line for line in md.splitlines() if line.startswith("| 50% | 1 |")][0]
    assert "not measured" in other and other.count("|") == md.splitlines()[2].count("|")
