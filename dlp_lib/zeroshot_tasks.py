"""Offline zero-shot suite (stand-in for the paper's Table 4 / Appendix I tasks), built from registry corpora.

The seven lm-eval tasks of the paper need the Hugging Face hub. Offline, the project builds
its own multiple-choice tasks, deterministically (seeded), from the VALIDATION and TEST
document splits of the offline corpora only (`data.split_of`), so no text that calibration
can see (the train split, whatever corpus is used for calibration) is ever a task item:

* `dlp_continuation` (HellaSwag-like): a passage, then choose its true next sentence among
  three sentences of similar length taken from other documents of the same corpus.
* `dlp_lastword` (LAMBADA-like): a passage cut before its final word, then choose that word
  among three words that end sentences of other documents of the same corpus.

Each task is one JSONL file plus an lm-eval YAML (`dataset_path: json`) written under
`cache_root()/zeroshot_tasks/<hash>/`, a folder given to `lm_eval.tasks.TaskManager(include_path=...)`.
Chance is 25% on both (four choices). For few-shot evaluation (Table 18 is 5-shot) each task also
has a `train` split of demonstrations built by the same generators from TRAIN documents (as
lm-eval draws few-shot examples from a task's training split), so a demonstration never repeats
an evaluated item.
"""
from __future__ import annotations

import functools
import json
import math
import os
import random
import re
import shutil
from pathlib import Path

from .cache import cache_root, config_key
from .data import OFFLINE_SOURCES, fetch_corpus, offline_documents

SUITE_VERSION = 3
EVAL_SPLITS = ("validation", "test")     # never "train": calibration windows come from train
FEWSHOT_SPLIT = "train"                  # few-shot demonstrations (never evaluated)
FEWSHOT_POOL = 64                        # demonstrations per task, spread over the corpora
OFFLINE_TASKS = ("dlp_continuation", "dlp_lastword")
CHANCE = {"dlp_continuation": 0.25, "dlp_lastword": 0.25}
N_CHOICES = 4
DEFAULT_EXAMPLES = 1000                  # per task, spread evenly over the corpora

_ABBREV = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "gen", "col", "gov", "sen", "rep", "lt", "capt",
           "no", "vs", "inc", "co", "corp", "ltd", "mt", "ft", "u.s", "u.n", "a.m", "p.m", "e.g", "i.e", "etc"}
_WORD = re.compile(r"^[A-Za-z]{3,}$")


def sentences(text: str) -> list[str]:
    """Sentences of a document: lines ending in . ! ? (titles dropped), split after . ! ? + capital."""
    out = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if not line or not re.search(r"[.!?][\"')]*$", line):
            continue
        parts, buf = re.split(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z])", line), ""
        for part in parts:
            buf = f"{buf} {part}" if buf else part
            last = buf.split()[-1].rstrip(".").lower()
            if last in _ABBREV or re.fullmatch(r"[a-z]", last):
                continue          # "Mr. Smith", "J. Smith": not a sentence end
            out.append(buf)
            buf = ""
        if buf:
            out.append(buf)
    return out


def _corpus_sentences(corpus: str) -> list[tuple[str, list[str | None]]]:
    return _split_corpus(corpus, str(fetch_corpus(corpus).resolve()))


@functools.lru_cache(maxsize=8)
def _split_corpus(corpus: str, folder: str) -> list[tuple[str, list[str | None]]]:
    """Sentences of the validation/test documents; a sentence also found in the train split is None.

    The split is by document, but corpora repeat text across documents (BBC has duplicate
    articles, speeches repeat sentences): such sentences never enter a task item.
    """
    train = {x for _, text in offline_documents(corpus, "train") for x in sentences(text)}
    return [(doc_id, [None if x in train else x for x in sentences(text)])
            for split in EVAL_SPLITS for doc_id, text in offline_documents(corpus, split)]


@functools.lru_cache(maxsize=8)
def train_documents(corpus: str, folder: str) -> tuple:
    """Sentences of the train documents; a sentence also found in a validation/test document is None."""
    held_out = {x for split in EVAL_SPLITS for _, text in offline_documents(corpus, split) for x in sentences(text)}
    return tuple((doc_id, [None if x in held_out else x for x in sentences(text)])
                 for doc_id, text in offline_documents(corpus, FEWSHOT_SPLIT))


def _context_before(sents: list[str | None], i: int, lo: int, hi: int) -> str | None:
    """Whole sentences just before sentence i totalling lo..hi words, or None."""
    words, j = 0, i
    while j > 0 and words < lo:
        j -= 1
        if sents[j] is None:
            return None
        words += len(sents[j].split())
    return " ".join(sents[j:i]) if lo <= words <= hi else None


def _spread(cands: list, n: int, n_docs: int, rng: random.Random) -> list:
    """n candidates in a seeded order, at most a few per document so that every document contributes."""
    rng.shuffle(cands)
    cap, count, out = max(2, math.ceil(3 * n / max(n_docs, 1))), {}, []
    for c in cands:
        if count.get(c[0], 0) < cap:
            count[c[0]] = count.get(c[0], 0) + 1
            out.append(c)
            if len(out) == n:
                break
    return out


def continuation_items(corpus: str, docs, n: int, rng: random.Random) -> list[dict]:
    endings = [(d, s) for d, (_, sents) in enumerate(docs) for s in sents if s and 6 <= len(s.split()) <= 24]
    cands = []
    for d, (_, sents) in enumerate(docs):
        for i, s in enumerate(sents):
            if s and 6 <= len(s.split()) <= 24 and (ctx := _context_before(sents, i, 20, 50)):
                cands.append((d, ctx, s))

    def acceptable(s, true, wrong):
        k = len(true.split())
        return s != true and s not in wrong and 0.67 * k <= len(s.split()) <= 1.5 * k

    return _with_distractors(corpus, docs, cands, endings, n, rng, 400, acceptable)


def _with_distractors(corpus, docs, cands, pool, n, rng, sample_size, acceptable) -> list[dict]:
    """Items whose N_CHOICES - 1 wrong choices come from OTHER documents (seeded)."""
    items = []
    for d, ctx, true in _spread(cands, n, len(docs), rng):
        wrong = []
        for e, x in rng.sample(pool, min(len(pool), sample_size)):
            if e != d and acceptable(x, true, wrong):
                wrong.append(x)
                if len(wrong) == N_CHOICES - 1:
                    break
        if len(wrong) < N_CHOICES - 1:
            continue
        label = rng.randrange(N_CHOICES)
        choices = wrong[:label] + [true] + wrong[label:]
        items.append({"corpus": corpus, "doc": docs[d][0], "context": ctx, "choices": choices, "label": label})
    return items


def _split_last_word(passage: str) -> tuple[str, str] | None:
    head, _, last = passage.rpartition(" ")
    word = re.sub(r"[.!?\"')]+$", "", last)
    return (head, word) if head and _WORD.match(word) else None


def lastword_items(corpus: str, docs, n: int, rng: random.Random) -> list[dict]:
    cands, finals = [], []
    for d, (_, sents) in enumerate(docs):
        for i, s in enumerate(sents):
            split = _split_last_word(s) if s else None
            if split is None:
                continue
            finals.append((d, split[1]))
            ctx = _context_before(sents, i, 15, 45)
            if ctx is not None and 6 <= len(s.split()) <= 40:
                cands.append((d, f"{ctx} {split[0]}", split[1]))
    def acceptable(w, true, wrong):
        return w.lower() != true.lower() and w.lower() not in {x.lower() for x in wrong}

    return _with_distractors(corpus, docs, cands, finals, n, rng, 200, acceptable)


# task -> item generator (corpus, documents, n, rng) -> items; the fine-tuning set runs them on TRAIN documents
ITEM_BUILDERS = {"dlp_continuation": continuation_items, "dlp_lastword": lastword_items}


def task_yaml(task: str, data_file: Path, fewshot_file: Path) -> str:
    """lm-eval 0.4 local-task config: multiple choice over a JSONL file, acc and acc_norm; few-shot
    demonstrations from the train split."""
    return "\n".join([
        f"task: {task}", "tag: [dlp_offline]", "dataset_path: json", "dataset_kwargs:", "  data_files:",
        f"    test: {json.dumps(str(data_file))}", f"    train: {json.dumps(str(fewshot_file))}",
        "output_type: multiple_choice", "test_split: test", "training_split: train", "fewshot_split: train",
        'target_delimiter: " "', 'fewshot_delimiter: "\\n\\n"',
        "doc_to_text: context", "doc_to_choice: choices", "doc_to_target: label", "metric_list:",
        "  - {metric: acc, aggregation: mean, higher_is_better: true}",
        "  - {metric: acc_norm, aggregation: mean, higher_is_better: true}",
        f"metadata: {{version: {SUITE_VERSION}.0}}", ""])


def suite_key(n_examples: int = DEFAULT_EXAMPLES, seed: int = 0, corpora=OFFLINE_SOURCES) -> str:
    return config_key({"zeroshot_suite": SUITE_VERSION, "n": n_examples, "seed": seed, "corpora": list(corpora),
                       "splits": list(EVAL_SPLITS)})


def build_offline_suite(n_examples: int = DEFAULT_EXAMPLES, seed: int = 0, corpora=OFFLINE_SOURCES) -> Path:
    """Build (once; cached) the offline tasks; returns the include_path folder for lm-eval's TaskManager."""
    out = cache_root() / "zeroshot_tasks" / suite_key(n_examples, seed, corpora)
    if (out / ".complete").exists():
        return out
    sents = {c: _corpus_sentences(c) for c in corpora}
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    summary = {}
    for t, (task, build) in enumerate(ITEM_BUILDERS.items()):
        items = []
        for c, corpus in enumerate(corpora):
            share = n_examples // len(corpora) + (c < n_examples % len(corpora))
            items += build(corpus, sents[corpus], share, random.Random(f"{seed}:{task}:{corpus}"))
        random.Random(f"{seed}:{task}:order").shuffle(items)  # `limit` takes a mix of corpora
        for i, item in enumerate(items):
            item["id"] = i
        lines = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
        (tmp / f"{task}.jsonl").write_text(lines, encoding="utf-8")
        demos = []
        for c, corpus in enumerate(corpora):
            share = FEWSHOT_POOL // len(corpora) + (c < FEWSHOT_POOL % len(corpora))
            docs = list(train_documents(corpus, str(fetch_corpus(corpus).resolve())))
            demos += build(corpus, docs, share, random.Random(f"fewshot:{seed}:{task}:{corpus}"))
        for i, item in enumerate(demos):
            item["id"] = i
        (tmp / f"{task}_fewshot.jsonl").write_text(
            "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in demos), encoding="utf-8")
        (tmp / f"{task}.yaml").write_text(task_yaml(task, out / f"{task}.jsonl", out / f"{task}_fewshot.jsonl"))
        summary[task] = len(items)
    (tmp / "suite.json").write_text(json.dumps({"version": SUITE_VERSION, "n_examples": n_examples, "seed": seed,
                                                "corpora": list(corpora), "splits": list(EVAL_SPLITS),
                                                "items": summary}, indent=2))
    (tmp / ".complete").write_text("ok\n")
    if out.exists():   # another process built it meanwhile
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, out)
    return out


def load_items(task: str, suite_dir: Path | None = None, *, fewshot: bool = False) -> list[dict]:
    """The items of one offline task (for inspection and tests); fewshot: its demonstrations instead."""
    folder = suite_dir or build_offline_suite()
    name = f"{task}_fewshot.jsonl" if fewshot else f"{task}.jsonl"
    return [json.loads(line) for line in (Path(folder) / name).read_text(encoding="utf-8").splitlines()]
