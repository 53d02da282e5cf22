"""RAP/FLARE: FP-less integer PTQ, division-free nonlinearities, low-ENOB sparse MVM.

See ``docs/rap.md``. Public API::

    from nnsim.rap import convert_to_rap, RapConfig, MVMConfig, evaluate_rap
    rap = convert_to_rap(model, calib_loader)              # integer ViT, exact products
    rap.set_mvm(MVMConfig(mode="sparse", adc_bits=3), hw, seed=0)   # programmed crossbar + ADC
    logits_m, logits_e = rap.forward_int(rap.quantize_input(images))
"""

from .adc import ColumnADC
from .crossbar import CUTOFF_SIGMA, MISS_PROBABILITY, CellSettings, ColumnReadout
from .evaluate import evaluate_rap, run_mvm
from .intops import effective_msb, shift_round, window
from .nonlinear import (
    GELU_ABS_BOUND,
    LAYERNORM_ABS_BOUND,
    SOFTMAX_ABS_BOUND,
    int_gelu,
    int_layernorm,
    int_softmax,
)
from .ptq import float_ptq
from .sparse_mvm import MVMConfig, MVMCounters, SparseMVM, adc_bits_needed, k_exact
from .vit import RapConfig, RapViT, convert_to_rap

__all__ = [
    "CUTOFF_SIGMA",
    "GELU_ABS_BOUND",
    "LAYERNORM_ABS_BOUND",
    "MISS_PROBABILITY",
    "SOFTMAX_ABS_BOUND",
    "CellSettings",
    "ColumnADC",
    "ColumnReadout",
    "MVMConfig",
    "MVMCounters",
    "RapConfig",
    "RapViT",
    "SparseMVM",
    "adc_bits_needed",
    "convert_to_rap",
    "effective_msb",
    "evaluate_rap",
    "float_ptq",
    "int_gelu",
    "int_layernorm",
    "int_softmax",
    "k_exact",
    "run_mvm",
    "shift_round",
    "window",
]
