import os

import pytest

# Tests never touch the hub and never write into the repository's figures/.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _figures_to_tmp(tmp_path_factory):
    os.environ["DLP_FIGURES_DIR"] = str(tmp_path_factory.mktemp("figures"))


@pytest.fixture(scope="module")
def one_thread():
    """The tiny model's matrices are too small for threads; on a busy CPU they cost seconds per op."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tiny_lab():
    """A Lab on the random tiny-llama (cached results go to the test's cache when tmp_cache is used)."""
    from dlp_lib.experiment import Lab
    return Lab("tiny-llama", progress=False)


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


@pytest.fixture
def fresh_labs(monkeypatch):
    """No Lab carried over from another test (each test loads, or refuses to load, its own model)."""
    from dlp_lib import experiment
    monkeypatch.setattr(experiment, "_LABS", {})


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the model is loaded: the error had to come before."""
    from dlp_lib import experiment

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before the bad input was reported")
    monkeypatch.setattr(experiment, "load_model", forbidden)


@pytest.fixture
def run_cli(capsys):
    """Run `python -m dlp_lib ARGS` in this process: (exit code, stdout, stderr)."""
    from dlp_lib import cli

    def run(*args):
        code = cli.main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err
    return run
