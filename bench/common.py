"""What the speed benchmarks share: timing and peak memory, a cProfile summary, the hardware
model (real lookups, else labelled synthetic stand-ins) and the DeiT-S block under test."""

from __future__ import annotations

import copy
import cProfile
import io
import pstats
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

#: The demo's quick-preset circuit files (``make demo`` writes them); pass ``--lookup`` for others.
LOOKUPS = [str(Path(__file__).resolve().parents[1] / "runs" / "demo" / f)
           for f in ("crossbar.h5", "adc.h5")]


def old_package(commit: str) -> str:
    """Extract ``nnsim`` of ``commit`` (``git archive``) as ``nnsim_old`` in a temporary
    folder put first on sys.path (the package imports itself only relatively), so an older
    tree and this one run side by side in one process; returns the folder."""
    root = Path(__file__).resolve().parents[1]
    d = Path(tempfile.mkdtemp(prefix="nnsim-old-"))
    tar = subprocess.run(["git", "-C", str(root), "archive", commit, "nnsim"],
                         capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(d)], input=tar, check=True)
    (d / "nnsim").rename(d / "nnsim_old")
    sys.path.insert(0, str(d))
    return str(d)


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def measure(fn, repeat: int = 1) -> dict:
    """Best wall time and best process CPU time of ``fn()`` (one thread: CPU time is what
    the forward itself cost, less disturbed by other jobs on the shared machine) and its peak
    extra resident memory (VmHWM reset before)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        peak_ok = True
    except OSError:
        peak_ok = False
    base = rss_kb("VmRSS")
    best = best_cpu = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        with torch.no_grad():
            fn()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    peak = (rss_kb("VmHWM") - base) / 1024 if peak_ok else None
    return {"time_s": best, "cpu_s": best_cpu, "peak_extra_mib": peak}


def profile(fn, top: int = 10) -> list[dict]:
    """cProfile of one call of ``fn``: the ``top`` functions by own time."""
    pr = cProfile.Profile()
    with torch.no_grad():
        pr.enable()
        fn()
        pr.disable()
    st = pstats.Stats(pr, stream=io.StringIO())
    total = sum(v[2] for v in st.stats.values()) or 1.0
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:top]
    return [{"function": f"{Path(k[0]).name}:{k[1]}({k[2]})", "calls": v[1],
             "own_s": round(v[2], 4), "own_share": round(v[2] / total, 3)} for k, v in rows]


def hardware(lookups: list[str], bits: int = 6, process: str = "tt"):
    """(HardwareModel, source): the real files when they load, else synthetic stand-ins
    (printed and named in the source string: NOT circuit data)."""
    from nnsim.hardware import HardwareModel

    err = "no --lookup"
    if lookups:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return (HardwareModel.from_lookup(lookups, process=process, adc_bits=bits),
                        "lookup: " + ", ".join(lookups))
        except Exception as exc:  # recorded, the stand-ins are used instead
            err = f"{type(exc).__name__}: {str(exc)[:200]}"
    from nnsim.synthetic import write_synthetic_adc, write_synthetic_crossbar

    print(f"bench: synthetic stand-in lookups (NOT circuit data), because {err}", flush=True)
    d = Path(tempfile.mkdtemp(prefix="bench-"))
    files = (write_synthetic_crossbar(d / "xb.h5", seed=1),
             write_synthetic_adc(d / "adc.h5", seed=2, bits=(3, 4, 6, 8)))
    return (HardwareModel.from_lookup(files, process=process, adc_bits=bits),
            f"synthetic stand-ins, NOT circuit data (real lookups not used: {err})")


def deit_block(batch: int, lookups: list[str]):
    """The digital DeiT-S block (timm, random init), its moment-mode copy (programmed as
    chip 1, calibrated on a second random batch), the input, and the hardware source."""
    import timm

    from nnsim.analog import AnalogConfig
    from nnsim.convert import calibrate_moment, convert_to_analog, program_chip

    torch.manual_seed(0)
    deit = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    block = copy.deepcopy(deit.blocks[0]).eval()
    del deit
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 197, 384, generator=g)
    calib = torch.randn(batch, 197, 384, generator=g)
    hw, src = hardware(lookups, 6)
    mom = convert_to_analog(block, hw, AnalogConfig(fidelity="moment"), seed=None)
    program_chip(mom, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calibrate_moment(mom, [calib], seed=0)
    return block, mom, x, src
