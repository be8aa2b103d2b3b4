"""Model card, module-name plan and llm-compressor recipe (dlp_lib.export) on tiny-llama."""
import re

import pytest
import torch
import yaml

from dlp_lib.api import plan, prune
from dlp_lib.block_stats import DenseStatistics
from dlp_lib.export import llm_compressor_recipe, plan_with_module_names, save_plan_modules, write_model_card
from dlp_lib.models import tiny_llama


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return tiny_llama(n_layers=4, hidden=64)


def _fake_stats(medians):
    return DenseStatistics(blocks=[{"median": m, "mean": m} for m in medians], config={"calib": "synthetic"})


def _block_linears(model):
    """Independent enumeration: every nn.Linear whose name has a block index (not lm_head)."""
    out = {}
    for name, mod in model.named_modules():
        m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", name)
        if isinstance(mod, torch.nn.Linear) and m:
            out[name] = (int(m.group(1)), m.group(2))
    return out


def test_module_plan_covers_every_block_linear_with_block_ratio(tiny):
    model, _ = tiny
    p = plan(_fake_stats([1.0, 2.0, 3.0, 5.0]), "dlp", 0.6, alpha=0.1)
    named = plan_with_module_names(model, p)
    expected = _block_linears(model)
    assert set(named) == set(expected) and len(named) == 4 * 7
    for name, (block, _) in expected.items():
        assert named[name] == pytest.approx(p.ratios[block], abs=1e-12)
    assert "lm_head" not in " ".join(named)


def test_module_plan_per_sublayer_ratios(tiny):
    model, _ = tiny
    p = plan(None, "er", 0.5, model=model)               # per-sublayer budgets from the shapes
    named = plan_with_module_names(model, p)
    for name, (block, sub) in _block_linears(model).items():
        assert named[name] == pytest.approx(p.sublayer_ratios[block][sub], abs=1e-12)
    assert len(set(round(v, 6) for v in named.values())) > 1


def test_module_plan_rejects_plan_of_other_model(tiny):
    model, _ = tiny
    p = plan(_fake_stats([1.0, 2.0, 3.0]), "dlp", 0.6, alpha=0.1)
    with pytest.raises(ValueError, match="3 block ratios but the model has 4"):
        plan_with_module_names(model, p)


@pytest.mark.parametrize("method,modifier", [("wanda", "WandaPruningModifier"), ("sparsegpt", "SparseGPTModifier")])
def test_recipe_parses_and_carries_one_sparsity_per_block(tiny, method, modifier):
    model, _ = tiny
    p = plan(_fake_stats([1.0, 4.0, 2.0, 3.0]), "dlp", 0.7, alpha=0.15)
    doc = yaml.safe_load(llm_compressor_recipe(model, p, method))
    mod = doc["sparsity_stage"]["sparsity_modifiers"][modifier]
    assert len(mod["sparsity"]) == len(mod["targets"]) == 4
    modules = dict(model.named_modules())
    for b, (target, s) in enumerate(zip(mod["targets"], mod["sparsity"])):
        assert isinstance(s, float) and s == pytest.approx(p.ratios[b], abs=1e-10)
        assert modules[target] is model.model.layers[b]      # exact module name, model order
    assert mod["mask_structure"] == "0:0"
    assert mod["ignore"] == ["re:.*lm_head"]


def test_recipe_per_sublayer_plan_targets_modules(tiny):
    model, _ = tiny
    p = plan(None, "er", 0.5, model=model)
    mod = yaml.safe_load(llm_compressor_recipe(model, p, "wanda"))["sparsity_stage"]["sparsity_modifiers"][
        "WandaPruningModifier"]
    expected = plan_with_module_names(model, p)
    assert mod["targets"] == list(expected)
    assert mod["sparsity"] == pytest.approx(list(expected.values()), abs=1e-10)


def test_recipe_nm_convention_and_errors(tiny):
    model, _ = tiny
    uni = plan(None, "uniform", 0.75, model=model)
    mod = yaml.safe_load(llm_compressor_recipe(model, uni, "wanda", nm="1:4"))["sparsity_stage"][
        "sparsity_modifiers"]["WandaPruningModifier"]
    assert mod["mask_structure"] == "3:4"                    # 1 kept of 4 = 3 pruned of 4 (llm-compressor's N)
    with pytest.raises(ValueError, match="magnitude"):
        llm_compressor_recipe(model, uni, "magnitude")
    dlp = plan(_fake_stats([1.0, 4.0, 2.0, 3.0]), "dlp", 0.5, alpha=0.1)
    with pytest.raises(ValueError, match="not uniform"):
        llm_compressor_recipe(model, dlp, "wanda", nm="2:4")


def test_model_card_contains_the_numbers(tmp_path):
    model, _ = tiny_llama(n_layers=4, hidden=64)
    stats = _fake_stats([1.0, 2.0, 3.0, 5.0])
    stats.config["owl_m"] = [1.0, 5.0]                   # pass-1 keys in plan.config are not allocator parameters
    p = plan(stats, "dlp", 0.6, alpha=0.1)
    achieved = prune(model, p, method="magnitude", progress=False)
    result = {"achieved_sparsity": achieved,
              "perplexity": {"dense": {"brown": 123.456}, "pruned": {"brown": 678.912}}}
    cfg = {"model": "tiny-llama", "method": "magnitude", "calib": "bbc", "nsamples": 4, "seqlen": 64, "neval": 4}
    path = write_model_card(tmp_path / "ckpt", result, p, cfg)
    text = path.read_text()
    import dlp_lib
    assert path.name == "README.md"
    assert "magnitude" in text and "| layerwise allocation | dlp (alpha=0.1, statistic=median) |" in text
    assert "| target sparsity | 0.6000 |" in text
    assert f"| achieved sparsity (pruned linears) | {achieved['overall']:.4f} |" in text
    assert "| brown | 123.46 | 678.91 |" in text
    for b in range(4):
        assert f"| {b} | {p.ratios[b]:.4f} | {achieved['per_block'][b]:.4f} |" in text
    assert dlp_lib.__version__ in text and "from_pretrained" in text
    modules = save_plan_modules(tmp_path / "ckpt", model, p)
    import json
    assert json.loads(modules.read_text()) == pytest.approx(plan_with_module_names(model, p))


def test_model_card_rejects_mismatched_result(tmp_path):
    p = plan(_fake_stats([1.0, 2.0, 3.0, 5.0]), "dlp", 0.6, alpha=0.1)
    with pytest.raises(ValueError, match="achieved_sparsity"):
        write_model_card(tmp_path, {}, p, {})
    with pytest.raises(ValueError, match="3 per-block sparsities but the plan has 4"):
        write_model_card(tmp_path, {"achieved_sparsity": {"overall": 0.6, "per_block": [0.6] * 3}}, p, {})
