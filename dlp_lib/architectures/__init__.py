"""Decoder architectures: finding blocks and prunable weights (`discovery`), tiny random models of
every tested family (`tiny`)."""
from .discovery import (  # noqa: F401
    PrunableWeight, UnsupportedModelError, block_parameter_counts, check_causal_lm, decoder_blocks,
    linear_modules, linear_sublayers, prunable_weights,
)
