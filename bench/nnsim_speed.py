"""nnsim speed and memory: analog vs digital forward, side by side in one run.

Targets (issue 6): analog DeiT-S forward (random weights, batch 16, CPU) at most 4x the digital
time and 2x its memory; a gamma sweep (3 gammas x with/without ClipFormer x 5 chips) on the
digits test split under 60 s on 2 cores.

Two fidelities are timed: ``bit`` (exact) and ``moment`` (one matmul per layer, readout
errors as a calibrated Gaussian). The full bit-level simulation (8 input planes x 4 weight
slices x 2 cells per MAC, each column
sum through the ADC) does one ADC conversion per multiply-accumulate, so the default run
measures DeiT-S on ONE transformer block (the 12 blocks are identical in shape) at a small
batch and scales nothing: the ratios are per block. ``--full`` runs the whole model at
``--batch``. Writes bench/results/nnsim_speed.json.

    .venv/bin/python bench/nnsim_speed.py [--full] [--batch 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from nnsim.analog import AnalogConfig
from nnsim.convert import convert_to_analog, set_config
from nnsim.data import load_dataset
from nnsim.evaluate import evaluate_chips
from nnsim.hardware import HardwareModel
from nnsim.models import create_model, load_or_train
from nnsim.synthetic import write_synthetic_adc, write_synthetic_crossbar

OUT = Path(__file__).parent / "results" / "nnsim_speed.json"


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def measure(fn, repeat: int = 1) -> dict:
    """Best wall time of ``fn()`` and its peak extra resident memory (Linux VmHWM, reset
    before; measured in ascending order of expected memory, since freed memory a process
    keeps can hide a later, smaller peak)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS counter
        peak_ok = True
    except OSError:
        peak_ok = False
    base = _rss_kb("VmRSS")
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        with torch.no_grad():
            fn()
        best = min(best, time.perf_counter() - t)
    peak = _rss_kb("VmHWM") - base if peak_ok else None
    return {"time_s": best, "peak_extra_mib": None if peak is None else peak / 1024}


def _deit_block(batch: int) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    deit = create_model("deit-s").eval()
    x = torch.randn(batch, 3, 224, 224)
    with torch.no_grad():
        xin = torch.cat([deit.cls_token.expand(batch, -1, -1), deit.patch_embed(x)], 1) \
            + deit.pos_embed
    return torch.nn.Sequential(deit.blocks[0]), xin


def _mem_child(name: str, batch: int) -> None:
    """In a fresh process: peak extra RSS of one forward of one DeiT-S block."""
    torch.set_num_threads(1)
    block, xin = _deit_block(batch)
    if name != "digital":
        tmp = Path(tempfile.mkdtemp())
        hw = HardwareModel.from_lookup([write_synthetic_crossbar(tmp / "xb.h5"),
                                        write_synthetic_adc(tmp / "adc.h5")], "tt", 1.8, 27.0, 6)
        cfg = {"moment": AnalogConfig(fidelity="moment"),
               "attention_only_bit": AnalogConfig(static=False),
               "bit": AnalogConfig()}[name]
        block = convert_to_analog(block, hw, cfg, seed=0)
    # one forward from a fresh process (for moment it includes the once-per-chip variance
    # calibration on 32 rows, which runs the bit path on those rows)
    print(json.dumps(measure(lambda: block(xin))))


def memory_in_fresh_processes(batch: int) -> dict:
    """Peak extra memory of each variant, each in its own process (no allocator reuse)."""
    import subprocess
    import sys

    out = {}
    for name in ("digital", "moment", "attention_only_bit", "bit"):
        r = subprocess.run([sys.executable, __file__, "--mem-child", name, "--batch",
                            str(batch)], capture_output=True, text=True, check=True)
        out[name] = json.loads(r.stdout.strip().splitlines()[-1])
    d = out["digital"]["peak_extra_mib"]
    for v in out.values():
        v["memory_ratio"] = v["peak_extra_mib"] / d if d else None
    return out


def gamma_sweep(model: torch.nn.Module, hw: HardwareModel, test, chips5: int) -> dict:
    """3 gammas x {no clip, ClipFormer 2/0.25} x chips on the digits test split."""
    # --- gamma sweep: 3 gammas x {no clip, ClipFormer 2/0.25} x chips, digits test split
    sweep = {}
    for mode, base, chips in [("full_moment", AnalogConfig(fidelity="moment"), chips5),
                              ("attention_only_bit", AnalogConfig(static=False), 1)]:
        analog = convert_to_analog(model, hw, base, seed=None)
        t0 = time.perf_counter()
        pts = []
        for gamma in (3.0, 4.0, 5.0):
            for clip in (None, (2.0, 0.25)):
                cfg = dataclasses.replace(base, gamma=gamma, clipformer=clip)
                set_config(analog, cfg)
                r = evaluate_chips(model, hw, cfg, test, chips=chips, seed=0,
                                   batch_size=150, analog=analog, digital_accuracy=0.0)
                pts.append({"gamma": gamma, "clipformer": clip,
                            "accuracy_mean": r["accuracy_mean"], "time_s": r["time_s"]})
        wall = time.perf_counter() - t0
        sweep[mode] = {"points": pts, "chips_per_point": chips, "wall_s": wall,
                       "projected_wall_s_5_chips": wall * 5 / chips, "target_s": 60.0}
        print(mode, json.dumps(sweep[mode]), flush=True)
    return sweep


def main() -> None:
    """Run the measurements and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="whole DeiT-S instead of one block")
    ap.add_argument("--batch", type=int, default=1, help="DeiT-S batch (target: 16)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chips", type=int, default=5, help="chips per sweep point")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--memory", action="store_true",
                    help="only the fresh-process memory of a DeiT-S block, merged into --out")
    ap.add_argument("--sweep", action="store_true",
                    help="only the gamma sweep, merged into --out")
    ap.add_argument("--mem-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem_child:
        _mem_child(args.mem_child, args.batch)
        return
    if args.sweep:
        tmp = Path(tempfile.mkdtemp())
        hw = HardwareModel.from_lookup([write_synthetic_crossbar(tmp / "xb.h5"),
                                        write_synthetic_adc(tmp / "adc.h5")], "tt", 1.8, 27.0, 6)
        model, _ = load_or_train("digits", quiet=True)
        res = json.loads(args.out.read_text()) if args.out.exists() else {}
        res["gamma_sweep"] = gamma_sweep(model, hw, load_dataset("digits", "test"), args.chips)
        args.out.write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
        return
    if args.memory:
        res = json.loads(args.out.read_text()) if args.out.exists() else {}
        res["deit_s_block_memory_fresh_process"] = {"batch": args.batch,
                                                    **memory_in_fresh_processes(args.batch)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
        print(json.dumps(res["deit_s_block_memory_fresh_process"], indent=1))
        return
    torch.set_num_threads(args.threads)
    res: dict = {"host": platform.node(), "cpu_count": os.cpu_count(), "threads": args.threads,
                 "torch": str(torch.__version__), "device": "cpu",
                 "note": "lookup files: nnsim.synthetic stand-ins (same shapes as real ones)"}
    tmp = Path(tempfile.mkdtemp())
    files = [write_synthetic_crossbar(tmp / "xb.h5"), write_synthetic_adc(tmp / "adc.h5")]
    hw = HardwareModel.from_lookup(files, "tt", 1.8, 27.0, 6)

    # --- DeiT-S shapes (random weights)
    torch.manual_seed(0)
    deit = create_model("deit-s").eval()
    x = torch.randn(args.batch, 3, 224, 224)
    if args.full:
        target, xin, what = deit, x, f"DeiT-S full model, batch {args.batch}"
    else:
        with torch.no_grad():
            xin = torch.cat([deit.cls_token.expand(args.batch, -1, -1),
                             deit.patch_embed(x)], 1) + deit.pos_embed
        target = deit.blocks[0]
        what = f"DeiT-S one block (197 tokens x 384), batch {args.batch}"

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, z):
            return self.m(z)

    wrapped = Wrap(target)
    dig = measure(lambda: wrapped(xin), repeat=2)
    rows = {"digital": dig}
    for name, cfg in [("analog_full_moment", AnalogConfig(fidelity="moment")),
                      ("analog_attention_only_bit", AnalogConfig(static=False)),
                      ("analog_full_bit", AnalogConfig())]:
        a = convert_to_analog(wrapped, hw, cfg, seed=0)
        if cfg.fidelity == "moment":
            with torch.no_grad():
                a(xin)  # per-chip calibration of the moment variance (once per chip)
        rows[name] = measure(lambda a=a: a(xin))
    for k, v in rows.items():
        if k != "digital":
            v["time_ratio"] = v["time_s"] / dig["time_s"]
            if v["peak_extra_mib"] is not None and dig["peak_extra_mib"]:
                v["memory_ratio"] = v["peak_extra_mib"] / max(dig["peak_extra_mib"], 1.0)
    res["deit_s"] = {"what": what, **rows, "target_time_ratio": 4.0, "target_memory_ratio": 2.0}
    print(json.dumps(res["deit_s"], indent=1), flush=True)

    # --- digits model, whole test split
    model, meta = load_or_train("digits", quiet=True)
    test = load_dataset("digits", "test")
    xs = test.images[:150]
    dig = measure(lambda: model(xs))
    drow = {"digital": dig, "train_seed": meta["seed"], "n_images": len(xs)}
    for name, cfg in [("analog_full_moment", AnalogConfig(fidelity="moment")),
                      ("analog_attention_only_bit", AnalogConfig(static=False)),
                      ("analog_full_bit", AnalogConfig())]:
        a = convert_to_analog(model, hw, cfg, seed=0)
        r = measure(lambda a=a: [a(xs[i:i + 150]) for i in range(0, len(xs), 150)])
        r["time_ratio"] = r["time_s"] / dig["time_s"]
        drow[name] = r
    res["digits"] = drow
    print(json.dumps(drow, indent=1), flush=True)

    res["gamma_sweep"] = gamma_sweep(model, hw, test, args.chips)
    res["aihwkit_lightning"] = "not measured: not installed (new dependency needs approval)"
    res["deit_s_block_memory_fresh_process"] = {"batch": args.batch,
                                                **memory_in_fresh_processes(args.batch)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
