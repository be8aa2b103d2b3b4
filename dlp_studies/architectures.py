"""Paper Table 8 (other architectures): the paper's numbers, the profile grids, and the per-cell calls
(the headline verdict is `dlp_studies.verdicts.table8_verdict`).

Table 8: WikiText perplexity of five 7-8B models pruned with Wanda, Uniform vs DLP ("Ours"), at
60/70/80% sparsity. The claim: DLP beats Uniform on every model and sparsity.
"""
from __future__ import annotations

import math

# model -> allocation -> sparsity -> WikiText perplexity (paper Table 8, Wanda)
PAPER_TABLE8: dict[str, dict[str, dict[float, float]]] = {
    "LLaMA3-8B": {"uniform": {0.6: 23.50, 0.7: 122.96, 0.8: 687.11}, "dlp": {0.6: 19.21, 0.7: 96.31, 0.8: 676.16}},
    "LLaMA3.1-8B": {"uniform": {0.6: 21.84, 0.7: 118.18, 0.8: 1031.36},
                    "dlp": {0.6: 18.58, 0.7: 84.30, 0.8: 786.19}},
    "Vicuna-7B": {"uniform": {0.6: 12.89, 0.7: 60.60, 0.8: 1613.15}, "dlp": {0.6: 11.49, 0.7: 28.79, 0.8: 345.10}},
    "Mistral-7B": {"uniform": {0.6: 11.28, 0.7: 60.62, 0.8: 331.04}, "dlp": {0.6: 9.91, 0.7: 29.83, 0.8: 199.19}},
    "Qwen-7B": {"uniform": {0.6: 14.76, 0.7: 91.99, 0.8: 23136.98}, "dlp": {0.6: 14.38, 0.7: 54.13, 0.8: 1122.54}},
}

# the paper's models as hub ids (the paper names them only; these are the usual checkpoints)
PAPER_HUB_IDS = {
    "LLaMA3-8B": "meta-llama/Meta-Llama-3-8B",
    "LLaMA3.1-8B": "meta-llama/Llama-3.1-8B",
    "Vicuna-7B": "lmsys/vicuna-7b-v1.5",
    "Mistral-7B": "mistralai/Mistral-7B-v0.1",
    "Qwen-7B": "Qwen/Qwen-7B",          # remote code: needs trust_remote_code
}

SPARSITIES = (0.6, 0.7, 0.8)

# profile -> what the notebook runs. `models`: our model names (load_model names); `paper_row`:
# which paper row each stands beside (None: no paper counterpart).
GRIDS = {
    "smoke": {
        "models": ("tiny-qwen2", "tiny-gpt2", "tiny-mixtral"),
        "sparsities": (0.7,),
        "note": "smoke: random tiny models of three families (Qwen2 with mixed sliding/full attention, GPT-2 "
                "Conv1D, Mixtral experts) at 70% on the smoke calibration/evaluation; perplexities are "
                "meaningless, the run checks that the whole pipeline works on them.",
    },
    "default": {
        "models": ("smollm2-135m", "gemma3-270m"),
        "sparsities": SPARSITIES,
        # Gemma-3-270M costs about twice SmolLM2 per token on a CPU (its 262k-vocabulary output layer
        # alone is 168M weights): one sparsity and a reduced protocol keep it within a few minutes
        "per_model": {"gemma3-270m": {"sparsities": (0.7,), "config": dict(nsamples=16, seqlen=256, neval=16)}},
        "note": "default: the two real pretrained models that install offline: SmolLM2-135M (LLaMA architecture, "
                "embedded; 60/70/80%, the default profile's BBC 16 x 512 calibration and Brown 16 x 512 "
                "evaluation) and Gemma-3-270M (Gemma3: mixed sliding-window/full attention, 262k vocabulary; "
                "fetched from PyPI as GGUF; 70% only, BBC 16 x 256 calibration, Brown 16 x 256 evaluation), Wanda, "
                "Uniform vs DLP, instead of the paper's 7-8B models with C4 and WikiText.",
    },
    "paper": {
        "models": tuple(PAPER_HUB_IDS.values()),
        "sparsities": SPARSITIES,
        "note": "paper: the five models of Table 8 from the hub (needs hub access and a GPU; Qwen-7B needs "
                "trust_remote_code), C4 calibration 128 x 2048, WikiText-2.",
    },
}

# a relative perplexity gap up to this is called "within noise": each cell is one calibration seed,
# so the seeds' spread is not measured here; 2% is a stated tolerance, not a measured one
NOISE_TOLERANCE = 0.02


def grid(profile: str) -> dict:
    if profile not in GRIDS:
        raise ValueError(f"Unknown profile {profile!r}; allowed: {', '.join(GRIDS)}")
    return GRIDS[profile]


def model_plan(g: dict, model: str) -> tuple[tuple[float, ...], dict]:
    """(sparsities, ExperimentConfig overrides) of one model of grid `g`."""
    own = g.get("per_model", {}).get(model, {})
    return tuple(own.get("sparsities", g["sparsities"])), dict(own.get("config", {}))


def compare(uniform: float, dlp: float, tolerance: float = NOISE_TOLERANCE) -> str:
    """'DLP better', 'Uniform better' or 'within noise' for one (model, sparsity) cell.

    The gap is log(uniform / dlp); |gap| <= log(1 + tolerance) is within noise. A non-finite
    perplexity (a collapsed model) loses to a finite one; two non-finite ones are a tie.
    """
    if not (tolerance >= 0):
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    fu, fd = math.isfinite(uniform), math.isfinite(dlp)
    if not fu or not fd:
        if fu == fd:
            return "within noise"
        return "DLP better" if fd else "Uniform better"
    gap = math.log(uniform / dlp)
    if abs(gap) <= math.log1p(tolerance):
        return "within noise"
    return "DLP better" if gap > 0 else "Uniform better"


def cell_verdicts(table: dict[str, dict[str, dict[float, float]]], tolerance: float = NOISE_TOLERANCE) -> dict:
    """{(model, sparsity): verdict} from {model: {"uniform": {s: ppl}, "dlp": {s: ppl}}}."""
    out = {}
    for model, by_alloc in table.items():
        for s in by_alloc["uniform"]:
            if s in by_alloc.get("dlp", {}):
                out[(model, s)] = compare(by_alloc["uniform"][s], by_alloc["dlp"][s], tolerance)
    return out
