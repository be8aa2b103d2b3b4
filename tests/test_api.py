"""Public API (dlp_lib.api) on in-memory tiny-llama models: equal to the engine-level calls, validated inputs."""
import copy
import math
import re
from pathlib import Path

import pytest
import torch

from dlp_lib.api import dense_statistics, perplexity, plan, prune
from dlp_lib.allocation import build_plan
from dlp_lib.block_stats import compute_dense_statistics
from dlp_lib.models import decoder_blocks, linear_sublayers, tiny_llama
from dlp_lib.pruning import prune_model

# The README's "Python API" example, verbatim (test_readme_example_in_sync keeps them equal).
README_EXAMPLE = '''\
from dlp_lib import dense_statistics, plan, prune, perplexity
from dlp_lib.models import load_model

model, tok = load_model("tiny-llama")                 # any AutoModelForCausalLM + its tokenizer
stats = dense_statistics(model, tok, calib="bbc", nsamples=4, seqlen=64)   # pass 1: one dense pass
dlp = plan(stats, allocation="dlp", sparsity=0.7, alpha=0.15)              # pure: re-plan freely
owl = plan(stats, allocation="owl", sparsity=0.7, lamda=0.08, owl_m=5)
print("RID:", [round(i, 3) for i in dlp.rid])
print("DLP:", [round(r, 3) for r in dlp.ratios], "OWL:", [round(r, 3) for r in owl.ratios])
dense = perplexity(model, tok, text="brown", seqlen=64, neval=4)
achieved = prune(model, dlp, method="wanda", calib="bbc", tokenizer=tok, nsamples=4, seqlen=64)
pruned = perplexity(model, tok, text="brown", seqlen=64, neval=4)
print(f"achieved sparsity {achieved['overall']:.3f}; brown perplexity {dense:.1f} -> {pruned:.1f}")
'''


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ids(n=3, t=32, seed=0, vocab=256):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, t), generator=g)


def test_readme_example_runs(capsys, monkeypatch):
    import dlp_lib
    import dlp_lib.api
    wired = hasattr(dlp_lib, "dense_statistics")
    for name in ("dense_statistics", "plan", "prune", "perplexity"):
        if wired:   # dlp_lib/__init__ re-exports the API (note: `plan` then shadows the dlp_lib.plan module attribute)
            assert getattr(dlp_lib, name) is getattr(dlp_lib.api, name)
        else:       # this branch before the re-export lands
            monkeypatch.setattr(dlp_lib, name, getattr(dlp_lib.api, name), raising=False)
    exec(compile(README_EXAMPLE, "README example", "exec"), {})
    out = capsys.readouterr().out
    m = re.search(r"achieved sparsity ([0-9.]+); brown perplexity ([0-9.]+) -> ([0-9.]+)", out)
    assert m, out
    assert float(m.group(1)) == pytest.approx(0.7, abs=0.02)
    assert math.isfinite(float(m.group(3)))
    assert re.search(r"DLP: \[.*\] OWL: \[.*\]", out)


def test_readme_example_in_sync():
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    if "## Python API" not in text:
        pytest.skip("README has no Python API section yet")
    block = re.search(r"## Python API.*?```python\n(.*?)```", text, re.S).group(1)
    assert block == README_EXAMPLE


def test_dense_statistics_equals_engine_call():
    model, _ = tiny_llama()
    ids = _ids()
    ours = dense_statistics(model, calib=ids, progress=False)
    ref = compute_dense_statistics(model, ids, progress=False)
    assert [b["median"] for b in ours.blocks] == [b["median"] for b in ref.blocks]
    assert [b["outlier_ratio"] for b in ours.blocks] == [b["outlier_ratio"] for b in ref.blocks]
    assert ours.config["nsamples"] == 3 and ours.config["seqlen"] == 32


def test_dense_statistics_from_text_file(tmp_path):
    model, tok = tiny_llama()
    f = tmp_path / "calib.txt"
    f.write_text("The quick brown fox jumps over the lazy dog. " * 40)
    a = dense_statistics(model, tok, calib=str(f), nsamples=2, seqlen=32, seed=1, progress=False)
    b = dense_statistics(model, tok, calib=str(f), nsamples=2, seqlen=32, seed=1, progress=False)
    assert [x["median"] for x in a.blocks] == [x["median"] for x in b.blocks]      # seeded
    assert a.config["calib"].startswith("file:") and len(a.blocks) == 4


@pytest.mark.parametrize("kwargs,match", [
    (dict(calib=_ids(), nsamples=4), "nsamples = 4 but calib has 3 rows"),
    (dict(calib=_ids(), seqlen=16), "seqlen = 16 but calib has 32 columns"),
    (dict(calib=_ids().float()), "integer token ids"),
    (dict(calib=_ids(vocab=100000)), "vocabulary"),
    (dict(calib=_ids()[0]), r"\(N, T\) tensor"),
    (dict(calib="bbc"), "needs a tokenizer"),
    (dict(calib="nonsense-source"), "Unknown text source"),
    (dict(calib=3), "calib = 3"),
    (dict(calib=_ids(), seed=-1), "seed = -1"),
    (dict(calib="bbc", nsamples=10**20), r"nsamples = 100000000000000000000 is not allowed; expected an integer "
                                          r">= 1 and <= 2147483647"),
    (dict(calib=_ids(), seed=2**64), "seed = 18446744073709551616 is not allowed"),
    (dict(calib=_ids(n=1, t=5000)), "exceeds the model's maximum of 4096"),
])
def test_dense_statistics_rejects_bad_input(kwargs, match):
    model, _ = tiny_llama()
    with pytest.raises(ValueError, match=match):
        dense_statistics(model, **kwargs)


def test_dense_statistics_rejects_non_model():
    with pytest.raises(ValueError, match="not a torch.nn.Module"):
        dense_statistics("tiny-llama", calib=_ids())
    with pytest.raises(ValueError, match="No repeated decoder blocks"):
        dense_statistics(torch.nn.Linear(4, 4), calib=_ids())


def test_plan_equals_build_plan_and_validates():
    model, _ = tiny_llama()
    stats = dense_statistics(model, calib=_ids(), progress=False)
    ours = plan(stats, "dlp", 0.6, alpha=0.1, statistic="mean")
    ref = build_plan("dlp", 0.6, stats=stats, alpha=0.1, statistic="mean")
    assert ours.ratios == ref.ratios and ours.rid == ref.rid
    assert plan(stats, "owl", 0.6, lamda=0.1, owl_m=7).ratios == build_plan("owl", 0.6, stats=stats, lamda=0.1,
                                                                               owl_m=7.0).ratios
    assert plan(None, "lamp", 0.5, model=model).sublayer_ratios is not None
    with pytest.raises(ValueError, match="alpha = 0.1 is not allowed; it does not apply to allocation 'owl', "
                                         "which takes lamda, owl_m"):
        plan(stats, "owl", 0.6, alpha=0.1)
    with pytest.raises(ValueError, match="alpha = 0.1 .* allocation 'uniform', which takes no parameters"):
        plan(stats, "uniform", 0.6, alpha=0.1)
    with pytest.raises(ValueError, match="allocation = 'dlpp' is not allowed"):
        plan(stats, "dlpp", 0.6)
    with pytest.raises(ValueError, match="sparsity must be in"):
        plan(stats, "dlp", 1.0)
    with pytest.raises(ValueError, match="sparsity = '0.7'"):
        plan(stats, "dlp", "0.7")
    with pytest.raises(ValueError, match="needs the model"):
        plan(stats, "er", 0.6)
    with pytest.raises(ValueError, match="takes alpha, statistic; got lamda"):
        plan(stats, "dlp", 0.6, lamda=0.1)
    with pytest.raises(ValueError, match="stats has 4 blocks but the model has 2"):
        plan(stats, "dlp", 0.6, model=tiny_llama(n_layers=2)[0])
    with pytest.raises(ValueError, match="stats = dict"):
        plan({"blocks": []}, "dlp", 0.6)
    with pytest.raises(ValueError, match="method = 'obs'"):
        plan(stats, "dlp", 0.6, method="obs")


def _zeros_per_block(model):
    """Independent count of exact zeros over each block's linears."""
    out = []
    for block in decoder_blocks(model):
        z = n = 0
        for layer in linear_sublayers(block).values():
            z += int((layer.weight == 0).sum())
            n += layer.weight.numel()
        out.append(z / n)
    return out


def test_prune_magnitude_follows_plan_per_layer_by_default():
    model, _ = tiny_llama()
    stats = dense_statistics(model, calib=_ids(), progress=False)
    p = plan(stats, "dlp", 0.6, alpha=0.15)
    achieved = prune(model, p, method="magnitude", progress=False)
    assert achieved["per_block"] == pytest.approx(_zeros_per_block(model))
    for b, block in enumerate(decoder_blocks(model)):
        for layer in linear_sublayers(block).values():
            assert int((layer.weight == 0).sum()) == int(layer.weight.numel() * p.ratios[b])   # one count per matrix
    rows = (decoder_blocks(model)[0].mlp.down_proj.weight == 0).sum(dim=1)
    assert len(set(rows.tolist())) > 1                         # per_layer: rows differ (per_output would not)


def test_prune_wanda_equals_prune_model():
    model, _ = tiny_llama()
    twin = copy.deepcopy(model)
    ids = _ids()
    p = plan(dense_statistics(model, calib=ids, progress=False), "dlp", 0.5, alpha=0.1)
    achieved = prune(model, p, method="wanda", calib=ids, progress=False)
    prune_model(twin, p, "wanda", ids, group="per_output", progress=False)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert achieved["overall"] == pytest.approx(0.5, abs=0.02)
    rows = (decoder_blocks(model)[1].self_attn.q_proj.weight == 0).sum(dim=1)
    assert len(set(rows.tolist())) == 1                        # per_output by default for Wanda


def test_prune_rejects_bad_input_before_work():
    model, _ = tiny_llama()
    dense = copy.deepcopy(model.state_dict())
    stats = dense_statistics(model, calib=_ids(), progress=False)
    p = plan(stats, "dlp", 0.5, alpha=0.1)
    cases = [(dict(plan=p, method="obs"), "method = 'obs'"),
             (dict(plan=p, method="wanda"), "needs calibration data"),
             (dict(plan=p, method="wanda", calib="bbc"), "needs a tokenizer"),
             (dict(plan=p, method="magnitude", group="per_row"), "group = 'per_row'"),
             (dict(plan=p, method="magnitude", nm="2:4"), "not uniform"),
             (dict(plan=plan(stats, "uniform", 0.5), method="magnitude", nm="2-4"), "N:M pattern"),
             # a 70% plan with 2:4 (which removes 50%) contradicts itself, as on the command line
             (dict(plan=plan(stats, "uniform", 0.7), method="magnitude", nm="2:4"),
              r"sparsity = 0.7 is not allowed; N:M 2:4 keeps 2 of 4 weights, i.e. sparsity 0.5"),
             (dict(plan=p.ratios, method="magnitude"), "plan = list"),
             (dict(plan=plan(None, "uniform", 0.5, model=tiny_llama(n_layers=2)[0]), method="magnitude"),
              "2 block ratios but the model has 4")]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            prune(model, progress=False, **kwargs)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in dense.items())   # nothing was pruned


def _message(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def test_api_and_configurations_share_one_check_per_value():
    """A bad method, allocation, group or window length gets the same sentence from the in-memory API
    as from an ExperimentConfig (the CLI's path): both call one function of dlp_lib.validation."""
    from dlp_lib.experiment import ExperimentConfig
    from dlp_lib.validation import check_context_length
    model, _ = tiny_llama()
    stats = dense_statistics(model, calib=_ids(), progress=False)
    p = plan(stats, "uniform", 0.5)
    assert _message(lambda: prune(model, p, method="obs", progress=False)) == \
        _message(lambda: ExperimentConfig(method="obs")) == \
        "method = 'obs' is not allowed; allowed: magnitude, wanda, sparsegpt"
    assert _message(lambda: plan(stats, "dlpp", 0.5)) == _message(lambda: ExperimentConfig(allocation="dlpp"))
    assert _message(lambda: prune(model, p, method="magnitude", group="per_row", progress=False)) == \
        _message(lambda: ExperimentConfig(group="per_row")) == \
        "group = 'per_row' is not allowed; allowed: per_output, per_layer (or None: the method's default)"
    assert _message(lambda: dense_statistics(model, calib=_ids(n=1, t=5000))) == \
        _message(lambda: check_context_length("seqlen", 5000, 4096, "the model")) == \
        "seqlen = 5000 exceeds the model's maximum of 4096 positions; use seqlen <= 4096"


def test_perplexity_equals_hand_computation_and_limits():
    model, tok = tiny_llama()
    windows = _ids(n=3, t=24)
    with torch.no_grad():
        nll, count = 0.0, 0
        for w in windows:
            logp = torch.log_softmax(model(w[None]).logits[0, :-1].double(), dim=-1)
            nll -= float(logp.gather(1, w[1:, None]).sum())
            count += len(w) - 1
    assert perplexity(model, text=windows, progress=False) == pytest.approx(math.exp(nll / count), rel=1e-5)
    first = perplexity(model, text=windows[:1], progress=False)
    assert perplexity(model, text=windows, neval=1, progress=False) == pytest.approx(first)
    with pytest.raises(ValueError, match="seqlen = 16 but text has 24 columns"):
        perplexity(model, text=windows, seqlen=16)
    with pytest.raises(ValueError, match="neval = 0"):
        perplexity(model, tok, text="brown", neval=0)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        perplexity(model, text="brown")
