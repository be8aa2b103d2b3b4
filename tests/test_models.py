import pytest
import torch

from dlp_lib.calibration import replay_logits
from dlp_lib.models import UnsupportedModelError, decoder_blocks, linear_sublayers, load_model


def _tiny(config_cls, model_cls, **extra):
    cfg = config_cls(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, **extra)
    torch.manual_seed(0)
    return model_cls(cfg).eval()


@pytest.mark.parametrize("family", ["mistral", "qwen2", "gemma"])
def test_families_found_and_replayed(family):
    import transformers as tf
    classes = {"mistral": (tf.MistralConfig, tf.MistralForCausalLM, {}),
               "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, {}),
               "gemma": (tf.GemmaConfig, tf.GemmaForCausalLM, {"head_dim": 8})}
    cfg_cls, model_cls, extra = classes[family]
    model = _tiny(cfg_cls, model_cls, **extra)
    blocks = decoder_blocks(model)
    assert len(blocks) == 2
    names = set(linear_sublayers(blocks[0]))
    assert {"self_attn.q_proj", "mlp.down_proj"} <= names
    ids = torch.randint(0, 128, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(replay_logits(model, ids), model(ids).logits, rtol=0, atol=1e-5)


def test_model_without_decoder_blocks_is_rejected():
    model = torch.nn.Sequential(torch.nn.Embedding(16, 8), torch.nn.Linear(8, 16))
    with pytest.raises(UnsupportedModelError, match="No repeated decoder blocks.*Sequential"):
        decoder_blocks(model)


def test_gpt2_blocks_and_conv1d_weights_are_found():
    import transformers as tf
    model = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64))
    blocks = decoder_blocks(model)
    assert len(blocks) == 2 and type(blocks[0]).__name__ == "GPT2Block"
    subs = linear_sublayers(blocks[0])
    assert set(subs) == {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}
    assert subs["mlp.c_fc"].weight.shape == (128, 32)   # (C_out, C_in) view of Conv1D's (C_in, C_out)
    assert subs["mlp.c_fc"].weight.data_ptr() == blocks[0].mlp.c_fc.weight.data_ptr()


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_tiny_models_carry_their_name(name):
    model, _ = load_model(name)
    assert model.config.name_or_path == name


def test_tiny_llama_is_deterministic():
    a, _ = load_model("tiny-llama")
    b, _ = load_model("tiny-llama")
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n


def test_unknown_hub_model_fails_clearly():
    with pytest.raises(RuntimeError, match="smollm2-135m"):
        load_model("no-such-org/no-such-model-xyz")


def test_fingerprint_is_exact_and_thread_independent():
    """The cache key's weight identity sees a one-ulp change and does not depend on the thread count."""
    from dlp_lib.models import load_model, model_fingerprint
    model, _ = load_model("tiny-llama")
    n = torch.get_num_threads()
    try:
        prints = set()
        for threads in (1, 2):
            torch.set_num_threads(threads)
            prints.add(model_fingerprint(model))
    finally:
        torch.set_num_threads(n)
    assert len(prints) == 1
    before = prints.pop()
    first = next(iter(model.state_dict().values()))     # tensor 0 is always hashed
    with torch.no_grad():
        first.view(-1)[123] = torch.nextafter(first.view(-1)[123], torch.tensor(float("inf")))
    assert model_fingerprint(model) != before
