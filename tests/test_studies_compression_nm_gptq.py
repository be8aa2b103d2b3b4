import pytest

from dlp_studies import compression_nm_gptq as nmq


def test_paper_numbers_complete():
    assert set(nmq.TABLE15["uniform"]) == set(nmq.TABLE15["dlp"]) == set(nmq.GRIDS["paper"]["nm"]["patterns"])
    assert set(nmq.TABLE17) == {16, 8, 4, 3}
    assert nmq.TABLE17[16]["dlp"][0] != nmq.TABLE3_SPARSEGPT_70["dlp"]   # the paper's own inconsistency


def _nm(pattern, uniform, dlp, same=False, spread=0.01):
    return nmq.nm_row(pattern, "dlp", uniform, dlp, same_as_uniform=same, achieved_density=0.5, rel_spread=spread)


def test_nm_row_no_room_only_for_n_1():
    for p in ("1:4", "1:8"):
        r, c = _nm(p, 100.0, 100.0, same=True)
        assert c is None and r["ours"].startswith("no room") and "N_l = 0" in r["ours"] and r["verdict"] == "cannot tell"


@pytest.mark.parametrize("pattern", ["3:4", "7:8"])
def test_nm_row_dense_blocks_give_room_at_the_top(pattern):
    """3:4 and 7:8 have room (dense blocks, N_l = M, pay for blocks below N): tested, not 'no room'."""
    r, c = _nm(pattern, 6.19, 5.91)
    assert c is not None and not r["ours"].startswith("no room") and r["verdict"] == "holds"


@pytest.mark.parametrize("dlp,word", [(80.0, "holds"), (99.5, "cannot tell"), (130.0, "does not reproduce")])
def test_nm_row_judged_by_the_measured_seed_spread(dlp, word):
    assert _nm("2:4", 100.0, dlp)[0]["verdict"] == word          # 1% spread: 0.5% is noise, 20% is not
    # one seed with no measured spread decides nothing, however large the gap
    assert _nm("2:4", 100.0, 80.0, spread=None)[1]["noise_known"] is False


def test_nm_row_rounded_to_uniform():
    r, c = _nm("4:8", 50.0, 50.0, same=True)
    assert c is None and "round to the uniform" in r["ours"]


def _ppl(uniform, dlp, dense):
    return {**{(b, "uniform"): u for b, u in uniform.items()}, **{(b, "dlp"): d for b, d in dlp.items()},
            **{(b, "dense"): d for b, d in dense.items()}}


def test_gptq_the_unquantized_row_is_not_a_quantization_result():
    """The default batch's old '2/3 better' counted the 16-bit row: only quantized widths count."""
    ppl = _ppl({16: 30, 4: 31, 3: 35}, {16: 20, 4: 30.9, 3: 34.9}, {16: 10, 4: 10.1, 3: 11})
    rows, cs, _ = nmq.gptq_rows(ppl, rel_spread=0.01)
    assert len(cs) == 2 and rows[0]["claim"].startswith("16-bit (before quantization)")
    v = nmq.appendix_e_verdict([], ppl, rel_spread=0.01)
    assert "GPTQ: better at 0 of 2 widths" in v["headline"]


def test_gptq_4bit_gap_names_gptqs_own_damage_on_the_dense_model():
    # the default batch: DLP 16 -> 4 bit +47%, most of it GPTQ's own (dense 30.75 -> 51.10)
    ppl = _ppl({16: 400.0, 4: 600.0}, {16: 150.0, 4: 220.8}, {16: 30.75, 4: 51.10})
    v = nmq.appendix_e_verdict([], ppl, rel_spread=0.01)
    assert "4-bit DLP +47%, dense +66% (GPTQ's own)" in v["headline"]
    four = [r for r in v["rows"] if r["claim"].startswith("4-bit DLP nearly")][0]
    assert "dense +66.2% (GPTQ's own damage)" in four["ours"] and four["verdict"] == "does not reproduce"
    assert v["gptq"]["dense_4bit_gap"] == pytest.approx(51.10 / 30.75 - 1)


def test_gptq_one_seed_without_spread_cannot_tell():
    ppl = _ppl({16: 30, 4: 31}, {16: 20, 4: 20.4}, {16: 10, 4: 10.1})
    v = nmq.appendix_e_verdict([], ppl, rel_spread=None)
    assert v["holds"] == "within noise" and "cannot tell" in v["headline"]
    assert v["headline"].endswith("one seed, seed spread unknown)")
    v = nmq.appendix_e_verdict([_nm("2:4", 100.0, 80.0)], ppl, rel_spread=0.01)
    assert v["holds"] == "holds" and v["text"].startswith("Verdict: ")


def test_grids():
    for profile in ("smoke", "default", "paper"):
        g = nmq.grid(profile)
        assert set(g) == {"nm", "gptq", "seeds", "overrides"}
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
    rows, cs, info = nmq.gptq_rows({k: r["perplexity"][base.eval[0]] for k, r in r17.items()})
    assert len(rows) == 1 and cs == [] and info["dense_4bit_gap"] is None     # DLP only: the 4-bit claim alone
    # the command-line path (what `prune --quantize-bits` / `prune --nm N:M --allocation dlp` call)
    import argparse

    from dlp_lib.runs import quantize_command as res
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

    from dlp_lib.runs import quantize_command as res
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
