"""Table 5 with the paper's own engine: decode tokens/s of a dense and DLP/Uniform-pruned model
through four paths, in one run, on this CPU:

  torch-dense     the fp32 model on the plain matmul path (`DenseLinear`, torch.mv)
                  (every torch path decodes through --runtime's loop: lean by default, the same
                  modules without Hugging Face's per-token overhead, as DeepSparse's graph has none)
  ours-<format>   our compressed layers (csr: torch CSR fp32/int32; bitmask: bitmask + bf16 values,
                  our C++ kernel), each layer compressed below its measured break-even density
  ours-bitmask-dense  the unpruned model in the bitmask format (bf16 values, all mask bits set): the
                  bf16 twin of torch-dense, so ours-bitmask over it is the gain of sparsity alone
  ds-dense        DeepSparse 1.8.0 on the dense model's ONNX decoder step
  ds-sparse       DeepSparse on the pruned model's ONNX decoder step (it finds the zeros itself)

The ONNX graph is one fixed-shape decoder step (dlp_lib/inference/decoder_step.py): token,
position, attention bias and `context` cache slots in; logits and the token's keys/values out.
Before timing, DeepSparse's logits are checked against the same step in torch on the same tokens
(max |difference| <= LOGIT_TOLERANCE, the same argmax at every step), and the torch step against
the HF model. Repeats are interleaved (every path once per repeat and thread count); the JSON
(benchmarks/results/deepsparse_<model>.json) holds every timing, medians, IQRs, paired speedups
over torch-dense and ds-dense, the memory-traffic bound of our formats, and provenance.

    benchmarks/deepsparse/setup.sh                    # once: the engine's venv (Python 3.11 only)
    python benchmarks/deepsparse/bench.py             # full grid (~40 min on an idle 2-core machine, estimated)
    python benchmarks/deepsparse/bench.py --quick     # 70% DLP, 1 thread, 16 tokens, 2 repeats
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
VENV_PYTHON = HERE / ".venv" / "bin" / "python"
EXPORT_DEPS = HERE / ".export-deps"
LOGIT_TOLERANCE = 1e-2   # absolute, on logits of magnitude ~10-40 (fp32 in both engines)
PATHS_FIXED = ("torch-dense", "ds-dense", "ds-sparse")
FULL = dict(sparsities=[0.5, 0.6, 0.7, 0.8, 0.9], allocations=["uniform", "dlp"], threads=[1, 2], new_tokens=64,
            repeats=5)
QUICK = dict(sparsities=[0.7], allocations=["dlp"], threads=[1], new_tokens=16, repeats=2)


def environment_problem() -> str | None:
    """Why the DeepSparse side cannot run here, or None."""
    if not VENV_PYTHON.exists():
        return (f"the DeepSparse environment is missing ({VENV_PYTHON}); run benchmarks/deepsparse/setup.sh "
                "(Python 3.11, x86-64 Linux)")
    if not EXPORT_DEPS.exists():
        return f"the ONNX exporter's packages are missing ({EXPORT_DEPS}); run benchmarks/deepsparse/setup.sh"
    return None


class Worker:
    """The DeepSparse process (worker.py in the engine's venv), one JSON line per request."""

    def __init__(self):
        self.proc = subprocess.Popen([str(VENV_PYTHON), str(HERE / "worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def __call__(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the DeepSparse worker exited (code {self.proc.poll()}) on {req['op']}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"DeepSparse worker, {req['op']}: {reply['error']}")
        return reply

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def summarize(runs: dict[str, list[float]], cpu: dict[str, list[float]]) -> dict:
    """Per path: ms/token runs (and the process CPU ms/token of each, for the torch paths), median, IQR,
    tokens/s; paired speedups over each dense baseline run."""
    from dlp_lib.inference.decode_bench import iqr
    out = {}
    for path, ms in runs.items():
        out[path] = {"ms_per_token": ms, "median_ms": statistics.median(ms), "iqr_ms": iqr(ms),
                     "tokens_per_s": 1e3 / statistics.median(ms), **({"cpu_ms_per_token": cpu[path]} if path in cpu else {})}
        for base in ("torch-dense", "ds-dense", "ours-bitmask-dense"):
            if base in runs and path != base:
                ratios = [b / m for b, m in zip(runs[base], ms)]
                out[path][f"speedup_vs_{base}"] = {"median": statistics.median(ratios), "iqr": iqr(ratios)}
    return out


def parse_args(argv=None) -> argparse.Namespace:
    from dlp_lib.inference.decode import RUNTIMES
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--sparsities", type=float, nargs="+", help=f"default {FULL['sparsities']}")
    p.add_argument("--allocations", nargs="+", help=f"default {FULL['allocations']}")
    p.add_argument("--method", default="wanda", choices=("magnitude", "wanda", "sparsegpt"))
    p.add_argument("--formats", nargs="+", default=["csr", "bitmask"], help="our compressed formats to time")
    p.add_argument("--threads", type=int, nargs="+", help=f"default {FULL['threads']}")
    p.add_argument("--new-tokens", type=int, help=f"default {FULL['new_tokens']}")
    p.add_argument("--repeats", type=int, help=f"default {FULL['repeats']}")
    p.add_argument("--runtime", default="lean", choices=RUNTIMES,
                   help="decoding loop of the torch paths: lean (no HF per-token overhead, as in an engine) or hf")
    p.add_argument("--check-steps", type=int, default=8, help="tokens on which DeepSparse's logits are checked")
    p.add_argument("--nsamples", type=int, default=8, help="calibration windows for pruning")
    p.add_argument("--seqlen", type=int, default=256)
    p.add_argument("--quick", action="store_true",
                   help="70%% DLP only, 1 thread, 16 tokens, 2 repeats (options given explicitly win)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    for k, v in (QUICK if args.quick else FULL).items():  # what the command line sets explicitly wins
        if getattr(args, k) is None:
            setattr(args, k, v)
    from dlp_lib.inference.sparse_linear import SPARSE_FORMATS
    bad = [f for f in args.formats if f not in SPARSE_FORMATS]
    if bad:
        p.error(f"unknown format {bad[0]!r}; allowed: {', '.join(SPARSE_FORMATS)}")
    from dlp_lib.allocation import get_allocator
    for a in args.allocations:
        try:
            get_allocator(a)
        except ValueError as exc:
            p.error(str(exc))
    if any(not 0 < s < 1 for s in args.sparsities):
        p.error(f"sparsities must be in (0, 1), got {args.sparsities}")
    if any(t < 1 for t in args.threads) or args.new_tokens < 1 or args.repeats < 1 or args.check_steps < 1:
        p.error("threads, --new-tokens, --repeats and --check-steps must be >= 1")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    problem = environment_problem()
    if problem:
        print(f"DeepSparse benchmark skipped: {problem}")
        raise SystemExit(2)
    sys.path.insert(0, str(EXPORT_DEPS))
    import torch

    from dlp_lib.experiment import ExperimentConfig, get_lab
    from dlp_lib.inference.decode_bench import PROMPT
    from dlp_lib.inference.lean_decode import check_lean_model
    from dlp_lib.inference.provenance import provenance
    cfg = ExperimentConfig.from_profile("smoke" if args.model.startswith("tiny-") else "default", model=args.model,
                                        method=args.method, nsamples=args.nsamples, seqlen=args.seqlen,
                                        dtype="float32")
    configs = [None] + [cfg.replace(sparsity=s, allocation=a) for a in args.allocations for s in args.sparsities]
    lab = get_lab(cfg.model, cfg.device, cfg.dtype, progress=False)
    if args.runtime == "lean":  # before any export or pruning: the model must be one the lean loop runs
        check_lean_model(lab.model)
    prompt = lab.tokenizer(PROMPT, return_tensors="pt").input_ids[:, :64]
    out_path = args.out or ROOT / "benchmarks" / "results" / f"deepsparse_{args.model}{'_quick' if args.quick else ''}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    worker = Worker()
    result = {"provenance": {**provenance(), "engine": worker(op="info")},
              "complete": False, "grid": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "prompt_tokens": int(prompt.shape[1]), "logit_tolerance": LOGIT_TOLERANCE,
              "graph": "one fixed-shape decoder step, prompt + new-tokens cache slots, fp32 (decoder_step.py)",
              "configs": []}
    old_threads = torch.get_num_threads()
    try:
        run_grid(args, lab, configs, prompt, worker, result, lambda: out_path.write_text(json.dumps(result, indent=1)))
    finally:
        torch.set_num_threads(old_threads)
        worker.close()
        lab.ensure(None)
    result["complete"] = True
    out_path.write_text(json.dumps(result, indent=1))
    print(f"wrote {out_path}")
    return result


def run_grid(args, lab, configs, prompt, worker, result, checkpoint) -> None:
    import tempfile

    import numpy as np
    import torch

    from dlp_lib.evaluation import achieved_sparsity
    from dlp_lib.inference.break_even import break_even_density
    from dlp_lib.inference.decode_bench import ms_per_token
    from dlp_lib.inference.decoder_step import DecoderStep, export_onnx, step_logits
    from dlp_lib.inference.sparsify import sparsify_model
    from dlp_lib.models import decoder_blocks, linear_modules, linear_sublayers

    context = int(prompt.shape[1]) + args.new_tokens
    check_tokens = prompt[0, :args.check_steps].tolist()
    tmp = Path(tempfile.mkdtemp(prefix="dlp_deepsparse_", dir=HERE))
    dense_model = None
    try:
        for cfg in configs:
            name = "dense" if cfg is None else f"{cfg.allocation}_{cfg.sparsity:g}"
            lab.ensure(cfg)
            if dense_model is None:
                dense_model = sparsify_model(lab.model, break_even=0.0, inplace=False).model
                dense_bitmask = (sparsify_model(lab.model, fmt="bitmask", break_even=1.0, inplace=False).model
                                 if "bitmask" in args.formats else None)
            entry = {"name": name, "allocation": None if cfg is None else cfg.allocation,
                     "sparsity": 0.0 if cfg is None else cfg.sparsity,
                     "achieved_sparsity": achieved_sparsity(lab.model)["overall"], "threads": {}}
            step = DecoderStep(lab.model, context)
            with torch.no_grad():
                hf = lab.model(torch.tensor([check_tokens])).logits[0]
            ref = step_logits(step, check_tokens)
            onnx_path = tmp / f"{name}.onnx"
            t0 = time.perf_counter()
            export_onnx(step, onnx_path)
            entry["export_s"] = time.perf_counter() - t0
            for t in args.threads:
                entry["threads"][str(t)] = {"compile_s": worker(op="compile", key=f"{name}/{t}", path=str(onnx_path),
                                                                threads=t)["compile_s"]}
            worker(op="logits", key=f"{name}/{args.threads[0]}", tokens=check_tokens, out=str(tmp / "logits.npy"))
            ds = torch.from_numpy(np.load(tmp / "logits.npy"))
            entry["logit_check"] = {"steps": len(check_tokens),
                                    "step_vs_hf_max_abs": float((ref - hf).abs().max()),
                                    "deepsparse_vs_torch_max_abs": float((ds - ref).abs().max()),
                                    "logit_scale": float(ref.abs().max()),
                                    "argmax_agree": bool((ds.argmax(-1) == ref.argmax(-1)).all())}
            onnx_path.unlink()
            lc = entry["logit_check"]
            if lc["deepsparse_vs_torch_max_abs"] > LOGIT_TOLERANCE or not lc["argmax_agree"]:
                raise RuntimeError(f"{name}: DeepSparse's logits differ from torch's by "
                                   f"{lc['deepsparse_vs_torch_max_abs']:.3g} (tolerance {LOGIT_TOLERANCE}) or in argmax")
            if cfg is None:  # the dense engines stay compiled: every sparse config is paired with them
                result["configs"].append(entry)
                for t in args.threads:
                    entry["threads"][str(t)]["paths"] = {}
                checkpoint()
                continue
            ours = {}
            for t in args.threads:
                torch.set_num_threads(t)
                for fmt in args.formats:
                    shapes = {tuple(l.weight.shape) for b in decoder_blocks(lab.model)
                              for l in linear_modules(linear_sublayers(b), "the sparse inference path").values()}
                    be = {s: break_even_density(s, fmt=fmt, threads=t).density for s in shapes}
                    rep = sparsify_model(lab.model, fmt=fmt, threads=t, break_even=be, inplace=False)
                    ours[(t, fmt)] = rep
                    entry["threads"][str(t)][f"ours-{fmt}"] = {
                        "break_even": {f"{s[0]}x{s[1]}": v for s, v in sorted(be.items())},
                        "format_counts": rep.format_counts(), "memory_bound_speedup": rep.memory_bound_speedup(),
                        "bytes_per_token": rep.bytes_per_token()}
            paths = (*PATHS_FIXED, *[f"ours-{f}" for f in args.formats], *(("ours-bitmask-dense",) if dense_bitmask else ()))
            runs = {t: {p: [] for p in paths} for t in args.threads}
            cpu = {t: {p: [] for p in paths if not p.startswith("ds-")} for t in args.threads}
            for _ in range(args.repeats):  # interleaved: every path once per repeat and thread count
                for t in args.threads:
                    torch.set_num_threads(t)
                    r = runs[t]
                    torch_paths = [("torch-dense", dense_model), *[(f"ours-{fmt}", ours[(t, fmt)].model)
                                                                   for fmt in args.formats]]
                    if dense_bitmask is not None:
                        torch_paths.append(("ours-bitmask-dense", dense_bitmask))
                    for path, model in torch_paths:
                        wall, cpu_ms, _ = ms_per_token(model, prompt, args.new_tokens, args.runtime)
                        r[path].append(wall)
                        cpu[t][path].append(cpu_ms)
                    for path, key in (("ds-dense", f"dense/{t}"), ("ds-sparse", f"{name}/{t}")):
                        r[path].append(worker(op="decode", key=key, prompt=prompt[0].tolist(),
                                              new_tokens=args.new_tokens)["ms_per_token"])
            for t in args.threads:
                entry["threads"][str(t)]["paths"] = summarize(runs[t], cpu[t])
            result["configs"].append(entry)
            print(f"{name}: " + "; ".join(
                f"{t} thr " + ", ".join(f"{p} {v['tokens_per_s']:.1f} tok/s" for p, v in
                                        entry["threads"][str(t)]["paths"].items()) for t in args.threads))
            del ours
            checkpoint()
    finally:
        for f in tmp.glob("*"):
            f.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    main()
