import os

import pytest

# Tests never touch the hub and never write into the repository's figures/.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _figures_to_tmp(tmp_path_factory):
    os.environ["DLP_FIGURES_DIR"] = str(tmp_path_factory.mktemp("figures"))


@pytest.fixture(scope="session")
def tiny():
    from dlp_lib.models import load_model
    return load_model("tiny-llama")


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch):
    """A fresh result cache that still sees the downloaded corpora, models and token streams."""
    from dlp_lib.cache import cache_root
    real = cache_root()
    root = tmp_path / "cache"
    root.mkdir()
    for sub in ("corpora", "downloads", "models", "tokens"):
        if (real / sub).exists():
            os.symlink(real / sub, root / sub)
    monkeypatch.setenv("DLP_CACHE_DIR", str(root))
    return root
