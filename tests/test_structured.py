"""Structured pruning (paper Table 14): Taylor groups, GQA, budgets, a genuinely smaller model that reloads."""
import math

import pytest
import torch
import torch.nn.functional as F

from dlp_lib.compression.structured import (StructuredConfig, block_shape, default_block_range, group_counts,
                                            group_importance, load_structured, range_ratios, save_structured,
                                            structured_prune, taylor_gradients)
from dlp_lib.models import decoder_blocks, tiny_llama
from dlp_lib.plan import SparsityPlan


def _model(kv_heads=2, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=128,
                      tie_word_embeddings=False)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()


def _ids(n=4, t=16, vocab=64, seed=0):
    return torch.randint(0, vocab, (n, t), generator=torch.Generator().manual_seed(seed))


def _brute_block_params(block):
    return sum(p.numel() for name, p in block.named_parameters() if "proj" in name)


def test_default_block_range_is_llm_pruners_in_proportion():
    assert default_block_range(32) == (4, 30)       # LLM-Pruner: blocks 4..29 of LLaMA-7B
    assert default_block_range(30) == (4, 28)
    assert default_block_range(4) == (0, 4)


def test_range_ratios_mean_is_the_target_and_zero_outside():
    plan = SparsityPlan("dlp", 0.4, [0.2, 0.3, 0.5, 0.45, 0.35, 0.6])
    r = range_ratios(plan, (1, 5))
    assert r[0] == 0 and r[5] == 0
    assert sum(r[1:5]) / 4 == pytest.approx(0.4)
    assert [b - a for a, b in zip(r[1:4], r[2:5])] == pytest.approx([0.2, -0.05, -0.1])  # shape kept
    with pytest.raises(ValueError, match="block_range"):
        range_ratios(plan, (2, 9))
    with pytest.raises(ValueError, match="block_range"):
        StructuredConfig(block_range=(3, 3))


def test_nothing_removed_gives_the_full_models_output_exactly():
    model, ref = _model(), _model()
    ids = _ids()
    report = structured_prune(model, SparsityPlan("uniform", 0.0, [0.0] * 3), ids,
                              StructuredConfig(block_range=(0, 3)), progress=False)
    assert report.removed_channels == [0, 0, 0] and report.removed_kv_groups == [[], [], []]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref(ids).logits)


@pytest.mark.parametrize("kv_heads", [2, 4])
def test_heads_are_removed_with_their_gqa_group(kv_heads):
    model, ref = _model(kv_heads), _model(kv_heads)
    ids = _ids()
    report = structured_prune(model, SparsityPlan("uniform", 0.5, [0.5] * 3), ids,
                              StructuredConfig(block_range=(0, 3)), progress=False)
    hd, rep = 8, 4 // kv_heads
    for b, (blk, rblk) in enumerate(zip(decoder_blocks(model), decoder_blocks(ref))):
        removed = report.removed_kv_groups[b]
        assert len(removed) == round(0.5 * kv_heads)
        kept = [g for g in range(kv_heads) if g not in removed]
        q_rows = [g * rep * hd + i for g in kept for i in range(rep * hd)]
        kv_rows = [g * hd + i for g in kept for i in range(hd)]
        a, ra = blk.self_attn, rblk.self_attn
        assert torch.equal(a.q_proj.weight, ra.q_proj.weight[q_rows])
        assert torch.equal(a.k_proj.weight, ra.k_proj.weight[kv_rows])
        assert torch.equal(a.v_proj.weight, ra.v_proj.weight[kv_rows])
        assert torch.equal(a.o_proj.weight, ra.o_proj.weight[:, q_rows])
        assert a.num_key_value_groups == rep
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def test_param_counts_match_the_budget():
    model = _model()
    ids = _ids()
    ratios = [0.2, 0.45, 0.7]
    before = [_brute_block_params(b) for b in decoder_blocks(model)]
    total_before = sum(p.numel() for p in model.parameters())
    report = structured_prune(model, SparsityPlan("dlp", 0.45, ratios), ids, StructuredConfig(block_range=(0, 3)),
                              progress=False)
    after = [_brute_block_params(b) for b in decoder_blocks(model)]
    assert report.block_params_before == before and report.block_params_after == after
    per_channel = 3 * 32
    for r, b, a in zip(ratios, before, after):
        assert abs((b - a) - r * b) <= per_channel / 2 + 1e-9
    assert sum(p.numel() for p in model.parameters()) == total_before - sum(before) + sum(after)


def test_group_counts_brute_force():
    model = _model(kv_heads=2)
    shape = block_shape(decoder_blocks(model)[0])
    P = _brute_block_params(decoder_blocks(model)[0])
    assert shape.prunable_params == P
    for r in (0.0, 0.1, 0.3, 0.6, 0.9):
        heads, channels = group_counts(shape, r)
        assert heads == min(1, round(r * 2))
        attn = heads * shape.params_per_kv_group
        best = min(range(shape.intermediate), key=lambda c: (abs(attn + c * 96 - r * P), c))
        assert channels == best


def test_outside_the_range_blocks_are_untouched():
    model, ref = _model(), _model()
    structured_prune(model, SparsityPlan("uniform", 0.5, [0.5] * 3), _ids(), StructuredConfig(block_range=(1, 2)),
                     progress=False)
    for b in (0, 2):
        for (n, p), (_, q) in zip(decoder_blocks(model)[b].named_parameters(), decoder_blocks(ref)[b].named_parameters()):
            assert torch.equal(p, q), n
    assert decoder_blocks(model)[1].mlp.gate_proj.out_features < 48


def test_taylor_importance_equals_brute_force():
    model = _model(kv_heads=2)
    ids = _ids(n=3, t=12)
    grads = taylor_gradients(model, ids, batch_size=2, progress=False)   # two batches: accumulation checked too
    # independent gradient: mean next-token NLL over all windows, one autograd call
    params = dict(model.named_parameters())
    logits = model(ids).logits[:, :-1]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    g = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    for name in params:
        assert torch.allclose(grads[name], g[name], atol=1e-6), name
    hd, rep = 8, 2
    for b, block in enumerate(decoder_blocks(model)):
        pre = f"model.layers.{b}."
        s = {n[len(pre):]: (params[n].detach() * g[n]).abs() for n in params if n.startswith(pre)}
        heads, chans = group_importance(block, grads, pre)
        for kv in range(2):
            want = 0.0
            for q in range(kv * rep, (kv + 1) * rep):          # the KV head's query heads
                for i in range(q * hd, (q + 1) * hd):
                    want += float(s["self_attn.q_proj.weight"][i].sum()) + float(s["self_attn.o_proj.weight"][:, i].sum())
            for i in range(kv * hd, (kv + 1) * hd):
                want += float(s["self_attn.k_proj.weight"][i].sum()) + float(s["self_attn.v_proj.weight"][i].sum())
            assert float(heads[kv]) == pytest.approx(want, rel=1e-5)
        for c in range(48):
            want = float(s["mlp.gate_proj.weight"][c].sum() + s["mlp.up_proj.weight"][c].sum()
                         + s["mlp.down_proj.weight"][:, c].sum())
            assert float(chans[c]) == pytest.approx(want, rel=1e-5)


def test_least_important_groups_are_removed():
    model = _model(kv_heads=2)
    ids = _ids()
    grads = taylor_gradients(model, ids, progress=False)
    imps = [group_importance(b, grads, f"model.layers.{i}.") for i, b in enumerate(decoder_blocks(model))]
    report = structured_prune(model, SparsityPlan("uniform", 0.5, [0.5] * 3), ids, StructuredConfig(block_range=(0, 3)),
                              progress=False)
    for (h, c), removed in zip(imps, report.removed_kv_groups):
        assert removed == [int(h.argmin())]
    assert torch.isfinite(imps[0][1]).all()


def test_saved_and_reloaded_model_gives_identical_logits(tmp_path):
    model, tok = tiny_llama()
    ids = _ids(vocab=256)
    structured_prune(model, SparsityPlan("dlp", 0.4, [0.3, 0.5, 0.4, 0.4]), ids, StructuredConfig(block_range=(0, 4)),
                     progress=False)
    save_structured(model, tok, tmp_path / "ckpt")
    loaded = load_structured(tmp_path / "ckpt")
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    # plain transformers loads it through the checkpoint's own modelling code (no dlp_lib import)...
    from transformers import AutoModelForCausalLM
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt", trust_remote_code=True)
    assert type(plain).__name__ == "DLPStructuredForCausalLM"
    assert "dlp_lib" not in (tmp_path / "ckpt" / "modeling_dlp_structured.py").read_text().split('"""', 2)[2]
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, model(ids).logits)
    # ... and refuses it loudly without that code: LlamaConfig alone cannot express per-layer shapes
    with pytest.raises(Exception, match="(?i)size|shape"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")


def test_rejects_non_llama_blocks_and_bad_plans():
    model = _model()
    with pytest.raises(ValueError, match="ratios"):
        structured_prune(model, SparsityPlan("uniform", 0.2, [0.2] * 2), _ids(), progress=False)
    with pytest.raises(ValueError, match="ratio"):
        group_counts(block_shape(decoder_blocks(model)[0]), 1.0)


def test_structured_result_on_the_lab(tmp_cache):
    from dlp_lib.runs.structured import structured_result
    from dlp_lib.experiment import ExperimentConfig, get_lab
    cfg = ExperimentConfig.from_profile("smoke", allocation="dlp")
    lab = get_lab(cfg.model, cfg.device, cfg.dtype, progress=False)
    res = structured_result(lab, cfg, 0.4, structured_cfg=StructuredConfig(nsamples=2, seqlen=32))
    assert res["achieved_reduction"] == pytest.approx(0.4, abs=0.02)
    assert res["params"]["model_after"] < res["params"]["model_before"]
    assert math.isfinite(res["perplexity"]["brown"]) and res["forward_seconds"]["pruned"] > 0
    assert len(res["layer_shapes"]) == 4
    with pytest.raises(ValueError, match="ratio"):
        structured_result(lab, cfg, 1.0)


# ---------------------------------------------------------------- dlp_studies grid (Tables 14 and 16)
def test_study_grid_overrides():
    from dlp_studies import compression_svd_structured as study
    with pytest.raises(ValueError, match="grid parameter"):
        study.grid("default", svd_rate=0.1)
    assert study.grid("default", svd_reductions=(0.5,))["svd_reductions"] == (0.5,)


# The rows of Tables 14 and 16 as the paper text prints them (DLP_paper.txt, Appendix E.1 and E.3).
PAPER_TABLE14_ROWS = """WikiText LLM-Pruner Uniform 18.61 647.20 4074.48 33849.77
WikiText LLM-Pruner Ours 16.62 29.62 115.58 642.16
PTB LLM-Pruner Uniform 90.02 538.65 2330.65 23447.05
PTB LLM-Pruner Ours 68.75 142.73 617.56 1932.18"""
PAPER_TABLE16_ROWS = """Uniform 5.68 6.58 8.41 17.69 1917.76 19170.02
Ours 5.68 6.58 8.38 15.33 1252.03 16304.26"""


def test_tables_14_and_16_have_one_source_matching_the_paper_text():
    from dlp_studies import compression_svd_structured as study
    from dlp_studies import paper
    assert study.TABLE14_STRUCTURED is paper.TABLE14_STRUCTURED and study.TABLE16_SVD is paper.TABLE16_SVD
    allocation = {"Uniform": "uniform", "Ours": "dlp"}
    for line in PAPER_TABLE14_ROWS.splitlines():
        text, _, who, *ppl = line.split()
        assert paper.TABLE14_STRUCTURED[text.lower()][allocation[who]] == dict(zip((0.2, 0.4, 0.6, 0.8),
                                                                                  map(float, ppl)))
    for line in PAPER_TABLE16_ROWS.splitlines():
        who, *ppl = line.split()
        assert paper.TABLE16_SVD[allocation[who]] == dict(zip((0.0, 0.1, 0.2, 0.3, 0.4, 0.5), map(float, ppl)))
    # every text the notebook maps to the paper's finds its rows (notebook 11b: PAPER_TEXT_FOR, then Table 14)
    assert set(study.PAPER_TEXT_FOR.values()) == set(paper.TABLE14_STRUCTURED) == {"wikitext", "ptb"}
