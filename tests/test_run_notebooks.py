"""The stored executed notebooks hold only what a reader should see (scripts/run_notebooks.py,
clean_outputs): no empty stream outputs, no machine paths, no warnings from installed packages."""
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import run_notebooks  # noqa: E402

sys.path.pop(0)
STORED = sorted((ROOT / "results" / "notebooks" / "default").glob("*.ipynb"))
MACHINE_PATH = re.compile(r"/tmp/|/home/|/root/|/Users/|site-packages|dist-packages")


def _outputs(path):
    for cell in json.loads(path.read_text())["cells"]:
        for out in cell.get("outputs", []):
            yield out, "".join(out.get("text", "")) + "".join(
                "".join(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))


@pytest.mark.parametrize("path", STORED, ids=[p.stem for p in STORED])
def test_stored_outputs_are_clean(path):
    for out, text in _outputs(path):
        assert not (out.get("output_type") == "stream" and not text.strip()), f"empty {out['name']} output"
        assert not MACHINE_PATH.search(text), f"machine path or package warning: {MACHINE_PATH.search(text)[0]!r}"


def test_clean_outputs_on_a_planted_notebook():
    import nbformat
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="\n"),
        nbformat.v4.new_output("stream", name="stderr", text=(
            "/tmp/cold/.venv/lib/python3.11/site-packages/transformers/x.py:3: FutureWarning: old\n"
            "  warnings.warn(\n")),
        nbformat.v4.new_output("stream", name="stderr", text=(
            "/tmp/cold/dlp_lib/allocation/registry.py:147: RatioRangeWarning: clamped\n")),
        nbformat.v4.new_output("execute_result", data={"text/plain": "PosixPath('/tmp/cold/figures/default/a.png')"}),
        nbformat.v4.new_output("stream", name="stdout", text="cache in /home/alice/.cache/dlp_lib\n"),
    ]
    nb.cells = [cell]
    assert run_notebooks.clean_outputs(nb) == 5
    texts = ["".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in cell.outputs]
    assert texts == ["dlp_lib/allocation/registry.py:147: RatioRangeWarning: clamped\n",
                     "PosixPath('figures/default/a.png')", "cache in ~/.cache/dlp_lib\n"]


def test_clean_outputs_leaves_relative_paths_alone():
    import nbformat
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "2 claim rows from ../results/notebooks/default; figure at /tmp/cold/figures/default/a.png\n"))]
    nb.cells = [cell]
    run_notebooks.clean_outputs(nb)
    assert cell.outputs[0]["text"] == "2 claim rows from ../results/notebooks/default; figure at figures/default/a.png\n"


def test_where_paper_holds_skips_the_batch_partial_copies(tmp_path):
    import nbformat
    from dlp_studies.report import where_paper_holds
    from dlp_studies.verdicts import finish, row
    report = finish("holds", "a claim", "why", [row("DLP below OWL", "1 vs 2", "3 vs 4", "holds")])["text"]
    for name in ("00_quickstart.ipynb", ".00_quickstart.partial.ipynb"):
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("x")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=report)]
        nb.cells = [cell]
        nbformat.write(nb, tmp_path / name)
    table = where_paper_holds(tmp_path)
    assert table["notebook"].tolist() == ["00"] and table["claim"].tolist() == ["DLP below OWL"]


def test_commit_stamp_ignores_the_batchs_own_outputs(tmp_path):
    """Executed copies and figures written by the batch do not make the code 'uncommitted'; a code edit does."""
    import subprocess
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "results" / "notebooks").mkdir(parents=True)
    (tmp_path / "figures").mkdir()
    for f in ("code.py", "results/notebooks/a.ipynb", "figures/a.png"):
        (tmp_path / f).write_text("0")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    clean = run_notebooks.commit_stamp(tmp_path)
    assert len(clean) >= 7 and "+" not in clean
    (tmp_path / "results/notebooks/a.ipynb").write_text("1")
    (tmp_path / "figures/a.png").write_text("1")
    assert run_notebooks.commit_stamp(tmp_path) == clean
    (tmp_path / "code.py").write_text("1")
    assert run_notebooks.commit_stamp(tmp_path) == clean + "+uncommitted"
