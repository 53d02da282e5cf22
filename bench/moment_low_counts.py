"""The moment mode at 3 and 4 ADC bits (issue 17 c): this tree's ``moment_low_counts`` (the
exact low-active-row conversions) against an older commit's, side by side in one process.

The older commit's ``nnsim`` is extracted with ``git archive`` into a temporary folder and
imported as ``nnsim_old`` (the package imports itself only relatively), so both run in one
process on the same model, hardware, images and chip seeds, interleaved (best of
``--repeat``). Each tree runs twice: with ``readout_kernel="torch"`` (the eager path: the
same ``torch.randn`` in both trees, so their accuracies agree image by image unless the
attention chunks changed: since d078f14 the exact path's chunks are larger, other draws) and with
its default ``auto`` (the C kernels: the moment kernel's K/V writes and output noise, here
also the low-count conversions of ``nnsim/kernels/lowcount.c``, equal to the torch path to
float rounding, which re-draws ``calibrate_moment``'s bit-level pass: docs/nnsim.md). The
JSON records the accuracies and how many image-chips differ.
Writes ``bench/results/moment_low_counts.json``.

    .venv/bin/python bench/moment_low_counts.py [--old 519245a] [--images 450] [--chips 1]
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from common import LOOKUPS, old_package

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "moment_low_counts.json"


def _setup(pkg: str, model, lookups, bits: int, kernel: str, calib, seed: int):
    """The converted and calibrated model of tree ``pkg`` (``nnsim`` or ``nnsim_old``)."""
    hwm = importlib.import_module(f"{pkg}.hardware")
    an_m = importlib.import_module(f"{pkg}.analog")
    cv = importlib.import_module(f"{pkg}.convert")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hw = hwm.HardwareModel.from_lookup(lookups, process="tt", adc_bits=bits)
        cfg = an_m.AnalogConfig(fidelity="moment", readout_kernel=kernel)
        an = cv.convert_to_analog(model, hw, cfg, seed=None)
        cv.program_chip(an, seed)
        cv.calibrate_moment(an, [calib], seed=0)
    return cv, an


def _run(cv, an, test, seeds, batch: int):
    """Per chip: per-image correct, and seconds (program + forward over the images)."""
    rows, secs = [], []
    with torch.no_grad():
        for s in seeds:
            t0 = time.perf_counter()
            cv.program_chip(an, s)
            pred = torch.cat([an(test.images[i:i + batch]).argmax(-1)
                              for i in range(0, len(test), batch)])
            secs.append(time.perf_counter() - t0)
            rows.append((pred == test.labels).numpy())
    return np.stack(rows), secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="519245a", help="the commit to compare with")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved runs (best kept)")
    ap.add_argument("--images", type=int, default=450)
    ap.add_argument("--chips", type=int, default=1)
    ap.add_argument("--bits", type=int, nargs="*", default=[4, 3])
    ap.add_argument("--batch", type=int, default=256, help="images per forward (evaluate's)")
    ap.add_argument("--lookup", nargs="*", default=LOOKUPS)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    torch.set_num_threads(1)
    from nnsim.data import load_dataset
    from nnsim.evaluate import chip_seeds
    from nnsim.models import load_or_train

    model, _ = load_or_train("digits", quiet=True)
    model.eval()
    test = load_dataset("digits", "test").subset(a.images)
    calib = load_dataset("digits", "calib").images[:64]
    seeds = chip_seeds(0, a.chips)
    old_package(a.old)
    res = {"old_commit": a.old, "new_commit": subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
        text=True).stdout.strip(), "images": len(test), "chips": a.chips, "batch": a.batch,
        "lookup": a.lookup, "threads": 1, "repeat": a.repeat, "settings": {}}
    with torch.no_grad():
        dig = []
        for _ in range(3):
            t0 = time.perf_counter()
            for i in range(0, len(test), a.batch):
                model(test.images[i:i + a.batch])
            dig.append(time.perf_counter() - t0)
        res["digital_s"] = min(dig)
    variants = (("old_torch", "nnsim_old", "torch"), ("new_torch", "nnsim", "torch"),
                ("old_default", "nnsim_old", "auto"), ("new_default", "nnsim", "auto"))
    for bits in a.bits:
        runs = {v: _setup(pkg, model, a.lookup, bits, kern, calib, seeds[0])
                for v, pkg, kern in variants}
        correct: dict[str, np.ndarray] = {}
        best: dict[str, float] = {}
        for _ in range(max(1, a.repeat)):  # interleaved: old and new under the same load
            for v in runs:
                c, secs = _run(*runs[v], test, seeds, a.batch)
                if v in correct:
                    assert (correct[v] == c).all(), f"{v}: a repeat changed the results"
                correct[v] = c
                best[v] = min(best.get(v, float("inf")), float(np.mean(secs)))
        r = {f"{v}_s_per_chip": best[v] for v in runs}
        r.update({"old_over_new_torch": best["old_torch"] / best["new_torch"],
                  "old_over_new_default": best["old_default"] / best["new_default"]})
        r.update({f"accuracy_{v}": float(correct[v].mean()) for v in runs})
        r["images_differing_old_vs_new_torch"] = int(
            (correct["old_torch"] != correct["new_torch"]).sum())
        r["images_differing_old_vs_new_default"] = int(
            (correct["old_default"] != correct["new_default"]).sum())
        r["new_default_over_digital"] = best["new_default"] / res["digital_s"]
        res["settings"][f"{bits}bit"] = r
        print(f"{bits} bits: torch path old {best['old_torch']:.1f} s/chip, new "
              f"{best['new_torch']:.1f} s ({r['old_over_new_torch']:.2f}x); default old "
              f"{best['old_default']:.1f} s, new {best['new_default']:.1f} s "
              f"({r['old_over_new_default']:.2f}x faster); accuracy torch old "
              f"{r['accuracy_old_torch']:.4f} new {r['accuracy_new_torch']:.4f} "
              f"({r['images_differing_old_vs_new_torch']} images differ), default old "
              f"{r['accuracy_old_default']:.4f} new {r['accuracy_new_default']:.4f} "
              f"({r['images_differing_old_vs_new_default']} differ)", flush=True)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
