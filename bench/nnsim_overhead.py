"""nnsim overhead: analog vs digital forward time and memory, and vs aihwkit-lightning.

Targets (issue 6): analog DeiT-S forward (random weights, batch 16, CPU) at most 4x the digital
time and 2x its memory; a gamma sweep (3 gammas x with/without ClipFormer x 5 chips) on the
digits test split under 60 s on 2 cores.

Two fidelities are timed: ``bit`` (exact) and ``moment`` (one matmul per layer, readout
errors as a calibrated Gaussian). The full bit-level simulation (8 input planes x 4 weight
slices x 2 cells per MAC, each column
sum through the ADC) does one ADC conversion per multiply-accumulate, so the default run
measures DeiT-S on ONE transformer block (the 12 blocks are identical in shape) at a small
batch and scales nothing: the ratios are per block. ``--full`` runs the whole model at
``--batch``. The default run skips the slow full-``bit`` variants (``--bit`` adds them,
minutes each on a busy CPU) so that it takes a few minutes.

aihwkit-lightning (optional, never a runtime or test dependency; install it with
``pip install --no-deps aihwkit-lightning==2.1.0``, its pin on torch is stricter than ours):
its ``AnalogLinear`` with a ``TorchInferenceRPUConfig`` set to comparable non-idealities
(8-bit inputs, 6-bit outputs, output noise, 64-row tiles) is timed on the shapes of a DeiT-S
block's linears (tokens = 197 x ``--linear-batch``) and of the digits model's, beside
``torch.nn.Linear`` and nnsim's ``AnalogLinear`` (``moment`` fidelity). If it cannot be
imported or run, the error text goes into the JSON. Writes bench/results/nnsim_overhead.json.

    .venv/bin/python bench/nnsim_overhead.py [--full] [--batch 16] [--threads 1] [--bit]
"""

from __future__ import annotations

import argparse
import copy
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

OUT = Path(__file__).parent / "results" / "nnsim_overhead.json"


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
    if name == "aihwkit_lightning":
        from aihwkit_lightning.nn.conversion import convert_to_analog as ahl_convert

        block = ahl_convert(block, _ahl_rpu_config()).eval()
        with torch.no_grad():
            block(xin)  # warm (as for moment_after_calibration)
    elif name != "digital":
        tmp = Path(tempfile.mkdtemp())
        hw = HardwareModel.from_lookup([write_synthetic_crossbar(tmp / "xb.h5"),
                                        write_synthetic_adc(tmp / "adc.h5")], "tt", 1.8, 27.0, 6)
        cfg = {"moment": AnalogConfig(fidelity="moment"),
               "moment_after_calibration": AnalogConfig(fidelity="moment"),
               "attention_only_bit": AnalogConfig(static=False),
               "bit": AnalogConfig()}[name]
        block = convert_to_analog(block, hw, cfg, seed=0)
        if name == "moment_after_calibration":
            with torch.no_grad():
                block(xin)  # the once-per-chip calibration, outside the measured forward
    # one forward from a fresh process (for moment it includes the once-per-chip variance
    # calibration on 32 rows, which runs the bit path on those rows). Freed heap memory goes
    # back to the OS first, so that a warm forward's peak is its own, not hidden by reuse.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    print(json.dumps(measure(lambda: block(xin))))


def memory_in_fresh_processes(batch: int, bit: bool = True) -> dict:
    """Peak extra memory of each variant, each in its own process (no allocator reuse)."""
    import subprocess
    import sys

    out = {}
    names = ("digital", "moment", "moment_after_calibration", "attention_only_bit",
             "aihwkit_lightning") + (("bit",) if bit else ())
    for name in names:
        r = subprocess.run([sys.executable, __file__, "--mem-child", name, "--batch",
                            str(batch)], capture_output=True, text=True, check=False)
        if r.returncode:  # recorded (aihwkit-lightning is optional), not fatal
            out[name] = {"error": r.stderr.strip().splitlines()[-1] if r.stderr else
                         f"exit {r.returncode}"}
            continue
        out[name] = json.loads(r.stdout.strip().splitlines()[-1])
    d = out["digital"]["peak_extra_mib"]
    for v in out.values():
        if "peak_extra_mib" in v:
            v["memory_ratio"] = v["peak_extra_mib"] / d if d else None
    return out


def _variants(bit: bool) -> list[tuple[str, AnalogConfig]]:
    v = [("analog_full_moment", AnalogConfig(fidelity="moment")),
         ("analog_attention_only_bit", AnalogConfig(static=False))]
    return [*v, ("analog_full_bit", AnalogConfig())] if bit else v


def gamma_sweep(model: torch.nn.Module, hw: HardwareModel, test, chips5: int,
                bit: bool = True) -> dict:
    """3 gammas x {no clip, ClipFormer 2/0.25} x chips on the digits test split."""
    # --- gamma sweep: 3 gammas x {no clip, ClipFormer 2/0.25} x chips, digits test split
    sweep = {}
    modes = [("full_moment", AnalogConfig(fidelity="moment"), chips5)]
    if bit:
        modes.append(("attention_only_bit", AnalogConfig(static=False), 1))
    for mode, base, chips in modes:
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


AHL_INSTALL = "pip install --no-deps aihwkit-lightning==2.1.0"


def _ahl_rpu_config():
    """aihwkit-lightning inference config with non-idealities comparable to nnsim's default
    (8-bit inputs, 6-bit ADC, output noise, 64-row tiles). Imported here only: optional."""
    from aihwkit_lightning.simulator.configs import TorchInferenceRPUConfig

    c = TorchInferenceRPUConfig()
    c.forward.inp_res = 2 ** 8 - 2      # 8-bit input DAC
    c.forward.out_res = 2 ** 6 - 2      # 6-bit ADC
    c.forward.out_bound = 10.0          # ADC range (required with out_res)
    c.forward.out_noise = 0.02          # Gaussian output noise, relative to the bound
    c.pre_post.input_range.enable = True
    c.mapping.max_input_size = 64       # tile rows, as nnsim's tile_rows
    return c


def aihwkit_lightning_compare(shapes: dict[str, tuple[int, int, int]], hw: HardwareModel,
                              repeat: int = 3) -> dict:
    """Per-linear forward time: torch.nn.Linear vs nnsim AnalogLinear (moment) vs
    aihwkit-lightning AnalogLinear on ``{name: (rows, in_features, out_features)}``.

    Never raises for aihwkit-lightning: its import or run error is recorded instead.
    """
    from nnsim.convert import AnalogLinear as NnsimLinear

    out: dict = {"config": None, "error": None, "layers": {}}
    try:
        import aihwkit_lightning
        from aihwkit_lightning.nn import AnalogLinear as AhlLinear

        rpu = _ahl_rpu_config()
        out["version"] = getattr(aihwkit_lightning, "__version__", "2.1.0")
        out["config"] = str(rpu)
    except Exception as exc:  # optional package: record why it is missing
        AhlLinear = None
        out["error"] = f"import failed: {type(exc).__name__}: {exc} (install: {AHL_INSTALL})"
    gen = torch.Generator().manual_seed(0)
    for name, (rows, n_in, n_out) in shapes.items():
        torch.manual_seed(0)
        lin = torch.nn.Linear(n_in, n_out).eval()
        x = torch.randn(rows, n_in, generator=gen)
        row: dict = {"rows": rows, "in_features": n_in, "out_features": n_out}
        with torch.no_grad():
            lin(x)
        row["digital"] = measure(lambda lin=lin, x=x: lin(x), repeat)
        nn_lin = NnsimLinear.from_digital(lin, hw, AnalogConfig(fidelity="moment"))
        nn_lin.program(0)
        with torch.no_grad():
            nn_lin(x)  # once-per-chip moment calibration
        row["nnsim_moment"] = measure(lambda m=nn_lin, x=x: m(x), repeat)
        if AhlLinear is not None:
            try:
                a = AhlLinear.from_digital(lin, _ahl_rpu_config()).eval()
                with torch.no_grad():
                    y_ref, y = lin(x), a(x)
                row["aihwkit_lightning"] = measure(lambda a=a, x=x: a(x), repeat)
                row["aihwkit_lightning"]["rel_error"] = float((y - y_ref).std() / y_ref.std())
            except Exception as exc:  # record, carry on
                row["aihwkit_lightning"] = {"error": f"{type(exc).__name__}: {exc}"}
                out["error"] = out["error"] or f"run failed: {type(exc).__name__}: {exc}"
        t_dig = row["digital"]["time_s"]
        row["nnsim_vs_digital"] = row["nnsim_moment"]["time_s"] / t_dig
        if "time_s" in row.get("aihwkit_lightning", {}):
            t_ahl = row["aihwkit_lightning"]["time_s"]
            row["aihwkit_vs_digital"] = t_ahl / t_dig
            row["nnsim_vs_aihwkit"] = row["nnsim_moment"]["time_s"] / t_ahl
        print(f"linear {name} {rows}x{n_in}->{n_out}: nnsim/digital "
              f"{row['nnsim_vs_digital']:.2f}x, aihwkit/digital "
              f"{row.get('aihwkit_vs_digital', float('nan')):.2f}x, nnsim/aihwkit "
              f"{row.get('nnsim_vs_aihwkit', float('nan')):.2f}x", flush=True)
        out["layers"][name] = row
    return out


def aihwkit_lightning_model(model: torch.nn.Module, xin: torch.Tensor, t_digital_s: float,
                            repeat: int = 2) -> dict:
    """Whole-module forward with aihwkit-lightning's linears (its attention matmuls stay
    digital; the head is excluded as in nnsim); error text instead of raising."""
    try:
        from aihwkit_lightning.nn.conversion import convert_to_analog as ahl_convert

        # a copy: the package's recursive conversion moves converted children to "meta"
        a = ahl_convert(copy.deepcopy(model), _ahl_rpu_config(),
                        exclude_modules=["head", "patch_embed"]).eval()
        with torch.no_grad():
            a(xin)
        r = measure(lambda: a(xin), repeat)
        r["time_ratio"] = r["time_s"] / t_digital_s
        return r
    except Exception as exc:  # optional package: record, carry on
        return {"error": f"{type(exc).__name__}: {exc}"}


def main() -> None:
    """Run the measurements and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="whole DeiT-S instead of one block")
    ap.add_argument("--batch", type=int, default=1, help="DeiT-S batch (target: 16)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chips", type=int, default=5, help="chips per sweep point")
    ap.add_argument("--bit", action="store_true",
                    help="also the full bit-level variants (slow: minutes each)")
    ap.add_argument("--linear-batch", type=int, default=16,
                    help="images for the per-linear comparison (rows = tokens x images)")
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
        res["gamma_sweep"] = gamma_sweep(model, hw, load_dataset("digits", "test"), args.chips,
                                         args.bit)
        args.out.write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
        return
    if args.memory:
        res = json.loads(args.out.read_text()) if args.out.exists() else {}
        res["deit_s_block_memory_fresh_process"] = {"batch": args.batch,
                                                    **memory_in_fresh_processes(args.batch,
                                                                                args.bit)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
        print(json.dumps(res["deit_s_block_memory_fresh_process"], indent=1))
        return
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    res: dict = {"host": platform.node(), "cpu_count": os.cpu_count(), "threads": args.threads,
                 "load_average_start": os.getloadavg(), "bit_variants": args.bit,
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
    for name, cfg in _variants(args.bit):
        a = convert_to_analog(wrapped, hw, cfg, seed=0)
        if cfg.fidelity == "moment":
            with torch.no_grad():
                a(xin)  # per-chip calibration of the moment variance (once per chip)
        rows[name] = measure(lambda a=a: a(xin), repeat=3 if "moment" in name else 1)
    for k, v in rows.items():
        if k != "digital":
            v["time_ratio"] = v["time_s"] / dig["time_s"]
            if v["peak_extra_mib"] is not None and dig["peak_extra_mib"]:
                v["memory_ratio"] = v["peak_extra_mib"] / max(dig["peak_extra_mib"], 1.0)
    rows["aihwkit_lightning_linears"] = aihwkit_lightning_model(wrapped, xin,
                                                                dig["time_s"])
    rows["aihwkit_lightning_linears"]["what"] = ("aihwkit-lightning AnalogLinear for "
                                                 "qkv/proj/fc1/fc2; attention digital")
    res["deit_s"] = {"what": what, **rows, "target_time_ratio": 4.0, "target_memory_ratio": 2.0}
    print(json.dumps(res["deit_s"], indent=1), flush=True)

    # --- digits model, whole test split
    model, meta = load_or_train("digits", quiet=True)
    test = load_dataset("digits", "test")
    xs = test.images[:150]
    model(xs)  # warm, as the analog rows
    dig = measure(lambda: model(xs), repeat=2)
    drow = {"digital": dig, "train_seed": meta["seed"], "n_images": len(xs)}
    for name, cfg in _variants(args.bit):
        a = convert_to_analog(model, hw, cfg, seed=0)
        first = measure(lambda a=a: [a(xs[i:i + 150]) for i in range(0, len(xs), 150)])
        r = measure(lambda a=a: [a(xs[i:i + 150]) for i in range(0, len(xs), 150)])
        r["first_forward_time_s"] = first["time_s"]  # incl. moment's per-chip calibration
        r["first_forward_peak_extra_mib"] = first["peak_extra_mib"]
        r["time_ratio"] = r["time_s"] / dig["time_s"]
        drow[name] = r
    drow["aihwkit_lightning_linears"] = aihwkit_lightning_model(
        model, xs, dig["time_s"], repeat=1)
    res["digits"] = drow
    print(json.dumps(drow, indent=1), flush=True)

    res["gamma_sweep"] = gamma_sweep(model, hw, test, args.chips, args.bit)
    # --- per-linear comparison with aihwkit-lightning on the same shapes
    tok = 197 * args.linear_batch
    with torch.no_grad():
        dig_tok = model.patch_embed(xs[:1]).shape[1] + 1  # + class token
    shapes = {"deit_s.qkv": (tok, 384, 1152), "deit_s.proj": (tok, 384, 384),
              "deit_s.fc1": (tok, 384, 1536), "deit_s.fc2": (tok, 1536, 384)}
    for lin_name, lin in model.blocks[0].named_modules():
        if isinstance(lin, torch.nn.Linear):
            shapes[f"digits.{lin_name}"] = (dig_tok * len(xs), lin.in_features,
                                            lin.out_features)
    res["aihwkit_lightning"] = aihwkit_lightning_compare(shapes, hw)
    res["aihwkit_lightning"]["what"] = (
        f"per linear, best of 3 forwards; DeiT-S rows = 197 tokens x {args.linear_batch} "
        f"images, digits rows = {dig_tok} tokens x {len(xs)} images")
    print("aihwkit-lightning error:", res["aihwkit_lightning"]["error"], flush=True)
    res["deit_s_block_memory_fresh_process"] = {
        "batch": args.batch, **memory_in_fresh_processes(args.batch, args.bit)}
    res["load_average_end"] = os.getloadavg()
    res["wall_s"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
