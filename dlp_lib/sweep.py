"""Sweeps: a grid of configurations run as independent jobs on a cluster engine (submitit).

Each configuration is one job (`run_job`) that calls `run_experiment` in a fresh process. Jobs
share the on-disk cache: entries are written atomically, so jobs that compute the same pass-1
statistics at once both write the same value, and a job killed mid-write leaves only an orphaned
temporary file (removed later), never a partial entry. A job that dies (killed, out of memory,
an exception) is resubmitted up to `max_retries` times; the summary lists what still failed.

Engines (submitit's): "slurm" (job arrays; `slurm_array_parallelism` caps concurrent jobs),
"local" (subprocesses on this machine, submitted in waves of `max_parallel`), "debug" (in this
process, for stepping through a job).

Before anything is submitted, the engine's options (`check_options`) and the grid file as a whole
(`load_grid`: its YAML and shapes, every configuration's values, and `preflight`: prune's checks
before loading a model, for each configuration) are checked; the first problem is one line that
names the file, the configuration and what is allowed.

Grid file (YAML):

    profile: smoke                 # defaults for every configuration
    base: {method: wanda}          # fields shared by every configuration
    grid:                          # the cartesian product of these
      allocation: [uniform, dlp]
      sparsity: [0.5, 0.7]
    configs:                       # optional: extra configurations, each a dict of fields
      - {allocation: owl, sparsity: 0.6}
"""
from __future__ import annotations

import itertools
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .experiment import ExperimentConfig
from .runs.experiment import run_experiment

ENGINES = ("local", "slurm", "debug")


GRID_KEYS = ("profile", "base", "grid", "configs")
SHAPES = ("a grid file is a YAML mapping with the keys profile (a profile name), base (a mapping of fields), "
          "grid (a mapping of field -> non-empty list of values) and configs (a list of mappings of fields); "
          "grid or configs must define at least one configuration")


def load_grid(path: str | Path) -> list[ExperimentConfig]:
    """The configurations of a grid file, validated as a whole (shapes, every value, each
    configuration's model context and device) before anything is submitted."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"grid file {str(path)!r} is a directory; give a YAML file ({SHAPES})")
    if not path.is_file():
        raise FileNotFoundError(f"grid file {str(path)!r} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"grid file {str(path)!r} is not UTF-8 text (byte {exc.start}: "
                         f"{data[exc.start:exc.start + 1]!r}); it looks binary") from None
    if "\x00" in text:
        raise ValueError(f"grid file {str(path)!r} contains NUL bytes: it looks binary, not YAML")
    import yaml
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start is not None:
            problem += f" ({context} that starts at line {start.line + 1})"
        raise ValueError(f"grid file {str(path)!r}: invalid YAML{where}: {problem}") from None
    if spec is None:
        raise ValueError(f"grid file {str(path)!r} is empty (or only comments); {SHAPES}")
    try:
        configs = configs_from_spec(spec)
        preflight(configs)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        raise ValueError(f"grid file {str(path)!r}: {exc}") from exc
    return configs


def _mapping(what: str, value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} is a {type(value).__name__}, not a mapping; {SHAPES}")
    return value


def configs_from_spec(spec: dict) -> list[ExperimentConfig]:
    """Every configuration of a grid spec (each validated); errors name the configuration."""
    spec = _mapping("the grid file", spec)
    unknown = set(spec) - set(GRID_KEYS)
    if unknown:
        raise ValueError(f"unknown grid key(s) {sorted(unknown)}; allowed: {', '.join(GRID_KEYS)}")
    profile = spec.get("profile", "default")
    if not isinstance(profile, str):
        raise ValueError(f"profile = {profile!r} is not a profile name; {SHAPES}")
    base = _mapping("base", spec.get("base"))
    grid = _mapping("grid", spec.get("grid"))
    extras = spec.get("configs") or []
    if not isinstance(extras, list):
        raise ValueError(f"configs is a {type(extras).__name__}, not a list; {SHAPES}")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid field {name!r} must be a non-empty list, got {values!r}")
    if not grid and not extras:
        raise ValueError(f"the grid file defines no configuration; {SHAPES}")
    fields = [{**base, **dict(zip(grid, combo))} for combo in itertools.product(*grid.values())] if grid else []
    for i, extra in enumerate(extras):
        fields.append({**base, **_mapping(f"configs entry {i + 1}", extra)})
    out = []
    for i, f in enumerate(fields):
        try:
            out.append(_config(profile, f))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"configuration #{i} {f}: {exc}") from None
    return list(dict.fromkeys(out))


def _config(profile: str, fields: dict) -> ExperimentConfig:
    if isinstance(fields.get("eval"), (list, str)):
        fields["eval"] = tuple([fields["eval"]] if isinstance(fields["eval"], str) else fields["eval"])
    return ExperimentConfig.from_profile(profile, **fields)


def preflight(configs: list[ExperimentConfig]) -> None:
    """What `prune` checks before it loads the model, for every configuration: its device exists,
    hub text sources load, the model is a decoder whose context holds the seqlen, the cache is
    writable. Each model's configuration is read once (no weights are loaded)."""
    from .cache import check_writable
    from .data import HUB_SOURCES, TextSource
    from .models import model_config
    from .validation import check_context_length, check_device_available, context_limit_of
    model_configs: dict = {}
    loaded_sources: set = set()
    for i, cfg in enumerate(configs):
        try:
            check_device_available(cfg.device)
            for source, split in [(cfg.calib, "train")] + [(s, "test") for s in cfg.eval]:
                if source in HUB_SOURCES and (source, split) not in loaded_sources:
                    TextSource(source).documents(split)
                    loaded_sources.add((source, split))
            key = (cfg.model, cfg.revision, cfg.trust_remote_code)
            if key not in model_configs:
                model_configs[key] = model_config(cfg.model, revision=cfg.revision,
                                                  trust_remote_code=cfg.trust_remote_code)
            check_context_length("seqlen", cfg.seqlen, context_limit_of(model_configs[key]), cfg.model)
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            raise ValueError(f"configuration #{i} ({cfg.method} {cfg.allocation} {cfg.sparsity} on {cfg.model}, "
                             f"seqlen {cfg.seqlen}): {exc}") from exc
    check_writable()


def check_options(*, engine: str, folder: str | Path, max_retries: int, max_parallel: int, timeout_min: int,
                  slurm: dict | None) -> None:
    """The engine's options, before the grid is read or anything is submitted."""
    if engine not in ENGINES:
        raise ValueError(f"engine = {engine!r} is not allowed; allowed: {', '.join(ENGINES)}")
    if slurm and engine != "slurm":
        raise ValueError(f"--slurm {' '.join(f'{k}={v}' for k, v in slurm.items())} is a SLURM option, but the "
                         f"engine is {engine!r}; drop it or use --engine slurm")
    for name, value, low in (("max_retries", max_retries, 0), ("max_parallel", max_parallel, 1),
                             ("timeout_min", timeout_min, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} = {value!r} is not allowed; expected an integer >= {low}")
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"folder = {str(folder)!r} cannot hold the job files: {str(probe)!r} is a file, not a "
                         "directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"folder = {str(folder)!r} cannot be written: {str(probe)!r} is not writable")


def parse_slurm(items: list[str]) -> dict:
    """--slurm KEY=VALUE items as submitit's slurm_* parameters (digits as integers)."""
    slurm = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--slurm {item!r} is not KEY=VALUE")
        slurm[key] = int(value) if value.isdigit() else value
    return slurm


def run_job(payload: dict) -> dict:
    """One configuration in a fresh process; returns a small summary of its (cached) result.

    payload = {"config": ExperimentConfig fields, "attempt": n}; "kill_on_attempt" (tests only)
    makes the job kill itself with SIGKILL on that attempt, after pass 1, to show that a dead job
    is retried without damaging the cache."""
    cfg = ExperimentConfig(**{**payload["config"], "eval": tuple(payload["config"]["eval"])})
    if payload.get("kill_on_attempt") == payload.get("attempt"):
        from .experiment import get_lab
        get_lab(cfg.model, cfg.device, cfg.dtype, progress=False).dense_statistics(cfg)
        os.kill(os.getpid(), signal.SIGKILL)
    result = run_experiment(cfg, progress=False)
    return {"perplexity": result["perplexity"]["pruned"], "achieved_sparsity": result["achieved_sparsity"]["overall"],
            "ratios": result["ratios"]}


@dataclass
class SweepReport:
    results: dict = field(default_factory=dict)     # index -> summary of run_job
    failures: dict = field(default_factory=dict)    # index -> last error text
    attempts: dict = field(default_factory=dict)    # index -> number of submissions
    seconds: float = 0.0

    def table(self, configs: list[ExperimentConfig]) -> str:
        lines = [f"{'#':>3} {'method':9s} {'allocation':12s} {'sparsity':>8s} {'attempts':>8s}  result"]
        for i, cfg in enumerate(configs):
            if i in self.results:
                r = self.results[i]
                res = ", ".join(f"{k} {v:.3f}" for k, v in r["perplexity"].items()) + \
                    f"; achieved {r['achieved_sparsity']:.3f}"
            else:
                res = f"FAILED: {self.failures.get(i, 'not run')}"
            lines.append(f"{i:3d} {cfg.method:9s} {cfg.allocation:12s} {cfg.sparsity:8.2f} "
                         f"{self.attempts.get(i, 0):8d}  {res}")
        lines.append(f"{len(self.results)} of {len(configs)} configurations done, {len(self.failures)} failed, "
                     f"{self.seconds:.0f} s")
        return "\n".join(lines)


def _executor(engine: str, folder: Path, timeout_min: int, slurm: dict | None):
    import submitit
    executor = submitit.AutoExecutor(folder=str(folder), cluster=engine)
    params = {"timeout_min": timeout_min}
    if engine == "slurm":
        params.update({f"slurm_{k}": v for k, v in (slurm or {}).items()})
    executor.update_parameters(**params)
    return executor


def run_sweep(configs: list[ExperimentConfig], *, engine: str = "local", folder: str | Path = "sweeps",
              max_retries: int = 1, max_parallel: int = 2, timeout_min: int = 240, slurm: dict | None = None,
              kill_on_attempt: dict[int, int] | None = None, progress: bool = True) -> SweepReport:
    """Run every configuration as a job; resubmit dead jobs up to max_retries times."""
    check_options(engine=engine, folder=folder, max_retries=max_retries, max_parallel=max_parallel,
                  timeout_min=timeout_min, slurm=slurm)
    folder = Path(folder)
    executor = _executor(engine, folder, timeout_min, slurm)
    report = SweepReport()
    pending = list(range(len(configs)))
    t0 = time.perf_counter()
    bar = tqdm(total=len(configs), desc=f"sweep ({engine})", disable=not progress)
    while pending:
        wave = pending if engine == "slurm" else pending[:max_parallel]
        pending = pending[len(wave):]
        payloads = []
        for i in wave:
            attempt = report.attempts.get(i, 0)
            report.attempts[i] = attempt + 1
            payloads.append({"config": configs[i].to_dict() | {"alpha": configs[i].alpha,
                                                               "group": configs[i].group},
                             "attempt": attempt, "kill_on_attempt": (kill_on_attempt or {}).get(i)})
        jobs = executor.map_array(run_job, payloads)
        for i, job in zip(wave, jobs):
            try:
                report.results[i] = job.result()
                report.failures.pop(i, None)
                bar.update(1)
            except Exception as exc:  # noqa: BLE001 - a dead job of any kind is retried or reported
                report.failures[i] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ''}"
                if report.attempts[i] <= max_retries:
                    pending.append(i)
                else:
                    bar.update(1)
    bar.close()
    report.seconds = time.perf_counter() - t0
    return report
