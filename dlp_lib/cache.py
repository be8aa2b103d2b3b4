"""On-disk cache keyed by the full configuration that produced a result, written atomically.

A key holds the configuration, the identity of the weights and data, and the version of the
code that computed the value (`code_version`), so neither new weights nor a bug fix can bring
back an old number. Every entry records its kind, its key and the configuration it was computed
for (JSON entries also a checksum of their content), and a read checks them against the file it
came from: an entry that cannot be read (truncated, garbage, killed mid-write, the wrong shape, a
directory) or that belongs to another key (two files swapped or copied) is reported with its path,
deleted and recomputed; orphaned temporary files of killed writers are removed.
`python -m dlp_lib cache ls|clear|verify` inspects the cache.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import pickle
import shutil
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from .layout import STAGES, stages_of

# Bumped whenever a cached quantity changes meaning in a way the code version does not see.
CACHE_VERSION = 5

class CacheError(RuntimeError):
    pass


def _root_path() -> Path:
    configured = os.environ.get("DLP_CACHE_DIR")
    if configured is None:
        return Path.home() / ".cache" / "dlp_lib"
    if not configured.strip():  # Path("") is the current directory: never scatter the cache there
        raise CacheError("DLP_CACHE_DIR is set but empty; unset it for the default ~/.cache/dlp_lib or set it to "
                         "a directory")
    return Path(configured)


def cache_root() -> Path:
    """Root of every cached artefact: $DLP_CACHE_DIR, else ~/.cache/dlp_lib."""
    root = _root_path()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the cache directory {root} ({exc.strerror or exc}); set DLP_CACHE_DIR "
                         "to a writable directory") from None
    return root


def check_writable(directory: Path | None = None) -> Path:
    """Fail now, not after the work, if the cache (or `directory`) cannot be written."""
    d = Path(directory) if directory is not None else _root_path()
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=d, prefix=".write-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CacheError(f"cannot write to {d} ({exc.strerror or exc}); set DLP_CACHE_DIR to a writable "
                         "directory or fix its permissions") from None
    return d


def _code_ast(path: Path) -> str:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # docstrings do not change what the code computes
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)):
            body[0] = ast.Pass()
    return ast.dump(tree)


def stage_modules(stage: str) -> list[Path]:
    """The modules whose code computes `stage` (layout.MODULES); a module the layout does not place is
    an error here, not a module whose edits would leave old results valid."""
    if stage not in STAGES:
        raise ValueError(f"Unknown stage {stage!r}; allowed: {', '.join(STAGES)}")
    package = Path(__file__).resolve().parent
    modules = []
    for path in sorted(package.rglob("*.py")):
        name = ".".join(path.relative_to(package).with_suffix("").parts)
        stages = stages_of(name)
        if stages is None:
            raise CacheError(f"dlp_lib module {name!r} has no entry in dlp_lib/layout.py's MODULES: add it there "
                             "with its floor and the code stages it computes")
        if stage in stages:
            modules.append(path)
    return modules


@functools.lru_cache(maxsize=None)
def code_version(stage: str) -> str:
    """Hash of the code of one stage (its modules' syntax trees) and of torch/transformers versions."""
    import transformers
    h = hashlib.sha256(f"{CACHE_VERSION}|torch {torch.__version__}|transformers {transformers.__version__}".encode())
    package = Path(__file__).resolve().parent
    for path in stage_modules(stage):
        h.update(str(path.relative_to(package)).encode())
        h.update(_code_ast(path).encode())
    return h.hexdigest()[:12]


def versioned(stages, **fields) -> dict:
    """The one way to build a cached value's key: the fields that determine the value, and under "code"
    the code version of every stage whose modules computed it (`cached` refuses any other shape)."""
    stages = tuple(dict.fromkeys(stages))
    if "code" in fields:
        raise ValueError("'code' is the key's code versions; name the field otherwise")
    return {**fields, "code": {stage: code_version(stage) for stage in stages}}


def check_versioned(config: dict) -> None:
    """Raise ValueError unless `config` carries current code versions as `versioned` writes them."""
    code = config.get("code")
    if not isinstance(code, dict) or not code:
        raise ValueError("a cache key needs the code versions of the stages that computed the value: build it with "
                         f"cache.versioned(stages, ...) or ExperimentConfig.key(...); got code={code!r}")
    stale = {s: v for s, v in code.items() if s not in STAGES or v != code_version(s)}
    if stale:
        raise ValueError(f"cache key with unknown or stale code versions {stale}; stages: {', '.join(STAGES)}")


def config_key(config: dict) -> str:
    """Stable hash of a JSON-serialisable configuration (key order does not matter)."""
    blob = json.dumps({"_v": CACHE_VERSION, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _tmp_path(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
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
    tmp = _tmp_path(path)
    try:
        torch.save(obj, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# Errors that mean "this file is not a complete entry" (truncation, garbage, a torn write).
_UNREADABLE = (json.JSONDecodeError, UnicodeDecodeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile,
               KeyError, TypeError, RuntimeError, ValueError, OSError, AttributeError)
ENTRY_FIELDS = ("kind", "key", "config", "value")


def _json_checksum(entry: dict) -> str:
    """Hash of a JSON entry's fields as they read back (so it is the same when written and read)."""
    fields = json.loads(json.dumps({f: entry[f] for f in ENTRY_FIELDS}, default=str))
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


def _new_entry(kind: str, key: str, config: dict, value: Any, fmt: str) -> dict:
    entry = {"kind": kind, "key": key, "config": config, "value": value}
    if fmt == "json":
        entry["checksum"] = _json_checksum(entry)
    return entry


def _check_entry(entry: Any, path: Path) -> None:
    """Raise ValueError unless `entry` is a complete entry of the kind and key its path names."""
    if not isinstance(entry, dict):
        raise ValueError(f"a {type(entry).__name__}, not an entry")
    missing = [f for f in ENTRY_FIELDS if f not in entry]
    if missing:
        raise ValueError(f"no {', '.join(map(repr, missing))} field (an older cache format or not an entry)")
    if entry["kind"] != path.parent.name or entry["key"] != path.stem:
        raise ValueError(f"it holds the entry {entry['kind']}/{entry['key']}, not {path.parent.name}/{path.stem}")
    if path.suffix == ".json" and entry.get("checksum") != _json_checksum(entry):
        raise ValueError("its content does not match its checksum (edited or damaged)")


def read_entry(path: Path) -> dict:
    """The entry stored in a cache file; CacheError naming the file if it is unreadable, of the
    wrong shape, or not the entry of the kind and key its path names (a swapped or copied file)."""
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError("a directory, not a file")
        if path.suffix == ".json":
            entry = json.loads(path.read_text())
        else:
            entry = torch.load(path, weights_only=False)
        _check_entry(entry, path)
        return entry
    except _UNREADABLE as exc:
        raise CacheError(f"unreadable cache entry {path} ({type(exc).__name__}: {str(exc)[:160]})") from None


def remove_entry(path: Path) -> None:
    """Delete a cache entry, also one that is (wrongly) a directory."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


STALE_TMP_SECONDS = 3600  # a writer holds its .tmp file for seconds; older ones belong to killed processes


def clean_orphans(directory: Path, *, older_than: float = STALE_TMP_SECONDS) -> list[Path]:
    """Delete temporary files left by killed writers (older than `older_than` seconds)."""
    removed = []
    now = time.time()
    for tmp in Path(directory).glob("*.tmp"):
        try:
            if now - tmp.stat().st_mtime >= older_than:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed


_CLEANED: set = set()


def _log(event: str, kind: str) -> None:
    """With $DLP_CACHE_LOG set (the notebook batch), append 'hit|miss kind' lines: what was reused."""
    log = os.environ.get("DLP_CACHE_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{event} {kind}\n")


def cached(kind: str, config: dict, compute: Callable[[], Any], *, fmt: str = "json",
           enabled: bool = True) -> Any:
    """Return the cached value for (kind, config), computing and storing it on a miss.

    `fmt` is "json" for plain results or "torch" for tensors; the kind, key and config are stored
    beside the value so an entry documents what produced it and a read can check it is the entry
    asked for. enabled=False recomputes and overwrites. A corrupt entry, or one of another key, is
    reported (warning with its path), deleted and recomputed.
    """
    if fmt not in ("json", "torch"):
        raise ValueError(f"Unknown cache format {fmt!r}; allowed: json, torch")
    check_versioned(config)
    key = config_key({"kind": kind, **config})
    folder = cache_root() / kind
    path = folder / f"{key}.{'json' if fmt == 'json' else 'pt'}"
    if folder not in _CLEANED and folder.is_dir():
        _CLEANED.add(folder)
        clean_orphans(folder)
    if enabled and path.exists():
        try:
            value = read_entry(path)["value"]
            _log("hit", kind)
            return value
        except CacheError as exc:
            warnings.warn(f"{exc}; deleted, recomputing", stacklevel=2)
            remove_entry(path)
    elif path.is_dir():  # a directory in the entry's place would block the write below
        remove_entry(path)
    _log("miss", kind)
    value = compute()
    entry = _new_entry(kind, key, config, value, fmt)
    if fmt == "json":
        atomic_write_json(path, entry)
        # the value as every later read gives it (keys sorted, tuples as lists): a result must not depend
        # on whether it was computed now or read back, or a figure's panel order would follow the cache
        return json.loads(json.dumps(value, sort_keys=True, default=str))
    atomic_torch_save(path, entry)
    return value


# ------------------------------------------------------------------------ cache command
ASSET_DIRS = ("corpora", "downloads", "models", "dense_weights")  # installed assets, not computed entries
# results whose --json could not be written after the work (cli.py): the user's, never deleted
RESCUE_DIR = "unsaved"


def entries(root: Path | None = None) -> list[Path]:
    """Every cache entry (also one that is wrongly a directory), not assets or rescued results."""
    root = Path(root) if root is not None else cache_root()
    return sorted(p for p in root.glob("*/*") if p.suffix in (".json", ".pt")
                  and p.parent.name not in ASSET_DIRS + (RESCUE_DIR,) and not p.parent.is_symlink())


def summary(root: Path | None = None) -> dict[str, dict]:
    """Per kind: number of entries and bytes (`cache ls`)."""
    out: dict[str, dict] = {}
    for p in entries(root):
        d = out.setdefault(p.parent.name, {"entries": 0, "bytes": 0})
        d["entries"] += 1
        d["bytes"] += p.stat().st_size if p.is_file() else 0
    return out


def verify(root: Path | None = None, *, delete: bool = False) -> list[tuple[Path, str]]:
    """Read every entry; returns the unreadable ones (deleted with delete=True) and cleans orphans."""
    bad = []
    root = Path(root) if root is not None else cache_root()
    for p in entries(root):
        try:
            read_entry(p)
        except CacheError as exc:
            bad.append((p, str(exc)))
            if delete:
                remove_entry(p)
    for folder in {p.parent for p in root.glob("*/*.tmp")}:
        clean_orphans(folder, older_than=0 if delete else STALE_TMP_SECONDS)
    return bad


def clear(kinds: list[str] | None = None, root: Path | None = None) -> int:
    """Delete the entries of the given kinds (all result kinds if None); models and corpora stay."""
    n = 0
    for p in entries(root):
        if kinds is None or p.parent.name in kinds:
            remove_entry(p)
            n += 1
    return n
