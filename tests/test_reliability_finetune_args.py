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
