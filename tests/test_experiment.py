"""The experiment configuration and the Lab: ensure() as the one way to change the model, defaults
resolved from the method, the evaluation dtype named in the keys, results shared between text sets."""
import pytest

from dlp_lib.experiment import ExperimentConfig, Lab
from dlp_lib.validation import resolve_eval_dtype


def test_ensure_is_the_one_way_to_prune(tmp_cache):
    from dlp_lib.evaluation import achieved_sparsity
    from dlp_lib.experiment import ExperimentConfig, Lab
    lab = Lab("tiny-llama", progress=False)
    cfg = ExperimentConfig.from_profile("smoke", allocation="uniform", sparsity=0.5)
    lab.run(cfg)
    lab.ensure(None)
    assert lab.pruned_config is None and achieved_sparsity(lab.model)["overall"] < 0.01
    lab.run(cfg)  # cached now: the model is not pruned by a cache hit ...
    plan = lab.ensure(cfg)  # ... but ensure makes it so
    assert lab.pruned_config == cfg and achieved_sparsity(lab.model)["overall"] == pytest.approx(0.5, abs=0.01)
    assert lab.ensure(cfg.replace(eval=("sotu",))) is plan  # same pruning key: nothing redone
    with pytest.raises(AttributeError):
        lab.model = None


def test_magnitude_defaults_to_one_threshold_per_matrix():
    from dlp_lib.experiment import ExperimentConfig
    assert ExperimentConfig(model="tiny-llama", method="magnitude").resolved_group() == "per_layer"
    assert ExperimentConfig(model="tiny-llama", method="wanda").resolved_group() == "per_output"
    cfg = ExperimentConfig(model="tiny-llama", method="wanda").replace(method="magnitude")
    assert cfg.resolved_group() == "per_layer"
    assert ExperimentConfig(model="tiny-llama", method="magnitude", group="per_output").resolved_group() == "per_output"


@pytest.mark.parametrize("native", [True, False])
def test_eval_dtype_resolution(monkeypatch, native):
    monkeypatch.setattr("dlp_lib.validation.cpu_supports_bf16", lambda cpuinfo=None: native)
    assert resolve_eval_dtype("auto", "float32", "cpu") == ("bfloat16" if native else "float32")
    assert resolve_eval_dtype("auto", "float16", "cuda") == "float16"
    assert resolve_eval_dtype("auto", "float32", "cuda") == "float32"  # never a silent change on a GPU
    assert resolve_eval_dtype("same", "bfloat16", "cpu") == "bfloat16"
    cfg = ExperimentConfig(model="tiny-llama", eval_dtype="auto")
    assert cfg.eval_dtype == ("bfloat16" if native else "float32")  # keys name what ran, never "auto"
    assert cfg.key("eval", "fp")["eval_dtype"] == cfg.eval_dtype
    assert "eval_dtype" not in cfg.key("prune", "fp")  # evaluation numerics never change the masks


def test_bad_eval_dtype_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"eval_dtype = 'half'.*same, auto"):
        ExperimentConfig(model="tiny-llama", eval_dtype="half")
    with pytest.raises(ValueError, match=r"eval_dtype = 'float32'.*needs float32 weights"):
        ExperimentConfig(model="tiny-llama", dtype="bfloat16", eval_dtype="float32")


def test_per_text_perplexities_are_shared_between_text_sets(tmp_cache, tmp_path, monkeypatch):
    log = tmp_path / "cache.log"
    monkeypatch.setenv("DLP_CACHE_LOG", str(log))
    cfg = ExperimentConfig.from_profile("smoke", sparsity=0.5)
    lab = Lab("tiny-llama", progress=False)
    one = lab.run(cfg)
    both = lab.run(cfg.replace(eval=("brown", "sotu")))
    assert both["perplexity"]["pruned"]["brown"] == one["perplexity"]["pruned"]["brown"]
    assert both["perplexity"]["dense"]["brown"] == one["perplexity"]["dense"]["brown"]
    # a fresh evaluation of sotu gives what was cached
    lab.ensure(cfg)
    fresh = lab.perplexities(("sotu",), cfg.seqlen, cfg.neval, cfg.eval_dtype)["sotu"]
    assert fresh == both["perplexity"]["pruned"]["sotu"]
    # the model modified outside the Lab: no cached perplexity may describe it
    lab.mark_modified("test")
    with pytest.raises(RuntimeError, match="modified outside the Lab"):
        lab._state_perplexities(cfg)


def test_every_stage_is_keyed_by_the_code_that_computed_it(tmp_cache):
    """Each cached kind carries the code versions of exactly the stages that computed it: pass 1 the
    data and the statistics (not the allocators), a pruning up to prune, a result up to eval."""
    from dlp_lib.cache import entries, read_entry
    lab = Lab("tiny-llama", progress=False)
    lab.run(ExperimentConfig.from_profile("smoke", allocation="dlp", sparsity=0.5))
    stages = {}
    for path in entries(tmp_cache):
        entry = read_entry(path)
        stages.setdefault(entry["kind"], set()).add(frozenset(entry["config"]["code"]))
    assert stages["dense_statistics"] == {frozenset(("data", "statistics"))}
    assert stages["pruned_weights"] == {frozenset(("data", "statistics", "plan", "prune"))}
    assert stages["results"] == {frozenset(("data", "statistics", "plan", "prune", "eval"))}
    assert stages["perplexity"] == {frozenset(("eval",))}
