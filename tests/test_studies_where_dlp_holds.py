"""Notebook 15's verdict rules on constructed tables."""
import pandas as pd
import pytest

from dlp_studies import where_dlp_holds as study


def _table(dlp, ramp, uniform=(10.0, 10.0, 10.0), model="m"):
    rows = []
    for arm, values in (("dlp", dlp), ("depth_ramp", ramp), ("uniform", uniform)):
        for seed, v in enumerate(values):
            rows.append({"model": model, "method": "wanda", "sparsity": 0.7, "allocation": arm, "seed": seed,
                         "ppl (geo. mean)": v})
    return pd.DataFrame(rows)


def test_dlp_beats_ramp_only_beyond_seed_noise():
    word = lambda df: study.dlp_vs_ramp(df, "m")["verdict"]  # noqa: E731
    assert word(_table((5.0, 5.2, 5.1), (6.0, 6.1, 6.2))) == "a better"
    assert word(_table((6.0, 6.1, 6.2), (5.0, 5.2, 5.1))) == "b better"
    # gap 0.1 within a spread of 0.4: within noise
    assert word(_table((5.0, 5.4, 5.2), (5.3, 5.3, 5.3))) == "within noise"
    one = study.dlp_vs_ramp(_table((5.0,), (9.0,), (10.0,)), "m")
    assert one["verdict"] == "within noise" and not one["noise_known"]   # one seed: no noise estimate


def _with(df, arm, value, model="m", **extra):
    return pd.concat([df, pd.DataFrame([{"model": model, "method": "wanda", "sparsity": 0.7, "allocation": arm,
                                         "seed": 0, "ppl (geo. mean)": value, **extra}])], ignore_index=True)


def test_one_seed_arms_are_judged_against_the_models_measured_seed_spread():
    """The old rule counted any seed-0 gap to Uniform (9.9 vs 10.0) as 'better than Uniform'."""
    df = _table((5.0, 5.2, 5.1), (6.0, 6.1, 6.2), (10.0, 10.2, 10.1))     # spread 0.2 / 5.1 = 3.9%
    assert study.model_spread(df, "m") == pytest.approx(0.2 / 5.1)
    df = _with(_with(df, "owl", 9.9), "block_influence", 7.0)
    assert list(study.better_than_uniform(df, "m")) == ["dlp", "depth_ramp", "block_influence"]


def test_headline_cannot_tell_within_noise_and_per_model_rows():
    a = _with(_table((5.0, 5.4, 5.2), (5.3, 5.3, 5.3)), "auto", 5.1, pick="dlp_mirror")
    b = _with(_table((12.0, 12.1, 12.2), (9.0, 9.1, 9.2), (10.0, 10.1, 10.2), model="b"), "auto", 9.0, model="b",
              pick="depth_ramp")
    v = study.headline_verdict(pd.concat([a, b], ignore_index=True))
    assert v["headline"] == ("DLP beats the depth ramp beyond noise (Wanda 70%): does not reproduce (m: within noise; "
                             "b: ramp better; better than Uniform on every model: depth_ramp)")
    by = {r["claim"]: r for r in v["rows"]}
    assert by["m: DLP beats the depth ramp"]["verdict"] == "cannot tell"
    assert by["b: arms better than Uniform"]["ours"] == "depth_ramp 9.10 (Uniform 10.10)"
    assert by["b: auto no worse than Uniform"]["ours"] == "picked depth_ramp: 9.00 vs Uniform 10.10"
    assert by["b: auto no worse than Uniform"]["verdict"] == "holds"
    one = study.headline_verdict(_table((5.0,), (9.0,), (10.0,)))
    assert one["holds"] == "within noise" and one["headline"].endswith("one seed, seed spread unknown)")


def test_helps_on_every_model_needs_every_model():
    df = pd.concat([_table((5.0, 5.1), (11.0, 11.1), (10.0, 10.1), model="a"),
                    _table((12.0, 12.1), (9.0, 9.1), (10.0, 10.1), model="b")])
    assert study.helps_on_every_model(df) == []
    df = pd.concat([_table((5.0, 5.1), (9.0, 9.1), (10.0, 10.1), model="a"),
                    _table((12.0, 12.1), (9.0, 9.1), (10.0, 10.1), model="b")])
    assert study.helps_on_every_model(df) == ["depth_ramp"]
