"""The fixed-shape ONNX decoder step: in torch it computes the HF model's logits; exported and
compiled by DeepSparse (where benchmarks/deepsparse/setup.sh has built its environment) it
computes the same logits within the benchmark's stated tolerance."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dlp_lib.inference.decoder_step import DecoderStep, StepCache, step_logits
from dlp_lib.models import load_model
from dlp_lib.plan import SparsityPlan
from dlp_lib.pruning import prune_model

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "deepsparse" / "bench.py"


def _bench():
    spec = importlib.util.spec_from_file_location("deepsparse_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_pruned():
    model, _ = load_model("tiny-llama")
    prune_model(model, SparsityPlan("manual", 0.6, [0.3, 0.5, 0.7, 0.9]), "magnitude", progress=False)
    return model


def test_step_equals_hf_logits(tiny_pruned):
    ids = torch.randint(3, 256, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = tiny_pruned(ids).logits[0]
    torch.testing.assert_close(step_logits(DecoderStep(tiny_pruned, 16), ids[0].tolist()), ref,
                               rtol=1e-5, atol=1e-5)


def test_step_refuses_bad_input(tiny_pruned):
    with pytest.raises(ValueError, match="context must be >= 1"):
        DecoderStep(tiny_pruned, 0)
    cache = StepCache.empty((1, 2, 1, 4), 1, torch.zeros)
    cache.append([torch.zeros(1, 2, 1, 4)] * 2)
    with pytest.raises(ValueError, match="holds 1 tokens"):
        cache.append([torch.zeros(1, 2, 1, 4)] * 2)


def test_deepsparse_logits_equal_torch(tiny_pruned, tmp_path):
    bench = _bench()
    problem = bench.environment_problem()
    if problem:
        pytest.skip(problem)
    sys.path.insert(0, str(bench.EXPORT_DEPS))
    from dlp_lib.inference.decoder_step import export_onnx
    step = DecoderStep(tiny_pruned, 16)
    tokens = [5, 17, 99, 3, 42, 7]
    export_onnx(step, tmp_path / "step.onnx")
    worker = bench.Worker()
    try:
        worker(op="compile", key="k", path=str(tmp_path / "step.onnx"), threads=1)
        worker(op="logits", key="k", tokens=tokens, out=str(tmp_path / "logits.npy"))
    finally:
        worker.close()
    ds = torch.from_numpy(np.load(tmp_path / "logits.npy"))
    ref = step_logits(step, tokens)
    diff = (ds - ref).abs().max().item()
    assert diff <= bench.LOGIT_TOLERANCE, f"DeepSparse vs torch max |logit difference| {diff:.3g}"
    assert torch.equal(ds.argmax(-1), ref.argmax(-1))


def test_bench_refuses_bad_options_before_loading_anything(capsys):
    bench = _bench()
    for argv, msg in [(["--formats", "bogus"], "unknown format 'bogus'"), (["--allocations", "nope"], "Unknown allocation"),
                      (["--sparsities", "1.5"], "sparsities must be in"), (["--repeats", "0"], "must be >= 1")]:
        with pytest.raises(SystemExit) as exc:
            bench.parse_args(argv)
        assert exc.value.code == 2 and msg in capsys.readouterr().err
    args = bench.parse_args(["--quick", "--threads", "1", "2"])      # explicit options win over --quick
    assert args.threads == [1, 2] and args.sparsities == [0.7] and args.repeats == 2
