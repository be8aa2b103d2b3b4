"""Zero-shot evaluation (paper Table 4, Appendix I): lm-eval wrapper, offline task suite, task-name errors."""
import json

import pytest

pytest.importorskip("lm_eval")

from dlp_lib import zeroshot, zeroshot_tasks  # noqa: E402
from dlp_lib.data import OFFLINE_SOURCES, offline_documents, split_of  # noqa: E402

N = 40  # a small suite keeps the builder fast


@pytest.fixture(scope="module")
def suite():
    return zeroshot_tasks.build_offline_suite(N, seed=0)


def test_builder_is_deterministic(suite, tmp_path, monkeypatch):
    again_dir = tmp_path / "cache"
    monkeypatch.setenv("DLP_CACHE_DIR", str(again_dir))
    (again_dir / "corpora").parent.mkdir(parents=True, exist_ok=True)
    (again_dir / "corpora").symlink_to(suite.parent.parent / "corpora")  # reuse the fetched corpora
    rebuilt = zeroshot_tasks.build_offline_suite(N, seed=0)
    assert rebuilt != suite and rebuilt.name == suite.name
    for task in zeroshot_tasks.OFFLINE_TASKS:
        assert (rebuilt / f"{task}.jsonl").read_bytes() == (suite / f"{task}.jsonl").read_bytes()
    other = zeroshot_tasks.build_offline_suite(N, seed=1)
    assert (other / "dlp_lastword.jsonl").read_bytes() != (suite / "dlp_lastword.jsonl").read_bytes()


def test_items_are_well_formed_and_never_calibration_text(suite):
    train_texts = {c: [t for _, t in offline_documents(c, "train")] for c in OFFLINE_SOURCES}
    for task in zeroshot_tasks.OFFLINE_TASKS:
        items = zeroshot_tasks.load_items(task, suite)
        assert len(items) == N
        assert {it["corpus"] for it in items} == set(OFFLINE_SOURCES)
        for it in items:
            assert split_of(it["doc"]) in ("validation", "test")  # calibration uses only "train"
            assert len(it["choices"]) == 4 and len(set(it["choices"])) == 4 and 0 <= it["label"] < 4
            true = it["choices"][it["label"]]
            probe = it["context"][-60:] + " " + true if task == "dlp_lastword" else true
            assert not any(probe in t for t in train_texts[it["corpus"]])
    head = json.loads((suite / "dlp_continuation.jsonl").read_text().splitlines()[0])
    assert set(head) >= {"context", "choices", "label", "corpus", "doc"}


def test_wrapper_on_tiny_llama(suite, tiny):
    model, tok = tiny
    pad_before = tok.pad_token
    res = zeroshot.evaluate_zero_shot(model, tok, "offline", limit=4, batch_size=8, suite_examples=N)
    assert set(res["tasks"]) == set(zeroshot_tasks.OFFLINE_TASKS)
    for row in res["tasks"].values():
        assert 0.0 <= row["acc"] <= 1.0 and 0.0 <= row["acc_norm"] <= 1.0
        assert row["n"] == 4 and row["chance"] == 0.25 and row["acc_stderr"] is not None
    assert res["mean_acc"] == pytest.approx(sum(r["acc"] for r in res["tasks"].values()) / 2)
    meta = res["meta"]
    assert meta["lm_eval_version"].startswith("0.4") and meta["limit"] == 4 and meta["num_fewshot"] == 0
    assert meta["add_bos_token"] is False and meta["suite"]["key"] == suite.name
    assert meta["task_versions"] == {t: float(zeroshot_tasks.SUITE_VERSION) for t in zeroshot_tasks.OFFLINE_TASKS}
    assert tok.pad_token == pad_before  # the caller's tokenizer is not modified


def test_zero_shot_for_evaluates_the_pruned_model():
    from dlp_lib.experiment import ExperimentConfig, get_lab
    lab = get_lab("tiny-llama", progress=False)
    cfg = ExperimentConfig.from_profile("smoke", sparsity=0.5, allocation="uniform", method="magnitude")
    from dlp_lib.runs.zeroshot import zero_shot_for
    first = zero_shot_for(lab, cfg, "dlp_lastword", limit=2, suite_examples=N, use_cache=False)
    assert lab.pruned_config == cfg and set(first["tasks"]) == {"dlp_lastword"}


@pytest.mark.parametrize("bad", ["hellaswg", "dlp_nope", ""])
def test_bad_task_name_fails_clearly(bad, monkeypatch):
    monkeypatch.setattr(zeroshot, "hub_available", lambda: False)
    with pytest.raises(ValueError, match="offline suite 'offline'"):
        zeroshot.resolve_tasks(bad)


def test_paper_task_offline_names_the_offline_suite(monkeypatch):
    monkeypatch.setattr(zeroshot, "hub_available", lambda: False)
    with pytest.raises(zeroshot.ZeroShotTaskError, match=r"boolq.*Hugging Face hub.*dlp_continuation"):
        zeroshot.resolve_tasks("boolq,offline")
    assert zeroshot.resolve_tasks("offline,dlp_lastword") == list(zeroshot_tasks.OFFLINE_TASKS)


def test_cli_zero_shot_bad_task(capsys, monkeypatch):
    from dlp_lib.cli import main
    monkeypatch.setattr(zeroshot, "hub_available", lambda: False)
    assert main(["zero-shot", "--model", "tiny-llama", "--tasks", "arc_easy"]) == 2
    assert "offline suite" in capsys.readouterr().err


def test_cli_zero_shot_dense(tmp_path, capsys):
    from dlp_lib.cli import main
    out = tmp_path / "zs.json"
    assert main(["zero-shot", "--model", "tiny-llama", "--tasks", "dlp_lastword", "--limit", "2",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["model"] == "tiny-llama" and res["tasks"]["dlp_lastword"]["n"] == 2
    assert "dlp_lastword" in capsys.readouterr().out


def test_fewshot_demonstrations_come_from_train_documents_only(suite):
    for task in zeroshot_tasks.OFFLINE_TASKS:
        demos = zeroshot_tasks.load_items(task, suite, fewshot=True)
        items = zeroshot_tasks.load_items(task, suite)
        assert len(demos) >= 8
        assert {split_of(d["doc"]) for d in demos} == {"train"}
        assert not {d["context"] for d in demos} & {it["context"] for it in items}
        assert all(len(d["choices"]) == 4 and 0 <= d["label"] < 4 for d in demos)


def test_lm_eval_builds_the_fewshot_prompt_from_the_demonstrations(suite):
    from lm_eval.tasks import TaskManager
    tm = TaskManager(include_path=str(suite), include_defaults=False)
    task = tm.load_task_or_group(["dlp_continuation"])["dlp_continuation"]
    demos = zeroshot_tasks.load_items("dlp_continuation", suite, fewshot=True)
    item = zeroshot_tasks.load_items("dlp_continuation", suite)[0]
    ctx = task.fewshot_context(task.test_docs()[0], num_fewshot=3)
    shown = [d for d in demos if d["context"] + " " + d["choices"][d["label"]] in ctx]
    assert len(shown) == 3                       # three demonstrations, each with its correct answer
    assert ctx.endswith(item["context"])         # then the evaluated item, without its answer


def test_wrapper_fewshot_on_tiny_llama(suite, tiny):
    model, tok = tiny
    res = zeroshot.evaluate_zero_shot(model, tok, "dlp_lastword", limit=3, batch_size=8, suite_examples=N,
                                      num_fewshot=2)
    assert res["meta"]["num_fewshot"] == 2 and res["tasks"]["dlp_lastword"]["n"] == 3
    with pytest.raises(ValueError, match="num_fewshot = -1"):
        zeroshot.evaluate_zero_shot(model, tok, "dlp_lastword", limit=3, num_fewshot=-1)
