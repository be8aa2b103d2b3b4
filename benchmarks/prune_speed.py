#!/usr/bin/env python
"""Speed and memory of DLP's passes against the physical floor (the paper's Table 6 analogue).

A benchmark, not a test. In ONE run it measures:

  floor        the forwards the method cannot avoid, timed in this run: three dense passes of the
               calibration set through every block (one for pass 1's statistics, two per block
               in the pruning pass: statistics before pruning, outputs after). Weights resident
               on the device, activations in place, nothing else (no hooks, no copies).
  pass1        DLP's ratio pass (compute_dense_statistics: one forward per block, Wanda norms,
               every layer statistic of the block's pool of scores), weights offloaded to the CPU.
  wanda        Wanda pruning with the DLP plan (prune_model, sequential), offloaded.
  sparsegpt    SparseGPT pruning with the DLP plan, offloaded.
  *_stream     pass 1 and Wanda with the calibration activations streamed from CPU memory.

each with its time, peak GPU memory (allocated and reserved) and ratio to the floor.

GPU, a randomly initialised LLaMA-2-7B-shaped model (no download), the paper's 128 x 2048:
    python benchmarks/prune_speed.py --shape llama2-7b --nsamples 128 --seqlen 2048 --device cuda
CPU, the embedded smollm2-135m at 32 x 512 BBC windows (twice the default profile's calibration):
    python benchmarks/prune_speed.py --model smollm2-135m --device cpu --nsamples 32 --seqlen 512
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from dlp_lib.block_stats import compute_dense_statistics, grouped_pool_statistics  # noqa: E402
from dlp_lib.calibration import CalibrationEngine, pin_block_weights  # noqa: E402
from dlp_lib.engine.replay import first_tensor  # noqa: E402
from dlp_lib.models import decoder_blocks, linear_sublayers  # noqa: E402
from dlp_lib.allocation import build_plan  # noqa: E402
from dlp_lib.pruning import prune_model  # noqa: E402
from dlp_lib.scores import wanda_scores  # noqa: E402

SHAPES = {  # LlamaConfig fields of the paper's models (random weights, no download); "tiny" for smoke runs
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=1000),
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32, vocab_size=32000),
    "llama2-13b": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                       num_key_value_heads=40, vocab_size=32000),
    "llama2-70b": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                       num_key_value_heads=8, vocab_size=32000),
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
GIB = 2 ** 30


def log(*args):
    print(*args, flush=True)


# ---------------------------------------------------------------- models and data
def random_model(shape: str, layers: int | None, dtype: torch.dtype, device: torch.device):
    """A LLaMA-shaped model with random weights (initialised on the GPU if there is one), its
    blocks in pinned CPU memory and everything else on the CPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, rms_norm_eps=1e-5,
                      tie_word_embeddings=False, use_cache=False)
    if layers:
        cfg.num_hidden_layers = layers
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = LlamaForCausalLM(cfg).eval()
    finally:
        torch.set_default_dtype(prev)
    if device.type == "cuda":
        for block in decoder_blocks(model):
            for p in block.parameters():
                pinned = torch.empty(p.shape, dtype=p.dtype, pin_memory=True)
                p.data = pinned.copy_(p.data)
        model.to("cpu")
        torch.cuda.empty_cache()
    return model


def real_model(name: str, dtype: torch.dtype, nsamples: int, seqlen: int, calib: str):
    from dlp_lib.data import calibration_windows
    from dlp_lib.models import load_model

    model, tok = load_model(name, dtype=dtype, device="cpu")
    return model, tok, calibration_windows(calib, tok, nsamples, seqlen, 0)


# ---------------------------------------------------------------- measuring
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores visible)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, device: torch.device, fn, results: dict, floor: float | None = None):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    rec = {"seconds": time.perf_counter() - t0}
    if device.type == "cuda":
        rec["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / GIB
        rec["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / GIB
    if floor:
        rec["x_floor"] = rec["seconds"] / floor
    results[name] = rec
    log(f"  {name:28s} {rec['seconds']:8.2f} s" + (f"  peak {rec['peak_allocated_gib']:6.2f} GiB allocated, "
                                                   f"{rec['peak_reserved_gib']:6.2f} reserved"
                                                   if "peak_allocated_gib" in rec else ""))
    return out


@torch.no_grad()
def to_device(value, device):
    """A captured block argument on `device` (tensors and tuples of them; anything else as it is)."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(to_device(v, device) for v in value)
    return value


def floor_passes(model, ids, device, act_dtype, batch_size) -> dict:
    """Three dense passes through every block, timed block by block (weights resident while timed)."""
    engine = CalibrationEngine(model, ids, device=device, act_dtype=act_dtype, batch_size=batch_size, progress=False)
    acts, kwargs = engine.capture_inputs()
    kwargs = {k: to_device(v, device) for k, v in kwargs.items()}
    passes = [0.0, 0.0, 0.0]
    for block in decoder_blocks(model):
        homes = [(p, p.data) for p in block.parameters()]
        for p, h in homes:
            p.data = h.to(device, non_blocking=True)
        w_dtype = homes[0][1].dtype
        sync(device)
        for r in range(3):
            t0 = time.perf_counter()
            for i, x in enumerate(acts):
                y = first_tensor(block(x.to(w_dtype), **kwargs)).to(act_dtype)
                if r == 2:
                    acts[i] = y  # the last pass feeds the next block
            sync(device)
            passes[r] += time.perf_counter() - t0
        for p, h in homes:
            p.data = h
    return {"seconds": sum(passes), "one_pass_seconds": passes}


def snapshot(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in decoder_blocks(model).parameters()]


def restore(model, snap) -> None:
    with torch.no_grad():
        for p, s in zip(decoder_blocks(model).parameters(), snap):
            p.copy_(s)


# ---------------------------------------------------------------- GPU-only checks
@torch.no_grad()
def gpu_checks(device, hidden: int, inter: int) -> dict:
    """Quick numerical checks of the GPU paths on data of the model's shape."""
    from dlp_lib import sparsegpt as sg
    from dlp_lib.calibration import HessianAccumulator, WandaNorms
    from dlp_lib.engine.statistics import mixed_gram_ok
    from dlp_lib.scores import NMPattern

    out = {}
    g = torch.Generator(device=device).manual_seed(0)
    x = (torch.randn(2048, hidden, device=device, generator=g) * 2).half()
    layer = torch.nn.Linear(hidden, hidden, bias=False, device=device)
    out["mixed_gram_available"] = mixed_gram_ok(device)
    h = HessianAccumulator(layer)
    h.add(x)
    ref = x.double().t() @ x.double()
    out["hessian_fp16_rel_err"] = float((h.H.double() - ref).norm() / ref.norm())
    wn = WandaNorms(layer)
    wn.add(x)
    ref = x.double().pow(2).sum(0)
    out["wanda_norms_fp16_rel_err"] = float(((wn.sq_sum.double() - ref).abs() / ref).max())
    # pool statistics on the GPU (histogram, never concatenated) == on the CPU (concatenated)
    w = torch.randn(inter, hidden, device=device, generator=g).half()
    norms = torch.rand(hidden, device=device, generator=g) * 3
    parts = {"a": (w, norms), "b": (w[: hidden], norms)}
    t0 = time.perf_counter()
    gpu_block, gpu_subs = grouped_pool_statistics(parts)
    sync(device)
    out["pool_stats_gpu_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    grouped_pool_statistics(parts)
    sync(device)
    out["pool_stats_gpu_seconds_warm"] = time.perf_counter() - t0
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        grouped_pool_statistics(parts)
        sync(device)
    log(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=40))
    cpu_block, _ = grouped_pool_statistics({k: (v[0].cpu(), v[1].cpu()) for k, v in parts.items()})
    out["pool_stats_numel"] = gpu_block["numel"]
    out["pool_median_equal_cpu"] = gpu_block["median"] == cpu_block["median"]
    out["pool_outliers_equal_cpu"] = gpu_block["outlier_ratio"] == cpu_block["outlier_ratio"]
    out["pool_var_rel_diff_cpu"] = abs(gpu_block["var"] - cpu_block["var"]) / cpu_block["var"]
    # SparseGPT: the captured column loop gives exactly the eager loop's result
    X = torch.randn(4096, hidden, device=device, generator=g) @ torch.randn(hidden, hidden, device=device,
                                                                           generator=g) * 0.05
    H = 2.0 / X.shape[0] * X.t() @ X
    W = torch.randn(hidden, hidden, device=device, generator=g).half()
    for label, kw in (("unstructured", dict(ratio=0.6)), ("nm24", dict(ratio=0.0, nm=NMPattern(2, 4)))):
        res = {}
        for mode in ("0", "1"):
            os.environ["DLP_SPARSEGPT_GRAPHS"] = mode
            w = W.clone()
            sg.sparsegpt_prune_(w, H, **kw)  # warm-up (and capture)
            w = W.clone()
            sync(device)
            t0 = time.perf_counter()
            mask = sg.sparsegpt_prune_(w, H, **kw)
            sync(device)
            res[mode] = (w, mask, time.perf_counter() - t0)
        os.environ.pop("DLP_SPARSEGPT_GRAPHS")
        out[f"sparsegpt_{label}_graph_equals_eager"] = bool(torch.equal(res["0"][0], res["1"][0])
                                                            and torch.equal(res["0"][1], res["1"][1]))
        out[f"sparsegpt_{label}_layer_seconds_eager"] = res["0"][2]
        out[f"sparsegpt_{label}_layer_seconds_graph"] = res["1"][2]
    sg.clear_graph_cache()
    return out


@torch.no_grad()
def reference_pooling(model, ids, device, act_dtype) -> dict:
    """What the reference code does per block: scores pooled (torch.cat) on the CPU, CPU median."""
    res = {}

    def visit(v):
        if v.index:
            return False
        t0 = time.perf_counter()
        pool = torch.cat([wanda_scores(layer.weight, v.stats["wanda"][n]).flatten().cpu()
                          for n, layer in v.sublayers.items()])
        res["cpu_pool_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pool.median()
        res["cpu_median_seconds"] = time.perf_counter() - t0
        res["numel"] = pool.numel()
        t0 = time.perf_counter()
        grouped_pool_statistics({n: (layer.weight, v.stats["wanda"][n]) for n, layer in v.sublayers.items()})
        sync(device)
        res["ours_all_statistics_seconds"] = time.perf_counter() - t0
        return False

    class _Done(Exception):
        pass

    def first_only(v):
        visit(v)
        raise _Done

    try:
        CalibrationEngine(model, ids[:8], device=device, act_dtype=act_dtype, progress=False).run(first_only)
    except _Done:
        pass
    return res


# ---------------------------------------------------------------- Table 6: metric time per method
def metric_time_table(model, ids, device, dtype, args) -> dict:
    """The paper's Table 6 analogue on this model: seconds of the pruning metric (scores, mask,
    SparseGPT's update; forwards excluded, synchronised timers) summed over the blocks, Magnitude /
    Wanda / SparseGPT x Uniform / DLP, interleaved repeats with 95% t-intervals (the library's own
    `inference.metric_time` functions, as the CPU benchmark uses them)."""
    from dlp_lib.inference.metric_time import collect_block_statistics, t_interval, time_block_metric

    blocks = decoder_blocks(model)
    timed = list(range(len(blocks))) if not args.metric_blocks else list(args.metric_blocks)
    nstat = min(args.nsamples, args.metric_nsamples)
    stats = compute_dense_statistics(model, ids[:nstat], device=device, act_dtype=dtype, progress=False)
    plans = {a: build_plan(a, args.sparsity, stats=stats) for a in ("uniform", "dlp")}
    block_stats = collect_block_statistics(model, ids[:nstat], device=device, progress=False)
    times = {m: {a: [] for a in plans} for m in ("magnitude", "wanda", "sparsegpt")}
    for _ in range(args.metric_repeats):
        for m in times:
            for a, plan in plans.items():
                stat = {"wanda": "wanda", "sparsegpt": "hessian"}.get(m)
                total = 0.0
                for b in timed:
                    s = {stat: block_stats[b][stat]} if stat else {}
                    total += time_block_metric(blocks[b], b, s, plan, m, device=device)[0]
                times[m][a].append(total * len(blocks) / len(timed))
    return {"seconds": times, "ci95": {m: {a: t_interval(v) for a, v in d.items()} for m, d in times.items()},
            "timed_blocks": timed, "n_blocks": len(blocks), "repeats": args.metric_repeats,
            "statistics_nsamples": nstat, "sparsity": args.sparsity}


# ---------------------------------------------------------------- numerics (16-bit vs fp32)
def numerics(model_name: str, device: torch.device, nsamples: int, seqlen: int, neval: int, sparsities,
             calib: str = "bbc", eval_source: str = "brown", windows_file: str | None = None) -> dict:
    """DLP plan and DLP+Wanda perplexity with fp16/bf16 (activations only, and whole model) vs fp32.

    windows_file: a torch file {"calib": (N, T) ids, "eval": (M, T) ids} tokenised elsewhere (the
    GPU machine has neither the corpora nor their tokenizer cache)."""
    from dlp_lib.evaluation import perplexity
    from dlp_lib.models import load_model

    if windows_file:
        model, _ = load_model(model_name, dtype=torch.float32, device="cpu")
        data = torch.load(windows_file)
        ids, windows = data["calib"], data["eval"]
        nsamples, seqlen, neval = ids.shape[0], ids.shape[1], windows.shape[0]
    else:
        from dlp_lib.data import evaluation_windows
        model, tok, ids = real_model(model_name, torch.float32, nsamples, seqlen, calib)
        windows = evaluation_windows(eval_source, tok, seqlen, neval)
    model.to(device)
    dense = {k: v.detach().clone() for k, v in model.state_dict().items()}
    variants = [("float32", torch.float32, None)]
    if device.type == "cuda":
        variants += [("float16", torch.float16, None), ("bfloat16", torch.bfloat16, None)]
    else:  # CPU: 16-bit activation storage with fp32 compute, and a bf16 model (fp16 matmuls are slow here)
        variants += [("act_float16", torch.float32, torch.float16), ("act_bfloat16", torch.float32, torch.bfloat16),
                     ("bfloat16", torch.bfloat16, None)]
    out, ref = {}, {}
    for label, wdtype, act in variants:
        model.to(torch.float32)
        model.load_state_dict(dense)
        model.to(wdtype)
        t0 = time.perf_counter()
        rec = {"dense_ppl": perplexity(model, windows, device=device, progress=False)}
        stats = compute_dense_statistics(model, ids, device=device, act_dtype=act, progress=False)
        s = stats.layer_statistic("median")
        for sp in sparsities:
            model.to(torch.float32)
            model.load_state_dict(dense)
            model.to(wdtype)
            plan = build_plan("dlp", sp, stats=stats)
            prune_model(model, plan, "wanda", ids, device=device, act_dtype=act, progress=False)
            rec[str(sp)] = {"ppl": perplexity(model, windows, device=device, progress=False), "ratios": plan.ratios}
        rec["seconds"] = time.perf_counter() - t0
        if not ref:
            ref = {"rec": rec, "median": s}
        else:
            rec["dense_ppl_rel_diff"] = rec["dense_ppl"] / ref["rec"]["dense_ppl"] - 1
            rec["max_median_rel_diff"] = max(abs(a - b) / abs(b) for a, b in zip(s, ref["median"]))
            for sp in sparsities:
                r, r0 = rec[str(sp)], ref["rec"][str(sp)]
                r["max_ratio_diff"] = max(abs(a - b) for a, b in zip(r["ratios"], r0["ratios"]))
                r["ppl_rel_diff"] = r["ppl"] / r0["ppl"] - 1
        out[label] = rec
        log(f"  numerics {label:14s} dense ppl {rec['dense_ppl']:8.3f} " + " ".join(
            f"| {sp}: ppl {rec[str(sp)]['ppl']:8.3f}" + (f" ({100 * rec[str(sp)]['ppl_rel_diff']:+.2f}%, max |dR| "
                                                        f"{rec[str(sp)]['max_ratio_diff']:.1e})"
                                                        if "ppl_rel_diff" in rec[str(sp)] else "")
            for sp in sparsities) + f"  [{rec['seconds']:.1f} s]")
    return {"model": model_name, "calib": calib, "eval": eval_source, "nsamples": nsamples, "seqlen": seqlen,
            "neval": neval, "eval_seqlen": windows.shape[1], "sparsities": list(sparsities), "variants": out}


# ---------------------------------------------------------------- main
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama2-7b", help="random model shape")
    ap.add_argument("--layers", type=int, default=None, help="override the number of blocks (e.g. a 70B shape "
                    "with a few blocks measures its per-block peak memory)")
    ap.add_argument("--model", default=None, help="a real model instead (e.g. smollm2-135m; BBC calibration)")
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: float16 on GPU, float32 on CPU")
    ap.add_argument("--sparsity", type=float, default=0.7)
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["floor", "resident", "sparsegpt", "stream", "checks", "reference", "metric", "all"],
                    help="phases to leave out ('resident': pass 1 and Wanda with activations on the GPU; "
                         "'all': everything but --numerics)")
    ap.add_argument("--metric-repeats", type=int, default=3, help="Table 6 phase: interleaved repeats")
    ap.add_argument("--metric-blocks", type=int, nargs="*", default=None,
                    help="Table 6 phase: time only these blocks (totals scaled to all blocks)")
    ap.add_argument("--metric-nsamples", type=int, default=32,
                    help="Table 6 phase: calibration windows for the statistics (the metric's cost does not "
                         "depend on them)")
    ap.add_argument("--numerics", action="store_true", help="also fp16/bf16 vs fp32 (needs --model)")
    ap.add_argument("--numerics-sparsities", type=float, nargs="*", default=None, help="default: --sparsity")
    ap.add_argument("--numerics-windows", default=None, nargs="*",
                    help="torch files {'calib', 'eval'} of token windows for --numerics (instead of the corpora)")
    ap.add_argument("--numerics-nsamples", type=int, default=32)
    ap.add_argument("--numerics-seqlen", type=int, default=512)
    ap.add_argument("--numerics-neval", type=int, default=32)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    dtype = DTYPES[args.dtype or ("float16" if device.type == "cuda" else "float32")]
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
            "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "dtype": str(dtype),
            "nsamples": args.nsamples, "seqlen": args.seqlen, "batch_size": args.batch_size,
            "sparsity": args.sparsity, "command": " ".join(sys.argv)}
    import transformers
    info["transformers"] = transformers.__version__
    results: dict = {"info": info}
    log(json.dumps(info))

    skip = set(args.skip)
    if "all" in skip:
        skip |= {"floor", "resident", "sparsegpt", "stream", "checks", "reference", "metric"}
    if skip >= {"floor", "resident", "sparsegpt", "stream", "checks", "reference", "metric"}:
        if args.numerics:
            run_numerics(args, device, results)
        return finish(args, results)

    t0 = time.perf_counter()
    if args.model:
        model, _, ids = real_model(args.model, dtype, args.nsamples, args.seqlen, "bbc")
        info["model"] = args.model
    else:
        model = random_model(args.shape, args.layers, dtype, device)
        ids = torch.randint(0, model.config.vocab_size, (args.nsamples, args.seqlen),
                            generator=torch.Generator().manual_seed(0))
        info["model"] = f"random {args.shape}" + (f" ({args.layers} blocks)" if args.layers else "")
    blocks = decoder_blocks(model)
    info["blocks"] = len(blocks)
    info["block_params"] = sum(p.numel() for p in blocks[0].parameters())
    info["block_pool_numel"] = sum(m.weight.numel() for m in linear_sublayers(blocks[0]).values())
    results["load_seconds"] = time.perf_counter() - t0
    if device.type == "cuda":
        t0 = time.perf_counter()
        info["pinned_bytes"] = pin_block_weights(model)
        results["pin_seconds"] = time.perf_counter() - t0
    cfg = model.config
    if device.type == "cuda" and "checks" not in skip:
        log("checks")
        results["checks"] = gpu_checks(device, cfg.hidden_size, cfg.intermediate_size)
        log("  " + json.dumps(results["checks"]))
    opts = dict(device=device, act_dtype=dtype, progress=False, batch_size=args.batch_size)

    log("phases")
    F = None
    if "floor" not in skip:
        floor = measure("floor", device, lambda: floor_passes(model, ids, device, dtype, args.batch_size), results)
        results["floor"].update(floor)
        F = results["floor"]["seconds"]
        results["floor"]["one_dense_pass_seconds"] = F / 3
        # the first pass also pays one-time costs (kernel selection, caches): 3 x the fastest pass
        results["floor"]["warm_seconds"] = 3 * min(results["floor"]["one_pass_seconds"])

    def total(name, a, b):
        results[name] = {"seconds": results[a]["seconds"] + results[b]["seconds"]}
        if F:
            results[name]["x_floor"] = results[name]["seconds"] / F
            results[name]["x_warm_floor"] = results[name]["seconds"] / results["floor"]["warm_seconds"]

    dense = snapshot(model)
    plan = None
    if "resident" not in skip:
        stats = measure("pass1", device, lambda: compute_dense_statistics(model, ids, **opts), results, F)
        plan = build_plan("dlp", args.sparsity, stats=stats)
        measure("wanda", device, lambda: prune_model(model, plan, "wanda", ids, **opts), results, F)
        total("dlp_wanda", "pass1", "wanda")
        results["plan_ratios"] = plan.ratios
    if "sparsegpt" not in skip:
        restore(model, dense)
        if plan is None:
            plan = build_plan("dlp", args.sparsity, stats=compute_dense_statistics(model, ids, **opts))
        measure("sparsegpt", device, lambda: prune_model(model, plan, "sparsegpt", ids, **opts), results, F)
        total("dlp_sparsegpt", "pass1", "sparsegpt") if "pass1" in results else None
    if "stream" not in skip:
        restore(model, dense)
        if device.type == "cuda":  # the one-time cost of pinning the activation buffers (reused after)
            t0 = time.perf_counter()
            shape = (args.batch_size, args.seqlen, cfg.hidden_size)
            bufs = [torch.empty(shape, dtype=dtype, pin_memory=True) for _ in range(-(-args.nsamples // args.batch_size))]
            del bufs
            results["pin_activations_seconds"] = time.perf_counter() - t0
        sopts = dict(opts, stream_activations=True)
        stats_s = measure("pass1_stream", device, lambda: compute_dense_statistics(model, ids, **sopts), results, F)
        plan_s = build_plan("dlp", args.sparsity, stats=stats_s)
        measure("wanda_stream", device, lambda: prune_model(model, plan_s, "wanda", ids, **sopts), results, F)
        total("dlp_wanda_stream", "pass1_stream", "wanda_stream")
        if plan is not None and "pass1" in results:
            results["stream_vs_resident_max_ratio_diff"] = max(abs(a - b) for a, b in zip(plan.ratios, plan_s.ratios))
            results["stream_vs_resident_median_equal"] = (stats.layer_statistic("median")
                                                          == stats_s.layer_statistic("median"))
    if "metric" not in skip:
        restore(model, dense)
        results["metric_time"] = metric_time_table(model, ids, device, dtype, args)
        log("  metric time (s, all blocks): " + json.dumps(
            {m: {a: round(v["mean"], 3) for a, v in d.items()} for m, d in results["metric_time"]["ci95"].items()}))
    if device.type == "cuda" and "reference" not in skip:
        restore(model, dense)
        results["reference_pooling_block0"] = reference_pooling(model, ids, device, dtype)
        log("  reference pooling (block 0): " + json.dumps(results["reference_pooling_block0"]))
    del dense, model
    gc.collect()
    if args.numerics:
        run_numerics(args, device, results)
    return finish(args, results)


def run_numerics(args, device, results) -> None:
    if not args.model:
        raise SystemExit("--numerics needs --model (a trained model)")
    runs = []
    for wf in (args.numerics_windows or [None]):
        runs.append(numerics(args.model, device, args.numerics_nsamples, args.numerics_seqlen,
                             args.numerics_neval, args.numerics_sparsities or [args.sparsity], windows_file=wf))
    results["numerics"] = runs


def finish(args, results) -> dict:
    results["max_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    if device_is_cuda():
        results["info"]["allocator_conf"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
    print_table(results)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    return results


def device_is_cuda() -> bool:
    return torch.cuda.is_available()


def print_table(r: dict) -> None:
    info = r["info"]
    for run in r.get("numerics", []):
        log(f"\nnumerics: {run['model']}, DLP+Wanda, calibration {run['nsamples']} x {run['seqlen']}, "
            f"perplexity on {run['neval']} x {run['eval_seqlen']}")
        log("| variant | dense ppl | " + " | ".join(f"ppl at {sp} (vs fp32) | max abs ratio diff"
                                                 for sp in run["sparsities"]) + " | max rel median diff |")
        log("| --- | ---: | " + " | ".join("---: | ---:" for _ in run["sparsities"]) + " | ---: |")
        for label, v in run["variants"].items():
            cells = [f"{v['dense_ppl']:.3f} ({100 * v.get('dense_ppl_rel_diff', 0):+.2f}%)"]
            for sp in run["sparsities"]:
                x = v[str(sp)]
                cells += [f"{x['ppl']:.3f} ({100 * x.get('ppl_rel_diff', 0):+.2f}%)", f"{x.get('max_ratio_diff', 0):.1e}"]
            log(f"| {label} | " + " | ".join(cells) + f" | {v.get('max_median_rel_diff', 0):.1e} |")
    if "model" not in info:
        return
    log(f"\n{info['model']} on {info['device']}, {info['dtype']}, {info['nsamples']} x {info['seqlen']} tokens, "
        f"batch {info['batch_size']}")
    log("| phase | seconds | x floor | peak GPU GiB (allocated / reserved) |")
    log("| --- | ---: | ---: | --- |")
    for key in ("floor", "pass1", "wanda", "dlp_wanda", "sparsegpt", "dlp_sparsegpt", "pass1_stream",
                "wanda_stream", "dlp_wanda_stream"):
        if key in r:
            rec = r[key]
            mem = (f"{rec['peak_allocated_gib']:.2f} / {rec['peak_reserved_gib']:.2f}"
                   if "peak_allocated_gib" in rec else "-")
            xf = "1.000" if key == "floor" else (f"{rec['x_floor']:.3f}" if "x_floor" in rec else "-")
            log(f"| {key} | {rec['seconds']:.2f} | {xf} | {mem} |")


if __name__ == "__main__":
    main()
