"""bf16 evaluation of fp32-pruned models on a CPU with native bf16 (a benchmark, not a test).

The masks are made in fp32 (calibration, scores, SparseGPT's updates: nothing changes), then the
same pruned model is evaluated three ways on the default profile's texts (16 x 512 tokens each):
fp32; bf16 autocast over the fp32 weights (matmuls in bf16, norms, softmax and the loss in fp32:
what `eval_dtype="bfloat16"` runs); and a bf16 copy of the whole model. Reported per
configuration and text: the three perplexities, their differences from fp32, and the seconds.

    python benchmarks/eval_dtype.py --out benchmarks/results/eval_dtype_smollm2-135m.json
    python benchmarks/eval_dtype.py --runs "sparsegpt/dlp 70%" --out ... --merge   # add rows to a file
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlp_lib.evaluation import perplexity  # noqa: E402
from dlp_lib.experiment import ExperimentConfig, Lab  # noqa: E402
from dlp_lib.validation import cpu_supports_bf16  # noqa: E402

TEXTS = ("brown", "sotu", "mobydick")


def bf16_copy(model):
    twin = copy.deepcopy(model)
    for p in twin.parameters():  # buffers (rotary frequencies) stay fp32
        p.data = p.data.to(torch.bfloat16)
    return twin


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", default=None)
    ap.add_argument("--runs", nargs="+", default=None, help="names of the runs to measure (default: all)")
    ap.add_argument("--merge", action="store_true", help="keep the runs already in --out, replace those measured")
    args = ap.parse_args(argv)
    base = ExperimentConfig.from_profile("default", model=args.model, eval_dtype="same")
    runs = [("dense", None, TEXTS),
            ("wanda/uniform 70%", base.replace(method="wanda", allocation="uniform", sparsity=0.7), TEXTS),
            ("wanda/dlp 70%", base.replace(method="wanda", allocation="dlp", sparsity=0.7), ("brown",)),
            ("sparsegpt/dlp 70%", base.replace(method="sparsegpt", allocation="dlp", sparsity=0.7), TEXTS),
            ("magnitude/uniform 70%", base.replace(method="magnitude", allocation="uniform", sparsity=0.7), ("brown",)),
            ("wanda/dlp 50%", base.replace(method="wanda", allocation="dlp", sparsity=0.5), ("brown",))]
    if args.runs is not None:
        unknown = set(args.runs) - {name for name, _, _ in runs}
        if unknown:
            raise SystemExit(f"unknown --runs {sorted(unknown)}; allowed: {[name for name, _, _ in runs]}")
        runs = [r for r in runs if r[0] in args.runs]
    if args.merge and not (args.out and Path(args.out).exists()):
        raise SystemExit(f"--merge needs an existing --out file, got {args.out!r}")
    protocol = {"calib": base.calib, "nsamples": base.nsamples, "seqlen": base.seqlen, "neval": base.neval}
    if args.merge:
        old_protocol = json.loads(Path(args.out).read_text()).get("protocol")
        if old_protocol != protocol:  # rows measured under another protocol are not comparable
            raise SystemExit(f"--merge: {args.out} was measured with protocol {old_protocol}, this run uses "
                             f"{protocol}; write a new file instead")
    lab = Lab(args.model, progress=False, use_cache=True)  # the arguments are checked: now the work
    windows = {s: lab.eval_windows(s, base.seqlen, base.neval) for s in TEXTS}
    from dlp_lib.inference.provenance import provenance
    measured_by = provenance(Path(__file__).resolve().parents[1])
    out = {"model": args.model, "cpu_bf16": cpu_supports_bf16(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "protocol": protocol,
           "provenance": {name: measured_by for name, _, _ in runs},  # per run: --merge mixes invocations
           "runs": {}}
    for name, cfg, texts in runs:
        lab.ensure(cfg)
        row = {}
        for s in texts:
            t0 = time.perf_counter()
            p32 = perplexity(lab.model, windows[s], progress=False)
            t32 = time.perf_counter() - t0
            t0 = time.perf_counter()
            pac = perplexity(lab.model, windows[s], progress=False, compute_dtype=torch.bfloat16)
            tac = time.perf_counter() - t0
            twin = bf16_copy(lab.model)
            t0 = time.perf_counter()
            ptw = perplexity(twin, windows[s], progress=False)
            ttw = time.perf_counter() - t0
            del twin
            row[s] = {"fp32": p32, "autocast": pac, "bf16_copy": ptw, "seconds_fp32": t32, "seconds_autocast": tac,
                      "seconds_bf16_copy": ttw, "rel_autocast": pac / p32 - 1, "rel_bf16_copy": ptw / p32 - 1}
            print(f"{name:24s} {s:9s} fp32 {p32:10.4g}  autocast {pac / p32 - 1:+.3%} ({t32:.0f} -> {tac:.0f} s)  "
                  f"bf16 copy {ptw / p32 - 1:+.3%}", flush=True)
        out["runs"][name] = row
    if args.out:
        if args.merge:
            old = json.loads(Path(args.out).read_text())
            old["runs"].update(out["runs"])
            old.setdefault("provenance", {}).update(out["provenance"])
            out = old
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(markdown_table(out))
    return out


def markdown_table(out: dict) -> str:
    """The README's table: fp32 vs bf16 autocast perplexity and seconds, per configuration and text."""
    names = {"brown": "Brown", "sotu": "SOTU", "mobydick": "Moby-Dick"}
    lines = ["| model | text | fp32 | bf16 autocast | difference | seconds fp32 -> bf16 |",
             "|---|---|---:|---:|---:|---:|"]
    for run, row in out["runs"].items():
        for text, r in row.items():
            lines.append(f"| {run} | {names.get(text, text)} | {r['fp32']:.5g} | {r['autocast']:.5g} | "
                         f"{r['rel_autocast']:+.2%} | {r['seconds_fp32']:.0f} -> {r['seconds_autocast']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
