"""Numeric results transcribed from the paper
"DLP: Dynamic Layerwise Pruning in Large Language Models" (Chen et al.).

Pure data; transcribed digit for digit from the paper text
(/work/shared/paper/DLP_paper.txt). Values printed in scientific shorthand in
the paper (e.g. "3.7e3") are kept as such; values printed with trailing zeros
(e.g. "5.70") are written with the same digits.

Conventions
-----------
* Pruning methods: "magnitude", "sparsegpt", "wanda".
* Layerwise allocations: "uniform", "owl", "dlp" (the paper's "Ours").
* Dense (unpruned) rows are stored as method "dense" with a single allocation
  "dense", e.g. ``TABLE3_WIKITEXT_70["llama1-7b"]["dense"]["dense"] == 5.68``,
  so every table keeps a uniform nesting depth.
* Sparsity keys are floats (0.1 == 10%).
* Model keys: "llama1-7b", "llama1-13b", "llama1-30b", "llama2-7b",
  "llama2-13b" (plus the extra models of Table 8).
* Zero-shot task keys: "boolq", "rte", "hellaswag", "winogrande", "arc_easy",
  "arc_challenge", "openbookqa", "mean".
* Dataset keys: "wikitext2", "ptb", "c4" (the paper says "WikiText"); Table 14 alone uses its
  row labels "wikitext" and "ptb" (see TABLE14_STRUCTURED).

Inconsistencies found in the paper text are recorded in comments next to the
values and summarised in ``KNOWN_INCONSISTENCIES``. Numbers are never
"corrected"; they are kept exactly as printed.
"""

# ---------------------------------------------------------------------------
# Model identifiers (HuggingFace hub ids used to reproduce the paper models)
# ---------------------------------------------------------------------------

PAPER_MODEL_IDS = {
    "llama1-7b": "huggyllama/llama-7b",
    "llama1-13b": "huggyllama/llama-13b",
    "llama1-30b": "huggyllama/llama-30b",
    "llama2-7b": "meta-llama/Llama-2-7b-hf",
    "llama2-13b": "meta-llama/Llama-2-13b-hf",
}

# Dense WikiText perplexity (Table 3 "Dense" row; identical in Tables 2, 9, 10, 20, 21).
DENSE_WIKITEXT_PPL = {
    "llama1-7b": 5.68,
    "llama1-13b": 5.09,
    "llama1-30b": 4.10,
    "llama2-7b": 5.47,
    "llama2-13b": 4.88,
}

# Paper-wide setup facts (Sec. 4.1): C4 calibration, 128 samples x 2048 tokens.
CALIBRATION = {"dataset": "c4", "nsamples": 128, "seqlen": 2048}

# ---------------------------------------------------------------------------
# Section 3 (empirical studies)
# ---------------------------------------------------------------------------

# Table 1: WikiText ppl of unimportance statistics F(.), LLaMA1-7B, 70% unstructured sparsity.
TABLE1_STATISTIC = {
    "magnitude": {"sum": 3.7e3, "mean": 3.7e3, "median": 3.4e3, "max": 2.9e4, "var": 4.7e5, "sd": 2.5e5},
    "sparsegpt": {"sum": 18.24, "mean": 18.24, "median": 17.76, "max": 38.57, "var": 21.33, "sd": 21.42},
    # NOTE: Wanda/median = 20.40 here, while DLP+Wanda is 20.46 in Tables 3, 9, 10, 13, 20.
    "wanda": {"sum": 21.03, "mean": 21.03, "median": 20.40, "max": 931.89, "var": 43.31, "sd": 38.03},
}

# Table 2: LOD (%) and WikiText ppl, LLaMA1-13B, 70% unstructured sparsity, OWL with M=7.
TABLE2_LOD = {
    "dense": {"dense": {"lod": 5.43, "ppl": 5.09}},
    "magnitude": {
        "uniform": {"lod": 60.03, "ppl": 84511.48},
        "owl": {"lod": 64.70, "ppl": 18992.87},
        "dlp": {"lod": 77.58, "ppl": 7642.99},
    },
    "sparsegpt": {
        "uniform": {"lod": 47.70, "ppl": 18.93},
        "owl": {"lod": 51.97, "ppl": 14.02},
        "dlp": {"lod": 64.46, "ppl": 12.63},
    },
    "wanda": {
        "uniform": {"lod": 55.14, "ppl": 56.26},
        "owl": {"lod": 56.30, "ppl": 16.23},
        "dlp": {"lod": 70.06, "ppl": 13.65},
    },
}

# OWL outlier threshold M used in Table 2 ("Following OWL's setup, we set M to 7").
TABLE2_OWL_M = 7

# ---------------------------------------------------------------------------
# Section 4 (main results)
# ---------------------------------------------------------------------------

# Table 3: WikiText ppl, LLaMA1 (7B/13B/30B) & LLaMA2 (7B/13B), 70% unstructured sparsity.
# Magnitude entries are printed in 2-significant-digit shorthand; full values are in Tables 20/21.
TABLE3_WIKITEXT_70 = {
    "llama1-7b": {
        "dense": {"dense": 5.68},
        "magnitude": {"uniform": 4.9e4, "owl": 2.0e4, "dlp": 3.4e3},
        # NOTE: OWL 19.95 here vs 19.08 in Tables 10 and 20 (same setting). The text's
        # "SparseGPT reduces it by 2.19 on LLaMA1-7B" matches 19.95 - 17.76.
        "sparsegpt": {"uniform": 25.38, "owl": 19.95, "dlp": 17.76},
        "wanda": {"uniform": 86.38, "owl": 24.46, "dlp": 20.46},
    },
    "llama1-13b": {
        "dense": {"dense": 5.09},
        "magnitude": {"uniform": 8.5e4, "owl": 1.9e4, "dlp": 7.6e3},
        "sparsegpt": {"uniform": 18.93, "owl": 14.02, "dlp": 12.63},
        "wanda": {"uniform": 56.26, "owl": 16.23, "dlp": 13.65},
    },
    "llama1-30b": {
        "dense": {"dense": 4.10},
        "magnitude": {"uniform": 9.7e2, "owl": 2.4e2, "dlp": 98.05},
        "sparsegpt": {"uniform": 12.87, "owl": 10.22, "dlp": 9.43},
        "wanda": {"uniform": 17.54, "owl": 10.77, "dlp": 9.93},
    },
    "llama2-7b": {
        "dense": {"dense": 5.47},
        "magnitude": {"uniform": 5.0e4, "owl": 1.5e4, "dlp": 8.7e3},
        "sparsegpt": {"uniform": 27.84, "owl": 19.71, "dlp": 18.58},
        "wanda": {"uniform": 76.84, "owl": 30.58, "dlp": 22.79},
    },
    "llama2-13b": {
        "dense": {"dense": 4.88},
        # NOTE: uniform printed as 2.1e2 in the table; the running text and Table 21 give 214.19.
        "magnitude": {"uniform": 2.1e2, "owl": 57.55, "dlp": 52.41},
        "sparsegpt": {"uniform": 19.38, "owl": 15.12, "dlp": 13.30},
        "wanda": {"uniform": 45.76, "owl": 20.65, "dlp": 16.19},
    },
}

# Table 4: mean zero-shot accuracy (%) over 7 tasks, LLaMA1/LLaMA2, 70% unstructured sparsity.
# NOTE: the running text says LLaMA2-13B DLP gains "7.79, 5.48, and 10.67 over Magnitude,
# Wanda, and SparseGPT" and "3.35, 1.77, and 3.00" over OWL; the table values give
# Wanda +10.67/+3.00 and SparseGPT +5.48/+1.77, i.e. the text swaps Wanda and SparseGPT.
TABLE4_ZEROSHOT_MEAN = {
    "llama1-7b": {
        "dense": {"dense": 64.33},
        "magnitude": {"uniform": 34.80, "owl": 36.40, "dlp": 38.21},
        "sparsegpt": {"uniform": 45.32, "owl": 47.84, "dlp": 48.32},
        "wanda": {"uniform": 39.91, "owl": 46.32, "dlp": 48.62},
    },
    "llama1-13b": {
        "dense": {"dense": 66.78},
        "magnitude": {"uniform": 37.09, "owl": 39.45, "dlp": 40.11},
        "sparsegpt": {"uniform": 48.34, "owl": 50.78, "dlp": 53.06},
        "wanda": {"uniform": 41.62, "owl": 49.59, "dlp": 52.03},
    },
    "llama1-30b": {
        "dense": {"dense": 69.72},
        "magnitude": {"uniform": 35.06, "owl": 35.73, "dlp": 42.03},
        "sparsegpt": {"uniform": 55.87, "owl": 56.82, "dlp": 57.84},
        "wanda": {"uniform": 54.59, "owl": 55.93, "dlp": 56.83},
    },
    "llama2-7b": {
        "dense": {"dense": 64.42},
        "magnitude": {"uniform": 35.65, "owl": 36.44, "dlp": 40.84},
        "sparsegpt": {"uniform": 44.72, "owl": 48.02, "dlp": 49.65},
        "wanda": {"uniform": 37.04, "owl": 43.55, "dlp": 46.25},
    },
    "llama2-13b": {
        "dense": {"dense": 67.04},
        "magnitude": {"uniform": 36.23, "owl": 40.67, "dlp": 44.02},
        "sparsegpt": {"uniform": 47.99, "owl": 51.70, "dlp": 53.47},
        "wanda": {"uniform": 40.44, "owl": 48.11, "dlp": 51.11},
    },
}

# Table 5: DeepSparse end-to-end decoding, LLaMA2-7B-chat-hf pruned by DLP+Wanda, Xeon Gold 6248R (24 cores).
# The "Dense" column is stored under sparsity 0.0.
TABLE5_SPEEDUP = {
    0.0: {"latency_ms": 353.42, "throughput_tok_s": 2.83, "speedup": 1.0},
    0.1: {"latency_ms": 352.40, "throughput_tok_s": 2.84, "speedup": 1.0},
    0.2: {"latency_ms": 338.37, "throughput_tok_s": 2.96, "speedup": 1.1},
    0.3: {"latency_ms": 323.49, "throughput_tok_s": 3.09, "speedup": 1.1},
    0.4: {"latency_ms": 273.43, "throughput_tok_s": 3.66, "speedup": 1.3},
    0.5: {"latency_ms": 200.17, "throughput_tok_s": 4.99, "speedup": 1.8},
    0.6: {"latency_ms": 164.31, "throughput_tok_s": 6.08, "speedup": 2.2},
    0.7: {"latency_ms": 124.76, "throughput_tok_s": 8.01, "speedup": 2.8},
    0.8: {"latency_ms": 100.30, "throughput_tok_s": 9.97, "speedup": 3.5},
    0.9: {"latency_ms": 96.86, "throughput_tok_s": 10.32, "speedup": 3.7},
}

# Table 6: seconds spent computing the pruning metric across layers, LLaMA1 7B/13B/30B.
# {method: {allocation: {model: seconds}}}. NOTE: the caption says "of LLaMA1-7B" but the
# table has columns for LLaMA1 7B, 13B and 30B; no OWL rows are given.
TABLE6_TIME = {
    "magnitude": {
        "uniform": {"llama1-7b": 1.66, "llama1-13b": 6.82, "llama1-30b": 11.04},
        "dlp": {"llama1-7b": 1.68, "llama1-13b": 6.65, "llama1-30b": 11.01},
    },
    "sparsegpt": {
        "uniform": {"llama1-7b": 254.32, "llama1-13b": 511.30, "llama1-30b": 1052.48},
        "dlp": {"llama1-7b": 257.48, "llama1-13b": 487.44, "llama1-30b": 1051.55},
    },
    "wanda": {
        "uniform": {"llama1-7b": 0.95, "llama1-13b": 5.30, "llama1-30b": 8.64},
        "dlp": {"llama1-7b": 0.98, "llama1-13b": 5.50, "llama1-30b": 8.50},
    },
}

# Table 7: WikiText ppl before/after LoRA fine-tuning (C4), DLP+SparseGPT, 70% sparsity.
TABLE7_LORA = {
    "llama1-7b": {"without_ft": 17.76, "with_ft": 12.15},
    "llama1-13b": {"without_ft": 12.63, "with_ft": 10.05},
}

# Table 8: WikiText ppl of other LLMs, Uniform vs Ours, using Wanda. {model: {allocation: {sparsity: ppl}}}.
TABLE8_OTHER_LLMS = {
    "llama3-8b": {
        "uniform": {0.6: 23.50, 0.7: 122.96, 0.8: 687.11},
        "dlp": {0.6: 19.21, 0.7: 96.31, 0.8: 676.16},
    },
    "llama3.1-8b": {
        "uniform": {0.6: 21.84, 0.7: 118.18, 0.8: 1031.36},
        "dlp": {0.6: 18.58, 0.7: 84.30, 0.8: 786.19},
    },
    "vicuna-7b": {
        "uniform": {0.6: 12.89, 0.7: 60.60, 0.8: 1613.15},
        "dlp": {0.6: 11.49, 0.7: 28.79, 0.8: 345.10},
    },
    "mistral-7b": {
        "uniform": {0.6: 11.28, 0.7: 60.62, 0.8: 331.04},
        "dlp": {0.6: 9.91, 0.7: 29.83, 0.8: 199.19},
    },
    "qwen-7b": {
        "uniform": {0.6: 14.76, 0.7: 91.99, 0.8: 23136.98},
        "dlp": {0.6: 14.38, 0.7: 54.13, 0.8: 1122.54},
    },
}
TABLE8 = TABLE8_OTHER_LLMS  # alias

# ---------------------------------------------------------------------------
# Appendices
# ---------------------------------------------------------------------------

# Table 9: WikiText ppl of LLaMA1-7B with various layerwise sparsity allocations, using Wanda.
# NOTE: the Global row is printed as integers for 20%-70% (e.g. "3134"); written as floats here.
# NOTE: the Uniform row (85.77 @70%, 3499.88 @80%) differs from Wanda/Uniform in Tables 3/10/20
# (86.38 @70%, 7784.48 @80%) for the nominally same setting; OWL and DLP rows match Table 10.
TABLE9_LAYERWISE = {
    "global": {0.1: 14.11, 0.2: 3134.0, 0.3: 10293.0, 0.4: 10762.0, 0.5: 14848.0, 0.6: 17765.0, 0.7: 5147.0, 0.8: 39918.56},
    "uniform": {0.1: 5.69, 0.2: 5.81, 0.3: 5.99, 0.4: 6.39, 0.5: 7.26, 0.6: 10.70, 0.7: 85.77, 0.8: 3499.88},
    "er": {0.1: 5.69, 0.2: 5.80, 0.3: 6.02, 0.4: 6.55, 0.5: 7.74, 0.6: 12.16, 0.7: 112.03, 0.8: 11151.18},
    "er_plus": {0.1: 5.70, 0.2: 5.82, 0.3: 6.05, 0.4: 6.62, 0.5: 8.00, 0.6: 14.04, 0.7: 229.17, 0.8: 6013.91},
    "lamp": {0.1: 5.69, 0.2: 5.78, 0.3: 5.98, 0.4: 6.39, 0.5: 7.57, 0.6: 12.86, 0.7: 185.52, 0.8: 15647.87},
    "owl": {0.1: 5.70, 0.2: 5.80, 0.3: 6.01, 0.4: 6.39, 0.5: 7.22, 0.6: 9.35, 0.7: 24.46, 0.8: 1227.24},
    "alphapruning": {0.1: 5.69, 0.2: 5.81, 0.3: 6.00, 0.4: 6.37, 0.5: 7.18, 0.6: 9.47, 0.7: 24.00, 0.8: 698.56},
    "dlp": {0.1: 5.70, 0.2: 5.81, 0.3: 5.99, 0.4: 6.38, 0.5: 7.17, 0.6: 9.35, 0.7: 20.46, 0.8: 534.42},
}
TABLE9_DENSE_PPL = 5.68  # Table 9 header: "Sparsity(Dense 5.68)"

# Table 10: WikiText ppl of LLaMA1-7B at 10%-80% unstructured sparsity. {method: {allocation: {sparsity: ppl}}}.
# Weight update: SparseGPT yes; Magnitude and Wanda no. Dense = 5.68.
TABLE10_SWEEP = {
    "magnitude": {
        "uniform": {0.1: 5.81, 0.2: 6.02, 0.3: 6.67, 0.4: 8.59, 0.5: 17.26, 0.6: 562.03, 0.7: 48834.17, 0.8: 132881.94},
        # NOTE: OWL @10% = 8.11 is higher than OWL @20% (6.01) and all other 10% entries; looks
        # like a typo in the paper (possibly 5.81?) but kept as printed.
        "owl": {0.1: 8.11, 0.2: 6.01, 0.3: 6.55, 0.4: 8.13, 0.5: 13.86, 0.6: 82.75, 0.7: 19785.07, 0.8: 73458.74},
        "dlp": {0.1: 5.73, 0.2: 6.03, 0.3: 6.80, 0.4: 8.69, 0.5: 18.12, 0.6: 133.65, 0.7: 3437.55, 0.8: 48933.69},
    },
    "sparsegpt": {
        "uniform": {0.1: 5.70, 0.2: 5.80, 0.3: 5.96, 0.4: 6.32, 0.5: 7.21, 0.6: 10.47, 0.7: 25.38, 0.8: 180.94},
        "owl": {0.1: 5.71, 0.2: 5.81, 0.3: 6.00, 0.4: 6.32, 0.5: 7.19, 0.6: 9.66, 0.7: 19.08, 0.8: 89.64},
        "dlp": {0.1: 5.70, 0.2: 5.81, 0.3: 5.97, 0.4: 6.32, 0.5: 7.15, 0.6: 9.44, 0.7: 17.76, 0.8: 70.62},
    },
    "wanda": {
        "uniform": {0.1: 5.70, 0.2: 5.82, 0.3: 6.00, 0.4: 6.39, 0.5: 7.26, 0.6: 10.70, 0.7: 86.38, 0.8: 7784.48},
        "owl": {0.1: 5.70, 0.2: 5.80, 0.3: 6.01, 0.4: 6.39, 0.5: 7.22, 0.6: 9.35, 0.7: 24.46, 0.8: 1227.24},
        "dlp": {0.1: 5.70, 0.2: 5.81, 0.3: 5.99, 0.4: 6.38, 0.5: 7.17, 0.6: 9.35, 0.7: 20.46, 0.8: 534.42},
    },
}
TABLE10_DENSE_PPL = 5.68  # Table 10 header: "Sparsity(Dense 5.68)"

# Sublayer order used in Tables 11 and 12 (paper column order).
SUBLAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj", "up_proj")

# Table 11: per-sublayer sparsity of LLaMA1-7B, per-layer DLP (allocation shared by all
# sublayers of a decoder layer), 70% unstructured, Wanda. {layer_index: {sublayer: sparsity}}.
# NOTE: the text says rows are "layers 1, 2, 15, 30, and 31" but the table rows are 1, 2, 5, 30, 31
# (kept as printed). Whether indices are 0- or 1-based is not stated.
TABLE11_PER_LAYER_SPARSITY = {
    1: dict.fromkeys(SUBLAYERS, 0.548),
    2: dict.fromkeys(SUBLAYERS, 0.565),
    5: dict.fromkeys(SUBLAYERS, 0.609),
    30: dict.fromkeys(SUBLAYERS, 0.832),
    31: dict.fromkeys(SUBLAYERS, 0.813),
}

# Table 12: per-sublayer sparsity of LLaMA1-7B, per-block DLP (allocation per Transformer
# block/sublayer), 70% unstructured, Wanda. {layer_index: {sublayer: sparsity}}. Same row caveat as Table 11.
TABLE12_PER_BLOCK_SPARSITY = {
    1: {"q_proj": 0.788, "k_proj": 0.786, "v_proj": 0.829, "o_proj": 0.842, "gate_proj": 0.811, "down_proj": 0.813, "up_proj": 0.841},
    2: {"q_proj": 0.759, "k_proj": 0.755, "v_proj": 0.815, "o_proj": 0.839, "gate_proj": 0.793, "down_proj": 0.798, "up_proj": 0.838},
    5: {"q_proj": 0.669, "k_proj": 0.666, "v_proj": 0.743, "o_proj": 0.829, "gate_proj": 0.755, "down_proj": 0.766, "up_proj": 0.827},
    30: {"q_proj": 0.578, "k_proj": 0.574, "v_proj": 0.563, "o_proj": 0.743, "gate_proj": 0.606, "down_proj": 0.681, "up_proj": 0.626},
    31: {"q_proj": 0.624, "k_proj": 0.619, "v_proj": 0.639, "o_proj": 0.747, "gate_proj": 0.621, "down_proj": 0.624, "up_proj": 0.628},
}

# Appendix C text: WikiText ppl of LLaMA1-7B, DLP+Wanda, 70%: per-block vs per-layer allocation.
TABLE11_12_PPL = {"per_block": 3463.32, "per_layer": 20.46}

# Table 13: per-output vs per-layer pruning groups, LLaMA1-7B WikiText ppl, DLP+Wanda. {group: {sparsity: ppl}}.
TABLE13_GROUPS = {
    "per_output": {0.1: 5.70, 0.2: 5.81, 0.3: 5.99, 0.4: 6.38, 0.5: 7.17, 0.6: 9.35, 0.7: 20.46, 0.8: 534.42},
    "per_layer": {0.1: 5.70, 0.2: 5.82, 0.3: 6.03, 0.4: 6.56, 0.5: 7.70, 0.6: 10.95, 0.7: 39.02, 0.8: 886.10},
}

# Table 14: structured pruning (LLM-Pruner, no fine-tuning), LLaMA1-7B. {dataset: {allocation: {sparsity: ppl}}}.
# Keyed by the table's row labels "wikitext" and "ptb", as notebook 11b reads it (through
# compression_svd_structured.PAPER_TEXT_FOR), not by the "wikitext2" of the other tables.
TABLE14_STRUCTURED = {
    "wikitext": {
        "uniform": {0.2: 18.61, 0.4: 647.20, 0.6: 4074.48, 0.8: 33849.77},
        "dlp": {0.2: 16.62, 0.4: 29.62, 0.6: 115.58, 0.8: 642.16},
    },
    "ptb": {
        "uniform": {0.2: 90.02, 0.4: 538.65, 0.6: 2330.65, 0.8: 23447.05},
        "dlp": {0.2: 68.75, 0.4: 142.73, 0.6: 617.56, 0.8: 1932.18},
    },
}

# Table 15: mixed N:M sparsity (N = non-zero weights), LLaMA1-7B WikiText ppl. {allocation: {"N:M": ppl}}.
TABLE15_NM = {
    "uniform": {"1:4": 7225.68, "2:4": 11.55, "3:4": 6.19, "1:8": 29790.41, "2:8": 3485.97,
                "3:8": 42.86, "4:8": 8.56, "5:8": 6.61, "6:8": 6.02, "7:8": 5.74},
    "dlp": {"1:4": 30.44, "2:4": 7.32, "3:4": 5.91, "1:8": 4990.69, "2:8": 83.50,
            "3:8": 10.42, "4:8": 7.19, "5:8": 6.27, "6:8": 5.87, "7:8": 5.71},
}
TABLE15 = TABLE15_NM  # alias

# Table 16: SVD low-rank compression, LLaMA1-7B ppl (dataset not stated; presumably WikiText). {allocation: {rate: ppl}}.
TABLE16_SVD = {
    "uniform": {0.0: 5.68, 0.1: 6.58, 0.2: 8.41, 0.3: 17.69, 0.4: 1917.76, 0.5: 19170.02},
    "dlp": {0.0: 5.68, 0.1: 6.58, 0.2: 8.38, 0.3: 15.33, 0.4: 1252.03, 0.5: 16304.26},
}
TABLE16 = TABLE16_SVD  # alias

# Table 17: GPTQ quantization of LLaMA1-7B pruned to 70% with SparseGPT. {bits: {allocation: {dataset: ppl}}}.
# "dense" rows are 0% sparsity. NOTE: dense PTB here (31.50 @16 bit) differs from Table 20 (41.15),
# and 16-bit Uniform/DLP WikiText (26.49/18.38) differ from Table 3 (25.38/17.76).
TABLE17_QUANT = {
    16: {
        "dense": {"wikitext2": 5.68, "ptb": 31.50, "c4": 7.08},
        "uniform": {"wikitext2": 26.49, "ptb": 298.15, "c4": 24.57},
        "dlp": {"wikitext2": 18.38, "ptb": 182.69, "c4": 17.72},
    },
    8: {
        "dense": {"wikitext2": 5.68, "ptb": 31.46, "c4": 7.08},
        "uniform": {"wikitext2": 26.50, "ptb": 298.70, "c4": 24.51},
        "dlp": {"wikitext2": 18.38, "ptb": 183.25, "c4": 17.71},
    },
    4: {
        "dense": {"wikitext2": 5.79, "ptb": 32.16, "c4": 7.23},
        "uniform": {"wikitext2": 27.08, "ptb": 315.35, "c4": 24.93},
        "dlp": {"wikitext2": 18.92, "ptb": 178.28, "c4": 18.13},
    },
    3: {
        "dense": {"wikitext2": 6.23, "ptb": 36.38, "c4": 8.02},
        "uniform": {"wikitext2": 30.73, "ptb": 428.32, "c4": 29.92},
        "dlp": {"wikitext2": 21.56, "ptb": 243.98, "c4": 20.59},
    },
}
TABLE17 = TABLE17_QUANT  # alias

# Table 18: 5-shot accuracy (%) of PEFT methods on LLaMA2-7B after commonsense170k fine-tuning. {method: {task: acc}}.
TABLE18_PEFT = {
    "lisa": {"boolq": 77.16, "hellaswag": 71.60, "winogrande": 76.87, "arc_easy": 74.75, "arc_challenge": 45.65, "openbookqa": 45.20, "mean": 65.21},
    "owlore": {"boolq": 82.63, "hellaswag": 78.33, "winogrande": 79.08, "arc_easy": 78.24, "arc_challenge": 51.88, "openbookqa": 45.60, "mean": 69.29},
    "dlp": {"boolq": 81.90, "hellaswag": 78.55, "winogrande": 80.58, "arc_easy": 79.92, "arc_challenge": 52.99, "openbookqa": 46.60, "mean": 70.09},
}

# Table 19: DLP hyperparameter alpha per target sparsity (all models/methods). {sparsity: alpha}.
# Matches the SPEC values exactly (paper prints 60% as "0.1").
TABLE19_ALPHA = {0.1: 0.06, 0.2: 0.02, 0.3: 0.04, 0.4: 0.02, 0.5: 0.04, 0.6: 0.1, 0.7: 0.15, 0.8: 0.12}

# Appendix G: alpha search grid.
ALPHA_GRID = (0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2)

# Table 20: LLaMA1 ppl on WikiText/PTB/C4 at 70% unstructured sparsity. {model: {dataset: {method: {allocation: ppl}}}}.
# NOTE (llama1-7b): magnitude/uniform/wikitext2 = 48838.41 here vs 48834.17 in Table 10;
#   sparsegpt/owl/wikitext2 = 19.08 here (and Table 10) vs 19.95 in Table 3;
#   magnitude/owl/ptb printed as "164741" (no decimals); magnitude/dlp/ptb 798602.88 is far
#   above uniform/owl (kept as printed).
# NOTE (llama1-13b): magnitude/dlp/c4 = 33386.63 is above owl (19282.38) (kept as printed).
TABLE20_LLAMA1_DATASETS = {
    "llama1-7b": {
        "wikitext2": {
            "dense": {"dense": 5.68},
            "magnitude": {"uniform": 48838.41, "owl": 19785.07, "dlp": 3437.55},
            "sparsegpt": {"uniform": 25.38, "owl": 19.08, "dlp": 17.76},
            "wanda": {"uniform": 86.38, "owl": 24.46, "dlp": 20.46},
        },
        "ptb": {
            "dense": {"dense": 41.15},
            "magnitude": {"uniform": 141244.92, "owl": 164741.0, "dlp": 798602.88},
            "sparsegpt": {"uniform": 331.89, "owl": 221.95, "dlp": 202.06},
            "wanda": {"uniform": 698.63, "owl": 398.58, "dlp": 302.15},
        },
        "c4": {
            "dense": {"dense": 7.34},
            "magnitude": {"uniform": 23374.60, "owl": 29854.54, "dlp": 9694.97},
            "sparsegpt": {"uniform": 28.23, "owl": 20.61, "dlp": 19.34},
            "wanda": {"uniform": 88.14, "owl": 27.36, "dlp": 22.71},
        },
    },
    "llama1-13b": {
        "wikitext2": {
            "dense": {"dense": 5.09},
            "magnitude": {"uniform": 84511.48, "owl": 18992.87, "dlp": 7642.99},
            "sparsegpt": {"uniform": 18.93, "owl": 14.02, "dlp": 12.63},
            "wanda": {"uniform": 56.26, "owl": 16.23, "dlp": 13.65},
        },
        "ptb": {
            "dense": {"dense": 28.10},
            "magnitude": {"uniform": 389981.53, "owl": 61249.96, "dlp": 14510.26},
            "sparsegpt": {"uniform": 150.92, "owl": 99.02, "dlp": 80.19},
            "wanda": {"uniform": 324.01, "owl": 146.35, "dlp": 100.94},
        },
        "c4": {
            "dense": {"dense": 6.80},
            "magnitude": {"uniform": 40205.27, "owl": 19282.38, "dlp": 33386.63},
            "sparsegpt": {"uniform": 22.70, "owl": 16.19, "dlp": 14.47},
            "wanda": {"uniform": 54.69, "owl": 18.84, "dlp": 15.82},
        },
    },
    "llama1-30b": {
        "wikitext2": {
            "dense": {"dense": 4.10},
            "magnitude": {"uniform": 971.71, "owl": 242.80, "dlp": 98.05},
            "sparsegpt": {"uniform": 12.87, "owl": 10.22, "dlp": 9.43},
            "wanda": {"uniform": 17.54, "owl": 10.77, "dlp": 9.93},
        },
        "ptb": {
            "dense": {"dense": 23.51},
            "magnitude": {"uniform": 10452.38, "owl": 2495.37, "dlp": 491.10},
            "sparsegpt": {"uniform": 62.54, "owl": 48.42, "dlp": 40.54},
            "wanda": {"uniform": 111.33, "owl": 60.24, "dlp": 46.51},
        },
        "c4": {
            "dense": {"dense": 6.13},
            "magnitude": {"uniform": 5372.17, "owl": 808.44, "dlp": 114.72},
            "sparsegpt": {"uniform": 15.47, "owl": 12.79, "dlp": 11.69},
            "wanda": {"uniform": 18.81, "owl": 13.62, "dlp": 12.36},
        },
    },
}

# Table 21: LLaMA2 ppl on WikiText/PTB/C4 at 70% unstructured sparsity. {model: {dataset: {method: {allocation: ppl}}}}.
# NOTE (llama2-7b): magnitude/uniform/wikitext2 printed as "49840.8" (one decimal);
#   magnitude/uniform/ptb = 141244.92 is identical to LLaMA1-7B's value in Table 20 (possible copy error).
# NOTE (llama2-13b): sparsegpt/owl/c4 and wanda/owl/c4 are both 21.74 (kept as printed).
TABLE21_LLAMA2_DATASETS = {
    "llama2-7b": {
        "wikitext2": {
            "dense": {"dense": 5.47},
            "magnitude": {"uniform": 49840.8, "owl": 15480.39, "dlp": 8736.22},
            "sparsegpt": {"uniform": 27.84, "owl": 19.71, "dlp": 18.58},
            "wanda": {"uniform": 76.84, "owl": 30.58, "dlp": 22.79},
        },
        "ptb": {
            "dense": {"dense": 37.92},
            "magnitude": {"uniform": 141244.92, "owl": 76684.05, "dlp": 64708.39},
            "sparsegpt": {"uniform": 8557.88, "owl": 3930.91, "dlp": 677.99},
            "wanda": {"uniform": 778.75, "owl": 450.63, "dlp": 256.86},
        },
        "c4": {
            "dense": {"dense": 7.26},
            "magnitude": {"uniform": 27822.82, "owl": 21543.82, "dlp": 3487.59},
            "sparsegpt": {"uniform": 30.44, "owl": 22.68, "dlp": 19.51},
            "wanda": {"uniform": 78.75, "owl": 36.89, "dlp": 26.76},
        },
    },
    "llama2-13b": {
        "wikitext2": {
            "dense": {"dense": 4.88},
            "magnitude": {"uniform": 214.19, "owl": 57.55, "dlp": 52.41},
            "sparsegpt": {"uniform": 19.38, "owl": 15.12, "dlp": 13.30},
            "wanda": {"uniform": 45.76, "owl": 20.65, "dlp": 16.19},
        },
        "ptb": {
            "dense": {"dense": 50.94},
            "magnitude": {"uniform": 3706.61, "owl": 2125.47, "dlp": 1008.90},
            "sparsegpt": {"uniform": 450.85, "owl": 304.91, "dlp": 242.57},
            "wanda": {"uniform": 548.29, "owl": 326.07, "dlp": 239.34},
        },
        "c4": {
            "dense": {"dense": 6.72},
            "magnitude": {"uniform": 191.92, "owl": 50.79, "dlp": 41.89},
            "sparsegpt": {"uniform": 23.41, "owl": 21.74, "dlp": 15.62},
            "wanda": {"uniform": 56.10, "owl": 21.74, "dlp": 18.47},
        },
    },
}

ZEROSHOT_TASKS = ("boolq", "rte", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa")


def _zs(boolq, rte, hellaswag, winogrande, arc_easy, arc_challenge, openbookqa, mean):
    # tiny constructor: keyword-labels one printed row of Tables 22/23 (paper column order)
    return {"boolq": boolq, "rte": rte, "hellaswag": hellaswag, "winogrande": winogrande,
            "arc_easy": arc_easy, "arc_challenge": arc_challenge, "openbookqa": openbookqa, "mean": mean}


# Table 22: LLaMA1 zero-shot accuracy (%) on 7 tasks at 70% unstructured sparsity. {model: {method: {allocation: {task: acc}}}}.
TABLE22_LLAMA1_ZEROSHOT = {
    "llama1-7b": {
        "dense": {"dense": _zs(75.05, 66.79, 76.22, 70.09, 72.94, 44.80, 44.40, 64.33)},
        "magnitude": {
            "uniform": _zs(38.29, 52.71, 25.81, 51.22, 26.68, 25.09, 23.80, 34.80),
            "owl": _zs(37.83, 52.71, 29.34, 52.80, 28.24, 27.65, 26.20, 36.40),
            "dlp": _zs(38.38, 53.43, 35.79, 52.41, 31.82, 28.24, 27.40, 38.21),
        },
        "sparsegpt": {
            "uniform": _zs(65.32, 54.15, 42.59, 58.80, 41.71, 26.45, 28.20, 45.32),
            "owl": _zs(67.09, 53.43, 48.28, 63.30, 44.23, 27.56, 31.00, 47.84),
            "dlp": _zs(68.62, 53.43, 49.13, 61.33, 44.61, 29.35, 31.80, 48.32),
        },
        "wanda": {
            "uniform": _zs(57.92, 57.76, 31.25, 50.75, 32.62, 21.67, 27.40, 39.91),
            "owl": _zs(62.57, 56.68, 44.28, 59.59, 43.69, 27.05, 30.40, 46.32),
            "dlp": _zs(63.21, 59.21, 47.17, 60.06, 50.17, 28.92, 31.60, 48.62),
        },
    },
    "llama1-13b": {
        "dense": {"dense": _zs(77.89, 70.40, 79.07, 72.77, 74.66, 47.87, 44.80, 66.78)},
        "magnitude": {
            "uniform": _zs(52.91, 50.54, 27.52, 50.83, 28.03, 24.83, 25.00, 37.09),
            "owl": _zs(55.87, 49.10, 30.27, 50.43, 31.48, 26.62, 32.40, 39.45),
            "dlp": _zs(58.41, 50.54, 29.68, 51.14, 30.77, 27.65, 32.60, 40.11),
        },
        "sparsegpt": {
            "uniform": _zs(67.95, 52.71, 48.67, 61.88, 46.97, 28.41, 31.80, 48.34),
            "owl": _zs(66.30, 52.71, 54.14, 66.61, 50.08, 30.20, 35.40, 50.78),
            "dlp": _zs(68.47, 54.87, 57.92, 69.14, 53.70, 31.74, 35.60, 53.06),
        },
        "wanda": {
            "uniform": _zs(61.93, 52.71, 34.38, 52.72, 37.42, 22.01, 30.20, 41.62),
            "owl": _zs(62.78, 52.71, 51.08, 63.06, 52.31, 30.20, 35.00, 49.59),
            "dlp": _zs(66.36, 52.71, 56.19, 64.56, 56.90, 31.66, 35.80, 52.03),
        },
    },
    "llama1-30b": {
        "dense": {"dense": _zs(82.63, 66.79, 82.64, 75.93, 78.96, 52.90, 48.20, 69.72)},
        "magnitude": {
            "uniform": _zs(39.27, 46.93, 26.09, 52.17, 26.43, 25.94, 28.60, 35.06),
            "owl": _zs(39.02, 56.68, 26.30, 49.33, 27.86, 24.49, 26.40, 35.73),
            "dlp": _zs(61.62, 47.29, 34.83, 52.72, 39.14, 27.82, 30.80, 42.03),
        },
        "sparsegpt": {
            "uniform": _zs(68.90, 57.76, 60.31, 69.93, 61.24, 35.32, 37.60, 55.87),
            "owl": _zs(66.61, 55.96, 63.15, 71.74, 63.51, 36.77, 40.00, 56.82),
            "dlp": _zs(68.87, 53.79, 65.68, 72.38, 64.48, 38.65, 41.00, 57.84),
        },
        "wanda": {
            "uniform": _zs(65.87, 56.32, 58.31, 66.69, 61.07, 34.90, 39.00, 54.59),
            "owl": _zs(66.30, 53.79, 62.12, 69.69, 64.06, 35.32, 40.20, 55.93),
            "dlp": _zs(64.95, 48.74, 65.39, 70.24, 67.72, 38.74, 42.00, 56.83),
        },
    },
}

# Table 23: LLaMA2 zero-shot accuracy (%) on 7 tasks at 70% unstructured sparsity. {model: {method: {allocation: {task: acc}}}}.
TABLE23_LLAMA2_ZEROSHOT = {
    "llama2-7b": {
        "dense": {"dense": _zs(77.71, 62.82, 76.00, 69.30, 74.58, 46.33, 44.20, 64.42)},
        "magnitude": {
            "uniform": _zs(37.95, 53.07, 26.36, 49.33, 27.86, 26.96, 28.00, 35.65),
            "owl": _zs(40.03, 52.35, 30.10, 48.54, 30.72, 26.37, 27.00, 36.44),
            "dlp": _zs(46.51, 52.71, 37.93, 51.78, 37.58, 28.58, 30.80, 40.84),
        },
        "sparsegpt": {
            "uniform": _zs(65.35, 53.43, 41.07, 58.01, 40.66, 24.74, 29.80, 44.72),
            "owl": _zs(67.92, 53.07, 47.97, 62.04, 47.31, 26.02, 31.80, 48.02),
            "dlp": _zs(71.25, 53.79, 50.23, 62.19, 49.07, 27.65, 33.40, 49.65),
        },
        "wanda": {
            "uniform": _zs(48.23, 52.71, 30.28, 49.96, 30.30, 21.42, 26.40, 37.04),
            "owl": _zs(62.11, 52.71, 37.46, 56.27, 42.05, 24.06, 30.20, 43.55),
            "dlp": _zs(62.29, 52.71, 44.19, 58.80, 46.97, 25.77, 33.00, 46.25),
        },
    },
    "llama2-13b": {
        "dense": {"dense": _zs(80.55, 65.34, 79.39, 72.30, 77.53, 48.98, 45.20, 67.04)},
        "magnitude": {
            "uniform": _zs(38.62, 52.71, 29.56, 49.41, 32.11, 24.57, 26.60, 36.23),
            "owl": _zs(38.65, 52.71, 43.89, 54.54, 37.63, 28.84, 28.40, 40.67),
            "dlp": _zs(40.55, 52.71, 50.34, 59.43, 44.57, 31.14, 29.40, 44.02),
        },
        "sparsegpt": {
            "uniform": _zs(67.16, 52.71, 47.05, 61.40, 48.91, 27.90, 30.80, 47.99),
            "owl": _zs(69.45, 54.87, 52.86, 65.27, 53.24, 30.38, 35.80, 51.70),
            "dlp": _zs(74.22, 54.15, 55.80, 65.67, 54.84, 33.02, 36.60, 53.47),
        },
        "wanda": {
            "uniform": _zs(62.11, 52.71, 31.71, 51.78, 35.73, 20.82, 28.20, 40.44),
            "owl": _zs(63.67, 52.71, 46.30, 60.85, 51.01, 28.24, 34.00, 48.11),
            "dlp": _zs(67.06, 52.71, 52.98, 64.64, 54.59, 30.97, 34.80, 51.11),
        },
    },
}

# ---------------------------------------------------------------------------
# Figures (no numbers in the paper text)
# ---------------------------------------------------------------------------

FIGURE2_NOTE = (
    "Figure 2 (WikiText ppl of LLaMA1-7B, LLaMA1-13B, Vicuna-7B pruned with OWL at 70% for "
    "various outlier thresholds M) has no numbers in the text; no table stands in for it. "
    "Only the OWL M=7 LLaMA1-13B points appear in TABLE2_LOD (OWL rows)."
)
FIGURE3_NOTE = (
    "Figure 3 (RID bars and OWL vs DLP layerwise sparsity for LLaMA1 7B/13B/30B) has no numbers; "
    "TABLE11_PER_LAYER_SPARSITY gives DLP per-layer sparsity for 5 layers of LLaMA1-7B (Wanda, 70%)."
)
FIGURE4_NOTE = (
    "Figure 4 (comparison of methods at high sparsity using SparseGPT and Wanda, LLaMA1-7B "
    "WikiText) has no numbers in the text; TABLE10_SWEEP (sparsegpt/wanda rows, 0.5-0.8) "
    "stands in for it."
)
FIGURE5_NOTE = "Figure 5 (per-output vs per-layer, log ppl) plots TABLE13_GROUPS."
FIGURE6_NOTE = "Figure 6 (ppl vs quantization bits, LLaMA1-7B) plots TABLE17_QUANT."

# ---------------------------------------------------------------------------
# Derived claims stated in the running text (each checked against the tables)
# ---------------------------------------------------------------------------

TEXT_CLAIMS = {
    # Abstract/Sec 4.2: LLaMA2-7B, Wanda, 70%: OWL 30.58 - DLP 22.79
    "llama2_7b_wanda_ppl_reduction_vs_owl": 7.79,
    # Abstract: LLaMA2-7B, Wanda, mean zero-shot: DLP 46.25 - OWL 43.55
    "llama2_7b_wanda_acc_gain_vs_owl": 2.7,
    # Sec 4.2: LLaMA1-7B, SparseGPT, 70%: OWL 19.95 (Table 3) - DLP 17.76
    "llama1_7b_sparsegpt_ppl_reduction_vs_owl": 2.19,
    # Appendix A: LLaMA1-7B, Wanda, 70%: OWL 24.46 - DLP 20.46
    "llama1_7b_wanda_ppl_reduction_vs_owl_70": 4.00,
    # Sec 4.3: at 80%, DLP ppl is 56% lower than OWL (534.42 vs 1227.24)
    "llama1_7b_wanda_ppl_reduction_pct_vs_owl_80": 56,
    # Appendix B: Wanda 70%: Uniform 86.38 - DLP 20.46
    "llama1_7b_wanda_ppl_reduction_vs_uniform_70": 65.92,
    # Appendix B: SparseGPT 80%: Uniform 180.94 - DLP 70.62 ; OWL 89.64 - DLP 70.62
    "llama1_7b_sparsegpt_ppl_reduction_vs_uniform_80": 110.32,
    "llama1_7b_sparsegpt_ppl_reduction_vs_owl_80": 19.02,
    # Appendix D: per-layer 39.02 - per-output 20.46 at 70%
    "per_output_vs_per_layer_70": 18.56,
    # Sec 4.2 / Table 7: LoRA recovery
    "lora_ppl_reduction_llama1_7b": 5.61,
    "lora_ppl_reduction_llama1_13b": 2.58,
    # Appendix E.2: N:M ppl reduction factors (7225.68/30.44 ~ 237x, 3485.97/83.50 ~ 42x)
    "nm_1_4_reduction_factor": 240,
    "nm_2_8_reduction_factor": 41,
    # Appendix F: PEFT mean accuracy gains (70.09 - 65.21, 70.09 - 69.29)
    "peft_gain_vs_lisa": 4.88,
    "peft_gain_vs_owlore": 0.8,
    # Intro / Table 5: DeepSparse speedup range for 70%-90% sparsity
    "deepsparse_speedup_70_to_90": (2.8, 3.7),
}

KNOWN_INCONSISTENCIES = (
    "Table 3 llama1-7b sparsegpt/owl = 19.95 vs 19.08 in Tables 10 and 20.",
    "Table 3 llama2-13b magnitude/uniform printed 2.1e2; text and Table 21 give 214.19.",
    "Table 4 text swaps Wanda and SparseGPT gains for LLaMA2-13B (10.67/3.00 belong to Wanda, 5.48/1.77 to SparseGPT).",
    "Table 6 caption says LLaMA1-7B but the table has 7B/13B/30B columns.",
    "Table 9 uniform 70%/80% (85.77/3499.88) vs Wanda uniform 86.38/7784.48 in Tables 3/10/20.",
    "Table 10 magnitude/owl at 10% = 8.11, higher than at 20% (6.01): likely typo, kept.",
    "Table 10 magnitude/uniform 70% = 48834.17 vs 48838.41 in Table 20.",
    "Table 1 wanda/median = 20.40 vs DLP+Wanda 20.46 elsewhere.",
    "Tables 11/12: text says layers 1, 2, 15, 30, 31; tables list 1, 2, 5, 30, 31.",
    "Table 17 dense PTB 31.50 (16-bit) vs 41.15 in Table 20; 16-bit uniform/DLP WikiText 26.49/18.38 vs 25.38/17.76 in Table 3.",
    "Table 20 llama1-7b magnitude/owl/ptb printed without decimals (164741); magnitude/dlp/ptb 798602.88 and llama1-13b magnitude/dlp/c4 33386.63 are worse than OWL.",
    "Table 21 llama2-7b magnitude/uniform/ptb 141244.92 equals Table 20 llama1-7b value (possible copy error).",
    "Table 16 does not name the evaluation dataset (presumably WikiText).",
    "Table 2 LOD values after pruning (47.70-77.58%) are impossible under Eq. 4: scores are non-negative, so by "
    "Markov's inequality at most 1/M of them exceed M times their mean (<= 14.3% for M=7); the dense 5.43% is possible. "
    "They cannot be per-weight fractions as Eq. 4 defines them.",
    "Section 3.4 says each layer's sparsity varies in [R-alpha, R+alpha]; Algorithm 1 (d_l in [0, 2 alpha], "
    "R_l = p + m - d_l, m = mean of d) gives an interval of width 2 alpha that equals [p-alpha, p+alpha] only when "
    "m = alpha (in general it lies within [p-2 alpha, p+2 alpha]).",
)
