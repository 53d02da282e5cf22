"""Accuracy over simulated chips (mean and 95 % confidence interval), ClipFormer calibration.

A chip is one ``program_chip(model, seed)``: its static weights are programmed once (write
noise), its column ADCs get Monte-Carlo instances, and its per-inference noise is seeded. The
chip seeds are spawned from one root seed with ``numpy.random.SeedSequence`` and recorded.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .analog import AnalogConfig
from .convert import (
    calibrate_kv_range,
    conversions,
    convert_to_analog,
    program_chip,
    set_config,
)
from .data import make_loader
from .hardware import HardwareModel
from .models import accuracy


def ci95(values: Sequence[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student t); NaN for n < 2."""
    v = np.asarray(values, float)
    if v.size < 2:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


def chip_seeds(seed: int, chips: int) -> list[int]:
    """The chips' seeds, spawned from ``seed``."""
    return [int(s.generate_state(1, dtype=np.uint64)[0] % (2 ** 63))
            for s in np.random.SeedSequence(seed).spawn(chips)]


def accuracy_on(model: nn.Module, ds: Any, batch_size: int = 256,
                device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy (fraction)."""
    return accuracy(model, ds, batch_size, device)


def evaluate_chips(model: nn.Module, hw: HardwareModel, config: AnalogConfig, test_ds: Any, *,
                   chips: int = 5, seed: int = 0, batch_size: int = 256,
                   device: str | torch.device = "cpu", quiet: bool = True,
                   analog: nn.Module | None = None, digital_accuracy: float | None = None,
                   calib_ds: Any = None) -> dict[str, Any]:
    """Accuracy of ``model`` on ``chips`` simulated chips.

    Args:
        model: Digital model (converted here unless ``analog`` is given).
        hw: Hardware model.
        config: Simulation settings.
        test_ds: Dataset to score.
        chips: Number of chips.
        seed: Root seed of the chips.
        batch_size: Images per forward.
        device: ``cpu`` or ``cuda``.
        quiet: No progress bar.
        analog: An already converted model to reuse (its config is replaced by ``config``).
        digital_accuracy: Skip scoring the digital model when known.
        calib_ds: Held-out split for ``kv_range="calibrated"`` (K/V ranges recorded once).

    Returns:
        JSON-able dict: ``accuracy_mean``, ``accuracy_ci95``, ``accuracies``, ``chips``,
        ``chip_seeds``, ``digital_accuracy``, ``seed``, ``config``, ``hardware``,
        ``conversions_per_image``, ``adc_energy_j_per_image``, ``time_s``.
    """
    t0 = time.perf_counter()
    model = model.to(device).eval()
    if digital_accuracy is None:
        digital_accuracy = accuracy_on(model, test_ds, batch_size, device)
    if analog is None:
        analog = convert_to_analog(model, hw, config, seed=None).to(device)
    else:
        set_config(analog, config)
    if config.kv_range == "calibrated" and not any(
            getattr(m, "kv_max", None) for m in analog.modules()):
        if calib_ds is None:
            raise ValueError("kv_range='calibrated' needs a calibration split (calib_ds)")
        calibrate_kv_range(analog, (x.to(device) for x, _ in make_loader(calib_ds,
                                                                          batch_size)))
    seeds = chip_seeds(seed, chips)
    accs = []
    it = seeds
    if not quiet:
        from tqdm import tqdm

        it = tqdm(seeds, desc=_label(config, hw), unit="chip", leave=False)
    conversions(analog, reset=True)
    for s in it:
        program_chip(analog, s)
        accs.append(accuracy_on(analog, test_ds, batch_size, device))
    n_conv = conversions(analog) / max(1, chips * len(test_ds))
    adc = hw.adcs.get(hw.adc_bits) if config.adc else None
    energy = n_conv * adc.energy_j if adc is not None and math.isfinite(adc.energy_j) else None
    return dict(
        accuracy_mean=float(np.mean(accs)), accuracy_ci95=_nan_none(ci95(accs)),
        accuracies=[float(a) for a in accs], chips=chips, chip_seeds=seeds, seed=seed,
        digital_accuracy=float(digital_accuracy), n_images=len(test_ds),
        config=config.to_dict(), hardware=hw.summary(),
        conversions_per_image=n_conv, adc_energy_j_per_image=energy,
        time_s=time.perf_counter() - t0)


def _label(config: AnalogConfig, hw: HardwareModel) -> str:
    c = f" clip{config.clipformer}" if config.clipformer else ""
    return f"{hw.process} {hw.vdd_v:g}V {hw.temp_c:g}C {hw.adc_bits}b g{config.gamma:g}{c}"


def _nan_none(x: float) -> float | None:
    return None if not math.isfinite(x) else x


def calibrate_clipformer(model: nn.Module, hw: HardwareModel, config: AnalogConfig,
                         calib_ds: Any, *, alphas: Sequence[float] = (1.0, 2.0, 4.0),
                         betas: Sequence[float] = (0.25, 0.35, 0.5, 0.75, 1.0),
                         chips: int = 2, seed: int = 0, batch_size: int = 256,
                         device: str | torch.device = "cpu", quiet: bool = True
                         ) -> dict[str, Any]:
    """Pick ClipFormer's (alpha, beta) by accuracy on a held-out split (never the test split).

    Returns:
        ``{"alpha", "beta", "accuracy", "grid": [{"alpha", "beta", "accuracy_mean"}...]}``,
        the best point first by mean accuracy (ties: the milder clip, larger beta).
    """
    analog = convert_to_analog(model.to(device), hw, config, seed=None).to(device)
    if config.kv_range == "calibrated":
        calibrate_kv_range(analog, (x.to(device) for x, _ in make_loader(calib_ds, batch_size)))
    grid = []
    dig = accuracy_on(model, calib_ds, batch_size, device)
    for a in alphas:
        for b in betas:
            cfg = dataclasses.replace(config, clipformer=(float(a), float(b)))
            r = evaluate_chips(model, hw, cfg, calib_ds, chips=chips, seed=seed,
                               batch_size=batch_size, device=device, quiet=quiet,
                               analog=analog, digital_accuracy=dig)
            grid.append(dict(alpha=float(a), beta=float(b), accuracy_mean=r["accuracy_mean"]))
    best = max(grid, key=lambda g: (g["accuracy_mean"], g["beta"], -g["alpha"]))
    return dict(alpha=best["alpha"], beta=best["beta"], accuracy=best["accuracy_mean"],
                grid=grid, chips=chips, seed=seed, n_images=len(calib_ds))
