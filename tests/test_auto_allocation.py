"""`--allocation auto` (dlp_lib.runs.auto_allocation): Uniform always a candidate, ties to Uniform, cached."""
from __future__ import annotations

import json

import pytest

from dlp_lib.runs.auto_allocation import TIE_NATS, candidates, pick


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def lab(tiny_lab):
    return tiny_lab


@pytest.fixture()
def small_grid(monkeypatch):
    import dlp_lib.runs.auto_allocation as auto
    monkeypatch.setattr(auto, "AUTO_ALPHA_GRID", (0.1,))


def _auto(**kw):
    from dlp_lib.experiment import ExperimentConfig
    return ExperimentConfig.from_profile("smoke", allocation="auto", sparsity=0.6, **kw)


def _scored(*pairs):
    return [{"allocation": a, "alpha": None, "score": s} for a, s in pairs]


def test_candidates_always_hold_uniform_first_and_every_alpha():
    c = candidates((0.15, 0.05))
    assert c[0] == {"allocation": "uniform", "alpha": None}
    assert {"allocation": "dlp", "alpha": 0.05} in c and {"allocation": "dlp", "alpha": 0.15} in c
    assert {"allocation": "depth_ramp", "alpha": 0.15} in c and {"allocation": "dlp_mirror", "alpha": 0.05} in c
    assert [x["alpha"] for x in c if x["allocation"] == "block_influence"] == [0.05, 0.15]


def test_ties_go_to_uniform():
    assert pick(_scored(("uniform", 2.0), ("dlp", 2.0)))["allocation"] == "uniform"
    assert pick(_scored(("uniform", 2.0), ("dlp", 2.0 - TIE_NATS / 2)))["allocation"] == "uniform"
    assert pick(_scored(("uniform", 2.0), ("dlp", 2.0 - 2 * TIE_NATS)))["allocation"] == "dlp"
    # equal best scores: the first in candidate order
    assert pick(_scored(("uniform", 2.0), ("depth_ramp", 1.5), ("dlp", 1.5)))["allocation"] == "depth_ramp"


def test_selection_never_worse_than_uniform_and_cached(tmp_cache, lab, small_grid, monkeypatch):
    from dlp_lib.runs.auto_allocation import select_allocation
    cfg = _auto()
    first = select_allocation(lab, cfg)
    assert [c["allocation"] for c in first["scores"]] == [c["allocation"] for c in candidates((0.1,))]
    chosen = next(c for c in first["scores"] if {"allocation": c["allocation"], "alpha": c["alpha"]} == first["pick"])
    assert chosen["score"] <= first["uniform_score"]
    assert first["cost"]["candidates"] == len(first["scores"]) == first["cost"]["prunings"]
    assert list((tmp_cache / "allocation_selection").glob("*.json"))
    import dlp_lib.experiment as experiment

    def no_pruning(*a, **k):
        raise AssertionError("a cached selection pruned again")
    monkeypatch.setattr(experiment, "prune_model", no_pruning)
    assert select_allocation(lab, cfg) == first
    # the selection depends on no evaluation text
    assert select_allocation(lab, _auto(eval=("sotu",))) == first


def test_recomputed_selection_reads_cached_scores(tmp_cache, lab, small_grid):
    from dlp_lib.runs.auto_allocation import select_allocation
    first = select_allocation(lab, _auto())
    again = select_allocation(lab, _auto(), use_cache=False)
    assert again["scores"] == first["scores"] and again["pick"] == first["pick"]


def test_run_auto_resolves_auto_to_the_pick(tmp_cache, lab, small_grid):
    from dlp_lib.runs.auto_allocation import run_auto, selected
    result = run_auto(lab, _auto())
    pick_ = result["allocation_selection"]["pick"]
    assert result["config"]["allocation"] == pick_["allocation"]
    assert lab.plan(selected(lab, _auto())).ratios == result["ratios"]


def test_the_lab_takes_the_chosen_configuration_only(lab):
    """Choosing needs results on a Lab (dlp_lib.runs, above it): the Lab refuses "auto" before any work."""
    for step in (lab.run, lab.plan, lab.ensure):
        with pytest.raises(ValueError, match="allocation 'auto' is chosen .* by dlp_lib.runs.auto_allocation"):
            step(_auto())


def test_alpha_is_refused_with_auto(tmp_cache, lab):
    from dlp_lib.runs.auto_allocation import select_allocation
    with pytest.raises(ValueError, match="not used by allocation 'auto'"):
        select_allocation(lab, _auto(alpha=0.1))


def test_cli_prints_scores_and_pick(tmp_cache, tmp_path, small_grid, capsys):
    from dlp_lib.cli import main
    out = tmp_path / "r.json"
    assert main(["prune", "--profile", "smoke", "--allocation", "auto", "--sparsity", "0.6", "--quiet",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert "<- pick" in printed and "uniform" in printed and "prunings" in printed
    assert set(result["allocation_selection"]) >= {"pick", "scores", "cost", "uniform_score", "tie_nats"}


def test_cli_alpha_with_auto_is_an_error(capsys):
    from dlp_lib.cli import main
    assert main(["prune", "--profile", "smoke", "--allocation", "auto", "--alpha", "0.1", "--quiet"]) == 2
    assert "--allocation auto" in capsys.readouterr().err
