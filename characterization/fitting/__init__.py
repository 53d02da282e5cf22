"""Device-model fitting: compact-model parameters from measured data, SPICE in the loop.

``fit_spice`` fits any netlist's parameters to measured curves; ``fit_memristor`` applies it
to the RRAM model; the ``fit_*`` statistical fits (``stats``) turn characterization data into
parametric models with goodness-of-fit numbers. See docs/fitting.md.

Names are imported lazily (PEP 562), so ``spicebridge --help`` does not pay for scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "FitError": "errors", "MeasurementFormatError": "errors",
    "Measurement": "measurement", "read_measurement_csv": "measurement",
    "write_measurement_csv": "measurement", "read_curve_csv": "measurement",
    "DEFAULT_PARAMS": "memristor", "fit_memristor": "memristor", "memristor_deck": "memristor",
    "memristor_problem": "memristor", "read_fit_provenance": "memristor",
    "read_subckt_params": "memristor", "simulate_memristor": "memristor",
    "write_fitted_model": "memristor",
    "load_fit_config": "netlist_fit", "write_fitted_params": "netlist_fit",
    "plot_fit": "report", "write_fit_report": "report",
    "Curve": "spice_fit", "CurveFit": "spice_fit", "FitParameter": "spice_fit",
    "FitResult": "spice_fit", "SpiceFitProblem": "spice_fit", "fit_spice": "spice_fit",
    "simulate_curves": "spice_fit",
    "StatFit": "stats", "fit_read_noise": "stats", "fit_threshold_spread": "stats",
    "fit_write_noise": "stats", "read_noise_sigma": "stats",
}

__all__ = [
    "DEFAULT_PARAMS",
    "Curve",
    "CurveFit",
    "FitError",
    "FitParameter",
    "FitResult",
    "Measurement",
    "MeasurementFormatError",
    "SpiceFitProblem",
    "StatFit",
    "fit_memristor",
    "fit_read_noise",
    "fit_spice",
    "fit_threshold_spread",
    "fit_write_noise",
    "load_fit_config",
    "memristor_deck",
    "memristor_problem",
    "plot_fit",
    "read_curve_csv",
    "read_fit_provenance",
    "read_measurement_csv",
    "read_noise_sigma",
    "read_subckt_params",
    "simulate_curves",
    "simulate_memristor",
    "write_fit_report",
    "write_fitted_model",
    "write_fitted_params",
    "write_measurement_csv",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
