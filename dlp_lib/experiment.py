"""One experiment = configuration -> plan -> pruned model -> metrics. Used by the CLI and notebooks.

`Lab` keeps the loaded model, its dense weights, calibration windows and dense statistics in
memory, so a notebook sweeping allocators, alphas or sparsities pays the dense pass once.
Every result is cached on disk keyed by the full configuration and the model fingerprint.
"""
from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from dataclasses import dataclass, field

import torch

from . import allocation as alloc
from .block_stats import LAYER_STATISTICS, DenseStatistics, dense_statistics
from .cache import cached
from .data import TextSource, calibration_windows, evaluation_windows
from .evaluation import achieved_sparsity, layer_outlier_distribution, perplexity
from .models import load_model, model_fingerprint
from .plan import SparsityPlan, build_plan
from .pruning import METHODS, prune_model
from .scores import GROUPS, NMPattern, check_ratio

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

PROFILES = {
    # seconds on a CPU: a random tiny model, what CI executes for every notebook
    "smoke": dict(model="tiny-llama", calib="bbc", nsamples=4, seqlen=64, eval=("brown",), neval=4,
                  device="cpu", dtype="float32", sparsities=(0.5, 0.7), extra_eval=("sotu",)),
    # the embedded real model on a 2-core laptop CPU
    "default": dict(model="smollm2-135m", calib="bbc", nsamples=32, seqlen=512, eval=("brown",), neval=32,
                    device="cpu", dtype="float32", sparsities=(0.5, 0.6, 0.7),
                    extra_eval=("sotu", "mobydick")),
    # the paper's protocol: LLaMA-1 7B, 128 x 2048 C4 calibration, WikiText-2 at 2048, fp16 GPU
    "paper": dict(model="huggyllama/llama-7b", calib="c4", nsamples=128, seqlen=2048, eval=("wikitext2",),
                  neval=None, device="cuda", dtype="float16", sparsities=(0.5, 0.6, 0.7, 0.8),
                  extra_eval=("ptb", "c4")),
}


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that determines a pruning result."""
    model: str = "smollm2-135m"
    method: str = "wanda"
    allocation: str = "dlp"
    sparsity: float = 0.7
    alpha: float | None = None      # None: paper Table 19 for the sparsity
    statistic: str = "median"       # DLP layer statistic F: median (paper) or mean (released code), ...
    lamda: float = 0.08             # OWL lambda
    owl_m: float = 5.0              # OWL M
    calib: str = "bbc"
    nsamples: int = 32
    seqlen: int = 512
    seed: int = 0
    eval: tuple[str, ...] = ("brown",)
    neval: int | None = 32
    group: str = "per_output"
    nm: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    strict_ratios: bool = False
    lod_m: float | None = None      # also measure the LOD (Table 2) after pruning
    granularity: str = "block"      # dlp/owl: one ratio per block (paper) or per sublayer (Appendix C)

    def __post_init__(self):
        check_ratio(self.sparsity)
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; allowed: {', '.join(METHODS)}")
        from .plan import WEIGHT_ALLOCATORS
        allowed = alloc.ALLOCATIONS + tuple(WEIGHT_ALLOCATORS)
        if self.allocation not in allowed:
            raise ValueError(f"Unknown allocation {self.allocation!r}; allowed: {', '.join(allowed)}")
        if self.granularity not in ("block", "sublayer"):
            raise ValueError(f"Unknown granularity {self.granularity!r}; allowed: block, sublayer")
        if self.granularity == "sublayer" and self.allocation not in ("dlp", "owl"):
            raise ValueError(f"granularity='sublayer' applies to dlp and owl, not {self.allocation!r}")
        if self.statistic not in LAYER_STATISTICS:
            raise ValueError(f"Unknown statistic {self.statistic!r}; allowed: {', '.join(LAYER_STATISTICS)}")
        if self.group not in GROUPS:
            raise ValueError(f"Unknown group {self.group!r}; allowed: {', '.join(GROUPS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"Unknown dtype {self.dtype!r}; allowed: {', '.join(DTYPES)}")
        if self.nm is not None:
            NMPattern.parse(self.nm)
        for s in (self.calib, *self.eval):
            TextSource(s)

    @classmethod
    def from_profile(cls, profile: str = "default", **overrides) -> "ExperimentConfig":
        if profile not in PROFILES:
            raise ValueError(f"Unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
        names = {f.name for f in dataclasses.fields(cls)}
        base = {k: v for k, v in PROFILES[profile].items() if k in names}
        base.update({k: v for k, v in overrides.items() if v is not None or k in ("alpha", "nm", "neval")})
        if isinstance(base.get("eval"), list):
            base["eval"] = tuple(base["eval"])
        return cls(**base)

    def replace(self, **changes) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)

    def resolved_alpha(self) -> float | None:
        if self.allocation != "dlp":
            return None
        return alloc.paper_alpha(self.sparsity) if self.alpha is None else float(self.alpha)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["eval"] = list(self.eval)
        d["alpha"] = self.resolved_alpha()
        if self.granularity == "block":  # the default is left out so cache keys of earlier results stay valid
            del d["granularity"]
        return d


class Lab:
    """Holds one model (dense weights kept aside) and its calibration artefacts in memory."""

    def __init__(self, model: str, *, device: str = "cpu", dtype: str = "float32", progress: bool = True):
        self.model_name, self.device, self.dtype_name = model, device, dtype
        self.progress = progress
        self.model, self.tokenizer = load_model(model, dtype=DTYPES[dtype], device="cpu" if device == "cuda" else device)
        if device == "cuda":  # weights stay on the CPU; the engine moves one block at a time
            self._place_non_blocks(device)
        self.fingerprint = model_fingerprint(self.model)
        self._dense_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self._calib: dict = {}
        self._stats: dict = {}
        self._eval: dict = {}
        self._pruned_key = None

    def _place_non_blocks(self, device):
        from .models import decoder_blocks
        blocks = decoder_blocks(self.model)
        for module in self.model.children():
            for name, sub in module.named_children():
                if sub is not blocks:
                    sub.to(device)
        self.model.lm_head.to(device) if hasattr(self.model, "lm_head") else None

    # -- data ------------------------------------------------------------------------------
    def calibration(self, cfg: ExperimentConfig) -> torch.Tensor:
        key = (cfg.calib, cfg.nsamples, cfg.seqlen, cfg.seed)
        if key not in self._calib:
            self._calib[key] = calibration_windows(cfg.calib, self.tokenizer, cfg.nsamples, cfg.seqlen, cfg.seed)
        return self._calib[key]

    def eval_windows(self, source: str, seqlen: int, neval: int | None) -> torch.Tensor:
        key = (source, seqlen, neval)
        if key not in self._eval:
            self._eval[key] = evaluation_windows(source, self.tokenizer, seqlen, neval)
        return self._eval[key]

    def _data_key(self, cfg: ExperimentConfig) -> dict:
        return {"model": self.model_name, "fingerprint": self.fingerprint, "calib": TextSource(cfg.calib).identity(),
                "nsamples": cfg.nsamples, "seqlen": cfg.seqlen, "seed": cfg.seed, "dtype": self.dtype_name,
                "device": torch.device(self.device).type}

    # -- pass 1 ------------------------------------------------------------------------------
    def dense_statistics(self, cfg: ExperimentConfig) -> DenseStatistics:
        key = tuple(sorted(self._data_key(cfg).items()))
        if key not in self._stats:
            self.restore_dense()
            self._stats[key] = dense_statistics(self.model, self.calibration(cfg), self._data_key(cfg),
                                                device=self.device, progress=self.progress)
        return self._stats[key]

    def plan(self, cfg: ExperimentConfig) -> SparsityPlan:
        # pass 1 feeds DLP/OWL, and Global's calibration-aware scores; ER, LAMP, AlphaPruning read only the weights
        needs_stats = cfg.allocation in ("dlp", "owl") or (cfg.allocation == "global" and cfg.method != "magnitude")
        stats = self.dense_statistics(cfg) if needs_stats else None
        if cfg.allocation not in alloc.ALLOCATIONS:
            self.restore_dense()
        from .plan import WEIGHT_ALLOCATORS
        extra = {}
        if cfg.allocation in WEIGHT_ALLOCATORS:  # Global scores with the method; AlphaPruning caches by fingerprint
            extra = dict(method=cfg.method, cache_config=self._data_key(cfg))
        plan = build_plan(cfg.allocation, cfg.sparsity, stats=stats, model=self.model, alpha=cfg.resolved_alpha(),
                          statistic=cfg.statistic, lamda=cfg.lamda, owl_m=cfg.owl_m, strict=cfg.strict_ratios,
                          granularity=cfg.granularity, **extra)
        plan.config.update(model=self.model_name, method=cfg.method)
        return plan

    # -- pass 2 and evaluation ------------------------------------------------------------------
    def restore_dense(self) -> None:
        if self._pruned_key is not None:
            self.model.load_state_dict(self._dense_state)
            self._pruned_key = None

    def prune(self, cfg: ExperimentConfig, plan: SparsityPlan | None = None) -> SparsityPlan:
        """Prune the in-memory model per `cfg` (from the dense weights); returns the plan used."""
        plan = plan or self.plan(cfg)
        self.restore_dense()
        nm = NMPattern.parse(cfg.nm) if cfg.nm else None
        prune_model(self.model, plan, cfg.method, self.calibration(cfg), group=cfg.group, nm=nm,
                    device=self.device, progress=self.progress)
        self._pruned_key = cfg
        return plan

    def perplexities(self, sources, seqlen: int, neval: int | None) -> dict[str, float]:
        # Pruning keeps the blocks on the CPU and streams them; evaluation runs the whole model,
        # so on a GPU the blocks move there for the evaluation only (a 7B fp16 model: ~13.5 GB).
        offloaded = torch.device(self.device).type == "cuda"
        if offloaded:
            self.model.to(self.device)
        try:
            return {TextSource(s).label: perplexity(self.model, self.eval_windows(s, seqlen, neval),
                                                    device=self.device, progress=self.progress,
                                                    desc=f"perplexity {TextSource(s).label}")
                    for s in sources}
        finally:
            if offloaded:
                from .models import decoder_blocks
                decoder_blocks(self.model).to("cpu")
                torch.cuda.empty_cache()

    def dense_perplexity(self, cfg: ExperimentConfig) -> dict[str, float]:
        def compute():
            self.restore_dense()
            return self.perplexities(cfg.eval, cfg.seqlen, cfg.neval)
        key = {**self._data_key(cfg), "eval": [TextSource(s).identity() for s in cfg.eval], "neval": cfg.neval}
        key.pop("calib"), key.pop("nsamples"), key.pop("seed")
        return cached("dense_perplexity", key, compute)

    def run(self, cfg: ExperimentConfig, *, use_cache: bool = True) -> dict:
        """Plan, prune, evaluate; the result dict is cached on disk keyed by the whole config."""
        if cfg.model != self.model_name:
            raise ValueError(f"This Lab holds {self.model_name!r}, not {cfg.model!r}")

        def compute():
            dense_ppl = self.dense_perplexity(cfg)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", alloc.RatioRangeWarning)
                plan = self.prune(cfg)
            t_prune = time.perf_counter() - t0
            ppl = self.perplexities(cfg.eval, cfg.seqlen, cfg.neval)
            out = {"config": cfg.to_dict(), "ratios": plan.ratios, "rid": plan.rid,
                   "block_statistic": plan.block_statistic, "plan": plan.to_dict(),
                   "perplexity": {"dense": dense_ppl, "pruned": ppl},
                   "achieved_sparsity": achieved_sparsity(self.model),
                   "warnings": [str(w.message) for w in caught], "prune_seconds": t_prune,
                   "model_fingerprint": self.fingerprint}
            if cfg.lod_m is not None:
                out["lod"] = layer_outlier_distribution(self.model, self.calibration(cfg), cfg.lod_m,
                                                        device=self.device, progress=self.progress)
            return out
        key = {**cfg.to_dict(), "fingerprint": self.fingerprint,
               "calib_id": TextSource(cfg.calib).identity(),
               "eval_ids": [TextSource(s).identity() for s in cfg.eval]}
        return cached("results", key, compute, enabled=use_cache)


_LABS: dict = {}


def get_lab(model: str, device: str = "cpu", dtype: str = "float32", progress: bool = True) -> Lab:
    """A process-wide Lab per (model, device, dtype), so notebooks and the CLI load a model once."""
    key = (model, device, dtype)
    if key not in _LABS:
        _LABS[key] = Lab(model, device=device, dtype=dtype, progress=progress)
    return _LABS[key]


def run_experiment(cfg: ExperimentConfig, *, use_cache: bool = True, progress: bool = True) -> dict:
    return get_lab(cfg.model, cfg.device, cfg.dtype, progress).run(cfg, use_cache=use_cache)
