"""Only decoder-only causal LMs are loaded, and a damaged model file is refused in one line that
names the file and what is wrong, in the CLI and the API."""
import os
import shutil

import pytest
import torch

from dlp_lib import cli, experiment
from dlp_lib.models import load_model, smollm2_gguf_path, tiny_llama


@pytest.fixture(autouse=True)
def _fresh_labs(monkeypatch):
    monkeypatch.setattr(experiment, "_LABS", {})


def _prune(capsys, model):
    code = cli.main(["prune", "--profile", "smoke", "--quiet", "--model", str(model)])
    err = capsys.readouterr().err
    return code, err


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    from transformers import BartConfig, BartForConditionalGeneration, BertConfig, BertForMaskedLM
    root = tmp_path_factory.mktemp("encoders")
    BertForMaskedLM(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=128)).save_pretrained(root / "bert")
    BartForConditionalGeneration(BartConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1,
                                            encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                            decoder_ffn_dim=32, max_position_embeddings=128)
                                 ).save_pretrained(root / "bart")
    return root


@pytest.mark.parametrize("name,reason", [("bert", "is an encoder (masked-language model"),
                                         ("bart", "is an encoder-decoder (sequence-to-sequence) model")])
def test_encoders_and_encoder_decoders_are_refused_by_the_cli(capsys, tmp_cache, encoders, name, reason):
    code, err = _prune(capsys, encoders / name)
    assert code == 2 and reason in err and "not a decoder-only causal language model" in err, err
    assert err.count("\n") == 1


def test_an_encoder_is_refused_by_the_api():
    from transformers import BertConfig, BertLMHeadModel

    from dlp_lib import api
    bert = BertLMHeadModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=32))
    with pytest.raises(ValueError, match="is an encoder"):
        api.dense_statistics(bert, calib=torch.zeros(2, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="is an encoder"):
        api.perplexity(bert, text=torch.zeros(2, 8, dtype=torch.long))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_the_api_gives_the_clis_device_message(capsys, tmp_cache):
    from dlp_lib import api
    model, _ = tiny_llama()
    ids = torch.randint(0, 200, (2, 16))
    code = cli.main(["prune", "--profile", "smoke", "--quiet", "--device", "cuda"])
    cli_message = capsys.readouterr().err.removeprefix("error: ").strip()
    assert code == 2 and "has no CUDA GPU" in cli_message
    for call in (lambda: api.dense_statistics(model, calib=ids, device="cuda"),
                 lambda: api.perplexity(model, text=ids, device="cuda")):
        with pytest.raises(ValueError) as exc:
            call()
        assert str(exc.value) == cli_message


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model, tok = tiny_llama()
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _replace_with_dir(p):
    p.unlink()
    p.mkdir()


def _replace_with_dev_null(p):
    p.unlink()
    p.symlink_to("/dev/null")


@pytest.mark.parametrize("file,damage,message", [
    ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:5000]), "is truncated or not a safetensors file"),
    ("model.safetensors", lambda p: p.write_bytes(b"garbage " * 64), "is truncated or not a safetensors file"),
    ("model.safetensors", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    ("model.safetensors", _replace_with_dir, "is a directory, not a safetensors file"),
    ("model.safetensors", _replace_with_dev_null, "is a special file (a character device)"),
    ("config.json", lambda p: p.write_text('{"model_type": "llama", '), "is not valid JSON (line 1, column 25"),
    ("config.json", lambda p: p.write_text("[1, 2]"), "holds list [1, 2], not a model configuration"),
    ("config.json", lambda p: p.write_bytes(b"\xff\xfe\x00"), "is not UTF-8 text"),
    ("config.json", _replace_with_dir, "is a directory, not the checkpoint's configuration file"),
])
def test_a_damaged_checkpoint_is_named_in_one_line(capsys, tmp_cache, tmp_path, checkpoint, file, damage, message):
    folder = tmp_path / "damaged"
    shutil.copytree(checkpoint, folder)
    damage(folder / file)
    code, err = _prune(capsys, folder)
    assert code == 2 and message in err and str(folder / file) in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.fixture(scope="module")
def gguf_files(tmp_path_factory):
    real = smollm2_gguf_path()
    data = real.read_bytes()
    root = tmp_path_factory.mktemp("gguf")
    (root / "half.gguf").write_bytes(data[: len(data) // 2])
    (root / "cut.gguf").write_bytes(data[:1000])
    (root / "empty.gguf").write_bytes(b"")
    (root / "text.gguf").write_bytes(b"hello world " * 20)
    os.mkfifo(root / "fifo.gguf")
    return root


@pytest.mark.parametrize("file,message", [
    ("half.gguf", "is truncated or damaged (49181216 bytes"),
    ("cut.gguf", "is truncated or damaged (1000 bytes"),
    ("empty.gguf", "is empty (0 bytes)"),
    ("text.gguf", "does not start with the GGUF magic bytes (starts with b'hell')"),
    ("fifo.gguf", "is a special file (a FIFO, a named pipe)"),
])
def test_a_damaged_gguf_is_named_in_one_line(capsys, tmp_cache, gguf_files, file, message):
    code, err = _prune(capsys, gguf_files / file)
    assert code == 2 and message in err and file in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_dev_null_as_the_model(capsys, tmp_cache):
    code, err = _prune(capsys, "/dev/null")
    assert code == 2 and "'/dev/null' is a special file (a character device)" in err, err


def test_an_intact_checkpoint_still_loads(checkpoint):
    model, _ = load_model(str(checkpoint))
    reference, _ = tiny_llama()
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        assert torch.equal(p, q), name


def test_one_special_file_check_for_models_text_and_outputs(tmp_path):
    """Model paths, text sources and output paths are refused by the same function, in the same words;
    a regular file, a directory and a missing path pass it (the caller names a missing path)."""
    from dlp_lib.models import check_not_special_file
    from dlp_lib.validation import check_output_file
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "plain.txt").write_text("x")
    for fine in (tmp_path / "plain.txt", tmp_path, tmp_path / "missing"):
        check_not_special_file(fine, "--out")
    expected = f"--out {str(fifo)!r} is a special file (a FIFO, a named pipe), not a regular file or directory"
    with pytest.raises(ValueError) as direct:
        check_not_special_file(fifo, "--out")
    with pytest.raises(ValueError) as output:
        check_output_file(fifo, "--out")
    assert str(direct.value) == str(output.value) == expected
