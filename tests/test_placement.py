"""Evaluation spread over several devices: the same numbers as on one device, and the Lab's model
is back on the CPU, hook-free, afterwards. Without GPUs the second device is accelerate's disk
offload (weights on the meta device, reloaded per forward from memory-mapped files)."""
import pytest
import torch

from dlp_lib import experiment
from dlp_lib.experiment import ExperimentConfig, Lab
from dlp_lib.models import load_model
from dlp_lib.placement import block_device_map, dispatched, parse_devices


@pytest.fixture(autouse=True)
def _fresh_labs(monkeypatch):
    monkeypatch.setattr(experiment, "_LABS", {})


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-gemma3"])
def test_dispatched_forward_equals_the_plain_forward_and_leaves_no_hooks(name):
    model, _ = load_model(name)
    x = torch.randint(0, 200, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x).logits
    names_before = {n for n, _ in model.named_parameters()}
    with dispatched(model, block_device_map(model, ["cpu", "disk"])):
        with torch.no_grad():
            got = model(x).logits
        assert any(p.device.type == "meta" for p in model.parameters())  # really offloaded
    assert torch.equal(ref, got)
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert not any(hasattr(m, "_hf_hook") for m in model.modules())
    assert {n for n, _ in model.named_parameters()} == names_before
    with torch.no_grad():
        assert torch.equal(model(x).logits, ref)


def test_tied_embeddings_are_tied_again_after_a_disk_dispatch():
    from dlp_lib.placement import _has_tied_parameters
    untied, _ = load_model("tiny-llama")
    assert not untied.config.tie_word_embeddings and not _has_tied_parameters(untied)
    model, _ = load_model("tiny-gpt2")
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert _has_tied_parameters(model)
    with dispatched(model, block_device_map(model, ["cpu", "disk"])):
        pass
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_block_map_splits_blocks_contiguously_embeddings_first_head_last():
    model, _ = load_model("tiny-llama")          # 4 blocks
    m = block_device_map(model, ["cuda:0", "cuda:1", "cuda:2"])
    assert [m[f"model.layers.{i}"] for i in range(4)] == ["cuda:0", "cuda:0", "cuda:1", "cuda:2"]
    assert m["model.embed_tokens"] == "cuda:0" and m["model.norm"] == "cuda:2" and m["lm_head"] == "cuda:2"
    with pytest.raises(ValueError, match="cannot be 'disk'"):
        block_device_map(model, ["disk", "cpu"])


@pytest.mark.parametrize("spec, match", [("cuda:0", "at least two"), ("cuda:0,cuda:1", "does not exist"),
                                         ("auto", "visible")])
def test_bad_device_lists_are_refused(spec, match):
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has several GPUs")
    with pytest.raises(ValueError, match=match):
        parse_devices(spec)


def test_lab_perplexity_over_two_devices_equals_one_device_and_pruning_still_works(tmp_cache):
    cfg = ExperimentConfig(model="tiny-llama", nsamples=4, seqlen=64, neval=4, method="wanda", allocation="dlp",
                           sparsity=0.6)
    one = Lab("tiny-llama", progress=False, use_cache=False).run(cfg)
    spread = Lab("tiny-llama", progress=False, use_cache=False, eval_devices="cpu,disk")
    two = spread.run(cfg)
    assert two["perplexity"] == one["perplexity"]
    assert two["achieved_sparsity"]["overall"] == one["achieved_sparsity"]["overall"]
    again = spread.run(cfg.replace(allocation="uniform"))     # restore + prune after a dispatched evaluation
    assert all(p.device.type == "cpu" for p in spread.model.parameters())
    ref = Lab("tiny-llama", progress=False, use_cache=False).run(cfg.replace(allocation="uniform"))
    assert again["perplexity"] == ref["perplexity"]


def test_cli_refuses_a_bad_eval_device_list_before_loading(capsys, monkeypatch):
    from dlp_lib import cli

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before the bad input was reported")
    monkeypatch.setattr(experiment, "load_model", forbidden)
    assert cli.main(["prune", "--profile", "smoke", "--eval-devices", "cuda:0"]) == 2
    assert "at least two devices" in capsys.readouterr().err
