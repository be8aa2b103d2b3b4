"""One experiment = configuration -> plan -> pruned model -> metrics. Used by the CLI and notebooks.

`Lab` keeps the loaded model, its dense weights, calibration windows and dense statistics in
memory, so a notebook sweeping allocators, alphas or sparsities pays the dense pass once.
Every result is cached on disk keyed by the full configuration and the model fingerprint.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from dataclasses import dataclass, field

import torch

from . import allocation as alloc
from .allocation import get_allocator
from .block_stats import DenseStatistics, dense_statistics
from .cache import cached, config_key, versioned
from .data import TextSource, calibration_windows, evaluation_windows
from .evaluation import achieved_sparsity, layer_outlier_distribution, perplexity
from .dense_weights import DenseWeights
from .fingerprint import model_fingerprint
from .layout import ROLE_STAGES
from .calibration import check_replay
from .models import load_model
from .allocation import build_plan
from .plan import SparsityPlan
from . import pruned_weights
from .pruning import default_group, prune_model
from .scores import NMPattern

ROLES = tuple(ROLE_STAGES)  # data < plan < prune < eval: a later role's results depend on every earlier one

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

PROFILES = {
    # seconds on a CPU: a random tiny model, what CI executes for every notebook
    "smoke": dict(model="tiny-llama", calib="bbc", nsamples=4, seqlen=64, eval=("brown",), neval=4,
                  device="cpu", dtype="float32", eval_dtype="auto", sparsities=(0.5, 0.7), extra_eval=("sotu",)),
    # the embedded real model on a 2-core laptop CPU
    "default": dict(model="smollm2-135m", calib="bbc", nsamples=16, seqlen=512, eval=("brown",), neval=16,
                    device="cpu", dtype="float32", eval_dtype="auto", sparsities=(0.5, 0.6, 0.7),
                    extra_eval=("sotu", "mobydick")),
    # the paper's protocol: LLaMA-1 7B, 128 x 2048 C4 calibration, WikiText-2 at 2048, fp16 GPU
    "paper": dict(model="huggyllama/llama-7b", calib="c4", nsamples=128, seqlen=2048, eval=("wikitext2",),
                  neval=None, device="cuda", dtype="float16", eval_dtype="same", sparsities=(0.5, 0.6, 0.7, 0.8),
                  extra_eval=("ptb", "c4")),
}


def _role(role: str, default):
    return field(default=default, metadata={"role": role})


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that determines a pruning result. Each field has a role: `data` (model, numerics,
    calibration windows), `plan` (the allocator and its parameters), `prune` (what consumes the
    plan), `eval` (what is measured afterwards). The keys below are built from the roles, so a
    new field is in the right cache keys by declaring its role."""
    model: str = _role("data", "smollm2-135m")        # embedded/registry name, tiny-<family>, directory, .gguf, hub id
    revision: str | None = _role("data", None)       # hub revision (branch, tag, commit) of the model
    trust_remote_code: bool = _role("data", False)   # allow a hub model's own modelling code
    method: str = _role("prune", "wanda")            # magnitude | wanda | sparsegpt
    allocation: str = _role("plan", "dlp")           # a name of the allocator registry
    sparsity: float = _role("plan", 0.7)             # target mean sparsity p in [0, 1)
    alpha: float | None = _role("plan", None)        # DLP alpha; None: paper Table 19 for the sparsity
    statistic: str = _role("plan", "median")         # DLP layer statistic F: median (paper), mean (code), ...
    lamda: float = _role("plan", 0.08)               # OWL lambda
    owl_m: float = _role("plan", 5.0)                # OWL outlier threshold M
    calib: str = _role("data", "bbc")                # calibration source
    nsamples: int = _role("data", 16)                # calibration windows
    seqlen: int = _role("data", 512)                 # tokens per calibration and evaluation window
    seed: int = _role("data", 0)                     # calibration sampling seed
    eval: tuple[str, ...] = _role("eval", ("brown",))  # evaluation sources
    neval: int | None = _role("eval", 16)            # evaluation windows per source (None: all)
    eval_dtype: str = _role("eval", "same")          # perplexity compute: same | auto | bf16/fp16 autocast of fp32
    group: str | None = _role("prune", None)         # mask comparison group; None: the method's default
    nm: str | None = _role("prune", None)            # N:M pattern, N kept of every M
    device: str = _role("data", "cpu")               # compute device
    dtype: str = _role("data", "float32")            # weight and activation dtype; "auto" is resolved here
    strict_ratios: bool = _role("plan", False)       # an out-of-range ratio is an error, not rebalanced
    lod_m: float | None = _role("eval", None)        # also measure the LOD (Table 2) after pruning
    granularity: str = _role("plan", "block")        # dlp/owl: one ratio per block (paper) or per sublayer

    def __post_init__(self):
        from .validation import resolve_dtype, resolve_eval_dtype, validate_config
        # resolved at once, so that keys, stamps and reports name the dtype that really ran
        object.__setattr__(self, "dtype", resolve_dtype(self.dtype, self.device))
        object.__setattr__(self, "eval_dtype", resolve_eval_dtype(self.eval_dtype, self.dtype, self.device))
        validate_config(self)

    @classmethod
    def from_profile(cls, profile: str = "default", **overrides) -> "ExperimentConfig":
        if profile not in PROFILES:
            raise ValueError(f"Unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(f"Unknown configuration field(s) {sorted(unknown)}; allowed: {sorted(names)}")
        base = {k: v for k, v in PROFILES[profile].items() if k in names}
        base.update({k: v for k, v in overrides.items() if v is not None or k in ("alpha", "nm", "neval")})
        if isinstance(base.get("eval"), list):
            base["eval"] = tuple(base["eval"])
        return cls(**base)

    @classmethod
    def fields_of(cls, *roles: str) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["role"] in roles)

    def replace(self, **changes) -> "ExperimentConfig":
        if "dtype" in changes and "eval_dtype" not in changes:
            # the evaluation follows the new weights, unless it was an autocast those weights allow
            keeps = self.eval_dtype != self.dtype and changes["dtype"] == "float32"
            changes["eval_dtype"] = self.eval_dtype if keeps else "same"
        return dataclasses.replace(self, **changes)

    def resolved_alpha(self) -> float | None:
        """The alpha of an allocator that takes one (DLP and its controls); None for the others."""
        if "alpha" not in get_allocator(self.allocation).params:
            return None
        return alloc.paper_alpha(self.sparsity) if self.alpha is None else float(self.alpha)

    def resolved_group(self) -> str:
        """per_layer for Magnitude (one threshold per matrix, as Wanda's and the DLP authors' code), per_output
        (Wanda's per-row comparison) for the others, unless given."""
        return self.group if self.group is not None else default_group(self.method)

    def allocator_params(self) -> dict:
        """The parameters the configured allocator reads, from this config's fields."""
        params = {"alpha": self.resolved_alpha()}
        names = get_allocator(self.allocation).params
        return {p: params.get(p, getattr(self, p, None)) for p in names}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["eval"] = list(self.eval)
        d["alpha"] = self.resolved_alpha()
        d["group"] = self.resolved_group()
        return d

    # -- cache keys: a stage's key holds the fields of its role and of every earlier role, the identity
    # of the weights and of the text sources, and the code versions of the stages that computed it.
    def key(self, role: str | tuple[str, ...], fingerprint: str, *, code: tuple[str, ...] | None = None,
            **extra) -> dict:
        """The cache key of a value computed from this configuration: its fields of `role` and of every
        earlier role (data < plan < prune < eval; a tuple names the roles exactly), the model's
        `fingerprint`, the texts' identities, the code versions of those roles' stages
        (layout.ROLE_STAGES) plus the stages in `code`, and `extra` fields.

        key("data") is what pass 1 depends on, key("plan") the per-block budgets, key("prune") the
        pruned weights (two configs with equal keys prune identically), key("eval") a full result."""
        roles = (role,) if isinstance(role, str) else tuple(role)
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise ValueError(f"Unknown configuration role(s) {unknown}; allowed: {', '.join(ROLES)}")
        if isinstance(role, str):
            roles = ROLES[: ROLES.index(role) + 1]
        d = self.to_dict()
        fields = {f: d[f] for f in self.fields_of(*roles)}
        fields["device"] = torch.device(self.device).type
        fields["fingerprint"] = fingerprint
        fields["calib"] = TextSource(self.calib).identity()
        if "eval" in roles:
            fields["eval"] = [TextSource(s).identity() for s in self.eval]
        stages = [s for r in roles for s in ROLE_STAGES[r]] + list(code or ())
        return versioned(stages, **fields, **extra)


class Lab:
    """Holds one model (dense weights kept aside) and its calibration artefacts in memory.

    The model's state is the Lab's: `ensure(cfg)` makes it pruned exactly as `cfg` says (or dense
    for None) and is the only way to change it; `pruned_config` says what it holds now. `run`
    returns a (possibly cached) result and leaves the model in an unspecified state; call
    `ensure(cfg)` before using the model itself. `use_cache=False` recomputes every stage (tokens,
    pass 1, dense perplexity, results) and overwrites what is cached. `dense_copy` says where the
    dense block weights are kept for restoring: "memory", "disk" (read back from a file in the cache, no
    second copy in RAM), or "auto" (disk above 2 GiB of block weights). `share_pruning` stores each
    pruned model's masks (and SparseGPT's updated weights) by pruning key, so another notebook or
    process pruning identically applies them instead of pruning again (`dlp_lib.pruned_weights`).
    """

    def __init__(self, model: str, *, device: str = "cpu", dtype: str = "float32", progress: bool = True,
                 use_cache: bool = True, dense_copy: str = "auto", revision: str | None = None,
                 trust_remote_code: bool = False, eval_devices: str | None = None, share_pruning: bool = True):
        from .placement import parse_devices
        from .validation import resolve_dtype
        self.eval_devices = parse_devices(eval_devices) if eval_devices else None
        dtype = resolve_dtype(dtype, device)
        self.model_name, self.device, self.dtype_name = model, device, dtype
        self.revision, self.trust_remote_code = revision, trust_remote_code
        self.progress, self.use_cache, self.share_pruning = progress, use_cache, share_pruning
        self._prune_seconds, self._pruned_from_cache = None, False
        self._model, self._tokenizer = load_model(model, dtype=DTYPES[dtype],
                                                  device="cpu" if device == "cuda" else device,
                                                  revision=revision, trust_remote_code=trust_remote_code)
        check_replay(self._model)  # the guard: block-by-block replay must equal the full forward
        if device == "cuda":  # weights stay on the CPU; the engine moves one block at a time
            self._place_non_blocks(device)
        self._fingerprint = model_fingerprint(self._model)
        self._dense = DenseWeights(self._model, self._fingerprint, dense_copy)
        self._calib: dict = {}
        self._stats: dict = {}
        self._eval: dict = {}
        self._pruned: ExperimentConfig | None = None
        self._pruned_key: dict | None = None
        self._plan: SparsityPlan | None = None

    model = property(lambda self: self._model, doc="the in-memory model (state: see pruned_config)")
    tokenizer = property(lambda self: self._tokenizer)
    fingerprint = property(lambda self: self._fingerprint, doc="hash of every dense weight's bytes")
    pruned_config = property(lambda self: self._pruned, doc="the config the model is pruned with; None: dense")

    def _place_non_blocks(self, device):
        from .models import decoder_blocks
        blocks = decoder_blocks(self._model)
        for module in self._model.children():
            for name, sub in module.named_children():
                if sub is not blocks:
                    sub.to(device)
        self._model.lm_head.to(device) if hasattr(self._model, "lm_head") else None

    def _check(self, cfg: ExperimentConfig) -> None:
        if (cfg.model, cfg.revision, cfg.trust_remote_code) != (self.model_name, self.revision, self.trust_remote_code):
            raise ValueError(f"This Lab holds {self.model_name!r} (revision {self.revision}), not {cfg.model!r} "
                             f"(revision {cfg.revision})")

    # -- data ------------------------------------------------------------------------------
    def calibration(self, cfg: ExperimentConfig) -> torch.Tensor:
        return self.windows("calibration", cfg.calib, cfg.nsamples, cfg.seqlen, cfg.seed)

    def windows(self, kind: str, source: str, n: int, seqlen: int, seed: int) -> torch.Tensor:
        """(n, seqlen) token windows of a source's train split drawn with `seed`, kept in memory."""
        key = (kind, source, n, seqlen, seed)
        if key not in self._calib:
            self._calib[key] = calibration_windows(source, self._tokenizer, n, seqlen, seed,
                                                   use_cache=self.use_cache)
        return self._calib[key]

    def eval_windows(self, source: str, seqlen: int, neval: int | None) -> torch.Tensor:
        key = (source, seqlen, neval)
        if key not in self._eval:
            self._eval[key] = evaluation_windows(source, self._tokenizer, seqlen, neval, use_cache=self.use_cache)
        return self._eval[key]

    # -- pass 1 ------------------------------------------------------------------------------
    def dense_statistics(self, cfg: ExperimentConfig) -> DenseStatistics:
        key = cfg.key("data", self._fingerprint, code=("statistics",))   # pass 1: data + the statistics' code
        memo = config_key(key)
        if memo not in self._stats:
            self.ensure(None)
            self._stats[memo] = dense_statistics(self._model, self.calibration(cfg), key, device=self.device,
                                                 progress=self.progress, use_cache=self.use_cache)
        return self._stats[memo]

    @staticmethod
    def _check_chosen(cfg: ExperimentConfig) -> None:
        # choosing needs results computed on a Lab (dlp_lib.runs, the floor above): the Lab takes the choice
        if cfg.allocation == "auto":
            raise ValueError("allocation 'auto' is chosen on held-out calibration text by dlp_lib.runs.auto_allocation "
                             "(run_auto(lab, cfg), selected(lab, cfg)); Lab.plan, Lab.ensure and Lab.run take the "
                             "chosen configuration")

    def plan(self, cfg: ExperimentConfig) -> SparsityPlan:
        """The per-block budgets of cfg's allocator (pure in its inputs: pass-1 statistics and/or the
        dense weights, as the allocator declares)."""
        self._check(cfg)
        self._check_chosen(cfg)
        allocator = get_allocator(cfg.allocation)
        stats = self.dense_statistics(cfg) if allocator.needs_stats(cfg.method) else None
        if allocator.needs_weights:
            self.ensure(None)
        plan = build_plan(cfg.allocation, cfg.sparsity, stats=stats, model=self._model, strict=cfg.strict_ratios,
                          granularity=cfg.granularity, method=cfg.method,
                          cache_config=cfg.key("data", self._fingerprint), **cfg.allocator_params())
        plan.config.update(model=self.model_name, method=cfg.method)
        return plan

    # -- pass 2 and evaluation ------------------------------------------------------------------
    def ensure(self, cfg: ExperimentConfig | None) -> SparsityPlan | None:
        """Make the model pruned exactly as `cfg` says (dense for None); returns the plan used.

        Configs that differ only in what is evaluated share the pruning (equal `key("prune", ...)`)."""
        if cfg is None:
            if self._pruned is not None:
                self._dense.restore(self._model)
                self._pruned, self._pruned_key, self._plan = None, None, None
            return None
        self._check(cfg)
        self._check_chosen(cfg)
        key = cfg.key("prune", self._fingerprint)
        if self._pruned_key == key:
            return self._plan
        plan = self.plan(cfg)
        self.ensure(None)
        try:
            self._prune_seconds, self._pruned_from_cache = self._prune(cfg, key, plan)
        except BaseException:
            self._dense.restore(self._model)  # never leave a half-pruned model behind
            raise
        self._pruned, self._pruned_key, self._plan = cfg, key, plan
        return plan

    def _prune(self, cfg: ExperimentConfig, key: dict, plan: SparsityPlan) -> tuple[float, bool]:
        """Prune the dense model as cfg says, or apply the stored weights of an identical earlier
        pruning (same pruning key); returns (seconds the pruning took, whether it was stored)."""
        nm = NMPattern.parse(cfg.nm) if cfg.nm else None

        def prune() -> float:
            t0 = time.perf_counter()
            prune_model(self._model, plan, cfg.method, self.calibration(cfg), group=cfg.resolved_group(), nm=nm,
                        device=self.device, progress=self.progress)
            return time.perf_counter() - t0

        with_values = cfg.method in pruned_weights.WEIGHT_UPDATING_METHODS
        if (not self.share_pruning or pruned_weights.entry_bytes(self._model, with_values, 1 - cfg.sparsity)
                > pruned_weights.MAX_ENTRY_BYTES):
            return prune(), False
        computed = []

        def compute() -> dict:
            computed.append(True)
            return {"prune_seconds": prune(), **pruned_weights.capture(self._model, with_values)}
        entry = cached("pruned_weights", key, compute, fmt="torch", enabled=self.use_cache)
        if computed:
            return entry["prune_seconds"], False
        try:
            pruned_weights.apply_(self._model, entry)
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:  # an entry that does not fit this model
            warnings.warn(f"stored pruned weights do not fit the model ({exc}); pruning again", stacklevel=3)
            self._dense.restore(self._model)
            entry = cached("pruned_weights", key, compute, fmt="torch", enabled=False)
            return entry["prune_seconds"], False
        return entry["prune_seconds"], True

    def mark_modified(self, tag) -> None:
        """Record that a compressor changed the block weights in place (outside ensure): the model now
        matches no configuration, and the next ensure() restores the dense weights first."""
        self._pruned, self._pruned_key, self._plan = tag, {"modified_outside_the_lab": repr(tag)}, None

    @contextlib.contextmanager
    def evaluation_placement(self):
        """The whole model placed for an evaluation's forward; yields the device inputs go to.

        Pruning keeps the blocks on the CPU and streams them; evaluation runs the whole model:
        spread over `eval_devices` (a model larger than one GPU), or on the GPU for the evaluation
        only (a 7B fp16 model: ~13.5 GB), or where it is (CPU)."""
        from .models import decoder_blocks
        if self.eval_devices:
            from .placement import block_device_map, dispatched
            with dispatched(self._model, block_device_map(self._model, self.eval_devices)):
                yield self.eval_devices[0]
            if torch.device(self.device).type == "cuda":
                self._place_non_blocks(self.device)
            return
        offloaded = torch.device(self.device).type == "cuda"
        if offloaded:
            self._model.to(self.device)
        try:
            yield self.device
        finally:
            if offloaded:
                decoder_blocks(self._model).to("cpu")
                torch.cuda.empty_cache()

    def perplexities(self, sources, seqlen: int, neval: int | None, eval_dtype: str | None = None
                     ) -> dict[str, float]:
        """Perplexity of the model as it is now on each source; eval_dtype: the compute dtype
        (None: the weights'; "bfloat16"/"float16": autocast over fp32 weights). Not cached: the
        model may have been changed by the caller."""
        compute_dtype = DTYPES[eval_dtype] if eval_dtype else None
        with self.evaluation_placement() as device:
            return {TextSource(s).label: perplexity(self._model, self.eval_windows(s, seqlen, neval), device=device,
                                                    progress=self.progress, desc=f"perplexity {TextSource(s).label}",
                                                    compute_dtype=compute_dtype)
                    for s in sources}

    def _state_perplexities(self, cfg: ExperimentConfig, *, dense: bool = False) -> dict[str, float]:
        """Perplexity on each of cfg's texts of the dense model (dense=True) or of the model in the
        state ensure() made, cached per text: a notebook evaluating another text set reuses the
        texts done. The dense weights are restored only if some text must be evaluated."""
        if dense:
            state = versioned(ROLE_STAGES["data"], **{k: v for k, v in cfg.key("data", self._fingerprint).items()
                                                      if k in ("model", "revision", "fingerprint", "dtype", "device")})
        elif self._pruned is None:
            return self._state_perplexities(cfg, dense=True)
        elif isinstance(self._pruned, ExperimentConfig):
            state = self._pruned_key
        else:
            raise RuntimeError("the model was modified outside the Lab; call ensure() first")
        out = {}
        with contextlib.ExitStack() as stack:
            placed: list = []

            def compute(source):
                if not placed:  # the model moves for the evaluation only if some text is not cached
                    if dense:
                        self.ensure(None)
                    placed.append(stack.enter_context(self.evaluation_placement()))
                return perplexity(self._model, self.eval_windows(source, cfg.seqlen, cfg.neval), device=placed[0],
                                  progress=self.progress, desc=f"perplexity {TextSource(source).label}",
                                  compute_dtype=DTYPES[cfg.eval_dtype])
            for s in cfg.eval:
                key = versioned(ROLE_STAGES["eval"], state=state, text=TextSource(s).identity(), seqlen=cfg.seqlen,
                                neval=cfg.neval, eval_dtype=cfg.eval_dtype)
                out[TextSource(s).label] = cached("perplexity", key, lambda s=s: compute(s), enabled=self.use_cache)
        return out

    def dense_perplexity(self, cfg: ExperimentConfig) -> dict[str, float]:
        self._check(cfg)
        return self._state_perplexities(cfg, dense=True)

    def run(self, cfg: ExperimentConfig, *, use_cache: bool | None = None) -> dict:
        """Plan, prune, evaluate; the result dict is cached on disk under cfg.key("eval", ...).

        use_cache=False recomputes this result (and, if the Lab was made with use_cache=False,
        every stage before it). Allocation "auto" is refused: `dlp_lib.runs.auto_allocation.run_auto`
        chooses and runs the chosen candidate."""
        self._check(cfg)
        self._check_chosen(cfg)

        def compute():
            dense_ppl = self.dense_perplexity(cfg)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", alloc.RatioRangeWarning)
                warnings.simplefilter("always", alloc.AgainstDepthWarning)
                plan = self.ensure(cfg)
            for w in caught:  # recorded in the result and shown to the user
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            ppl = self._state_perplexities(cfg)
            out = {"config": cfg.to_dict(), "ratios": plan.ratios, "rid": plan.rid,
                   "block_statistic": plan.block_statistic, "plan": plan.to_dict(),
                   "perplexity": {"dense": dense_ppl, "pruned": ppl},
                   "achieved_sparsity": achieved_sparsity(self._model),
                   "warnings": [str(w.message) for w in caught], "prune_seconds": self._prune_seconds,
                   "pruned_weights_from_cache": self._pruned_from_cache,
                   "model_fingerprint": self._fingerprint}
            if cfg.lod_m is not None:
                out["lod"] = layer_outlier_distribution(self._model, self.calibration(cfg), cfg.lod_m,
                                                        device=self.device, progress=self.progress)
            return out
        enabled = self.use_cache if use_cache is None else (use_cache and self.use_cache)
        return cached("results", cfg.key("eval", self._fingerprint), compute, enabled=enabled)


_LABS: dict = {}


def get_lab(model: str, device: str = "cpu", dtype: str = "float32", progress: bool = True,
            use_cache: bool = True, revision: str | None = None, trust_remote_code: bool = False,
            eval_devices: str | None = None) -> Lab:
    """A process-wide Lab per (model, revision, device, dtype, use_cache, eval_devices): notebooks
    and the CLI load a model once."""
    from .validation import resolve_dtype
    dtype = resolve_dtype(dtype, device)
    key = (model, revision, trust_remote_code, device, dtype, use_cache, eval_devices)
    if key not in _LABS:
        _LABS[key] = Lab(model, device=device, dtype=dtype, progress=progress, use_cache=use_cache,
                         revision=revision, trust_remote_code=trust_remote_code, eval_devices=eval_devices)
    _LABS[key].progress = progress
    return _LABS[key]


def lab_for(cfg: ExperimentConfig, *, progress: bool = True, use_cache: bool = True,
            eval_devices: str | None = None) -> Lab:
    """The process-wide Lab holding cfg's model."""
    return get_lab(cfg.model, cfg.device, cfg.dtype, progress, use_cache, cfg.revision, cfg.trust_remote_code,
                   eval_devices)
