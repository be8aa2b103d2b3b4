"""Notebook 15's verdict rules on constructed tables."""
import pandas as pd

from dlp_studies import where_dlp_holds as study


def _table(dlp, ramp, uniform=(10.0, 10.0, 10.0), model="m"):
    rows = []
    for arm, values in (("dlp", dlp), ("depth_ramp", ramp), ("uniform", uniform)):
        for seed, v in enumerate(values):
            rows.append({"model": model, "method": "wanda", "sparsity": 0.7, "allocation": arm, "seed": seed,
                         "ppl (geo. mean)": v})
    return pd.DataFrame(rows)


def test_dlp_beats_ramp_only_beyond_seed_noise():
    assert study.dlp_vs_ramp(_table((5.0, 5.2, 5.1), (6.0, 6.1, 6.2)), "m") == "DLP"
    assert study.dlp_vs_ramp(_table((6.0, 6.1, 6.2), (5.0, 5.2, 5.1)), "m") == "depth ramp"
    # gap 0.1 within a spread of 0.4: cannot tell
    assert study.dlp_vs_ramp(_table((5.0, 5.4, 5.2), (5.3, 5.3, 5.3)), "m") == "cannot tell"
    assert study.dlp_vs_ramp(_table((5.0,), (9.0,), (10.0,)), "m") == "cannot tell"   # one seed: no noise estimate


def test_helps_on_every_model_needs_every_model():
    df = pd.concat([_table((5.0,), (11.0,), (10.0,), model="a"), _table((12.0,), (9.0,), (10.0,), model="b")])
    assert study.helps_on_every_model(df) == []
    df = pd.concat([_table((5.0,), (9.0,), (10.0,), model="a"), _table((12.0,), (9.0,), (10.0,), model="b")])
    assert study.helps_on_every_model(df) == ["depth_ramp"]
    assert "a: cannot tell" in study.headline_verdict(df)
