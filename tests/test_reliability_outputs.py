"""Outputs never destroy inputs and fail before the model loads: every subcommand checks its
output paths (folders, files, parents that are files, unwritable places, the run's own inputs)
first. All on tiny-llama."""
import pytest

pytestmark = pytest.mark.usefixtures("fresh_labs")


def _prune(run_cli, *args):
    return run_cli("prune", "--profile", "smoke", "--quiet", *args)


def test_unwritable_outputs_fail_before_loading(run_cli, no_model_load, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = [(["--json", str(blocker / "out.json")], "--json"),
             (["--json", str(tmp_path)], "is a directory"),
             (["--save", str(blocker)], "exists and is not a directory"),
             (["--save", str(blocker / "sub")], "cannot be written")]
    for args, message in cases:
        code, _, err = _prune(run_cli, *args)
        assert code == 2 and message in err, (args, err)


def test_unwritable_cache_fails_before_loading(run_cli, no_model_load, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("DLP_CACHE_DIR", str(blocker / "cache"))
    code, _, err = _prune(run_cli)
    assert code == 2 and "cannot write to" in err and "DLP_CACHE_DIR" in err, err
