"""Bridge overhead: spicebridge's time per run against ngspice's own analysis time and against a
fresh ``ngspice -b`` process, all measured side by side in one run.

Decks: a 1T1R column (sky130 nfet_01v8 access transistors, fixed memristor resistances, 5 Ohm
wire segments, a virtual-ground sense source) with 128 rows (``.op`` and ``.tran``) and 16 rows
(``.op``, the Monte-Carlo re-run case), and a trivial RC.

Targets (issue 2): overhead over ngspice's analysis time <= 10 % for the 128-row ``.tran``;
re-running a loaded 16-row ``.op`` with altered parameters >= 20x faster than ``ngspice -b``.

Usage: ``python bench/bridge_overhead.py [--repeats N] [--out bench/results/bridge_overhead.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from spicebridge import create_engine
from spicebridge.engines import find_ngspice
from spicebridge.netlist import sky130_corner_lib


def column_deck(rows: int, analysis: str, seed: int = 0) -> str:
    """A 1T1R column: row i drives ``vin_i`` through R_i (the cell) and an NMOS to the bit line."""
    rng = np.random.default_rng(seed)
    lib = sky130_corner_lib(("nfet_01v8",))
    g_s = rng.choice([0.1e-6, 3.4e-6, 6.7e-6, 10e-6], size=rows)
    lines = [f"* {rows}-row 1T1R column ({analysis})", f'.lib "{lib}" tt', "Vwl wl 0 1.8"]
    for i in range(rows):
        v = 0.2 if i % 2 == 0 else 0.0
        src = f"PULSE(0 {v} 1n 1n 1n 20n 40n)" if analysis == "tran" else f"DC {v}"
        lines += [f"Vin{i} in{i} 0 {src}",
                  f"Rcell{i} in{i} m{i} {1 / g_s[i]:.6g}",
                  f"X{i} m{i} wl b{i} 0 sky130_fd_pr__nfet_01v8 W=0.84 L=0.15",
                  f"Rw{i} b{i} b{i + 1} 5"]
    lines += [f"Vsense b{rows} 0 0"]
    lines += [".tran 0.2n 80n" if analysis == "tran" else ".op", ".end"]
    return "\n".join(lines) + "\n"


RC_DECK = "* rc\nV1 in 0 PULSE(0 1 0 1n 1n 1u 2u)\nR1 in out 1k\nC1 out 0 1n\n.tran 10n 4u\n.end\n"


def time_loaded(engine, deck: str, repeats: int, alter: str | None = None) -> dict:
    """Per-run wall time of a loaded circuit's run() and ngspice's own share of it."""
    circ = engine.load(deck)
    circ.run()  # warm
    walls, analysis = [], []
    for k in range(repeats):
        if alter:
            circ.alter(alter, 1e5 * (1 + 0.01 * k))
        t0 = time.perf_counter()
        res = circ.run()
        walls.append(time.perf_counter() - t0)
        analysis.append(res.analysis_time_s)
    wall = statistics.median(walls)
    ana = statistics.median(analysis)
    return {"wall_s": wall, "ngspice_analysis_s": ana, "overhead_s": wall - ana,
            "overhead_rel": (wall - ana) / ana}


def time_fresh_batch(deck: str, repeats: int) -> float:
    """Median wall time of a fresh ``ngspice -b deck -r out.raw`` process (no Python reading)."""
    exe = find_ngspice()
    walls = []
    with tempfile.TemporaryDirectory() as d:
        Path(d, "deck.cir").write_text(deck)
        Path(d, ".spiceinit").write_text("set num_threads=1\n")
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([exe, "-b", "-r", "out.raw", "deck.cir"], cwd=d, check=True,
                           capture_output=True)
            walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("bench/results/bridge_overhead.json"))
    args = ap.parse_args()
    shared, batch = create_engine("shared"), create_engine("batch")
    out: dict = {"ngspice": shared.version, "machine": platform.machine(),
                 "python": platform.python_version(), "repeats": args.repeats, "cases": {}}

    cases = {"col128_tran": column_deck(128, "tran"), "col128_op": column_deck(128, "op"),
             "col16_op": column_deck(16, "op"), "rc_tran": RC_DECK}
    for name, deck in cases.items():
        many = name in ("col16_op", "rc_tran")
        reps = args.repeats * (40 if many else 1)
        loaded = time_loaded(shared, deck, reps, alter="Rcell0" if "col" in name else None)
        t0 = time.perf_counter()
        batch.simulate(deck)
        batch_engine_s = time.perf_counter() - t0
        fresh = time_fresh_batch(deck, max(2, args.repeats // 2))
        out["cases"][name] = {**loaded, "fresh_ngspice_b_s": fresh,
                              "batch_engine_s": batch_engine_s,
                              "rerun_speedup_vs_fresh": fresh / loaded["wall_s"]}
        print(f"{name:12s} loaded re-run {loaded['wall_s'] * 1e3:9.2f} ms  "
              f"(ngspice {loaded['ngspice_analysis_s'] * 1e3:9.2f} ms, overhead "
              f"{100 * loaded['overhead_rel']:6.2f} %)   fresh ngspice -b {fresh * 1e3:8.1f} ms  "
              f"-> re-run {fresh / loaded['wall_s']:7.1f}x faster   batch engine "
              f"{batch_engine_s * 1e3:8.1f} ms")

    tran = out["cases"]["col128_tran"]["overhead_rel"]
    rerun = out["cases"]["col16_op"]["rerun_speedup_vs_fresh"]
    out["targets"] = {
        "col128_tran_overhead_rel": {"value": tran, "target": "<= 0.10", "met": tran <= 0.10},
        "col16_op_rerun_speedup": {"value": rerun, "target": ">= 20", "met": rerun >= 20},
    }
    print(f"\ntarget: 128-row .tran overhead {100 * tran:.2f} % (<= 10 %): "
          f"{'met' if tran <= 0.10 else 'MISSED'}")
    print(f"target: 16-row .op re-run vs fresh ngspice -b {rerun:.1f}x (>= 20x): "
          f"{'met' if rerun >= 20 else 'MISSED'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
