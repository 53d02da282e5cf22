"""Point functions of the crossbar sweeps (run on sweep workers, one libngspice each).

``column_point`` measures read transfer, read noise and the sensing levels on one column;
``write_point`` programs cells of the write bench from reset, single-shot and with
write-verify. Both load their circuit once per worker and process corner and vary it with
``alter`` / ``option temp`` / ``setseed``; every random draw comes from the point's seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import numpy as np

from characterization.sweep import SweepPoint, worker_cache

from .netlist import (
    MODES,
    ColumnConfig,
    WriteConfig,
    calibration_deck,
    column_deck,
    write_bench_deck,
)

NOISE_FRACS = (0.02, 0.1, 0.25, 0.5, 0.75, 1.0)
"""Column currents of the read-noise table, as fractions of the ideal full scale."""

ENERGY_PARTS = ("array", "tia", "drivers")
"""``part`` coordinates of ``crossbar/read_energy_j``."""
ENERGY_SEED = 13013
"""Seed of the read-energy patterns (chip ``m`` reads pattern ``m``; the same patterns at every
corner, supply and temperature, so the table's PVT dependence is the circuit's)."""

_HOLD: dict[str, Any] = {}


def _engine() -> Any:
    import spicebridge

    return worker_cache("crossbar-engine", lambda: spicebridge.create_engine("shared"))


def _circuit(key: tuple, deck_fn: Any, corner_key: str, seed: int | None = None) -> Any:
    """The loaded circuit for ``key``; reloaded when another deck replaced it in this process.

    ``seed``: ngspice's generator is seeded (``setseed``) right before a load, so the random
    sources' draws at load time (TRRANDOM's first values) do not depend on what this process
    ran before.
    """
    from spicebridge.worker import circuit, engine

    if seed is not None:
        eng = engine()
        with eng._ng.lock:  # before the load there is no circuit to send it to
            eng._ng.command(f"setseed {int(seed)}")
    circ = circuit(("crossbar", key), deck_fn, corner_key=corner_key)
    if _HOLD.get("circ") is not circ:  # (re)loaded: the values set on the old one are gone
        _HOLD.clear()
        _HOLD.update(key=key, circ=circ, values={})
    return circ


def _set(circ: Any, element: str, value: float) -> None:
    """``alter`` only when the value differs from the one last set in this process."""
    values = _HOLD["values"]
    if values.get(element) != value:
        circ.alter(element, float(value))
        values[element] = value


def _corner_key(point: SweepPoint) -> str:
    c = point.coords
    return f"{c['process']}_{float(c['vdd_v']):.3f}v_{float(c['temp_c']):g}c_mc{point.mc}"


class _Column:
    """Drives a loaded column: conductances, word lines, mismatch, readout.

    ``g_t`` (per level, S) is the cells' read conductance at the circuit temperature, from the
    reference cells (``cell_read``); the noise resistor of a cell is set from it: ``1/G(T)``
    for an inactive cell, ``1/(G(T) (1 + F q V_read / 2kT))`` (thermal + shot) for an active
    one.
    """

    def __init__(self, cfg: ColumnConfig, circ: Any, vdd_v: float, temp_c: float) -> None:
        self.cfg, self.circ, self.vdd_v, self.temp_c = cfg, circ, vdd_v, temp_c
        self.g_t: np.ndarray | None = None

    def cell_read(self) -> np.ndarray:
        """Read conductance at v_read and the circuit temperature of a cell at each level's
        state: ``|i(vref<l>)| / v_read`` of the reference cells (one ``.op``)."""
        cfg = self.cfg
        names = [f"i(vref{lvl})" for lvl in range(cfg.levels)]
        r = self.circ.run("op", vectors=names)["op1"]
        self.g_t = np.array([abs(float(r[n][0])) for n in names]) / cfg.v_read_v
        return self.g_t

    def g_at_t(self, g_s: np.ndarray) -> np.ndarray:
        """Read conductance at T of cells whose state gives ``g_s`` at tnom (linear in the
        state between the level-0 and top-level reference cells)."""
        w = (np.asarray(g_s, float) - self.cfg.g_min_s) / (self.cfg.g_max_s - self.cfg.g_min_s)
        return self.g_t[0] + np.clip(w, 0.0, 1.0) * (self.g_t[-1] - self.g_t[0])

    def set_pattern(self, g_s: np.ndarray, active: np.ndarray) -> None:
        cfg = self.cfg
        g_noise = self.g_at_t(g_s) if self.g_t is not None else np.asarray(g_s, float)
        shot = cfg.shot_factor(self.temp_c)
        for i in range(cfg.rows):
            if cfg.cell == "rram":
                _set(self.circ, f"v.xm{i}.vw0", min(max(cfg.state_of(float(g_s[i])), 0.0), 1.0))
                _set(self.circ, f"r.xm{i}.rnz",
                     1.0 / (float(g_noise[i]) * (shot if active[i] else 1.0)))
            else:
                _set(self.circ, f"rm{i}", 1.0 / float(g_s[i]))
            if cfg.access == "sky130":
                _set(self.circ, f"vwl{i}", self.vdd_v if active[i] else 0.0)
            else:
                _set(self.circ, f"ra{i}", cfg.r_switch_ohm if active[i] else cfg.r_off_ohm)

    def current(self) -> float:
        """Sensed column current: ``-v(out)/Rf`` (opamp TIA) or ``i(vclamp)`` (ideal)."""
        if self.cfg.tia == "ideal":
            return float(self.circ.run("op", vectors=["i(vclamp)"])["op1"]["i(vclamp)"][0])
        r = self.circ.run("op", vectors=["v(out)"])
        return -float(r["op1"]["v(out)"][0]) / self.cfg.r_f_ohm

    def read_energy(self, g_s: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Energy of one read of a pattern, per ``ENERGY_PARTS``, from a transient.

        The active word lines rise from 0 to ``vdd`` at t0 = 1 ns in ``t_wl_edge_s`` and stay on
        for ``t_read_s``; each supply's delivered power is integrated over that window
        (t0 .. t0 + edge + t_read): *array* ``v_read * I(vrd)`` (the bit-line read driver:
        the cells, wires, access devices); *tia* ``vdd * (tia_iq_a + |I_out|)`` with the
        current the TIA's output sinks from SPICE and the opamp's quiescent current an
        assumption (the opamp is behavioural); *drivers* ``vdd * I(vwl)`` summed over the
        word lines (the gate charge of the access transistors; 0 with an ideal switch). The
        word-line sources keep the transient waveform afterwards; ``.op`` and ``.noise``
        still use their DC values.
        """
        cfg = self.cfg
        self.set_pattern(g_s, active)
        t0, edge, t_rd = 1e-9, cfg.t_wl_edge_s, cfg.t_read_s
        t_end = t0 + edge + t_rd
        wl = cfg.access == "sky130"
        names = ["i(vrd)", "i(vclamp)" if cfg.tia == "ideal" else "i(eout)"]
        if wl:
            for i in range(cfg.rows):
                v = self.vdd_v if active[i] else 0.0
                self.circ.command(f"alter @vwl{i}[pwl] = [ 0 0 {t0:.12g} 0 {t0 + edge:.12g} "
                                  f"{v:.12g} {2 * t_end:.12g} {v:.12g} ]")
            names += [f"i(vwl{i})" for i in range(cfg.rows)]
        step = min(edge / 2, t_rd / 50)
        r = self.circ.run(f"tran {step:.6g} {t_end:.12g} 0 {t_rd / 50:.6g}", vectors=names)
        tr = r["tran1"]
        t = np.asarray(tr["time"].real, float)

        def integral(y: np.ndarray) -> float:
            keep = t >= t0 - 1e-15
            return float(np.trapezoid(np.asarray(y, float)[keep], t[keep]))

        e_arr = cfg.v_read_v * integral(-tr["i(vrd)"].real)  # delivered = -branch current
        i_out = np.abs(tr[names[1]].real)
        e_tia = self.vdd_v * integral(cfg.tia_iq_a + i_out)
        e_drv = 0.0
        if wl:
            i_wl = -np.sum([tr[f"i(vwl{i})"].real for i in range(cfg.rows)], axis=0)
            e_drv = self.vdd_v * integral(i_wl)
        return np.array([e_arr, e_tia, e_drv])

    def noise_sigma(self) -> float:
        """Output noise integrated over the TIA's whole noise bandwidth (``f_noise_lo_hz`` to
        ``f_noise_top_hz``), referred to the column current (``/ Rf``)."""
        cfg = self.cfg
        r = self.circ.run(f"noise v(out) vrd dec 10 {cfg.f_noise_lo_hz:.6g} "
                          f"{cfg.f_noise_top_hz:.6g}", vectors=["v(onoise_total)"])
        return float(np.abs(r["noise2"]["v(onoise_total)"][0])) / cfg.r_f_ohm


def energy_pattern(cfg: ColumnConfig, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-energy pattern ``index``: a random mixture, each cell at a uniformly drawn level,
    each row active with probability 1/2 (at least one), from ``ENERGY_SEED``.

    Returns:
        Cell conductances (S, the levels' tnom values) and word-line activity flags.
    """
    rng = np.random.default_rng([ENERGY_SEED, int(index), int(cfg.rows)])
    lvl = rng.integers(0, cfg.levels, cfg.rows)
    act = rng.random(cfg.rows) < 0.5
    if not act.any():
        act[0] = True
    return np.asarray(cfg.level_g_s)[lvl], act


def transfer_pattern(cfg: ColumnConfig, frac: float, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A random input/conductance pattern whose ideal current is near ``frac`` of full scale.

    The number of active rows ``k`` is uniform in ``[ceil(frac N), N]``; active cells take the
    two levels around the mean level that gives ``frac``; inactive cells random levels.

    Returns:
        Cell conductances (S) and word-line activity flags.
    """
    n, levels = cfg.rows, np.asarray(cfg.level_g_s)
    top = len(levels) - 1
    k = int(rng.integers(max(1, math.ceil(frac * n)), n + 1))
    m = min(frac * n / k, 1.0) * top
    lo = math.floor(m)
    lvl = np.where(rng.random(n) < (m - lo), min(lo + 1, top), lo)
    active = np.zeros(n, dtype=bool)
    active[rng.permutation(n)[:k]] = True
    lvl = np.where(active, lvl, rng.integers(0, top + 1, n))
    return levels[lvl], active


def bin_patterns(cfg: ColumnConfig, g_t: np.ndarray, per_bin: int, rng: np.random.Generator
                 ) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """``per_bin`` patterns in each bin of ``XFER_GRID`` (``i_ideal_rel`` = ideal current at T
    / full scale at T, half a grid step around each point), the first of bin 0 all-HRS (every
    row active at level 0), the first of the last bin all-LRS (every row at the top level),
    the rest random mixtures (``transfer_pattern``) whose ideal current at T falls in the bin
    (redrawn until it does).

    Returns:
        ``(g_s, active, bin)`` per pattern; ``g_s`` are the levels' tnom conductances (the
        states), the ideal current at T is ``v_read * sum(G_T(level))`` over active rows.
    """
    from .reduce import XFER_GRID

    levels = np.asarray(cfg.level_g_s)
    n = cfg.rows
    fs_t = n * float(g_t[-1])
    half = 0.5 * float(XFER_GRID[1] - XFER_GRID[0])
    out: list[tuple[np.ndarray, np.ndarray, int]] = []
    for b, x in enumerate(XFER_GRID):
        lo, hi = max(float(x) - half, 0.0), min(float(x) + half, 1.0)
        for j in range(per_bin):
            if j == 0 and b == 0:
                out.append((np.full(n, levels[0]), np.ones(n, dtype=bool), b))
                continue
            if j == 0 and b == XFER_GRID.size - 1:
                out.append((np.full(n, levels[-1]), np.ones(n, dtype=bool), b))
                continue
            for _ in range(200):
                g, act = transfer_pattern(cfg, float(rng.uniform(max(lo, 1e-3), hi)), rng)
                idx = np.searchsorted(levels, g)
                rel = float(g_t[idx][act].sum()) / fs_t
                if act.any() and lo <= rel <= hi:
                    break
            else:
                raise RuntimeError(f"no pattern found for read-transfer bin {x:g} "
                                   f"({n} rows, cell G(T) {g_t})")
            out.append((g, act, b))
    return out


def column_point(point: SweepPoint) -> dict[str, Any]:
    """Cell read G(T), read transfer, read noise and sensing levels of one column instance
    (one Monte-Carlo chip).

    Context keys: ``column`` (``ColumnConfig.to_dict()``), ``patterns`` (read-transfer
    patterns per ``XFER_GRID`` bin and chip).

    Returns:
        ``cell_g_s`` (per level: the reference cell's read conductance at v_read and T),
        ``xfer_rel`` and ``xfer_ratio`` (per pattern: ideal current at T / full scale at T,
        sensed / ideal at T; the ideal current at T uses the cells' G(T), so the ratio holds
        only the column: IR drop, access device, TIA), ``noise_i_a`` and ``noise_sigma_a``
        (per ``NOISE_FRACS``), ``margin_i_a`` and ``margin_noise_a`` (per level, one active
        row; the noise from one ``.noise`` at the top level).
    """
    ctx = point.context
    cfg = ColumnConfig.from_dict(ctx["column"])
    corner = str(point.coords["process"])
    vdd_v, temp_c = float(point.coords["vdd_v"]), float(point.coords["temp_c"])
    key = ("column", corner, json.dumps(ctx["column"], sort_keys=True))
    circ = _circuit(key, lambda: column_deck(cfg, corner, vdd_v=vdd_v), _corner_key(point))
    rng = point.rng()
    circ.set_temp(temp_c)
    col = _Column(cfg, circ, vdd_v, temp_c)
    if cfg.access == "sky130":
        dvt = rng.normal(0.0, cfg.sigma_vt_v, cfg.rows)
        for i in range(cfg.rows):
            _set(circ, f"vmm{i}", float(dvt[i]))  # v_gate = v_wl - dVt
    g_t = col.cell_read()
    levels = np.asarray(cfg.level_g_s)
    pats = bin_patterns(cfg, g_t, int(ctx.get("patterns", 4)), rng)
    rel, ratio = np.empty(len(pats)), np.empty(len(pats))
    fs_t = cfg.rows * cfg.v_read_v * float(g_t[-1])
    for p, (g, act, _b) in enumerate(pats):
        ideal = cfg.v_read_v * float(g_t[np.searchsorted(levels, g)][act].sum())
        col.set_pattern(g, act)
        rel[p], ratio[p] = ideal / fs_t, col.current() / ideal
    # the read-noise currents: NOISE_FRACS of this column's full scale, or (a plan with a rows
    # axis) the ideal currents shared by all its columns, NaN above this column's full scale
    fracs = [float(i) / cfg.i_full_scale_a for i in ctx["noise_i_a"]] \
        if ctx.get("noise_i_a") else list(NOISE_FRACS)
    noise_i, noise_s = np.full(len(fracs), np.nan), np.full(len(fracs), np.nan)
    for q, f in enumerate(fracs):
        if f > 1.0 + 1e-9:
            continue
        k = max(1, math.ceil(f * cfg.rows - 1e-9))
        g = np.full(cfg.rows, cfg.g_min_s)
        g[:k] = max(f * cfg.rows * cfg.g_max_s / k, cfg.g_min_s)
        act = np.zeros(cfg.rows, dtype=bool)
        act[:k] = True
        col.set_pattern(g, act)
        noise_i[q] = col.current()
        noise_s[q] = col.noise_sigma() if cfg.tia == "opamp" else 0.0
    g = levels[rng.integers(0, len(levels), cfg.rows)]
    act = np.zeros(cfg.rows, dtype=bool)
    act[0] = True
    m_i = np.empty(len(levels))
    for lvl, gl in enumerate(levels):
        g[0] = gl
        col.set_pattern(g, act)
        m_i[lvl] = col.current()
    # read noise at one active row hardly depends on its level (TIA and off-row noise
    # dominate): one .noise at the top level stands for all levels
    m_n = np.full(len(levels), col.noise_sigma() if cfg.tia == "opamp" else 0.0)
    # read energy last: its transient leaves waveforms on the word-line sources (DC unchanged)
    energy = col.read_energy(*energy_pattern(cfg, point.mc))
    return {"cell_g_s": g_t, "xfer_rel": rel, "xfer_ratio": ratio, "noise_i_a": noise_i,
            "noise_sigma_a": noise_s, "margin_i_a": m_i, "margin_noise_a": m_n,
            "read_energy_j": energy}


def calibrate_write(cfg: ColumnConfig, wcfg: WriteConfig, vdd_v: float, corner: str = "tt",
                    temp_c: float = 27.0) -> dict[str, Any]:
    """Single-shot pulse widths and the verify pulse budget, from the nominal cell.

    The write driver is tuned on the nominal device (no variation) at ``corner``, ``vdd_v``,
    ``temp_c``: one long SET pulse (4x longer until the top level is reached, up to 128 us),
    and the time at which the state reaches each level's w (level top: w = 0.99) is that
    level's single-shot width. With per-level word lines (``wcfg.wl_frac_levels``) each level
    gets its own pulse at its own word line (time to that level's w).

    Returns:
        ``single_widths_s`` (per level, 0 for level 0), ``n_pulses`` (``verify_budget`` x the
        step pulses needed to reach the top level nominally, at least 4) and the point.

    Raises:
        RuntimeError: The nominal cell never reaches a level (the word line's compliance),
            naming the level, the point and the word line.
    """
    import spicebridge

    top = cfg.levels - 1
    traces: dict[float, tuple[np.ndarray, np.ndarray, float]] = {}

    def trace(wl: float, w_goal: float) -> tuple[np.ndarray, np.ndarray, float]:
        if wl in traces and (traces[wl][1].max() >= w_goal or traces[wl][2] >= 128e-6):
            return traces[wl]
        t_pulse = 2e-6
        wc = replace(wcfg, wl_frac=wl, wl_frac_levels=())
        while True:
            deck = calibration_deck(cfg, wc, vdd_v=vdd_v, t_pulse_s=t_pulse, corner=corner,
                                    temp_c=temp_c)
            r = spicebridge.create_engine("shared").simulate(deck,
                                                             corner_key="write-calibration")
            t, w = r["tran1"]["time"].real, r["tran1"]["v(xm0.w)"].real
            if np.any(w >= w_goal) or t_pulse >= 128e-6:
                break
            t_pulse *= 4
        traces[wl] = (t, w, t_pulse)
        return traces[wl]

    widths = [0.0]
    for lvl in range(1, cfg.levels):
        target = min(lvl / top, 0.99)
        wl = wcfg.wl_frac_of(lvl)
        t, w, t_pulse = trace(wl, target if wcfg.wl_frac_levels else 0.99)
        hit = np.flatnonzero(w >= target)
        if hit.size == 0:
            raise RuntimeError(f"write calibration ({corner}, vdd {vdd_v:g} V, {temp_c:g} C, "
                               f"{cfg.rram_lib_file}): the nominal cell never reached level "
                               f"{lvl} (w={target:.2f}) under a {t_pulse * 1e9:.0f} ns, "
                               f"{wcfg.v_set_v} V SET pulse with the word line at "
                               f"{wl:g} x vdd "
                               "(the access transistor's compliance); raise write.v_set_v or "
                               "write.wl_frac" + ("_levels" if wcfg.wl_frac_levels else ""))
        widths.append(float(np.interp(target, w[: hit[0] + 1], t[: hit[0] + 1]))
                      - wcfg.t_edge_s / 2)
    wanted = max(4, math.ceil(wcfg.verify_budget * widths[-1] / wcfg.t_step_s))
    n_pulses = min(wanted, wcfg.verify_max_pulses)  # the cap: cells not there are failures
    return {"single_widths_s": widths, "n_pulses": int(n_pulses), "n_pulses_wanted": int(wanted),
            "at": {"process": corner, "vdd_v": vdd_v, "temp_c": temp_c}}


def cell_read_at(cfg: ColumnConfig, temp_c: float) -> np.ndarray:
    """Read conductance G(w_l, T) at ``v_read`` of a nominal cell at each level's state, at
    ``temp_c`` (one ``.op`` of ``cell_read_deck``: the column deck's reference cells, so the
    same numbers as ``crossbar/cell_read``)."""
    import spicebridge

    from .netlist import cell_read_deck

    names = [f"i(vref{lvl})" for lvl in range(cfg.levels)]
    r = spicebridge.create_engine("shared").simulate(cell_read_deck(cfg, temp_c),
                                                     corner_key="cell-read")["op1"]
    return np.array([abs(float(np.real(r[n][0]))) for n in names]) / cfg.v_read_v


def verify_targets(cfg: ColumnConfig, wcfg: WriteConfig, g_t: np.ndarray
                   ) -> tuple[np.ndarray, float]:
    """Verify targets at T and the tolerance: level l's state as read at T, ``G(0,T) + l/top
    (G(1,T) - G(0,T))`` (the map nnsim applies to the samples, ``hardware.cell_map``; equal
    to ``g_t[l]`` for a cell linear in its state), and ``verify_tol_rel (G(1,T) - G(0,T))``."""
    g_t = np.asarray(g_t, float)
    frac = np.arange(cfg.levels) / (cfg.levels - 1)
    span = float(g_t[-1] - g_t[0])
    return g_t[0] + frac * span, wcfg.verify_tol_rel * span


def calibration_point(wcfg: WriteConfig, corner: str, vdd_v: float, temp_c: float,
                      vdd_nom_v: float) -> tuple[str, float, float]:
    """Where the write driver is tuned: the point itself (``per_corner``) or tt / the nominal
    supply / 27 degC (``nominal``)."""
    if wcfg.calibrate == "nominal":
        return "tt", float(vdd_nom_v), 27.0
    return corner, float(vdd_v), float(temp_c)


def _reads(r: Any, j: int, times: np.ndarray) -> np.ndarray:
    tr = r["tran1"]
    t = tr["time"].real
    i = np.interp(times, t, np.abs(tr[f"i(vp{j})"].real))
    v = np.interp(times, t, (tr[f"v(p{j})"] - tr[f"v(m{j})"]).real)
    return i / v


def write_point(point: SweepPoint) -> dict[str, Any]:
    """Program every cell of the write bench from reset; one Monte-Carlo chip per point.

    Per cell: access mismatch (Pelgrom), device-to-device factors of the memristor and a
    cycle-to-cycle seed (``setseed``), all from the point's generator.

    Context keys: ``column``, ``write`` (``WriteConfig.to_dict()``), ``vdd_nom_v``.

    Returns:
        ``g_prog_s`` and ``n_pulses`` with shape (mode, level, copy); ``verify_failed``
        (level, copy): 1 where a write-verify cell never reached its level within the pulse
        budget (its last read is kept as its programmed conductance); ``pulse_budget``.
    """
    ctx = point.context
    cfg = ColumnConfig.from_dict(ctx["column"])
    wcfg = WriteConfig(**ctx["write"])
    corner = str(point.coords["process"])
    vdd_v, temp_c = float(point.coords["vdd_v"]), float(point.coords["temp_c"])
    cjson = json.dumps([ctx["column"], ctx["write"], ctx["vdd_nom_v"]], sort_keys=True)
    at = calibration_point(wcfg, corner, vdd_v, temp_c, float(ctx["vdd_nom_v"]))
    cal = worker_cache(("crossbar-write-cal", cjson, at),
                       lambda: calibrate_write(cfg, wcfg, at[1], at[0], at[2]))
    # the verify targets at the bench's temperature: a read at T is compared with the level
    # as read at T (against the tnom conductances, temperature reached the read but not the
    # target: at 85 degC the top level, G(1, 85) = 0.967 G_max, was below the pass mark G_max - tol)
    g_t = worker_cache(("crossbar-cell-read", cjson, temp_c), lambda: cell_read_at(cfg, temp_c))
    rng = point.rng()
    c2c_seed = int(np.random.default_rng(point.seed).integers(1, 2**31 - 1))
    deck, layout = write_bench_deck(cfg, wcfg, corner, single_widths_s=cal["single_widths_s"],
                                    n_pulses=cal["n_pulses"], vdd_v=vdd_v, temp_c=temp_c,
                                    seed=c2c_seed)
    # a fresh load per point, seeded in the deck: ngspice draws the cycle-to-cycle sources'
    # first values at load time, so a reused circuit would carry the previous point's state
    # (results then depend on which points a worker ran before: not the same bits)
    circ = _circuit(("write", corner, cjson, c2c_seed), lambda: deck, _corner_key(point),
                    seed=c2c_seed)
    n_cells = len(layout["cells"])
    dvt = rng.normal(0.0, cfg.sigma_vt_v, n_cells)
    d_gon = np.exp(rng.normal(0.0, wcfg.sigma_gon, n_cells))
    d_goff = np.exp(rng.normal(0.0, wcfg.sigma_goff, n_cells))
    d_vset = rng.normal(0.0, wcfg.sigma_vset_v, n_cells)
    d_k = np.exp(rng.normal(0.0, wcfg.sigma_k, n_cells))
    # cycle-to-cycle: one lognormal (mean 1) rate factor per pulse, drawn here from the
    # point's generator and applied through the rate source vdk (a PWL stepping at each
    # period boundary, between pulses); the model's TRRANDOM is off in the bench, so no draw
    # depends on ngspice's generator or its time steps
    n_p = int(cal["n_pulses"])
    sig = wcfg.sigma_c2c
    c2c = np.exp(sig * rng.standard_normal((n_cells, n_p)) - 0.5 * sig * sig)
    per = wcfg.period_s
    circ.set_temp(temp_c)
    for j, (mode, _level, _copy) in enumerate(layout["cells"]):
        _set(circ, f"vmm{j}", float(dvt[j]))
        _set(circ, f"vwl{j}", wcfg.wl_frac_of(_level) * vdd_v)  # write word line (compliance)
        _set(circ, f"v.xm{j}.vdgon", float(d_gon[j]))
        _set(circ, f"v.xm{j}.vdgoff", float(d_goff[j]))
        _set(circ, f"v.xm{j}.vdvset", float(d_vset[j]))
        if mode == "single":  # one pulse, one draw
            _set(circ, f"v.xm{j}.vdk", float(d_k[j] * c2c[j, 0]))
        else:
            f = d_k[j] * c2c[j]
            pts = [0.0, f[0]]
            for k in range(1, n_p):
                pts += [k * per, f[k - 1], k * per + 1e-12, f[k]]
            pts += [n_p * per + per, f[-1]]
            circ.command(f"alter @v.xm{j}.vdk[pwl] = [ "
                         + " ".join(f"{x:.12g}" for x in pts) + " ]")
    circ.command(f"setseed {c2c_seed}")
    r = circ.run(vectors=[f"{q}({n}{j})" for j in range(n_cells)
                          for q, n in (("i", "vp"), ("v", "p"), ("v", "m"))])
    times = np.asarray(layout["read_times_s"])
    shape = (len(MODES), cfg.levels, wcfg.cells_per_level)
    g_prog, n_pul = np.full(shape, np.nan), np.full(shape, np.nan)
    failed = np.zeros((cfg.levels, wcfg.cells_per_level))
    targets, tol = verify_targets(cfg, wcfg, g_t)
    for j, (mode, level, copy) in enumerate(layout["cells"]):
        reads = _reads(r, j, times)
        m = MODES.index(mode)
        if mode == "single" or level == 0:
            g_prog[m, level, copy] = reads[-1]
            n_pul[m, level, copy] = 1.0 if level else 0.0
        else:
            ok = np.flatnonzero(reads >= targets[level] - tol)
            k = int(ok[0]) if ok.size else len(reads) - 1
            failed[level, copy] = 0.0 if ok.size else 1.0  # never reached within the budget
            g_prog[m, level, copy] = reads[k]
            n_pul[m, level, copy] = k + 1
    return {"g_prog_s": g_prog, "n_pulses": n_pul, "verify_failed": failed,
            "pulse_budget": np.array([float(cal["n_pulses"])])}
