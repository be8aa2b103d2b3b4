import copy
import itertools

import numpy as np
import pytest
import torch

from dlp_lib.compression.mixed_nm import (PATTERNS, allocate_nm, block_parameter_counts, grid_has_room,
                                          nm_compliance, prune_mixed_nm)
from dlp_lib.models import decoder_blocks, linear_sublayers
from dlp_lib.plan import SparsityPlan
from dlp_lib.pruning import prune_model
from dlp_lib.scores import NMPattern


def _dlp_like_ratios(n_blocks, sparsity, spread, seed=0):
    rng = np.random.default_rng(seed)
    r = sparsity + rng.uniform(-spread, spread, n_blocks)
    return (r - r.mean() + sparsity).tolist()


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("spread", [0.0, 0.05, 0.2])
def test_integers_in_range_and_total_of_uniform(pattern, spread):
    p = NMPattern.parse(pattern)
    ratios = _dlp_like_ratios(32, p.sparsity, min(spread, p.sparsity * 0.45, (1 - p.sparsity) * 0.45))
    P = [4096 * 11008 * 3 + 4096 * 4096 * 4] * 32       # LLaMA-7B blocks, all the same size
    a = allocate_nm(ratios, P, p)
    assert all(isinstance(n, int) and 1 <= n <= p.m for n in a.n_kept)
    assert sum(Pl * n for Pl, n in zip(P, a.n_kept)) == p.n_kept * sum(P)
    assert a.exact and a.achieved_density == pytest.approx(p.n_kept / p.m)
    if not grid_has_room(p):          # 1:4, 1:8: N_l >= 1 forces the uniform pattern
        assert a.n_kept == [p.n_kept] * 32


def test_uniform_plan_gives_uniform_pattern():
    for pattern in PATTERNS:
        p = NMPattern.parse(pattern)
        assert allocate_nm([p.sparsity] * 12, [100] * 12, p).n_kept == [p.n_kept] * 12


def test_higher_ratio_never_more_kept_and_closest_integer():
    p = NMPattern(4, 8)
    ratios = _dlp_like_ratios(30, p.sparsity, 0.25, seed=3)
    a = allocate_nm(ratios, [64] * 30, p)
    for i, j in itertools.combinations(range(30), 2):
        if ratios[i] > ratios[j]:
            assert a.n_kept[i] <= a.n_kept[j]
    # no N_l further than one step from its continuous share (1 - R_l) M
    x = (1 - np.asarray(ratios)) * p.m
    assert np.all(np.abs(np.asarray(a.n_kept) - x) < 1 + 1e-9)
    assert len(set(a.n_kept)) > 1


def test_brute_force_best_rounding_small():
    # independent: over every integer vector with the exact total, the allocation is one with the
    # smallest max |N_l - x_l| (largest-remainder rounding is optimal for equal block sizes)
    p = NMPattern(3, 8)
    ratios = [0.45, 0.70, 0.55, 0.80, 0.625]
    ratios = (np.asarray(ratios) - np.mean(ratios) + p.sparsity).tolist()
    x = (1 - np.asarray(ratios)) * 8
    a = allocate_nm(ratios, [10] * 5, p)
    best = min(max(abs(np.asarray(v) - x)) for v in itertools.product(range(1, 9), repeat=5) if sum(v) == 15)
    assert max(abs(np.asarray(a.n_kept) - x)) == pytest.approx(best)


def test_unequal_blocks_report_closest_density():
    p = NMPattern(2, 4)
    a = allocate_nm([0.3, 0.7, 0.5], [40, 12, 100], p)  # 2*152 = 304 kept-units needed
    kept = sum(P * n for P, n in zip([40, 12, 100], a.n_kept))
    assert all(1 <= n <= 4 for n in a.n_kept)
    assert a.achieved_density == pytest.approx(kept / (4 * 152))
    assert a.exact == (kept == 304)
    assert abs(kept - 304) <= 12


@pytest.mark.parametrize("pattern,expect", [("3:4", [4, 2, 3, 3]), ("7:8", [8, 6, 7, 7])])
def test_top_patterns_use_dense_blocks(pattern, expect):
    """N_l = M (dense) is allowed: at 3:4 a block well below the mean ratio keeps all 4, paid for by a
    block at 2:4; the kept total equals the uniform pattern's exactly."""
    p = NMPattern.parse(pattern)
    spread = p.sparsity * 0.9
    ratios = [p.sparsity - spread, p.sparsity + spread, p.sparsity, p.sparsity]
    a = allocate_nm(ratios, [64] * 4, p)
    assert a.n_kept == expect and a.exact and a.room
    assert sum(a.n_kept) == 4 * p.n_kept


def test_no_block_is_ever_emptied():
    """N_l = 0 never: at 1:4 a block with ratio near 1 stays at 1 of 4."""
    a = allocate_nm([0.99, 0.51, 0.75, 0.75], [64] * 4, "1:4")
    assert a.n_kept == [1, 1, 1, 1] and not a.room


def test_bad_input():
    with pytest.raises(ValueError, match="one ratio"):
        allocate_nm([0.5, 0.5], [10], "2:4")
    with pytest.raises(ValueError, match="ratios"):
        allocate_nm([0.5, 1.2], [10, 10], "2:4")
    with pytest.raises(ValueError, match="N:M"):
        allocate_nm([0.5], [10], "4:4")


def _independent_kept(model):
    return sum(int((l.weight.data != 0).sum()) for b in decoder_blocks(model) for l in linear_sublayers(b).values())


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_prune_tiny_with_per_block_patterns(tiny, method):
    from dlp_lib.data import calibration_windows

    model, tok = tiny
    model = copy.deepcopy(model)
    calib = calibration_windows("bbc", tok, 2, 64, 0)
    p = NMPattern(4, 8)
    n_blocks = len(decoder_blocks(model))
    plan = SparsityPlan("dlp", p.sparsity, [0.7, 0.4, 0.6, 0.3][:n_blocks])
    mixed = prune_mixed_nm(model, plan, p, method, calib, progress=False)
    assert mixed.n_kept == [2, 5, 3, 6]
    P = block_parameter_counts(model)
    assert _independent_kept(model) == sum(P) * p.n_kept // p.m == sum(Pl * n // 8 for Pl, n in zip(P, mixed.n_kept))
    for block, n in zip(decoder_blocks(model), mixed.n_kept):
        for layer in linear_sublayers(block).values():
            W = layer.weight.data
            assert torch.all((W != 0).reshape(W.shape[0], -1, 8).sum(-1) == n)
    check = nm_compliance(model, mixed)
    assert check["blocks_exactly_n"] and check["density"] == pytest.approx(0.5)


def test_dense_block_is_left_untouched_and_kept_total_exact(tiny):
    """3:4 with a DLP-like plan: the dense block (N_l = 4) is bit-identical to the dense model, the
    others are exactly N_l:4, and the kept count equals uniform 3:4's."""
    from dlp_lib.data import calibration_windows

    model, tok = tiny
    model = copy.deepcopy(model)
    dense = copy.deepcopy(model)
    calib = calibration_windows("bbc", tok, 2, 64, 0)
    p = NMPattern(3, 4)
    n_blocks = len(decoder_blocks(model))
    plan = SparsityPlan("dlp", p.sparsity, [0.0, 0.5, 0.25, 0.25][:n_blocks])
    mixed = prune_mixed_nm(model, plan, p, "wanda", calib, progress=False)
    assert mixed.n_kept == [4, 2, 3, 3]
    for b, (block, n) in enumerate(zip(decoder_blocks(model), mixed.n_kept)):
        for name, layer in linear_sublayers(block).items():
            W = layer.weight.data
            if n == 4:
                assert torch.equal(W, linear_sublayers(decoder_blocks(dense)[b])[name].weight.data)
            else:
                assert torch.all((W != 0).reshape(W.shape[0], -1, 4).sum(-1) == n)
    assert _independent_kept(model) == sum(block_parameter_counts(model)) * 3 // 4


def test_prune_model_refuses_one_pattern_with_nonuniform_plan(tiny):
    model, _ = tiny
    plan = SparsityPlan("dlp", 0.5, [0.4, 0.6, 0.5, 0.5])
    with pytest.raises(ValueError, match="per-block"):
        prune_model(copy.deepcopy(model), plan, "magnitude", nm=NMPattern(2, 4))
    with pytest.raises(ValueError, match="3 per-block"):
        prune_model(copy.deepcopy(model), plan, "magnitude", nm=[NMPattern(2, 4)] * 3)
    with pytest.raises(ValueError, match="targets sparsity"):
        prune_mixed_nm(copy.deepcopy(model), plan, "1:4", "magnitude")


def test_cli_save_mixed_nm_loads_with_plain_from_pretrained(tmp_path):
    """`prune --nm 2:4 --allocation dlp --save DIR`: a plain transformers checkpoint whose blocks keep
    different N (counted on the loaded weights), with N per block in plan.json."""
    import json
    import subprocess
    import sys

    from transformers import AutoModelForCausalLM

    ckpt = tmp_path / "ckpt"
    r = subprocess.run([sys.executable, "-m", "dlp_lib", "prune", "--model", "tiny-llama", "--method", "wanda",
                        "--allocation", "dlp", "--nm", "2:4", "--sparsity", "0.5", "--alpha", "0.25",
                        "--profile", "smoke", "--save", str(ckpt), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    recorded = json.loads((ckpt / "plan.json").read_text())["config"]["mixed_nm"]
    assert recorded["m"] == 4 and len(set(recorded["n_kept"])) > 1
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    counted = []
    for block in model.model.layers:
        per_block = set()
        for layer in (m for m in block.modules() if isinstance(m, torch.nn.Linear)):
            per_block |= set((layer.weight != 0).reshape(layer.weight.shape[0], -1, 4).sum(-1).unique().tolist())
        assert len(per_block) == 1
        counted.append(per_block.pop())
    assert counted == recorded["n_kept"]
    assert sum(counted) == 2 * len(counted)
