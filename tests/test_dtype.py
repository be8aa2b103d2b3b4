"""The compute dtype: "auto" resolves to what really runs (and is what the cache keys name), and the
whole pipeline works in bf16 with statistics kept in fp32, close to the fp32 result."""
import pytest
import torch

from dlp_lib import experiment
from dlp_lib.experiment import ExperimentConfig, Lab
from dlp_lib.validation import cpu_supports_bf16, resolve_dtype

CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx2 {extra}\n"


@pytest.fixture(autouse=True)
def _fresh_labs(monkeypatch):
    monkeypatch.setattr(experiment, "_LABS", {})


def test_cpu_bf16_flag_detection():
    assert cpu_supports_bf16(CPUINFO.format(extra="avx512f avx512_bf16"))
    assert cpu_supports_bf16(CPUINFO.format(extra="amx_bf16 amx_tile"))
    assert not cpu_supports_bf16(CPUINFO.format(extra="avx512f avx512bw"))
    assert not cpu_supports_bf16("")


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_resolves_per_device(monkeypatch, native):
    monkeypatch.setattr("dlp_lib.validation.cpu_supports_bf16", lambda cpuinfo=None: native)
    assert resolve_dtype("auto", "cpu") == ("bfloat16" if native else "float32")
    assert resolve_dtype("auto", "cuda") == resolve_dtype("auto", "cuda:1") == "float16"
    assert resolve_dtype("float32", "cpu") == "float32"
    cfg = ExperimentConfig(model="tiny-llama", dtype="auto")
    assert cfg.dtype == ("bfloat16" if native else "float32")  # the key names what runs, never "auto"
    assert cfg.key("data", "fp")["dtype"] == cfg.dtype


def test_bad_dtype_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"dtype = 'half'.*auto"):
        resolve_dtype("half", "cpu")
    with pytest.raises(ValueError, match="dtype = 'half'"):
        ExperimentConfig(model="tiny-llama", dtype="half")


@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "magnitude"])
def test_bf16_pipeline_matches_fp32(tmp_cache, method):
    """Same plan up to bf16 rounding of the statistics' inputs, same achieved sparsity, a pruned
    model whose perplexity is close to the fp32 one, and fp32 accumulators throughout."""
    base = ExperimentConfig(model="tiny-llama", nsamples=8, seqlen=64, neval=4, method=method, allocation="dlp",
                            sparsity=0.6, calib="bbc", eval=("brown",))
    out = {}
    for dtype in ("float32", "bfloat16"):
        cfg = base.replace(dtype=dtype)
        lab = Lab("tiny-llama", dtype=dtype, progress=False)
        assert next(lab.model.parameters()).dtype == getattr(torch, dtype)
        if method != "magnitude":
            stats = lab.dense_statistics(cfg)
            assert stats.column_norms[0][next(iter(stats.column_norms[0]))].dtype == torch.float32
        out[dtype] = lab.run(cfg)
    r32, r16 = out["float32"], out["bfloat16"]
    assert max(abs(a - b) for a, b in zip(r32["ratios"], r16["ratios"])) < 0.02
    assert abs(r16["achieved_sparsity"]["overall"] - 0.6) < 0.01
    for text, ppl in r32["perplexity"]["pruned"].items():
        assert abs(r16["perplexity"]["pruned"][text] / ppl - 1) < 0.05, (text, ppl, r16["perplexity"])


def test_layer_sampled_finetuning_refuses_16_bit_weights(tmp_cache):
    from dlp_lib.finetune import FinetuneSpec, finetune
    lab = Lab("tiny-llama", dtype="bfloat16", progress=False)
    cfg = ExperimentConfig(model="tiny-llama", dtype="bfloat16", nsamples=4, seqlen=64)
    with pytest.raises(ValueError, match="needs float32 weights"):
        finetune(lab, cfg, FinetuneSpec(method="lisa", data="tasks", prune=False))


def test_sparse_inference_refuses_a_bf16_model():
    from dlp_lib.inference.sparsify import sparsify_model
    from dlp_lib.models import tiny_llama
    model, _ = tiny_llama()
    with pytest.raises(ValueError, match="float32 only"):
        sparsify_model(model.to(torch.bfloat16), break_even=0.5)
