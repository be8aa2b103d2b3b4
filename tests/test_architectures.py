"""The engine on every decoder family transformers ships that the project claims: tiny random models.

For each family: block-by-block replay equals the model's forward; DLP + Wanda at 70% gives mean
ratio 0.7, exact per-row counts, and an achieved sparsity over all prunable block parameters within
1% of the target; the prunable share is what the model's Linear / Conv1D / expert weights imply
(counted here independently). Conv1D orientation, per-expert routed statistics and the refusals
(unknown 3-D weights, unreplayable models, non-decoder configs, missing paths) are checked too.
"""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlp_lib.architectures.discovery import routing_layers
from dlp_lib.architectures.tiny import FAMILIES, MOE_FAMILIES, VOCAB, tiny_family
from dlp_lib.block_stats import compute_dense_statistics
from dlp_lib.calibration import CalibrationEngine, check_replay, replay_logits
from dlp_lib.evaluation import achieved_sparsity
from dlp_lib.models import UnsupportedModelError, decoder_blocks, load_model, prunable_weights
from dlp_lib.allocation import build_plan
from dlp_lib.pruning import prune_model

_MODELS: dict = {}


def _model(family):
    if family not in _MODELS:
        _MODELS[family] = tiny_family(family)
    return copy.deepcopy(_MODELS[family])


def _ids(n=4, t=24, seed=0):
    return torch.randint(3, VOCAB, (n, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", FAMILIES)
def test_replay_equals_full_forward(family):
    model = _model(family)
    ids = _ids(3)
    with torch.no_grad():
        full = model(ids).logits
    torch.testing.assert_close(replay_logits(model, ids), full, rtol=0, atol=1e-5)
    assert len(decoder_blocks(model)) == model.config.num_hidden_layers


@pytest.mark.parametrize("family", ["qwen2", "gemma2", "gemma3"])
def test_mixed_layer_types_need_each_blocks_own_arguments(family):
    """Replaying every block with block 0's arguments (sliding-window mask, local rotary table)
    is wrong for a model that mixes attention types; the engine's per-block capture is right."""
    model = _model(family)
    ids = _ids(2, 32)
    engine = CalibrationEngine(model, ids, batch_size=2, progress=False)
    rec = engine.capture()
    h_own, h_first = rec.inputs[0], rec.inputs[0]
    with torch.no_grad():
        for i, block in enumerate(engine.blocks):
            h_own = engine._call(block, h_own, rec.calls[i][0], rec)
            h_own = h_own[0] if isinstance(h_own, tuple) else h_own
            h_first = engine._call(block, h_first, rec.calls[0][0], rec)
            h_first = h_first[0] if isinstance(h_first, tuple) else h_first
    assert float((h_own - h_first).abs().max()) > 1e-3
    check_replay(model, ids)


ROUTER_NAMES = ("gate", "shared_expert_gate")   # the routing layers' names in transformers' MoE blocks


def _qwen2_window(window):
    """A tiny Qwen2 alternating sliding (window `window`) and full attention layers."""
    import transformers as tf
    cfg = tf.Qwen2Config(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         use_sliding_window=True, sliding_window=window,
                         layer_types=["sliding_attention", "full_attention"] * 2)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    return tf.Qwen2ForCausalLM(cfg).eval()


@pytest.fixture
def every_block_gets_block_0s_arguments(monkeypatch):
    """A planted replay bug: every block replayed with block 0's mask and positions (a sliding
    layer's mask given to the full-attention layers)."""
    original = CalibrationEngine._call

    def mixed_up(self, block, x, call, rec):
        return original(self, block, x, rec.calls[0][0], rec)

    monkeypatch.setattr(CalibrationEngine, "_call", mixed_up)


def test_replay_check_is_longer_than_the_sliding_window_and_has_two_sequences():
    from dlp_lib.engine.replay import largest_sliding_window, replay_check_ids
    model = _qwen2_window(40)
    assert largest_sliding_window(model.config) == 40
    assert tuple(replay_check_ids(model).shape) == (2, 80)
    assert largest_sliding_window(_model("qwen3").config) is None          # full attention only
    assert replay_check_ids(_model("llama")).shape[1] == 16
    assert replay_check_ids(_qwen2_window(200)).shape[1] == 256            # capped by the context


def test_planted_sliding_window_mix_up_is_caught(every_block_gets_block_0s_arguments):
    """Window 40 > the old check's 12-16 tokens: the mix-up is invisible on 16 tokens, caught by the
    default check (2 x 80 tokens) and by the engine's guard on 96-token calibration windows."""
    model = _qwen2_window(40)
    check_replay(model, _ids(2, 16))                                        # what a short check sees: nothing
    with pytest.raises(UnsupportedModelError, match="replay differs"):
        check_replay(model)
    engine = CalibrationEngine(model, _ids(4, 96), batch_size=2, progress=False)
    with pytest.raises(UnsupportedModelError, match="replay differs"):
        engine._guard()


def _implied_prunable(block):
    """Independent count: weights of nn.Linear and Conv1D layers (routers and gates by name left
    out) and 3-D expert parameters."""
    from transformers.pytorch_utils import Conv1D
    n = 0
    for name, mod in block.named_modules():
        if isinstance(mod, (nn.Linear, Conv1D)) and name.rsplit(".", 1)[-1] not in ROUTER_NAMES:
            n += mod.weight.numel()
        n += sum(p.numel() for p in mod.parameters(recurse=False) if p.dim() == 3)
    return n


@pytest.mark.parametrize("family", FAMILIES)
def test_dlp_wanda_70_achieves_target(family):
    model = _model(family)
    ids = _ids()
    stats = compute_dense_statistics(model, ids, progress=False)
    plan = build_plan("dlp", 0.7, stats=stats)
    assert abs(sum(plan.ratios) / len(plan.ratios) - 0.7) < 1e-9
    assert len(set(round(r, 6) for r in plan.ratios)) > 1          # DLP did allocate non-uniformly
    prune_model(model, plan, "wanda", ids, progress=False)
    got = achieved_sparsity(model)
    blocks = decoder_blocks(model)
    for b, block in enumerate(blocks):
        for name, w in prunable_weights(block).items():
            cin = w.in_features
            rows_zero = (w.weight == 0).sum(1)                       # per output row
            assert torch.all(rows_zero == int(cin * plan.ratios[b])), (name, rows_zero[:4])
    assert abs(got["overall"] - 0.7) < 0.01
    total = sum(p.numel() for blk in blocks for p in blk.parameters())
    implied = sum(_implied_prunable(blk) for blk in blocks) / total
    assert got["prunable_share"] >= implied - 1e-12
    zeros = sum(int((p == 0).sum()) for blk in blocks for p in blk.parameters())
    assert got["overall_block_params"] == pytest.approx(zeros / total)
    assert got["overall_block_params"] == pytest.approx(got["overall"] * got["prunable_share"], abs=0.01)


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_routers_and_gates_are_never_pruned(family):
    """Every router / shared-expert gate weight is bit-identical after Wanda at 70%, and the reported
    sparsity is over the prunable weights only (zeros counted here over the non-router 2-D/3-D
    weights)."""
    model = _model(family)
    routers = {n: p.detach().clone() for n, p in model.named_parameters()
               if n.rsplit(".", 2)[-2] in ROUTER_NAMES and n.endswith(".weight")}
    assert len(routers) >= model.config.num_hidden_layers
    if family == "qwen2_moe":
        assert any("shared_expert_gate" in n for n in routers)
    ids = _ids()
    plan = build_plan("dlp", 0.7, stats=compute_dense_statistics(model, ids, progress=False))
    prune_model(model, plan, "wanda", ids, progress=False)
    params = dict(model.named_parameters())
    for n, before in routers.items():
        assert torch.equal(params[n], before), n
    got = achieved_sparsity(model)
    zeros = total = 0
    for block in decoder_blocks(model):
        for name, mod in block.named_modules():
            if name.rsplit(".", 1)[-1] in ROUTER_NAMES:
                continue
            for p in mod.parameters(recurse=False):
                if p.dim() >= 2:
                    zeros, total = zeros + int((p == 0).sum()), total + p.numel()
    assert got["overall"] == pytest.approx(zeros / total, abs=1e-12)
    assert abs(got["overall"] - 0.7) < 0.01


def test_linear_router_beside_listed_experts_is_a_routing_layer():
    """The older MoE layout (a Linear `gate` beside an nn.ModuleList of expert MLPs): the gate is not
    prunable, the experts' Linear layers are."""
    class Expert(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1, self.w2 = nn.Linear(16, 32, bias=False), nn.Linear(32, 16, bias=False)

    class Moe(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = nn.Linear(16, 4, bias=False)
            self.experts = nn.ModuleList(Expert() for _ in range(4))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(16, 16)
            self.block_sparse_moe = Moe()

    block = Block()
    assert routing_layers(block) == {"block_sparse_moe.gate"}
    names = set(prunable_weights(block))
    assert "block_sparse_moe.gate" not in names
    assert {"q_proj", "block_sparse_moe.experts.0.w1", "block_sparse_moe.experts.3.w2"} <= names


def test_gpt2_conv1d_is_pruned_per_output_column():
    """Conv1D stores (C_in, C_out): a per-output prune zeros int(C_in * r) of each COLUMN, and
    the Wanda norms are over its C_in inputs."""
    model = _model("gpt2")
    ids = _ids()
    block = decoder_blocks(model)[0]
    conv = block.attn.c_attn
    seen = []
    h = conv.register_forward_hook(lambda m, a, o: seen.append(a[0].detach().reshape(-1, a[0].shape[-1])))
    with torch.no_grad():
        model(ids)
    h.remove()
    X = torch.cat(seen)
    got = {}

    def visit(v):
        got[v.index] = v.stats["wanda"]["attn.c_attn"].clone()

    CalibrationEngine(model, ids, batch_size=2, progress=False).run(visit, statistics=("wanda",))
    torch.testing.assert_close(got[0], (X.pow(2).sum(0) / ids.shape[0]).sqrt(), rtol=1e-5, atol=1e-6)
    w = prunable_weights(block)["attn.c_attn"]
    assert w.weight.shape == (conv.weight.shape[1], conv.weight.shape[0])
    plan = build_plan("uniform", 0.5, model=model)
    prune_model(model, plan, "wanda", ids, progress=False)
    cin = conv.weight.shape[0]
    assert torch.all((conv.weight == 0).sum(0) == cin // 2)


def test_sparsegpt_on_conv1d_reconstructs_better_than_wanda():
    """SparseGPT minimises ||X W^T - X W'^T|| for the (C_out, C_in) view; with the orientation
    wrong (c_proj is square, so nothing would crash) it would not beat Wanda on that objective."""
    ids = _ids(8, 32)
    base = _model("gpt2")
    conv_in = []
    layer = decoder_blocks(base)[0].attn.c_proj
    h = layer.register_forward_hook(lambda m, a, o: conv_in.append(a[0].detach().reshape(-1, a[0].shape[-1])))
    with torch.no_grad():
        base(ids)
    h.remove()
    X, W = torch.cat(conv_in), layer.weight.detach().clone()
    err = {}
    for method in ("wanda", "sparsegpt"):
        model = copy.deepcopy(base)
        prune_model(model, build_plan("uniform", 0.6, model=model), method, ids, progress=False)
        pruned = decoder_blocks(model)[0].attn.c_proj.weight
        assert abs(float((pruned == 0).float().mean()) - 0.6) < 0.01
        err[method] = float((X @ W - X @ pruned.detach()).norm())
    assert err["sparsegpt"] < 0.9 * err["wanda"], err


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe"])
def test_expert_statistics_come_from_routed_tokens(family):
    """Per-expert Wanda norms and Hessians equal a brute force over the tokens routed to that
    expert (recorded from the model's own router in a full forward)."""
    model = _model(family)
    ids = _ids()
    experts = decoder_blocks(model)[1].mlp.experts
    routed = []
    h = experts.register_forward_hook(lambda m, a, o: routed.append((a[0].detach(), a[1].detach())))
    with torch.no_grad():
        model(ids)
    h.remove()
    got = {}

    def visit(v):
        if v.index == 1:
            got.update({s: {n: t.clone() for n, t in d.items()} for s, d in v.stats.items()})

    CalibrationEngine(model, ids, batch_size=2, progress=False).run(visit, statistics=("wanda", "hessian"))
    for e in range(experts.num_experts):
        xs, inter = [], []
        for hidden, top_k in routed:
            x = hidden[(top_k == e).any(-1)]
            gate, up = (x @ experts.gate_up_proj[e].detach().T).chunk(2, dim=-1)
            xs.append(x)
            inter.append(F.silu(gate) * up)
        X, Y = torch.cat(xs), torch.cat(inter)
        assert X.shape[0] > 0
        name = f"mlp.experts.gate_up_proj.{e}"
        torch.testing.assert_close(got["wanda"][name], (X.pow(2).sum(0) / ids.shape[0]).sqrt(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["hessian"][name], 2.0 / X.shape[0] * X.T @ X, rtol=1e-4, atol=1e-6)
        down = f"mlp.experts.down_proj.{e}"
        torch.testing.assert_close(got["wanda"][down], (Y.pow(2).sum(0) / ids.shape[0]).sqrt(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe"])
def test_expert_gate_with_and_without_transformers_private_method(family, monkeypatch):
    """The experts' gate comes from transformers' private `_apply_gate` where the experts module has
    one (the module's own gate, whatever it computes); without it (another transformers version)
    the default gate, act(gate) * up, computed here independently."""
    from dlp_lib.engine.statistics import _gated
    experts = decoder_blocks(_model(family))[1].mlp.experts
    gate_up = torch.randn(5, experts.gate_up_proj.shape[1], generator=torch.Generator().manual_seed(0))
    gate, up = gate_up.chunk(2, dim=-1)
    default = F.silu(gate) * up
    torch.testing.assert_close(_gated(experts, gate_up), default)
    monkeypatch.setattr(type(experts), "_apply_gate", lambda self, x: x[..., ::2] * 3.0, raising=True)
    torch.testing.assert_close(_gated(experts, gate_up), gate_up[..., ::2] * 3.0, rtol=0, atol=0)
    monkeypatch.delattr(type(experts), "_apply_gate")
    assert not hasattr(experts, "_apply_gate")
    torch.testing.assert_close(_gated(experts, gate_up), default, rtol=0, atol=0)


@pytest.mark.parametrize("family", ["llama", "gemma2", "mixtral"])
def test_tiny_families_use_eager_attention(family):
    """Eager attention is asked for through the config's public `attn_implementation` argument."""
    assert tiny_family(family).config._attn_implementation == "eager"


def test_expert_without_routed_tokens_is_refused():
    model = _model("mixtral")
    for block in decoder_blocks(model):  # the router never picks expert 3
        block.mlp.gate.register_forward_hook(lambda m, a, o: (o[0], o[1], torch.where(o[2] == 3, 0, o[2])))
    plan = build_plan("uniform", 0.5, model=model)
    with pytest.raises(ValueError, match=r"experts\.(gate_up_proj|down_proj)\.3 received no calibration token"):
        prune_model(model, plan, "wanda", _ids(), progress=False)


class _Weird(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.kernel = nn.Parameter(torch.zeros(2, 8, 8))  # a 3-D weight of unknown role


def test_unknown_3d_weight_is_refused():
    with pytest.raises(UnsupportedModelError, match="3-D parameter kernel.*silent partial prune"):
        prunable_weights(_Weird())


class _LeakyDecoder(nn.Module):
    """Feeds block i the running sum of the previous outputs: something the replay cannot see."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 16)

        def forward(self, x, carry=None):
            return self.fc(x) + (0 if carry is None else carry)

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(32, 16)
        self.layers = nn.ModuleList([self.Block() for _ in range(3)])
        self.head = nn.Linear(16, 32)

    def get_output_embeddings(self):
        return self.head

    def forward(self, ids, use_cache=False):
        h, carry = self.embed(ids), None
        for layer in self.layers:
            out = layer(h, carry=carry)
            carry, h = h, out
        return type("Out", (), {"logits": self.head(h)})()


def test_unreplayable_model_is_refused_naming_its_class():
    torch.manual_seed(0)
    with pytest.raises(UnsupportedModelError, match="_LeakyDecoder: block-by-block replay differs"):
        check_replay(_LeakyDecoder())
    # the engine runs the same guard before its first pass
    with pytest.raises(UnsupportedModelError, match="_LeakyDecoder: block-by-block replay differs"):
        CalibrationEngine(_LeakyDecoder(), torch.randint(0, 32, (2, 8)), progress=False).run(lambda v: None)


def test_decoder_blocks_found_without_allow_list():
    """The block list is found by structure (an experts ModuleList inside a block is not it)."""
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.experts = nn.ModuleList([nn.Linear(4, 4) for _ in range(8)])

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Block() for _ in range(3)])

    m = M()
    assert decoder_blocks(m) is m.layers


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        load_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        load_model("./no/such/dir")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_model(str(tmp_path))
    from transformers import T5Config
    T5Config(vocab_size=64, d_model=16, num_layers=1, num_heads=2, d_ff=32).save_pretrained(tmp_path / "t5")
    with pytest.raises(UnsupportedModelError) as info:
        load_model(str(tmp_path / "t5"))
    assert str(info.value) == "T5Config is not a decoder-only causal LM (AutoModelForCausalLM cannot load it)"


def test_load_model_from_checkpoint_directory_replays(tmp_path):
    from transformers import AutoTokenizer  # noqa: F401  (the saved tokenizer must load back)
    from dlp_lib.models import _byte_tokenizer
    model = _model("qwen2")
    model.save_pretrained(tmp_path / "ckpt")
    _byte_tokenizer().save_pretrained(tmp_path / "ckpt")
    loaded, tok = load_model(str(tmp_path / "ckpt"))
    assert type(loaded).__name__ == "Qwen2ForCausalLM"
    check_replay(loaded)
    for (n, p), q in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, q), n
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["model_type"] == "qwen2"


def test_gguf_is_dequantized_once_keyed_by_content_hash(tmp_path, monkeypatch):
    from dlp_lib import gguf_loading, models
    calls = []
    monkeypatch.setattr(gguf_loading, "_dequantize", lambda gguf, out: calls.append((gguf, out)) or out)
    monkeypatch.setenv("DLP_CACHE_DIR", str(tmp_path / "cache"))
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"GGUF one")
    b.write_bytes(b"GGUF two")
    out_a, out_b = models.gguf_checkpoint(a), models.gguf_checkpoint(b)
    assert out_a != out_b and out_a.name.startswith("gguf-")
    import hashlib
    assert out_a.name == "gguf-" + hashlib.sha256(b"GGUF one").hexdigest()[:16]
    assert models.resolve_source(str(a)) == str(out_a)


def test_blocks_of_different_sizes_reach_the_target_over_all_weights():
    """A dense first block before a mixture-of-experts block (ERNIE-4.5-MoE; DeepSeek-V3 and GLM-4.5
    are built alike): the plain mean of DLP's ratios at p would remove only ~64% of the weights; the
    ratios are shifted by one constant so that 70% of ALL prunable weights go, order and spread kept."""
    import transformers as tf
    cfg = tf.Ernie4_5_MoeConfig(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=32, moe_intermediate_size=128,
                                moe_num_experts=4, moe_k=2, moe_num_shared_experts=1, max_position_embeddings=256)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = tf.Ernie4_5_MoeForCausalLM(cfg).eval()
    sizes = [sum(w.weight.numel() for w in prunable_weights(b).values()) for b in decoder_blocks(model)]
    assert sizes[1] >= 2 * sizes[0]                                  # really unequal blocks
    ids = _ids()
    stats = compute_dense_statistics(model, ids, progress=False)
    for allocation in ("dlp", "owl"):
        plan = build_plan(allocation, 0.7, stats=stats)
        weighted = sum(r * n for r, n in zip(plan.ratios, sizes)) / sum(sizes)
        assert weighted == pytest.approx(0.7, abs=1e-9) and plan.config["weighted_by_block_size"]
        assert plan.config["unweighted_mean"] == pytest.approx(0.7)   # what the allocator itself gave
    plan = build_plan("dlp", 0.7, stats=stats)
    assert plan.ratios[0] - plan.ratios[1] == pytest.approx(2 * plan.config["alpha"])  # DLP's span kept
    prune_model(model, plan, "wanda", ids, progress=False)
    assert abs(achieved_sparsity(model)["overall"] - 0.7) < 0.01
    assert build_plan("uniform", 0.7, stats=stats).ratios == [0.7, 0.7]
