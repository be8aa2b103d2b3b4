"""A grid of smoke configurations through submitit's local mode, one job killed on purpose."""
import json

import pytest

from dlp_lib.sweep import configs_from_spec, run_sweep


def test_grid_spec_expands_and_validates():
    cfgs = configs_from_spec({"profile": "smoke", "base": {"method": "magnitude"},
                              "grid": {"allocation": ["uniform", "dlp"], "sparsity": [0.5, 0.6, 0.7]},
                              "configs": [{"allocation": "owl", "sparsity": 0.6}, {"allocation": "uniform", "sparsity": 0.5}]})
    assert len(cfgs) == 7  # 6 + owl; the repeated uniform 0.5 is one job
    assert all(c.method == "magnitude" and c.model == "tiny-llama" for c in cfgs)
    with pytest.raises(ValueError, match="sparsity must be in"):
        configs_from_spec({"profile": "smoke", "grid": {"sparsity": [1.5]}})
    with pytest.raises(ValueError, match="unknown grid key"):
        configs_from_spec({"profile": "smoke", "grdi": {}})


def test_local_sweep_retries_a_killed_job_without_corrupting_the_cache(tmp_cache, tmp_path):
    from dlp_lib.cache import entries, read_entry
    from dlp_lib.experiment import Lab
    cfgs = configs_from_spec({"profile": "smoke", "grid": {"method": ["magnitude", "wanda"],
                                                           "allocation": ["uniform", "dlp", "owl"],
                                                           "sparsity": [0.5, 0.7]}})
    assert len(cfgs) == 12
    report = run_sweep(cfgs, engine="local", folder=tmp_path / "jobs", max_retries=1, max_parallel=3,
                       kill_on_attempt={4: 0}, progress=False)
    assert not report.failures, report.table(cfgs)
    assert report.attempts[4] == 2 and all(report.attempts[i] == 1 for i in range(12) if i != 4)
    for path in entries(tmp_cache):  # every entry readable: nothing torn
        read_entry(path)
    # the sweep's numbers are the numbers of an in-process run of the same configuration
    lab = Lab("tiny-llama", progress=False)
    for i in (0, 4, 11):
        assert report.results[i]["perplexity"] == lab.run(cfgs[i])["perplexity"]["pruned"]
    assert "12 of 12 configurations done, 0 failed" in report.table(cfgs)


def test_a_job_that_keeps_dying_is_reported(tmp_cache, tmp_path):
    cfgs = configs_from_spec({"profile": "smoke", "configs": [{"method": "magnitude", "allocation": "uniform"}]})
    report = run_sweep(cfgs, engine="local", folder=tmp_path / "jobs", max_retries=0, kill_on_attempt={0: 0},
                       progress=False)
    assert 0 in report.failures and "FAILED" in report.table(cfgs)
