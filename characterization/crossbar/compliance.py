"""SET compliance of the write word line: the nominal cell under one long SET pulse.

``python -m characterization.crossbar.compliance [--wl 0.6,0.65,0.7,1] [--preset default]``
prints, per word-line fraction (``WriteConfig.wl_frac``) and PVT point of the preset's grid, the
state the nominal cell (no variation) saturates at and its time to each level's state; the
lowest fraction at which every point reaches the top level is what ``run.WL_FRAC`` is
(docs/crossbar.md, "Compliance").
"""

from __future__ import annotations

import argparse
import itertools
import json
from typing import Any

import numpy as np

from .netlist import ColumnConfig, WriteConfig, calibration_deck


def set_trace(cfg: ColumnConfig, wcfg: WriteConfig, corner: str, vdd_v: float, temp_c: float,
              w_goal: float = 0.99, t_max_s: float = 128e-6) -> dict[str, Any]:
    """One SET pulse on the nominal cell (4x longer from 2 us until ``w_goal`` or ``t_max_s``).

    Returns:
        ``w_max`` (the state reached: the saturation state where it is below ``w_goal``),
        ``t_level_s`` (time to each level's state above 0, None where not reached), ``t_pulse_s``.
    """
    import spicebridge

    eng = spicebridge.create_engine("shared")
    t_pulse = 2e-6
    while True:
        deck = calibration_deck(cfg, wcfg, vdd_v=vdd_v, t_pulse_s=t_pulse, corner=corner,
                                temp_c=temp_c)
        r = eng.simulate(deck, corner_key="write-compliance")
        t, w = r["tran1"]["time"].real, r["tran1"]["v(xm0.w)"].real
        if w.max() >= w_goal or t_pulse >= t_max_s:
            break
        t_pulse *= 4
    top = cfg.levels - 1
    times = []
    for lvl in range(1, cfg.levels):
        hit = np.flatnonzero(w >= min(lvl / top, 0.99))
        times.append(float(t[hit[0]]) if hit.size else None)
    return {"w_max": float(w.max()), "t_level_s": times, "t_pulse_s": t_pulse}


def scan(wl_fracs: list[float], process: list[str], vdd_v: list[float], temp_c: list[float],
         cfg: ColumnConfig | None = None) -> list[dict[str, Any]]:
    """``set_trace`` at every word-line fraction and PVT point."""
    cfg = cfg or ColumnConfig(rows=64)
    out = []
    for wl, corner, vdd, temp in itertools.product(wl_fracs, process, vdd_v, temp_c):
        r = set_trace(cfg, WriteConfig(wl_frac=wl), corner, vdd, temp)
        out.append({"wl_frac": wl, "process": corner, "vdd_v": vdd, "temp_c": temp, **r})
    return out


def main(argv: list[str] | None = None) -> int:
    from .run import make_plan

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wl", default="0.5,0.55,0.6,0.65,0.7,1.0",
                    help="word-line fractions of vdd, comma-separated")
    ap.add_argument("--preset", default="default", choices=("quick", "default", "full"))
    ap.add_argument("--json", default=None, help="write the rows to this JSON file")
    a = ap.parse_args(argv)
    plan = make_plan(a.preset)
    wls = [float(x) for x in a.wl.split(",")]
    rows = scan(wls, plan.process, plan.vdd_v, plan.temp_c, plan.column)
    for r in rows:
        ts = ["-" if x is None else f"{x * 1e9:.0f}" for x in r["t_level_s"]]
        print(f"{r['wl_frac']:g} {r['process']} {r['vdd_v']:g} V {r['temp_c']:g} C: "
              f"w_max {r['w_max']:.3f}, t to levels (ns) {' / '.join(ts)}")
    for wl in wls:
        worst = min((r for r in rows if r["wl_frac"] == wl), key=lambda r: r["w_max"])
        print(f"wl_frac {wl:g}: worst w_max {worst['w_max']:.3f} at {worst['process']} / "
              f"{worst['vdd_v']:g} V / {worst['temp_c']:g} C")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
