"""RAP sparse 3-bit on the circuit files / the analog forward, side by side (issue 17 target 4).

One process, one torch thread, the same images: the analog simulator's forward
(``convert_to_analog``, default ``AnalogConfig``, 6-bit circuit ADC) and RAP's sparse 3-bit MVM
on programmed cells (write noise, transfer + spread, read noise, circuit ADC) with the fused
sampler (the fused C kernel ``nnsim/kernels/rap_mvm.c`` where it builds, and the torch path),
with every conversion sampled (torch path), and on ideal cells (the pre-issue-15 model). Times are
wall and process CPU (``time.process_time``): on a shared machine the CPU time is the fairer
ratio. Writes ``bench/results/rap_speed.json``.

Usage::

    .venv/bin/python bench/rap_speed.py --crossbar runs/demo/crossbar.h5 \\
        --adc runs/demo/adc.h5 [--images 2]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import tempfile
import time
from pathlib import Path

import torch

from nnsim.convert import convert_to_analog
from nnsim.data import load_dataset, make_loader
from nnsim.hardware import HardwareModel
from nnsim.models import load_or_train
from nnsim.rap import MVMConfig, convert_to_rap
from nnsim.rap.sparse_mvm import kernel_path

OUT = Path(__file__).parent / "results" / "rap_speed.json"


def timed(fn) -> dict:
    w, c = time.perf_counter(), time.process_time()
    with torch.no_grad():
        fn()
    return {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crossbar", required=True)
    ap.add_argument("--adc", required=True)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--corner", default="tt")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    torch.set_num_threads(1)
    files = [a.crossbar, a.adc]
    model, _ = load_or_train("digits", quiet=True)
    x = load_dataset("digits", "test").images[:a.images]
    rap = convert_to_rap(model, make_loader(load_dataset("digits", "calib"), 128))
    hw6 = HardwareModel.from_lookup(files, process=a.corner, adc_bits=6)
    hw3 = HardwareModel.from_lookup(files, process=a.corner, adc_bits=3)
    analog = convert_to_analog(model, hw6, seed=0)
    cfg = MVMConfig(mode="sparse", adc_bits=3)
    res: dict = {"images": int(x.shape[0]), "corner": a.corner, "lookups": files,
                 "threads": 1, "target_sparse_3bit_over_analog": 2.0,
                 "note": "shared machine: ratios measured side by side in one process; "
                         "cpu_s is the process CPU time"}
    runs = {}
    runs["analog_default"] = timed(lambda: analog(x))
    rap.set_mvm(cfg, hw3, seed=0)
    res["uncertain_table_fraction"] = rap.readout.uncertain_fraction
    res["rap_kernel_path"] = kernel_path()
    runs["rap_sparse_3bit_programmed_fused"] = timed(lambda: rap(x))
    res["kernel_draw_fraction"] = (sum(lin.mvm.kernel_draws for lin in rap.analog_layers())
                                   / max(1, rap.counters().conversions))
    rap.set_mvm(cfg, hw3, seed=0, use_kernel=False)
    runs["rap_sparse_3bit_programmed_fused_torch_path"] = timed(lambda: rap(x))
    rap.set_mvm(cfg, hw3, seed=0, use_kernel=False, fused=False)
    runs["rap_sparse_3bit_programmed_every_conversion_sampled_torch_path"] = timed(
        lambda: rap(x))
    rap.set_mvm(cfg, hw3, seed=0, ideal_cells=True)
    runs["rap_sparse_3bit_ideal_cells"] = timed(lambda: rap(x))
    runs["analog_default_again"] = timed(lambda: analog(x))
    base = {k: min(runs["analog_default"][k], runs["analog_default_again"][k])
            for k in ("wall_s", "cpu_s")}
    for name, r in runs.items():
        r["over_analog_wall"] = r["wall_s"] / base["wall_s"]
        r["over_analog_cpu"] = r["cpu_s"] / base["cpu_s"]
        print(f"{name}: {r['cpu_s']:.2f} s CPU, {r['over_analog_cpu']:.2f}x the analog "
              f"forward (wall {r['over_analog_wall']:.2f}x)", flush=True)
    res["runs"] = runs
    rap.set_mvm(cfg, hw3, seed=0)
    pr = cProfile.Profile()
    with torch.no_grad():
        pr.enable()
        rap(x[:1])
        pr.disable()
    st = pstats.Stats(pr, stream=io.StringIO())
    total = sum(v[2] for v in st.stats.values()) or 1.0
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:10]
    res["profile_fused"] = [{"function": f"{Path(k[0]).name}:{k[1]}({k[2]})", "calls": v[1],
                             "own_share": round(v[2] / total, 3)} for k, v in rows]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=a.out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(res, f, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
