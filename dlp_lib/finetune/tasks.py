"""Training task set for layer-sampled fine-tuning (stand-in for Commonsense170K, Table 18).

The offline evaluation suite (`dlp_lib.zeroshot_tasks`) builds its multiple-choice items from
the VALIDATION and TEST documents of the offline corpora. This module runs the same item
generators on the TRAIN documents and turns each item into an instruction-style example:
the context, then the correct choice, with the loss on the answer tokens only (as in
instruction tuning on Commonsense170K). Sentences that also occur in a validation/test
document are excluded (corpora repeat text across documents), so no evaluated sentence is
ever trained on; `check_no_overlap` asserts it against the built evaluation suite.
"""
from __future__ import annotations

import random

import torch

from ..data import OFFLINE_SOURCES, fetch_corpus
from ..zeroshot_tasks import ITEM_BUILDERS, OFFLINE_TASKS, train_documents
from .loop import Examples

TRAIN_SPLIT = "train"


def training_items(n_per_task: int, seed: int = 0, corpora=OFFLINE_SOURCES, tasks=OFFLINE_TASKS) -> list[dict]:
    """Multiple-choice items of the offline tasks built from TRAIN documents only (seeded, deterministic; cached)."""
    from ..cache import cached, versioned
    from ..zeroshot_tasks import SUITE_VERSION
    key = versioned(("eval", "finetune"), n=n_per_task, seed=seed, corpora=list(corpora), tasks=list(tasks),
                    suite=SUITE_VERSION, split=TRAIN_SPLIT)
    return cached("finetune_task_items", key, lambda: _training_items(n_per_task, seed, tuple(corpora), tuple(tasks)))


def _training_items(n_per_task: int, seed: int, corpora, tasks) -> list[dict]:
    if n_per_task < 1:
        raise ValueError(f"n_per_task must be >= 1, got {n_per_task}")
    bad = [t for t in tasks if t not in ITEM_BUILDERS]
    if bad:
        raise ValueError(f"unknown training task(s) {bad}; allowed: {', '.join(ITEM_BUILDERS)}")
    items = []
    for task in tasks:
        for c, corpus in enumerate(corpora):
            docs = list(train_documents(corpus, str(fetch_corpus(corpus).resolve())))
            share = n_per_task // len(corpora) + (c < n_per_task % len(corpora))
            for item in ITEM_BUILDERS[task](corpus, docs, share, random.Random(f"train:{seed}:{task}:{corpus}")):
                items.append({**item, "task": task, "split": TRAIN_SPLIT})
    random.Random(f"train:{seed}:order").shuffle(items)
    return items


def check_no_overlap(items: list[dict], eval_items: list[dict]) -> None:
    """Refuse a training set that shares a document, a passage or an answer sentence with the evaluation items.

    Single-word answers (the last-word task) naturally recur; their whole passage may not.
    """
    eval_docs = {(it["corpus"], it["doc"]) for it in eval_items}
    eval_text = set()
    for it in eval_items:
        eval_text |= {it["context"], it["context"] + " " + it["choices"][it["label"]], it["choices"][it["label"]]}
    for it in items:
        answer = it["choices"][it["label"]]
        if (it["corpus"], it["doc"]) in eval_docs:
            raise ValueError(f"training item from document {it['doc']!r} of {it['corpus']} is also evaluated")
        if it["context"] in eval_text or it["context"] + " " + answer in eval_text:
            raise ValueError(f"training passage {it['context'][:60]!r} occurs in the evaluation items")
        if len(answer.split()) > 1 and answer in eval_text:
            raise ValueError(f"training answer {answer[:60]!r} occurs in the evaluation items")


def tokenize_items(items: list[dict], tokenizer, seqlen: int) -> Examples:
    """(N, seqlen) examples `context + " " + answer`, loss on the answer tokens only, right-padded.

    The continuation is tokenised separately after the context (as lm-eval scores it); long
    contexts are cut from the left so that the answer always fits.
    """
    if not items:
        raise ValueError("no training items")
    bos = [tokenizer.bos_token_id] if _prepends_bos(tokenizer) else []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((len(items), seqlen), pad, dtype=torch.long)
    labels = torch.full((len(items), seqlen), -100, dtype=torch.long)
    mask = torch.zeros((len(items), seqlen), dtype=torch.long)
    for i, it in enumerate(items):
        ctx = tokenizer(it["context"], add_special_tokens=False).input_ids
        ans = tokenizer(" " + it["choices"][it["label"]], add_special_tokens=False).input_ids
        ans = ans[: seqlen - len(bos) - 1]
        ctx = ctx[max(0, len(ctx) - (seqlen - len(bos) - len(ans))):]
        row = bos + ctx + ans
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, len(row) - len(ans): len(row)] = torch.tensor(ans)
        mask[i, : len(row)] = 1
    return Examples(ids, labels, mask, source={"source": "offline-tasks", "split": TRAIN_SPLIT, "n": len(items),
                                               "seqlen": seqlen})


def _prepends_bos(tokenizer) -> bool:
    ids = tokenizer("a").input_ids
    return tokenizer.bos_token_id is not None and len(ids) > 0 and ids[0] == tokenizer.bos_token_id
