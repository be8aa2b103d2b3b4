import pytest
import torch

from dlp_lib.data import (DataUnavailableError, TextSource, calibration_windows, evaluation_windows,
                          offline_documents, split_of)


def test_splits_are_disjoint_and_cover():
    ids = {s: {d for d, _ in offline_documents("brown", s)} for s in ("train", "validation", "test")}
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["validation"])
    assert len(ids["train"]) + len(ids["validation"]) + len(ids["test"]) == 500
    assert all(split_of(d) == "test" for d in ids["test"])


def test_brown_tags_are_stripped():
    text = offline_documents("brown", "test")[0][1]
    assert "/at " not in text and "/nn" not in text and len(text.split()) > 1000


def test_calibration_windows_seeded(tiny):
    _, tok = tiny
    a = calibration_windows("bbc", tok, 3, 40, seed=0)
    b = calibration_windows("bbc", tok, 3, 40, seed=0)
    c = calibration_windows("bbc", tok, 3, 40, seed=1)
    assert a.shape == (3, 40) and torch.equal(a, b) and not torch.equal(a, c)


def test_local_text_file(tmp_path, tiny):
    _, tok = tiny
    p = tmp_path / "mine.txt"
    p.write_text("hello world. " * 200)
    w = evaluation_windows(str(p), tok, 50)
    assert w.shape[1] == 50 and w.shape[0] == len("hello world. " * 200) // 50
    assert TextSource(str(p)).label == "mine.txt"


def test_missing_file_and_unknown_source():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TextSource("/nope/missing.txt").identity()
    with pytest.raises(ValueError, match="Unknown text source 'wikitext'.*wikitext2"):
        TextSource("wikitext")


def test_hub_source_offline_names_alternatives(tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, tok = tiny
    with pytest.raises(DataUnavailableError, match="bbc, brown"):
        evaluation_windows("wikitext2", tok, 64)
