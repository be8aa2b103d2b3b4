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
