"""Division-free, FPU-free softmax, LayerNorm and GELU on integer tensors.

Each kernel takes ``(m, e)`` (integer mantissas and exponents, value ``m * 2**e``) and returns
the same kind of pair. Constants (tables, fixed-point coefficients) are computed once with
Python integers/floats at import time; at run time only integer tensor operations run.

Error bounds against float (measured on random inputs by ``tests/nnsim/test_rap_nonlinear.py``
and written down in ``docs/rap.md``) are the module constants ``*_BOUND``; they apply to the
wide outputs (``out_bits=None``), before the final 8-bit window, whose own error is at most
half an LSB of the window.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .intops import as_int, bit_length, fixed_point, shift_round, window

_I64 = torch.int64

# --------------------------------------------------------------------------- softmax
LOG2E_FRAC = 15
LOG2E_Q = fixed_point(1.0 / math.log(2.0), LOG2E_FRAC)  # log2(e) in Q15 (47274)
SOFTMAX_FRAC = 16
"""Fractional bits of the base-2 exponent inside the softmax."""
EXP2_Q = 30
"""``2**f`` table entries are in Q30."""
RECIP_SEED_BITS = 4
RECIP_Q = 31

SOFTMAX_ABS_BOUND = 2e-4
"""Max |p_int - p_float| of :func:`int_softmax` (wide output, ``lut_bits=4``, 2 Newton steps;
measured 6.6e-5)."""


def _exp2_table(lut_bits: int) -> list[int]:
    n = 1 << lut_bits
    return [fixed_point(2.0 ** (i / n), EXP2_Q) for i in range(n + 1)]


def _recip_seed_table() -> list[int]:
    # s16 in [2**15, 2**16): index by the 4 bits below the leading one; seed 2**31 / midpoint.
    n = 1 << RECIP_SEED_BITS
    step = 1 << (15 - RECIP_SEED_BITS)
    return [round((1 << RECIP_Q) / ((1 << 15) + (i + 0.5) * step)) for i in range(n)]


_RECIP_SEED = _recip_seed_table()
_TABLES: dict[tuple[str, int, torch.device], Tensor] = {}


def _table(name: str, param: int, device: torch.device) -> Tensor:
    key = (name, param, device)
    t = _TABLES.get(key)
    if t is None:
        values = {"exp2": lambda: _exp2_table(param), "recip": lambda: _RECIP_SEED,
                  "rsqrt": lambda: _RSQRT_SEED}[name]()
        t = torch.tensor(values, dtype=_I64, device=device)
        _TABLES[key] = t
    return t


def exp2_neg(z: Tensor, frac_bits: int, lut_bits: int) -> Tensor:
    """``2**(z / 2**frac_bits)`` for ``z <= 0``, in Q30, by shifts and a small table.

    ``z = -q * 2**F + f`` with integer ``q >= 0`` and ``0 <= f < 2**F``: the fractional power
    ``2**(f / 2**F)`` comes from a ``2**lut_bits + 1``-entry table with linear interpolation,
    the integer power is a right shift by ``q``.
    """
    table = _table("exp2", lut_bits, z.device)
    q = -(z >> frac_bits)
    f = z - ((z >> frac_bits) << frac_bits)
    low = frac_bits - lut_bits
    idx = f >> low
    rem = f - (idx << low)
    a = table[idx]
    b = table[idx + 1]
    val = a + shift_round((b - a) * rem, low)
    return shift_round(val, q.clamp(max=62))


def reciprocal(s: Tensor, newton_steps: int) -> tuple[Tensor, Tensor]:
    """``1 / s`` for positive integers, division-free: ``r * 2**-(31 + sh)``.

    ``s`` is normalised by its MSB to 16 bits (``s16 = s >> sh``); a 16-entry table seeds
    ``r ~ 2**31 / s16`` and each Newton step ``r += r (2**31 - s16 r) / 2**31`` squares the
    relative error (seed 3 %, one step 1e-3, two steps 1e-6).

    Returns:
        ``(r, sh)`` with ``1/s ~= r * 2**-(31 + sh)``.
    """
    sh = bit_length(s) - 16
    s16 = shift_round(s, sh)
    idx = ((s16 >> (15 - RECIP_SEED_BITS)) - (1 << RECIP_SEED_BITS)).clamp(
        0, (1 << RECIP_SEED_BITS) - 1)
    r = _table("recip", 0, s.device)[idx]
    one = 1 << RECIP_Q
    for _ in range(newton_steps):
        err = one - s16 * r
        r = r + shift_round(r * err, RECIP_Q)
    return r, sh


def int_softmax(m: Tensor, e: Tensor | int, *, out_bits: int | None = 8, lut_bits: int = 4,
                normalize: str = "newton", newton_steps: int = 2) -> tuple[Tensor, Tensor]:
    """Integer softmax over the last dimension (variable-dynamic-range normalisation).

    Steps: subtract the row maximum; multiply by ``log2(e)`` (Q15 constant) and shift into a
    Q16 base-2 exponent; ``exp2`` by shift + table; sum; normalise by the power of two of the
    sum's MSB, refined by a division-free reciprocal of the sum's 16-bit mantissa (``normalize=
    "newton"``) or not (``"pow2"``: the row sums to a value in [0.5, 1), a per-row gain error
    of up to 2x that the paper's wording alone would give); finally keep an unsigned
    ``out_bits`` window below each row's effective MSB (per-row exponent: the VDR idea).

    Args:
        m: scores mantissas (..., N).
        e: exponent(s) of the scores, broadcastable to ``m`` with last dim 1.
        out_bits: width of the unsigned output window; ``None`` returns the wide result.
        lut_bits: log2 of the ``2**f`` table size.
        normalize: ``"newton"`` or ``"pow2"``.
        newton_steps: Newton steps of the reciprocal (0: table seed only).

    Returns:
        ``(p, e_p)``: probabilities ``p * 2**e_p`` (non-negative), ``e_p`` of shape (..., 1).
    """
    if normalize not in ("newton", "pow2"):
        raise ValueError(f"normalize={normalize!r}: expected 'newton' or 'pow2'")
    e = as_int(e, m)
    z = m - m.amax(-1, keepdim=True)                      # <= 0, units 2**e
    # base-2 exponent in Q(SOFTMAX_FRAC): z * log2(e) * 2**(e + F)
    zq = shift_round(z * LOG2E_Q, LOG2E_FRAC - SOFTMAX_FRAC - e)
    zq = zq.clamp(min=-(64 << SOFTMAX_FRAC))
    ex = exp2_neg(zq, SOFTMAX_FRAC, lut_bits)             # Q30, the max entry is 2**30
    total = ex.sum(-1, keepdim=True)
    if normalize == "newton":
        r, sh = reciprocal(total, newton_steps)
        p = ex * r                                        # ex_j / total = ex_j r 2**-(31+sh)
        e_p = -RECIP_Q - sh
    else:
        p = ex
        e_p = -bit_length(total)
    if out_bits is None:
        return p, e_p
    return window(p, e_p, out_bits, -1, signed=False)


# --------------------------------------------------------------------------- layernorm
RSQRT_Q = 30
_RSQRT_SEED_BITS = 4


def _rsqrt_seed_table() -> list[int]:
    # d in [2**28, 2**30): index = (d >> 26) - 4 in [0, 12); seed 2**30 / sqrt(midpoint)
    out = []
    for i in range(12):
        mid = (4 + i + 0.5) * (1 << 26)
        out.append(round((1 << RSQRT_Q) / math.sqrt(mid)))
    return out


_RSQRT_SEED = _rsqrt_seed_table()

LAYERNORM_ABS_BOUND = 1e-3
"""Max |y_int - y_float| of :func:`int_layernorm` on the normalised scale (gamma=1, beta=0),
for |mean| up to 3 standard deviations and ``in_bits=16`` (measured 4e-4; 1.2e-4 at 20 bits)."""


def rsqrt(d_in: Tensor, newton_steps: int = 2) -> tuple[Tensor, Tensor]:
    """``1 / sqrt(D)`` for positive integers, division-free: ``y * 2**-(30 + t)``.

    ``D`` is shifted by an even amount ``2t`` to ``d`` in ``[2**28, 2**30)``; a 12-entry
    table on the top bits seeds ``y ~ 2**30 / sqrt(d)``; Newton steps
    ``y <- y (3 - d y**2 / 2**60) / 2`` (integer products, one shift each).
    """
    length = bit_length(d_in)
    t = (length - 29) >> 1                              # floor; d gets 29 or 30 bits
    d = shift_round(d_in, 2 * t).clamp((1 << 28), (1 << 30) - 1)
    idx = ((d >> 26) - 4).clamp(0, 11)
    y = _table("rsqrt", 0, d_in.device)[idx]
    three = 3 << RSQRT_Q
    for _ in range(newton_steps):
        q = shift_round(d * y * y, 2 * RSQRT_Q - RSQRT_Q)  # d y^2 / 2**30 ~ 2**30
        y = shift_round(y * (three - q), RSQRT_Q + 1)
    return y, t


def int_layernorm(m: Tensor, e: Tensor | int, gamma_m: Tensor, gamma_e: int, beta_m: Tensor,
                  beta_e: int, eps_m: int, eps_e: int, *, in_bits: int = 16,
                  out_bits: int | None = 8, newton_steps: int = 2) -> tuple[Tensor, Tensor]:
    """Integer LayerNorm over the last dimension.

    With ``C`` channels, ``S1 = sum m`` and ``S2 = sum m**2`` (exact integers),
    ``(x - mean) / sqrt(var + eps) = (C m - S1) / sqrt(C S2 - S1**2 + eps C**2 2**-2e)``:
    no division by ``C`` is needed. The inverse square root is :func:`rsqrt`.
    The affine part uses power-of-two-scaled ``gamma`` and ``beta`` mantissas.

    Args:
        m, e: input (..., C) and its exponent (per token).
        gamma_m, gamma_e: gamma mantissas (C,) and their shared exponent.
        beta_m, beta_e: beta mantissas (C,) and their shared exponent.
        eps_m, eps_e: ``eps = eps_m * 2**eps_e``.
        in_bits: the input is first windowed to this many bits per token (bounds the sums).
        out_bits: signed output window per token; ``None`` returns the wide result.
        newton_steps: Newton steps of the inverse square root.

    Returns:
        ``(y, e_y)`` with ``e_y`` of shape (..., 1).
    """
    m, e = window(m, e, in_bits, -1)
    c = m.shape[-1]
    s1 = m.sum(-1, keepdim=True)
    s2 = (m * m).sum(-1, keepdim=True)
    num = c * m - s1
    den = c * s2 - s1 * s1
    den = den + shift_round(torch.full_like(den, eps_m * c * c), 2 * e - eps_e)
    den = den.clamp(min=1)
    y, t = rsqrt(den, newton_steps)
    xhat = shift_round(num * y, 14)                     # value xhat * 2**(-16 - t)
    out = xhat * gamma_m                                # value * 2**(-16 - t + gamma_e)
    e_out = -16 - t + gamma_e
    out = out + shift_round(beta_m.expand_as(out), e_out - beta_e)
    if out_bits is None:
        return out, e_out
    return window(out, e_out, out_bits, -1)


# --------------------------------------------------------------------------- GELU
GELU_FRAC = 12
"""The GELU works on a Q12 fixed-point copy of its input."""
_GELU_A = fixed_point(-0.2888, 15)
_GELU_B = fixed_point(1.769, GELU_FRAC)
_INV_SQRT2 = fixed_point(1.0 / math.sqrt(2.0), 15)
GELU_ABS_BOUND = 2e-2
"""Max |gelu_int(x) - gelu(x)| over inputs in [-8, 8] (measured 1.84e-2; I-BERT's erf
polynomial dominates)."""


def int_gelu(m: Tensor, e: Tensor | int, *, out_bits: int | None = 8) -> tuple[Tensor, Tensor]:
    """I-BERT integer GELU: ``x/2 (1 + erf(x/sqrt 2))`` with the second-order erf polynomial
    ``erf(u) ~ sgn(u) [a (min(|u|, -b) + b)**2 + 1]``, ``a = -0.2888``, ``b = -1.769``.

    The input is shifted to Q12 (``x = X 2**-12``, saturated at +-64), then only integer
    multiplications and shifts follow.

    Returns:
        ``(y, e_y)``: the result in Q12 (``e_y = -12``) or windowed to ``out_bits`` per token.
    """
    e = as_int(e, m)
    x = shift_round(m, -e - GELU_FRAC).clamp(-(64 << GELU_FRAC), 64 << GELU_FRAC)
    u = shift_round(x.abs() * _INV_SQRT2, 15).clamp(max=_GELU_B)
    t = u - _GELU_B                                      # Q12, <= 0
    poly = shift_round(_GELU_A * t * t, 15 + GELU_FRAC)  # Q12
    erf_abs = poly + (1 << GELU_FRAC)
    erf = torch.where(x < 0, -erf_abs, erf_abs)
    y = shift_round(x * ((1 << GELU_FRAC) + erf), GELU_FRAC + 1)
    e_y = torch.full_like(m[..., :1], -GELU_FRAC)
    if out_bits is None:
        return y, e_y
    return window(y, e_y, out_bits, -1)
