"""Print the verdict (the last cell's printed text) of every executed notebook, for the README.

Usage: python scripts/verdicts.py [outputs/default] [--markdown]
The executed copies are what `bash run_all.sh <profile>` writes to outputs/<profile>/.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def last_printed_text(path: Path) -> str:
    """stdout of the last code cell that printed something (the notebooks end with their verdict)."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    for cell in reversed(cells):
        text = "".join("".join(o.get("text", "")) for o in cell.get("outputs", [])
                       if o.get("output_type") == "stream" and o.get("name") == "stdout")
        if text.strip():
            return text.strip()
    raise ValueError(f"{path}: no printed output (was it executed?)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default="outputs/default", type=Path)
    ap.add_argument("--markdown", action="store_true", help="one '- **name**: verdict' bullet per notebook")
    a = ap.parse_args()
    paths = sorted(a.folder.glob("*.ipynb"))
    if not paths:
        raise SystemExit(f"no executed notebooks in {a.folder}; run `bash run_all.sh` first")
    for p in paths:
        text = last_printed_text(p)
        print(f"- **{p.stem}**: {' '.join(text.split())}" if a.markdown else f"== {p.stem}\n{text}\n")


if __name__ == "__main__":
    main()
