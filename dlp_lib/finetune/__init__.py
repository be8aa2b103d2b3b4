"""Fine-tuning after pruning (paper Table 7) and layer-sampled fine-tuning (Table 18, Appendix F).

Two experiments share one training loop (`loop.train`):

* `data="lm"` (Table 7): causal-LM loss on non-overlapping windows of the calibration corpus's
  TRAIN split, perplexity before/after on the evaluation texts (test split). With `method="lora"`
  this is Wanda's lora_ft protocol, masks fixed (the adapter stays unmerged), plus the merge
  ablation (merged = dense again; re-masked).
* `data="tasks"` (Table 18): answer-only loss on the offline task set built from TRAIN documents
  (`tasks.py`), accuracy on the offline lm-eval suite (validation/test documents) after training.

Methods: `lora` (adapters on q_proj, v_proj), `lisa` / `owlore` / `dlp` (every K steps gamma
decoder blocks unfrozen, drawn with uniform / OWL-outlier-ratio / RID probabilities;
embeddings, final norm and output layer always trainable). Results are cached keyed by the
pruning configuration, the model fingerprint, every training parameter and the seed.

CLI: `python -m dlp_lib finetune --method lora|lisa|owlore|dlp ...` (`add_arguments`, `run`).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..cache import cache_root, cached, config_key, versioned
from ..data import TextSource
from .layer_sampling import DLP_WEIGHTS, SAMPLERS, LayerSampler, always_trainable, block_weights, minmax_scores
from .loop import Examples, KeepZeros, TrainConfig, check_disjoint, count_parameters, lm_windows, train
from .lora import LoraSettings, adapter_parameters, lora_attached, merge_ablation, target_weights

METHODS = ("lora",) + SAMPLERS
# OwLore trains its sampled blocks with GaLore; Table 18 runs DLP "following the settings of OwLore",
# so DLP's sampler uses it too and the two differ only in their probabilities (LISA: full AdamW)
LOW_RANK_METHODS = ("owlore", "dlp")
DATA = ("lm", "tasks")


@dataclass(frozen=True)
class FinetuneSpec:
    """One fine-tuning run: what is trained, on what, how, and how it is evaluated (all in the cache key)."""
    method: str = "lora"                  # lora | lisa | owlore | dlp
    data: str = "lm"                      # lm: calibration corpus train split (Table 7); tasks: offline task set (Table 18)
    prune: bool = True                    # fine-tune the model pruned per the ExperimentConfig (False: dense, as Table 18)
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)  # used by method="lora"
    gamma: int = 2                        # blocks unfrozen at a time (LISA's script: 2; OwLore: 5)
    interval: int = 3                     # K: steps between switches (LISA's script: 3; OwLore: 50)
    dlp_weights: str = "rid"              # dlp: p proportional to the RID (paper's words), its min-max rescaling
                                          # (the authors' OwLore fork) or DLP's keep fraction 1 - R_l
    # OwLore's finetuner.py (pixeli99/OwLore, src/lmflow/pipeline/finetuner.py): GaLoreAdamW param groups
    # with rank 256, update_proj_gap 100, scale 1.0 (GaLore's own defaults, 128 / 200 / 0.25, are not used)
    galore_rank: int = 256                # owlore/dlp: GaLore rank of the sampled blocks' matrices (0: full AdamW)
    galore_gap: int = 100                 # owlore/dlp: steps between GaLore projector refreshes
    galore_scale: float = 1.0             # owlore/dlp: GaLore's scale of the projected update
    max_windows: int | None = None        # data="lm": cap on training windows (None: all of the train split)
    task_examples: int = 400              # data="tasks": training items per task
    task_corpora: tuple[str, ...] = ("bbc", "brown", "sotu", "mobydick")  # data="tasks": train documents of these
    eval_limit: int | None = 200          # data="tasks": evaluated items per task
    num_fewshot: int = 0                  # data="tasks": demonstrations per evaluated item (Table 18: 5)
    merge_ablation: bool = True           # lora + lm: also measure merged and re-masked models

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"Unknown fine-tuning method {self.method!r}; allowed: {', '.join(METHODS)}")
        if self.data not in DATA:
            raise ValueError(f"Unknown fine-tuning data {self.data!r}; allowed: {', '.join(DATA)}")
        if self.interval < 1:
            raise ValueError(f"the switching interval K must be >= 1 step, got {self.interval}")
        if self.gamma < 1:
            raise ValueError(f"gamma (blocks unfrozen at a time) must be >= 1, got {self.gamma}")
        if self.galore_rank < 0 or self.galore_gap < 1 or self.galore_scale <= 0:
            raise ValueError(f"GaLore needs galore_rank >= 0, galore_gap >= 1 and galore_scale > 0; got "
                             f"{self.galore_rank}, {self.galore_gap}, {self.galore_scale}")
        if self.dlp_weights not in DLP_WEIGHTS:
            raise ValueError(f"Unknown dlp_weights {self.dlp_weights!r}; allowed: {', '.join(DLP_WEIGHTS)}")
        from ..data import OFFLINE_SOURCES
        bad = [c for c in self.task_corpora if c not in OFFLINE_SOURCES]
        if bad or not self.task_corpora:
            raise ValueError(f"task_corpora {list(self.task_corpora)}: allowed offline corpora {', '.join(OFFLINE_SOURCES)}")
        if self.task_examples < 1:
            raise ValueError(f"task_examples must be >= 1, got {self.task_examples}")
        from ..zeroshot import check_limit, check_num_fewshot
        check_num_fewshot(self.num_fewshot)
        check_limit(self.eval_limit, "eval_limit")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["train"], d["lora"] = self.train.to_dict(), self.lora.to_dict()
        d["task_corpora"] = list(self.task_corpora)
        if self.method != "lora":
            del d["lora"]
        if self.method == "lora":
            del d["gamma"], d["interval"]
        if self.method != "dlp":
            del d["dlp_weights"]
        if self.method not in LOW_RANK_METHODS:
            del d["galore_rank"], d["galore_gap"], d["galore_scale"]
        if self.data == "lm":
            del d["task_examples"], d["eval_limit"], d["task_corpora"], d["num_fewshot"]
        else:
            del d["max_windows"]
        if not (self.method == "lora" and self.data == "lm"):
            del d["merge_ablation"]
        return d

    def replace(self, **changes) -> "FinetuneSpec":
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------------ the Lab's model state
def _ensure(lab, cfg) -> None:
    """Put the Lab's model in the state cfg says (None: dense); training code restores it afterwards."""
    lab.ensure(cfg)


def pruning_key(lab, cfg) -> dict | None:
    return None if cfg is None else cfg.key("prune", lab.fingerprint)


# ------------------------------------------------------------------------------------ layer scores
def layer_probabilities(lab, cfg, spec: FinetuneSpec) -> list[float]:
    """Sampling probabilities per block for lisa / owlore / dlp (dense pass-1 statistics of cfg's calibration)."""
    from .layer_sampling import probabilities
    from ..models import decoder_blocks
    n = len(decoder_blocks(lab.model))
    if spec.method == "lisa":
        return [1.0 / n] * n
    if spec.method == "owlore":
        return probabilities(lab.dense_statistics(cfg).outlier_ratios(cfg.owl_m)).tolist()
    plan = lab.plan(cfg.replace(allocation="dlp"))
    if spec.dlp_weights == "rid":   # higher RID = more important block = sampled more (Appendix F)
        return probabilities(plan.rid).tolist()
    if spec.dlp_weights == "minmax":
        return probabilities(minmax_scores(plan.rid)).tolist()
    return probabilities([1.0 - r for r in plan.ratios]).tolist()


# ------------------------------------------------------------------------------------ data
def training_data(lab, cfg, spec: FinetuneSpec) -> tuple[Examples, list[dict]]:
    """The training examples and the (source, split) of everything evaluated, checked to be disjoint."""
    if spec.data == "lm":
        data = lm_windows(cfg.calib, lab.tokenizer, spec.train.seqlen, spec.max_windows)
        evaluated = [{"source": TextSource(s).identity(), "split": "test"} for s in cfg.eval]
    else:
        from ..zeroshot_tasks import build_offline_suite, load_items
        from .tasks import check_no_overlap, tokenize_items, training_items
        items = training_items(spec.task_examples, seed=0, corpora=spec.task_corpora)
        suite = build_offline_suite()
        eval_items = [it for t in ("dlp_continuation", "dlp_lastword") for it in load_items(t, suite)]
        check_no_overlap(items, eval_items)
        data = tokenize_items(items, lab.tokenizer, spec.train.seqlen)
        evaluated = [{"source": "offline-tasks", "split": s} for s in ("validation", "test")]
    check_disjoint(data.source, evaluated)
    return data, evaluated


# ------------------------------------------------------------------------------------ one run
def finetune(lab, cfg, spec: FinetuneSpec, *, use_cache: bool = True, progress: bool | None = None,
             checkpoint_every: int = 0) -> dict:
    """Fine-tune the Lab's model (pruned per cfg if spec.prune, else dense), evaluate, restore; cached."""
    if cfg.model != lab.model_name:
        raise ValueError(f"This Lab holds {lab.model_name!r}, not {cfg.model!r}")
    from ..models import decoder_blocks
    n_blocks = len(decoder_blocks(lab.model))
    if spec.method != "lora" and spec.gamma > n_blocks:
        raise ValueError(f"gamma={spec.gamma} exceeds the model's {n_blocks} blocks")
    if spec.method != "lora" and lab.dtype_name != "float32":
        # the base weights themselves are trained: a 16-bit weight cannot hold updates of lr ~1e-5
        # (they round away), and this loop keeps no fp32 master copy
        raise ValueError(f"--method {spec.method} trains the block weights in place and needs float32 weights; "
                         f"the model is {lab.dtype_name}: use dtype float32 (--dtype float32)")
    progress = getattr(lab, "progress", True) if progress is None else progress
    pcfg = cfg if spec.prune else None
    evaluation = ({"eval": [TextSource(s).identity() for s in cfg.eval], "seqlen": cfg.seqlen, "neval": cfg.neval,
                   "eval_dtype": cfg.eval_dtype}
                  if spec.data == "lm" else {"suite": "offline"})
    key = versioned(("eval", "finetune"), model=lab.model_name, fingerprint=lab.fingerprint, dtype=lab.dtype_name,
                    device=torch.device(lab.device).type, pruning=pruning_key(lab, pcfg), spec=spec.to_dict(),
                    evaluation=evaluation,
                    # the layer scores of owlore/dlp come from the calibration of cfg even for a dense model
                    scores_from=None if spec.method in ("lora", "lisa") else pruning_key(lab, cfg))

    def compute():
        return _finetune(lab, cfg, pcfg, spec, key, progress, checkpoint_every, use_cache)
    return cached("finetune", key, compute, enabled=use_cache)


def _evaluate(lab, cfg, spec: FinetuneSpec, model, progress: bool) -> dict:
    if spec.data == "lm":
        return {"perplexity": lab.perplexities(cfg.eval, cfg.seqlen, cfg.neval, cfg.eval_dtype)}
    from ..zeroshot import evaluate_zero_shot
    return {"zero_shot": evaluate_zero_shot(model, lab.tokenizer, "offline", limit=spec.eval_limit,
                                            device=lab.device, progress=progress, num_fewshot=spec.num_fewshot)}


def _before(lab, cfg, pcfg, spec: FinetuneSpec, key: dict, progress: bool, use_cache: bool) -> dict:
    """The untrained model's metrics, cached apart from the training runs (shared by every method and seed)."""
    if spec.data == "tasks":
        from ..runs.zeroshot import zero_shot_for
        return {"zero_shot": zero_shot_for(lab, pcfg, "offline", limit=spec.eval_limit, use_cache=use_cache,
                                           num_fewshot=spec.num_fewshot)}
    bkey = {k: key[k] for k in ("code", "model", "fingerprint", "dtype", "device", "pruning", "evaluation")}

    def compute():
        _ensure(lab, pcfg)
        return _evaluate(lab, cfg, spec, lab.model, progress)
    return cached("finetune_before", bkey, compute, enabled=use_cache)


def _finetune(lab, cfg, pcfg, spec: FinetuneSpec, key: dict, progress: bool, checkpoint_every: int,
              use_cache: bool = True) -> dict:
    probs = layer_probabilities(lab, cfg, spec) if spec.method != "lora" else None
    _ensure(lab, pcfg)
    data, evaluated = training_data(lab, cfg, spec)
    model = lab.model
    ckpt_dir = cache_root() / "finetune_checkpoints" / config_key(key) if checkpoint_every else None
    out = {"spec": spec.to_dict(), "pruning": pcfg.to_dict() if pcfg is not None else None,
           "data": data.source, "evaluated": evaluated, "probabilities": probs}
    t0 = time.perf_counter()
    before = _before(lab, cfg, pcfg, spec, key, progress, use_cache)
    _ensure(lab, pcfg)
    if spec.method == "lora":
        base_before = {k: w.detach().clone() for k, w in target_weights(model, spec.lora.targets).items()}
        with lora_attached(model, spec.lora, spec.train.seed) as peft_model:
            params = adapter_parameters(peft_model)
            hist = train(peft_model, params, data, spec.train, device=lab.device, checkpoint_dir=ckpt_dir,
                         checkpoint_every=checkpoint_every, run_id={"key": config_key(key)}, progress=progress,
                         desc=f"LoRA {spec.data}")
            after = _evaluate(lab, cfg, spec, peft_model, progress)
            base_after = target_weights(peft_model.get_base_model(), spec.lora.targets)
            out["base_weights_identical"] = all(torch.equal(base_before[k], base_after[k]) for k in base_before)
            if spec.data == "lm" and spec.merge_ablation:
                out["merge_ablation"] = merge_ablation(peft_model, spec.lora,
                                                       lambda: _evaluate(lab, cfg, spec, peft_model, False))
        out["trainable_parameters"] = count_parameters(params)
    else:
        snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
        flags = {n: p.requires_grad for n, p in model.named_parameters()}
        sampler = LayerSampler(model, probs, gamma=spec.gamma, interval=spec.interval, seed=spec.train.seed)
        fixed = always_trainable(model)
        hooks = [sampler] + ([KeepZeros(block_weights(model))] if pcfg is not None else [])
        for p in model.parameters():
            p.requires_grad_(False)
        for p in fixed:
            p.requires_grad_(True)
        try:
            galore = (dict(rank=spec.galore_rank, update_gap=spec.galore_gap, scale=spec.galore_scale)
                      if spec.method in LOW_RANK_METHODS and spec.galore_rank else None)
            hist = train(model, sampler.trainable_parameters() + fixed, data, spec.train, hooks=hooks,
                         device=lab.device, checkpoint_dir=ckpt_dir, checkpoint_every=checkpoint_every,
                         run_id={"key": config_key(key)}, progress=progress, desc=spec.method,
                         low_rank=block_weights(model), galore=galore)
            after = _evaluate(lab, cfg, spec, model, progress)
            if pcfg is not None:
                out["zeros_kept"] = all(bool((w[m == 0] == 0).all()) for w, m in
                                        zip(hooks[1].weights, hooks[1].masks))
        finally:
            model.load_state_dict(snapshot)
            for n, p in model.named_parameters():
                p.requires_grad_(flags[n])
        block_size = count_parameters(sampler.trainable_parameters()) // n_blocks_of(model)
        out["trainable_parameters"] = count_parameters(fixed) + spec.gamma * block_size
        out["active_blocks"] = sampler.history
    out.update(before=before, after=after, curve={k: hist[k] for k in ("loss", "lr", "tokens")},
               memory=hist["memory"], train_seconds=hist["seconds"], seconds=time.perf_counter() - t0,
               tokens_trained=int(sum(hist["tokens"])))
    return out


def n_blocks_of(model) -> int:
    from ..models import decoder_blocks
    return len(decoder_blocks(model))


# ------------------------------------------------------------------------------------ CLI
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


def run(args) -> int:
    """Entry of `python -m dlp_lib finetune`; prints a summary, optionally writes the JSON."""
    from ..allocation import get_allocator
    from ..arguments import check_config_arguments
    from ..cache import atomic_write_json, check_writable
    from ..experiment import lab_for
    from ..validation import check_output_file
    cfg, spec = spec_from_args(args)   # bad values fail here, before the model loads
    # the layer scores read allocator options whatever the pruning's allocation: owlore OWL's M, dlp DLP's
    read_by_scores = {"owlore": ("owl_m",), "dlp": get_allocator("dlp").params}.get(spec.method, ())
    inputs = check_config_arguments(args, cfg, read_elsewhere=read_by_scores,
                                    lengths={"--train-seqlen": spec.train.seqlen})
    check_output_file(args.json, "--json", inputs)
    check_writable()
    lab = lab_for(cfg, progress=not args.quiet)
    result = finetune(lab, cfg, spec, use_cache=not args.no_cache, progress=not args.quiet,
                      checkpoint_every=args.checkpoint_every)
    print(summary(result))
    if args.json:
        atomic_write_json(args.json, result)
    return 0
