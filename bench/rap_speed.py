"""RAP sparse 3-bit on the circuit files / the analog forward, side by side (issue 17 target 4),
and RAP's seconds per image-chip at every demo setting with the projected demo RAP time.

One process, one torch thread, the same images: the analog simulator's forward
(``convert_to_analog``, default ``AnalogConfig``, 6-bit circuit ADC) and RAP's sparse MVM on
programmed cells (write noise, transfer + spread, read noise, circuit ADC) with the fused
sampler (the fused C kernel ``nnsim/kernels/rap_mvm.c`` where it builds, and the torch path),
with every conversion sampled (torch path), and on ideal cells (the pre-issue-15 model).
Then the RAP forward at 3/4/5/6/8 bits (and 8 bits with the pedestal trim) per image-chip,
and at 2 threads at 3 and 6 bits. Times are wall and process CPU (``time.process_time``): on
a shared machine the CPU time is the fairer ratio. The projection of the demo's RAP steps
(``imc/demo/pipeline.py``: 6 bits at tt/ss/ff, 3/4/5/8 bits at tt, 8 bits trimmed) at
``--project-images`` x ``--project-chips`` is the sum of the measured CPU seconds per
image-chip (tt stands for ss and ff), plus the per-setting and per-chip set-up, over
``--project-cores`` cores. Writes ``bench/results/rap_speed.json``.

Usage::

    .venv/bin/python bench/rap_speed.py --crossbar runs/demo/crossbar.h5 \\
        --adc runs/demo/adc.h5 [--images 8]
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
DEMO_SETTINGS = [("6", 3), ("3", 1), ("4", 1), ("5", 1), ("8", 1), ("8-pedestal", 1)]
"""The demo's RAP settings: (bits[-trim], how many: 6 bits at three corners)."""


def timed(fn) -> dict:
    w, c = time.perf_counter(), time.process_time()
    with torch.no_grad():
        fn()
    return {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crossbar", required=True)
    ap.add_argument("--adc", required=True)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--corner", default="tt")
    ap.add_argument("--project-images", type=int, default=450)
    ap.add_argument("--project-chips", type=int, default=5)
    ap.add_argument("--project-cores", type=int, default=2)
    ap.add_argument("--skip-torch", action="store_true",
                    help="skip the (slow) torch-path runs")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    torch.set_num_threads(1)
    files = [a.crossbar, a.adc]
    model, _ = load_or_train("digits", quiet=True)
    x = load_dataset("digits", "test").images[:a.images]
    n = int(x.shape[0])
    t0 = time.process_time()
    rap = convert_to_rap(model, make_loader(load_dataset("digits", "calib"), 128))
    convert_s = time.process_time() - t0
    hw6 = HardwareModel.from_lookup(files, process=a.corner, adc_bits=6)
    hw3 = HardwareModel.from_lookup(files, process=a.corner, adc_bits=3)
    analog = convert_to_analog(model, hw6, seed=0)
    cfg = MVMConfig(mode="sparse", adc_bits=3)
    res: dict = {"images": n, "corner": a.corner, "lookups": files,
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
    if not a.skip_torch:
        rap.set_mvm(cfg, hw3, seed=0, use_kernel=False)
        runs["rap_sparse_3bit_programmed_fused_torch_path"] = timed(lambda: rap(x[:2]))
        runs["rap_sparse_3bit_programmed_fused_torch_path"]["images"] = 2
    rap.set_mvm(cfg, hw3, seed=0, ideal_cells=True)
    runs["rap_sparse_3bit_ideal_cells"] = timed(lambda: rap(x))
    rap.set_mvm(MVMConfig(mode="digital"))
    runs["rap_integer_path_digital_mvm"] = timed(lambda: rap(x))
    runs["analog_default_again"] = timed(lambda: analog(x))
    base = {k: min(runs["analog_default"][k], runs["analog_default_again"][k])
            for k in ("wall_s", "cpu_s")}
    for name, r in runs.items():
        scale = n / r.get("images", n)
        r["over_analog_wall"] = r["wall_s"] * scale / base["wall_s"]
        r["over_analog_cpu"] = r["cpu_s"] * scale / base["cpu_s"]
        print(f"{name}: {r['cpu_s']:.2f} s CPU, {r['over_analog_cpu']:.2f}x the analog "
              f"forward (wall {r['over_analog_wall']:.2f}x)", flush=True)
    res["runs"] = runs

    # seconds per image-chip at every demo setting (the whole RAP forward, kernel path)
    per: dict = {}
    setup: dict = {}
    for name, _count in DEMO_SETTINGS:
        bits = int(name.split("-")[0])
        trim = name.split("-")[1] if "-" in name else "none"
        hw = HardwareModel.from_lookup(files, process=a.corner, adc_bits=bits, adc_trim=trim)
        t = time.process_time()
        rap.set_mvm(MVMConfig(mode="sparse", adc_bits=bits), hw, seed=1)
        rap.readout.kernel_tables()          # the kernel's tables, once per chip
        setup[name] = time.process_time() - t
        rap.reset_counters()
        r = timed(lambda: rap(x))
        c = rap.counters()
        draws = sum(lin.mvm.kernel_draws for lin in rap.analog_layers())
        per[name] = {"cpu_s_per_image_chip": r["cpu_s"] / n,
                     "wall_s_per_image_chip": r["wall_s"] / n,
                     "conversions_per_image": c.conversions / n,
                     "active_rows_per_conversion": c.active_rows / max(1, c.cycles),
                     "draw_fraction": draws / max(1, c.conversions),
                     "set_mvm_cpu_s": setup[name]}
        print(f"RAP sparse {name} bits: {per[name]['cpu_s_per_image_chip'] * 1e3:.1f} ms CPU "
              f"per image-chip ({c.conversions / n / 1e6:.1f} M conversions, "
              f"{100 * per[name]['draw_fraction']:.1f} % drawn)", flush=True)
    res["per_image_chip"] = per
    threads2 = {}
    torch.set_num_threads(2)
    for bits in (3, 6):
        hw = HardwareModel.from_lookup(files, process=a.corner, adc_bits=bits)
        rap.set_mvm(MVMConfig(mode="sparse", adc_bits=bits), hw, seed=1)
        r = timed(lambda: rap(x))
        threads2[str(bits)] = {"wall_s_per_image_chip": r["wall_s"] / n,
                               "cpu_s_per_image_chip": r["cpu_s"] / n,
                               "speedup_wall_vs_1_thread":
                                   per[str(bits)]["wall_s_per_image_chip"] * n / r["wall_s"]}
    torch.set_num_threads(1)
    res["two_threads"] = threads2
    ic = a.project_images * a.project_chips
    int_s = runs["rap_integer_path_digital_mvm"]["cpu_s"] / n   # RAP int accuracy, per image
    cpu = sum(count * (per[name]["cpu_s_per_image_chip"] * ic
                       + per[name]["set_mvm_cpu_s"] * a.project_chips + convert_s
                       + int_s * a.project_images)
              for name, count in DEMO_SETTINGS)
    res["projection"] = {
        "images": a.project_images, "chips": a.project_chips, "cores": a.project_cores,
        "settings": [f"{count} x {name}" for name, count in DEMO_SETTINGS],
        "cpu_s": cpu, "wall_s_on_cores": cpu / a.project_cores,
        "convert_to_rap_cpu_s": convert_s,
        "method": "sum over the demo's RAP settings of CPU s per image-chip x images x chips "
                  "+ set_mvm (and the kernel tables) per chip + convert_to_rap and the "
                  "integer-RAP accuracy (the integer path once per image) per setting, "
                  "measured at tt on this run's images; divided by the cores (the "
                  "kernel's OpenMP threads or concurrent steps); excludes the FP32 and PTQ "
                  "accuracies (float forwards, ~1 ms per image)"}
    print(f"projected demo RAP steps at {a.project_images} images x {a.project_chips} chips: "
          f"{cpu:.0f} CPU s, {cpu / a.project_cores:.0f} s on {a.project_cores} cores",
          flush=True)
    rap.set_mvm(cfg, hw3, seed=0)
    pr = cProfile.Profile()
    with torch.no_grad():
        pr.enable()
        rap(x[:2])
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
