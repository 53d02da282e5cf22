"""Column ADC acting on integer column sums, ideal or from the characterized circuit.

In the RAP crossbar the column current of one conversion is an integer number ``s`` of unit
cell currents (``0 <= s <= s_max``). Because the input of the ADC is discrete, the circuit's
ADC (per-instance code-transition thresholds in LSB plus input-referred Gaussian noise, from
``hw.adc(bits)``) is fully described by a categorical distribution ``P(code | s, instance)``.
It is tabulated once (offline, in float64) as integer cumulative thresholds in Q30; at run
time a conversion is one uniform integer draw and integer comparisons, so the RAP path stays
integer-only even with the circuit's ADC.

Input scaling: the ADC's LSB equals ``2**shift`` unit currents (``shift = 0`` when the
resolution resolves every sum exactly, as in RAP's sparse MVM). The ideal transition level of
code ``k`` is ``k + c0`` LSB (``c0 = -0.5`` for a rounding ADC, ``0`` for a truncating one;
from the model's ``code_offset``, else inferred from the thresholds), and a sum ``s`` is
presented at ``s / 2**shift + c0 + 0.5`` LSB: the middle of its ideal code bin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import ndtr
from torch import Tensor

from .intops import shift_round

_I64 = torch.int64
Q = 30
"""Fixed-point bits of the tabulated probabilities."""


@dataclass(eq=False)
class ColumnADC:
    """A ``bits``-bit column ADC on integer column sums (see the module docstring).

    Attributes:
        bits: resolution.
        shift: the LSB is ``2**shift`` unit cell currents.
        s_max: largest column sum presented.
        n_instances: number of characterized ADC instances (columns draw one each).
        energy_j: energy per conversion (``None`` for the ideal ADC: not characterized).
        conversion_time_s: time per conversion (``None`` for the ideal ADC).
        source: ``"ideal"`` or ``"circuit"``.
        mode_code, lo, hi, cdf: exact Q30 sampler tables; ``None`` when ideal.
        qtable, q_bits: quantile table of the fast sampler (``2**q_bits`` equiprobable slots
            per (instance, sum)); ``None`` selects the exact sampler.
        certain: per (instance, sum) the code when it has probability 1 in Q30 (every
            threshold farther than about 6 sigma of noise from the sum), else -1: the fused
            sampler draws only where a sum can be mis-converted.
        uncertain_fraction: fraction of (instance, sum) entries that are not certain; above
            one half the fused sampler draws every conversion (same distribution, cheaper
            than picking most of them out).
    """

    bits: int
    shift: int
    s_max: int
    n_instances: int = 1
    energy_j: float | None = None
    conversion_time_s: float | None = None
    source: str = "ideal"
    mode_code: Tensor | None = None
    lo: Tensor | None = None
    hi: Tensor | None = None
    cdf: Tensor | None = None
    qtable: Tensor | None = None
    q_bits: int = 0
    certain: Tensor | None = None
    uncertain_fraction: float = 0.0

    @classmethod
    def ideal(cls, bits: int, shift: int, s_max: int) -> ColumnADC:
        """An ideal rounding ADC: ``code = clamp(round(s / 2**shift), 0, 2**bits - 1)``."""
        return cls(bits=bits, shift=shift, s_max=s_max)

    @classmethod
    def from_adc_model(cls, adc: Any, shift: int, s_max: int, *, sampler: str = "table",
                       table_entries: int = 1 << 20) -> ColumnADC:
        """Tabulate ``P(code | s, instance)`` from a characterized ADC model.

        Args:
            adc: an ``nnsim.hardware`` ``AdcModel`` (``.bits``, ``.thresholds_lsb``
                (instances, 2**bits - 1), ``.noise_lsb``, ``.energy_j``,
                ``.conversion_time_s``; optional ``.decision_error`` per code).
            shift: LSB = ``2**shift`` unit currents.
            s_max: largest column sum.
            sampler: ``"table"`` (fast: one draw of ``q_bits`` bits indexes a quantile table;
                probabilities are resolved to ``2**-q_bits``, ``q_bits`` in 8..16 chosen so the
                table has at most ``table_entries`` entries) or ``"exact"`` (Q30 cumulative
                table, about twice the cost).
        """
        if sampler not in ("table", "exact"):
            raise ValueError(f"sampler={sampler!r}: expected 'table' or 'exact'")
        bits = int(adc.bits)
        n_codes = 1 << bits
        thr = np.asarray(adc.thresholds_lsb, dtype=np.float64)
        if thr.ndim != 2 or thr.shape[1] != n_codes - 1:
            raise ValueError(f"ADC thresholds_lsb has shape {thr.shape}; expected "
                             f"(instances, {n_codes - 1}) for bits={bits}")
        thr = np.where(np.isnan(thr), np.inf, thr)
        thr = np.sort(thr, axis=1)
        finite = np.isfinite(thr)
        offset = getattr(adc, "code_offset", None)
        if offset is not None:                          # centre of code k is k + code_offset
            c0 = float(offset) - 0.5
        else:                                           # infer the convention from the data
            ideal_k = np.arange(1, n_codes, dtype=np.float64)[None, :]
            c0 = float(np.median((thr - ideal_k)[finite])) if finite.any() else -0.5
            c0 = -0.5 if abs(c0 + 0.5) < abs(c0) else 0.0
        sigma = float(np.asarray(adc.noise_lsb, dtype=np.float64).reshape(-1)[0])
        x = np.arange(s_max + 1, dtype=np.float64) / (1 << shift) + c0 + 0.5  # (S,)
        # P(code <= c | x) = P(x + n < t_{c+1}) for c = 0 .. n_codes - 2
        diff = thr[:, None, :] - x[None, :, None]                             # (I, S, C-1)
        p_le = ndtr(diff / sigma) if sigma > 0 else (diff > 0).astype(np.float64)
        pmf = np.diff(np.concatenate([np.zeros_like(p_le[..., :1]), p_le,
                                      np.ones_like(p_le[..., :1])], axis=-1), axis=-1)
        pmf = np.clip(pmf, 0.0, 1.0)
        pe = getattr(adc, "decision_error", None)
        if pe is not None:
            pmf = _mix_decision_errors(pmf, np.asarray(pe, dtype=np.float64).reshape(-1))
        pmf /= pmf.sum(-1, keepdims=True)
        cdf = np.cumsum(pmf, axis=-1)[..., :-1]
        cdf_q = np.round(cdf * (1 << Q)).astype(np.int64)
        mode = pmf.argmax(-1)
        full = np.concatenate([np.zeros_like(cdf_q[..., :1]), cdf_q,
                               np.full_like(cdf_q[..., :1], 1 << Q)], axis=-1)
        lo = np.take_along_axis(full, mode[..., None], -1)[..., 0]
        hi = np.take_along_axis(full, mode[..., None] + 1, -1)[..., 0]
        certain = np.where((lo == 0) & (hi == 1 << Q), mode, -1)
        n_inst = thr.shape[0]
        qtable, q_bits = None, 0
        if sampler == "table":
            rows = n_inst * (s_max + 1)
            q_bits = int(min(16, max(8, math.floor(math.log2(table_entries / rows)))))
            u_mid = ((np.arange(1 << q_bits) * 2 + 1) << (Q - q_bits - 1)).astype(np.int64)
            flat_cdf = cdf_q.reshape(rows, n_codes - 1)
            qt = np.stack([np.searchsorted(row, u_mid, side="right") for row in flat_cdf])
            qtable = torch.from_numpy(qt.astype(np.int16).reshape(-1))
        return cls(bits=bits, shift=shift, s_max=s_max, n_instances=n_inst,
                   energy_j=_scalar(getattr(adc, "energy_j", None)),
                   conversion_time_s=_scalar(getattr(adc, "conversion_time_s", None)),
                   source="circuit",
                   mode_code=torch.from_numpy(mode.reshape(-1).astype(np.int64)),
                   lo=torch.from_numpy(lo.reshape(-1)), hi=torch.from_numpy(hi.reshape(-1)),
                   cdf=torch.from_numpy(cdf_q.reshape(n_inst * (s_max + 1), n_codes - 1)),
                   qtable=qtable, q_bits=q_bits,
                   certain=torch.from_numpy(certain.reshape(-1).astype(np.int64)),
                   uncertain_fraction=float((certain < 0).mean()))

    def to(self, device: torch.device) -> ColumnADC:
        """Move the tables to ``device``."""
        for name in ("mode_code", "lo", "hi", "cdf", "qtable", "certain"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        return self

    def error_probability(self) -> Tensor | None:
        """``P(code != ideal code | s, instance)`` as (instances, s_max + 1) float, or None."""
        if self.cdf is None:
            return None
        s = torch.arange(self.s_max + 1)
        ideal = shift_round(s, self.shift).clamp(0, (1 << self.bits) - 1)
        full = torch.cat([torch.zeros(self.cdf.shape[0], 1, dtype=_I64), self.cdf.cpu(),
                          torch.full((self.cdf.shape[0], 1), 1 << Q, dtype=_I64)], 1)
        idx = ideal.repeat(self.n_instances)
        p_ok = (full.gather(1, (idx + 1)[:, None]) - full.gather(1, idx[:, None]))[:, 0]
        return (1.0 - p_ok.double() / (1 << Q)).reshape(self.n_instances, self.s_max + 1)

    def exact_instances(self) -> Tensor:
        """Per instance, whether every sum ``0..s_max`` converts to its ideal code with
        probability 1 (in Q30): such a column's conversions are the exact integer sums."""
        top = (1 << self.bits) - 1
        ideal = shift_round(torch.arange(self.s_max + 1), self.shift).clamp(0, top)
        if self.cdf is None:
            return torch.ones(self.n_instances, dtype=torch.bool)
        c = self.certain.cpu().reshape(self.n_instances, self.s_max + 1)
        return (c == ideal[None]).all(1)

    def convert(self, s: Tensor, instance: Tensor, generator: torch.Generator | None, *,
                fused: bool = True) -> Tensor:
        """Codes for integer column sums ``s`` (..., cols) read by ADC ``instance`` (cols,).

        Integer-only: the ideal ADC is a rounding shift and a saturation; the circuit ADC is
        one uniform integer draw per conversion indexing the quantile table (or compared with
        the Q30 cumulative table). ``fused`` (default): the code of a sum that cannot be
        mis-converted (probability 1 in Q30) is read from ``certain`` and only the other
        conversions draw; the same distribution as drawing every conversion (``fused=False``),
        identical codes where the code is certain, fewer draws. ``s`` must lie in
        ``0..s_max`` (it does by construction).
        """
        top = (1 << self.bits) - 1
        if self.cdf is None:
            return shift_round(s, self.shift).clamp(0, top)
        flat = s + instance * (self.s_max + 1)
        if fused and self.certain is not None and self.uncertain_fraction <= 0.5:
            code = self.certain[flat]
            miss = code < 0
            if bool(miss.any()):
                idx = miss.nonzero(as_tuple=True)
                code[idx] = self._sample(flat[idx], generator)
            return code
        return self._sample(flat, generator)

    def _sample(self, flat: Tensor, generator: torch.Generator | None) -> Tensor:
        """One draw per entry of ``flat`` (``s + instance (s_max + 1)``)."""
        if self.qtable is not None:
            u = torch.randint(0, 1 << self.q_bits, flat.shape, generator=generator,
                              dtype=_I64, device=flat.device)
            return self.qtable[(flat << self.q_bits) + u].to(_I64)
        u = torch.randint(0, 1 << Q, flat.shape, generator=generator, dtype=_I64,
                          device=flat.device)
        code = self.mode_code[flat]
        miss = (u < self.lo[flat]) | (u >= self.hi[flat])
        if bool(miss.any()):
            idx = miss.nonzero(as_tuple=True)
            rows = self.cdf[flat[idx]]                                  # (n_miss, C-1)
            code = code.index_put(idx, (u[idx].unsqueeze(-1) >= rows).sum(-1))
        return code


def _scalar(x: Any) -> float | None:
    if x is None:
        return None
    v = float(np.asarray(x, dtype=np.float64).reshape(-1)[0])
    return v if np.isfinite(v) else None


def _mix_decision_errors(pmf: np.ndarray, p_err: np.ndarray) -> np.ndarray:
    """Move probability ``p_err[c]`` of output code ``c`` to its neighbours, half each."""
    n = pmf.shape[-1]
    pe = np.zeros(n)
    pe[: min(n, p_err.size)] = np.nan_to_num(p_err[:n])
    moved = pmf * pe
    out = pmf - moved
    up = np.zeros_like(moved)
    down = np.zeros_like(moved)
    up[..., 1:] = moved[..., :-1] * 0.5
    down[..., :-1] = moved[..., 1:] * 0.5
    out = out + up + down
    out[..., 1] += moved[..., 0] * 0.5            # the edge codes have one neighbour
    out[..., -2] += moved[..., -1] * 0.5
    return out
