"""Outputs never destroy inputs and fail before the model loads: every subcommand checks its
output paths (folders, files, parents that are files, unwritable places, the run's own inputs)
first. All on tiny-llama."""
import os

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


@pytest.mark.parametrize("command", [
    ["prune", "--profile", "smoke", "--quiet"],
    ["compress", "--profile", "smoke", "--quiet", "--technique", "svd", "--reduction", "0.3"],
    ["finetune", "--profile", "smoke", "--quiet"],
    ["decode-bench", "--model", "tiny-llama", "--quick", "--no-progress"],
])
def test_unwritable_cache_fails_before_loading(run_cli, no_model_load, tmp_path, monkeypatch, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("DLP_CACHE_DIR", str(blocker / "cache"))
    extra = ["--out", tmp_path / "d.json"] if command[0] == "decode-bench" else []
    code, _, err = run_cli(*command, *extra)
    assert code == 2 and "cannot write to" in err and "DLP_CACHE_DIR" in err, err


@pytest.fixture
def checkpoint(tmp_path):
    """A tiny-llama checkpoint directory (model and tokenizer)."""
    from dlp_lib.models import tiny_llama
    model, tok = tiny_llama()
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_json_over_the_calibration_text_is_refused(run_cli, no_model_load, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("The quick brown fox jumps over the lazy dog. " * 300)
    before = victim.read_bytes()
    for option in ("--json", "--export-recipe"):
        code, _, err = _prune(run_cli, "--calib", victim, option, victim)
        assert code == 2 and f"{option} '{victim}' is the input '{victim}'" in err, err
    code, _, err = _prune(run_cli, "--eval", "brown", victim, "--json", victim)
    assert code == 2 and "is the input" in err, err
    link = tmp_path / "link.json"            # the same file by another name
    link.symlink_to(victim)
    code, _, err = _prune(run_cli, "--calib", victim, "--json", link)
    assert code == 2 and "is the input" in err, err
    assert victim.read_bytes() == before


def test_save_over_the_input_checkpoint_is_refused(run_cli, no_model_load, checkpoint):
    before = _snapshot(checkpoint)
    for force in ([], ["--force"]):          # --force allows foreign files, never destroying an input
        code, _, err = _prune(run_cli, "--model", checkpoint, "--save", checkpoint, *force)
        assert code == 2 and f"--save '{checkpoint}' is the input '{checkpoint}'" in err, err
    code, _, err = _prune(run_cli, "--model", checkpoint, "--save", checkpoint.parent, "--force")
    assert code == 2 and f"--save '{checkpoint.parent}' contains the input '{checkpoint}'" in err, err
    assert _snapshot(checkpoint) == before


def test_no_output_overwrites_a_file_of_the_input_checkpoint(run_cli, no_model_load, checkpoint, monkeypatch):
    from dlp_lib import models
    monkeypatch.setattr(models, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    before = _snapshot(checkpoint)
    config = checkpoint / "config.json"
    code, _, err = run_cli("zero-shot", "--model", checkpoint, "--json", config)
    assert code == 2 and f"--json '{config}' is inside the input '{checkpoint}'" in err, err
    code, _, err = _prune(run_cli, "--model", checkpoint, "--json", config)
    assert code == 2 and "is inside the input" in err, err
    assert _snapshot(checkpoint) == before


def test_save_into_a_folder_holding_a_text_input_is_refused(run_cli, no_model_load, tmp_path):
    text = tmp_path / "out" / "notes.txt"
    text.parent.mkdir()
    text.write_text("The quick brown fox jumps over the lazy dog. " * 300)
    code, _, err = _prune(run_cli, "--calib", text, "--save", text.parent, "--force")
    assert code == 2 and "contains the input" in err and str(text) in err, err


def test_save_into_a_users_folder_needs_force(run_cli, tmp_cache, tmp_path):
    from dlp_lib.validation import OUTPUT_MARKER
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_text("my notes")
    (folder / "plan.json").write_text("{\"mine\": true}")
    code, _, err = _prune(run_cli, "--sparsity", "0.5", "--save", folder)
    assert code == 2 and "holds files this project did not write (README.md, plan.json)" in err, err
    assert "--force" in err and (folder / "README.md").read_text() == "my notes"
    code, _, err = _prune(run_cli, "--sparsity", "0.5", "--save", folder, "--force")
    assert code == 0, err
    assert (folder / OUTPUT_MARKER).exists() and (folder / "config.json").exists()
    # the project's own earlier output may be replaced without --force
    code, _, err = _prune(run_cli, "--sparsity", "0.6", "--save", folder)
    assert code == 0, err
    from dlp_lib.plan import SparsityPlan
    assert SparsityPlan.load(folder / "plan.json").target == 0.6


def test_an_empty_or_new_save_folder_needs_no_force(run_cli, no_model_load, tmp_path):
    from dlp_lib.validation import check_save_dir
    (tmp_path / "empty").mkdir()
    check_save_dir(tmp_path / "empty", "--save")
    check_save_dir(tmp_path / "new" / "sub", "--save")


def test_special_files_are_no_output(run_cli, no_model_load):
    code, _, err = _prune(run_cli, "--json", "/dev/null")
    assert code == 2 and "'/dev/null' is a special file" in err, err


def test_special_files_as_text_inputs_are_named_as_such(run_cli, no_model_load, tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    for path in ("/dev/null", str(fifo)):
        for option in ("--calib", "--eval"):
            code, _, err = _prune(run_cli, option, path)
            assert code == 2 and f"'{path}' is a special file" in err and "does not exist" not in err, err


def _bad_output_places(tmp_path):
    """(path, message): a folder where a file is expected, a path under a file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return [(tmp_path, "is a directory"), (blocker / "out.json", "cannot be written")]


def test_zero_shot_checks_its_json_before_loading(run_cli, tmp_path, monkeypatch):
    from dlp_lib import models

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before the bad output was reported")
    monkeypatch.setattr(models, "load_model", forbidden)
    for path, message in _bad_output_places(tmp_path):
        code, _, err = run_cli("zero-shot", "--model", "tiny-llama", "--json", path)
        assert code == 2 and f"--json '{path}'" in err and message in err, err


def test_zero_shot_json_is_never_the_input_model_file(run_cli, no_model_load, tmp_path, monkeypatch):
    from dlp_lib import models
    monkeypatch.setattr(models, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF not really")
    code, _, err = run_cli("zero-shot", "--model", gguf, "--json", gguf)
    assert code == 2 and f"--json '{gguf}' is the input '{gguf}'" in err, err
    assert gguf.read_bytes() == b"GGUF not really"


def test_finetune_checks_its_json_before_loading(run_cli, no_model_load, tmp_path):
    for path, message in _bad_output_places(tmp_path):
        code, _, err = run_cli("finetune", "--profile", "smoke", "--quiet", "--json", path)
        assert code == 2 and f"--json '{path}'" in err and message in err, err
    text = tmp_path / "corpus.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 300)
    code, _, err = run_cli("finetune", "--profile", "smoke", "--quiet", "--calib", text, "--json", text)
    assert code == 2 and "is the input" in err, err


def test_decode_bench_checks_its_out_before_loading(run_cli, no_model_load, tmp_path):
    for path, message in _bad_output_places(tmp_path):
        code, _, err = run_cli("decode-bench", "--model", "tiny-llama", "--quick", "--no-progress", "--out", path)
        assert code == 2 and f"--out '{path}'" in err and message in err, err


def test_sweep_folder_is_a_folder_and_not_the_grid(run_cli, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("base: {profile: smoke}\n")
    code, _, err = run_cli("sweep", grid, "--folder", grid)
    assert code == 2 and "is a file, not a directory" in err, err
    code, _, err = run_cli("sweep", grid, "--folder", tmp_path)
    assert code == 2 and f"--folder '{tmp_path}' contains the input '{grid}'" in err, err
    assert grid.read_text() == "base: {profile: smoke}\n"


def test_compress_checks_its_outputs_before_loading(run_cli, no_model_load, tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 300)
    base = ["compress", "--profile", "smoke", "--quiet", "--technique", "svd", "--reduction", "0.3"]
    code, _, err = run_cli(*base, "--calib", text, "--json", text)
    assert code == 2 and "is the input" in err, err
    (tmp_path / "notes.md").write_text("mine")
    code, _, err = run_cli(*base, "--save", tmp_path)
    assert code == 2 and "holds files this project did not write" in err, err
