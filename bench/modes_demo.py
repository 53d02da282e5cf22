"""The demo's analog settings in both fidelities (issue 17, "accuracy of every demo setting
unchanged"): ``moment`` (what the demo runs: one matmul per product, the readout errors as
one Gaussian, calibrated per layer against ``bit``) and ``bit`` (every conversion drawn: the
CLI's default and the reference), on the same chips and the same images, paired.

Per setting it records both accuracies with their 95 % intervals, moment - bit with its
paired interval (``nnsim.evaluate.compare``: chips and images resampled together), whether
the interval holds 0, and each mode's seconds per chip. Writes
``bench/results/modes_demo.json``.

    .venv/bin/python bench/modes_demo.py [--images 450] [--chips 3] [--lookup X.h5 Y.h5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import time
import warnings
from pathlib import Path

import torch
from common import LOOKUPS

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "modes_demo.json"

# (process, temp_c, bits, gamma): the distinct analog points of make demo's corners,
# temperature, ADC-bits and gamma steps (imc/demo/pipeline.py), without ClipFormer
SETTINGS = [("tt", 27.0, 6, 1.0), ("ss", 27.0, 6, 1.0), ("ff", 27.0, 6, 1.0),
            ("tt", 85.0, 6, 1.0), ("ss", 85.0, 6, 1.0), ("ff", 85.0, 6, 1.0),
            ("tt", 27.0, 3, 1.0), ("tt", 27.0, 4, 1.0), ("tt", 27.0, 5, 1.0),
            ("tt", 27.0, 8, 1.0), ("tt", 27.0, 6, 3.0), ("tt", 27.0, 6, 5.0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=450)
    ap.add_argument("--chips", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lookup", nargs=2, default=LOOKUPS, metavar=("CROSSBAR.h5", "ADC.h5"))
    ap.add_argument("--only", type=int, nargs="*", choices=range(len(SETTINGS)),
                    metavar="I", help=f"indices into SETTINGS (0-{len(SETTINGS) - 1})")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    torch.set_num_threads(1)
    from nnsim.analog import AnalogConfig
    from nnsim.data import load_dataset
    from nnsim.evaluate import compare, evaluate_chips
    from nnsim.hardware import HardwareModel
    from nnsim.models import load_or_train

    model, _ = load_or_train("digits", quiet=True)
    model.eval()
    test = load_dataset("digits", "test").subset(a.images)
    calib = load_dataset("digits", "calib")
    res = {"commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip(),
           "images": len(test), "chips": a.chips, "seed": a.seed, "lookup": a.lookup,
           "threads": 1, "config": "AnalogConfig(gamma, kv_range='calibrated'), the circuit "
           "protocol; moment calibrated on 64 calib images", "settings": []}
    if a.out.exists() and a.only:  # add to an earlier run's settings
        res["settings"] = json.loads(a.out.read_text())["settings"]
    pick = a.only if a.only else range(len(SETTINGS))
    for i in pick:
        proc, temp, bits, gamma = SETTINGS[i]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hw = HardwareModel.from_lookup(a.lookup, process=proc, vdd_v=1.8, temp_c=temp,
                                           adc_bits=bits)
        base = AnalogConfig(gamma=gamma, kv_range="calibrated")
        pts, secs = {}, {}
        for f in ("moment", "bit"):
            t0 = time.perf_counter()
            pts[f] = evaluate_chips(model, hw, dataclasses.replace(base, fidelity=f), test,
                                    chips=a.chips, seed=a.seed, calib_ds=calib, cache=None)
            secs[f] = (time.perf_counter() - t0) / a.chips
        c = compare(pts["moment"], pts["bit"], "moment - bit")
        lo, hi = c.difference_ci95
        row = {"process": proc, "temp_c": temp, "bits": bits, "gamma": gamma,
               "moment": pts["moment"].accuracy_mean, "moment_ci95": pts["moment"].accuracy_ci95,
               "bit": pts["bit"].accuracy_mean, "bit_ci95": pts["bit"].accuracy_ci95,
               "digital": pts["bit"].digital_accuracy,
               "moment_minus_bit": c.difference_mean, "moment_minus_bit_ci95": [lo, hi],
               "interval_holds_0": bool(lo <= 0.0 <= hi),
               "s_per_chip": secs}
        res["settings"] = [r for r in res["settings"] if (r["process"], r["temp_c"], r["bits"],
                                                          r["gamma"]) != SETTINGS[i]] + [row]
        print(f"{proc} {temp:g} degC {bits}-bit gamma {gamma:g}: moment {100 * row['moment']:.2f}"
              f" %, bit {100 * row['bit']:.2f} %, moment - bit {100 * c.difference_mean:+.2f} "
              f"[{100 * lo:+.2f}, {100 * hi:+.2f}] points; s/chip moment {secs['moment']:.1f}, "
              f"bit {secs['bit']:.1f}", flush=True)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1) + "\n")
        tmp.replace(a.out)
    held = sum(r["interval_holds_0"] for r in res["settings"])
    print(f"{held} of {len(res['settings'])} settings: the paired interval holds 0")


if __name__ == "__main__":
    main()
