"""StrongARM comparator characterization in SPICE: offset (Monte Carlo), noise, delay, energy.

Offset: the comparator testbench (``_netlists.comparator_tb_deck``) ramps the differential
input slowly over 40 clock cycles; the decision flips at the input-referred offset. Three
passes zoom in (window 12 sigma, then 4 steps, then 4 steps), giving about 1/1000 of the
Pelgrom sigma in resolution. Mismatch: each matched device gets a gate-series source set by
``alter`` to a threshold shift drawn from N(0, A_vt / sqrt(W L)) with the point's seed.

Noise: ngspice's transient noise covers only independent sources, not device noise, so the
input-referred noise comes from a ``.noise`` analysis at the start of the integration phase
(``_netlists.comparator_noise_deck``, sky130 BSIM4 thermal and flicker noise of the input
pair and tail), weighted by the integrate-and-dump transfer of the integration window:
``sigma^2 = int S_in(f) sinc^2(f T_int) df`` over 1 MHz .. 100 GHz, with ``T_int`` the time
the x nodes take to fall by 0.4 V (measured in the transient). Latch-phase noise, divided by
the preamplifier gain, is neglected (Nuzzo et al., TCAS-I 2008).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spicebridge import create_engine

from ._netlists import (
    MISMATCH_DEVICES,
    ComparatorSizing,
    comparator_noise_deck,
    comparator_tb_deck,
    mismatch_source,
)

TB_CYCLES = 40
"""Clock cycles per testbench run."""
V_OD_REF = 1e-3
"""Overdrive at which the decision delay is reported, V."""
X_DROP_V = 0.4
"""Fall of the x nodes that ends the integration phase (about one NMOS threshold), V."""


@dataclass(frozen=True)
class ComparatorResult:
    """SPICE-measured comparator figures of one Monte-Carlo instance.

    Attributes:
        offset_v: Differential input ``v(inp) - v(inn)`` at which the decision flips, V.
        delay_s: Clock edge to ``|o2 - o1| > vdd/2`` at 1 mV overdrive, s.
        energy_j: Supply energy per decision (one clock cycle), J.
        t_int_s: Integration time (x nodes fall by 0.4 V), s.
        kick_q_c: Kickback charge: the offset seen from a floating source of capacitance C
            is ``offset_v + kick_q_c / C``, C (measured with ``c_kick_f`` in series).
    """

    offset_v: float
    delay_s: float
    energy_j: float
    t_int_s: float
    kick_q_c: float = 0.0

    def offset_at_v(self, c_source_f: float) -> float:
        """Offset seen from a source of capacitance ``c_source_f`` (a SAR top plate), V."""
        return self.offset_v + self.kick_q_c / c_source_f


_LOADED: dict[str, object] = {}
_ENGINE: list = []


def shared_engine():
    """This process's one shared engine (one loaded circuit at a time)."""
    if not _ENGINE:
        _ENGINE.append(create_engine("shared"))
    return _ENGINE[0]


def _circuit(deck: str):
    """The loaded testbench of this process (reloaded when another deck was loaded since)."""
    from spicebridge.worker import circuit

    return circuit(("adc-comparator", deck), deck)


def draw_mismatch(sizing: ComparatorSizing, rng: np.random.Generator) -> dict[str, float]:
    """Threshold shifts (V) of the matched devices, Pelgrom sigma from sky130's A_vt."""
    return {d: float(rng.normal(0.0, sizing.sigma_vt_v(d))) for d in MISMATCH_DEVICES}


def _cycles(plot, vdd_v: float, tclk_s: float):
    t = plot["time"]
    k = np.arange(TB_CYCLES)
    t_eval = k * tclk_s + tclk_s / 2
    diff = plot.real("v(co2)") - plot.real("v(co1)")
    dec = np.interp(t_eval + 0.45 * tclk_s, t, diff)
    vd = np.interp(t_eval, t, plot.real("v(inp)") - plot.real("v(inn)"))
    return t, t_eval, diff, dec, vd


def measure_comparator(process: str, vdd_v: float, temp_c: float, sizing: ComparatorSizing,
                       dvt_v: dict[str, float], *, tclk_s: float = 4e-9,
                       c_kick_f: float | None = None) -> ComparatorResult:
    """Offset, delay, energy and integration time of one instance (see module docstring).

    Raises:
        SimulationError: ngspice failed.
        RuntimeError: The decision never flipped inside the search windows.
    """
    deck = comparator_tb_deck(process, vdd_v, temp_c, sizing, tclk_s=tclk_s, cycles=TB_CYCLES)
    circ = _circuit(deck)
    circ.alter("vdd", vdd_v)
    circ.set_temp(temp_c)
    for d in MISMATCH_DEVICES:
        circ.alter(mismatch_source("c", d), dvt_v.get(d, 0.0))
    sigma = float(np.sqrt(sum(sizing.sigma_vt_v(d) ** 2 for d in MISMATCH_DEVICES)))
    circ.alter("cinp", 1e-6)
    offset = _find_flip(circ, vdd_v, tclk_s, sigma, 0.0, (process, vdd_v, temp_c))
    kick = 0.0
    if c_kick_f is not None:
        circ.alter("cinp", c_kick_f)
        off_c = _find_flip(circ, vdd_v, tclk_s, sigma, offset, (process, vdd_v, temp_c))
        kick = (off_c - offset) * c_kick_f
        circ.alter("cinp", 1e-6)
    # delay, energy, integration time around the offset: +-10 * V_OD_REF window
    circ.alter("vofs", offset)
    circ.alter("vspan", 20 * V_OD_REF)
    plot = circ.run()["tran1"]
    t, t_eval, diff, _, vd = _cycles(plot, vdd_v, tclk_s)
    od = np.abs(vd - offset)
    xcm = 0.5 * (plot.real("v(cx1)") + plot.real("v(cx2)"))
    delays, tints = [], []
    for te in t_eval:
        sel = (t >= te) & (t <= te + tclk_s / 2)
        ts = t[sel]
        delays.append(_crossing(ts, np.abs(diff[sel]) - vdd_v / 2) - te)
        tints.append(_crossing(ts, vdd_v - X_DROP_V - xcm[sel]) - te)
    delays, tints = np.asarray(delays), np.asarray(tints)
    near = (od > 0.5 * V_OD_REF) & (od < 2 * V_OD_REF) & np.isfinite(delays)
    if not near.any():
        near = np.isfinite(delays)
    delay = float(np.median(delays[near])) if near.any() else float(tclk_s / 2)
    i_vdd = plot.real("i(vdd)")
    energy = float(-np.trapezoid(i_vdd, t) * vdd_v / TB_CYCLES)
    return ComparatorResult(offset, delay, energy, float(np.nanmedian(tints)), kick)


def _crossing(t: np.ndarray, y: np.ndarray) -> float:
    """First time ``y`` rises through 0, linearly interpolated; NaN if it never does."""
    hit = np.flatnonzero(y > 0)
    if not hit.size:
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(t[0])
    return float(t[i - 1] + (0 - y[i - 1]) / (y[i] - y[i - 1]) * (t[i] - t[i - 1]))


def _find_flip(circ, vdd_v: float, tclk_s: float, sigma: float, center: float,
               where: tuple) -> float:
    """Differential input at which the decision flips: three zooming ramps."""
    span = 12 * sigma
    for attempt in range(8):
        circ.alter("vofs", center)
        circ.alter("vspan", span)
        plot = circ.run()["tran1"]
        _, _, _, dec, vd = _cycles(plot, vdd_v, tclk_s)
        ones = dec > 0
        if ones.all():
            center, span = center - span, span * 2
            continue
        if not ones.any():
            center, span = center + span, span * 2
            continue
        k = int(np.argmax(ones))  # first decision "inp > inn"
        flip = 0.5 * (vd[k - 1] + vd[k]) if k > 0 else vd[0]
        step = span / TB_CYCLES
        if step < sigma / 500 or attempt >= 4:
            return float(flip)
        center, span = flip, 4 * step
    process, vdd_v_, temp_c = where
    raise RuntimeError(f"comparator decision never flipped within +-{span / 2:.3g} V of "
                       f"{center:.3g} V at process={process}, vdd_v={vdd_v_}, "
                       f"temp_c={temp_c} (8 widening ramps)")


_NOISE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def noise_spectrum(process: str, vdd_v: float, temp_c: float, sizing: ComparatorSizing
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Input-referred noise density (V/sqrt(Hz)) and its frequencies, cached per process."""
    deck = comparator_noise_deck(process, vdd_v, temp_c, sizing)
    if deck not in _NOISE:
        res = shared_engine().simulate(deck)
        p = res["noise1"]
        _NOISE[deck] = (p.real("frequency"), p.real("inoise_spectrum"))
    return _NOISE[deck]


def noise_sigma_v(freq_hz: np.ndarray, density: np.ndarray, t_int_s: float) -> float:
    """Input-referred noise sigma of an integrate-and-dump over ``t_int_s``, V."""
    w = np.sinc(freq_hz * t_int_s) ** 2
    return float(np.sqrt(np.trapezoid(density**2 * w, freq_hz)))
