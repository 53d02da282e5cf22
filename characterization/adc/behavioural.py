"""Behavioural charge-redistribution SAR ADC driven by SPICE-extracted parameters.

The model is the same circuit as the SPICE SAR (``characterization.adc._sar``): top-plate
sampling on a binary-weighted capacitive DAC with a dummy unit capacitor and a top-plate
parasitic, bottom plates switched between 0 and ``vref``, a comparator deciding
``cmp = 1`` when ``v(vcm) - v(top) > offset + noise``. After sampling, the top plate sits at

    v(top) - vcm = (sum_i C_i b_i vref - vin * C_s) / C_T,

with ``C_s = sum_i C_i + C_dummy`` and ``C_T = C_s + C_par``. Hence the decision at trial
code ``t`` is ``vin > (sum_i C_i t_i vref + offset * C_T) / C_s``. An ideal DAC and comparator
give transitions at ``k * vref / 2^N`` (a floor quantizer: thresholds at k LSB, not k - 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr


@dataclass(frozen=True)
class SarInstance:
    """One Monte-Carlo instance of the SAR ADC.

    Attributes:
        bits: Resolution N.
        caps_f: Bit capacitors C_0 (LSB) .. C_{N-1} (MSB), F.
        c_dummy_f: Dummy (termination) unit capacitor, F (bottom plate at 0).
        c_par_f: Top-plate parasitic to ground, F.
        vref_v: Reference voltage = full scale, V.
        offset_v: Comparator threshold at its input, ``v(vcm) - v(top)`` at which the
            decision flips, V (SPICE Monte Carlo).
        noise_v: Input-referred comparator noise sigma, V (SPICE ``.noise``).
        pedestal_v: Top-plate residue offset of the sampling switches (charge injection and
            clock feed-through), V (SPICE sampler testbench, ``sampling.py``).
        k_in: Gain of the sampled input in the held residue (ideal 1; SPICE).
        k_dac: Gain of the DAC charge in the held residue (ideal 1; SPICE).
        sample_noise_v: Sampled (kT/C) noise sigma referred to the input, V, drawn once
            per conversion (SPICE ``.noise`` of the sampling phase).

    With the sampling front end, ``v(top) - vcm = pedestal + k_dac Q vref / C_T -
    k_in vin C_s / C_T``, so trial code ``t`` is kept when
    ``vin > (k_dac Q vref + (offset + pedestal) C_T) / (k_in C_s)``.
    """

    bits: int
    caps_f: np.ndarray
    c_dummy_f: float
    c_par_f: float
    vref_v: float
    offset_v: float = 0.0
    noise_v: float = 0.0
    pedestal_v: float = 0.0
    k_in: float = 1.0
    k_dac: float = 1.0
    sample_noise_v: float = 0.0

    @property
    def c_s(self) -> float:
        """Sampling capacitance (all DAC capacitors), F."""
        return float(np.sum(self.caps_f) + self.c_dummy_f)

    @property
    def c_t(self) -> float:
        """Total top-plate capacitance, F."""
        return self.c_s + self.c_par_f

    @property
    def lsb_v(self) -> float:
        """Ideal LSB, V."""
        return self.vref_v / 2**self.bits

    def levels_v(self, trial_codes: np.ndarray) -> np.ndarray:
        """Input level at which the comparator flips for a trial code, V."""
        t = np.asarray(trial_codes, dtype=np.int64)
        bitsv = (t[..., None] >> np.arange(self.bits)) & 1
        q = bitsv @ np.asarray(self.caps_f)
        return ((self.k_dac * q * self.vref_v + (self.offset_v + self.pedestal_v) * self.c_t)
                / (self.k_in * self.c_s))

    def convert(self, vin_v: np.ndarray, rng: np.random.Generator | None = None
                ) -> np.ndarray:
        """Output codes for inputs ``vin_v`` (noise drawn from ``rng`` when given)."""
        vin = np.asarray(vin_v, dtype=float)
        if rng is not None and self.sample_noise_v > 0:
            vin = vin + rng.normal(0.0, self.sample_noise_v, vin.shape)
        code = np.zeros(vin.shape, dtype=np.int64)
        for b in range(self.bits - 1, -1, -1):
            trial = code | (1 << b)
            margin = vin - self.levels_v(trial)
            if rng is not None and self.noise_v > 0:
                margin = margin + rng.normal(
                    0.0, self.noise_v * self.c_t / (self.k_in * self.c_s), vin.shape)
            code = np.where(margin > 0, trial, code)
        return code

    def thresholds_v(self, points_per_lsb: int = 256) -> np.ndarray:
        """Noise-free transition levels T_1 .. T_{2^N-1}, V, by code density on a fine ramp.

        For a monotonic converter this equals the comparator level of trial code k; the code
        density definition also holds for non-monotonic ones (missing codes give equal
        neighbouring transitions).
        """
        levels = 2**self.bits
        margin = (4 + abs(self.offset_v + self.pedestal_v) * self.c_t
                  / (self.k_in * self.c_s) / self.lsb_v
                  + abs(self.k_dac / self.k_in - 1) * 2**self.bits)
        lo, hi = -margin * self.lsb_v, (levels + margin) * self.lsb_v
        npts = int((hi - lo) / self.lsb_v * points_per_lsb)
        step = (hi - lo) / npts
        vin = lo + (np.arange(npts) + 0.5) * step
        codes = self.convert(vin)
        below = np.bincount(codes, minlength=levels).cumsum()[:-1]
        t = lo + below * step
        # refine monotonic transitions to the exact comparator level
        exact = self.levels_v(np.arange(1, levels))
        close = np.abs(exact - t) <= step
        return np.where(close, exact, t)

    def decision_margins_v(self, vin_v: np.ndarray) -> np.ndarray:
        """Comparator input at each bit decision along the noise-free path, V.

        Returns an array (..., bits), MSB decision first: ``v(vcm) - v(top) - offset``.
        """
        vin = np.asarray(vin_v, dtype=float)
        code = np.zeros(vin.shape, dtype=np.int64)
        out = []
        for b in range(self.bits - 1, -1, -1):
            trial = code | (1 << b)
            m = vin - self.levels_v(trial)
            out.append(m * self.k_in * self.c_s / self.c_t)
            code = np.where(m > 0, trial, code)
        return np.stack(out, axis=-1)

    def decision_error(self, points_per_code: int = 32) -> np.ndarray:
        """P(output code != noise-free code) per code 0 .. 2^N - 1.

        Input uniform over each code's bin (from this instance's noise-free thresholds; the
        end bins are taken one LSB wide). A SAR without redundancy cannot recover from a wrong
        decision, so P(correct) = prod_j Phi(|margin_j| / sigma) over its bit decisions.
        """
        t = self.thresholds_v()
        edges = np.concatenate([[t[0] - self.lsb_v], t, [t[-1] + self.lsb_v]])
        u = (np.arange(points_per_code) + 0.5) / points_per_code
        vin = edges[:-1, None] + (edges[1:] - edges[:-1])[:, None] * u
        if self.noise_v <= 0:
            return np.zeros(2**self.bits)
        m = np.abs(self.decision_margins_v(vin))
        p_ok = np.prod(ndtr(m / self.noise_v), axis=-1)
        return 1.0 - p_ok.mean(axis=-1)

    def reference_energy_j(self, vin_v: np.ndarray) -> np.ndarray:
        """Energy drawn from ``vref`` per conversion by the DAC switching, J.

        Sum over the switching events (first trial after sampling, each later trial, and the
        final code) of ``vref * dQ``, the charge into the bottom plates tied to ``vref``.
        """
        vin = np.asarray(vin_v, dtype=float)
        caps = np.asarray(self.caps_f)
        nb = self.bits
        vcm = 0.0  # energy is independent of the common mode; take it as 0

        def top(bvec: np.ndarray) -> np.ndarray:
            return vcm + (bvec @ caps * self.vref_v - vin * self.c_s) / self.c_t

        prev_bot = np.repeat(vin[..., None], nb, axis=-1)
        prev_top = np.full(vin.shape, vcm)
        code = np.zeros(vin.shape, dtype=np.int64)
        energy = np.zeros(vin.shape)
        states = []
        for b in range(nb - 1, -1, -1):
            trial = code | (1 << b)
            states.append(trial)
            keep = vin - self.levels_v(trial) > 0
            code = np.where(keep, trial, code)
        states.append(code)
        for s in states:
            bvec = ((s[..., None] >> np.arange(nb)) & 1).astype(float)
            vt = top(bvec)
            bot = bvec * self.vref_v
            dq = np.sum(bvec * caps * ((bot - vt[..., None]) - (prev_bot - prev_top[..., None])),
                        axis=-1)
            energy += self.vref_v * dq
            prev_bot, prev_top = bot, vt
        return energy

    def sampling_energy_j(self, vin_v: np.ndarray, vin_prev_v: np.ndarray, vdd_v: float
                          ) -> np.ndarray:
        """Energy drawn from ``vdd`` by the input driver when sampling ``vin_v``, J.

        Before sampling, the previous conversion (input ``vin_prev_v``) left the bottom plates
        at its final code ``b_i vref`` and the top plate at its residual ``r`` (relative to
        vcm); sampling ties every bottom plate (and the dummy) to ``vin`` and the top plate
        to vcm. The net charge into the bottom plates is ``Q = C_s (vin + r) - vref sum C_i
        b_i``; a driver supplied from ``vdd`` that only sources charge draws ``vdd max(Q, 0)``
        (an assumption about the driver; the switches' gate drive is not included).
        """
        vin = np.asarray(vin_v, dtype=float)
        prev = np.broadcast_to(np.asarray(vin_prev_v, dtype=float), vin.shape)
        code = self.convert(prev)
        bvec = ((code[..., None] >> np.arange(self.bits)) & 1).astype(float)
        q_bits = bvec @ np.asarray(self.caps_f)
        resid = (q_bits * self.vref_v - prev * self.c_s) / self.c_t
        q = self.c_s * (vin + resid) - self.vref_v * q_bits
        return vdd_v * np.maximum(q, 0.0)


def draw_caps(bits: int, c_unit_f: float, sigma_unit_rel: float, rng: np.random.Generator
              ) -> tuple[np.ndarray, float]:
    """Binary-weighted capacitors built of unit capacitors with independent mismatch.

    Bit ``i`` is ``2^i`` units in parallel, so its relative sigma is ``sigma_unit/sqrt(2^i)``
    (Pelgrom: ``sigma_unit = A_C / sqrt(C_unit)``).

    Returns:
        (caps LSB first, dummy capacitor), F.
    """
    units = 2.0 ** np.arange(bits)
    caps = c_unit_f * (units + np.sqrt(units) * sigma_unit_rel * rng.standard_normal(bits))
    dummy = c_unit_f * (1 + sigma_unit_rel * rng.standard_normal())
    return caps, float(dummy)
