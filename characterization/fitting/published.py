"""The VTEAM model (Kvatinsky et al., IEEE TCAS-II 62(8) 2015) integrated in Python.

An implementation independent of both SPICE subcircuits (``netlists/rram/rram.lib`` and
``netlists/memristor/vteam.lib``): it makes the synthetic "measured" records the fitter is
tested on (a loop from a model the fitter did not generate, with the instrument's offsets, a
series resistance and noise), and it checks ``vteam.lib`` against the paper's equations.

Same equations and state convention as ``vteam.lib`` (x = 1: ON; positive V SETs):

    dx/dt = kset (V/vset - 1)^aset exp(-exp((x - a_set)/wc))          V > vset
          = -kreset (V/vreset - 1)^areset exp(-exp(-(x - a_reset)/wc)) V < vreset
    R(x)  = roff + (ron - roff) x            (iv = 0, paper eq. 3)
          = ron exp(ln(roff/ron) (1 - x))    (iv = 1, paper eq. 4)

The circuit of a measurement: a source V(t) (what the record logs as ``v_v``), an instrument
voltage offset (the device sees ``V - v_offset``), a series resistance ``r_series`` (the
sense resistor), the device; the logged current is the device current plus ``i_offset``.
The device is ohmic at a given state, so the series divider is solved exactly:
``I = (V - v_offset) / (R(x) + r_series)``, device voltage ``I R(x)``. Integration: classical
Runge-Kutta on ``substeps`` steps per sample interval, V linear between samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

VTEAM_DEFAULTS: dict[str, float] = {
    "ron": 2e3, "roff": 20e3, "w0": 0.0, "vset": 0.2, "vreset": -0.2, "kset": 1e4,
    "kreset": 1e4, "aset": 3.0, "areset": 3.0, "a_set": 1.0, "a_reset": 0.0, "wc": 0.05,
    "iv": 0.0,
}
"""The defaults of ``netlists/memristor/vteam.lib``."""


def _resistance(x: float, p: Mapping[str, float]) -> float:
    xc = min(max(x, 0.0), 1.0)
    if p["iv"] >= 0.5:
        return p["ron"] * math.exp(math.log(p["roff"] / p["ron"]) * (1.0 - xc))
    return p["roff"] + (p["ron"] - p["roff"]) * xc


def _rate(x: float, vd: float, p: Mapping[str, float]) -> float:
    if vd > p["vset"]:
        od = min(vd / p["vset"] - 1.0, 20.0)
        return p["kset"] * od ** p["aset"] * math.exp(-math.exp(min((x - p["a_set"]) / p["wc"],
                                                                     40.0)))
    if vd < p["vreset"]:
        od = min(vd / p["vreset"] - 1.0, 20.0)
        return -p["kreset"] * od ** p["areset"] * math.exp(
            -math.exp(min(-(x - p["a_reset"]) / p["wc"], 40.0)))
    return 0.0


def vteam_record(time_s: np.ndarray, v_v: np.ndarray, params: Mapping[str, float] | None = None,
                 *, v_offset: float = 0.0, i_offset: float = 0.0, r_series: float = 0.0,
                 substeps: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Logged current and the state at the sample times of the source ``v_v(time_s)``.

    Returns:
        ``(i_a, x)``: current as the instrument logs it (with ``i_offset``) and the state.
    """
    p = VTEAM_DEFAULTS | dict(params or {})
    t = np.asarray(time_s, float)
    v = np.asarray(v_v, float)

    def deriv(x: float, vs: float) -> float:
        r = _resistance(x, p)
        vd = (vs - v_offset) * r / (r + r_series)
        return _rate(x, vd, p)

    x = float(p["w0"])
    xs = np.empty(t.size)
    xs[0] = x
    for k in range(t.size - 1):
        h = (t[k + 1] - t[k]) / substeps
        for j in range(substeps):
            a = v[k] + (v[k + 1] - v[k]) * j / substeps
            b = v[k] + (v[k + 1] - v[k]) * (j + 0.5) / substeps
            c = v[k] + (v[k + 1] - v[k]) * (j + 1) / substeps
            k1 = deriv(x, a)
            k2 = deriv(x + 0.5 * h * k1, b)
            k3 = deriv(x + 0.5 * h * k2, b)
            k4 = deriv(x + h * k3, c)
            x += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        xs[k + 1] = x
    r = np.array([_resistance(float(xx), p) for xx in xs])
    return (v - v_offset) / (r + r_series) + i_offset, xs


def triangle(f_hz: float, v_amp: float, *, periods: float = 1.0,
             samples_per_period: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """A triangle 0 -> +v_amp -> -v_amp -> 0 of frequency ``f_hz`` (one sample per 1/(f N))."""
    n = round(periods * samples_per_period) + 1
    t = np.arange(n) / (f_hz * samples_per_period)
    ph = (t * f_hz) % 1.0
    v = v_amp * np.where(ph < 0.25, 4 * ph, np.where(ph < 0.75, 2 - 4 * ph, 4 * ph - 4))
    return t, v
