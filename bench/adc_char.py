"""SAR ADC characterization cost and accuracy (issue 5 targets).

Measured side by side in one run, on one Monte-Carlo instance at tt/1.8 V/27 C:

* ``spice_sar``: the full transistor-level SAR (sky130 StrongARM + XSPICE logic) converting a
  ramp of 8 points per code at ``--spice-bits`` (the ngspice.md way: ~78 s at 8 bits);
* ``hybrid``: what the characterization does per instance instead: the SPICE comparator
  (offset in 3 zooming ramps, kickback, delay/energy run, ``.noise``) + the behavioural SAR for
  every resolution 3..8 (thresholds, DNL/INL, sine-fit ENOB, energy, decision error);
* ``validation``: behavioural vs full-SPICE thresholds of that instance (RMS, max, LSB);
* ``preset``: wall time of ``spicebridge characterize adc --preset P`` (``--preset``; ``none``
  skips) with its validation record.

Usage: ``python bench/adc_char.py [--spice-bits 4] [--preset quick] [--jobs 2]``.
Writes ``bench/results/adc_char.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from characterization.adc._netlists import ComparatorSizing
from characterization.adc.behavioural import SarInstance, draw_caps
from characterization.adc.characterize import (
    DEFAULTS,
    build_config,
    measure_point,
    run_characterization,
    validate_instance,
)
from characterization.adc.comparator import _LOADED, _NOISE, draw_mismatch, measure_comparator
from characterization.sweep import SweepPoint


def _point(seed: int, ctx: dict) -> SweepPoint:
    return SweepPoint(0, {"process": "tt", "vdd_v": 1.8, "temp_c": 27.0}, 99, seed, ctx)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spice-bits", type=int, nargs="+", default=[4])
    ap.add_argument("--preset", default="quick", choices=("none", "quick", "default", "full"))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "load_avg_start": os.getloadavg()}}
    sizing = ComparatorSizing()
    rng = np.random.default_rng(12345)
    dvt = draw_mismatch(sizing, rng)
    # hybrid per instance (cold: includes loading the testbench and the .noise deck)
    ctx = {k: v for k, v in build_config("quick").items()
           if k not in ("process", "vdd_v", "temp_c", "mc", "seed")}
    ctx["validate"] = {"instances": 0}
    ctx["mismatch_seed"] = 1
    _LOADED.clear()
    _NOISE.clear()
    t0 = time.perf_counter()
    measure_point(_point(777, ctx))
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    measure_point(_point(778, ctx))
    warm = time.perf_counter() - t0
    out["hybrid"] = {"bits": ctx["bits"], "cold_s": cold, "warm_s": warm}
    # behavioural only, 8 bits
    caps, dummy = draw_caps(8, DEFAULTS["c_unit_f"], DEFAULTS["cap_sigma_unit_rel"], rng)
    inst8 = SarInstance(8, caps, dummy, 0.1 * (caps.sum() + dummy), 1.0, 1e-3, 5e-4)
    t0 = time.perf_counter()
    inst8.thresholds_v()
    out["behavioural_thresholds_8bit_s"] = time.perf_counter() - t0
    # full SPICE SAR vs behavioural on the same instance
    out["spice_sar"] = []
    for bits in args.spice_bits:
        caps, dummy = draw_caps(bits, DEFAULTS["c_unit_f"], DEFAULTS["cap_sigma_unit_rel"], rng)
        c_par = DEFAULTS["c_par_rel"] * (caps.sum() + dummy)
        c_t = caps.sum() + dummy + c_par
        cmp = measure_comparator("tt", 1.8, 27.0, sizing, dvt, c_kick_f=c_t)
        inst = SarInstance(bits, caps, dummy, c_par, 1.0, offset_v=-cmp.offset_at_v(c_t))
        v = validate_instance({"process": "tt", "vdd_v": 1.8, "temp_c": 27.0}, sizing, dvt,
                              inst, conversions_per_code=8)
        rec = {"bits": bits, "conversions": 2**bits * 8, "spice_s": v["wall_s"],
               "rms_lsb": v["rms_lsb"], "max_lsb": v["max_lsb"],
               "hybrid_warm_s_all_bits_3_to_8": warm,
               "ratio_spice_over_hybrid": v["wall_s"] / warm,
               "ref_energy_spice_j": v["ref_energy_j"], "ref_energy_beh_j": v["ref_energy_beh_j"],
               "vdd_energy_spice_j": v["vdd_energy_j"],
               "vdd_energy_tb_j": v["decisions_per_conversion"] * cmp.energy_j}
        out["spice_sar"].append(rec)
        print(f"{bits}-bit full SPICE SAR ramp: {v['wall_s']:.1f} s; hybrid (SPICE comparator "
              f"+ behavioural, bits 3..8): {warm:.1f} s -> {v['wall_s'] / warm:.1f}x; "
              f"thresholds RMS {v['rms_lsb']:.3f} LSB, max {v['max_lsb']:.3f} LSB")
    print(f"behavioural 8-bit thresholds: {out['behavioural_thresholds_8bit_s'] * 1e3:.0f} ms "
          f"(ngspice.md: full 8-bit transistor-level ramp ~78 s -> "
          f"{78 / out['behavioural_thresholds_8bit_s']:.0f}x)")
    if args.preset != "none":
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            s = run_characterization(build_config(args.preset), Path(d) / "adc.h5",
                                     jobs=args.jobs, quiet=True)
            wall = time.perf_counter() - t0
        out["preset"] = {"name": args.preset, "jobs": args.jobs, "wall_s": wall,
                         "n_points": s["n_points"], "n_failed": s["n_failed"],
                         "validation": s["validation"]}
        print(f"preset {args.preset}: {wall:.1f} s wall on {args.jobs} jobs, {s['n_points']} "
              f"points, validation RMS {s['validation']['rms_lsb']:.3f} LSB over "
              f"{s['validation']['instances']} instance(s) (max {s['validation']['max_lsb']:.3f})")
    out["machine"]["load_avg_end"] = os.getloadavg()
    res = Path(__file__).parent / "results" / "adc_char.json"
    res.parent.mkdir(exist_ok=True)
    res.write_text(json.dumps(out, indent=1, default=float))
    print(f"wrote {res}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
