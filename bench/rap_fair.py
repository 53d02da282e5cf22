"""RAP sparse vs the fair dense baseline on the circuit files (issue 15 item 4).

Both mappings through the same crossbar readout (cells programmed once per chip with write
noise, read transfer with per-chip spread, read noise) and the same characterized ADC; the
dense ADC range calibrated on the calibration split's column sums; same images, same chips
(paired). Attention products digital (every result says so).

Usage::

    .venv/bin/python bench/rap_fair.py --crossbar runs/demo/crossbar.h5 \\
        --adc runs/demo/adc.h5 --corners tt --bits 3 4 6 --n-images 40 --chips 3 \\
        --out bench/results/rap_fair_tt.json

Writes the JSON (atomically) after every (corner, bits) point.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from nnsim.data import load_dataset, make_loader
from nnsim.evaluate import chip_seeds
from nnsim.hardware import HardwareModel
from nnsim.models import load_or_train
from nnsim.rap import convert_to_rap, evaluate_rap
from nnsim.rap.evaluate import calibrate_adc_range, column_sums
from nnsim.rap.sparse_mvm import kernel_path


def write_json(obj: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crossbar", required=True)
    ap.add_argument("--adc", required=True)
    ap.add_argument("--corners", nargs="+", default=["tt", "ss", "ff"])
    ap.add_argument("--bits", type=int, nargs="+", default=[3, 4, 6])
    ap.add_argument("--n-images", type=int, default=40)
    ap.add_argument("--chips", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ideal-cells", action="store_true")
    ap.add_argument("--sums-images", type=int, default=None,
                    help="calibration images for the dense ADC range (default: the split)")
    ap.add_argument("--trims", nargs="+", default=["none"],
                    help="ADC trims (HardwareModel adc_trim) run at every bits of --trim-bits")
    ap.add_argument("--trim-bits", type=int, nargs="*", default=[8],
                    help="resolutions run with every --trims (others: none only)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    model, meta = load_or_train("digits", quiet=True)
    calib = make_loader(load_dataset("digits", "calib"), 128)
    test_ds = load_dataset("digits", "test")
    test = DataLoader(Subset(test_ds, range(min(a.n_images, len(test_ds)))), batch_size=16)
    res = {"model": "digits", "checkpoint": meta.get("path"), "lookups": [a.crossbar, a.adc],
           "n_images": a.n_images, "chips": a.chips, "seed": a.seed,
           "cells": "ideal" if a.ideal_cells else "programmed",
           "attention_products": "digital", "sums_images": a.sums_images, "points": []}
    calib_ds = load_dataset("digits", "calib")
    sums_loader = calib if a.sums_images is None else DataLoader(
        Subset(calib_ds, range(min(a.sums_images, len(calib_ds)))), batch_size=32)
    rap = convert_to_rap(model, calib)
    # the dense ADC range's calibration sums: the ideal cells' (corner-independent) and, with
    # programmed cells, those the first chip senses at each corner (bits-independent)
    ideal_sums = column_sums(rap, sums_loader)
    first_chip = a.seed if a.chips <= 1 else chip_seeds(a.seed, a.chips)[0]
    res["kernel_path"] = kernel_path()
    for corner in a.corners:
        sums = ideal_sums
        if not a.ideal_cells:
            hw0 = HardwareModel.from_lookup([a.crossbar, a.adc], process=corner,
                                            adc_bits=a.bits[0])
            sums = column_sums(rap, sums_loader, hw=hw0, chip_seed=first_chip,
                               bits=a.bits[0])
        for bits, trim in [(b, t) for b in a.bits
                           for t in (a.trims if b in a.trim_bits else ["none"])]:
            hw = HardwareModel.from_lookup([a.crossbar, a.adc], process=corner,
                                           adc_bits=bits, adc_trim=trim)
            t0 = time.perf_counter()
            r = evaluate_rap(model, calib, test, hw, bits, seed=a.seed, chips=a.chips,
                             ideal_cells=a.ideal_cells, calib_sums=sums)
            d = r.to_dict()
            d["dense"]["adc_range"]["sums"] = (
                "ideal integer cells" if a.ideal_cells else
                f"sensed by chip {first_chip}'s programmed cells at {corner} (mean read "
                "transfer, G_min current included)")
            d["wall_s"] = time.perf_counter() - t0
            d["adc_trim"] = trim
            shift_id, facts_id = calibrate_adc_range(ideal_sums, bits)
            d["dense_range_ideal_cells"] = {**facts_id, "shift": shift_id}
            res["points"].append(d)
            write_json(res, a.out)
            print(f"{corner} {bits}b trim {trim}: rap {100 * r.rap.accuracy_mean:.1f} % "
                  f"{r.rap.adc_energy_j_per_inference:.3g} J, dense "
                  f"{100 * r.dense.accuracy_mean:.1f} % "
                  f"{r.dense.adc_energy_j_per_inference:.3g} J (LSB {r.dense.lsb_unit_currents}"
                  f" units; ideal-cell range: {2 ** shift_id}), diff "
                  f"{100 * r.comparisons[0].difference_mean:+.1f} ({d['wall_s']:.0f} s)",
                  flush=True)


if __name__ == "__main__":
    main()
