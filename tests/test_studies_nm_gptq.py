import pytest

from dlp_studies import compression_nm_gptq as nmq


def test_paper_numbers_complete():
    assert set(nmq.TABLE15["uniform"]) == set(nmq.TABLE15["dlp"]) == set(nmq.GRIDS["paper"]["nm"]["patterns"])
    assert set(nmq.TABLE17) == {16, 8, 4, 3}
    assert nmq.TABLE17[16]["dlp"][0] != nmq.TABLE3_SPARSEGPT_70["dlp"]   # the paper's own inconsistency


def test_nm_verdict_no_room_says_so():
    v = nmq.nm_verdict("1:4", 100.0, 100.0, same_as_uniform=True, achieved_density=0.25)
    assert "no room" in v and "DLP = uniform" in v and "N_l = 0" in v
    assert "no room" in nmq.nm_verdict("1:8", 5.0, 5.0, same_as_uniform=True, achieved_density=0.125)


@pytest.mark.parametrize("pattern", ["3:4", "7:8"])
def test_nm_verdict_dense_blocks_give_room_at_the_top(pattern):
    """3:4 and 7:8 have room (dense blocks, N_l = M, pay for blocks below N): tested, not 'no room'."""
    v = nmq.nm_verdict(pattern, 6.19, 5.91, same_as_uniform=False, achieved_density=0.75)
    assert "no room" not in v and "reproduces" in v


def test_default_and_smoke_grids_run_3_4_and_7_8():
    for profile in ("smoke", "default"):
        assert {"3:4", "7:8"} <= set(nmq.grid(profile)["nm"]["patterns"])


@pytest.mark.parametrize("dlp,word", [(80.0, "reproduces"), (99.0, "within noise"), (130.0, "does not reproduce")])
def test_nm_verdict_gap(dlp, word):
    v = nmq.nm_verdict("2:4", 100.0, dlp, same_as_uniform=False, achieved_density=0.5)
    assert word in v
    if word == "reproduces":
        assert "does not" not in v


def test_nm_verdict_rounded_to_uniform():
    v = nmq.nm_verdict("4:8", 50.0, 50.0, same_as_uniform=True, achieved_density=0.5)
    assert "round to the uniform" in v and "not tested" in v


def _ppl(uniform, dlp, dense=5.0):
    return {**{(b, "uniform"): u for b, u in uniform.items()}, **{(b, "dlp"): d for b, d in dlp.items()},
            **{(b, "dense"): dense for b in uniform}}


def test_gptq_verdict_holds():
    v = nmq.gptq_verdict(_ppl({16: 30, 8: 30, 4: 31, 3: 35}, {16: 20, 8: 20, 4: 20.4, 3: 24}))
    assert v[0].startswith("DLP beats Uniform after quantization: holds (4/4")
    assert "4-bit DLP is nearly the unquantized DLP: holds" in v[1]


def test_gptq_verdict_fails_and_noise():
    v = nmq.gptq_verdict(_ppl({16: 30, 8: 30, 4: 31, 3: 35}, {16: 33, 8: 33, 4: 40, 3: 45}))
    assert "does not reproduce (0/4" in v[0]
    assert "4-bit DLP is nearly the unquantized DLP: does not reproduce" in v[1]
    v = nmq.gptq_verdict(_ppl({16: 30, 4: 31}, {16: 30.1, 4: 30.9}))
    assert "within noise at every bit width" in v[0] and "holds" not in v[0]
    v = nmq.gptq_verdict(_ppl({16: 30, 4: 31}, {16: 20, 4: 30.9}))
    assert "holds where the gap exceeds noise" in v[0]
    v = nmq.gptq_verdict(_ppl({16: 30, 4: 31}, {16: 20, 4: 33}))
    assert "partly holds (1/2" in v[0]


def test_grids():
    for profile in ("smoke", "default", "paper"):
        g = nmq.grid(profile)
        assert set(g) == {"nm", "gptq", "overrides"}
    with pytest.raises(ValueError, match="profile"):
        nmq.grid("huge")


def test_smoke_pipeline_on_tiny(tmp_path, monkeypatch):
    # the notebook's pipeline end to end on the tiny model: real pruning, quantization, evaluation
    monkeypatch.setenv("DLP_CACHE_DIR", str(tmp_path))
    from dlp_lib.experiment import ExperimentConfig, get_lab

    base = ExperimentConfig.from_profile("smoke", nsamples=2, neval=2)
    lab = get_lab(base.model, base.device, base.dtype, progress=False)
    r15 = nmq.table15(lab, base, ("4:8",), alphas=(0.3,))
    uni, dlp = r15[("4:8", "uniform")], r15[("4:8", "dlp alpha=0.3")]
    assert uni["n_kept"] == [4] * 4 and dlp["achieved_density"] == 0.5 and dlp["compliance"]["blocks_exactly_n"]
    assert dlp["compliance"]["density"] == pytest.approx(0.5)
    ratios = dlp["ratios"]
    for i in range(4):
        for j in range(4):
            if ratios[i] > ratios[j]:
                assert dlp["n_kept"][i] <= dlp["n_kept"][j]    # higher DLP ratio -> fewer kept
    frame = nmq.table15_frame(r15, base.eval[0])
    assert frame.loc[("4:8", "uniform"), "paper"] == 8.56
    r17 = nmq.table17(lab, base, (16, 4), rows=("dlp",))
    q = r17[(4, "dlp")]
    assert q["budgets"]["pruned"] == q["budgets"]["pruned_still_zero"] > 0
    assert q["achieved_sparsity"]["overall"] >= r17[(16, "dlp")]["achieved_sparsity"]["overall"]
    # cached: a second call returns the same numbers without recomputation
    assert nmq.table17(lab, base, (4,), rows=("dlp",))[(4, "dlp")]["perplexity"] == q["perplexity"]
    assert len(nmq.gptq_verdict({k: r["perplexity"][base.eval[0]] for k, r in r17.items()})) == 1
    # the command-line path (what `prune --quantize-bits` / `prune --nm N:M --allocation dlp` call)
    import argparse

    from dlp_lib.compression import nm_gptq_results as res
    parser = argparse.ArgumentParser()
    parser.add_argument("--nm")
    parser.add_argument("--allocation", default="dlp")
    res.add_arguments(parser)
    args = parser.parse_args(["--quantize-bits", "4"])
    cfg = base.replace(method="sparsegpt", allocation="dlp", sparsity=0.7)
    assert res.wants(args) and res.run(args, cfg, lab)["perplexity"] == q["perplexity"]
    args = parser.parse_args(["--nm", "4:8"])
    cfg = base.replace(allocation="dlp", alpha=0.3)
    assert res.wants(args) and res.run(args, cfg, lab)["n_kept"] == dlp["n_kept"]
    assert not res.wants(parser.parse_args(["--nm", "4:8", "--allocation", "uniform"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--quantize-bits", "5"])


def test_cli_preflight_refuses_bad_combinations():
    import argparse

    from dlp_lib.compression import nm_gptq_results as res
    from dlp_lib.experiment import ExperimentConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--nm")
    parser.add_argument("--allocation", default="dlp")
    res.add_arguments(parser)
    cfg = ExperimentConfig.from_profile("smoke", method="wanda")
    for argv, match in [(["--nm", "2:4", "--quantize-bits", "4"], "mixed N:M"),
                        (["--quantize-bits", "4", "--quantize-mode", "joint"], "joint"),
                        (["--quantize-bits", "4", "--group-size", "100"], "group_size"),
                        (["--group-size", "64"], "need --quantize-bits"),
                        (["--nm", "5:4"], "N:M")]:
        with pytest.raises(ValueError, match=match):
            res.check_args(parser.parse_args(argv), cfg)
    res.check_args(parser.parse_args(["--quantize-bits", "3", "--group-size", "128"]), cfg)
    res.check_args(parser.parse_args(["--nm", "2:4"]), cfg)
