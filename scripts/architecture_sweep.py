"""Every causal-LM model type of the installed transformers, as a tiny random model, through the
pipeline: block discovery, the replay guard, DLP + Wanda at 70%, achieved sparsity over all
prunable weights. A survey, not a test (the tested families are in tests/test_architectures.py).

Each model type gets its config class's defaults with small sizes wherever the config has the
field (hidden 128, 2 blocks, 4 heads, 4 experts, ...); a config that cannot be built that small,
a model over 30M parameters even so, or one whose own forward fails at those sizes, is skipped. Outcomes: "ok" (achieved within 1% of 70%),
"off" (pruned, but not within 1%: a bug), "refused" (UnsupportedModelError: the reason is the
message), "error" (any other exception: the message), "skipped".

    OMP_NUM_THREADS=1 python scripts/architecture_sweep.py --out results/architecture_sweep.json
    python scripts/architecture_sweep.py qwen3 mixtral      # some model types only
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SMALL = dict(vocab_size=160, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, head_dim=32, n_embd=128, n_layer=2, n_head=4,
             n_positions=256, d_model=128, ffn_dim=256, num_layers=2, num_heads=4, moe_intermediate_size=128,
             shared_expert_intermediate_size=128, num_experts=4, num_local_experts=4, num_experts_per_tok=2,
             moe_num_experts=4, moe_k=2, n_routed_experts=4, n_shared_experts=1, kv_lora_rank=32, q_lora_rank=32,
             qk_rope_head_dim=16, qk_nope_head_dim=16, v_head_dim=32, first_k_dense_replace=0, n_group=1,
             topk_group=1, bos_token_id=1, eos_token_id=2, pad_token_id=0, sliding_window=8, n_inner=256,
             d_ff=256, multi_query_group_num=2, ffn_hidden_size=256, kv_channels=32, hidden_dim=256, dim=128,
             n_heads=4, n_kv_heads=2, rotary_dim=16)
MAX_PARAMS = 30e6
TARGET = 0.7


def tiny_model(model_type: str, class_name: str):
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    cfg_cls = CONFIG_MAPPING[model_type]
    defaults = cfg_cls()
    cfg = cfg_cls(**{k: v for k, v in SMALL.items() if hasattr(defaults, k)})
    cfg._attn_implementation = "eager"
    model_cls = getattr(transformers, class_name)
    with torch.device("meta"):
        n = sum(p.numel() for p in model_cls(cfg).parameters())
    if n > MAX_PARAMS:
        raise OverflowError(f"{n / 1e6:.0f}M parameters even with small sizes")
    torch.manual_seed(0)
    return model_cls(cfg).eval(), cfg


def survey(model_type: str, class_name: str) -> dict:
    import dlp_lib
    from dlp_lib.architectures.discovery import UnsupportedModelError
    from dlp_lib.calibration import check_replay
    from dlp_lib.evaluation import achieved_sparsity
    try:
        model, cfg = tiny_model(model_type, class_name)
    except Exception as exc:  # noqa: BLE001 - a config that cannot be made small is not our finding
        return {"outcome": "skipped", "why": f"{type(exc).__name__}: {str(exc)[:200]}"}
    vocab = min(getattr(cfg, "vocab_size", None) or 160, 160)
    ids = torch.randint(3, vocab, (8, 32), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            model(ids[:2], use_cache=False)
    except Exception as exc:  # noqa: BLE001 - the small sizes are inconsistent for this family
        return {"outcome": "skipped", "why": f"its own forward fails at these sizes: {type(exc).__name__}: "
                                              f"{str(exc)[:160]}"}
    try:
        check_replay(model)
        stats = dlp_lib.dense_statistics(model, None, calib=ids, progress=False)
        plan = dlp_lib.plan(stats, allocation="dlp", sparsity=TARGET)
        dlp_lib.prune(model, plan, method="wanda", calib=ids, progress=False)
        got = achieved_sparsity(model)
    except UnsupportedModelError as exc:
        return {"outcome": "refused", "why": str(exc)[:300]}
    except Exception as exc:  # noqa: BLE001 - reported, it is what the survey is for
        return {"outcome": "error", "why": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return {"outcome": "ok" if abs(got["overall"] - TARGET) < 0.01 else "off",
            "achieved": round(got["overall"], 4), "over_all_block_params": round(got["overall_block_params"], 4),
            "prunable_share": round(got["prunable_share"], 4), "class": class_name,
            "blocks": len(plan.ratios)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_types", nargs="*", help="only these model types (default: all)")
    ap.add_argument("--out", type=Path, help="write the survey as JSON here")
    args = ap.parse_args(argv)
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    torch.set_num_threads(1)
    out = {}
    for model_type, class_name in sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items()):
        if args.model_types and model_type not in args.model_types:
            continue
        class_name = class_name[0] if isinstance(class_name, (list, tuple)) else class_name
        out[model_type] = survey(model_type, class_name)
        r = out[model_type]
        print(f"{model_type:28s} {r['outcome']:8s} " + (f"{r['achieved']:.3f}" if "achieved" in r else r["why"][:110]),
              flush=True)
    counts = {k: sum(1 for r in out.values() if r["outcome"] == k) for k in ("ok", "off", "refused", "error", "skipped")}
    print(counts)
    if args.out:
        args.out.write_text(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__,
                                        "target": TARGET, "counts": counts, "model_types": out}, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
