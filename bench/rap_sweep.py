"""RAP/FLARE sweep: accuracy vs ADC bits and vs corner, dense vs sparse MVM; timing.

Usage::

    .venv/bin/python bench/rap_sweep.py [--crossbar X.h5 --adc A.h5] [--n-images 16]
        [--chips 3] [--bits 3 4 5 6 8] [--corners tt ss ff] [--quiet]

Without ``--crossbar/--adc`` the ADC comes from ``nnsim.synthetic`` stand-in files (labelled
``"adc_data": "synthetic"`` in the JSON): NOT circuit data. Writes
``bench/results/rap_sweep.json`` (atomically, after every stage).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from nnsim.data import load_dataset, make_loader
from nnsim.hardware import HardwareModel
from nnsim.models import load_or_train
from nnsim.rap import MVMConfig, convert_to_rap, run_mvm
from nnsim.rap.evaluate import accuracy
from nnsim.rap.ptq import float_ptq

OUT = Path(__file__).parent / "results" / "rap_sweep.json"
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306}


def write_json(obj: dict) -> None:
    out = Path(obj["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600
    os.replace(tmp, out)


def ci95(values: list[float]) -> list[float]:
    m = statistics.fmean(values)
    if len(values) < 2:
        return [m, m]
    h = T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return [m - h, m + h]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crossbar")
    ap.add_argument("--adc")
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--chips", type=int, default=3)
    ap.add_argument("--bits", type=int, nargs="+", default=[3, 4, 5, 6, 8])
    ap.add_argument("--corners", nargs="+", default=["tt", "ss", "ff"])
    ap.add_argument("--target-bits", type=int, default=3)
    ap.add_argument("--target-corner", default="ss")
    ap.add_argument("--only-target", action="store_true",
                    help="run only the dense-vs-sparse target comparison (and the digital rows)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.crossbar and a.adc:
        files, source = [a.crossbar, a.adc], "characterized"
    else:
        from nnsim.synthetic import write_synthetic_adc, write_synthetic_crossbar
        d = Path(tempfile.mkdtemp(prefix="rap_sweep_"))
        files = [str(write_synthetic_crossbar(d / "crossbar.h5", seed=0)),
                 str(write_synthetic_adc(d / "adc.h5", seed=0, bits=tuple(sorted(set(
                     [*a.bits, a.target_bits])))))]
        source = "synthetic"
    model, meta = load_or_train("digits")
    calib = make_loader(load_dataset("digits", "calib"), 128)
    test_ds = load_dataset("digits", "test")
    full_test = make_loader(test_ds, 128)
    sub = DataLoader(Subset(test_ds, range(a.n_images)), batch_size=a.n_images)
    res: dict = {"out": str(a.out), "adc_data": source, "files": files, "model": "digits",
                 "model_seed": meta.get("seed"), "n_images_analog": a.n_images,
                 "chips": a.chips, "rows": 64, "cell_bits": 2}
    rap = convert_to_rap(model, calib)
    fp32, n = accuracy(model, full_test)
    ptq, _ = accuracy(float_ptq(model, calib), full_test)
    integer, _ = accuracy(rap, full_test)
    sub_fp32, _ = accuracy(model, sub)
    res["full_test"] = {"n_images": n, "fp32": fp32, "ptq_float": ptq, "rap_integer": integer}
    res["subset_fp32"] = sub_fp32
    write_json(res)

    def hw_at(corner: str, bits: int) -> HardwareModel:
        return HardwareModel.from_lookup(files, process=corner, adc_bits=bits)

    # 1. target: dense vs sparse at the target corner and bits, over chips
    tgt = {}
    for mode in ("dense", "sparse"):
        runs = [run_mvm(rap, sub, MVMConfig(mode=mode, adc_bits=a.target_bits),
                        hw_at(a.target_corner, a.target_bits), seed, quiet=a.quiet)
                for seed in range(a.chips)]
        accs = [r["accuracy"] for r in runs]
        tgt[mode] = {"accuracy_per_chip": accs, "mean": statistics.fmean(accs),
                     "ci95": ci95(accs), "k": runs[0]["k"],
                     "conversions_per_inference": runs[0]["conversions_per_inference"],
                     "adc_energy_j_per_inference": runs[0]["adc_energy_j_per_inference"],
                     "wall_s_per_chip": statistics.fmean(r["wall_s"] for r in runs)}
        print(a.target_corner, a.target_bits, mode, accs, flush=True)
    tgt["non_overlapping"] = tgt["sparse"]["ci95"][0] > tgt["dense"]["ci95"][1]
    res["target"] = {"corner": a.target_corner, "bits": a.target_bits, **tgt}
    write_json(res)
    if a.only_target:
        return

    # 2. accuracy vs ADC bits at tt (chip 0)
    res["vs_bits"] = []
    for bits in a.bits:
        for mode in ("dense", "sparse"):
            r = run_mvm(rap, sub, MVMConfig(mode=mode, adc_bits=bits), hw_at("tt", bits), 0,
                        quiet=a.quiet)
            res["vs_bits"].append({"corner": "tt", **r})
            print("tt", bits, mode, r["accuracy"], r["conversions_per_inference"], flush=True)
            write_json(res)

    # 3. accuracy vs corner at the target bits (chip 0)
    res["vs_corner"] = []
    for corner in a.corners:
        for mode in ("dense", "sparse"):
            r = run_mvm(rap, sub, MVMConfig(mode=mode, adc_bits=a.target_bits),
                        hw_at(corner, a.target_bits), 0, quiet=a.quiet)
            res["vs_corner"].append({"corner": corner, **r})
            print(corner, a.target_bits, mode, r["accuracy"], flush=True)
            write_json(res)

    # 4. timing on one batch: analog (non-RAP) forward vs RAP forwards, side by side
    from nnsim.convert import convert_to_analog
    x = next(iter(sub))[0]
    hw6 = hw_at("tt", 6) if 6 in a.bits else hw_at("tt", a.bits[-1])
    analog = convert_to_analog(model, hw6, seed=0)

    def best(fn, reps: int = 2) -> float:
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            with torch.no_grad():
                fn(x)
            ts.append(time.perf_counter() - t0)
        return min(ts)

    t_analog = best(analog)
    rap.set_mvm(MVMConfig(mode="digital"))
    t_int = best(rap)
    rap.set_mvm(MVMConfig(mode="sparse", adc_bits=8), None, 0)
    t_ideal8 = best(rap)
    rap.set_mvm(MVMConfig(mode="sparse", adc_bits=hw6.adc_bits), hw6, 0)
    t_circ = best(rap, 1)
    res["timing"] = {
        "batch_images": int(x.shape[0]), "analog_forward_s": t_analog,
        "rap_integer_forward_s": t_int, "rap_sparse_ideal_adc_8b_s": t_ideal8,
        f"rap_sparse_circuit_adc_{hw6.adc_bits}b_s": t_circ,
        "ratio_rap_integer_over_analog": t_int / t_analog,
        "ratio_rap_sparse_ideal_over_analog": t_ideal8 / t_analog,
        "ratio_rap_sparse_circuit_over_analog": t_circ / t_analog,
    }
    print(json.dumps(res["timing"], indent=1), flush=True)
    write_json(res)


if __name__ == "__main__":
    main()
