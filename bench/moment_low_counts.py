"""The moment mode at 3 and 4 ADC bits (issue 17 c): this tree's ``moment_low_counts`` (the
exact low-active-row conversions) against an older commit's, side by side in one process.

The older commit's ``nnsim`` is extracted with ``git archive`` into a temporary folder and
imported as ``nnsim_old`` (the package imports itself only relatively), so both run in one
process on the same model, hardware, images and chip seeds, alternating. Both run with
``readout_kernel="torch"`` (the older tree has no moment kernel; the torch path draws the
same ``torch.randn`` in both), so their accuracies must agree image by image: the JSON
records them and whether they are equal. The current tree is also timed with its default
(``auto``: the C kernel for the K/V writes and output noise; other random draws, so other
accuracies within the CI). Writes ``bench/results/moment_low_counts.json``.

    .venv/bin/python bench/moment_low_counts.py [--old c471737] [--images 450] [--chips 1]
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from common import LOOKUPS

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "moment_low_counts.json"


def _old_package(commit: str) -> str:
    """Extract ``nnsim`` of ``commit`` as ``nnsim_old`` in a temporary folder on sys.path."""
    d = Path(tempfile.mkdtemp(prefix="nnsim-old-"))
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "nnsim"],
                         capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(d)], input=tar, check=True)
    (d / "nnsim").rename(d / "nnsim_old")
    sys.path.insert(0, str(d))
    return str(d)


def _run(pkg: str, model, lookups, bits: int, kernel: str, test, calib, seeds, batch: int):
    """Per chip: per-image correct, and seconds (program + forward over the images)."""
    hwm = importlib.import_module(f"{pkg}.hardware")
    an_m = importlib.import_module(f"{pkg}.analog")
    cv = importlib.import_module(f"{pkg}.convert")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hw = hwm.HardwareModel.from_lookup(lookups, process="tt", adc_bits=bits)
        cfg = an_m.AnalogConfig(fidelity="moment", readout_kernel=kernel)
        an = cv.convert_to_analog(model, hw, cfg, seed=None)
        cv.program_chip(an, seeds[0])
        cv.calibrate_moment(an, [calib], seed=0)
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
    ap.add_argument("--old", default="c471737", help="the commit to compare with")
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
    _old_package(a.old)
    res = {"old_commit": a.old, "new_commit": subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
        text=True).stdout.strip(), "images": len(test), "chips": a.chips, "batch": a.batch,
        "lookup": a.lookup, "threads": 1, "settings": {}}
    with torch.no_grad():
        t0 = time.perf_counter()
        for i in range(0, len(test), a.batch):
            model(test.images[i:i + a.batch])
        res["digital_s"] = time.perf_counter() - t0
    for bits in a.bits:
        old_c, old_s = _run("nnsim_old", model, a.lookup, bits, "torch", test, calib, seeds,
                            a.batch)
        new_c, new_s = _run("nnsim", model, a.lookup, bits, "torch", test, calib, seeds,
                            a.batch)
        auto_c, auto_s = _run("nnsim", model, a.lookup, bits, "auto", test, calib, seeds,
                              a.batch)
        r = {"old_torch_s_per_chip": float(np.mean(old_s)),
             "new_torch_s_per_chip": float(np.mean(new_s)),
             "new_default_s_per_chip": float(np.mean(auto_s)),
             "old_over_new_torch": float(np.mean(old_s) / np.mean(new_s)),
             "old_over_new_default": float(np.mean(old_s) / np.mean(auto_s)),
             "accuracy_old": float(old_c.mean()), "accuracy_new_torch": float(new_c.mean()),
             "accuracy_new_default": float(auto_c.mean()),
             "images_differing_old_vs_new_torch": int((old_c != new_c).sum()),
             "new_default_over_digital": float(np.mean(auto_s) / res["digital_s"])}
        res["settings"][f"{bits}bit"] = r
        print(f"{bits} bits: old {r['old_torch_s_per_chip']:.1f} s/chip, new (torch path) "
              f"{r['new_torch_s_per_chip']:.1f} s ({r['old_over_new_torch']:.2f}x faster), new "
              f"default {r['new_default_s_per_chip']:.1f} s ({r['old_over_new_default']:.2f}x);"
              f" accuracy old {r['accuracy_old']:.4f} new {r['accuracy_new_torch']:.4f} "
              f"({r['images_differing_old_vs_new_torch']} images differ), default "
              f"{r['accuracy_new_default']:.4f}", flush=True)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
