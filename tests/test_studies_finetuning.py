import math

import pandas as pd
import pytest

from dlp_studies import finetuning as study
from dlp_studies.verdicts import cannot_tell


def test_cannot_tell_when_the_noise_covers_the_papers_gap():
    reason = cannot_tell(5.0, 0.8)
    assert "5.00" in reason and "0.80" in reason and "40x" in reason     # ceil((5 / 0.8)^2) = 40
    assert cannot_tell(0.5, -0.8) is None                                # a gap of either sign
    assert cannot_tell(0.8, 0.8) is not None                             # equal: cannot tell
    assert "unknown" in cannot_tell(math.nan, 4.88)


def _frame(lead_points, item_se_points):
    """Table 18 mean rows: one seed per method, DLP `lead_points` above the others."""
    rows = [{"method": m, "seed": 0, "task": "mean", "acc": 60.0 + (lead_points if m == "dlp" else 0.0),
             "acc_stderr": item_se_points} for m in ("lisa", "owlore", "dlp")]
    return pd.DataFrame(rows)


def test_table18_verdict_says_cannot_tell_on_a_small_grid():
    """All methods equal (the old default: 71.0 each) with ~2.5 points item error: no pair can be told."""
    v = study.table18_verdict(_frame(0.0, 2.5))
    assert v["holds"] == "within noise" and len(v["rows"]) == 3
    assert all(r["verdict"] == "cannot tell" for r in v["rows"])
    assert v["rows"][0]["claim"] == "DLP sampling beats OWLORE (Table 18)" and "0.80" in v["reasons"][("dlp", "owlore")]


def test_table18_verdict_judges_when_the_grid_can_resolve_the_gap():
    v = study.table18_verdict(_frame(6.0, 0.1))
    assert not v["reasons"]
    # DLP 6 points above both; OwLore = LISA within noise: the paper's order holds only partly
    assert [r["verdict"] for r in v["rows"]] == ["holds", "holds", "cannot tell"] and v["holds"] == "holds only partly"


def test_headings_say_what_the_grid_runs():
    """Notebook 13 once headed a 0-shot one-seed run "few-shot, mean over seeds"."""
    import json
    from pathlib import Path
    nb = json.loads((Path(__file__).resolve().parent.parent / "notebooks" / "13_finetuning.ipynb").read_text())
    text = "\n".join("".join(c["source"]) for c in nb["cells"])
    assert "few-shot, offline suite), mean over seeds" not in text and "-shot, {len(g['sampled']['seeds'])} seed(s)" in text


@pytest.mark.parametrize("profile", ["default", "paper"])
def test_sampled_grid_uses_owlores_settings(profile):
    """LISA: gamma 2, K 3, lr 3e-4, AdamW; OwLore and DLP: gamma 5, K 50, lr 3e-4, GaLore 256 / 100 / 1.0,
    DLP with the min-max probabilities of the script behind Table 18."""
    g = study.grid(profile)["sampled"]
    specs = {m: study.sampled_spec(g, m, 0) for m in g["methods"]}
    lisa, owlore, dlp = specs["lisa"], specs["owlore"], specs["dlp"]
    from dlp_lib.finetune import LOW_RANK_METHODS
    assert (lisa.gamma, lisa.interval, lisa.train.lr) == (2, 3, 3e-4) and "lisa" not in LOW_RANK_METHODS
    for s in (owlore, dlp):
        assert (s.gamma, s.interval, s.train.lr) == (5, 50, 3e-4)
        assert (s.galore_rank, s.galore_gap, s.galore_scale) == (256, 100, 1.0)
    assert dlp.dlp_weights == "minmax"
    assert len({s.train.lr for s in specs.values()}) == 1                # one optimiser strength
