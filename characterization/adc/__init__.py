"""SAR ADC characterization: sky130 StrongARM + CDAC in SPICE, behavioural SAR, IEEE 1241 metrics.

See docs/adc.md.
"""

from __future__ import annotations

from .behavioural import SarInstance, draw_caps
from .characterize import (
    DEFAULTS,
    PRESETS,
    THRESHOLD_CONVENTION,
    build_config,
    measure_point,
    run_characterization,
    validate_instance,
)
from .metrics import (
    DensityResult,
    SineFitResult,
    coherent_sine_input,
    dnl_inl_from_thresholds,
    fit_sine_4param,
    histogram_dnl_inl,
    sine_fit_enob,
)

__all__ = [
    "DEFAULTS", "PRESETS", "THRESHOLD_CONVENTION", "DensityResult", "SarInstance",
    "SineFitResult", "build_config", "coherent_sine_input", "dnl_inl_from_thresholds",
    "draw_caps", "fit_sine_4param", "histogram_dnl_inl", "measure_point",
    "run_characterization", "sine_fit_enob", "validate_instance",
]
