"""Zero-shot accuracy through lm-eval 0.4 on the in-memory model (paper Table 4, Appendix I Tables 22-23).

`evaluate_zero_shot` wraps `lm_eval.simple_evaluate(HFLM(pretrained=model, tokenizer=tok))`,
0-shot unless `num_fewshot` says otherwise (Table 18 is 5-shot), metric `acc` (the paper's; `acc_norm` reported beside it), and records lm-eval's
version, the add_bos_token choice, the limit and the task versions with every result.
Task names: the paper's seven lm-eval tasks (need the Hugging Face hub), any other lm-eval
task, the offline suite `offline` (dlp_continuation, dlp_lastword; `zeroshot_tasks`), or
`paper` for the seven paper tasks. `dlp_lib.runs.zeroshot.zero_shot_for` evaluates a Lab's dense
or pruned model and caches the result on disk keyed by the full configuration, the suite and the limit.
"""
from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import logging
import os
import socket
import sys
import time

from .zeroshot_tasks import CHANCE as OFFLINE_CHANCE
from .zeroshot_tasks import DEFAULT_EXAMPLES, OFFLINE_TASKS, build_offline_suite

# The paper's zero-shot tasks (Table 4), lm-eval names; they need the Hugging Face hub.
PAPER_TASKS = ("boolq", "rte", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa")
SUITES = {"offline": OFFLINE_TASKS, "paper": PAPER_TASKS}
CHANCE = {"boolq": 0.5, "rte": 0.5, "winogrande": 0.5, "hellaswag": 0.25, "arc_easy": 0.25,
          "arc_challenge": 0.25, "openbookqa": 0.25, **OFFLINE_CHANCE}


class ZeroShotTaskError(ValueError):
    """A zero-shot task that is unknown or cannot run here (the CLI prints it and exits 2)."""


def _offline_hint() -> str:
    return (f"Offline, use the project's offline suite 'offline' ({', '.join(OFFLINE_TASKS)}; CLI: --zero-shot "
            "offline or zero-shot --tasks offline), built from the registry corpora (validation/test documents only).")


@functools.lru_cache(maxsize=1)
def hub_available(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub can be reached (the paper's tasks download their data from it)."""
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_tasks(tasks) -> list[str]:
    """Expand 'a,b' strings and suite names; fail early and clearly on names that cannot run here."""
    if isinstance(tasks, str):
        tasks = [tasks]
    names = []
    for item in tasks:
        for name in (n.strip() for n in str(item).split(",")):
            for n in SUITES.get(name, (name,)):
                if n and n not in names:
                    names.append(n)
    if not names:
        raise ZeroShotTaskError("No zero-shot task given. " + _offline_hint())
    known = list(SUITES) + list(PAPER_TASKS) + list(OFFLINE_TASKS)
    for n in names:
        if n.startswith("dlp_") and n not in OFFLINE_TASKS:
            raise ZeroShotTaskError(f"Unknown offline task {n!r}. " + _offline_hint())
    hub = [n for n in names if n not in OFFLINE_TASKS]
    if hub and not hub_available():
        unknown = [n for n in hub if n not in PAPER_TASKS]
        if unknown:
            close = {n: difflib.get_close_matches(n, known, 2) for n in unknown}
            raise ZeroShotTaskError(
                "Unknown zero-shot task(s): " + ", ".join(f"{n!r}" + (f" (did you mean {' or '.join(c)}?)" if c else "")
                                                          for n, c in close.items())
                + f". Paper tasks: {', '.join(PAPER_TASKS)} (need the Hugging Face hub). " + _offline_hint())
        raise ZeroShotTaskError(
            f"lm-eval task(s) {', '.join(hub)} download their data from the Hugging Face hub, which this machine "
            "cannot reach. " + _offline_hint())
    return names


def check_num_fewshot(num_fewshot) -> None:
    from .zeroshot_tasks import FEWSHOT_POOL
    if isinstance(num_fewshot, bool) or not isinstance(num_fewshot, int) or not 0 <= num_fewshot <= FEWSHOT_POOL:
        raise ZeroShotTaskError(f"num_fewshot = {num_fewshot!r} is not allowed; expected an integer in "
                                f"0..{FEWSHOT_POOL} (the offline tasks hold {FEWSHOT_POOL} demonstrations each)")


def check_limit(limit, what: str = "limit") -> None:
    """Examples per task: None (all), an integer >= 1, or a fraction in (0, 1] (lm-eval's two forms)."""
    if limit is None:
        return
    whole = isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1
    fraction = isinstance(limit, float) and 0 < limit <= 1
    if not (whole or fraction):
        raise ZeroShotTaskError(f"{what} = {limit!r} is not allowed; expected an integer >= 1 (examples per task), "
                                "a fraction in (0, 1], or nothing (every example)")


def check_batch_size(batch_size, what: str = "batch_size") -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ZeroShotTaskError(f"{what} = {batch_size!r} is not allowed; expected an integer >= 1")


@contextlib.contextmanager
def _quiet_lm_eval(progress: bool):
    """Silence lm-eval's chatter and progress bars, and skip its env report (pip/nvidia-smi/git subprocesses)."""
    import io

    import lm_eval.evaluator as ev
    loggers = [logging.getLogger(n) for n in ("lm_eval", "lm-eval")]
    levels = [lg.level for lg in loggers]
    saved = {k: getattr(ev, k) for k in ("add_env_info", "get_git_commit_hash") if hasattr(ev, k)}
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        if "add_env_info" in saved:
            ev.add_env_info = lambda storage: None
        if "get_git_commit_hash" in saved:
            ev.get_git_commit_hash = lambda: None
        with contextlib.redirect_stderr(sys.stderr if progress else io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        for k, v in saved.items():
            setattr(ev, k, v)


@contextlib.contextmanager
def _threads_for(model):
    """Tiny models (tests, smoke profile) run single-threaded: intra-op threads only add overhead there."""
    import torch
    saved = torch.get_num_threads()
    small = sum(p.numel() for p in model.parameters()) < 5_000_000
    try:
        if small:
            torch.set_num_threads(1)
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def _on_device(model, device):
    """Temporarily move every tensor of the model to `device`, then put each one back where it was."""
    if device is None:
        yield
        return
    tensors = list(model.parameters()) + list(model.buffers())
    where = [t.device for t in tensors]
    try:
        model.to(device)
        yield
    finally:
        for t, d in zip(list(model.parameters()) + list(model.buffers()), where):
            if t.device != d:
                t.data = t.data.to(d)


def _bos_prepended(tokenizer) -> bool:
    ids = tokenizer("a").input_ids
    return tokenizer.bos_token_id is not None and len(ids) > 0 and ids[0] == tokenizer.bos_token_id


def evaluate_zero_shot(model, tokenizer, tasks, *, limit: int | float | None = None, batch_size: int = 16,
                       device: str | None = None, add_bos_token: bool | None = None,
                       suite_examples: int = DEFAULT_EXAMPLES, suite_seed: int = 0, progress: bool = False,
                       num_fewshot: int = 0) -> dict:
    """lm-eval accuracy (0-shot, or `num_fewshot` demonstrations from each task's training split) of
    an in-memory model: per-task acc/acc_norm/stderr, mean acc, and meta."""
    import lm_eval
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    names = resolve_tasks(tasks)
    check_num_fewshot(num_fewshot)
    check_limit(limit)
    check_batch_size(batch_size)
    offline = [n for n in names if n in OFFLINE_TASKS]
    suite_dir = build_offline_suite(suite_examples, suite_seed) if offline else None
    t0 = time.perf_counter()
    tok = copy.deepcopy(tokenizer)  # HFLM may set a pad token: keep the caller's tokenizer untouched
    with _quiet_lm_eval(progress):
        tm = TaskManager(include_path=str(suite_dir) if suite_dir else None,
                         include_defaults=len(offline) < len(names))
        missing = [n for n in names if n not in tm.all_tasks]
        if missing:
            raise ZeroShotTaskError(f"lm-eval {lm_eval.__version__} has no task(s) {', '.join(missing)}. "
                                    + _offline_hint())
        with _on_device(model, device), _threads_for(model):
            lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, add_bos_token=add_bos_token)
            try:
                out = simple_evaluate(model=lm, tasks=names, num_fewshot=num_fewshot, limit=limit,
                                      task_manager=tm, log_samples=False, bootstrap_iters=1000,
                                      fewshot_random_seed=1234)
            except (ConnectionError, OSError) as exc:
                raise ZeroShotTaskError(f"lm-eval could not load its data ({type(exc).__name__}: "
                                        f"{str(exc)[:200]}). " + _offline_hint()) from exc
    res, per_task = out["results"], {}
    for n in names:
        r = res[n]
        if "acc,none" not in r:
            raise ZeroShotTaskError(f"lm-eval task {n!r} reports no 'acc' metric (got {sorted(r)}).")
        row = {"acc": r["acc,none"], "acc_stderr": r.get("acc_stderr,none")}
        if "acc_norm,none" in r:
            row.update(acc_norm=r["acc_norm,none"], acc_norm_stderr=r.get("acc_norm_stderr,none"))
        row.update(n=out["n-samples"][n]["effective"], chance=CHANCE.get(n))
        per_task[n] = {k: (None if v == "N/A" else v) for k, v in row.items()}
    meta = {"lm_eval_version": lm_eval.__version__, "num_fewshot": num_fewshot, "metric": "acc", "limit": limit,
            "model_dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "add_bos_token": add_bos_token if add_bos_token is not None else _bos_prepended(tok),
            "add_bos_token_arg": add_bos_token, "batch_size": batch_size,
            "task_versions": {n: out["versions"].get(n) for n in names},
            "n_samples": {n: out["n-samples"][n] for n in names},
            "suite": None if suite_dir is None else {"path": str(suite_dir), "examples": suite_examples,
                                                     "seed": suite_seed, "key": suite_dir.name},
            "seconds": time.perf_counter() - t0}
    return {"tasks": per_task, "mean_acc": sum(t["acc"] for t in per_task.values()) / len(per_task), "meta": meta}


def frame(runs: dict):
    """Long table (method, allocation, task, acc, acc_stderr, acc_norm, n, chance) in %, plus a 'mean' row each."""
    import pandas as pd
    rows = []
    for (m, a), res in runs.items():
        tasks = res["tasks"]
        for t, r in tasks.items():
            rows.append({"method": m, "allocation": a, "task": t, "acc": 100 * r["acc"],
                         "acc_stderr": 100 * (r["acc_stderr"] or 0.0),
                         "acc_norm": None if r.get("acc_norm") is None else 100 * r["acc_norm"],
                         "n": r["n"], "chance": None if r["chance"] is None else 100 * r["chance"]})
        se = sum((100 * (r["acc_stderr"] or 0.0)) ** 2 for r in tasks.values()) ** 0.5 / len(tasks)
        chance = [r["chance"] for r in tasks.values()]
        rows.append({"method": m, "allocation": a, "task": "mean", "acc": 100 * res["mean_acc"], "acc_stderr": se,
                     "acc_norm": None, "n": sum(r["n"] for r in tasks.values()),
                     "chance": None if None in chance else 100 * sum(chance) / len(chance)})
    return pd.DataFrame(rows)
