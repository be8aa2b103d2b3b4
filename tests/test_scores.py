import pytest
import torch

from dlp_lib.scores import NMPattern, magnitude_scores, prune_mask, wanda_scores


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.77])
def test_per_output_counts_exact(ratio):
    torch.manual_seed(0)
    s = torch.rand(17, 40)
    s[:, :10] = 0.5  # ties
    mask = prune_mask(s, ratio, "per_output")
    assert torch.all(mask.sum(1) == int(40 * ratio))
    # pruned entries are never larger than kept entries in the same row
    for row, m in zip(s, mask):
        if m.any() and (~m).any():
            assert row[m].max() <= row[~m].min()


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.9])
def test_per_layer_count_exact(ratio):
    s = torch.rand(13, 29)
    mask = prune_mask(s, ratio, "per_layer")
    assert mask.sum() == int(s.numel() * ratio)
    assert s[mask].max() <= s[~mask].min()


def test_nm_pattern():
    s = torch.rand(8, 32)
    nm = NMPattern.parse("2:4")
    mask = prune_mask(s, 0.0, nm=nm)
    groups = mask.reshape(8, 8, 4)
    assert torch.all(groups.sum(-1) == 2)  # 2 of 4 zeroed = 2 kept
    kept_min = torch.where(groups, torch.inf, s.reshape(8, 8, 4)).min(-1).values
    pruned_max = torch.where(groups, s.reshape(8, 8, 4), -torch.inf).max(-1).values
    assert torch.all(pruned_max <= kept_min)
    assert NMPattern.parse("4:8").sparsity == 0.5
    with pytest.raises(ValueError, match="N:M"):
        NMPattern.parse("4:4")
    with pytest.raises(ValueError, match="divisible"):
        prune_mask(torch.rand(2, 6), 0.0, nm=nm)


def test_wanda_score_formula():
    w = torch.tensor([[1.0, -2.0], [-3.0, 0.5]])
    norms = torch.tensor([2.0, 10.0])
    assert torch.equal(wanda_scores(w, norms), torch.tensor([[2.0, 20.0], [6.0, 5.0]]))
    assert torch.equal(magnitude_scores(w), w.abs())


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune_mask(torch.rand(2, 2), 1.2)
    with pytest.raises(ValueError, match="group"):
        prune_mask(torch.rand(2, 2), 0.5, "per_banana")
