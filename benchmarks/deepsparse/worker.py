"""The DeepSparse side of the benchmark, run in this folder's own venv (numpy + deepsparse only,
no torch): a long-lived process that compiles ONNX decoder steps (dlp_lib/inference/
decoder_step.py) and answers JSON-lines requests on stdin, so bench.py can interleave its timings
with torch's without recompiling. Requests:

  {"op": "compile", "key": K, "path": P, "threads": T}       -> {"compile_s"}
  {"op": "logits", "key": K, "tokens": [...], "out": F}      -> writes the (n, vocab) logits to F (.npy)
  {"op": "decode", "key": K, "prompt": [...], "new_tokens": N} -> {"ms_per_token", "cpu_ms_per_token", "tokens"}
  {"op": "info"}                                             -> versions and the engine's CPU report
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

MASKED = -1e9  # the same additive bias as decoder_step.MASKED (this process has no torch to import it from)


class StepRunner:
    """A compiled step graph and its host-side KV cache loop."""

    def __init__(self, path: str, threads: int):
        from deepsparse import compile_model
        import onnx
        graph = onnx.load(path, load_external_data=False).graph
        inits = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in inits]
        self.names = [i.name for i in inputs]
        self.shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in inputs}
        self.cache_shape = self.shapes["past_key_0"]
        self.context = self.cache_shape[2]
        self.layers = sum(n.startswith("past_key_") for n in self.names)
        t0 = time.perf_counter()
        self.engine = compile_model(path, batch_size=1, num_cores=threads)
        self.compile_s = time.perf_counter() - t0

    def run(self, tokens, on_logits):
        """Feed `tokens` one at a time; on_logits(i, logits (vocab,)) may return the next token to
        feed after the given ones (greedy continuation) or None."""
        past = [np.zeros(self.cache_shape, np.float32) for _ in range(2 * self.layers)]
        pending = list(tokens)
        pos = 0
        while pending:
            tok = pending.pop(0)
            if pos >= self.context:
                raise ValueError(f"the graph's cache holds {self.context} tokens; asked for more")
            bias = np.full((1, self.context + 1), MASKED, np.float32)
            bias[0, :pos] = 0.0
            bias[0, -1] = 0.0
            feeds = {"input_ids": np.array([[tok]], np.int64), "position": np.array([pos], np.int64),
                     "attn_bias": bias}
            for i in range(self.layers):
                feeds[f"past_key_{i}"], feeds[f"past_value_{i}"] = past[2 * i], past[2 * i + 1]
            out = self.engine.run([feeds[n] for n in self.names])
            for buf, new in zip(past, out[1:]):
                buf[:, :, pos] = new[:, :, 0]
            pos += 1
            nxt = on_logits(pos - 1, out[0][0])
            if nxt is not None:
                pending.append(int(nxt))


def main() -> None:
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the engine's own prints go to stderr; stdout carries only the protocol
    runners: dict[str, StepRunner] = {}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            reply = handle(req, runners)
        except Exception as exc:  # reported to the caller, which raises with the message
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        proto.write(json.dumps(reply) + "\n")
        proto.flush()


def handle(req: dict, runners: dict) -> dict:
    op = req["op"]
    if op == "info":
        import deepsparse
        import onnx
        from deepsparse.cpu import cpu_architecture
        arch = cpu_architecture()
        return {"deepsparse": deepsparse.__version__, "numpy": np.__version__, "onnx": onnx.__version__,
                "python": sys.version.split()[0], "isa": str(getattr(arch, "isa", "")),
                "cpu": {k: str(v) for k, v in dict(arch).items()} if hasattr(arch, "keys") else str(arch)}
    if op == "compile":
        runners[req["key"]] = runner = StepRunner(req["path"], int(req["threads"]))
        return {"compile_s": runner.compile_s}
    runner = runners[req["key"]]
    if op == "logits":
        rows = []
        runner.run(req["tokens"], lambda i, logits: rows.append(logits.copy()))
        np.save(req["out"], np.stack(rows))
        return {"steps": len(rows)}
    if op == "decode":
        prompt, new_tokens = list(req["prompt"]), int(req["new_tokens"])
        times, cpu, generated = [], [], []
        clock = {}

        def on_logits(i, logits):
            if i < len(prompt) - 1:
                return None
            if clock:  # the step that produced these logits was a timed decode step
                times.append(time.perf_counter() - clock["wall"])
                cpu.append(time.process_time() - clock["cpu"])
            if len(generated) == new_tokens:
                return None
            nxt = int(np.argmax(logits))
            generated.append(nxt)
            clock["wall"], clock["cpu"] = time.perf_counter(), time.process_time()
            return nxt

        runner.run(prompt, on_logits)
        return {"ms_per_token": 1e3 * sum(times) / len(times), "cpu_ms_per_token": 1e3 * sum(cpu) / len(cpu),
                "tokens": generated}
    raise ValueError(f"unknown op {op!r}; allowed: info, compile, logits, decode")


if __name__ == "__main__":
    main()
