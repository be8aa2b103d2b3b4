"""Cached mixed N:M and quantization-after-pruning results on a Lab (dlp_lib.runs.nm_gptq)."""
import gc
import weakref

import pytest


def test_bit_widths_of_one_pruning_start_from_the_pruned_model_and_nothing_keeps_the_lab(tmp_cache):
    from dlp_lib.runs.nm_gptq import quantized_result
    from dlp_lib.experiment import ExperimentConfig, Lab
    lab = Lab("tiny-llama", progress=False)
    cfg = ExperimentConfig.from_profile("smoke", method="sparsegpt", allocation="dlp", sparsity=0.6, nsamples=2,
                                        neval=2)
    q4 = quantized_result(lab, cfg, 4)
    q16 = quantized_result(lab, cfg, 16)  # after the 4-bit model: the pruned one again, not the quantized one
    fresh = Lab("tiny-llama", progress=False, share_pruning=False)  # prunes anew, shares nothing stored
    fresh.ensure(cfg)
    assert q16["perplexity"] == fresh.perplexities(cfg.eval, cfg.seqlen, cfg.neval, cfg.eval_dtype)
    assert q4["perplexity"] != q16["perplexity"]
    assert q4["budgets"]["pruned"] == q4["budgets"]["pruned_still_zero"] > 0
    assert q16["achieved_sparsity"]["overall"] == pytest.approx(0.6, abs=0.02)
    # no module keeps the Lab (or a copy of its weights) once its results are computed
    alive = weakref.ref(lab)
    del lab
    gc.collect()
    assert alive() is None
