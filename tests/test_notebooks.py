"""Every notebook executes headlessly (papermill) under the smoke profile."""
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
pytestmark = pytest.mark.notebooks


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 2


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
