"""Automatic alpha (dlp_lib.runs.auto_alpha): calibration data only, from the grid, deterministic, CLI."""
from __future__ import annotations

import json
import os

import pytest

from dlp_lib import data as data_mod
from dlp_lib.cache import cache_root

GRID = (0.02, 0.2)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def lab(tiny_lab):
    return tiny_lab


def _smoke(**kw):
    from dlp_lib.experiment import ExperimentConfig
    return ExperimentConfig.from_profile("smoke", **kw)


def test_returns_alpha_from_grid_with_scores(tmp_cache, lab):
    from dlp_lib.runs.auto_alpha import select_alpha
    out = select_alpha(lab, _smoke(), grid=GRID)
    assert out["alpha"] in GRID
    assert out["criterion"] == "calib_nll"
    assert set(out["scores"]) == set(GRID)
    assert out["scores"][out["alpha"]] == min(out["scores"].values())
    assert out["heldout"]["split"] == "train" and out["heldout"]["source"] == "bbc"


def test_deterministic_and_cached(tmp_cache, lab):
    from dlp_lib.runs.auto_alpha import select_alpha
    cfg = _smoke()
    first = select_alpha(lab, cfg, grid=GRID, use_cache=False)
    stored = select_alpha(lab, cfg, grid=GRID)  # recomputed (nothing cached yet), then stored
    from_cache = select_alpha(lab, cfg, grid=GRID)  # read back from the cache
    assert stored == from_cache == first
    assert list((tmp_cache / "alpha_selection").glob("*.json"))


def test_uses_no_evaluation_text(tmp_cache, lab, monkeypatch):
    """Only the calibration source's train split is read; no evaluation window is ever built."""
    from dlp_lib.runs.auto_alpha import select_alpha
    splits = []
    real_stream = data_mod.token_stream

    def spy(source, tokenizer, split, **kwargs):
        splits.append((str(getattr(source, "name", source)), split))
        return real_stream(source, tokenizer, split, **kwargs)

    def forbidden(*a, **k):
        raise AssertionError("select_alpha touched evaluation text")

    monkeypatch.setattr(data_mod, "token_stream", spy)
    monkeypatch.setattr(data_mod, "evaluation_windows", forbidden)
    monkeypatch.setattr(lab, "eval_windows", forbidden)
    monkeypatch.setattr(lab, "perplexities", forbidden)
    cfg = _smoke(eval=("brown",))
    out = select_alpha(lab, cfg, grid=GRID)
    assert out["alpha"] in GRID
    assert splits and all(s == ("bbc", "train") for s in splits)
    # The choice does not depend on the evaluation text named in the config.
    other = select_alpha(lab, _smoke(eval=("sotu",)), grid=GRID)
    assert other["alpha"] == out["alpha"] and other["scores"] == out["scores"]


def test_heldout_windows_differ_from_calibration(tmp_cache, lab):
    from dlp_lib.runs.auto_alpha import heldout_windows
    cfg = _smoke()
    held = heldout_windows(lab, cfg)
    calib = lab.calibration(cfg)
    assert held.shape[1] == calib.shape[1]
    assert not any(bool((h == c).all()) for h in held for c in calib)


def test_rejects_non_dlp(tmp_cache, lab):
    from dlp_lib.runs.auto_alpha import select_alpha
    with pytest.raises(ValueError, match="dlp"):
        select_alpha(lab, _smoke(allocation="owl"), grid=GRID)


def test_cli_alpha_auto_smoke(tmp_cache, tmp_path, capsys):
    from dlp_lib.cli import main
    from dlp_studies.paper import ALPHA_GRID
    out = tmp_path / "r.json"
    assert main(["prune", "--profile", "smoke", "--alpha", "auto", "--alpha-grid", *map(str, GRID), "--quiet",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    choice = result["alpha_selection"]
    assert choice["alpha"] in GRID and set(GRID) <= set(ALPHA_GRID)
    assert [float(a) for a in choice["grid"]] == list(GRID)
    assert result["config"]["alpha"] == choice["alpha"]
    assert "achieved" in capsys.readouterr().out


def test_cli_alpha_grid_needs_auto(capsys):
    from dlp_lib.cli import main
    assert main(["prune", "--profile", "smoke", "--alpha", "0.1", "--alpha-grid", "0.02", "0.2", "--quiet"]) == 2
    assert "--alpha auto" in capsys.readouterr().err


def test_score_reuses_the_model_lab_run_just_pruned(tmp_cache, lab, monkeypatch):
    from dlp_lib.runs.auto_alpha import alpha_score
    cfg = _smoke()
    lab.run(cfg.replace(alpha=0.1, eval=("sotu",)))  # eval fields do not change the pruning
    calls = []
    import dlp_lib.experiment as experiment
    monkeypatch.setattr(experiment, "prune_model", lambda *a, **k: calls.append(a))
    score = alpha_score(lab, cfg, 0.1)
    assert calls == [] and score > 0
