"""Every notebook executes headlessly (papermill) under the smoke profile, and every notebook is one of them."""
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]*_*.ipynb"))


def test_every_notebook_is_run_here():
    """The batch (scripts/run_notebooks.py) executes every notebooks/*.ipynb; this file runs the numbered
    ones: a notebook named otherwise would be published without ever being tested, and numbers name
    one notebook each."""
    every = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    assert every, f"no notebook in {NOTEBOOK_DIR}"
    skipped = [p.name for p in every if p not in NOTEBOOKS]
    assert not skipped, f"notebooks not named NN_topic.ipynb, so never run by this test: {skipped}"
    prefixes = [p.name.split("_")[0] for p in NOTEBOOKS]
    assert len(set(prefixes)) == len(prefixes), f"two notebooks share a number: {sorted(prefixes)}"


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_under_smoke(path, tmp_path):
    import nbformat
    import papermill as pm
    nb = nbformat.read(path, as_version=4)
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells), "no parameters cell"
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs committed"
    out = pm.execute_notebook(str(path), str(tmp_path / path.name), parameters={"profile": "smoke"},
                              kernel_name="python3", progress_bar=False, cwd=str(path.parent))
    errors = [o for c in out.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    # every notebook ends with a computed verdict printed by its last code cell
    last = [c for c in out.cells if c.cell_type == "code"][-1]
    printed = "".join(o.get("text", "") for o in last.get("outputs", []) if o.get("output_type") == "stream")
    assert len(printed.strip()) > 40, f"no verdict printed by the last cell of {path.name}"
