"""SAR ADC characterization: sky130 StrongARM + CDAC in SPICE, behavioural SAR, IEEE 1241 metrics.

See docs/adc.md.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names are loaded on first use (PEP 562), so that ``nnsim`` can read the lookup-side helpers
# (``characterization.adc.convention``, ``.energy``) without importing spicebridge and ngspice.
_WHERE = {
    "SarInstance": "behavioural", "draw_caps": "behavioural",
    "DEFAULTS": "characterize", "PRESETS": "characterize",
    "THRESHOLD_CONVENTION": "characterize", "build_config": "characterize",
    "measure_point": "characterize", "run_characterization": "characterize",
    "validate_instance": "characterize",
    "DensityResult": "metrics", "SineFitResult": "metrics", "coherent_sine_input": "metrics",
    "dnl_inl_from_thresholds": "metrics", "fit_sine_4param": "metrics",
    "histogram_dnl_inl": "metrics", "sine_fit_enob": "metrics",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULTS", "PRESETS", "THRESHOLD_CONVENTION", "DensityResult", "SarInstance",
    "SineFitResult", "build_config", "coherent_sine_input", "dnl_inl_from_thresholds",
    "draw_caps", "fit_sine_4param", "histogram_dnl_inl", "measure_point",
    "run_characterization", "sine_fit_enob", "validate_instance",
]
