"""Results computed on a Lab: the floor above `experiment` (layout.py).

A function that needs a Lab (its model, calibration and evaluation text, cache and fingerprint)
lives here and takes it; the maths it drives (compressors, zero-shot scoring, allocators) lives on
the floors below and takes models, tensors and plans.

- auto_alpha, auto_allocation: `--alpha auto` and `--allocation auto` (chosen on held-out calibration text)
- experiment: `run_experiment`, a configuration's result on the process-wide Lab
- zeroshot: cached zero-shot results of a Lab's dense or pruned model (Table 4)
- lab_copy, svd, structured: SVD and structured-pruning results on a copy of the dense model (Tables 14, 16)
- nm_gptq: mixed N:M and quantization-after-pruning results (Tables 15, 17) and prune's options for them
- compress_command: `python -m dlp_lib compress`
"""
