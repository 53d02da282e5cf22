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
``--project-cores`` cores. The kernel before and after (``kernel_before_after``): every
``rap_mvm`` call of each setting's forward captured and replayed on a build of the kernel at
``--baseline-rev`` and on this tree's, interleaved, best of ``--reps`` (thread CPU, one
thread), the codes compared, and where the draws end (a ``-DRAP_PROFILE`` build). Writes
``bench/results/rap_speed.json``.

Usage::

    .venv/bin/python bench/rap_speed.py --crossbar runs/demo/crossbar.h5 \\
        --adc runs/demo/adc.h5 [--images 8]
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import io
import json
import os
import pstats
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from nnsim import kernels
from nnsim.convert import convert_to_analog
from nnsim.data import load_dataset, make_loader
from nnsim.hardware import HardwareModel
from nnsim.models import load_or_train
from nnsim.rap import MVMConfig, convert_to_rap, sparse_mvm
from nnsim.rap.sparse_mvm import kernel_path

OUT = Path(__file__).parent / "results" / "rap_speed.json"
DEMO_SETTINGS = [("6", 3), ("3", 1), ("4", 1), ("5", 1), ("8", 1), ("8-pedestal", 1)]
"""The demo's RAP settings: (bits[-trim], how many: 6 bits at three corners)."""


BASELINE_REV = "519245a"
"""The kernel before this round's changes (#17, session 5): the "before" of the side-by-side
kernel comparison (``--baseline-rev``)."""
PROFILE_NAMES = ["uncertain", "stay_cell_in_pass", "listed", "vector_x0_bin", "scalar_stay_cell",
                 "scalar_x0_bin", "scalar_same_code", "phi_inverse", "vector_same_code"]
"""rap_mvm.c's RAP_PROFILE counters (fractions of the conversions)."""
REPO = Path(__file__).resolve().parent.parent


def build_kernel(source: str, extra: list[str], out_dir: Path, tag: str) -> ctypes.CDLL:
    """Compile one rap_mvm.c text (with this tree's rng.h) as ``nnsim.kernels`` does
    (DEFAULT_CFLAGS, OpenMP) plus ``extra``; the library, typed."""
    d = out_dir / tag
    d.mkdir(parents=True, exist_ok=True)
    (d / "rap_mvm.c").write_text(source)
    (d / "rng.h").write_text((kernels.HERE / "rng.h").read_text())
    lib_path = d / "rap_mvm.so"
    subprocess.run([kernels.compiler() or "cc", *kernels.DEFAULT_CFLAGS, "-fopenmp", *extra,
                    "-fPIC", "-shared", f"-I{d}", "-o", str(lib_path), str(d / "rap_mvm.c"),
                    "-lm"], check=True, capture_output=True, text=True, timeout=300)
    lib = ctypes.CDLL(str(lib_path))
    packed = "RAP_ENTRY" in source          # one (entry, stay) table (this round) or two
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    lib.rap_mvm.restype = i64
    lib.rap_mvm.argtypes = [vp, i64, i64, i64, i64, i64, i64, ctypes.c_int32, vp, vp, vp, vp,
                            *([vp] if packed else [vp, vp]), vp, vp, i64, ctypes.c_uint64,
                            ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, vp, vp,
                            ctypes.c_int32]
    lib.rap_init.restype = None
    lib.rap_init()
    lib.packed = packed
    return lib


class Capture:
    """Records the kernel calls of RAP forwards (inputs, seed, tables, result) to replay them
    on other builds of the kernel."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.orig = sparse_mvm.SparseMVM.kernel_column_codes

    def __enter__(self) -> Capture:
        orig, calls = self.orig, self.calls

        def rec(mvm, x, generator, lib=None):
            if generator is None:
                raise ValueError("Capture needs the RAP forward's generator")
            g = torch.Generator()
            g.set_state(generator.get_state())
            seed = int(torch.randint(0, 2 ** 62, (1,), generator=g, dtype=torch.int64))
            acc = orig(mvm, x, generator, lib)
            cfg, kt = mvm.config, mvm.readout.kernel_tables()
            x = x.reshape(-1, mvm.in_features).to(torch.int64)
            pad = mvm.n_tiles * cfg.rows - mvm.in_features
            cells, inst_off, col_inst, z = mvm._kernel_bufs
            calls.append({
                "x": (torch.nn.functional.pad(x, (0, pad)) if pad else x).contiguous(),
                "dims": (mvm.n_tiles, cfg.rows, mvm.cols, cfg.input_bits - 1, cfg.k_active,
                         int(cfg.mode == "dense")),
                "bufs": (cells, inst_off, col_inst, z), "kt": kt, "seed": seed,
                "in_pass": mvm._stay_in_pass(), "acc": acc})
            return acc

        sparse_mvm.SparseMVM.kernel_column_codes = rec
        return self

    def __exit__(self, *exc) -> None:
        sparse_mvm.SparseMVM.kernel_column_codes = self.orig


def replay(lib: ctypes.CDLL, c: dict, stats: torch.Tensor | None = None) -> torch.Tensor:
    """One captured call on ``lib`` (one thread); its column codes."""
    p = kernels.ptr
    kt = c["kt"]
    if lib.packed:
        tabs = [p(kt["entry_stay"])]
    else:
        if "sep" not in kt:
            kt["sep"] = (kt["entry"].contiguous(), kt["stay"].contiguous())
        tabs = [p(t) for t in kt["sep"]]
    n_tiles, rows, cols, planes, k_act, dense = c["dims"]
    acc = torch.zeros(c["x"].shape[0], cols, dtype=torch.int64)
    st = torch.zeros(4, dtype=torch.int64) if stats is None else stats
    rc = lib.rap_mvm(p(c["x"]), c["x"].shape[0], n_tiles, rows, cols, planes, k_act, dense,
                     *(p(b) for b in c["bufs"]), *tabs, p(kt["xss"]), p(kt["thr"]),
                     int(kt["thr"].shape[1]), ctypes.c_uint64(c["seed"]), 1, 0, c["in_pass"],
                     p(acc), p(st), 1)
    if rc != 0:
        raise RuntimeError(f"rap_mvm rc {rc}")
    return acc


def kernel_before_after(captured: dict[str, list[dict]], n: int, rev: str, reps: int) -> dict:
    """The captured calls of every setting on the kernel at ``rev`` and on this tree's,
    interleaved, best of ``reps`` (thread CPU s, one thread); bits compared; and this tree's
    RAP_PROFILE counts."""
    src_old = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:nnsim/kernels/rap_mvm.c"],
                             check=True, capture_output=True, text=True).stdout
    src_new = (kernels.HERE / "rap_mvm.c").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        libs = {"before": build_kernel(src_old, [], Path(tmp), "before"),
                "after": build_kernel(src_new, [], Path(tmp), "after")}
        prof = build_kernel(src_new, ["-DRAP_PROFILE"], Path(tmp), "profile")
        prof.rap_profile.restype = None
        out: dict = {"baseline_rev": rev, "repetitions": reps, "images": n,
                     "method": "every rap_mvm call of the RAP forward at each setting captured "
                               "(inputs, tables, seed) and replayed on both builds, one "
                               "thread, interleaved, best of the repetitions; thread CPU time"}
        for name, calls in captured.items():
            best = {k: float("inf") for k in libs}
            equal = True
            for r in range(reps):
                for k, lib in libs.items():
                    t = time.thread_time()
                    res = [replay(lib, c) for c in calls]
                    best[k] = min(best[k], time.thread_time() - t)
                    if r == 0:
                        equal &= all(torch.equal(a, c["acc"])
                                     for a, c in zip(res, calls, strict=True))
            cnt = torch.zeros(10, dtype=torch.int64)         # rap_profile's counters
            prof.rap_profile(kernels.ptr(cnt))
            conv = 0
            for c in calls:
                st = torch.zeros(4, dtype=torch.int64)
                replay(prof, c, st)
                conv += int(st[0]) * c["dims"][2]
            prof.rap_profile(kernels.ptr(cnt))
            out[name] = {"before_ms_per_image": 1e3 * best["before"] / n,
                         "after_ms_per_image": 1e3 * best["after"] / n,
                         "speedup": best["before"] / best["after"],
                         "bits_equal": bool(equal),
                         "decided_where": {
                             k: int(v) / max(1, conv) for k, v in
                             zip(PROFILE_NAMES, cnt.tolist()[:len(PROFILE_NAMES)], strict=True)}}
            print(f"kernel alone {name} bits: {out[name]['before_ms_per_image']:.1f} -> "
                  f"{out[name]['after_ms_per_image']:.1f} ms per image "
                  f"({out[name]['speedup']:.2f}x), bits equal: {equal}", flush=True)
    return out


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
    ap.add_argument("--baseline-rev", default=BASELINE_REV,
                    help="git revision of the kernel to compare with side by side "
                         f"(default {BASELINE_REV}); 'none' skips the comparison")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the comparison")
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
    captured: dict[str, list[dict]] = {}
    for name, _count in DEMO_SETTINGS:
        bits = int(name.split("-")[0])
        trim = name.split("-")[1] if "-" in name else "none"
        hw = HardwareModel.from_lookup(files, process=a.corner, adc_bits=bits, adc_trim=trim)
        t = time.process_time()
        rap.set_mvm(MVMConfig(mode="sparse", adc_bits=bits), hw, seed=1)
        rap.readout.kernel_tables()          # the kernel's tables, once per chip
        setup[name] = time.process_time() - t
        rap.reset_counters()
        with Capture() as cap:
            r = timed(lambda: rap(x))
        captured[name] = cap.calls
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
    if a.baseline_rev != "none" and kernel_path() == "c":
        try:
            res["kernel_before_after"] = kernel_before_after(captured, n, a.baseline_rev,
                                                             a.reps)
        except (OSError, subprocess.SubprocessError) as exc:   # no git, no such revision
            why = getattr(exc, "stderr", None) or str(exc)
            res["kernel_before_after"] = {"skipped": f"{a.baseline_rev}: {why}".strip()}
            print(f"kernel before/after skipped: {res['kernel_before_after']['skipped']}",
                  flush=True)
    captured.clear()
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
