"""nnsim overhead: the ``moment`` fidelity vs the digital forward and vs aihwkit-lightning.

Targets (issue 17; benchmarks, not timed tests; 2 cores):

* one DeiT-S block (timm ``deit_small_patch16_224``, random init, offline; ``--batch`` x 197
  tokens), ``moment``: time <= 2x the digital block, peak memory <= 1.5x, and faster than
  aihwkit-lightning on the same block (its ``AnalogLinear`` for qkv/proj/fc1/fc2, attention
  matmuls digital; nnsim also puts Q K^T and S V on crossbars written per inference);
* the digits ViT, ``moment``: <= 3x the digital forward (``--images`` test images).

Every ratio is measured side by side in one run (each analog forward right after its
digital reference, best of ``--repeat``); peak memory is the extra resident memory of one
warm forward, each variant in a fresh process. ``moment`` is calibrated once per chip on a
calibration batch (``calibrate_moment``, outside the timed forwards). Hardware: the real
quick-preset lookups (``--lookup``) when they load, else nnsim.synthetic stand-ins (the JSON's
``hardware_source`` says which). aihwkit-lightning is optional (``make bench`` installs it
with ``pip install --no-deps aihwkit-lightning==2.1.0``); if it cannot be imported or run,
the error text goes into the JSON. Writes bench/results/nnsim_overhead.json.

    .venv/bin/python bench/nnsim_overhead.py [--batch 2] [--images 150] [--repeat 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from common import LOOKUPS, deit_block, hardware, measure, profile

OUT = Path(__file__).parent / "results" / "nnsim_overhead.json"
AHL_INSTALL = "pip install --no-deps aihwkit-lightning==2.1.0"
TARGETS = {"deit_block_moment_time_over_digital": 2.0,
           "deit_block_moment_memory_over_digital": 1.5,
           "deit_block_moment_over_aihwkit_lightning": 1.0,
           "digits_moment_over_digital": 3.0}


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


def _ahl_block(block: torch.nn.Module) -> torch.nn.Module:
    from aihwkit_lightning.nn.conversion import convert_to_analog as ahl_convert

    # a copy: the package's recursive conversion moves converted children to "meta"
    return ahl_convert(copy.deepcopy(block), _ahl_rpu_config()).eval()


def _mem_child(which: str, a) -> None:
    """In a fresh process: peak extra resident memory of one warm forward of the block."""
    block, mom, x, _ = deit_block(a.batch, a.lookup)
    variants = {"digital": block, "moment": mom}
    fn = _ahl_block(block) if which == "aihwkit_lightning" else variants[which]
    del block, mom, variants
    with torch.no_grad():
        fn(x)
    import gc
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    print(json.dumps(measure(lambda: fn(x), 1)))


def fresh_memory(a) -> dict:
    """Peak extra memory of one warm block forward per variant, each in a fresh process."""
    out: dict = {}
    for which in ("digital", "moment", "aihwkit_lightning"):
        cmd = [sys.executable, __file__, "--mem-child", which, "--batch", str(a.batch),
               "--threads", str(a.threads), "--lookup", *a.lookup]
        # large blocks mmapped (returned on free): a warm forward's peak is its own
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env,
                           check=False)
        try:
            out[which] = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out[which] = {"error": (r.stderr or r.stdout).strip()[-400:]}
    d = out["digital"].get("peak_extra_mib")
    for k in ("moment", "aihwkit_lightning"):
        m = out[k].get("peak_extra_mib")
        out[f"{k}_over_digital"] = m / d if (m is not None and d) else None
    return out


def deit_section(a, res: dict) -> None:
    block, mom, x, src = deit_block(a.batch, a.lookup)
    res["hardware_source"] = src
    try:
        ahl = _ahl_block(block)
        ahl_err = None
    except Exception as exc:  # optional package: record why it is missing
        ahl, ahl_err = None, f"{type(exc).__name__}: {str(exc)[:300]} (install: {AHL_INSTALL})"
    with torch.no_grad():  # warm
        block(x), mom(x)
        if ahl is not None:
            ahl(x)
    out: dict = {"what": f"timm deit_small_patch16_224 blocks[0], random init, batch "
                         f"{a.batch} x 197 tokens x 384", "batch": a.batch}
    rounds = []
    for _ in range(a.rounds):  # interleaved: digital, moment, aihwkit, per round
        r = {"digital": measure(lambda: block(x), a.repeat)["time_s"],
             "moment": measure(lambda: mom(x), a.repeat)["time_s"]}
        if ahl is not None:
            r["aihwkit_lightning"] = measure(lambda: ahl(x), a.repeat)["time_s"]
        rounds.append(r)
    out["time_s"] = {k: min(r[k] for r in rounds) for k in rounds[0]}
    t = out["time_s"]
    out["moment_time_over_digital"] = t["moment"] / t["digital"]
    if ahl is not None:
        out["aihwkit_lightning_time_over_digital"] = t["aihwkit_lightning"] / t["digital"]
        out["moment_over_aihwkit_lightning"] = t["moment"] / t["aihwkit_lightning"]
    else:
        out["aihwkit_lightning_error"] = ahl_err
    out["memory_fresh_processes"] = fresh_memory(a)
    out["moment_memory_over_digital"] = out["memory_fresh_processes"]["moment_over_digital"]
    out["profile_moment"] = profile(lambda: mom(x))
    res["deit_block"] = out
    nan = float("nan")
    ahl_mem = out["memory_fresh_processes"].get("aihwkit_lightning_over_digital") or nan
    print(f"DeiT-S block x{a.batch}: moment {out['moment_time_over_digital']:.2f}x digital "
          f"time, {out['moment_memory_over_digital'] or nan:.2f}x memory; aihwkit-lightning "
          f"{out.get('aihwkit_lightning_time_over_digital', nan):.2f}x time, {ahl_mem:.2f}x "
          f"memory; moment / aihwkit-lightning "
          f"{out.get('moment_over_aihwkit_lightning', nan):.2f}", flush=True)


def digits_section(a, res: dict) -> None:
    from nnsim.analog import AnalogConfig
    from nnsim.convert import calibrate_moment, convert_to_analog, program_chip
    from nnsim.data import load_dataset
    from nnsim.models import load_or_train

    model, _ = load_or_train("digits", quiet=True)
    model.eval()
    x = load_dataset("digits", "test").images[:a.images]
    calib = load_dataset("digits", "calib").images[:64]
    hw, src = hardware(a.lookup)
    res["hardware_source"] = src
    mom = convert_to_analog(model, hw, AnalogConfig(fidelity="moment"), seed=None)
    program_chip(mom, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calibrate_moment(mom, [calib], seed=0)
    with torch.no_grad():
        model(x), mom(x)
    rounds = [{"digital": measure(lambda: model(x), a.repeat)["time_s"],
               "moment": measure(lambda: mom(x), a.repeat)["time_s"]} for _ in range(a.rounds)]
    t = {k: min(r[k] for r in rounds) for k in rounds[0]}
    out = {"images": int(x.shape[0]), "time_s": t,
           "moment_over_digital": t["moment"] / t["digital"],
           "profile_moment": profile(lambda: mom(x))}
    res["digits"] = out
    print(f"digits {x.shape[0]} images: moment {out['moment_over_digital']:.2f}x digital",
          flush=True)


def main() -> None:
    """Run the measurements and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2, help="DeiT-S block batch")
    ap.add_argument("--images", type=int, default=150, help="digits test images")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all variants")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lookup", nargs="*", default=LOOKUPS)
    ap.add_argument("--only", nargs="*", default=["deit", "digits"])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--mem-child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.lookup = [p for p in a.lookup if Path(p).exists()]
    torch.set_num_threads(a.threads)
    if a.mem_child:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _mem_child(a.mem_child, a)
        return
    t0 = time.perf_counter()
    res: dict = {"targets": TARGETS, "threads": a.threads, "torch": torch.__version__,
                 "python": platform.python_version(), "machine": platform.machine(),
                 "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg(),
                 "note": "shared 2-core machine: read the ratios (measured side by side), "
                         "not the absolute times",
                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    sections = {"deit": deit_section, "digits": digits_section}
    for name in a.only:
        sections[name](a, res)
    met = {}
    if "deit_block" in res:
        d = res["deit_block"]
        met["deit_block_moment_time_over_digital"] = d["moment_time_over_digital"]
        met["deit_block_moment_memory_over_digital"] = d["moment_memory_over_digital"]
        met["deit_block_moment_over_aihwkit_lightning"] = d.get("moment_over_aihwkit_lightning")
    if "digits" in res:
        met["digits_moment_over_digital"] = res["digits"]["moment_over_digital"]
    res["summary"] = {k: {"measured": v, "target": TARGETS[k],
                          "met": None if v is None else v <= TARGETS[k]}
                      for k, v in met.items()}
    res["load_average_end"] = os.getloadavg()
    res["wall_s"] = time.perf_counter() - t0
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
    print(json.dumps(res["summary"], indent=1))
    print(f"wrote {a.out} ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
