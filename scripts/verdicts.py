"""The README's table of verdicts, generated from the committed executed notebooks.

Usage: python scripts/verdicts.py [results/notebooks/default] [--readme README.md]

Each row: the notebook (linking its executed copy), when and how it was executed (the stamp that
`run_all.sh` writes), its headline verdict (the `Verdict:` line its last code cell printed: the
notebooks end with a verdict computed by tested code, `dlp_studies.verdicts`) and links to its
figures in figures/<profile>/. Between `<!-- holds:begin -->` and `<!-- holds:end -->` goes the
"where the paper holds here" table (every claim row the notebooks printed under their headlines),
between `<!-- figures:begin -->` and `<!-- figures:end -->` the key figures as images. With --readme the
table replaces what stands between the markers `<!-- verdicts:begin -->` and `<!-- verdicts:end -->`,
and, where the README has the markers `<!-- walltime:begin -->` and `<!-- walltime:end -->`, the
table of wall times between them (per notebook: wall time, result configurations computed and reused
from the cache, from the same stamps; the total says whether every copy comes from one commit). The benchmark tables
(scripts/benchmark_tables.py) go between their `<!-- bench-<name>:begin -->` and `:end -->` markers.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from dlp_studies.report import where_paper_holds  # noqa: E402
from dlp_studies.verdicts import parse_report  # noqa: E402
import benchmark_tables  # noqa: E402  (scripts/, beside this file)
BEGIN, END = "<!-- verdicts:begin -->", "<!-- verdicts:end -->"
WALL_BEGIN, WALL_END = "<!-- walltime:begin -->", "<!-- walltime:end -->"
HOLDS_BEGIN, HOLDS_END = "<!-- holds:begin -->", "<!-- holds:end -->"
FIG_BEGIN, FIG_END = "<!-- figures:begin -->", "<!-- figures:end -->"
ALLOC_BEGIN, ALLOC_END = "<!-- which-allocation:begin -->", "<!-- which-allocation:end -->"
COLD_BEGIN, COLD_END = "<!-- walltime-cold:begin -->", "<!-- walltime-cold:end -->"
COLD_RECORD = ROOT / "benchmarks" / "results" / "batch_default_cold.json"   # the last batch run from an empty cache
WHERE_DLP_HOLDS = "15_where_dlp_holds"   # the notebook "Which allocation for my model?" is built from
# the figures a reader most wants: the RID and ratios, the Figure 4 sweep, Table 9's allocators,
# Table 8's models, the speed measurements, and the granularity maps
KEY_FIGURES = ("02_rid_figure3", "05_figure4_sweep", "06_layerwise_baselines", "10_other_architectures",
               "12_speed_and_cost", "07_granularity_sparsity_maps")
NO_HEADLINE = "no headline: this executed copy predates headline verdicts (see the notebook; re-run pending)"


def printed_text(nb: dict) -> str:
    """Everything the notebook's code cells printed to stdout, in order (the headline verdicts are
    the lines that start with `Verdict:`)."""
    return "\n".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                     for o in c.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stdout")


def rows(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        stamp = nb.get("metadata", {}).get("dlp_run", {})
        profile = stamp.get("profile", folder.name)
        figures = sorted((ROOT / "figures" / profile).glob(f"{path.stem.split('_')[0]}_*.png"))  # 11b_ apart from 11_
        heads, _ = parse_report(printed_text(nb))
        out.append({"name": path.stem, "path": path, "stamp": stamp, "verdict": " / ".join(heads) or NO_HEADLINE,
                    "figures": figures})
    return out


def markdown(table: list[dict]) -> str:
    lines = ["| notebook | executed | headline verdict (computed by the notebook) | figures |", "|---|---|---|---|"]
    for r in table:
        s = r["stamp"]
        when = (f"`{s.get('commit', '?')}`, {s.get('date', '?')}, {s.get('wall_seconds', 0) / 60:.1f} min, "
                f"{s.get('status', '?')}") if s else "not stamped"
        verdict = " ".join(r["verdict"].split()).replace("|", "\\|") or "(no verdict printed)"
        figs = " ".join(f"[{p.stem}]({p.relative_to(ROOT)})" for p in r["figures"])
        lines.append(f"| [{r['name']}]({r['path'].relative_to(ROOT)}) | {when} | {verdict} | {figs} |")
    return "\n".join(lines)


def wall_markdown(table: list[dict]) -> str:
    lines = ["| notebook | commit | wall time | result configurations computed | reused from the cache "
             "| prunings done | prunings reused |", "|---|---|---:|---:|---:|---:|---:|"]
    total, computed, reused, partial = 0.0, 0, 0, False
    pruned = applied = 0
    for r in table:
        s = r["stamp"]
        wall = s.get("wall_seconds", 0) or 0
        c, u = s.get("results_computed"), s.get("results_reused")
        # stamps written before the batch counted every result kind counted the perplexity results only
        mark = "" if c is None or "counted_kinds" in s else "*"
        partial |= bool(mark)
        total += wall
        computed += c or 0
        reused += u or 0
        p, a = s.get("prunings_computed"), s.get("prunings_reused")  # absent from older stamps
        pruned, applied = pruned + (p or 0), applied + (a or 0)
        lines.append(f"| {r['name']} | `{s.get('commit', '?')}` | {wall / 60:.1f} min | "
                     f"{'?' if c is None else c}{mark} | {'?' if u is None else u}{mark} | "
                     f"{'?' if p is None else p} | {'?' if a is None else a} |")
    commits = {r["stamp"].get("commit") for r in table}
    where = (f"one commit (`{commits.pop()}`)" if len(commits) == 1
             else f"{len(commits)} different commits: not one batch")
    lines.append(f"| **total** | {where} | **{total / 60:.1f} min** | {computed} | {reused} | {pruned} | {applied} |")
    if partial:
        lines.append("\n\\* perplexity configurations only: the runner that wrote this stamp did not count "
                     "zero-shot, compression and fine-tuning results.")
    return "\n".join(lines)


def cold_record(table: list[dict], note: str = "") -> dict:
    """The stamps of a batch run from an empty result cache, kept as JSON: the executed copies of later (warm)
    runs overwrite them, and a cold run's wall time is what a user starting from nothing waits."""
    return {"note": note, "notebooks": [{"name": r["name"], "stamp": r["stamp"]} for r in table]}


def cold_markdown(record: dict, source: str) -> str:
    """The last cold run's wall-time table (`wall_markdown` over the recorded stamps) with its source."""
    note = f" {record['note']}" if record.get("note") else ""
    return (f"The last run of the whole batch from an empty result cache ([`{Path(source).name}`]({source})):{note}\n\n"
            + wall_markdown(record["notebooks"]))


def holds_markdown(folder: Path) -> str:
    """The 'where the paper holds here' table: every claim row of every executed notebook."""
    table = where_paper_holds(folder)
    if table.empty:
        return f"(no executed notebook in `{folder.relative_to(ROOT)}` printed claim rows yet: re-run pending)"
    lines = ["| notebook | claim | ours | paper | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {r.notebook} | {r.claim} | {r.ours} | {r.paper} | **{r.verdict}** |" for r in table.itertuples()]
    return "\n".join(lines)


def figures_markdown(profile: str = "default") -> str:
    """The key figures that exist in figures/<profile>/, as images."""
    paths = [ROOT / "figures" / profile / f"{n}.png" for n in KEY_FIGURES]
    return "\n\n".join(f"![{p.stem}]({p.relative_to(ROOT)})" for p in paths if p.exists())


def allocation_markdown(folder: Path) -> str:
    """'Which allocation for my model?': per model of notebook 15's executed copy, DLP against the
    statistic-free depth ramp, the arms that beat Uniform beyond seed noise and what `--allocation auto`
    picked, from the verdict rows the notebook printed; where that copy does not exist, how to make it."""
    path = folder / f"{WHERE_DLP_HOLDS}.ipynb"
    if not path.exists():
        return (f"Notebook 15 (`notebooks/{WHERE_DLP_HOLDS}.ipynb`) has not been run under the "
                f"`{folder.name}` profile yet, so there is no measured answer here. Run it with "
                f"`bash run_all.sh {folder.name} '15*'`, then `python scripts/verdicts.py --readme README.md`. Until "
                "then: `--allocation auto` picks, on held-out calibration text, among Uniform, DLP, its mirror, the "
                "depth ramp and block influence, so it cannot lose to Uniform there.")
    heads, claim_rows = parse_report(printed_text(json.loads(path.read_text())))
    cells: dict = {}
    for r in claim_rows:
        model, _, claim = r["claim"].partition(": ")
        cells.setdefault(model, {})[claim] = r
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    lines = [f"From [{WHERE_DLP_HOLDS}]({rel}): " + (heads[-1] if heads else NO_HEADLINE), "",
             "| model | DLP vs the depth ramp | better than Uniform beyond seed noise | `--allocation auto` |",
             "|---|---|---|---|"]
    for model, by in cells.items():
        ramp, arms, auto = (by.get(k, {}) for k in ("DLP beats the depth ramp", "arms better than Uniform",
                                                     "auto no worse than Uniform"))
        if not ramp:
            continue
        lines.append(f"| {model} | {ramp['ours']}: **{ramp['verdict']}** | {arms.get('ours', '-')} | "
                     f"{auto.get('ours', 'not run')}" + (f" (no worse than Uniform: **{auto['verdict']}**)" if auto else "")
                     + " |")
    return "\n".join(lines)


NUMBER = re.compile(r"(?<![\w.])\d+\.\d+|(?<![\w.])\d{3,}(?![\w.])")  # decimals and integers of 3+ digits
EXEMPT_SECTIONS = ("## Interactive RID explorer",)   # owned and kept up to date elsewhere


def readme_numbers(text: str) -> list[tuple[str, str]]:
    """(section heading, number) for every number of the README outside the places allowed to hold
    hand-written numbers: fenced code (command examples), inline code (version pins, flags), link
    targets, headings, the generated blocks between markers and EXEMPT_SECTIONS."""
    out, section, fenced, generated = [], "", False, False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if re.match(r"<!-- [\w-]+:begin -->", line):
            generated = True
        if re.match(r"<!-- [\w-]+:end -->", line):
            generated = False
            continue
        if fenced or generated:
            continue
        if line.startswith("#"):
            section = line if line.startswith("## ") else section
            continue
        if section.startswith(EXEMPT_SECTIONS):
            continue
        prose = re.sub(r"\]\([^)]*\)", "]", re.sub(r"`[^`]*`", "", line))
        out += [(section, n) for n in NUMBER.findall(prose)]
    return out


def source_numbers(folder: Path) -> set[str]:
    """Every number the generated sources hold: the executed notebooks' outputs, the committed
    benchmark and result JSONs and the paper's own numbers (dlp_studies/paper.py)."""
    texts = [(ROOT / "dlp_studies" / "paper.py").read_text()]
    texts += [p.read_text() for p in sorted((ROOT / "benchmarks" / "results").glob("*.json"))]   # not a venv's JSONs
    texts += [p.read_text() for p in sorted((ROOT / "results").glob("*.json"))]   # committed result JSONs (the survey)
    texts += list(benchmark_tables.blocks().values())   # the benchmark JSONs' numbers as the tables round them
    for path in sorted(folder.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            for o in cell.get("outputs", []):
                texts.append("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")))
    return set(re.findall(r"\d+\.\d+|\d+", "\n".join(texts)))


def unsourced_numbers(text: str, sources: set[str]) -> list[tuple[str, str]]:
    """The README numbers (readme_numbers) that no generated source holds: stale or hand-typed."""
    return [(sec, n) for sec, n in readme_numbers(text) if n not in sources]


def _replace_between(text: str, begin: str, end: str, body: str) -> str:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", default=ROOT / "results" / "notebooks" / "default", type=Path)
    ap.add_argument("--readme", type=Path, help="rewrite the verdict table of this README in place")
    ap.add_argument("--record-cold", type=Path, metavar="JSON",
                    help="after a run from an empty cache: keep the executed copies' stamps in this JSON (the "
                         "README's cold wall-time table reads benchmarks/results/batch_default_cold.json)")
    ap.add_argument("--note", default="", help="with --record-cold: a sentence kept with the record")
    a = ap.parse_args(argv)
    folder = a.folder.resolve()
    table = rows(folder)
    if not table:
        print(f"no executed notebooks in {folder}; run `bash run_all.sh` first", file=sys.stderr)
        return 1
    if a.record_cold:
        a.record_cold.write_text(json.dumps(cold_record(table, a.note), indent=1, default=str) + "\n")
        print(f"recorded {len(table)} stamps in {a.record_cold}")
        return 0
    text = markdown(table)
    if a.readme:
        readme = a.readme.read_text()
        if BEGIN not in readme or END not in readme:
            print(f"{a.readme} has no {BEGIN} ... {END} markers", file=sys.stderr)
            return 1
        readme = _replace_between(readme, BEGIN, END, text)
        if WALL_BEGIN in readme and WALL_END in readme:
            readme = _replace_between(readme, WALL_BEGIN, WALL_END, wall_markdown(table))
        if HOLDS_BEGIN in readme and HOLDS_END in readme:
            readme = _replace_between(readme, HOLDS_BEGIN, HOLDS_END, holds_markdown(folder))
        if COLD_BEGIN in readme and COLD_END in readme and COLD_RECORD.exists():
            readme = _replace_between(readme, COLD_BEGIN, COLD_END, cold_markdown(
                json.loads(COLD_RECORD.read_text()), str(COLD_RECORD.relative_to(ROOT))))
        if FIG_BEGIN in readme and FIG_END in readme:
            readme = _replace_between(readme, FIG_BEGIN, FIG_END, figures_markdown(folder.name))
        if ALLOC_BEGIN in readme and ALLOC_END in readme:
            readme = _replace_between(readme, ALLOC_BEGIN, ALLOC_END, allocation_markdown(folder))
        for name, block in benchmark_tables.blocks().items():
            begin, end = benchmark_tables.markers(name)
            if begin in readme and end in readme:
                readme = _replace_between(readme, begin, end, block)
        a.readme.write_text(readme)
        print(f"wrote {len(table)} rows into {a.readme}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
