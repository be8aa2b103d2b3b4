"""`python -m dlp_lib finetune`: its options, the configuration and fine-tuning spec built from them, and
the run. Kept apart from the fine-tuning code so that editing the command line leaves cached
fine-tuning results valid."""
from __future__ import annotations

from pathlib import Path

from . import DATA, METHODS, FinetuneSpec, finetune
from .layer_sampling import DLP_WEIGHTS
from .loop import TrainConfig
from .lora import LoraSettings


def add_arguments(p) -> None:
    """Arguments of `python -m dlp_lib finetune`: the configuration options every subcommand shares
    (`arguments.config_arguments`; float32 weights by default here) and fine-tuning's own."""
    from ..arguments import config_arguments
    from ..pruning import METHODS as PRUNE_METHODS
    config_arguments(p, dtype_default="float32", dtype_reason="lisa/owlore/dlp update the weights themselves, "
                     "which 16-bit weights cannot hold; LoRA adapters are float32 in any case")
    p.add_argument("--method", choices=METHODS, default="lora",
                   help="lora (Table 7: adapters on q_proj/v_proj, masks fixed), lisa (uniform layer sampling), "
                        "owlore (OWL outlier-ratio sampling, at --owl-m), dlp (RID sampling; Table 18)")
    p.add_argument("--data", choices=DATA, help="lm: calibration corpus train split, perplexity (default for lora); "
                   "tasks: offline task set from train documents, lm-eval accuracy (default for lisa/owlore/dlp)")
    p.add_argument("--prune-method", choices=PRUNE_METHODS + ("none",), default=None,
                   help="pruning before fine-tuning (default: wanda for --data lm, none = dense for --data tasks)")
    p.add_argument("--sparsity", type=float, default=0.7, help="target mean sparsity in [0, 1)")
    p.add_argument("--steps", type=int, default=100, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=4, help="examples per micro-batch")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    p.add_argument("--train-seqlen", type=int, default=256, help="tokens per training window / example")
    p.add_argument("--lr", type=float, help="peak learning rate (default: 1e-4 for lora, 3e-4 for block sampling "
                   "as LISA's and OwLore's scripts)")
    p.add_argument("--warmup-steps", type=int, help="linear warm-up steps, then linear decay to 0 (default: 10%% of "
                   "--steps)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping (0: none)")
    p.add_argument("--seed", type=int, default=0, help="training seed (data order, adapter init, dropout, sampling); "
                   "the calibration sampling seed stays the configuration's")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--lora-targets", nargs="+", default=["q_proj", "v_proj"])
    p.add_argument("--gamma", type=int, default=2, help="blocks unfrozen at a time (layer sampling)")
    p.add_argument("--interval", type=int, default=3, help="K: steps between block switches (layer sampling)")
    p.add_argument("--galore-rank", type=int, default=256, help="owlore/dlp: GaLore rank of the sampled blocks' "
                   "matrices (0: full-rank AdamW; OwLore's finetuner: 256)")
    p.add_argument("--galore-gap", type=int, default=100, help="owlore/dlp: steps between GaLore projector refreshes")
    p.add_argument("--galore-scale", type=float, default=1.0, help="owlore/dlp: scale of GaLore's projected update")
    p.add_argument("--dlp-weights", choices=DLP_WEIGHTS, default="rid",
                   help="dlp sampling weights: rid (p proportional to the RID, paper), minmax (the RID min-max "
                   "rescaled, the authors' OwLore fork) or keep (DLP's kept fraction)")
    p.add_argument("--max-windows", type=int, help="--data lm: at most this many training windows")
    p.add_argument("--task-examples", type=int, default=400, help="--data tasks: training items per task")
    p.add_argument("--eval-limit", type=int, default=200, help="--data tasks: evaluated items per task")
    p.add_argument("--num-fewshot", type=int, default=0, help="--data tasks: demonstrations per evaluated item "
                   "(Table 18: 5)")
    p.add_argument("--no-merge-ablation", action="store_true", help="lora: skip the merged / re-masked evaluation")
    p.add_argument("--checkpoint-every", type=int, default=0, help="write a resumable checkpoint every N steps")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--json", type=Path, help="write the result JSON here")


# The integer options and their least values; each is also capped (validation.INT_LIMIT), so that a
# huge number fails here instead of overflowing or running for years after the model loaded.
INTEGER_OPTIONS = {"steps": 1, "batch_size": 1, "grad_accum": 1, "train_seqlen": 2, "warmup_steps": 0, "lora_r": 1,
                   "gamma": 1, "interval": 1, "galore_rank": 0, "galore_gap": 1, "max_windows": 1,
                   "task_examples": 1, "eval_limit": 1, "num_fewshot": 0, "checkpoint_every": 0}


def spec_from_args(args) -> tuple:
    """(ExperimentConfig, FinetuneSpec) from the parsed arguments; the configuration through the builder
    prune and compress use (`arguments.config_from_args`). Bad values fail here, before any model loads."""
    from ..allocation import allocator_names
    from ..arguments import config_from_args
    from ..validation import INT_LIMIT, SEED_LIMIT, check_choice, check_int
    # 'auto' chooses an allocation or alpha by pruning the loaded model with every candidate; a fine-tuning
    # run trains, and is cached under, one given pruning: it takes the choice `prune ... auto` made
    if args.allocation == "auto":   # other bad names get the configuration's sentence, as in prune
        check_choice("--allocation", args.allocation, [n for n in allocator_names() if n != "auto"],
                     " (finetune trains one given pruning: pass the allocation `prune --allocation auto` chose)")
    if args.alpha == "auto":
        raise ValueError("--alpha = 'auto' is not allowed; finetune takes DLP's alpha as a number in [0, 0.5) or none "
                         "(paper Table 19's): pass the alpha `prune --alpha auto` chose")
    for name, low in INTEGER_OPTIONS.items():
        if getattr(args, name) is not None:
            check_int("--" + name.replace("_", "-"), getattr(args, name), low)
    check_int("--seed", args.seed, 0, SEED_LIMIT)
    check_int("--lora-alpha", args.lora_alpha, -INT_LIMIT, INT_LIMIT)
    data = args.data or ("lm" if args.method == "lora" else "tasks")
    prune_method = args.prune_method or ("wanda" if data == "lm" else "none")
    lr = args.lr if args.lr is not None else (1e-4 if args.method == "lora" else 3e-4)
    # --seed is the training seed; the calibration sampling seed stays the configuration's default
    cfg = config_from_args(args, method="wanda" if prune_method == "none" else prune_method, sparsity=args.sparsity,
                           seed=None)
    train_cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
                            seqlen=args.train_seqlen, lr=lr,
                            warmup_steps=args.warmup_steps if args.warmup_steps is not None else args.steps // 10,
                            weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm or None, seed=args.seed)
    spec = FinetuneSpec(method=args.method, data=data, prune=prune_method != "none", train=train_cfg,
                        lora=LoraSettings(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout,
                                          targets=tuple(args.lora_targets)),
                        gamma=args.gamma, interval=args.interval, dlp_weights=args.dlp_weights,
                        galore_rank=args.galore_rank, galore_gap=args.galore_gap, galore_scale=args.galore_scale,
                        max_windows=args.max_windows, task_examples=args.task_examples, eval_limit=args.eval_limit,
                        num_fewshot=args.num_fewshot, merge_ablation=not args.no_merge_ablation)
    return cfg, spec


def summary(result: dict) -> str:
    """A short human-readable line per metric of a fine-tuning result."""
    lines = [f"method {result['spec']['method']}, data {result['spec']['data']}, "
             f"{result['curve']['loss'][0]:.3f} -> {result['curve']['loss'][-1]:.3f} training loss, "
             f"{result['trainable_parameters']:,} trainable parameters, {result['train_seconds']:.0f} s"]
    if "perplexity" in result["before"]:
        for s, v in result["before"]["perplexity"].items():
            lines.append(f"perplexity {s}: {v:.2f} -> {result['after']['perplexity'][s]:.2f}")
    else:
        lines.append(f"mean accuracy: {result['before']['zero_shot']['mean_acc']:.4f} -> "
                     f"{result['after']['zero_shot']['mean_acc']:.4f}")
    return "\n".join(lines)


def checked_config(args):
    """The configuration of `python -m dlp_lib finetune`, every option checked (before any model loads)."""
    from ..allocation import get_allocator
    from ..arguments import check_config_arguments
    from ..cache import check_writable
    from ..validation import check_output_file
    cfg, spec = spec_from_args(args)
    # the layer scores read allocator options whatever the pruning's allocation: owlore OWL's M, dlp DLP's
    read_by_scores = {"owlore": ("owl_m",), "dlp": get_allocator("dlp").params}.get(spec.method, ())
    inputs = check_config_arguments(args, cfg, read_elsewhere=read_by_scores,
                                    lengths={"--train-seqlen": spec.train.seqlen})
    check_output_file(args.json, "--json", inputs)
    check_writable()
    return cfg


def run(args, cfg, lab) -> int:
    """Fine-tune the Lab's model as the arguments say; prints a summary, optionally writes the JSON."""
    from ..cache import atomic_write_json
    _, spec = spec_from_args(args)
    result = finetune(lab, cfg, spec, use_cache=not args.no_cache, progress=not args.quiet,
                      checkpoint_every=args.checkpoint_every)
    print(summary(result))
    if args.json:
        atomic_write_json(args.json, result)
    return 0
