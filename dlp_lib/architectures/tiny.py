"""Tiny random decoder models of the families the architecture tests cover (hidden 128, 2-4 blocks)."""
from __future__ import annotations

import torch

VOCAB = 160
# hidden 128 and every C_in >= 128: a per-output prune removes int(C_in * r) weights per row, so the
# achieved sparsity is within 1/128 < 1% of any target.
_IDS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)
_COMMON = dict(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, **_IDS)


def _spec(name, vocab_size: int = VOCAB):
    import transformers as tf
    c = {**_COMMON, "vocab_size": vocab_size}
    specs = {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, c),
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM, {**c, "sliding_window": 8}),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM,
                  {**c, "num_hidden_layers": 4, "use_sliding_window": True, "sliding_window": 8,
                   "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]}),
        "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM, {**c, "head_dim": 32}),
        "gemma": (tf.GemmaConfig, tf.GemmaForCausalLM, {**c, "head_dim": 32}),
        "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM,
                   {**c, "num_hidden_layers": 4, "head_dim": 32, "sliding_window": 8}),
        "gemma3": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM,
                   {**c, "num_hidden_layers": 4, "head_dim": 32, "sliding_window": 8,
                    "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]}),
        "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, c),
        "opt": (tf.OPTConfig, tf.OPTForCausalLM,
                dict(vocab_size=vocab_size, hidden_size=128, ffn_dim=256, num_hidden_layers=2, num_attention_heads=4,
                     max_position_embeddings=256, word_embed_proj_dim=128, **_IDS)),
        "gpt2": (tf.GPT2Config, tf.GPT2LMHeadModel,
                 dict(vocab_size=vocab_size, n_embd=128, n_layer=2, n_head=4, n_positions=256, n_inner=256,
                      bos_token_id=1, eos_token_id=2)),
        "gpt_neox": (tf.GPTNeoXConfig, tf.GPTNeoXForCausalLM,
                     dict(vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=256, **_IDS)),
        "falcon": (tf.FalconConfig, tf.FalconForCausalLM,
                   dict(vocab_size=vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                        new_decoder_architecture=True, num_kv_heads=2, bos_token_id=1, eos_token_id=2)),
        "stablelm": (tf.StableLmConfig, tf.StableLmForCausalLM, c),
        "olmo2": (tf.Olmo2Config, tf.Olmo2ForCausalLM, c),
        "mixtral": (tf.MixtralConfig, tf.MixtralForCausalLM, {**c, "num_local_experts": 4, "num_experts_per_tok": 2}),
        "qwen2_moe": (tf.Qwen2MoeConfig, tf.Qwen2MoeForCausalLM,
                      {**c, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 128,
                       "shared_expert_intermediate_size": 128, "decoder_sparse_step": 1}),
        "qwen3_moe": (tf.Qwen3MoeConfig, tf.Qwen3MoeForCausalLM,
                      {**c, "head_dim": 32, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 128,
                       "decoder_sparse_step": 1}),
        "olmoe": (tf.OlmoeConfig, tf.OlmoeForCausalLM, {**c, "num_experts": 4, "num_experts_per_tok": 2}),
    }
    return specs[name]


FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "opt", "gpt2",
            "gpt_neox", "falcon", "stablelm", "olmo2", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe")
MOE_FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe")


def tiny_family(name: str, seed: int = 0, vocab_size: int = VOCAB):
    """A tiny randomly initialised model of family `name` (fp32, eval mode)."""
    if name not in FAMILIES:
        raise ValueError(f"Unknown tiny family {name!r}; allowed: {', '.join(FAMILIES)}")
    cfg_cls, model_cls, kwargs = _spec(name, vocab_size)
    config = cfg_cls(**kwargs, attn_implementation="eager")
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    torch.random.set_rng_state(state)
    return model
