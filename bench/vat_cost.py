"""VAT's training cost relative to standard training (issue 18 target: at most 2x on digits).

Trains the standard preset from scratch into a temporary cache and then fine-tunes its VAT
checkpoint (``nnsim.vat.load_or_finetune``) from it, one after the other in this process
with the same torch thread count, so both see the same machine. Wall seconds and CPU seconds
(``time.process_time``, this process only) are recorded for both; on a shared machine the CPU
ratio is the one to trust (wall time depends on what else runs: the load average at start
and end is recorded). Writes bench/results/vat_cost.json.

    .venv/bin/python bench/vat_cost.py --lookup CROSSBAR.h5 ADC.h5 [--model digits]
        [--gamma 5] [--kv-range calibrated] [--tile-rows 16] [--threads 1]
        [--standard CHECKPOINT.pt]    # reuse a checkpoint's recorded standard time instead
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from nnsim.analog import AnalogConfig
from nnsim.models import load_checkpoint, load_or_train
from nnsim.vat import VatSettings, load_or_finetune

OUT = Path(__file__).parent / "results" / "vat_cost.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lookup", nargs=2, required=True, metavar=("CROSSBAR.h5", "ADC.h5"))
    ap.add_argument("--model", default="digits")
    ap.add_argument("--gamma", type=float, default=5.0)
    ap.add_argument("--process", default="tt")
    ap.add_argument("--bits", type=int, default=6)
    ap.add_argument("--kv-range", default="calibrated")
    ap.add_argument("--tile-rows", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--standard", type=Path, default=None,
                    help="a standard checkpoint whose recorded training time is used instead "
                    "of training one now (then not the same conditions: say so)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vat_cost.") as d:
        t0, c0 = time.perf_counter(), time.process_time()
        if args.standard is None:
            _, base = load_or_train(args.model, cache_dir=d, seed=0)
            std = dict(wall_s=base["train_time_s"], cpu_s=base["train_cpu_s"],
                       test_accuracy=base["test_accuracy"], source="trained now")
        else:
            _, base = load_checkpoint(args.standard)
            Path(d, args.standard.name).write_bytes(args.standard.read_bytes())
            std = dict(wall_s=base.get("train_time_s"), cpu_s=base.get("train_cpu_s"),
                       test_accuracy=base.get("test_accuracy"),
                       source=f"recorded in {args.standard}")
        std["total_wall_s"], std["total_cpu_s"] = (time.perf_counter() - t0,
                                                   time.process_time() - c0)
        load1 = os.getloadavg()
        analog = AnalogConfig(fidelity="moment", kv_range=args.kv_range,
                              tile_rows=args.tile_rows).to_dict()
        hw_point = dict(process=args.process, vdd_v=1.8, temp_c=27.0, bits=args.bits)
        settings = VatSettings(**hw_point, gamma=args.gamma, analog=analog)
        t0, c0 = time.perf_counter(), time.process_time()
        _, meta = load_or_finetune(args.model, args.lookup, settings, cache_dir=d)
        vat = dict(wall_s=meta["train_time_s"], cpu_s=meta["train_cpu_s"],
                   steps=meta["steps"], recipe=meta["recipe"],
                   test_accuracy=meta["test_accuracy"],
                   total_wall_s=time.perf_counter() - t0,
                   total_cpu_s=time.process_time() - c0)
    load2 = os.getloadavg()
    out = dict(
        model=args.model, lookups=meta["lookups"], settings=meta["settings"],
        standard=std, vat=vat,
        ratio_wall=vat["wall_s"] / std["wall_s"] if std["wall_s"] else None,
        ratio_cpu=vat["cpu_s"] / std["cpu_s"] if std.get("cpu_s") else None,
        target="VAT fine-tuning <= 2x standard training (digits)",
        load_average=dict(start=load0, between=load1, end=load2),
        threads=args.threads, torch=str(torch.__version__), machine=platform.platform(),
        cpus=os.cpu_count(), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"standard {std['wall_s']:.0f} s wall / {std.get('cpu_s') or float('nan'):.0f} CPU s; "
          f"VAT {vat['wall_s']:.0f} s / {vat['cpu_s']:.0f} CPU s ({vat['steps']} steps): "
          f"ratio {out['ratio_wall']:.2f}x wall, "
          f"{(out['ratio_cpu'] or float('nan')):.2f}x CPU -> {args.out}")


if __name__ == "__main__":
    main()
