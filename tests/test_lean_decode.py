"""The lean decoder computes what Hugging Face's forward computes: its C++ attention, RMSNorm and
gated activation against textbook float64 computations, every format's bound one-token product
against the layer's own forward, its logits against HF's on Llama-style tiny families and the real
model, its greedy tokens against HF's loop, and clear errors for what it cannot run."""
import math

import pytest
import torch
from torch import nn

from dlp_lib.inference import DenseLinear, SparseLinear, greedy_decode, sparsify_model
from dlp_lib.inference import native
from dlp_lib.inference.bitmask import BitmaskLinear
from dlp_lib.inference.lean_decode import LeanDecoder, bind_projection
from dlp_lib.models import load_model


def _rotate(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., h:], x[..., :h]), -1) * sin


@pytest.mark.parametrize("heads,kv_heads,D,pos", [(6, 2, 16, 0), (6, 2, 16, 9), (4, 4, 8, 5), (3, 1, 32, 17)])
def test_attention_kernel_equals_textbook_attention(heads, kv_heads, D, pos):
    g = torch.Generator().manual_seed(pos + heads)
    ctx = pos + 3
    q, k, v = (torch.randn(n * D, generator=g) for n in (heads, kv_heads, kv_heads))
    K, V = torch.randn(kv_heads, ctx, D, generator=g), torch.randn(kv_heads, ctx, D, generator=g)
    cos, sin = torch.randn(D, generator=g), torch.randn(D, generator=g)
    scale = 1 / math.sqrt(D)
    # textbook, float64: rotate, write slot pos, softmax over slots 0..pos, kv head h // (heads / kv_heads)
    qr = _rotate(q.double().view(heads, D), cos.double(), sin.double())
    kr = _rotate(k.double().view(kv_heads, D), cos.double(), sin.double())
    K64, V64 = K.double().clone(), V.double().clone()
    K64[:, pos], V64[:, pos] = kr, v.double().view(kv_heads, D)
    group = heads // kv_heads
    ref = torch.stack([torch.softmax(K64[h // group, :pos + 1] @ qr[h] * scale, 0) @ V64[h // group, :pos + 1]
                       for h in range(heads)])
    out = torch.empty(heads * D)
    native.load().dlp_rope_attend(q.data_ptr(), k.data_ptr(), v.data_ptr(), K.data_ptr(), V.data_ptr(),
                                  cos.data_ptr(), sin.data_ptr(), pos, ctx, heads, kv_heads, D, scale, out.data_ptr())
    torch.testing.assert_close(out.double().view(heads, D), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(K[:, pos].double(), kr, rtol=1e-6, atol=1e-6)     # the cache slot was written
    assert torch.equal(V[:, pos], v.view(kv_heads, D))


def test_rms_norm_and_gated_activation_kernels_equal_float64():
    g = torch.Generator().manual_seed(3)
    h, w = torch.randn(576, generator=g) * 3, torch.randn(576, generator=g)
    out = torch.empty(576)
    native.load().dlp_rms_norm(h.data_ptr(), w.data_ptr(), 576, 1e-5, out.data_ptr())
    h64 = h.double()
    ref = w.double() * h64 / torch.sqrt((h64 * h64).mean() + 1e-5)
    torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-6)
    gate, up = torch.randn(1536, generator=g) * 4, torch.randn(1536, generator=g)
    act = torch.empty(1536)
    native.load().dlp_silu_mul(gate.data_ptr(), up.data_ptr(), 1536, act.data_ptr())
    g64 = gate.double()
    torch.testing.assert_close(act.double(), g64 / (1 + torch.exp(-g64)) * up.double(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "dense", "csr", "bsr", "coo", "bitmask"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_bound_product_equals_the_layers_forward(kind, with_bias):
    g = torch.Generator().manual_seed(7)
    linear = nn.Linear(64, 48, bias=with_bias)
    with torch.no_grad():
        linear.weight.mul_(torch.rand(linear.weight.shape, generator=g) > 0.6)
    module = {"linear": lambda: linear, "dense": lambda: DenseLinear.from_linear(linear),
              "bitmask": lambda: BitmaskLinear.from_linear(linear)}.get(
        kind, lambda: SparseLinear.from_linear(linear, fmt=kind))()
    x, y = torch.empty(64), torch.full((48,), float("nan"))
    product = bind_projection(module, x, y)
    for seed in (1, 2):                                  # the call reads what x holds when it runs
        x.copy_(torch.randn(64, generator=torch.Generator().manual_seed(seed)))
        with torch.no_grad():
            product()
            ref = module(x.clone())
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_bound_product_refuses_bad_buffers_and_unknown_modules():
    layer = DenseLinear(torch.randn(8, 4))
    with pytest.raises(ValueError, match=r"y must be a contiguous float32 CPU vector of shape \(8,\), got "
                                         r"torch.float32 \(4,\)"):
        layer.bind_matvec(torch.empty(4), torch.empty(4))
    with pytest.raises(ValueError, match=r"x must be .* shape \(4,\), got torch.float64"):
        BitmaskLinear(torch.randn(8, 4)).bind_matvec(torch.empty(4, dtype=torch.float64), torch.empty(8))
    with pytest.raises(ValueError, match=r"cannot bind a Conv1d projection"):
        bind_projection(nn.Conv1d(4, 8, 1), torch.empty(4), torch.empty(8))


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen2", "tiny-mistral"])
def test_lean_logits_equal_hf_forward(name):
    torch.manual_seed(0)
    model, _ = load_model(name)
    ids = torch.randint(3, 200, (1, 8), generator=torch.Generator().manual_seed(1))   # 8: the tiny families' window
    with torch.no_grad():
        ref = model(ids).logits[0]                                        # (8, vocab): the whole sequence at once
    dec = LeanDecoder(model, context=8)
    got = [dec.prefill(ids[:, :3])] + [dec.step(int(t)) for t in ids[0, 3:]]
    torch.testing.assert_close(torch.stack(got[:-1]), ref[2:-1], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="cache holds 8 tokens"):
        dec.step(3)
    if name != "tiny-llama":   # a sliding-window model: a cache past its window is refused, not silently wrong
        with pytest.raises(ValueError, match="context 9 exceeds the model's sliding window 8"):
            LeanDecoder(model, context=9)


def test_lean_logits_equal_hf_forward_with_a_narrowed_mlp():
    """Structured pruning leaves layers with different MLP widths: each uses its own prefix of the buffers."""
    model, _ = load_model("tiny-llama")
    mlp = model.model.layers[1].mlp
    keep = mlp.gate_proj.out_features - 24
    with torch.no_grad():
        for name, rows in (("gate_proj", True), ("up_proj", True), ("down_proj", False)):
            old = getattr(mlp, name)
            new = nn.Linear(old.in_features if rows else keep, keep if rows else old.out_features, bias=False)
            new.weight.copy_(old.weight[:keep] if rows else old.weight[:, :keep])
            setattr(mlp, name, new)
        ids = torch.randint(3, 200, (1, 6), generator=torch.Generator().manual_seed(4))
        ref = model(ids).logits[0]
    dec = LeanDecoder(model, context=6)
    got = [dec.prefill(ids[:, :2])] + [dec.step(int(t)) for t in ids[0, 2:]]
    torch.testing.assert_close(torch.stack(got[:-1]), ref[1:-1], rtol=1e-4, atol=1e-4)


def test_lean_greedy_tokens_equal_hf_loop_on_compressed_layers():
    model, _ = load_model("tiny-llama")
    with torch.no_grad():
        for p in model.model.layers.parameters():
            if p.dim() == 2:
                p.mul_(torch.rand(p.shape, generator=torch.Generator().manual_seed(p.numel())) > 0.7)
    ids = torch.randint(3, 200, (1, 8), generator=torch.Generator().manual_seed(2))
    for fmt in ("csr", "bitmask"):
        sparse = sparsify_model(model, fmt=fmt, break_even=1.0, inplace=False).model
        hf, _ = greedy_decode(sparse, ids, 16)
        lean, times = greedy_decode(sparse, ids, 16, runtime="lean")
        assert torch.equal(hf, lean) and len(times) == 16


def test_lean_decoder_refuses_what_it_cannot_run():
    gpt2, _ = load_model("tiny-gpt2")
    with pytest.raises(ValueError, match=r"model_type 'gpt2'.*runtime 'hf'"):
        LeanDecoder(gpt2, 8)
    llama, _ = load_model("tiny-llama")
    with pytest.raises(ValueError, match="context must be >= 1"):
        LeanDecoder(llama, 0)
    with pytest.raises(ValueError, match=r"T <= context 4"):
        LeanDecoder(llama, 4).prefill(torch.ones(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"Unknown decoding runtime 'fast'; allowed: hf, lean"):
        greedy_decode(llama, torch.ones(1, 3, dtype=torch.long), 2, runtime="fast")
    with pytest.raises(ValueError, match=r"fp32 on the CPU; the model is torch.bfloat16"):
        LeanDecoder(llama.to(torch.bfloat16), 8)


@pytest.mark.integration
def test_smollm2_lean_decoding_equals_hf():
    model, tok = load_model("smollm2-135m")
    ids = tok("The history of the city begins with a small settlement on the river", return_tensors="pt").input_ids
    hf, _ = greedy_decode(model, ids, 24)
    lean, _ = greedy_decode(model, ids, 24, runtime="lean")
    assert torch.equal(hf, lean)
    dec = LeanDecoder(model, context=ids.shape[1] + 1)
    dec.prefill(ids)
    got = dec.step(int(hf[0]))
    with torch.no_grad():
        ref = model(torch.cat([ids, hf[:1].view(1, 1)], 1)).logits[0, -1]
    diff = (got - ref).abs().max().item()
    print(f"smollm2-135m lean vs HF: max |logit difference| {diff:.3g} (logits up to {ref.abs().max():.1f})")
    assert diff < 1e-3
