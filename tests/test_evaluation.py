"""Evaluation: perplexity over token windows (and its bf16 autocast), achieved sparsity."""
import copy

import pytest
import torch

from dlp_lib.evaluation import perplexity


def test_bf16_evaluation_is_close_and_leaves_the_weights(tiny):
    model, tok = tiny
    windows = torch.randint(0, model.config.vocab_size, (3, 32), generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p32 = perplexity(model, windows, progress=False)
    p16 = perplexity(model, windows, progress=False, compute_dtype=torch.bfloat16)
    assert p16 != p32 and p16 == pytest.approx(p32, rel=0.02)
    for k, v in model.state_dict().items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="autocast over float32 weights"):
        perplexity(copy.deepcopy(model).to(torch.bfloat16), windows, progress=False, compute_dtype=torch.float16)
