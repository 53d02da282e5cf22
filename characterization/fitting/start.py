"""What a measured I-V loop says before any simulation: start values, bounds, noise.

:func:`loop_features` reads, from the record alone:

- the two branches' small-signal conductances, from straight-line fits to the samples at low
  |V| (each contiguous run of samples with |V| below a quarter of the record's largest |V|
  gives one line; the steepest is the ON branch, the flattest the OFF branch);
- the instrument offsets, from where those two lines cross (an ideal memristor's loop is
  pinched at the origin; offsets move the pinch point to (V_offset, I_offset));
- the switching voltages, from where the branches part: on each excursion the outgoing sweep
  (OFF before a SET, ON before a RESET) and the returning one are compared at the same
  voltage; their ratio equals the low-|V| ratio G_on/G_off until the outgoing sweep starts to
  switch (a read nonlinearity common to both branches, like rram.lib's sinh, cancels); the
  device voltage there (offset and series drop taken out) is the start threshold;
- the time the record spends beyond each threshold and the overdrive there (for rate
  constants that switch the state once within that time);
- the noise of the current, from neighbouring samples: the residual of a 7-point local
  quadratic (Savitzky-Golay) has variance ``2/3 sigma^2`` for white noise, whatever the
  signal's slope and curvature; a running median of it over 31 samples gives the noise of
  each sample, so that noise proportional to the reading is seen too. On a record sampled
  so coarsely that the signal changes faster than a quadratic over 7 samples (a switching
  edge), this overestimates the noise and the verdict is lenient; give the noise
  (``--noise``) then.

Every number carries a note saying how it was found; the notes go into the fit's provenance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import FitError
from .measurement import Measurement

LOW_V_FRACTION = 0.25
"""Samples with |V| below this fraction of the record's largest |V| give the branch slopes."""
DEPART_REL = 0.05
"""A branch 'departs' from a line when it differs by this fraction (and 5 noise sigmas)."""
NOISE_WINDOW = 31


@dataclass(frozen=True)
class LoopFeatures:
    """What the record shows (see module doc). Voltages in V, currents in A, ohms, seconds.

    Attributes:
        v_max, v_min: Largest and smallest applied voltage.
        i_max: Largest |I|.
        g_on, g_off: Small-signal conductance of the ON / OFF branch (device plus series
            resistance), from the low-|V| lines.
        r_on, r_off: Device resistances ``1/g - r_series``.
        r_series: The series resistance taken out (given, not found).
        v_offset, i_offset: The pinch point (0 where the branches are not told apart).
        v_set, v_reset: Device voltages where the branches part (``None``: not seen).
        vd_max, vd_min: Largest and smallest device voltage.
        t_set_s, t_reset_s: Time per excursion spent beyond ``v_set`` / ``v_reset``.
        vd_trace: Device voltage of every sample (pulses included: they drive the device).
        dt_trace: Time each sample stands for (s).
        state0: Fraction of the way from OFF to ON of the record's first branch (0..1, in
            conductance).
        noise_a: Per-sample noise sigma of the current (A).
        noise_rms_a: Median noise sigma (A).
        r_seen: Smallest and largest |V/I| of the record outside pulses (|V| > 5 % of its
            largest, |I| > 0.1 % of its largest), series resistance included.
        notes: Name -> how it was found.
    """

    v_max: float
    v_min: float
    i_max: float
    g_on: float
    g_off: float
    r_on: float
    r_off: float
    r_series: float
    v_offset: float
    i_offset: float
    v_set: float | None
    v_reset: float | None
    vd_max: float
    vd_min: float
    t_set_s: float
    t_reset_s: float
    vd_trace: np.ndarray
    dt_trace: np.ndarray
    state0: float
    noise_a: np.ndarray
    noise_rms_a: float
    r_seen: tuple[float, float] = (0.0, 0.0)
    notes: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        """JSON-able numbers and notes (for provenance)."""
        return {"v_max": self.v_max, "v_min": self.v_min, "i_max": self.i_max,
                "r_on": self.r_on, "r_off": self.r_off, "r_series": self.r_series,
                "v_offset": self.v_offset, "i_offset": self.i_offset,
                "v_set": self.v_set, "v_reset": self.v_reset, "t_set_s": self.t_set_s,
                "t_reset_s": self.t_reset_s, "state0": self.state0,
                "noise_rms_a": self.noise_rms_a, "notes": dict(self.notes)}


def estimate_noise(y: np.ndarray, window: int = NOISE_WINDOW) -> tuple[np.ndarray, float]:
    """Per-sample noise sigma of ``y`` from neighbouring-sample second differences.

    Returns:
        ``(sigma per sample, median sigma)``.
    """
    from scipy.ndimage import median_filter

    y = np.asarray(y, float)
    if y.size < 9:
        return np.zeros_like(y), 0.0
    # residual of a 7-point local quadratic (Savitzky-Golay): the signal's own curvature
    # drops out, white noise leaves var = sigma^2 (1 - 1/3) (the centre weight is 1/3)
    from scipy.signal import savgol_filter

    e = np.abs(y - savgol_filter(y, 7, 2, mode="interp"))
    k = 1.0 / (0.6745 * np.sqrt(2.0 / 3.0))  # MAD of a normal -> sigma
    local = median_filter(e, size=min(window, y.size), mode="nearest") * k
    return local, float(np.median(e) * k)


def record_noise(v: np.ndarray, i: np.ndarray, use: np.ndarray
                 ) -> tuple[np.ndarray, float, str]:
    """Noise of the current outside pulses: :func:`estimate_noise` on each run of at least 9
    samples; in shorter runs at a constant voltage (reads between pulses), the pooled spread
    about each run's mean. Samples inside pulses get the median.

    Returns:
        ``(sigma per sample, median sigma, how it was found)``.
    """
    sig = np.full(i.size, np.nan)
    dev2, dof = 0.0, 0
    short = []
    for run in _runs(use):
        if run.size >= 9:
            sig[run] = estimate_noise(i[run])[0]
        elif run.size >= 2 and np.ptp(v[run]) <= 1e-9 * max(np.max(np.abs(v)), 1e-30):
            dev2 += float(np.sum((i[run] - i[run].mean()) ** 2))
            dof += run.size - 1
            short.append(run)
    hows = []
    if np.isfinite(sig).any():
        hows.append("neighbouring samples: residual of a 7-point local quadratic, running "
                    f"median over {NOISE_WINDOW} samples")
    if dof:
        pooled = float(np.sqrt(dev2 / dof))
        for run in short:
            sig[run] = pooled
        hows.append(f"spread of the {len(short)} constant-voltage reads about their means")
    if not np.isfinite(sig).any():  # nothing to go on but the whole trace
        s_all, med = estimate_noise(i)
        return s_all, med, ("whole trace, across pulse edges (unreliable: give --noise): "
                            "residual of a 7-point local quadratic")
    med = float(np.nanmedian(sig[use])) if np.isfinite(sig[use]).any() else float(
        np.nanmedian(sig))
    sig = np.where(np.isfinite(sig), sig, med)
    return sig, med, "; ".join(hows)


def _runs(mask: np.ndarray) -> list[np.ndarray]:
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(idx) > 1) + 1
    return np.split(idx, cuts)


def _parting(v: np.ndarray, i: np.ndarray, use: np.ndarray, sign: int, thr: float,
             i_offset: float, sig: np.ndarray, r0: float, after: int) -> int | None:
    """Index of the first sample of the first excursion of polarity ``sign`` (from sample
    ``after`` on) where the outgoing and the returning sweep part: the ON current falls below
    ``r0`` times the OFF current at the same voltage (less ``DEPART_REL`` and 3 sigma).

    SET (sign +1): the outgoing sweep is OFF and switches, the return is ON. RESET (-1): the
    outgoing sweep is ON and switches, the return is OFF.
    """
    sv = sign * v
    for run in _runs(use & (sv >= thr) & (np.arange(v.size) >= after)):
        if run.size < 4:
            continue
        top = int(run[np.argmax(sv[run])])
        out = run[run <= top]
        back = run[run >= top]
        if out.size < 2 or back.size < 2:
            continue
        order = np.argsort(sv[back])
        xb, ib = sv[back][order], sign * (i[back][order] - i_offset)
        inside = (sv[out] >= xb[0]) & (sv[out] <= xb[-1])
        io = sign * (i[out] - i_offset)
        ir = np.interp(sv[out], xb, ib)
        on, off = (ir, io) if sign > 0 else (io, ir)
        noise = 3 * sig[out] * np.sqrt(1 + r0 ** 2)
        parted = inside & (on < r0 * off * (1 - DEPART_REL) - noise)
        hit = np.flatnonzero(parted)
        return int(out[hit[0]]) if hit.size else None
    return None


def loop_features(m: Measurement, *, r_series: float = 0.0,
                  v_offset: float | None = None, i_offset: float | None = None,
                  noise_a: float | None = None) -> LoopFeatures:
    """Read start values off a measured record (see module doc).

    Args:
        m: The record.
        r_series: Known series resistance (sense resistor, probe), ohm; taken out of the
            branch resistances and the device voltage.
        v_offset, i_offset: Known instrument offsets (``None``: from the pinch point).
        noise_a: Known current noise sigma (``None``: from the record).

    Raises:
        FitError: The record has no low-|V| samples to read a branch slope from, or the
            series resistance is larger than the record's smallest resistance.
    """
    notes: dict[str, str] = {}
    use = ~np.asarray(m.pulse, bool)
    t, v, i = m.time_s, m.v_v, m.i_a
    vabs = float(np.max(np.abs(v)))
    if vabs <= 0:
        raise FitError("the record's voltage is 0 everywhere: nothing to fit")
    i_max = float(np.max(np.abs(i)))
    thr = LOW_V_FRACTION * vabs
    lines = []  # (g, c, run)
    for run in _runs(use & (np.abs(v) < thr)):
        if run.size < 5 or np.ptp(v[run]) < 0.3 * thr:
            continue
        g, c = np.polyfit(v[run], i[run], 1)
        lines.append((float(g), float(c), run))
    # resistances the record shows at all (|V| above 5 % of its largest, |I| well above 0)
    ratio = np.abs(v / np.where(i != 0, i, np.nan))
    i_use = float(np.max(np.abs(i[use]))) if use.any() else i_max
    seen = use & (np.abs(v) > 0.05 * vabs) & (np.abs(i) > 1e-3 * i_use) & np.isfinite(ratio)
    r_seen = (float(np.min(ratio[seen])), float(np.max(ratio[seen]))) if seen.any() else None
    if not lines and r_seen is not None:  # reads between pulses, say: no sweep through 0
        notes["r_on"] = notes["r_off"] = (
            f"no run of >= 5 samples with |V| < {thr:.3g} V spanning {0.3 * thr:.3g} V: the "
            "smallest / largest |V/I| of the record")
        lines = [(1.0 / r_seen[0], 0.0, np.array([-1])), (1.0 / r_seen[1], 0.0, np.array([-1]))]
    if not lines:
        raise FitError(f"no run of at least 5 samples with |V| < {thr:.3g} V "
                       f"({LOW_V_FRACTION:.0%} of the largest |V|) spanning {0.3 * thr:.3g} V: "
                       "cannot read the branch resistances; give start values (--start)")
    pos = [x for x in lines if x[0] > 0]
    if not pos:
        raise FitError("every low-|V| branch has a negative slope: check the sign of the "
                       "current column (current into the top electrode)")
    on = max(pos, key=lambda x: x[0])
    off = min(pos, key=lambda x: x[0])
    g_on, g_off = on[0], off[0]
    notes.setdefault("r_on", f"steepest low-|V| branch (|V| < {thr:.3g} V, {len(lines)} "
                     f"branch(es)): 1/{g_on:.4g} S")
    notes.setdefault("r_off", f"flattest low-|V| branch: 1/{g_off:.4g} S")
    if v_offset is None or i_offset is None:
        if g_on > 1.2 * g_off:
            vx = (off[1] - on[1]) / (g_on - g_off)
            vx = float(np.clip(vx, -0.5 * thr, 0.5 * thr))
            ix = g_on * vx + on[1]
            how = "where the ON and OFF low-|V| lines cross (the loop's pinch point)"
        else:
            vx, ix = 0.0, float(np.mean([x[1] for x in lines]))
            how = "branches not told apart: V offset 0, I offset the mean intercept"
        if v_offset is None:
            v_offset = vx
            notes["v_offset"] = how
        if i_offset is None:
            i_offset = ix
            notes["i_offset"] = how
    for name, val in (("v_offset", v_offset), ("i_offset", i_offset)):
        notes.setdefault(name, f"given: {val:g}")
    r_min_tot = 1.0 / g_on
    if r_series >= r_min_tot:
        raise FitError(f"the series resistance {r_series:g} ohm is not below the record's "
                       f"smallest resistance {r_min_tot:.4g} ohm (steepest low-|V| branch)")
    r_on = r_min_tot - r_series
    r_off = max(1.0 / g_off - r_series, r_on)
    if r_series:
        notes["r_on"] += f" minus the series {r_series:g} ohm"
        notes["r_off"] += f" minus the series {r_series:g} ohm"

    if noise_a is None:
        sig, sig_med, how = record_noise(v, i, use)
        notes["noise"] = how
    else:
        sig, sig_med = np.full(i.size, float(noise_a)), float(noise_a)
        notes["noise"] = f"given: {noise_a:g} A"

    vd = (v - v_offset) - (i - i_offset) * r_series
    # extremes and time beyond the thresholds over every sample: pulses are not fitted, but
    # they drive the device (a pulse train switches only in its pulses)
    vd_max, vd_min = float(np.max(vd)), float(np.min(vd))
    r0 = g_on / g_off
    k_set = _parting(v, i, use, +1, thr, i_offset, sig, r0, after=0)
    v_set = float(vd[k_set]) if k_set is not None else None
    how = (f"device voltage where the rising positive sweep parts from the falling one: their "
           f"ratio leaves the low-|V| ratio {r0:.3g} by {DEPART_REL:.0%} and 3 noise sigmas "
           "(a read nonlinearity shared by both branches cancels)")
    notes["v_set"] = how if k_set is not None else "no SET seen (the branches never part)"
    k_reset = _parting(v, i, use, -1, thr, i_offset, sig, r0,
                       after=k_set if k_set is not None else 0)
    v_reset = float(vd[k_reset]) if k_reset is not None else None
    notes["v_reset"] = (how.replace("rising positive", "falling negative").replace(
        "the falling one", "the rising one") if k_reset is not None else
        "no RESET seen (the branches never part)")

    dt = np.gradient(t)
    t_set = t_reset = 0.0
    if v_set is not None and v_set > 0:
        beyond = vd > v_set
        t_set = float(np.sum(dt[beyond])) / max(len(_runs(beyond)), 1)
    if v_reset is not None and v_reset < 0:
        beyond = vd < v_reset
        t_reset = float(np.sum(dt[beyond])) / max(len(_runs(beyond)), 1)
    vd_trace = vd
    first = lines[0] if 0 <= lines[0][2][0] <= 5 else None
    if first is not None and g_on > 1.2 * g_off:
        state0 = float(np.clip((first[0] - g_off) / (g_on - g_off), 0.0, 1.0))
        notes["state0"] = "the record's first low-|V| branch, between the OFF and ON slopes"
        if state0 < 0.05 or state0 > 0.95:  # on (or within 5 % of) an end branch: that state
            state0 = float(round(state0))
            notes["state0"] = (f"the record starts on the {'ON' if state0 else 'OFF'} branch "
                               "(its first low-|V| slope within 5 % of it)")
    else:
        state0 = 0.0
        notes["state0"] = "the record does not start on a low-|V| branch: assumed OFF"
    return LoopFeatures(
        v_max=float(np.max(v)), v_min=float(np.min(v)), i_max=i_max, g_on=g_on, g_off=g_off,
        r_on=r_on, r_off=r_off, r_series=r_series, v_offset=float(v_offset),
        i_offset=float(i_offset), v_set=v_set, v_reset=v_reset, vd_max=vd_max, vd_min=vd_min,
        t_set_s=t_set, t_reset_s=t_reset, vd_trace=vd_trace, dt_trace=dt, state0=state0,
        noise_a=sig, noise_rms_a=sig_med, r_seen=r_seen or (r_on, r_off), notes=notes)
