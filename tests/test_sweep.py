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


# ------------------------------------------------------------------ the grid file, checked as a whole
SHAPES = "a grid file is a YAML mapping with the keys profile"


@pytest.fixture
def no_job(monkeypatch):
    """Fail the test if a job is submitted: the error had to come before."""
    from dlp_lib import sweep

    def forbidden(*a, **k):
        raise AssertionError("a job ran before the bad grid or option was reported")
    monkeypatch.setattr(sweep, "run_job", forbidden)
    monkeypatch.setattr(sweep, "_executor", forbidden)


def _sweep(capsys, tmp_path, grid_text, *options, name="grid.yaml"):
    from dlp_lib import cli
    grid = tmp_path / name
    if grid_text is not None:
        grid.write_bytes(grid_text if isinstance(grid_text, bytes) else grid_text.encode())
    code = cli.main(["sweep", str(grid), "--folder", str(tmp_path / "jobs"), *options])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("text,message", [
    ("profile: smoke\ngrid:\n  sparsity: [0.5, 0.6\n", "invalid YAML at line 4, column 1: expected ',' or ']'"),
    ("profile: smoke\n  base: x\n", "invalid YAML at line 2"),
    ("", "is empty (or only comments); " + SHAPES),
    ("# nothing but a comment\n", "is empty (or only comments)"),
    ("profile: smoke\nbase: {method: wanda}\n", "defines no configuration; " + SHAPES),
    ("- {sparsity: 0.5}\n", "the grid file is a list, not a mapping; " + SHAPES),
    ("profile: smoke\nconfigs:\n  a: {sparsity: 0.5}\n", "configs is a dict, not a list; " + SHAPES),
    ("profile: smoke\ngrid:\n  - sparsity: 0.5\n", "grid is a list, not a mapping; " + SHAPES),
    ("profile: smoke\nconfigs:\n  - 0.5\n", "configs entry 1 is a float, not a mapping"),
    ("profile: [smoke]\nconfigs:\n  - {sparsity: 0.5}\n", "profile = ['smoke'] is not a profile name"),
    ("profile: smoke\nconfigs:\n  - {sparsity: 0.5}\n  - {sparsity: 0.6}\n  - {sparsity: 0.6, seqlen: 5000}\n",
     "configuration #2 (wanda dlp 0.6 on tiny-llama, seqlen 5000): seqlen = 5000 exceeds tiny-llama's maximum "
     "of 4096 positions"),
    ("profile: smoke\nconfigs:\n  - {sparsity: 0.5}\n  - {sparsity: 0.5, device: tpu}\n", "configuration #1"),
    ("profile: smoke\ngrid:\n  sparsity: [0.5, 1.5]\n", "configuration #1 {'sparsity': 1.5}: sparsity must be in"),
    (b"profile: smoke\n\x00\xff\x01", "is not UTF-8 text (byte 16"),
    (b"profile: smoke\n\x00\x01", "contains NUL bytes"),
])
def test_a_bad_grid_file_is_one_line_before_any_job(capsys, tmp_path, no_job, tmp_cache, text, message):
    code, err = _sweep(capsys, tmp_path, text)
    assert code == 2 and message in err and "grid.yaml" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_directory_or_missing_grid_file(capsys, tmp_path, no_job, tmp_cache):
    (tmp_path / "grid.yaml").mkdir()
    code, err = _sweep(capsys, tmp_path, None)
    assert code == 2 and "grid.yaml' is a directory; give a YAML file" in err, err
    code, err = _sweep(capsys, tmp_path, None, name="missing.yaml")
    assert code == 2 and "missing.yaml' does not exist" in err, err


GOOD = "profile: smoke\nconfigs:\n  - {sparsity: 0.5}\n"


@pytest.mark.parametrize("options,message", [
    (["--engine", "local", "--slurm", "partition=gpu"],
     "--slurm partition=gpu is a SLURM option, but the engine is 'local'"),
    (["--engine", "debug", "--slurm", "gpus_per_node=1"], "but the engine is 'debug'"),
    (["--slurm", "partition"], "--slurm 'partition' is not KEY=VALUE"),
    (["--timeout-min", "0"], "timeout_min = 0 is not allowed; expected an integer >= 1"),
    (["--timeout-min", "-5"], "timeout_min = -5 is not allowed"),
    (["--max-parallel", "0"], "max_parallel = 0 is not allowed"),
    (["--max-retries", "-1"], "max_retries = -1 is not allowed"),
])
def test_bad_sweep_options_are_refused_before_any_job(capsys, tmp_path, no_job, tmp_cache, options, message):
    code, err = _sweep(capsys, tmp_path, GOOD, *options)
    assert code == 2 and message in err, err


def test_a_file_as_the_job_folder_is_refused_before_any_job(capsys, tmp_path, no_job, tmp_cache):
    from dlp_lib import cli
    (tmp_path / "grid.yaml").write_text(GOOD)
    (tmp_path / "a-file").write_text("x")
    for folder in ("a-file", "a-file/sub"):
        code = cli.main(["sweep", str(tmp_path / "grid.yaml"), "--folder", str(tmp_path / folder)])
        err = capsys.readouterr().err
        assert code == 2 and "is a file, not a directory" in err, err


def test_a_grid_of_an_encoder_is_refused_before_any_job(capsys, tmp_path, no_job, tmp_cache):
    from transformers import BertConfig, BertForMaskedLM
    BertForMaskedLM(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32)).save_pretrained(tmp_path / "bert")
    code, err = _sweep(capsys, tmp_path, f"profile: smoke\nbase: {{model: {tmp_path / 'bert'}}}\n"
                                         "configs:\n  - {sparsity: 0.5}\n")
    assert code == 2 and "is an encoder" in err, err
