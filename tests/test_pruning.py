"""Pruning a model to a plan: masks per sublayer at the plan's ratios."""
import torch

from dlp_lib.models import decoder_blocks, linear_sublayers
from dlp_lib.plan import SparsityPlan
from dlp_lib.pruning import prune_model


def test_prune_model_achieves_plan(tiny):
    from dlp_lib.evaluation import achieved_sparsity
    from dlp_lib.models import load_model
    model, _ = load_model("tiny-llama")
    ids = torch.randint(0, 250, (2, 32))
    plan = SparsityPlan("manual", 0.5, [0.25, 0.5, 0.5, 0.75])
    prune_model(model, plan, "wanda", ids, progress=False)
    got = achieved_sparsity(model)
    for block_sub, r in zip(got["per_sublayer"], plan.ratios):
        for name, value in block_sub.items():
            cin = linear_sublayers(decoder_blocks(model)[0])[name].in_features
            assert value == int(cin * r) / cin
