"""The moment fidelity above 4 ADC bits (issue 17): this tree against an older commit, side by
side in one process, on digits at evaluate's batch size and on one DeiT-S block.

The older commit's ``nnsim`` is extracted with ``git archive`` and imported as ``nnsim_old``
(as ``bench/moment_low_counts.py`` does), so both run on the same model, hardware, images and
chip seed. Per round the legs run interleaved (digital, old moment, new moment, digital),
each best of ``--repeat``; the ratios use the best digital time of the same run. The
outputs of the two trees are compared element by element (``outputs_equal``: where this tree
keeps the older one's random streams they are the same bits). Both use the default
``readout_kernel="auto"`` (the moment C kernel). Writes ``bench/results/moment_speed.json``.

    .venv/bin/python bench/moment_speed.py [--old 519245a] [--images 450] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import platform
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import LOOKUPS, old_package, profile

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "moment_speed.json"


def _files(lookups: list[str]) -> tuple[list[str], str]:
    """The lookup files (real when they load, else synthetic stand-ins, labelled)."""
    from nnsim.hardware import HardwareModel

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            HardwareModel.from_lookup(lookups, process="tt", adc_bits=6)
        return lookups, "lookup: " + ", ".join(lookups)
    except Exception as exc:  # recorded; the stand-ins are used instead
        from nnsim.synthetic import write_synthetic_adc, write_synthetic_crossbar

        d = Path(tempfile.mkdtemp(prefix="bench-"))
        files = [str(write_synthetic_crossbar(d / "xb.h5", seed=1)),
                 str(write_synthetic_adc(d / "adc.h5", seed=2, bits=(3, 4, 6, 8)))]
        why = f"{type(exc).__name__}: {str(exc)[:200]}"
        print(f"bench: synthetic stand-in lookups (NOT circuit data), because {why}",
              flush=True)
        return files, f"synthetic stand-ins, NOT circuit data (real lookups not used: {why})"


def _moment(pkg: str, model, files: list[str], calib) -> torch.nn.Module:
    """``model`` in the moment fidelity of package ``pkg`` (chip 1, calibrated)."""
    hwm = importlib.import_module(f"{pkg}.hardware")
    an = importlib.import_module(f"{pkg}.analog")
    cv = importlib.import_module(f"{pkg}.convert")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hw = hwm.HardwareModel.from_lookup(files, process="tt", adc_bits=6)
        m = cv.convert_to_analog(model, hw, an.AnalogConfig(fidelity="moment"), seed=None)
        cv.program_chip(m, 1)
        cv.calibrate_moment(m, [calib], seed=0)
    return m


def _best(fn, repeat: int) -> tuple[float, float]:
    """Best wall and best process-CPU seconds of ``fn()`` over ``repeat`` calls."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return wall, cpu


def _legs(name: str, digital, old, new, run, a) -> dict:
    """Interleaved rounds of digital / old / new / digital; ratios to the best digital."""
    best = {k: [float("inf"), float("inf")] for k in ("digital", "old", "new")}
    with torch.no_grad():
        run(digital), run(old), run(new)  # warm-up (kernel builds, caches)
        for _ in range(a.rounds):
            for k, f in (("digital", digital), ("old", old), ("new", new),
                         ("digital", digital)):
                w, c = _best(lambda f=f: run(f), a.repeat)
                best[k] = [min(best[k][0], w), min(best[k][1], c)]
    out = {k: {"time_s": v[0], "cpu_s": v[1]} for k, v in best.items()}
    for k in ("old", "new"):
        out[f"{k}_over_digital"] = best[k][0] / best["digital"][0]
        out[f"{k}_over_digital_cpu"] = best[k][1] / best["digital"][1]
    out["new_over_old"] = best["new"][0] / best["old"][0]
    out["new_over_old_cpu"] = best["new"][1] / best["old"][1]
    print(f"{name}: digital {best['digital'][0] * 1e3:.1f} ms, old moment "
          f"{out['old_over_digital']:.2f}x (CPU {out['old_over_digital_cpu']:.2f}x), new "
          f"{out['new_over_digital']:.2f}x (CPU {out['new_over_digital_cpu']:.2f}x): new / old "
          f"{out['new_over_old']:.2f} (CPU {out['new_over_old_cpu']:.2f})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", default="519245a", help="the older commit (before this round)")
    ap.add_argument("--images", type=int, default=450, help="digits test images")
    ap.add_argument("--batch", type=int, default=256, help="digits images per forward")
    ap.add_argument("--deit-batch", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lookup", nargs="*", default=LOOKUPS)
    ap.add_argument("--only", nargs="*", default=["digits", "deit"], choices=["digits", "deit"])
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    if a.images < 1 or a.batch < 1 or a.rounds < 1 or a.repeat < 1 or a.deit_batch < 1:
        ap.error("--images, --batch, --rounds, --repeat and --deit-batch must be >= 1")
    torch.set_num_threads(a.threads)
    old_package(a.old)
    from nnsim.data import load_dataset
    from nnsim.models import load_or_train

    files, src = _files(a.lookup)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    res = {"old_commit": a.old, "new_commit": head + " (+ working tree)",
           "hardware_source": src, "threads": a.threads, "rounds": a.rounds,
           "repeat": a.repeat, "machine": platform.processor() or platform.machine()}
    with contextlib.suppress(OSError):
        res["load_average_start"] = list(Path("/proc/loadavg").read_text().split()[:3])
    if "digits" in a.only:
        model, _ = load_or_train("digits", quiet=True)
        model.eval()
        test = load_dataset("digits", "test").images[:a.images]
        calib = load_dataset("digits", "calib").images[:64]
        old, new = _moment("nnsim_old", model, files, calib), _moment("nnsim", model, files,
                                                                      calib)

        def over(f):
            for i in range(0, test.shape[0], a.batch):
                f(test[i:i + a.batch])

        r = _legs(f"digits, {test.shape[0]} images in batches of {a.batch}", model, old, new,
                  over, a)
        with torch.no_grad():
            x = test[:a.batch]
            r["outputs_equal"] = bool(torch.equal(old(x), new(x)))
        r["images"], r["batch"] = int(test.shape[0]), a.batch
        r["profile_new"] = profile(lambda: new(test[:a.batch]))
        res["digits"] = r
    if "deit" in a.only:
        import copy

        import timm

        torch.manual_seed(0)
        deit = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
        block = copy.deepcopy(deit.blocks[0]).eval()
        del deit
        g = torch.Generator().manual_seed(0)
        x = torch.randn(a.deit_batch, 197, 384, generator=g)
        calib = torch.randn(a.deit_batch, 197, 384, generator=g)
        old, new = _moment("nnsim_old", block, files, calib), _moment("nnsim", block, files,
                                                                      calib)
        r = _legs(f"DeiT-S block x{a.deit_batch}", block, old, new, lambda f: f(x), a)
        with torch.no_grad():
            r["outputs_equal"] = bool(torch.equal(old(x), new(x)))
        r["batch"], r["tokens"] = a.deit_batch, 197
        r["profile_new"] = profile(lambda: new(x))
        res["deit_block"] = r
    with contextlib.suppress(OSError):
        res["load_average_end"] = list(Path("/proc/loadavg").read_text().split()[:3])
    out = Path(a.out)
    prev = json.loads(out.read_text()) if out.exists() else {}
    prev.update(res)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(prev, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
