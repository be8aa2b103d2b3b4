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
