"""Bad values given to `prune` fail before the model loads, with one clear line (exit 2); warnings
that explain a run are shown. All on tiny-llama (the smoke profile)."""
import pytest
import torch

from dlp_lib import cli

pytestmark = pytest.mark.usefixtures("fresh_labs")


def _prune(run_cli, *args):
    return run_cli("prune", "--profile", "smoke", "--quiet", *args)


@pytest.mark.parametrize("args,message", [
    (["--seqlen", "0"], "seqlen = 0 is not allowed; expected an integer >= 2"),
    (["--seqlen", "-5"], "seqlen = -5"),
    (["--nsamples", "0"], "nsamples = 0 is not allowed; expected an integer >= 1"),
    (["--nsamples", "-3"], "nsamples = -3"),
    (["--seed", "-1"], "seed = -1"),
    (["--sparsity", "1.2"], "sparsity must be in [0, 1), got 1.2"),
    (["--sparsity", "-0.1"], "sparsity must be in [0, 1), got -0.1"),
    (["--sparsity", "0.7", "--nm", "2:4", "--allocation", "uniform"], "N:M 2:4 keeps 2 of 4 weights, i.e. sparsity 0.5"),
    (["--nm", "2:4", "--allocation", "dlp", "--quantize-bits", "4"], "--quantize-bits with a mixed N:M model"),
    (["--quantize-bits", "4", "--zero-shot", "offline"], "not available with mixed N:M or --quantize-bits"),
    (["--group-size", "64"], "--group-size and --quantize-dense need --quantize-bits"),
    (["--nm", "4:4", "--allocation", "uniform"], "0 < N (kept) < M"),
    (["--nm", "two:four", "--allocation", "uniform"], "N:M pattern must look like '2:4'"),
    (["--alpha", "0.7"], "alpha = 0.7 is not allowed"),
    (["--lamda", "0.6", "--allocation", "owl"], "lamda = 0.6"),
    (["--owl-m", "7.5", "--allocation", "owl"], "owl_m = 7.5"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "cuda:99"], "device = "),
    (["--device", "tpu"], "device = 'tpu'"),
    (["--allocation", "nope"], "allocation = 'nope' is not allowed; allowed: uniform, "),
    (["--allocation", "nope", "--nm", "2:4"], "allocation = 'nope' is not allowed"),
    (["--calib", "/no/such/file.txt"], "does not exist"),
    (["--eval", "/no/such/file.txt"], "does not exist"),
    (["--calib", "wikitext2"], "Offline sources"),
    (["--zero-shot", "nosuchtask"], "Unknown zero-shot task"),
    (["--alpha", "auto", "--allocation", "uniform"], "--alpha auto chooses DLP's alpha"),
    (["--alpha-grid", "0.1", "0.2"], "--alpha-grid is only used with --alpha auto"),
    (["--granularity", "sublayer", "--allocation", "uniform"], "granularity = 'sublayer'"),
    (["--nsamples", "99999999999999999999"],
     "nsamples = 99999999999999999999 is not allowed; expected an integer >= 1 and <= 2147483647"),
    (["--seed", "99999999999999999999"], "seed = 99999999999999999999 is not allowed"),
    (["--seqlen", "5000"], "seqlen = 5000 exceeds tiny-llama's maximum of 4096 positions"),
    # options that do not apply to the chosen allocation or mode
    (["--allocation", "uniform", "--alpha", "0.1"],
     "alpha = 0.1 is not allowed; it does not apply to allocation 'uniform', which takes no parameters"),
    (["--allocation", "dlp", "--lamda", "0.1"], "lamda = 0.1 is not allowed; it does not apply to allocation 'dlp', "
     "which takes alpha, statistic"),
    (["--allocation", "owl", "--statistic", "mean"], "statistic = 'mean' is not allowed"),
    (["--allocation", "uniform", "--owl-m", "7"], "owl_m = 7.0 is not allowed"),
    (["--revision", "main"], "revision = 'main' is not allowed; --revision applies to hub ids only; 'tiny-llama'"),
    (["--zero-shot-limit", "5"], "--zero-shot-limit 5 applies to --zero-shot, which is not given"),
    (["--zero-shot", "offline", "--zero-shot-limit", "0"], "--zero-shot-limit = 0 is not allowed"),
    (["--zero-shot", "offline", "--zero-shot-limit", "-1"], "--zero-shot-limit = -1 is not allowed"),
])
def test_bad_input_fails_before_loading(run_cli, no_model_load, args, message):
    code, out, err = _prune(run_cli, *args)
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err  # one line


@pytest.mark.parametrize("args,message", [
    (["--neval", "0"], "neval must be a positive integer or 'all'"),
    (["--neval", "-2"], "neval must be a positive integer or 'all'"),
    (["--sparsity", "abc"], "invalid float value"),
    (["--method", "obs"], "invalid choice: 'obs'"),
])
def test_bad_option_values_are_refused_by_the_parser(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(["prune", "--profile", "smoke", *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_neval_all_means_every_window():
    a = cli.build_parser().parse_args(["prune", "--profile", "smoke", "--neval", "all"])
    assert cli.prune_config(a).neval is None


def test_nm_alone_sets_its_sparsity():
    a = cli.build_parser().parse_args(["prune", "--profile", "smoke", "--nm", "2:4", "--allocation", "uniform"])
    assert cli.prune_config(a).sparsity == 0.5


@pytest.mark.parametrize("content,message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 50, "not valid UTF-8"),
    ("caf\u00e9 ".encode("latin-1") * 100, "not valid UTF-8"),
    (b"text\x00with\x00nuls " * 100, "NUL bytes"),
    (b"   \n\n  ", "is empty"),
])
def test_bad_text_files_are_refused(run_cli, tmp_path, content, message):
    path = tmp_path / "calib.txt"
    path.write_bytes(content)
    code, _, err = _prune(run_cli, "--calib", str(path))
    assert code == 2 and message in err, err


def test_a_directory_is_not_a_text_file(run_cli, tmp_path):
    (tmp_path / "corpus").mkdir()
    code, _, err = _prune(run_cli, "--calib", str(tmp_path / "corpus"))
    assert code == 2 and "is a directory" in err, err


def test_seqlen_beyond_a_checkpoints_positions_before_loading(run_cli, no_model_load, tmp_path):
    """Read off the checkpoint's config.json, not off the loaded model."""
    from dlp_lib.models import tiny_llama
    model, _ = tiny_llama()
    model.config.max_position_embeddings = 48
    model.save_pretrained(tmp_path / "ckpt")
    code, _, err = _prune(run_cli, "--model", tmp_path / "ckpt", "--seqlen", "64")
    assert code == 2 and f"exceeds {tmp_path / 'ckpt'}'s maximum of 48 positions" in err, err


def test_a_run_far_above_its_profile_prints_its_cost_first(run_cli, no_model_load, tmp_path):
    """smoke calibrates on 4 x 64 = 256 tokens; 60 x 64 is 15x that, 40 x 64 (10x) is not far above."""
    stop = ["--json", tmp_path]   # an error after the estimate, so that nothing loads
    code, _, err = _prune(run_cli, "--nsamples", "60", *stop)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 2 and lines[1].startswith("error:"), err
    assert lines[0] == ("note: calibration on 60 x 64 = 3,840 tokens, 15x the profile's 256: pruning (passes 1 "
                        "and 2) takes about 15x as long")
    code, _, err = _prune(run_cli, "--nsamples", "40", *stop)
    assert code == 2 and err.startswith("error:"), err


def test_dlp_on_an_already_sparse_model_explains_itself(tmp_cache):
    from dlp_lib.allocation import build_plan
    from dlp_lib.block_stats import compute_dense_statistics
    from dlp_lib.models import decoder_blocks, linear_sublayers, tiny_llama
    model, _ = tiny_llama()
    with torch.no_grad():
        for block in decoder_blocks(model):
            for layer in linear_sublayers(block).values():
                w = layer.weight
                w.masked_fill_(w.abs() <= w.abs().flatten().kthvalue(int(0.6 * w.numel())).values, 0)
    ids = torch.randint(0, 250, (2, 32), generator=torch.Generator().manual_seed(0))
    stats = compute_dense_statistics(model, ids, progress=False)
    with pytest.raises(ValueError, match="already at least 50% sparse"):
        build_plan("dlp", 0.7, stats=stats)
    build_plan("dlp", 0.7, stats=stats, statistic="mean")  # the suggested way out works


def test_clamp_warning_is_shown_on_the_command_line(run_cli, tmp_cache):
    code, out, err = _prune(run_cli, "--alpha", "0.45", "--sparsity", "0.8")
    assert code == 0 and "warning:" in err and "clamped and re-balanced" in err, err
    code, out, err = _prune(run_cli, "--alpha", "0.45", "--sparsity", "0.8")  # cached: still shown
    assert code == 0 and "clamped and re-balanced" in err


def test_nm_reports_the_pattern_not_a_contradicting_sparsity(run_cli, tmp_cache):
    code, out, _ = _prune(run_cli, "--nm", "2:4", "--allocation", "uniform")
    assert code == 0 and "at N:M 2:4" in out and "achieved 0.5000" in out, out
