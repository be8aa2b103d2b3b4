"""On-disk cache keyed by the full configuration that produced a result, written atomically."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

# Bumped whenever a cached quantity changes meaning, so stale entries are never reused.
CACHE_VERSION = 3


def cache_root() -> Path:
    """Root of every cached artefact: $DLP_CACHE_DIR, else ~/.cache/dlp_lib."""
    root = Path(os.environ.get("DLP_CACHE_DIR", Path.home() / ".cache" / "dlp_lib"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def config_key(config: dict) -> str:
    """Stable hash of a JSON-serialisable configuration (key order does not matter)."""
    blob = json.dumps({"_v": CACHE_VERSION, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cached(kind: str, config: dict, compute: Callable[[], Any], *, fmt: str = "json",
           enabled: bool = True) -> Any:
    """Return the cached value for (kind, config), computing and storing it on a miss.

    `fmt` is "json" for plain results or "torch" for tensors; the config is stored beside
    the value so a cache entry documents what produced it.
    """
    if not enabled:
        return compute()
    key = config_key({"kind": kind, **config})
    path = cache_root() / kind / f"{key}.{'json' if fmt == 'json' else 'pt'}"
    if path.exists():
        if fmt == "json":
            return json.loads(path.read_text())["value"]
        return torch.load(path, weights_only=False)["value"]
    value = compute()
    if fmt == "json":
        atomic_write_json(path, {"config": config, "value": value})
    else:
        atomic_torch_save(path, {"config": config, "value": value})
    return value
