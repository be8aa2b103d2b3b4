"""Sweeps: a grid of configurations run as independent jobs on a cluster engine (submitit).

Each configuration is one job (`run_job`) that calls `run_experiment` in a fresh process. Jobs
share the on-disk cache: entries are written atomically, so jobs that compute the same pass-1
statistics at once both write the same value, and a job killed mid-write leaves only an orphaned
temporary file (removed later), never a partial entry. A job that dies (killed, out of memory,
an exception) is resubmitted up to `max_retries` times; the summary lists what still failed.

Engines (submitit's): "slurm" (job arrays; `slurm_array_parallelism` caps concurrent jobs),
"local" (subprocesses on this machine, submitted in waves of `max_parallel`), "debug" (in this
process, for stepping through a job).

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

from .experiment import ExperimentConfig, run_experiment

ENGINES = ("local", "slurm", "debug")


def load_grid(path: str | Path) -> list[ExperimentConfig]:
    """The configurations of a grid file (validated now, before anything is submitted)."""
    import yaml
    spec = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(spec, dict):
        raise ValueError(f"grid file {str(path)!r} must be a mapping with profile/base/grid/configs")
    return configs_from_spec(spec)


def configs_from_spec(spec: dict) -> list[ExperimentConfig]:
    unknown = set(spec) - {"profile", "base", "grid", "configs"}
    if unknown:
        raise ValueError(f"unknown grid key(s) {sorted(unknown)}; allowed: profile, base, grid, configs")
    profile = spec.get("profile", "default")
    base = dict(spec.get("base") or {})
    grid = dict(spec.get("grid") or {})
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid field {name!r} must be a non-empty list, got {values!r}")
    out = []
    for combo in itertools.product(*grid.values()) if grid else [()]:
        if grid or not spec.get("configs"):
            out.append(_config(profile, {**base, **dict(zip(grid, combo))}))
    for extra in spec.get("configs") or []:
        out.append(_config(profile, {**base, **extra}))
    unique = list(dict.fromkeys(out))
    if not unique:
        raise ValueError("the grid defines no configuration")
    return unique


def _config(profile: str, fields: dict) -> ExperimentConfig:
    if isinstance(fields.get("eval"), (list, str)):
        fields["eval"] = tuple([fields["eval"]] if isinstance(fields["eval"], str) else fields["eval"])
    return ExperimentConfig.from_profile(profile, **fields)


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
    if engine not in ENGINES:
        raise ValueError(f"engine = {engine!r} is not allowed; allowed: {', '.join(ENGINES)}")
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
    if max_retries < 0 or max_parallel < 1:
        raise ValueError(f"max_retries must be >= 0 and max_parallel >= 1, got {max_retries} and {max_parallel}")
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
