"""Memory of the in-process engine over many runs: RSS every 1000 runs, and per crash reload.

libngspice keeps a little memory per run that it never gives back, and a reload after
ngspice gave up keeps the dead instance mapped (issue 16). This bench measures both, in this
process, on the paths the project uses:

- ``rerun``: the same loaded deck re-run (``destroy all`` after each read);
- ``alter``: ``alter`` of a source, then run (crossbar and ADC points);
- ``alterparams``: ``alterparam`` + ``reset``, then run (TOML sweeps, Monte Carlo);
- ``reload``: a deck that makes ngspice give up, loaded until the reload cap refuses.

It prints RSS in MiB and the growth per run, and writes JSON. The sweep bounds what is left:
workers are replaced every ``RECYCLE_POINTS`` points and after ``MAX_CRASH_RELOADS`` reloads.

Usage: ``python bench/bridge_memory.py [--runs 10000] [--out bench/results/bridge_memory.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

DECK = """* 16-row resistive column, level-1 access devices
.param g0=10u
.model nacc nmos level=1 vto=0.4 kp=250u lambda=0.1
Vwl wl 0 1.2
{rows}
Vbl bl 0 0
.op
.end
"""


def _rows(n: int) -> str:
    out = []
    for i in range(n):
        out += [f"Vin{i} in{i} 0 DC {0.1 + 0.01 * i:.3f}", f"R{i} in{i} d{i} {{1/g0}}",
                f"M{i} d{i} wl b{i} 0 nacc W=0.6u L=0.13u", f"Rb{i} b{i} bl 5"]
    return "\n".join(out)


def rss_mib() -> float:
    """Resident set size of this process (``/proc/self/statm``), MiB."""
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_series(kind: str, runs: int, every: int) -> dict:
    from spicebridge import worker

    worker.forget()
    circ = worker.circuit(("bench-memory", kind), DECK.format(rows=_rows(16)))
    for _ in range(50):  # warm-up: allocator pools, first plots
        circ.run()
    samples = [(0, rss_mib())]
    t0 = time.perf_counter()
    for i in range(1, runs + 1):
        if kind == "alter":
            circ.alter("vin3", 0.1 + 1e-6 * (i % 100))
        elif kind == "alterparams":
            circ.alterparams({"g0": 10e-6 * (1 + 1e-3 * (i % 100))})
        circ.run(vectors=["i(vbl)"])
        if i % every == 0:
            samples.append((i, rss_mib()))
    wall = time.perf_counter() - t0
    first, last = samples[0][1], samples[-1][1]
    # growth over the second half: what keeps growing once pools are warm
    mid = samples[len(samples) // 2]
    return {"kind": kind, "runs": runs, "wall_s": wall, "rss_mib": samples,
            "growth_mib": last - first,
            "growth_kib_per_run": (last - first) * 1024 / runs,
            "growth_kib_per_run_second_half": (last - mid[1]) * 1024 / max(1, runs - mid[0])}


def reload_series() -> dict:
    from spicebridge.engines import SharedEngine
    from spicebridge.engines.shared import MAX_CRASH_RELOADS
    from spicebridge.errors import EngineCrashedError, ParseError
    from spicebridge.netlist import sky130_corner_lib

    lib = sky130_corner_lib(("nfet_01v8",))
    # sky130 expressions need the .lib section: without it ngspice 39 gives up
    deck = (f'* gives up\n.include "{lib}"\nVd d 0 1\n'
            "X1 d d 0 0 sky130_fd_pr__nfet_01v8 W=1 L=0.15\n.op\n.end\n")
    eng = SharedEngine()
    samples = [(0, rss_mib())]
    refused = None
    for k in range(1, MAX_CRASH_RELOADS + 3):
        try:
            eng.simulate(deck)
        except ParseError:
            pass
        except EngineCrashedError as e:
            if "not reloading" in str(e):
                refused = k
                samples.append((k, rss_mib()))
                break
        samples.append((k, rss_mib()))
    return {"kind": "reload", "rss_mib": samples, "cap": MAX_CRASH_RELOADS,
            "refused_at_attempt": refused,
            "mib_per_reload": (samples[-1][1] - samples[0][1]) / max(1, len(samples) - 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--no-reload", action="store_true", help="skip the reload series")
    ap.add_argument("--out", type=Path, default=Path("bench/results/bridge_memory.json"))
    args = ap.parse_args()
    results = [run_series(k, args.runs, args.every) for k in ("rerun", "alter", "alterparams")]
    if not args.no_reload:
        results.append(reload_series())
    for r in results:
        pts = ", ".join(f"{n}:{v:.1f}" for n, v in r["rss_mib"])
        if r["kind"] == "reload":
            print(f"reload: {r['mib_per_reload']:.2f} MiB per reload, refused at attempt "
                  f"{r['refused_at_attempt']} (cap {r['cap']}); RSS MiB {pts}")
        else:
            print(f"{r['kind']}: {r['runs']} runs in {r['wall_s']:.1f} s, RSS +"
                  f"{r['growth_mib']:.2f} MiB ({r['growth_kib_per_run']:.3f} KiB/run; second "
                  f"half {r['growth_kib_per_run_second_half']:.3f} KiB/run); RSS MiB {pts}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"host": platform.node(), "python": platform.python_version(),
                                    "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
