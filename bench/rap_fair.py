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
from nnsim.hardware import HardwareModel
from nnsim.models import load_or_train
from nnsim.rap import convert_to_rap, evaluate_rap
from nnsim.rap.evaluate import column_sums


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
    # the dense ADC range's calibration sums: corner- and bits-independent, computed once
    sums = column_sums(convert_to_rap(model, calib), sums_loader)
    for corner in a.corners:
        for bits in a.bits:
            hw = HardwareModel.from_lookup([a.crossbar, a.adc], process=corner, adc_bits=bits)
            t0 = time.perf_counter()
            r = evaluate_rap(model, calib, test, hw, bits, seed=a.seed, chips=a.chips,
                             ideal_cells=a.ideal_cells, calib_sums=sums)
            d = r.to_dict()
            d["wall_s"] = time.perf_counter() - t0
            res["points"].append(d)
            write_json(res, a.out)
            print(f"{corner} {bits}b: rap {100 * r.rap.accuracy_mean:.1f} % "
                  f"{r.rap.adc_energy_j_per_inference:.3g} J, dense "
                  f"{100 * r.dense.accuracy_mean:.1f} % {r.dense.adc_energy_j_per_inference:.3g}"
                  f" J, diff {100 * r.comparisons[0].difference_mean:+.1f} "
                  f"({d['wall_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
