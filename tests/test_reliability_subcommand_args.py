"""Bad values given to `zero-shot`, `compress` and `decode-bench` fail before the model loads, with
one clear line (exit 2); an option that does not apply to the chosen technique is an error."""
import math

import pytest

pytestmark = pytest.mark.usefixtures("fresh_labs")


@pytest.fixture
def no_direct_load(monkeypatch):
    """zero-shot loads through models.load_model (no Lab)."""
    from dlp_lib import models

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before the bad input was reported")
    monkeypatch.setattr(models, "load_model", forbidden)


@pytest.mark.parametrize("args,message", [
    (["--batch-size", "0"], "--batch-size = 0 is not allowed; expected an integer >= 1"),
    (["--batch-size", "-1"], "--batch-size = -1 is not allowed"),
    (["--limit", "0"], "--limit = 0 is not allowed; expected an integer >= 1"),
    (["--limit", "-1"], "--limit = -1 is not allowed"),
])
def test_bad_zero_shot_values_fail_before_loading(run_cli, no_direct_load, args, message):
    code, _, err = run_cli("zero-shot", "--model", "tiny-llama", *args)
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_zero_shot_api_refuses_the_same_values(tiny):
    from dlp_lib.zeroshot import evaluate_zero_shot
    model, tok = tiny
    with pytest.raises(ValueError, match="batch_size = 0 is not allowed"):
        evaluate_zero_shot(model, tok, "offline", batch_size=0)
    with pytest.raises(ValueError, match="limit = -1 is not allowed"):
        evaluate_zero_shot(model, tok, "offline", limit=-1)


@pytest.mark.parametrize("args,message", [
    (["--technique", "structured", "--variant", "svdllm"], "--variant does not apply to --technique structured "
     "(no variants)"),
    (["--technique", "svd", "--taylor-nsamples", "20"], "--taylor-nsamples does not apply to --technique svd"),
    (["--technique", "svd", "--block-range", "1", "3"], "--block-range does not apply to --technique svd"),
    (["--technique", "svd", "--allocation", "uniform", "--alpha", "0.1"],
     "alpha = 0.1 is not allowed; it does not apply to allocation 'uniform'"),
    (["--technique", "svd", "--seqlen", "5000"], "seqlen = 5000 exceeds tiny-llama's maximum"),
])
def test_bad_compress_values_fail_before_loading(run_cli, no_model_load, args, message):
    code, _, err = run_cli("compress", "--profile", "smoke", "--quiet", "--reduction", "0.3", *args)
    assert code == 2 and message in err, err


def test_compress_keeps_each_techniques_defaults():
    from dlp_lib import cli
    from dlp_lib.runs.compress_command import technique_config
    from dlp_lib.compression.svd import SVDConfig
    a = cli.build_parser().parse_args(["compress", "--technique", "svd", "--reduction", "0.3"])
    assert technique_config(a) == SVDConfig() and SVDConfig().variant == "asvd"
    from dlp_lib.compression.structured import StructuredConfig
    a = cli.build_parser().parse_args(["compress", "--technique", "structured", "--reduction", "0.3"])
    assert technique_config(a) == StructuredConfig()
    assert (StructuredConfig().nsamples, StructuredConfig().seqlen) == (10, 64)   # LLM-Pruner's 10 x 64
    a = cli.build_parser().parse_args(["compress", "--technique", "structured", "--reduction", "0.3",
                                       "--taylor-seqlen", "32"])
    assert technique_config(a) == StructuredConfig(seqlen=32)


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "inf"])
def test_bad_break_even_fails_before_loading(run_cli, no_model_load, tmp_path, value):
    code, _, err = run_cli("decode-bench", "--model", "tiny-llama", "--quick", "--no-progress",
                           "--break-even", value, "--out", tmp_path / "d.json")
    shown = str(float(value)) if not math.isnan(float(value)) else "nan"
    assert code == 2 and f"break_even = {shown} is not allowed; expected a density in [0, 1]" in err, err


def test_decode_bench_checks_its_calibration_before_loading(run_cli, no_model_load, tmp_path):
    base = ["decode-bench", "--model", "tiny-llama", "--quick", "--no-progress", "--out", tmp_path / "d.json"]
    code, _, err = run_cli(*base, "--seqlen", "5000")
    assert code == 2 and "--seqlen = 5000 exceeds tiny-llama's maximum of 4096 positions" in err, err


def test_decode_bench_prints_a_far_larger_calibration_first(capsys, no_model_load, tmp_path):
    """48 x 64 = 3,072 tokens is 12x the smoke profile's 4 x 64: said before the model loads."""
    from dlp_lib import cli
    with pytest.raises(AssertionError, match="loaded before"):
        cli.main(["decode-bench", "--model", "tiny-llama", "--quick", "--no-progress", "--out",
                  str(tmp_path / "d.json"), "--nsamples", "48", "--seqlen", "64"])
    assert "note: calibration on 48 x 64 = 3,072 tokens, 12x the profile's 256" in capsys.readouterr().err
