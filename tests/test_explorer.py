"""RID explorer: pure state/figure functions against independent formulas, and the widget layer headless."""
import warnings

import numpy as np
import pytest

from dlp_lib.block_stats import DenseStatistics
from dlp_lib.explorer import explorer_figure, explorer_grid, explorer_state, explorer_table

S = [2.0, 3.0, 3.5, 5.0, 4.0]           # unimportance per block (the median Wanda score)
D = [9.0, 7.0, 4.0, 3.0, 1.0]           # OWL outlier ratios (%) at M=5
BI = [0.30, 0.10, 0.08, 0.05, 0.12]     # block influence 1 - E[cos(x_in, x_out)]


def _stats():
    return DenseStatistics(blocks=[{"median": s, "mean": 2 * s, "outlier_ratio": {"5.0": d, "7.0": d / 2}}
                                   for s, d in zip(S, D)], config={"calib": "synthetic"}, block_influence=BI)


def test_state_matches_independent_formulas():
    p, a, lam = 0.6, 0.1, 0.08
    state = explorer_state(_stats(), p, a, ["uniform", "owl", "dlp"], lamda=lam, owl_m=5)
    s = np.array(S)
    assert state["rid"] == pytest.approx(1 - s / s.sum())               # Eq. 6 over all blocks
    n = (s - s.min()) / (s.max() - s.min())
    assert state["ratios"]["dlp"].to_numpy() == pytest.approx(p + 2 * a * (n - n.mean()))
    d = np.array(D)
    dd = (d - d.min()) / (d.max() - d.min()) * 2 * lam
    assert state["ratios"]["owl"].to_numpy() == pytest.approx(p - (dd - dd.mean()))
    assert state["ratios"]["uniform"].to_numpy() == pytest.approx(np.full(5, p))
    assert state["ratios"].mean().to_numpy() == pytest.approx([p] * 3)
    assert state["alpha"] == a and not state["alpha_from_paper"]


def test_default_allocations_are_the_instant_ones():
    from dlp_lib.allocation import get_allocator
    from dlp_lib.explorer import instant_allocations
    names = instant_allocations()
    assert {"uniform", "owl", "dlp"} <= set(names)
    assert not any(get_allocator(n).needs_weights for n in names)
    assert tuple(explorer_state(_stats(), 0.7, 0.1)["ratios"].columns) == names     # no model needed


def test_state_is_pure_and_sliders_move_only_their_allocator():
    st = _stats()
    a = explorer_state(st, 0.7, 0.05, ["uniform", "owl", "dlp"])
    b = explorer_state(st, 0.7, 0.15, ["uniform", "owl", "dlp"])
    c = explorer_state(st, 0.7, 0.05, ["uniform", "owl", "dlp"])
    assert a["ratios"].equals(c["ratios"])
    assert a["ratios"]["owl"].equals(b["ratios"]["owl"]) and a["ratios"]["uniform"].equals(b["ratios"]["uniform"])
    assert np.ptp(b["ratios"]["dlp"]) == pytest.approx(3 * np.ptp(a["ratios"]["dlp"]))   # span 2 * alpha
    m = explorer_state(st, 0.7, 0.05, ["owl"], owl_m=7, lamda=0.2)
    assert not np.allclose(m["ratios"]["owl"], a["ratios"]["owl"])
    mean = explorer_state(st, 0.7, 0.05, ["dlp"], statistic="mean")
    assert mean["rid"] == pytest.approx(a["rid"])                       # mean = 2 * median here: same RID


def test_state_paper_alpha_statistic_and_clamp_warning():
    state = explorer_state(_stats(), 0.5, None, ["dlp"])
    assert state["alpha"] == 0.04 and state["alpha_from_paper"]        # Table 19 at 50%
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # clamps are recorded, not raised
        clamped = explorer_state(_stats(), 0.05, 0.2, ["dlp"])
    assert clamped["warnings"]["dlp"] and min(clamped["ratios"]["dlp"]) >= 0.0
    assert clamped["ratios"]["dlp"].mean() == pytest.approx(0.05)
    table = explorer_table(state)
    assert list(table.columns) == ["S (median)", "RID", "dlp ratio"] and len(table) == 5


@pytest.mark.parametrize("kwargs,match", [
    (dict(allocations=[]), "non-empty"),
    (dict(allocations="dlp"), "non-empty"),
    (dict(allocations=["dlp", "nope"]), "allocation = 'nope' is not allowed; allowed: uniform, dlp"),
    (dict(method="obs"), "method = 'obs' is not allowed; allowed: magnitude, wanda, sparsegpt"),
    (dict(allocations=["dlp", "dlp"]), "twice"),
    (dict(statistic="mode"), "statistic = 'mode'"),
    (dict(allocations=["owl"], owl_m=5.5), "owl_m = 5.5"),
    (dict(allocations=["lamp"]), "needs the model"),
    (dict(alpha=0.7), "alpha must be in"),
])
def test_state_rejects_bad_input(kwargs, match):
    kw = {"sparsity": 0.7, "alpha": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        explorer_state(_stats(), **kw)


def _message(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def test_explorer_api_and_cli_word_a_bad_allocation_and_method_alike(capsys, fresh_labs, no_model_load):
    """The three front doors check a name with one function of dlp_lib.validation, so a bad value gets
    one sentence: the explorer (its state and its widget), api.plan / api.prune, and the CLI (prune,
    compress and finetune pass --allocation to the configuration's check: one line, exit 2, before
    the model loads)."""
    from dlp_lib import api, cli
    from dlp_lib.allocation import allocator_names
    from dlp_lib.explorer import RIDExplorer
    from dlp_lib.experiment import ExperimentConfig
    sentence = f"allocation = 'dlpp' is not allowed; allowed: {', '.join(allocator_names())}"
    assert _message(lambda: explorer_state(_stats(), 0.7, 0.1, ["dlp", "dlpp"])) == sentence
    assert _message(lambda: RIDExplorer(ExperimentConfig.from_profile("smoke"), allocations=["dlpp"])) == sentence
    assert _message(lambda: api.plan(_stats(), "dlpp", 0.7)) == sentence
    assert _message(lambda: ExperimentConfig.from_profile("smoke", allocation="dlpp")) == sentence
    for command in (["prune", "--profile", "smoke", "--quiet"],
                    ["compress", "--profile", "smoke", "--quiet", "--technique", "svd", "--reduction", "0.3"],
                    ["finetune", "--profile", "smoke"]):
        assert cli.main([*command, "--allocation", "dlpp"]) == 2, command
        assert capsys.readouterr().err == f"error: {sentence}\n", command
    assert _message(lambda: explorer_state(_stats(), 0.7, 0.1, method="obs")) == \
        _message(lambda: api.plan(_stats(), "dlp", 0.7, method="obs")) == \
        "method = 'obs' is not allowed; allowed: magnitude, wanda, sparsegpt"


@pytest.mark.parametrize("field,bad", [("statistic", "mode"), ("statistic", None), ("owl_m", 5.5), ("owl_m", "5"),
                                       ("owl_m", True)])
def test_explorer_words_a_bad_statistic_and_owl_m_as_validation_does(field, bad):
    """The explorer, api.plan and the configuration (CLI) say validation's sentence for the same bad
    value, not a wording of their own."""
    from dlp_lib import api, validation
    from dlp_lib.experiment import ExperimentConfig
    check = {"statistic": validation.check_statistic, "owl_m": validation.check_owl_m}[field]
    sentence = _message(lambda: check(bad))
    assert sentence.startswith(f"{field} = {bad!r} is not allowed")
    assert _message(lambda: explorer_state(_stats(), 0.7, 0.1, ["dlp", "owl"], **{field: bad})) == sentence
    allocation = "dlp" if field == "statistic" else "owl"
    assert _message(lambda: api.plan(_stats(), allocation, 0.7, **{field: bad})) == sentence
    smoke = ExperimentConfig.from_profile("smoke", allocation=allocation)
    assert _message(lambda: smoke.replace(**{field: bad})) == sentence


def test_the_explorer_ignores_owl_m_without_owl():
    """OWL's M is checked only when OWL is drawn; the RID's statistic always."""
    state = explorer_state(_stats(), 0.7, 0.1, ["dlp"], owl_m=5.5)
    assert list(state["ratios"].columns) == ["dlp"]


def test_figure_draws_the_state():
    import matplotlib.pyplot as plt
    state = explorer_state(_stats(), 0.6, 0.1, ["uniform", "owl", "dlp"])
    fig = explorer_figure(state)
    ax, ax2 = fig.axes
    assert [r.get_height() for r in ax.patches] == pytest.approx(state["rid"])
    lines = {ln.get_label(): ln.get_ydata() for ln in ax2.get_lines()}
    for name in ("uniform", "owl", "dlp"):
        assert np.asarray(lines[name]) == pytest.approx(state["ratios"][name].to_numpy())
    assert "60%" in ax.get_title() and "alpha=0.1" in ax.get_title()
    plt.close(fig)
    grid, states = explorer_grid(_stats(), [dict(sparsity=0.5, alpha=0.04), dict(sparsity=0.7, alpha=0.15),
                                            dict(sparsity=0.7, alpha=0.02)], ncols=2)
    assert len(states) == 3 and sum(a.get_visible() for a in grid.axes) == 3 * 2   # 3 panels, twin axes each
    plt.close(grid)


def test_widget_layer_replans_and_prunes_headless():
    pytest.importorskip("ipywidgets")
    import torch
    from dlp_lib.experiment import ExperimentConfig
    from dlp_lib.explorer import RIDExplorer
    torch.set_num_threads(1)
    cfg = ExperimentConfig.from_profile("smoke", allocation="dlp", sparsity=0.6)
    x = RIDExplorer(cfg, allocations=("uniform", "owl", "dlp", "er"), progress=False)
    assert x.stats is not None and "error" not in x.status.value, x.status.value
    before = x.state["ratios"].copy()
    x.alpha_paper.value = False
    x.alpha.value = 0.2
    assert x.state["alpha"] == pytest.approx(0.2)
    assert not np.allclose(before["dlp"], x.state["ratios"]["dlp"])
    assert np.allclose(before["er"], x.state["ratios"]["er"])          # weight-based plan reused, unchanged
    x.sparsity.value = 0.5
    assert x.state["sparsity"] == pytest.approx(0.5)
    assert x.state["ratios"].mean().to_numpy() == pytest.approx([0.5] * 4, abs=1e-6)
    result = x.prune_and_evaluate()
    assert result is not None, x.status.value
    assert result["achieved_sparsity"]["overall"] == pytest.approx(0.5, abs=0.03)
    assert result["config"]["alpha"] == pytest.approx(0.2) and "achieved" in x.status.value
    # the random tiny model's statistic falls with depth: DLP's against-depth warning reaches the status line
    assert result["warnings"] and "warning: DLP&#x27;s plan runs against depth" in x.status.value, x.status.value
    x.alpha_paper.value = True
    x.sparsity.value = 0.6
    assert x.alpha.disabled and x.alpha.value == pytest.approx(0.10) and x.state["alpha"] == pytest.approx(0.10)
    assert x.state["alpha_from_paper"]                                  # Table 19 at 60%
    x.calib.value = "file"
    x.calib_path.value = ""
    x.load()
    assert "needs a .txt path" in x.status.value                     # shown, not raised


def test_static_settings_verdict():
    from dlp_studies.rid_explorer import STATIC_SETTINGS, explorer_verdict, settings_table
    states = [explorer_state(_stats(), **s) for s in STATIC_SETTINGS]
    t = settings_table(states)
    assert t["DLP mean"].to_numpy() == pytest.approx(t["p"].to_numpy())
    exact = t[~t["DLP clamped"]]
    assert exact["DLP span"].to_numpy() == pytest.approx(exact["2 alpha (Algorithm 1)"].to_numpy())
    assert t["Spearman(depth, DLP)"].to_numpy() == pytest.approx([0.9] * 4)      # ranks of S: 1 2 3 5 4
    assert t["Spearman(depth, OWL)"].to_numpy() == pytest.approx([1.0] * 4)      # D falls with depth
    v = explorer_verdict(states)
    assert v["headline"].startswith("DLP prunes deeper blocks harder (Figure 3, static settings): holds (4 of 4")
    assert "rank blocks alike" in v["headline"] and len(v["headline"]) <= 200
    words = {r["claim"]: (r["ours"], r["verdict"]) for r in v["rows"]}
    assert words["OWL's sparsity rises with depth (Figure 3)"] == ("4 of 4 settings", "holds")
    assert "mean = p exactly; span = 2 alpha exactly" in words["Budget identities (Algorithm 1)"][0]
    assert v["text"].startswith("Verdict: ") and "by 2 alpha vs 2 lambda" in v["text"]
    flipped = DenseStatistics(blocks=[{"median": s, "outlier_ratio": {"5.0": d, "7.0": d}}
                                      for s, d in zip(S[::-1], D[::-1])], block_influence=BI[::-1])
    v2 = explorer_verdict([explorer_state(flipped, **s) for s in STATIC_SETTINGS], "smoke")
    assert ": does not reproduce (0 of 4" in v2["headline"] and "random tiny model" in v2["text"]
    with pytest.raises(ValueError, match="include both"):
        explorer_verdict([explorer_state(_stats(), 0.7, 0.1, ["dlp"])])


@pytest.fixture
def ipython_shell():
    """An IPython shell as in a kernel: ipywidgets' Output context then prints and swallows exceptions
    (outside IPython it lets them through, which hid the vanishing errors from the headless tests)."""
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


def _smoke_explorer(**kw):
    pytest.importorskip("ipywidgets")
    import torch
    from dlp_lib.experiment import ExperimentConfig
    from dlp_lib.explorer import RIDExplorer
    torch.set_num_threads(1)
    return RIDExplorer(ExperimentConfig.from_profile("smoke", allocation="dlp", sparsity=0.6), progress=False, **kw)


def test_widget_errors_reach_the_status_line_and_buttons_work_again(ipython_shell, tmp_path):
    x = _smoke_explorer()
    good = x.state["ratios"].copy()
    missing = str(tmp_path / "no-such-model")
    x.model.value = missing
    x.load()
    assert "dlp-error" in x.status.value and "no such file or directory" in x.status.value, x.status.value
    assert missing in x.status.value and "local variable" not in x.status.value
    assert not any(b.disabled for b in x.job_buttons)
    assert x.prune_and_evaluate() is None                               # no action left hanging
    assert "dlp-error" in x.status.value and "no such file or directory" in x.status.value, x.status.value
    assert not any(b.disabled for b in x.job_buttons)
    x.compare_model.value = missing
    x.add_model()
    assert "dlp-error" in x.status.value and list(x.compared) == ["tiny-llama"]
    x.model.value = "tiny-llama"                                        # and everything works again
    x.load()
    assert "error" not in x.status.value and x.state["ratios"].equals(good)
    assert x.prune_and_evaluate() is not None and "achieved" in x.status.value


def test_widget_job_is_busy_with_job_buttons_disabled(ipython_shell):
    x = _smoke_explorer()
    seen = {}
    lab = x._lab_now

    class WatchedLab:
        def dense_statistics(self, cfg):
            seen["status"] = x.status.value
            seen["disabled"] = [b.disabled for b in x.job_buttons]
            return lab.dense_statistics(cfg)

    x._lab = lambda cfg: WatchedLab()
    x.compare_model.value = "tiny-llama"
    x.add_model()
    assert "busy: dense pass on tiny-llama" in seen["status"] and all(seen["disabled"])
    assert not any(b.disabled for b in x.job_buttons) and "busy" not in x.status.value
    assert x.last_job_seconds is not None and x.last_job_seconds >= 0


def _falling_stats():
    return DenseStatistics(blocks=[{"median": s, "outlier_ratio": {"5.0": d, "7.0": d}}
                                   for s, d in zip([8.0, 6.0, 6.5, 3.0], [1.0, 2.0, 4.0, 3.0])])


def test_comparison_state_against_independent_formulas():
    from dlp_lib.explorer import comparison_state
    state = comparison_state({"rising": _stats(), "falling": _falling_stats()}, 0.7, 0.1, lamda=0.08, owl_m=5)
    assert state["models"] == ["rising", "falling"]
    rising, falling = state["curves"]["rising"], state["curves"]["falling"]
    assert rising["depth"].tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert falling["depth"].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1.0])
    s = np.array(S)
    assert rising["S normalised"].to_numpy() == pytest.approx((s - 2.0) / 3.0)
    n = (s - s.min()) / np.ptp(s)
    assert rising["dlp"].to_numpy() == pytest.approx(0.7 + 2 * 0.1 * (n - n.mean()))
    f = np.array([8.0, 6.0, 6.5, 3.0])
    nf = (f - f.min()) / np.ptp(f)
    assert falling["dlp"].to_numpy() == pytest.approx(0.7 + 2 * 0.1 * (nf - nf.mean()))
    t = state["table"]
    assert t.loc["rising", "Spearman(depth, S)"] == pytest.approx(0.9)        # ranks 1 2 3 5 4
    assert t.loc["falling", "Spearman(depth, S)"] == pytest.approx(-0.8)      # ranks 4 2 3 1
    assert t.loc["falling", "Spearman(depth, DLP)"] == pytest.approx(-0.8)    # DLP follows S
    assert t.loc["rising", "Spearman(depth, OWL)"] == pytest.approx(1.0)      # D falls with depth
    assert t["blocks"].tolist() == [5, 4]
    with pytest.raises(ValueError, match="add at least one model"):
        comparison_state({}, 0.7)


def test_comparison_figure_draws_every_model():
    import matplotlib.pyplot as plt
    from dlp_lib.explorer import comparison_figure, comparison_state
    state = comparison_state({"rising": _stats(), "falling": _falling_stats()}, 0.6, None)
    fig = comparison_figure(state)
    ax_s, ax_r = fig.axes
    lines = {ln.get_label(): ln for ln in ax_s.get_lines()}
    assert lines["falling (rho -0.80)"].get_ydata() == pytest.approx(state["curves"]["falling"]["S normalised"])
    ratios = {ln.get_label(): np.asarray(ln.get_ydata()) for ln in ax_r.get_lines()}
    for name in ("rising", "falling"):
        assert ratios[f"{name} DLP"] == pytest.approx(state["curves"][name]["dlp"].to_numpy())
        assert ratios[f"{name} OWL"] == pytest.approx(state["curves"][name]["owl"].to_numpy())
    assert "Table 19" in ax_r.get_title()
    plt.close(fig)


def test_widget_compares_models_side_by_side():
    x = _smoke_explorer()
    assert list(x.compared) == ["tiny-llama"]
    x.compare_model.value = "tiny-qwen2"
    x.add_model()
    assert "error" not in x.status.value, x.status.value
    assert list(x.comparison["table"].index) == ["tiny-llama", "tiny-qwen2"]
    x.sparsity.value = 0.5                                              # sliders re-plan every model
    assert x.comparison["curves"]["tiny-qwen2"]["dlp"].mean() == pytest.approx(0.5)
    x.compare_list.value = ("tiny-llama",)
    x.remove_models()
    assert list(x.comparison["table"].index) == ["tiny-qwen2"] and x.compare_list.options == ("tiny-qwen2",)


def test_explorer_notebook_working_copy(tmp_path):
    import json
    from dlp_lib.explorer import NOTEBOOK, explorer_notebook
    copy = explorer_notebook(tmp_path / "explore")
    assert copy == tmp_path / "explore" / NOTEBOOK.name and copy.resolve() != NOTEBOOK
    nb, source = json.loads(copy.read_text()), json.loads(NOTEBOOK.read_text())
    params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert "".join(params[0]["source"]).splitlines()[0] == "profile = 'default'"
    assert all(c.get("outputs", []) == [] for c in nb["cells"])
    rest = [c["source"] for c in nb["cells"] if c is not params[0]]
    assert rest == [c["source"] for c in source["cells"] if "parameters" not in c["metadata"].get("tags", [])]
    copy.write_text(copy.read_text().replace("sparsity = 0.7", "sparsity = 0.5"))   # the person's edit is kept
    assert "sparsity = 0.5" in explorer_notebook(tmp_path / "explore").read_text()
    assert explorer_notebook(tmp_path / "explore", "smoke").name == "14_rid_explorer_smoke.ipynb"
    with pytest.raises(ValueError, match="profile = 'nope' is not allowed"):
        explorer_notebook(tmp_path / "explore", "nope")


def test_explorer_prunes_with_auto_and_names_the_pick():
    pytest.importorskip("ipywidgets")
    import torch
    from dlp_lib.experiment import ExperimentConfig
    from dlp_lib.explorer import RIDExplorer
    torch.set_num_threads(1)
    x = RIDExplorer(ExperimentConfig.from_profile("smoke", sparsity=0.6), allocations=("uniform", "dlp"),
                    progress=False)
    x.prune_with.value = "auto"
    result = x.prune_and_evaluate()
    assert result is not None, x.status.value
    pick = result["allocation_selection"]["pick"]
    assert f"auto: {pick['allocation']}" in x.status.value and x.results[-1]["allocation"] == f"auto: {pick['allocation']}"
    assert x.results[-1]["alpha"] == pick["alpha"]
