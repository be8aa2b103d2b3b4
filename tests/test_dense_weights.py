"""The dense weights a Lab restores before each pruning, from memory or from disk."""
import pytest


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_dense_weights_restore_exactly(tmp_cache, mode):
    from dlp_lib.experiment import ExperimentConfig, Lab
    from dlp_lib.fingerprint import model_fingerprint
    lab = Lab("tiny-llama", progress=False, dense_copy=mode)
    assert lab._dense.mode == mode and (lab._dense._memory is None) == (mode == "disk")
    before = model_fingerprint(lab.model)
    lab.ensure(ExperimentConfig.from_profile("smoke", method="magnitude", allocation="uniform", sparsity=0.6))
    assert model_fingerprint(lab.model) != before
    lab.ensure(None)
    assert model_fingerprint(lab.model) == before == lab.fingerprint


def test_disk_restore_reads_into_the_models_own_tensors_and_refuses_a_foreign_or_truncated_file(tmp_cache):
    import torch

    from dlp_lib.dense_weights import DenseWeights, _block_tensors
    from dlp_lib.fingerprint import model_fingerprint
    from dlp_lib.models import load_model
    model, _ = load_model("tiny-llama", dtype=torch.bfloat16)
    before = model_fingerprint(model)
    dense = DenseWeights(model, before, "disk")
    tensors = _block_tensors(model)
    pointers = {k: t.data_ptr() for k, t in tensors.items()}
    with torch.no_grad():
        for t in tensors.values():
            t.mul_(0)
    dense.restore(model)
    assert model_fingerprint(model) == before  # bf16 bytes back exactly
    assert {k: t.data_ptr() for k, t in _block_tensors(model).items()} == pointers  # filled in place
    # a model of another shape or dtype gets a clear error, not silently wrong weights
    other, _ = load_model("tiny-llama", dtype=torch.float32)
    with pytest.raises(ValueError, match="BF16"):
        dense.restore(other)
    data = dense._path.read_bytes()
    dense._path.write_bytes(data[:-100])
    with pytest.raises(ValueError, match="truncated"):
        dense.restore(model)
