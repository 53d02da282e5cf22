"""Sampling front end in SPICE: charge injection, gain, kT/C noise, settling, drive energy.

The SAR's switches are sky130 transistors (``_netlists.frontend_lines``: a transmission gate
from the top plate to vcm, and per bottom plate a transmission gate to vin plus an NMOS to
ground and an NMOS to vref; widths scale with the capacitance served, ``SwitchSizing``). The
sampler testbench (``_netlists.sampler_deck``: every resolution's front end on one input,
one load per process and supply, ``option temp`` per temperature) samples inputs across the
full scale with the SAR's timing and holds a known code on the bottom plates; from it:

* **pedestal and gains**: the held residue is fitted as
  ``v(top) - vcm = a + k_dac Q vref / C_T - k_in vin C_s / C_T`` (``Q = sum b_i C_i``);
  ``a`` is the top switch's charge injection and clock feed-through (signal independent,
  since the top plate opens first), ``k_in / k_dac - 1`` the input gain error (switch and
  junction capacitances on the top plate, incomplete tracking);
* **sampled noise**: ``.noise`` at the sampling phase's operating point, output the frozen
  top-plate charge over C_T, integrated over 10 kHz .. 1 THz; the physical floor is
  ``sqrt(kT / C_T)``, and the sky130 switch noise gives about that (reported as a ratio);
* **settling**: time constants of the tracking (top-plate charge) and of the DAC's
  bottom-plate drivers (held residue), from the transients;
* **drive energy** per sample: gate charge of the sampling switches (``vdd`` times the
  charging current of each gate), the charge the input driver sources (``vdd`` times it: a
  driver on vdd that only sources, an assumption), and the gate charge per switching event
  of each bottom-plate driver (the boosted vref switches' at ``vdd + vref``).

The comparator is not in this testbench: its input capacitance and kickback are in the
comparator characterization (``comparator.measure_comparator``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._netlists import (
    SAMPLING_GATES,
    SwitchSizing,
    fe_node,
    rising_charge,
    sampler_deck,
    sampler_schedule,
    sampler_sfx,
    window_charge,
)

K_B = 1.380649e-23
NOISE_ANALYSIS = "noise v(nq{sfx}) vin dec 20 1e4 1e12"
DAC_GATE_EVENTS = (1.5, 1.0)
"""Charging events per conversion of a bit's driver gates (NMOS to ground, NMOS to vref) in
the SAR: the ground switch's gate charges when sampling ends (the bit is 0 until its trial)
and again when the trial is rejected (probability 1/2); the vref switch's gate charges once,
at the bit's trial."""


@dataclass(frozen=True)
class SamplingResult:
    """SPICE-extracted sampling front end of one resolution at one PVT point.

    Attributes:
        bits: Resolution.
        pedestal_v: Top-plate residue offset ``a`` (charge injection + feed-through), V.
        k_in: Input gain of the held residue (ideal 1).
        k_dac: DAC gain of the held residue (ideal 1).
        fit_rms_v: RMS residual of the residue fit, V.
        noise_top_v: Sampled noise sigma of the frozen top-plate charge / C_T, V.
        ktc_v: ``sqrt(kT / C_T)`` of the nominal capacitors, V.
        tau_track_s: Tracking time constant (top-plate charge while sampling), s.
        tau_dac_s: Bottom-plate driver time constant (residue after sampling), s.
        e_input_j: Input-driver energy per sample, J.
        e_gate_sampling_j: Sampling-switch gate energy per sample, J.
        e_gate_dac_j: Bottom-plate driver gate energy per conversion (``DAC_GATE_EVENTS``), J.
        c_s_f: Sampling capacitance, F.
        c_t_f: Total top-plate capacitance (nominal capacitors), F.
        interpolated: Not simulated at this resolution: interpolated between the simulated
            neighbours (``interpolate``).
    """

    bits: int
    pedestal_v: float
    k_in: float
    k_dac: float
    fit_rms_v: float
    noise_top_v: float
    ktc_v: float
    tau_track_s: float
    tau_dac_s: float
    e_input_j: float
    e_gate_sampling_j: float
    e_gate_dac_j: float
    c_s_f: float
    c_t_f: float
    interpolated: bool = False

    @property
    def gain_error(self) -> float:
        """Input gain relative to the DAC's, minus 1."""
        return self.k_in / self.k_dac - 1.0

    @property
    def noise_in_v(self) -> float:
        """Sampled noise referred to the ADC input, V."""
        return self.noise_top_v * self.c_t_f / (self.k_in * self.c_s_f)

    @property
    def e_drive_j(self) -> float:
        """Sampling and switch drive energy per conversion, J."""
        return self.e_input_j + self.e_gate_sampling_j + self.e_gate_dac_j


def nominal_front(bits: int, c_unit_f: float, c_par_rel: float
                  ) -> tuple[list[float], float, float]:
    """Nominal (mismatch-free) capacitors of a resolution: (caps, dummy, c_par)."""
    caps = [c_unit_f * 2**i for i in range(bits)]
    c_s = float(sum(caps) + c_unit_f)
    return caps, c_unit_f, c_par_rel * c_s


def _tau(t: np.ndarray, e: np.ndarray) -> float:
    """Time constant of a decaying error ``e >= 0``: between its 1/e and 1/e^3 points."""
    if e.size < 3 or not e[0] > 0:
        return float("nan")
    lv = np.log(np.maximum(e, 1e-30) / e[0])
    i1 = np.flatnonzero(lv < -1.0)
    i3 = np.flatnonzero(lv < -3.0)
    if not i1.size or not i3.size:
        return float("nan")
    return float((t[i3[0]] - t[i1[0]]) / 2.0)


def interpolate(lo: SamplingResult, hi: SamplingResult, bits: int, c_s_f: float,
                c_t_f: float, temp_c: float) -> SamplingResult:
    """A resolution between two simulated ones. The switch widths scale with the capacitors,
    so the voltages, gains and time constants are interpolated linearly in ``bits``, the
    noise as its ratio to ``sqrt(kT/C_T)`` and the energies per farad of C_s."""
    w = (bits - lo.bits) / (hi.bits - lo.bits)

    def lin(name: str) -> float:
        return (1 - w) * getattr(lo, name) + w * getattr(hi, name)

    ktc = float(np.sqrt(K_B * (temp_c + 273.15) / c_t_f))
    ratio = (1 - w) * lo.noise_top_v / lo.ktc_v + w * hi.noise_top_v / hi.ktc_v

    def per_f(name: str) -> float:
        return c_s_f * ((1 - w) * getattr(lo, name) / lo.c_s_f
                        + w * getattr(hi, name) / hi.c_s_f)

    return SamplingResult(
        bits=bits, pedestal_v=lin("pedestal_v"), k_in=lin("k_in"), k_dac=lin("k_dac"),
        fit_rms_v=lin("fit_rms_v"), noise_top_v=ratio * ktc, ktc_v=ktc,
        tau_track_s=lin("tau_track_s"), tau_dac_s=lin("tau_dac_s"),
        e_input_j=per_f("e_input_j"), e_gate_sampling_j=per_f("e_gate_sampling_j"),
        e_gate_dac_j=per_f("e_gate_dac_j"), c_s_f=c_s_f, c_t_f=c_t_f, interpolated=True)


_CACHE: dict[tuple, dict[int, SamplingResult]] = {}


def measure_sampling(process: str, vdd_v: float, temp_c: float, bits_list: list[int], *,
                     c_unit_f: float, c_par_rel: float, vref_v: float,
                     sw: SwitchSizing | None = None, tclk_s: float = 4e-9,
                     vcm_rel: float = 0.6, simulate_bits: list[int] | None = None
                     ) -> dict[int, SamplingResult]:
    """Sampling front ends of every resolution at one PVT point (cached per PVT point; one
    loaded deck per process and supply, the temperature set by ``option temp``).

    ``simulate_bits`` (default: all of ``bits_list``): the resolutions put in the deck (the
    lowest and highest of ``bits_list`` always are); the others are interpolated between
    simulated neighbours (``interpolate``).

    Raises:
        SimulationError: ngspice failed.
    """
    from spicebridge.worker import circuit

    sw = sw or SwitchSizing()
    bits_list = sorted({int(b) for b in bits_list})
    sim = sorted({int(b) for b in (simulate_bits or bits_list) if int(b) in bits_list}
                 | {bits_list[0], bits_list[-1]})
    key = (process, float(vdd_v), float(temp_c), tuple(bits_list), tuple(sim), c_unit_f,
           c_par_rel, vref_v, sw, tclk_s, vcm_rel)
    if key in _CACHE:
        return _CACHE[key]
    fronts = {b: nominal_front(b, c_unit_f, c_par_rel) for b in sim}
    hold = 1
    deck = sampler_deck(process, vdd_v, 27.0, sw, fronts=fronts, vref_v=vref_v, tclk_s=tclk_s,
                        hold_cycles=hold, vcm_rel=vcm_rel)
    circ = circuit(("adc-sampler", deck), deck)
    circ.set_temp(temp_c)
    plot = circ.run()["tran1"]
    noise = {}
    for b in sim:
        p = circ.run(NOISE_ANALYSIS.format(sfx=sampler_sfx(b)))["noise1"]
        f, d = p.real("frequency"), p.real("onoise_spectrum")
        noise[b] = float(np.sqrt(np.trapezoid(d**2, f)))
    out = {b: _read_one(plot, b, fronts[b], noise[b], vdd_v, vref_v, temp_c, tclk_s, hold,
                        vcm_rel) for b in sim}
    for b in bits_list:
        if b not in out:
            lo, hi = max(x for x in sim if x < b), min(x for x in sim if x > b)
            caps, dummy, c_par = nominal_front(b, c_unit_f, c_par_rel)
            c_s = float(sum(caps) + dummy)
            out[b] = interpolate(out[lo], out[hi], b, c_s, c_s + c_par, temp_c)
    out = {b: out[b] for b in bits_list}
    _CACHE[key] = out
    return out


def _read_one(plot, bits: int, front: tuple[list[float], float, float], noise_top_v: float,
              vdd_v: float, vref_v: float, temp_c: float, tclk_s: float, hold: int,
              vcm_rel: float) -> SamplingResult:
    caps, dummy, c_par = front
    c_s = float(sum(caps) + dummy)
    c_t = c_s + c_par
    sfx = sampler_sfx(bits)
    vins, codes = sampler_schedule(bits, vref_v)
    m = len(vins)
    slot = (1 + hold) * tclk_s
    t = plot["time"]
    top = plot.real(f"v({fe_node('top', sfx)})")
    nq = plot.real(f"v(nq{sfx})")
    vcm = vcm_rel * vdd_v
    # held residues at the end of each slot -> pedestal, DAC gain, input gain
    t_end = (np.arange(m) + 1) * slot - 0.05 * tclk_s
    res = np.interp(t_end, t, top) - vcm
    q = np.array([sum(c for i, c in enumerate(caps) if k >> i & 1) for k in codes])
    a_mat = np.column_stack([np.ones(m), q * vref_v / c_t, -np.asarray(vins) * c_s / c_t])
    coef, *_ = np.linalg.lstsq(a_mat, res, rcond=None)
    fit_rms = float(np.sqrt(np.mean((a_mat @ coef - res) ** 2)))
    # settling: tracking (charge while sampling), DAC drivers (residue while holding)
    tr = 100e-12
    taus_track, taus_dac = [], []
    for k in range(1, m):
        t0 = k * slot
        s = (t >= t0 + tr) & (t <= t0 + tclk_s)
        taus_track.append(_tau(t[s], np.abs(nq[s] - nq[s][-1])))
        t1 = t0 + tclk_s + 300e-12 + tr
        s = (t >= t1) & (t <= t0 + slot - 0.05 * tclk_s)
        taus_dac.append(_tau(t[s], np.abs(top[s] - top[s][-1])))
    # energies: samples 1..m/2 start from the previous input's final code (SAR-like)
    half = m // 2
    sel = (t >= slot) & (t <= (half + 1) * slot)
    i_in = plot.real(f"i(vsin{sfx})")
    e_in = vdd_v * float(np.mean([max(window_charge(t, i_in, k * slot, k * slot + tclk_s
                                                    + 300e-12 + 2 * tr), 0.0)
                                  for k in range(1, half + 1)]))
    def rq(g: str, s: np.ndarray | slice = slice(None)) -> float:
        return rising_charge(t[s], plot.real(f"i(vs{g})")[s], plot.real(f"v({g})")[s])

    e_gs = vdd_v * sum(rq(f"{g}{sfx}", sel) for g in (*SAMPLING_GATES, "gdd")) / half
    # bottom-plate drivers: gate charge per charging event (module docstring), x SAR counts
    e_dac = 0.0
    for i in range(bits):
        bit = np.array([k >> i & 1 for k in codes])
        n_ev_n = int(np.sum(bit == 0))  # ground NMOS gate charges when sampling ends, bit 0
        n_ev_r = int(np.sum(bit == 1))  # vref NMOS gate charges when sampling ends, bit 1
        e_dac += vdd_v * (DAC_GATE_EVENTS[0] * (rq(f"gn{sfx}{i}") / n_ev_n if n_ev_n
                                                else np.nan)
                          + DAC_GATE_EVENTS[1] * (vdd_v + vref_v) / vdd_v
                          * (rq(f"gr{sfx}{i}") / n_ev_r if n_ev_r else np.nan))
    return SamplingResult(
        bits=bits, pedestal_v=float(coef[0]), k_dac=float(coef[1]), k_in=float(coef[2]),
        fit_rms_v=fit_rms, noise_top_v=noise_top_v,
        ktc_v=float(np.sqrt(K_B * (temp_c + 273.15) / c_t)),
        tau_track_s=float(np.nanmedian(taus_track)), tau_dac_s=float(np.nanmedian(taus_dac)),
        e_input_j=e_in, e_gate_sampling_j=e_gs, e_gate_dac_j=e_dac, c_s_f=c_s, c_t_f=c_t)
