"""The notebook batch: execute every notebook under a profile, survive failures, summarise.

Usage: python scripts/run_notebooks.py [profile] [glob] [--notebooks DIR] [--out DIR] [--figures DIR]

- Executed copies go to results/notebooks/<profile>/ (tracked for the default profile; other
  profiles go to outputs/<profile>/, which git ignores), stamped with commit, profile, date, wall
  time and machine. Progress bars are shown on the console while a notebook runs and removed
  from the stored copy, so what is committed is the answer, not hundreds of tqdm lines; empty
  stream outputs, machine paths and third-party warnings go too (`clean_outputs`;
  `--clean FOLDER` applies that to executed copies already stored, without executing anything).
- Figures go to figures/<profile>/ (only the default profile's are committed; smoke never
  touches them).
- A failing notebook does not stop the batch: the rest still run, a summary table (notebook,
  status, wall time, result configurations computed / reused from the cache: perplexity, zero-shot,
  compression and fine-tuning results, RESULT_KINDS) is printed, and the exit status is non-zero with the failed cell named.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACKED_PROFILES = ("default",)
# the cache kinds that hold one experiment configuration's result (the others are intermediates:
# tokens, dense statistics, per-task items, ...); the batch counts these as computed or reused
RESULT_KINDS = ("results", "zeroshot", "mixed_nm", "quantized", "compression_svd", "compression_structured",
                "finetune")
# a tqdm bar: a carriage return, "NN%|", or the unknown-total form "[00:00, ? examples/s]"
_PROGRESS = re.compile(r"\r|\d+%\||\[\d+:\d+(<[^\]]*)?, [^\]]*/s\]")


# what the batch itself writes: a change there is its output, not a change to the code that ran
BATCH_OUTPUTS = ("results/notebooks", "figures", "outputs")


def commit_stamp(root: Path = ROOT) -> str:
    """The short commit the code ran at, '+uncommitted' when a tracked file outside the batch's own outputs
    differs from it ('unknown' outside git)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."]
                               + [f":(exclude){p}" for p in BATCH_OUTPUTS], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    import torch
    return (f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


_WIDGET_VIEW, _WIDGET_STATE = "application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json"
_MODEL_REF = re.compile(r"IPY_MODEL_([0-9a-f]+)")


def prune_widget_state(nb) -> int:
    """Keep only the saved widget models that an output still displays (and the models they refer to).

    Jupyter saves the state of every widget the kernel created, so the tqdm bars removed from the
    outputs would otherwise stay in the notebook's metadata; returns how many models were dropped.
    """
    widgets = nb.metadata.get("widgets", {}).get(_WIDGET_STATE)
    if not widgets:
        return 0
    state = widgets.get("state", {})
    todo = [out["data"][_WIDGET_VIEW]["model_id"] for cell in nb.cells for out in cell.get("outputs", [])
            if _WIDGET_VIEW in out.get("data", {})]
    keep: set[str] = set()
    while todo:
        mid = todo.pop()
        if mid in keep or mid not in state:
            continue
        keep.add(mid)
        todo.extend(_MODEL_REF.findall(str(state[mid])))
    dropped = len(state) - len(keep)
    if keep:
        widgets["state"] = {k: v for k, v in state.items() if k in keep}
    else:
        del nb.metadata["widgets"]
    return dropped


def strip_progress(nb) -> int:
    """Remove progress-bar stream output (tqdm) from an executed notebook; returns how many were removed."""
    removed = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if (out.get("output_type") == "display_data" and "application/vnd.jupyter.widget-view+json" in data
                    and _PROGRESS.search("".join(data.get("text/plain", "")))):
                removed += 1   # a tqdm.auto widget bar: nothing but its last text would survive
                continue
            text = out.get("text", "")
            if out.get("output_type") == "stream" and out.get("name") == "stderr" and (
                    _PROGRESS.search(text)):
                lines = [ln for ln in text.split("\n") if ln and not _PROGRESS.search(ln)]
                removed += 1
                if lines:
                    out["text"] = "\n".join(lines) + "\n"
                    kept.append(out)
                continue
            kept.append(out)
        cell["outputs"] = kept
    prune_widget_state(nb)
    return removed


# an absolute path into a checkout: everything up to one of the repository's top-level folders
# (only where a path starts: "../results/..." is relative and stays as it is)
_CHECKOUT_PATH = re.compile(r"(?<![^\s'\"(=])(?:/[^\s'\"/]+)+?/(?=(?:dlp_lib|dlp_studies|figures|results|notebooks|outputs|benchmarks"
                            r"|scripts|tests)/)")
_HOME = re.compile(r"(?:/home/[^/\s'\"]+|/root|/Users/[^/\s'\"]+)(?=/)")
# "file.py:12: SomeWarning: ..." printed by the warnings module from an installed package, and the
# indented source line it prints after it: library housekeeping, not meant for the reader
_PACKAGE_WARNING = re.compile(r"^\S*(?:site|dist)-packages/\S+:\d+: \w*Warning: .*\n(?:[ \t]+\S.*\n)?", re.M)


def _clean_text(text: str) -> str:
    text = _PACKAGE_WARNING.sub("", text)
    return _HOME.sub("~", _CHECKOUT_PATH.sub("", text))


def clean_outputs(nb) -> int:
    """Remove what a reader should not see from an executed notebook's outputs: empty stream
    outputs, warnings printed from installed packages, and machine paths (a checkout's absolute
    path becomes repository-relative, a home folder `~`). Returns how many outputs changed or went."""
    changed = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            before = repr(out)
            if "text" in out:
                out["text"] = _clean_text("".join(out["text"]))
            for kind, value in out.get("data", {}).items():
                if kind.startswith("text/"):
                    out["data"][kind] = _clean_text("".join(value))
            if out.get("output_type") == "stream" and not out["text"].strip():
                changed += 1
                continue
            changed += repr(out) != before
            kept.append(out)
        cell["outputs"] = kept
    return changed


def _count_cache(log: Path, kinds=RESULT_KINDS) -> tuple[int, int]:
    """(computed, reused) entries of `kinds` in a batch's cache log."""
    if not log.exists():
        return 0, 0
    events = [ln.split(" ", 1) for ln in log.read_text().split("\n") if " " in ln]
    return (sum(1 for e, kind in events if e == "miss" and kind in kinds),
            sum(1 for e, kind in events if e == "hit" and kind in kinds))


def run_one(path: Path, out_dir: Path, profile: str, figures: Path, stamp: dict) -> dict:
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out_path = out_dir / path.name
    # papermill rewrites its output after every cell: run into a hidden partial copy and replace the
    # executed copy only when the run has ended, so a batch stopped midway never leaves a
    # half-executed notebook among the results
    partial = out_dir / f".{path.stem}.partial.ipynb"
    with tempfile.TemporaryDirectory() as tmp:
        cache_log = Path(tmp) / "cache.log"
        env_before = dict(os.environ)
        os.environ.update(DLP_FIGURES_DIR=str(figures), DLP_CACHE_LOG=str(cache_log))
        t0 = time.perf_counter()
        status, failed = "ok", ""
        try:
            pm.execute_notebook(str(path), str(partial), parameters={"profile": profile}, kernel_name="python3",
                                progress_bar=False, log_output=True, cwd=str(path.parent))
        except PapermillExecutionError as exc:
            status, failed = "FAILED", f"cell [{exc.exec_count}]: {exc.ename}: {str(exc.evalue)[:160]}"
        except Exception as exc:  # noqa: BLE001 - a kernel that dies is reported like a failed cell
            status, failed = "FAILED", f"{type(exc).__name__}: {str(exc)[:160]}"
        finally:
            os.environ.clear()
            os.environ.update(env_before)
        wall = time.perf_counter() - t0
        computed, reused = _count_cache(cache_log)
        pruned, applied = _count_cache(cache_log, ("pruned_weights",))
    if partial.exists():
        nb = nbformat.read(partial, as_version=4)
        strip_progress(nb)
        clean_outputs(nb)
        nb.metadata["dlp_run"] = {**stamp, "notebook": path.name, "status": status, "wall_seconds": round(wall, 1),
                                  "failed": failed or None, "results_computed": computed, "results_reused": reused,
                                  "counted_kinds": list(RESULT_KINDS), "prunings_computed": pruned,
                                  "prunings_reused": applied}
        header = (f"*Executed by `run_all.sh {profile}`: commit `{stamp['commit']}`, {stamp['date']}, "
                  f"{wall / 60:.1f} min wall, {stamp['machine']}; status {status}.*")
        if nb.cells and "dlp-run-stamp" in nb.cells[0].get("metadata", {}).get("tags", []):
            nb.cells[0].source = header
        else:
            cell = nbformat.v4.new_markdown_cell(header)
            cell.metadata["tags"] = ["dlp-run-stamp"]
            nb.cells.insert(0, cell)
        nbformat.write(nb, partial)
        os.replace(partial, out_path)
    return {"notebook": path.stem, "status": status, "wall": wall, "computed": computed, "reused": reused,
            "failed": failed}


def clean_folder(folder: Path) -> int:
    """`clean_outputs` over every executed copy in `folder`, written back in place."""
    import nbformat
    paths = sorted(folder.glob("*.ipynb"))
    if not paths:
        print(f"no executed notebook in {folder}", file=sys.stderr)
        return 2
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        n = clean_outputs(nb)
        if n:
            nbformat.write(nb, path)
        print(f"{path.name}: {n} output(s) cleaned")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("profile", nargs="?", default="default")
    ap.add_argument("pattern", nargs="?", default="*")
    ap.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    ap.add_argument("--out", type=Path, help="executed copies (default: results/notebooks/<profile> for tracked "
                    "profiles, outputs/<profile> otherwise)")
    ap.add_argument("--figures", type=Path, help="figure folder (default: figures/<profile>)")
    ap.add_argument("--clean", type=Path, metavar="FOLDER",
                    help="only clean the stored outputs of the executed copies in FOLDER (nothing is executed)")
    a = ap.parse_args(argv)
    if a.clean:
        return clean_folder(a.clean)
    tracked = a.profile in TRACKED_PROFILES
    out_dir = a.out or (ROOT / "results" / "notebooks" / a.profile if tracked else ROOT / "outputs" / a.profile)
    figures = a.figures or ROOT / "figures" / a.profile
    out_dir.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    paths = sorted(a.notebooks.glob(f"{a.pattern}.ipynb"))
    if not paths:
        print(f"no notebook matches {a.notebooks}/{a.pattern}.ipynb", file=sys.stderr)
        return 2
    stamp = {"commit": commit_stamp(), "profile": a.profile,
             "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": _machine()}
    rows = []
    start = time.perf_counter()
    for path in paths:
        print(f"== {path.name} (profile {a.profile})", flush=True)
        row = run_one(path, out_dir, a.profile, figures, stamp)
        print(f"   {row['status']} in {row['wall']:.0f} s" + (f": {row['failed']}" if row["failed"] else ""), flush=True)
        rows.append(row)
    total = time.perf_counter() - start
    print(f"\n{'notebook':40s} {'status':7s} {'wall':>8s} {'computed':>9s} {'reused':>7s}")
    for r in rows:
        print(f"{r['notebook']:40s} {r['status']:7s} {r['wall'] / 60:7.1f}m {r['computed']:9d} {r['reused']:7d}")
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"\nall notebooks: {total / 60:.1f} min wall ({len(rows) - len(failed)} ok, {len(failed)} failed); "
          f"executed copies in {out_dir}, figures in {figures}")
    setup = os.environ.get("DLP_SETUP_SECONDS")  # set by run_all.sh, which runs the set-up first
    if setup and setup.isdigit():
        print(f"whole batch: set-up {int(setup) / 60:.1f} min + notebooks {total / 60:.1f} min = "
              f"{(int(setup) + total) / 60:.1f} min wall")
    for r in failed:
        print(f"FAILED {r['notebook']}: {r['failed']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
