"""Bad values given to `finetune` fail before the model loads, with one clear line (exit 2)."""
import pytest

pytestmark = pytest.mark.usefixtures("fresh_labs")


@pytest.mark.parametrize("args,message", [
    (["--lr", "inf"], "lr must be a finite number > 0, got inf"),
    (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
    (["--lr", "0"], "lr must be a finite number > 0, got 0.0"),
    (["--lr=-1e-4"], "lr must be a finite number > 0"),
    (["--train-seqlen", "99999"], "--train-seqlen = 99999 exceeds tiny-llama's maximum of 4096 positions"),
    (["--lora-alpha", "0"], "LoRA alpha must not be 0"),
    (["--method", "lisa", "--eval-limit", "0"], "--eval-limit = 0 is not allowed"),
    (["--method", "lisa", "--eval-limit", "-1"], "--eval-limit = -1 is not allowed"),
    (["--json", "/dev/null"], "is a special file"),
    (["--steps", "99999999999999999999"], "--steps = 99999999999999999999 is not allowed; expected an integer >= 1 "
     "and <= 2147483647"),
    (["--seed", "99999999999999999999"], "--seed = 99999999999999999999 is not allowed"),
    (["--lora-alpha", "99999999999999999999"], "--lora-alpha = 99999999999999999999 is not allowed"),
    (["--checkpoint-every", "-1"], "--checkpoint-every = -1 is not allowed; expected an integer >= 0"),
    (["--batch-size", "0"], "--batch-size = 0 is not allowed"),
])
def test_bad_finetune_values_fail_before_loading(run_cli, no_model_load, args, message):
    code, _, err = run_cli("finetune", "--profile", "smoke", "--quiet", *args)
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_api_refuses_the_same_values():
    from dlp_lib.finetune import FinetuneSpec
    from dlp_lib.finetune.loop import TrainConfig
    from dlp_lib.finetune.lora import LoraSettings
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got inf"):
        TrainConfig(lr=float("inf"))
    with pytest.raises(ValueError, match="LoRA alpha must not be 0"):
        LoraSettings(alpha=0)
    with pytest.raises(ValueError, match="eval_limit = 0 is not allowed"):
        FinetuneSpec(method="lisa", data="tasks", eval_limit=0)


# ------------------------------------------------------------------------------ one path from arguments to a config
def _error_line(capsys, *argv) -> tuple[int, str, int]:
    """(exit code, the error line after 'error: ', lines on stderr) of `python -m dlp_lib ARGV`; argparse's
    own errors exit through SystemExit after a usage line."""
    from dlp_lib import cli
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "error: " in err[-1] and not any("Traceback" in line for line in err), err
    return code, err[-1].split("error: ", 1)[1], len(err)


@pytest.mark.parametrize("args", [
    ["--allocation", "nope"],
    ["--alpha", "x"],
    ["--alpha", "0.7"],
    ["--dtype", "float64"],
    ["--eval-dtype", "float16", "--dtype", "bfloat16"],
    ["--allocation", "uniform", "--alpha", "0.1"],
    ["--owl-m", "7"],                               # the default allocation, dlp, does not read OWL's M
    ["--neval", "0"],
    ["--seqlen", "5000"],
])
def test_a_bad_shared_value_reads_as_prunes(capsys, no_model_load, args):
    """finetune declares and checks the configuration options through the same functions as prune: the
    same bad value gives the same line (the program name aside), exit 2, before any model loads."""
    prune = _error_line(capsys, "prune", "--profile", "smoke", "--quiet", *args)
    finetune = _error_line(capsys, "finetune", "--profile", "smoke", "--quiet", *args)
    assert prune[0] == finetune[0] == 2
    assert finetune[1] == prune[1]
    assert (finetune[2] == 1) == (prune[2] == 1)    # ours: the one line; argparse's: usage lines first


@pytest.mark.parametrize("args,line", [
    (["--allocation", "auto"], "--allocation = 'auto' is not allowed; allowed: {names} (finetune trains one given "
     "pruning"),
    (["--alpha", "auto"], "--alpha = 'auto' is not allowed; finetune takes DLP's alpha as a number in [0, 0.5)"),
])
def test_auto_is_offered_and_refused_in_one_line(run_cli, no_model_load, args, line):
    """'auto' chooses by pruning the loaded model with every candidate; finetune trains one given pruning,
    so it refuses 'auto' by name (offering every other allocator) instead of leaving it out of its choices."""
    from dlp_lib import cli
    from dlp_lib.allocation import allocator_names
    parsed = cli.build_parser().parse_args(["finetune", *args])
    assert "auto" in [parsed.allocation, parsed.alpha]             # offered: argparse accepts it
    code, _, err = run_cli("finetune", "--profile", "smoke", "--quiet", *args)
    names = ", ".join(n for n in allocator_names() if n != "auto")
    assert code == 2 and line.format(names=names) in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


SHARED = ["--profile", "smoke", "--model", "tiny-llama", "--allocation", "dlp", "--alpha", "0.1", "--statistic", "mean",
          "--calib", "sotu", "--eval", "brown", "mobydick", "--nsamples", "8", "--seqlen", "32", "--neval", "all",
          "--dtype", "float32", "--eval-dtype", "bfloat16", "--granularity", "sublayer", "--strict-ratios"]


def test_finetune_and_prune_build_one_configuration_from_the_same_options():
    """The same shared options give finetune and prune equal configurations, and both equal the
    configuration written out field by field."""
    from dlp_lib import cli
    from dlp_lib.experiment import ExperimentConfig
    from dlp_lib.finetune.command import spec_from_args
    parser = cli.build_parser()
    finetune, _ = spec_from_args(parser.parse_args(["finetune", *SHARED, "--sparsity", "0.6", "--data", "lm"]))
    prune = cli.prune_config(parser.parse_args(["prune", *SHARED, "--sparsity", "0.6", "--method", "wanda"]))
    expected = ExperimentConfig(model="tiny-llama", method="wanda", allocation="dlp", sparsity=0.6, alpha=0.1,
                                statistic="mean", calib="sotu", eval=("brown", "mobydick"), nsamples=8, seqlen=32,
                                neval=None, device="cpu", dtype="float32", eval_dtype="bfloat16",
                                granularity="sublayer", strict_ratios=True, seed=0)
    assert finetune == expected
    assert prune == expected


def test_finetune_defaults_are_unchanged_and_its_seed_is_the_training_seed():
    """Without options finetune prunes as before (Wanda, DLP at 70%, OWL M 5, float32 weights even where
    the profile's are 16-bit); its --seed seeds the training, not the calibration sample."""
    from dlp_lib import cli
    from dlp_lib.experiment import ExperimentConfig
    from dlp_lib.finetune.command import spec_from_args
    parser = cli.build_parser()
    cfg, spec = spec_from_args(parser.parse_args(["finetune", "--profile", "smoke", "--seed", "3"]))
    assert cfg == ExperimentConfig(model="tiny-llama", method="wanda", allocation="dlp", sparsity=0.7, owl_m=5.0,
                                   calib="bbc", nsamples=4, seqlen=64, eval=("brown",), neval=4, device="cpu",
                                   dtype="float32", eval_dtype="auto", seed=0)
    assert spec.train.seed == 3 and spec.prune
    paper, _ = spec_from_args(parser.parse_args(["finetune", "--profile", "paper"]))
    assert paper.dtype == "float32" and paper.nsamples == 128


def test_owlore_reads_owl_m_for_its_layer_scores_whatever_the_allocation(tmp_cache, no_model_load):
    """--owl-m with the default dlp allocation is refused for lora (above) but is read by owlore's layer
    scores: it passes every check and reaches the model load."""
    from dlp_lib import cli
    with pytest.raises(AssertionError, match="loaded before"):
        cli.main(["finetune", "--profile", "smoke", "--quiet", "--method", "owlore", "--owl-m", "7"])
