"""Behavioural SAR vs transistor-level SAR: code transitions by successive refinement.

The transistor-level SAR in ngspice is deterministic (ngspice's transient noise does not cover
device noise), so a probit fit of P(code >= k) has no noise to fit. Instead each selected
transition ``T_k`` (the input where the code goes from below ``k`` to ``k`` or above) is
bracketed and refined, the SPICE conversions of each round being one run:

* round 0: ``probes`` equally spaced inputs inside ``[c_k - w/2, c_k + w/2]`` (``w`` =
  ``width_lsb``), centred on the behavioural prediction plus a seeded jitter of up to half a
  probe step (so the truth never sits on a probe by construction);
* each round: the new bracket is (largest probe below ``k``, smallest probe at or above ``k``);
  a side that no probe confirmed is widened by ``w`` (so a behavioural model that is off by
  more than ``w/2`` is still found, the bracket just takes a round longer);
* after ``rounds`` rounds the estimate is the bracket's midpoint, its uncertainty the bracket
  width (RMS ``width / sqrt(12)`` for a uniformly placed truth); a transition whose bracket
  was never confirmed on both sides is NaN.

The **floor** of the method is measured, not assumed: the very same procedure (same probes,
same rounds, same jitter) is run on the behavioural converter itself and compared with its
exact thresholds (``SarInstance.thresholds_v``). The reported error is the RMS of SPICE minus
behavioural thresholds over the selected transitions; it is meaningful only where it is well
above the floor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from spicebridge.netlist import deck_hash

from ._netlists import (
    MISMATCH_DEVICES,
    ComparatorSizing,
    SwitchSizing,
    mismatch_source,
    read_sar_codes,
    read_sar_drive_energy,
    read_sar_energy,
    sar_deck,
    vin_pwl_values,
    vin_source_names,
)
from .behavioural import SarInstance

TARGET_RMS_LSB = 0.1
"""Validation target: RMS of SPICE minus behavioural thresholds, LSB."""


def select_codes(bits: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Transitions to validate: the major carries first (2^(N-1), 2^(N-2), 3*2^(N-2), ...),
    then seeded random others, ``count`` in all (at most 2^N - 1), sorted."""
    n = 2**bits - 1
    count = min(count, n)
    chosen: list[int] = []
    for level in range(1, bits + 1):
        step = 2 ** (bits - level)
        for k in range(step, 2**bits, 2 * step):
            if len(chosen) < max(1, count // 2) and k not in chosen:
                chosen.append(k)
    rest = np.setdiff1d(np.arange(1, n + 1), chosen)
    extra = rng.choice(rest, size=count - len(chosen), replace=False) if count > len(chosen) \
        else np.array([], dtype=int)
    return np.sort(np.concatenate([np.asarray(chosen, dtype=int), extra.astype(int)]))


def refine_thresholds(convert: Callable[[np.ndarray], np.ndarray], codes: np.ndarray,
                      centers_lsb: np.ndarray, *, probes: int, rounds: int,
                      width_lsb: float = 2.0) -> tuple[np.ndarray, np.ndarray, int]:
    """Successive-refinement transition estimates (module docstring).

    Args:
        convert: Inputs in LSB (1-D) -> output codes (same length); one call per round.
        codes: Transition indices k.
        centers_lsb: Starting bracket centres, LSB.

    Returns:
        (estimates LSB, final bracket widths LSB, conversions used); NaN where unconfirmed.
    """
    codes = np.asarray(codes, dtype=int)
    lo = np.asarray(centers_lsb, float) - width_lsb / 2
    hi = np.asarray(centers_lsb, float) + width_lsb / 2
    lo_ok = np.zeros(codes.size, bool)
    hi_ok = np.zeros(codes.size, bool)
    frac = np.arange(1, probes + 1) / (probes + 1)
    used = 0
    for _ in range(rounds):
        x = lo[:, None] + (hi - lo)[:, None] * frac[None, :]
        out = np.asarray(convert(x.reshape(-1))).reshape(x.shape)
        used += x.size
        above = out >= codes[:, None]
        got_lo, got_hi = (~above).any(axis=1), above.any(axis=1)
        below_x = np.where(~above, x, -np.inf).max(axis=1)
        above_x = np.where(above, x, np.inf).min(axis=1)
        # not monotonic inside the bracket (a "below" probe above an "above" one): keep the
        # widest interval the probes allow, so the uncertainty stays honest
        swap = got_lo & got_hi & (below_x > above_x)
        below_x, above_x = (np.where(swap, np.minimum(below_x, above_x), below_x),
                            np.where(swap, np.maximum(below_x, above_x), above_x))
        # every probe above (below) k: the transition lies below the first (above the last)
        # probe; the other side is widened unless an earlier round confirmed it
        new_lo = np.where(got_lo, below_x, np.where(lo_ok, lo, lo - width_lsb))
        new_hi = np.where(got_hi, above_x, np.where(hi_ok, hi, hi + width_lsb))
        lo_ok |= got_lo
        hi_ok |= got_hi
        lo, hi = new_lo, new_hi
    est = np.where(lo_ok & hi_ok, 0.5 * (lo + hi), np.nan)
    return est, np.where(lo_ok & hi_ok, hi - lo, np.nan), used


def _rms(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.sqrt(np.mean(a**2))) if a.size else float("nan")


def spice_converter(coords: dict[str, Any], sizing: ComparatorSizing, dvt: dict[str, float],
                    inst: SarInstance, *, tclk_s: float = 4e-9, record: dict | None = None,
                    switches: SwitchSizing | None = None
                    ) -> Callable[[np.ndarray], np.ndarray]:
    """``convert(x_lsb) -> codes`` by the full transistor-level SAR of this die (one ngspice
    transient per call: a staircase input, one step per conversion; the deck is loaded once
    per staircase length, later calls ``reset`` it and set the staircase by ``alter
    @vin[pwl]`` per source of the
    staircase; the read-back of every conversion's sampled input checks that the new
    staircase took effect). ``record`` collects the deck hashes (the deck each call would
    load), SPICE wall time and the integrated energies of every run. ``switches``: the sky130
    switch sizing of the deck's front end (``None``: ideal B-source switches)."""
    from .comparator import shared_engine

    rec = record if record is not None else {}
    rec.setdefault("deck_sha256", [])
    rec.setdefault("spice_s", 0.0)
    rec.setdefault("energy", [])

    loaded: dict[int, Any] = {}

    def convert(x_lsb: np.ndarray) -> np.ndarray:
        vin = np.asarray(x_lsb, float) * inst.lsb_v
        deck = sar_deck(str(coords["process"]), float(coords["vdd_v"]),
                        float(coords["temp_c"]), sizing, caps_f=list(inst.caps_f),
                        c_dummy_f=inst.c_dummy_f, c_par_f=inst.c_par_f, vref_v=inst.vref_v,
                        conversions=vin.size, vin_lo_v=0.0, vin_hi_v=0.0, tclk_s=tclk_s,
                        vin_steps_v=list(vin), switches=switches)
        t0 = time.perf_counter()
        circ = loaded.get(vin.size)
        fresh = circ is None or not circ.is_valid()
        if fresh:
            # one load per staircase length (loading the sky130 models is the slow part)
            circ = shared_engine().load(deck)
            loaded.clear()
            loaded[vin.size] = circ
        else:
            # later rounds: reset (XSPICE state and alters), new staircase by vector alter
            circ.reset()
            blocks = vin_pwl_values(list(vin), vin.size * (inst.bits + 2) * tclk_s,
                                    (inst.bits + 2) * tclk_s)
            for name, pwl in zip(vin_source_names(vin.size), blocks, strict=True):
                circ.command(f"alter @{name}[pwl] = [ "
                             + " ".join(f"{x:.12g}" for x in pwl) + " ]")
        for d in MISMATCH_DEVICES:
            circ.alter(mismatch_source("c", d), dvt[d])
        plot = circ.run()["tran1"]
        codes, vin_read = read_sar_codes(plot, inst.bits, vin.size, tclk_s)
        if not _read_back_ok(codes, vin_read, vin, inst.lsb_v) and not fresh:
            # the vector alter did not take (ngspice limits a command line's length): load
            circ = shared_engine().load(deck)
            loaded.clear()
            loaded[vin.size] = circ
            for d in MISMATCH_DEVICES:
                circ.alter(mismatch_source("c", d), dvt[d])
            plot = circ.run()["tran1"]
            codes, vin_read = read_sar_codes(plot, inst.bits, vin.size, tclk_s)
            rec["reloads"] = rec.get("reloads", 0) + 1
        rec["spice_s"] += time.perf_counter() - t0
        rec["deck_sha256"].append(deck_hash(deck))
        if not _read_back_ok(codes, vin_read, vin, inst.lsb_v):
            raise RuntimeError(f"SAR staircase read-back failed at process={coords['process']}"
                               f", vdd_v={coords['vdd_v']}, temp_c={coords['temp_c']}: "
                               f"{codes.size} of {vin.size} conversions")
        rec["energy"].append(read_sar_energy(plot, list(inst.caps_f), inst.vref_v,
                                             float(coords["vdd_v"]), vin.size))
        if switches is not None:
            rec.setdefault("drive_energy", []).append(
                read_sar_drive_energy(plot, float(coords["vdd_v"]), inst.bits, vin.size,
                                      inst.vref_v))
        rec.setdefault("vin_v", []).append(vin)
        return codes

    return convert


def _read_back_ok(codes: np.ndarray, vin_read: np.ndarray, vin: np.ndarray,
                  lsb_v: float) -> bool:
    """Every conversion's sampled input is the staircase step it was given."""
    return codes.size == vin.size and bool(np.allclose(vin_read, vin,
                                                       atol=1e-6 * lsb_v + 1e-9, rtol=0))


def validate_refined(coords: dict[str, Any], sizing: ComparatorSizing, dvt: dict[str, float],
                     inst: SarInstance, *, thresholds: int, probes: int, rounds: int,
                     seed: int, width_lsb: float = 2.0, tclk_s: float = 4e-9,
                     beh_shift_lsb: float = 0.0, record: dict | None = None,
                     converter: Callable[[np.ndarray], np.ndarray] | None = None,
                     switches: SwitchSizing | None = None) -> dict[str, Any]:
    """Transistor-level SAR vs behavioural thresholds of the same die at ``inst.bits``.

    ``beh_shift_lsb`` shifts the behavioural thresholds (tests: a wrong model must fail).
    ``converter``/``record``: reuse a ``spice_converter`` of this die (and its record) so
    repeated validations share one loaded deck.

    Returns:
        ``rms_lsb`` (SPICE - behavioural over the selected transitions), ``max_lsb``,
        ``floor_rms_lsb`` (the same procedure on the behavioural converter vs its exact
        thresholds), ``bracket_rms_lsb`` (final bracket width / sqrt(12), RMS), ``codes``,
        ``spice_lsb``, ``beh_lsb``, ``conversions``, ``spice_s``, ``deck_sha256``, and the
        SPICE-integrated energies per conversion (``ref_energy_j``, ``vdd_energy_j``,
        ``ref_energy_beh_j`` at the same inputs, ``decisions_per_conversion``).
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(inst.bits)]))
    codes = select_codes(inst.bits, thresholds, rng)
    beh_exact = inst.thresholds_v()[codes - 1] / inst.lsb_v + beh_shift_lsb
    step = width_lsb / (probes + 1)
    centers = beh_exact + rng.uniform(-0.5, 0.5, codes.size) * step
    rec: dict[str, Any] = {} if record is None else record
    n_runs = len(rec.get("energy", []))
    spice = converter or spice_converter(coords, sizing, dvt, inst, tclk_s=tclk_s, record=rec,
                                         switches=switches)
    est, width, used = refine_thresholds(spice, codes, centers, probes=probes, rounds=rounds,
                                         width_lsb=width_lsb)

    def beh(x_lsb: np.ndarray) -> np.ndarray:
        return inst.convert(np.asarray(x_lsb) * inst.lsb_v - beh_shift_lsb * inst.lsb_v)

    est_self, _, _ = refine_thresholds(beh, codes, centers, probes=probes,
                                                rounds=rounds, width_lsb=width_lsb)
    err = est - beh_exact
    e_ref = float(np.mean([e[0] for e in rec["energy"][n_runs:]]))
    e_vdd = float(np.mean([e[1] for e in rec["energy"][n_runs:]]))
    vin_all = np.concatenate(rec["vin_v"][n_runs:])
    drive = rec.get("drive_energy", [])[n_runs:]
    return {
        "bits": inst.bits, "codes": codes.tolist(), "spice_lsb": est.tolist(),
        "beh_lsb": beh_exact.tolist(), "rms_lsb": _rms(err),
        "max_lsb": float(np.nanmax(np.abs(err))) if np.isfinite(err).any() else float("nan"),
        "floor_rms_lsb": _rms(est_self - beh_exact),
        "bracket_rms_lsb": _rms(width / np.sqrt(12.0)),
        "unconfirmed": int(np.sum(~np.isfinite(est))), "conversions": used,
        "spice_s": rec["spice_s"], "deck_sha256": rec["deck_sha256"][n_runs:],
        "ref_energy_j": e_ref, "vdd_energy_j": e_vdd,
        "ref_energy_beh_j": float(inst.reference_energy_j(vin_all).mean()),
        "decisions_per_conversion": inst.bits + 2,
        "drive_energy_j": float(np.mean(drive)) if drive else float("nan"),
    }
