"""``evaluate_rap``: FP32 vs float-scale PTQ vs RAP (dense and sparse MVM) on one chip."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from .ptq import float_ptq
from .sparse_mvm import MVMConfig, adc_bits_needed, k_exact
from .vit import RapConfig, RapViT, convert_to_rap


@torch.no_grad()
def accuracy(fn: Callable[[torch.Tensor], torch.Tensor], loader: Iterable,
             max_batches: int | None = None, desc: str | None = None, quiet: bool = True
             ) -> tuple[float, int]:
    """Top-1 accuracy of ``fn`` over ``loader``; returns ``(accuracy, n_images)``."""
    correct = total = 0
    for i, (x, y) in enumerate(tqdm(loader, desc=desc, disable=quiet, leave=False)):
        if max_batches is not None and i >= max_batches:
            break
        correct += int((fn(x).argmax(-1) == y).sum())
        total += int(y.numel())
    return (correct / total if total else float("nan")), total


def hw_corner(hw: Any) -> dict[str, Any] | None:
    """``{process, vdd_v, temp_c}`` of a hardware model, or ``None``."""
    if hw is None:
        return None
    out = {}
    for k in ("process", "vdd_v", "temp_c"):
        v = getattr(hw, k, None)
        out[k] = v if not (isinstance(v, float) and math.isnan(v)) else None
    return out


def run_mvm(rap: RapViT, loader: Iterable, mvm: MVMConfig, hw: Any, seed: int, *,
            max_batches: int | None = None, quiet: bool = True) -> dict[str, Any]:
    """Accuracy and per-inference ADC work of ``rap`` mapped with ``mvm`` on chip ``seed``."""
    rap.set_mvm(mvm, hw, seed)
    rap.reset_counters()
    t0 = time.perf_counter()
    acc, n = accuracy(rap, loader, max_batches, desc=f"RAP {mvm.mode} {mvm.adc_bits}b",
                      quiet=quiet)
    wall = time.perf_counter() - t0
    c = rap.counters()
    adc = rap.column_adc
    conv = c.conversions / n
    energy = None if adc is None or adc.energy_j is None else conv * adc.energy_j
    t_conv = None if adc is None or adc.conversion_time_s is None else adc.conversion_time_s
    return {
        "accuracy": acc, "n_images": n, "mode": mvm.mode, "adc_bits": mvm.adc_bits,
        "k": mvm.k_active, "rows": mvm.rows, "cell_bits": mvm.cell_bits,
        "adc_bits_exact": adc_bits_needed(mvm.k_active, mvm.cell_bits),
        "lsb_unit_currents": 2 ** mvm.shift,
        "conversions_per_inference": conv, "cycles_per_inference": c.cycles / n,
        "active_rows_per_inference": c.active_rows / n,
        "adc_energy_j_per_inference": energy,
        "adc_energy_rel_per_inference": conv * 2 ** mvm.adc_bits,
        "array_time_s_per_inference": None if t_conv is None else c.cycles / n * t_conv,
        "adc_source": rap.adc_source, "chip_seed": seed, "wall_s": wall,
    }


def evaluate_rap(model: nn.Module, calib_loader: Iterable, test_loader: Iterable, hw: Any,
                 bits: int, k: int | None = None, seed: int = 0, *,
                 config: RapConfig | None = None, rows: int = 64, cell_bits: int = 2,
                 include_dense: bool = True, max_batches: int | None = None,
                 quiet: bool = True, chips: int = 1) -> dict[str, Any]:
    """Compare FP32, float-scale W8A8 PTQ and RAP on one chip.

    Args:
        model: float timm-style ViT.
        calib_loader: calibration split (sets RAP's exponents and PTQ's scales).
        test_loader: test split, ``(images, labels)`` batches.
        hw: ``nnsim.hardware.HardwareModel`` at the chosen corner (its ``adc(bits)``), or
            ``None`` for an ideal ADC (no energy then).
        bits: column ADC resolution.
        k: most active rows per conversion; default: the most that ``bits`` resolves exactly,
            ``floor((2**bits - 1) / (2**cell_bits - 1))`` capped at ``rows``.
        seed: chip seed (ADC instance per column and conversion noise).
        config: RAP integer-path settings.
        rows: rows per crossbar array.
        cell_bits: bits per RRAM cell.
        include_dense: also run the dense MVM (all rows active) with the same ADC.
        max_batches: evaluate only this many test batches.
        quiet: no progress bars.
        chips: simulated chips; with more than one, ``rap`` and ``dense`` hold the mean
            ``accuracy`` over chips (seeds spawned from ``seed``), ``accuracy_ci95`` and the
            per-chip ``accuracies``; the integer path without ADC is chip-independent.

    Returns:
        JSON-able dict: ``fp32``, ``ptq_float``, ``rap_integer`` (exact integer products),
        ``rap`` (sparse low-ENOB MVM), ``dense`` (when asked), the settings, and ``timing``
        (``digital_s``: the FP32 forward over the same images; ``per_chip_s``: seconds of
        the sparse path per simulated chip; ``dense_per_chip_s``).
    """
    model = model.eval()
    k_default = k_exact(bits, cell_bits, rows)
    k_used = k_default if k is None else int(k)
    t_fp32 = time.perf_counter()
    fp32, n = accuracy(model, test_loader, max_batches, "FP32", quiet)
    t_fp32 = time.perf_counter() - t_fp32
    ptq, _ = accuracy(float_ptq(model, calib_loader), test_loader, max_batches, "PTQ", quiet)
    rap = convert_to_rap(model, calib_loader, config)
    integer, _ = accuracy(rap, test_loader, max_batches, "RAP int", quiet)
    sparse = MVMConfig(mode="sparse", adc_bits=bits, k=k_used, rows=rows, cell_bits=cell_bits)
    out: dict[str, Any] = {
        "n_images": n, "seed": seed, "bits": bits, "k": k_used, "k_default": k_default,
        "corner": hw_corner(hw),
        "fp32": {"accuracy": fp32},
        "ptq_float": {"accuracy": ptq, "weight_bits": 8, "act_bits": 8},
        "rap_integer": {"accuracy": integer},
        "rap": _over_chips(rap, test_loader, sparse, hw, seed, chips, max_batches, quiet),
        "rap_config": {k2: getattr(rap.cfg, k2) for k2 in rap.cfg.__dataclass_fields__},
    }
    if include_dense:
        dense = MVMConfig(mode="dense", adc_bits=bits, rows=rows, cell_bits=cell_bits)
        out["dense"] = _over_chips(rap, test_loader, dense, hw, seed, chips, max_batches, quiet)
    n_chips = max(1, chips)
    out["timing"] = {"digital_s": t_fp32, "per_chip_s": out["rap"]["wall_s"] / n_chips,
                     "dense_per_chip_s": (out["dense"]["wall_s"] / n_chips
                                          if include_dense else None)}
    return out


def _over_chips(rap: RapViT, loader: Iterable, mvm: MVMConfig, hw: Any, seed: int, chips: int,
                max_batches: int | None, quiet: bool) -> dict[str, Any]:
    """``run_mvm`` on one chip (seed ``seed``) or averaged over ``chips`` spawned seeds."""
    if chips <= 1:
        return run_mvm(rap, loader, mvm, hw, seed, max_batches=max_batches, quiet=quiet)
    from ..evaluate import chip_seeds, ci95

    runs = [run_mvm(rap, loader, mvm, hw, s, max_batches=max_batches, quiet=quiet)
            for s in chip_seeds(seed, chips)]
    accs = [r["accuracy"] for r in runs]
    out = dict(runs[0])
    out.update(accuracy=sum(accs) / len(accs), accuracy_ci95=ci95(accs), accuracies=accs,
               chips=chips, chip_seeds=[r["chip_seed"] for r in runs], chip_seed=None,
               wall_s=sum(r["wall_s"] for r in runs))
    return out
