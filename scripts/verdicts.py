"""The README's table of verdicts, generated from the committed executed notebooks.

Usage: python scripts/verdicts.py [results/notebooks/default] [--readme README.md]

Each row: the notebook (linking its executed copy), when and how it was executed (the stamp that
`run_all.sh` writes), its verdict (the text its last code cell printed: the notebooks end with a
verdict computed by tested code) and links to its figures in figures/<profile>/. With --readme the
table replaces what stands between the markers `<!-- verdicts:begin -->` and `<!-- verdicts:end -->`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- verdicts:begin -->", "<!-- verdicts:end -->"


def last_printed_text(nb: dict) -> str:
    """stdout of the last code cell that printed something."""
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for cell in reversed(cells):
        text = "".join("".join(o.get("text", "")) for o in cell.get("outputs", [])
                       if o.get("output_type") == "stream" and o.get("name") == "stdout")
        if text.strip():
            return text.strip()
    return ""


def rows(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        stamp = nb.get("metadata", {}).get("dlp_run", {})
        profile = stamp.get("profile", folder.name)
        figures = sorted((ROOT / "figures" / profile).glob(f"{path.stem[:2]}_*.png"))
        out.append({"name": path.stem, "path": path, "stamp": stamp, "verdict": last_printed_text(nb),
                    "figures": figures})
    return out


def markdown(table: list[dict]) -> str:
    lines = ["| notebook | executed | verdict (computed by the notebook) | figures |", "|---|---|---|---|"]
    for r in table:
        s = r["stamp"]
        when = (f"`{s.get('commit', '?')}`, {s.get('date', '?')}, {s.get('wall_seconds', 0) / 60:.1f} min, "
                f"{s.get('status', '?')}") if s else "not stamped"
        verdict = " ".join(r["verdict"].split()).replace("|", "\\|") or "(no verdict printed)"
        figs = " ".join(f"[{p.stem}]({p.relative_to(ROOT)})" for p in r["figures"])
        lines.append(f"| [{r['name']}]({r['path'].relative_to(ROOT)}) | {when} | {verdict} | {figs} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", default=ROOT / "results" / "notebooks" / "default", type=Path)
    ap.add_argument("--readme", type=Path, help="rewrite the verdict table of this README in place")
    a = ap.parse_args(argv)
    folder = a.folder.resolve()
    table = rows(folder)
    if not table:
        print(f"no executed notebooks in {folder}; run `bash run_all.sh` first", file=sys.stderr)
        return 1
    text = markdown(table)
    if a.readme:
        readme = a.readme.read_text()
        if BEGIN not in readme or END not in readme:
            print(f"{a.readme} has no {BEGIN} ... {END} markers", file=sys.stderr)
            return 1
        head, rest = readme.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        a.readme.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
        print(f"wrote {len(table)} rows into {a.readme}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
