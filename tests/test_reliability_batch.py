"""The notebook batch runner: a failing notebook does not stop the batch, a stopped batch leaves no
half-executed notebook among the results, stored outputs drop progress bars, the README's tables
come from the executed notebooks."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_batch_runner_survives_a_failing_notebook(tmp_path):
    import nbformat
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name, code in (("01_good", "print('a verdict that holds')"), ("02_bad", "raise RuntimeError('broken on purpose')"),
                       ("03_good", "print('also fine')")):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        params = nbformat.v4.new_code_cell("profile = 'smoke'")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell("import sys\nprint('x', file=sys.stderr)"),
                    nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, nbs / f"{name}.ipynb")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), "smoke", "*",
                           "--notebooks", str(nbs), "--out", str(tmp_path / "out"), "--figures", str(tmp_path / "f")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "DLP_SETUP_SECONDS": "90"})
    assert proc.returncode == 1
    total = re.search(r"whole batch: set-up 1\.5 min \+ notebooks ([0-9.]+) min = ([0-9.]+) min wall", proc.stdout)
    assert total and float(total.group(2)) == pytest.approx(1.5 + float(total.group(1)), abs=0.11)
    assert "02_bad" in proc.stderr and "RuntimeError" in proc.stderr and "broken on purpose" in proc.stderr
    assert "(2 ok, 1 failed)" in proc.stdout
    good = nbformat.read(tmp_path / "out" / "03_good.ipynb", as_version=4)
    assert good.metadata["dlp_run"]["status"] == "ok" and good.metadata["dlp_run"]["profile"] == "smoke"
    assert not list((tmp_path / "out").glob(".*partial*"))   # partial copies are replaced when a run ends


def test_a_stopped_batch_leaves_no_half_executed_notebook_among_the_results(tmp_path):
    """papermill rewrites its output after every cell; killing the batch mid-notebook must leave the
    previous executed copy (or none), never the half-executed one."""
    import nbformat
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    nbs.mkdir()
    out.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("profile = 'smoke'")
    params.metadata["tags"] = ["parameters"]
    marker = tmp_path / "started"
    nb.cells = [params, nbformat.v4.new_code_cell(f"open({str(marker)!r}, 'w').write('x')\nprint('first cell')"),
                nbformat.v4.new_code_cell("import time\ntime.sleep(120)")]
    nbformat.write(nb, nbs / "01_slow.ipynb")
    (out / "01_slow.ipynb").write_text("previous executed copy")
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), "smoke", "*",
                             "--notebooks", str(nbs), "--out", str(out), "--figures", str(tmp_path / "f")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.5)
        assert marker.exists(), "the notebook never started"
        time.sleep(2)   # papermill has written the partial copy with the first cell's output
    finally:
        proc.kill()
        proc.wait()
    assert (out / "01_slow.ipynb").read_text() == "previous executed copy"


def test_stored_outputs_drop_progress_bars():
    import nbformat
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from run_notebooks import strip_progress
    finally:
        sys.path.pop(0)
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="blocks:  50%|#####     | 2/4\rblocks: 100%|##########| 4/4\n"),
                    nbformat.v4.new_output("stream", name="stderr", text="warning: kept\n"),
                    # unknown-total bars (datasets) go too
                    nbformat.v4.new_output("stream", name="stderr", text="Generating test split: 0 examples [00:00, ? examples/s]\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="verdict\n"),
                    # tqdm.auto in a kernel: a widget whose text fallback is the bar
                    nbformat.v4.new_output("display_data", data={
                        "application/vnd.jupyter.widget-view+json": {"model_id": "ab", "version_major": 2},
                        "text/plain": "perplexity brown:   0%|          | 0/32 [00:00<?, ?it/s]"}),
                    nbformat.v4.new_output("display_data", data={"text/plain": "<Figure size 9x3>"})]
    nb = nbformat.v4.new_notebook()
    nb.cells = [cell]
    assert strip_progress(nb) == 3
    outs = nb.cells[0].outputs
    assert [o.get("text") for o in outs[:2]] == ["warning: kept\n", "verdict\n"]
    assert len(outs) == 3 and outs[2]["data"]["text/plain"] == "<Figure size 9x3>"


def test_batch_counts_every_result_kind_and_no_intermediate(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from run_notebooks import _count_cache
    finally:
        sys.path.pop(0)
    log = tmp_path / "cache.log"
    log.write_text("miss results\nhit results\nmiss zeroshot\nmiss finetune\nhit mixed_nm\n"
                   "miss tokens\nmiss dense_statistics\nhit finetune_task_items\n")
    assert _count_cache(log) == (3, 2)
    assert _count_cache(tmp_path / "absent.log") == (0, 0)


def test_saved_widget_state_keeps_only_what_an_output_displays():
    import nbformat
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from run_notebooks import strip_progress
    finally:
        sys.path.pop(0)
    view = "application/vnd.jupyter.widget-view+json"
    shown = nbformat.v4.new_code_cell("explorer")
    shown.outputs = [nbformat.v4.new_output("display_data", data={view: {"model_id": "aa", "version_major": 2},
                                                                  "text/plain": "VBox(...)"})]
    bar = nbformat.v4.new_code_cell("tqdm")
    bar.outputs = [nbformat.v4.new_output("display_data", data={view: {"model_id": "bb", "version_major": 2},
                                                                "text/plain": " 50%|#####     | 1/2 [00:01<00:01]"})]
    state = {"aa": {"state": {"children": ["IPY_MODEL_cc"]}}, "cc": {"state": {"layout": "IPY_MODEL_dd"}},
             "dd": {"state": {}}, "bb": {"state": {"layout": "IPY_MODEL_ee"}}, "ee": {"state": {}}}
    nb = nbformat.v4.new_notebook()
    nb.cells = [shown, bar]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state, "version_major": 2}}
    strip_progress(nb)
    # the explorer and everything it refers to stay; the removed bar's models go
    assert set(nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]) == {"aa", "cc", "dd"}
    nb.cells = [bar]
    strip_progress(nb)
    assert "widgets" not in nb.metadata   # nothing displayed any more: no saved state at all


def test_readme_verdict_table_comes_from_executed_notebooks(tmp_path):
    import nbformat
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import verdicts
    finally:
        sys.path.pop(0)
    folder = ROOT / "results" / "notebooks" / "_test_tmp"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("print(...)")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="Verdict: DLP beats Uniform | 2.2x\n")]
        nb.cells = [cell]
        nb.metadata["dlp_run"] = {"commit": "abc1234", "date": "2026-12-01 20:00 UTC", "wall_seconds": 90,
                                  "status": "ok", "profile": "default", "results_computed": 3, "results_reused": 2}
        nbformat.write(nb, folder / "00_quickstart.ipynb")
        nb.metadata["dlp_run"] = {**nb.metadata["dlp_run"], "commit": "def5678", "wall_seconds": 30,
                                  "results_computed": 1, "results_reused": 0, "counted_kinds": ["results"]}
        nbformat.write(nb, folder / "01_empirical_study_I_statistics.ipynb")
        readme = tmp_path / "README.md"
        readme.write_text(f"intro\n{verdicts.BEGIN}\nold\n{verdicts.END}\nmiddle\n"
                          f"{verdicts.WALL_BEGIN}\nold wall\n{verdicts.WALL_END}\noutro\n")
        assert verdicts.main([str(folder), "--readme", str(readme)]) == 0
        text = readme.read_text()
        assert "old" not in text and text.startswith("intro") and text.rstrip().endswith("outro")
        assert "`abc1234`" in text and "1.5 min" in text and "DLP beats Uniform \\| 2.2x" in text
        assert "figures/default/00_quickstart_rid.png" in text  # the committed figure of notebook 00 is linked
        assert "old wall" not in text and "middle" in text
        # a stamp without counted_kinds comes from a runner that counted perplexity results only
        assert "| 00_quickstart | `abc1234` | 1.5 min | 3* | 2* |" in text and "perplexity configurations only" in text
        assert "| 01_empirical_study_I_statistics | `def5678` | 0.5 min | 1 | 0 |" in text
        # the total adds the stamps and says the copies do not come from one batch
        assert "**2.0 min** | 4 | 2 |" in text and "2 different commits" in text
    finally:
        import shutil
        shutil.rmtree(folder)


def _script(name: str):
    """A module of scripts/ (not a package), imported by name."""
    import importlib
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def test_cold_run_record_keeps_the_stamps_and_the_readme_shows_them(tmp_path):
    import nbformat
    verdicts = _script("verdicts")
    folder = tmp_path / "default"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["dlp_run"] = {"commit": "abc1234", "date": "2026-12-01 20:00 UTC", "wall_seconds": 600,
                              "status": "ok", "profile": "default", "results_computed": 7, "results_reused": 0,
                              "counted_kinds": ["results"], "prunings_computed": 4, "prunings_reused": 0}
    nbformat.write(nb, folder / "05_sparsity_sweep.ipynb")
    record = tmp_path / "cold.json"
    assert verdicts.main([str(folder), "--record-cold", str(record), "--note", "a cold run."]) == 0
    text = verdicts.cold_markdown(json.loads(record.read_text()), "benchmarks/results/cold.json")
    assert text.startswith("The last run of the whole batch from an empty result cache ([`cold.json`]"
                           "(benchmarks/results/cold.json)): a cold run.")
    assert "| 05_sparsity_sweep | `abc1234` | 10.0 min | 7 | 0 | 4 | 0 |" in text
    assert "one commit (`abc1234`)" in text


def test_readme_cold_table_is_generated_from_the_committed_record():
    verdicts = _script("verdicts")
    readme = (ROOT / "README.md").read_text()
    body = readme.split(verdicts.COLD_BEGIN, 1)[1].split(verdicts.COLD_END, 1)[0].strip()
    assert body == verdicts.cold_markdown(json.loads(verdicts.COLD_RECORD.read_text()),
                                          "benchmarks/results/batch_default_cold.json")
