"""``evaluate_rap``: FP32 vs float-scale PTQ vs RAP's sparse low-ENOB MVM vs the dense MVM with
a calibrated ADC range, on the same images and chips (paired), with ADC energy per inference."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..energy import energy_per_inference
from ..results import Comparison, RapMvmResult, RapResult
from .intops import int_matmul
from .ptq import float_ptq
from .sparse_mvm import MVMConfig, SparseMVM, adc_bits_needed, k_exact
from .vit import RapConfig, RapViT, convert_to_rap

RAP_DIGITAL = ["attention products digital: Q K^T and P V are exact integer matmuls, not on "
               "crossbars",
               "softmax, LayerNorm, GELU, residual adds (integer, division-free)",
               "patch embedding and classifier head (exact integer products)"]
"""What RAP computes digitally in this simulator (written into every RAP result)."""
RAP_CROSSBAR = ("qkv/proj/fc1/fc2 on crossbars: static weights programmed once per chip "
                "(write noise per level from crossbar/write_noise_samples, verify writes, "
                "bias once), column current through the read transfer with its per-chip "
                "column spread (crossbar/read_transfer) and read noise per conversion "
                "(crossbar/read_noise), then the characterized column ADC (thresholds per "
                "instance, comparator noise); the same for the sparse and the dense mapping; "
                "attention products digital")
"""What RAP's analog MVM models with programmed cells (the default with lookup files)."""
RAP_CROSSBAR_IDEAL = ("qkv/proj/fc1/fc2 on crossbars with ideal cells (exact integer levels, "
                      "no write noise, read noise, transfer or spread); column ADC: the "
                      "characterized circuit (thresholds per instance, noise) or ideal; the "
                      "same for the sparse and the dense mapping; attention products digital")
"""What RAP's analog MVM models with ``ideal_cells=True`` (or without lookup files)."""


@torch.no_grad()
def correct_of(fn: Callable[[torch.Tensor], torch.Tensor], loader: Iterable,
               max_batches: int | None = None, desc: str | None = None, quiet: bool = True
               ) -> np.ndarray:
    """Per image, whether ``fn``'s top-1 class is right (bool, in loader order)."""
    out = []
    for i, (x, y) in enumerate(tqdm(loader, desc=desc, disable=quiet, leave=False)):
        if max_batches is not None and i >= max_batches:
            break
        out.append((fn(x).argmax(-1) == y).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, bool)


def accuracy(fn: Callable[[torch.Tensor], torch.Tensor], loader: Iterable,
             max_batches: int | None = None, desc: str | None = None, quiet: bool = True
             ) -> tuple[float, int]:
    """Top-1 accuracy of ``fn`` over ``loader``; returns ``(accuracy, n_images)``."""
    c = correct_of(fn, loader, max_batches, desc, quiet)
    return (float(c.mean()) if c.size else float("nan")), int(c.size)


def hw_corner(hw: Any) -> dict[str, Any] | None:
    """``{process, vdd_v, temp_c}`` of a hardware model, or ``None``."""
    if hw is None:
        return None
    out = {}
    for k in ("process", "vdd_v", "temp_c"):
        v = getattr(hw, k, None)
        out[k] = v if not (isinstance(v, float) and math.isnan(v)) else None
    return out


@torch.no_grad()
def column_sums(rap: RapViT, loader: Iterable, *, rows: int = 64, cell_bits: int = 2,
                max_batches: int | None = None, max_values: int = 1 << 22,
                hw: Any = None, chip_seed: int = 0, bits: int = 8,
                layers: list[Any] | None = None) -> np.ndarray:
    """Column sums (unit cell currents) of the dense mapping, all rows driven, over the
    inputs the analog layers see on ``loader`` (a calibration split): every bit plane, sign
    phase, tile and physical column. Accumulated as a histogram (memory independent of the
    split's size); returned sorted, thinned in proportion to about ``max_values`` entries
    (deterministic; quantiles kept to about 1/max_values; the largest sum kept).

    Without ``hw``: the ideal integer cells' sums. With ``hw``: the sums the readout of chip
    ``chip_seed`` actually senses, ``u g(u)`` (the programmed cells' fixed-point currents of
    ``RapViT.set_mvm(dense, hw, chip_seed)``, G_min current included, times the mean read
    transfer ``HardwareModel.readout_terms``; no noise), in unit currents (float).
    ``layers``: only these analog layers (default all)."""
    progs: dict[int, Tensor] = {}
    frac = 0
    if hw is not None:   # the chip's programmed cells (the same draw as set_mvm's)
        rap.set_mvm(MVMConfig(mode="dense", adc_bits=bits, rows=rows, cell_bits=cell_bits,
                              adc_shift=0), hw, chip_seed)
        if rap.cells_model == "programmed":
            frac = rap.cell_settings.frac_bits
            progs = {id(lin): lin.mvm.cells.cpu() for lin in rap.analog_layers()}
    rap.set_mvm(MVMConfig(mode="digital"))
    cfg = MVMConfig(mode="digital", rows=rows, cell_bits=cell_bits,
                    weight_bits=rap.cfg.weight_bits, input_bits=rap.cfg.act_bits)
    top = rows * ((1 << cell_bits) - 1)
    if progs:
        top = max(int(c.reshape(-1, rows, c.shape[-1]).sum(1).amax()) for c in progs.values())
    hist = torch.zeros(top + 1, dtype=torch.int64)
    hooks = []

    def hook(lin: Any) -> Any:
        sm = SparseMVM(lin.w_m.cpu(), cfg, None)
        cells = progs.get(id(lin), sm.cells).reshape(sm.n_tiles, rows, sm.cols)

        def fn(_m: Any, args: tuple) -> None:
            x = args[0].reshape(-1, sm.in_features).cpu().to(torch.int64)
            pad = sm.n_tiles * rows - sm.in_features
            xp = torch.nn.functional.pad(x, (0, pad)) if pad else x
            for sign in (1, -1):
                mag = (xp * sign).clamp(min=0).reshape(-1, sm.n_tiles, rows)
                for b in range(cfg.input_bits - 1):
                    bits = (mag >> b) & 1
                    for t in range(sm.n_tiles):
                        hist.add_(torch.bincount(int_matmul(bits[:, t], cells[t]).reshape(-1),
                                                 minlength=top + 1))
        return fn

    for lin in (rap.analog_layers() if layers is None else layers):
        hooks.append(lin.register_forward_pre_hook(hook(lin)))
    try:
        for i, (x, _y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            rap(x)
    finally:
        for h in hooks:
            h.remove()
    counts = hist.numpy()
    total = int(counts.sum())
    if total > max_values:
        hi = int(np.nonzero(counts)[0].max())
        counts = np.round(counts * (max_values / total)).astype(np.int64)
        counts[hi] = max(1, counts[hi])                 # the largest sum stays
    if not progs:
        return np.repeat(np.arange(top + 1), counts)
    u = torch.arange(top + 1, dtype=torch.float64) / float(1 << frac)
    gain = hw.readout_terms(u.float(), gain=True, read=False, spread=False)[0]
    sensed = (u * gain.double()).numpy()                 # monotone in u: stays sorted
    return np.repeat(sensed, counts)


def calibrate_adc_range(sums: np.ndarray, bits: int, *, quantile: float = 0.9999
                        ) -> tuple[int, dict[str, Any]]:
    """The dense ADC's LSB from calibration column sums: the smallest ``shift`` whose full
    scale ``(2**bits - 1) * 2**shift`` unit currents covers the ``quantile`` of the sums
    (larger sums saturate). Returns ``(shift, facts)``."""
    q = float(np.quantile(sums, quantile)) if sums.size else 0.0
    top = (1 << bits) - 1
    shift = 0
    while top * (1 << shift) < q:
        shift += 1
    facts = dict(method=f"calibrated: full scale covers the {100 * quantile:g} % quantile of "
                 "the calibration column sums", quantile=quantile, quantile_sum=q,
                 mean_sum=float(sums.mean()) if sums.size else None,
                 max_sum=int(sums.max()) if sums.size else None,
                 full_scale_units=top * (1 << shift),
                 saturated_fraction=float((sums > top * (1 << shift)).mean())
                 if sums.size else None)
    return shift, facts


def run_mvm(rap: RapViT, loader: Iterable, mvm: MVMConfig, hw: Any, seed: int, *,
            max_batches: int | None = None, quiet: bool = True, ideal_cells: bool = False,
            fused: bool = True) -> dict[str, Any]:
    """Accuracy and per-inference ADC work of ``rap`` mapped with ``mvm`` on chip ``seed``
    (cells programmed on that chip unless ``ideal_cells``; see ``RapViT.set_mvm``)."""
    rap.set_mvm(mvm, hw, seed, ideal_cells=ideal_cells, fused=fused)
    rap.reset_counters()
    t0 = time.perf_counter()
    cor = correct_of(rap, loader, max_batches, desc=f"RAP {mvm.mode} {mvm.adc_bits}b",
                     quiet=quiet)
    wall = time.perf_counter() - t0
    n = int(cor.size)
    c = rap.counters()
    adc = rap.column_adc
    conv = c.conversions / n
    energy = None if adc is None or adc.energy_j is None else conv * adc.energy_j
    t_conv = None if adc is None or adc.conversion_time_s is None else adc.conversion_time_s
    # the simulated reads (programmed cells only): mean ideal column current at T per
    # conversion (MVMCounters.current_q) and mean active rows per conversion (every column
    # of a cycle reads the cycle's rows)
    rd = rap.readout
    unit_a = getattr(hw, "unit_a", None)
    sim_i = (c.current_q / float(1 << rd.frac_bits) * float(unit_a) / c.conversions
             if rd is not None and unit_a is not None and c.conversions else None)
    sim_rows = c.active_rows / c.cycles if rd is not None and c.cycles else None
    return {
        "correct": cor, "accuracy": float(cor.mean()), "n_images": n, "mode": mvm.mode,
        "adc_bits": mvm.adc_bits, "k": mvm.k_active, "rows": mvm.rows,
        "cell_bits": mvm.cell_bits,
        "adc_bits_exact": adc_bits_needed(mvm.k_active, mvm.cell_bits),
        "lsb_unit_currents": 2 ** mvm.shift,
        "conversions_per_inference": conv, "cycles_per_inference": c.cycles / n,
        "active_rows_per_inference": c.active_rows / n,
        "adc_energy_j_per_inference": energy,
        "adc_energy_rel_per_inference": conv * 2 ** mvm.adc_bits,
        "array_time_s_per_inference": None if t_conv is None else c.cycles / n * t_conv,
        "adc_source": rap.adc_source, "chip_seed": seed, "wall_s": wall,
        "cells": rap.cells_model,
        "crossbar": RAP_CROSSBAR if rap.cells_model == "programmed" else RAP_CROSSBAR_IDEAL,
        "uncertain_fraction": None if rap.readout is None else rap.readout.uncertain_fraction,
        "mean_column_current_a": sim_i, "mean_active_rows": sim_rows,
        "column_reads": c.conversions,
    }


def evaluate_rap(model: nn.Module, calib_loader: Iterable, test_loader: Iterable, hw: Any,
                 bits: int, k: int | None = None, seed: int = 0, *,
                 config: RapConfig | None = None, rows: int = 64, cell_bits: int = 2,
                 include_dense: bool = True, dense_range: str = "calibrated",
                 max_batches: int | None = None, quiet: bool = True, chips: int = 1,
                 ideal_cells: bool = False, calib_sums: np.ndarray | None = None
                 ) -> RapResult:
    """Compare FP32, float-scale W8A8 PTQ, RAP's integer path, RAP's sparse low-ENOB MVM and
    the dense MVM, on the same images and the same chips (paired).

    Both MVM mappings use the same crossbar readout (cells programmed once per chip with
    write noise, read transfer with per-chip spread, read noise) and the same characterized
    ADC (``RAP_CROSSBAR``); what is digital (the attention products among it) is listed in
    ``RAP_DIGITAL``, in every result's ``digital`` and in ``rap_config["attention_products"]``.

    Args:
        model: float timm-style ViT.
        calib_loader: calibration split (sets RAP's exponents, PTQ's scales and the dense
            ADC's range).
        test_loader: test split, ``(images, labels)`` batches.
        hw: ``nnsim.hardware.HardwareModel`` at the chosen corner (its ``adc(bits)``), or
            ``None`` for an ideal ADC (no energy then).
        bits: column ADC resolution (the same for both mappings).
        k: most active rows per conversion; default: the most that ``bits`` resolves exactly,
            ``floor((2**bits - 1) / (2**cell_bits - 1))`` capped at ``rows``.
        seed: root seed of the chips (ADC instance per column and conversion noise).
        config: RAP integer-path settings.
        rows: rows per crossbar array.
        cell_bits: bits per RRAM cell.
        include_dense: also run the dense MVM (all rows active) with the same ADC.
        dense_range: ``"calibrated"`` (the dense ADC's LSB from the calibration column sums,
            ``calibrate_adc_range``) or ``"full"`` (LSB covering ``rows (2**cell_bits - 1)``:
            every possible sum fits, most codes unused).
        max_batches: evaluate only this many test batches.
        quiet: no progress bars.
        chips: simulated chips (seeds spawned from ``seed``, the same for both mappings).
        ideal_cells: exact integer cell levels with the ADC alone (the pre-issue-15 model,
            ``RAP_CROSSBAR_IDEAL``); default: programmed cells when ``hw`` is given.
        calib_sums: the calibration split's dense column sums (``column_sums`` of this model;
            with programmed cells those of the first chip at this corner,
            rows and cell_bits) when already computed: they depend on neither the corner nor
            the bits, so a sweep computes them once.

    Returns:
        A ``RapResult`` (``nnsim.results``) with ``rap`` and ``dense`` as ``RapMvmResult``
        and the paired comparison ``rap vs dense``.
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
    rap_r = _over_chips(rap, test_loader, sparse, hw, seed, chips, max_batches, quiet,
                        {"method": "at most k rows per conversion: every ideal sum "
                         "within the ADC's range at 1 unit per LSB"},
                        ideal_cells)
    dense_r = None
    comparisons = []
    if include_dense:
        if dense_range == "calibrated":
            programmed = (hw is not None and not ideal_cells
                          and getattr(hw, "adcs", None) != {})
            first_chip = seed if chips <= 1 else rap_r.chip_seeds[0]
            given = calib_sums is not None
            if not given:
                calib_sums = column_sums(rap, calib_loader, rows=rows, cell_bits=cell_bits,
                                         hw=hw if programmed else None,
                                         chip_seed=first_chip, bits=bits)
            shift, facts = calibrate_adc_range(calib_sums, bits)
            facts["sums"] = ("given by the caller (calib_sums)" if given else
                             f"sensed by chip {first_chip}'s programmed cells (mean read "
                             "transfer, G_min current included)" if programmed
                             else "ideal integer cells")
            if programmed and not given:  # what the ideal-cell sums (pre-issue-15) give
                ideal_sums = column_sums(rap, calib_loader, rows=rows, cell_bits=cell_bits)
                s_id, f_id = calibrate_adc_range(ideal_sums, bits)
                facts["ideal_cells"] = {"shift": s_id, "quantile_sum": f_id["quantile_sum"],
                                        "mean_sum": f_id["mean_sum"]}
        elif dense_range == "full":
            shift, facts = None, {"method": "full: every possible sum fits"}
        else:
            raise ValueError(f"dense_range={dense_range!r}: expected calibrated or full")
        dense = MVMConfig(mode="dense", adc_bits=bits, rows=rows, cell_bits=cell_bits,
                          adc_shift=shift)
        dense_r = _over_chips(rap, test_loader, dense, hw, seed, chips, max_batches, quiet,
                              facts, ideal_cells)
        from ..stats import N_BOOT, paired_difference

        d, ci, msgs = paired_difference(rap_r.correct, dense_r.correct, seed=seed, warn=False)
        comparisons.append(Comparison(
            name="rap vs dense", a=f"rap sparse k={k_used} {bits}b",
            b=f"dense {bits}b ({dense_range} range)", difference_mean=d, difference_ci95=ci,
            ci_method=f"paired bootstrap over chips and images ({N_BOOT} resamples)",
            chips=rap_r.chips, n_images=rap_r.n_images, chip_seeds=rap_r.chip_seeds,
            warnings=msgs))
    n_chips = max(1, chips)
    return RapResult(
        n_images=n, seed=seed, bits=bits, k=k_used, k_default=k_default, corner=hw_corner(hw),
        fp32_accuracy=fp32, ptq_float_accuracy=ptq, rap_integer_accuracy=integer,
        rap=rap_r, dense=dense_r, comparisons=comparisons,
        rap_config={**{k2: getattr(rap.cfg, k2) for k2 in rap.cfg.__dataclass_fields__},
                    "attention_products": "digital (exact integer matmuls, not on crossbars)",
                    "adc_trim": getattr(hw, "adc_trim", None),
                    "cells": rap_r.crossbar},
        timing={"digital_s": t_fp32, "per_chip_s": rap_r.time_s / n_chips,
                "dense_per_chip_s": dense_r.time_s / n_chips if dense_r else None})


def _over_chips(rap: RapViT, loader: Iterable, mvm: MVMConfig, hw: Any, seed: int, chips: int,
                max_batches: int | None, quiet: bool, adc_range: dict[str, Any],
                ideal_cells: bool = False) -> RapMvmResult:
    """``run_mvm`` on ``chips`` chips (seeds spawned from ``seed``; ``seed`` itself for one)."""
    from ..evaluate import chip_seeds
    from ..stats import N_BOOT, bootstrap_ci

    seeds = [seed] if chips <= 1 else chip_seeds(seed, chips)
    runs = [run_mvm(rap, loader, mvm, hw, s, max_batches=max_batches, quiet=quiet,
                    ideal_cells=ideal_cells) for s in seeds]
    correct = np.stack([r["correct"] for r in runs])
    mean, ci, msgs = bootstrap_ci(correct, seed=seed, warn=False)
    r0 = runs[0]
    # the simulated reads over all chips (weighted by their conversions); both mappings
    # (sparse RAP and its dense baseline) scale the crossbar read parts the same way
    n_read = sum(r["column_reads"] for r in runs)
    known = n_read > 0 and all(r["mean_column_current_a"] is not None for r in runs)
    sim = {"mean_column_current_a": sum(r["mean_column_current_a"] * r["column_reads"]
                                        for r in runs) / n_read if known else None,
           "mean_active_rows": sum(r["mean_active_rows"] * r["column_reads"]
                                   for r in runs) / n_read if known else None,
           "column_reads": n_read}
    epi = None if r0["adc_energy_j_per_inference"] is None else energy_per_inference(
        float(np.mean([r["conversions_per_inference"] for r in runs])),
        getattr(hw, "adcs", {}).get(mvm.adc_bits), getattr(hw, "read_energy", None),
        mean_column_current_a=sim["mean_column_current_a"],
        mean_active_rows=sim["mean_active_rows"])
    if epi is not None:
        epi["simulated_read"] = sim
    return RapMvmResult(
        mode=mvm.mode, adc_bits=mvm.adc_bits, k=r0["k"], accuracy_mean=mean,
        accuracy_ci95=ci, ci_method=f"bootstrap over chips and images ({N_BOOT} resamples)",
        accuracies=[r["accuracy"] for r in runs], chips=len(seeds), chip_seeds=seeds,
        n_images=r0["n_images"],
        conversions_per_inference=float(np.mean([r["conversions_per_inference"]
                                                 for r in runs])),
        cycles_per_inference=float(np.mean([r["cycles_per_inference"] for r in runs])),
        active_rows_per_inference=float(np.mean([r["active_rows_per_inference"]
                                                 for r in runs])),
        adc_energy_j_per_inference=None if r0["adc_energy_j_per_inference"] is None else
        float(np.mean([r["adc_energy_j_per_inference"] for r in runs])),
        adc_energy_rel_per_inference=float(np.mean([r["adc_energy_rel_per_inference"]
                                                    for r in runs])),
        array_time_s_per_inference=r0["array_time_s_per_inference"],
        lsb_unit_currents=r0["lsb_unit_currents"], adc_bits_exact=r0["adc_bits_exact"],
        adc_range=adc_range, adc_source=r0["adc_source"], crossbar=r0["crossbar"],
        digital=list(RAP_DIGITAL), rows=mvm.rows, cell_bits=mvm.cell_bits, warnings=msgs,
        time_s=sum(r["wall_s"] for r in runs),
        # the whole read (nnsim.energy): ADC parts x conversions + crossbar read parts x
        # column reads (one column read per conversion in both mappings), the crossbar parts
        # scaled by the simulated reads where the table allows (simulated_read)
        energy_per_inference=epi,
        correct=correct)


def pareto_front(points: list[dict[str, Any]], x: str = "adc_energy_j_per_inference",
                 y: str = "accuracy_mean") -> list[bool]:
    """For each point, whether no other point has lower-or-equal ``x`` and higher-or-equal
    ``y`` with one strictly better (the accuracy-vs-ADC-energy Pareto front)."""
    out = []
    for p in points:
        dom = any(q is not p and q[x] <= p[x] and q[y] >= p[y] and (q[x] < p[x] or q[y] > p[y])
                  for q in points)
        out.append(not dom)
    return out
