"""SparsityPlan: the budget every compressor consumes."""
import warnings

import pytest


def test_plan_is_a_budget():
    from dlp_lib.plan import SparsityPlan
    p = SparsityPlan("uniform", 0.6, [0.6, 0.6], sublayer_ratios=[{"a": 0.5}, {"a": 0.7}])
    assert p.keep(0) == pytest.approx(0.4) and p.keep(1, "a") == pytest.approx(0.3) and p.n_blocks == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SparsityPlan(**p.to_dict()) == p
