"""Column netlists: SPICE vs an independent nodal analysis, IR drop, corners, one-bin models."""

from __future__ import annotations

import numpy as np
import pytest

from characterization.crossbar.models import filter_pm3
from characterization.crossbar.netlist import ColumnConfig, column_deck

pytestmark = pytest.mark.ngspice


def nodal_column_current(cfg: ColumnConfig, g_s: np.ndarray, active: np.ndarray) -> float:
    """Column current of the resistive column (linear cells, ideal switches, 0 V clamp).

    Unknowns: b_0..b_{N-1}, m_0..m_{N-1}, s_0..s_N; the clamp holds the far end of Rsense at
    0 V. Solved with numpy (no SPICE).
    """
    n = cfg.rows
    idx_b, idx_m, idx_s = np.arange(n), n + np.arange(n), 2 * n + np.arange(n + 1)
    size = 3 * n + 1
    a = np.zeros((size, size))
    rhs = np.zeros(size)

    def stamp(i: int | None, j: int | None, g: float) -> None:
        if i is not None:
            a[i, i] += g
        if j is not None:
            a[j, j] += g
        if i is not None and j is not None:
            a[i, j] -= g
            a[j, i] -= g

    g_drv = 1 / cfg.r_drv_ohm
    stamp(idx_b[0], None, g_drv)
    rhs[idx_b[0]] += g_drv * cfg.v_read_v
    for i in range(n):
        stamp(idx_b[i], idx_m[i], g_s[i])
        stamp(idx_m[i], idx_s[i], 1 / (cfg.r_switch_ohm if active[i] else cfg.r_off_ohm))
        if i < n - 1:
            stamp(idx_b[i], idx_b[i + 1], 1 / cfg.r_wire_ohm)
        stamp(idx_s[i], idx_s[i + 1], 1 / cfg.r_wire_ohm)
    stamp(idx_s[n], None, 1 / cfg.r_sense_ohm)
    v = np.linalg.solve(a, rhs)
    return v[idx_s[n]] / cfg.r_sense_ohm


@pytest.mark.parametrize("rows", [16, 128])
def test_resistive_column_matches_nodal_analysis(shared_engine, rows):
    cfg = ColumnConfig(rows=rows, cell="linear", access="ideal", tia="ideal", r_wire_ohm=5.0)
    rng = np.random.default_rng(rows)
    g = rng.uniform(cfg.g_min_s, cfg.g_max_s, rows)
    act = rng.random(rows) < 0.7
    r = shared_engine.simulate(column_deck(cfg, g_s=list(g), active=list(act)))
    i_spice = r["op1"]["i(vclamp)"][0]
    i_np = nodal_column_current(cfg, g, act)
    assert i_spice == pytest.approx(i_np, rel=1e-6)
    ideal = cfg.v_read_v * g[act].sum()
    assert i_spice < ideal                                  # IR drop only loses current


def _ir_error(engine, rows: int, r_wire: float) -> float:
    cfg = ColumnConfig(rows=rows, cell="linear", access="ideal", tia="ideal",
                       r_wire_ohm=r_wire, r_switch_ohm=1.0)
    g = [cfg.g_max_s] * rows
    i = engine.simulate(column_deck(cfg, g_s=g))["op1"]["i(vclamp)"][0]
    return 1 - i / cfg.i_full_scale_a


def test_ir_drop_error_grows_with_rows_and_wire_resistance(shared_engine):
    e16, e64, e256 = (_ir_error(shared_engine, n, 5.0) for n in (16, 64, 256))
    assert 0 < e16 < e64 < e256
    assert _ir_error(shared_engine, 64, 20.0) > e64


def test_sky130_column_corners_and_bounds(shared_engine):
    """Real column (rram + sky130 + opamp TIA): ss conducts less than tt less than ff, and the
    sensed current stays within the IR-drop/transistor/sinh bounds of the ideal."""
    cfg = ColumnConfig(rows=16)
    g = [cfg.g_max_s] * 16
    cur = {}
    for corner in ("ss", "tt", "ff"):
        r = shared_engine.simulate(column_deck(cfg, corner, g_s=g))
        cur[corner] = -r["op1"]["v(out)"][0] / cfg.r_f_ohm
    assert cur["ss"] < cur["tt"] < cur["ff"]
    ratio = cur["tt"] / cfg.i_full_scale_a
    # upper bound: the sinh read nonlinearity at 0.2 V (+2.7 %); lower: 16 rows of 5 ohm wire,
    # ~5 kohm access transistors and the finite-gain TIA lose a few per cent, not tens
    assert 0.9 < ratio < 1.0 + 0.027
    # the same column with ideal switches and clamp loses less
    ideal = ColumnConfig(rows=16, access="ideal", tia="ideal", r_switch_ohm=1.0)
    i_ideal = shared_engine.simulate(column_deck(ideal, g_s=g))["op1"]["i(vclamp)"][0]
    assert cur["tt"] < i_ideal


def test_one_bin_library_gives_the_full_library_result(shared_engine):
    res = []
    for one_bin in (True, False):
        cfg = ColumnConfig(rows=16, one_bin_models=one_bin)
        g = list(np.linspace(cfg.g_min_s, cfg.g_max_s, 16))
        r = shared_engine.simulate(column_deck(cfg, "ss", g_s=g))
        res.append(r["op1"]["v(out)"][0])
    assert res[0] == pytest.approx(res[1], rel=1e-9)


def test_pm3_filter_keeps_only_the_covering_bin():
    text = """.subckt n d g s b
.model n.0 nmos
+ lmin = 1.5e-07 lmax = 1.8e-07 wmin = 4.2e-07 wmax = 5.5e-07
+ level = 54
.model n.1 nmos
+ lmin = 1.5e-07 lmax = 1.8e-07 wmin = 5.5e-07 wmax = 6.4e-07
+ level = 54
.ends n
"""
    out = filter_pm3(text, 0.5, 0.15)
    assert "n.0" in out and "n.1" not in out and ".ends n" in out
    with pytest.raises(ValueError, match=r"W=5\.0 um"):
        filter_pm3(text, 5.0, 0.15)
