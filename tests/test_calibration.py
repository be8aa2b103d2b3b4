import torch

from dlp_lib.calibration import CalibrationEngine, replay_logits
from dlp_lib.models import decoder_blocks, linear_sublayers


def test_replay_equals_full_forward(tiny):
    model, _ = tiny
    ids = torch.randint(0, 250, (3, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids).logits
    torch.testing.assert_close(replay_logits(model, ids), full, rtol=0, atol=1e-5)


def test_wanda_norms_match_brute_force(tiny):
    model, _ = tiny
    ids = torch.randint(0, 250, (4, 32), generator=torch.Generator().manual_seed(2))
    captured = {}
    target = linear_sublayers(decoder_blocks(model)[1])["mlp.down_proj"]
    h = target.register_forward_hook(lambda m, a, o: captured.setdefault("x", []).append(a[0].detach().clone()))
    with torch.no_grad():
        model(ids)
    h.remove()
    X = torch.cat(captured["x"]).reshape(-1, target.in_features)  # (N*T, C_in)
    expected = (X.pow(2).sum(0) / ids.shape[0]).sqrt()  # mean over sequences of per-sequence sums
    got = {}

    def visit(v):
        if v.index == 1:
            got["norms"] = v.stats["wanda"]["mlp.down_proj"]
            got["H"] = v.stats["hessian"]["mlp.down_proj"]

    CalibrationEngine(model, ids, batch_size=2, progress=False).run(visit, statistics=("wanda", "hessian"))
    torch.testing.assert_close(got["norms"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["H"], 2.0 / X.shape[0] * X.T @ X, rtol=1e-4, atol=1e-6)


def test_sequential_mode_feeds_pruned_outputs(tiny):
    """Block 1's statistics in the pruning pass come from the PRUNED block 0."""
    from dlp_lib.models import load_model
    model, _ = load_model("tiny-llama")
    ids = torch.randint(0, 250, (2, 32), generator=torch.Generator().manual_seed(3))
    seen = {}

    def visit(v):
        seen.setdefault(v.index, v.stats["wanda"]["self_attn.q_proj"].clone())
        if v.index == 0:
            for layer in v.sublayers.values():
                layer.weight.data[:, ::2] = 0
        return True

    CalibrationEngine(model, ids, progress=False).run(visit, statistics=("wanda",), sequential=True)
    # reference: a full forward of the model whose block 0 is pruned the same way
    captured = {}
    q1 = linear_sublayers(decoder_blocks(model)[1])["self_attn.q_proj"]
    h = q1.register_forward_hook(lambda m, a, o: captured.setdefault("x", []).append(a[0]))
    with torch.no_grad():
        model(ids)
    h.remove()
    X = torch.cat(captured["x"]).reshape(-1, q1.in_features)
    torch.testing.assert_close(seen[1], (X.pow(2).sum(0) / 2).sqrt(), rtol=1e-5, atol=1e-6)
