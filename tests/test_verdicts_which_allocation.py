"""README's "Which allocation for my model?" is generated from notebook 15's executed copy (scripts/verdicts.py)."""
import json
import sys
from pathlib import Path

import pandas as pd

from dlp_studies import where_dlp_holds as study

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import verdicts as V  # noqa: E402

sys.path.pop(0)


def _rows(model, dlp, ramp, uniform, auto, pick):
    rows = [{"model": model, "method": "wanda", "sparsity": 0.7, "allocation": arm, "seed": s, "ppl (geo. mean)": v}
            for arm, vals in (("dlp", dlp), ("depth_ramp", ramp), ("uniform", uniform)) for s, v in enumerate(vals)]
    return rows + [{"model": model, "method": "wanda", "sparsity": 0.7, "allocation": "auto", "seed": 0,
                    "ppl (geo. mean)": auto, "pick": pick}]


def _executed(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nb = {"cells": [{"cell_type": "code", "source": "", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": text}]}], "metadata": {}}
    (folder / "15_where_dlp_holds.ipynb").write_text(json.dumps(nb))


def test_section_says_how_to_run_notebook_15_when_its_copy_is_missing(tmp_path):
    text = V.allocation_markdown(tmp_path / "default")
    assert "has not been run under the `default` profile yet" in text and "bash run_all.sh default '15*'" in text


def test_section_lists_per_model_the_arms_that_beat_uniform_and_autos_pick(tmp_path):
    df = pd.DataFrame(_rows("smollm2-135m", (5.0, 5.1, 5.2), (6.0, 6.1, 6.2), (10.0, 10.1, 10.2), 5.0, "dlp")
                      + _rows("gemma3-270m", (12.0, 12.1, 12.2), (9.0, 9.1, 9.2), (10.0, 10.1, 10.2), 9.1,
                              "depth_ramp"))
    verdict = study.headline_verdict(df)
    _executed(tmp_path / "default", "setup line\n" + verdict["text"] + "\n")
    text = V.allocation_markdown(tmp_path / "default")
    lines = text.splitlines()
    assert lines[0].endswith(verdict["headline"])
    assert ("| smollm2-135m | DLP 5.10 vs ramp 6.10 (3 seeds): **holds** | dlp 5.10, depth_ramp 6.10 "
            "(Uniform 10.10) | picked dlp: 5.00 vs Uniform 10.10 (no worse than Uniform: **holds**) |") in lines
    assert ("| gemma3-270m | DLP 12.10 vs ramp 9.10 (3 seeds): **does not reproduce** | depth_ramp 9.10 "
            "(Uniform 10.10) | picked depth_ramp: 9.10 vs Uniform 10.10 (no worse than Uniform: **holds**) |") in lines


def test_readme_section_is_generated_from_the_committed_copies():
    readme = (ROOT / "README.md").read_text()
    body = readme.split(V.ALLOC_BEGIN, 1)[1].split(V.ALLOC_END, 1)[0].strip()
    assert body == V.allocation_markdown(ROOT / "results" / "notebooks" / "default")
    # a hyphenated marker still fences off generated numbers from the README's truth check
    assert V.readme_numbers(f"## Results\n{V.ALLOC_BEGIN}\n| 987.654 |\n{V.ALLOC_END}\n") == []
