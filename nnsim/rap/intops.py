"""Integer primitives of the RAP path: shifts, effective MSB, power-of-two windows.

Every function here takes and returns integer tensors (``torch.int64`` unless stated) and uses
only integer tensor operations: additions, multiplications, comparisons, bitwise operations and
arithmetic shifts. A quantity is a pair ``(m, e)`` of an integer mantissa tensor ``m`` and an
integer exponent tensor ``e`` (broadcastable to ``m``) meaning ``m * 2**e``.

Rounding convention (a setting nowhere else): a right shift by ``s`` rounds half up,
``(x + 2**(s-1)) >> s``; ``>>`` on signed integers is arithmetic (floor), so this is
round-half-toward-plus-infinity.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_I64 = torch.int64
MAX_SHIFT = 62
"""Shift amounts are clamped to this (a larger right shift gives 0 or -1 anyway)."""


def as_int(x: Tensor | int, like: Tensor) -> Tensor:
    """``x`` as an int64 tensor on ``like``'s device (integer op only)."""
    if isinstance(x, Tensor):
        return x if x.dtype == _I64 else x.to(_I64)
    return torch.full((), int(x), dtype=_I64, device=like.device)


def shift_round(x: Tensor, s: Tensor | int) -> Tensor:
    """``x * 2**-s`` rounded half up, for signed shift amounts ``s`` (negative: left shift).

    Args:
        x: integer tensor.
        s: shift amount, an int or an integer tensor broadcastable to ``x``.

    Returns:
        int64 tensor of the broadcast shape.
    """
    if isinstance(s, int):
        if s <= 0:
            return x << min(-s, MAX_SHIFT)
        s = min(s, MAX_SHIFT)
        return (x + (1 << (s - 1))) >> s
    s = as_int(s, x)
    r = s.clamp(0, MAX_SHIFT)
    left = (-s).clamp(0, MAX_SHIFT)
    half = (torch.ones_like(r) << r) >> 1
    return ((x + half) >> r) << left


_POW2 = {}


def _pow2_table(device: torch.device) -> Tensor:
    t = _POW2.get(device)
    if t is None:
        t = torch.ones(MAX_SHIFT + 1, dtype=_I64, device=device) << torch.arange(
            MAX_SHIFT + 1, dtype=_I64, device=device)
        _POW2[device] = t
    return t


def bit_length(x: Tensor) -> Tensor:
    """Number of bits of non-negative integers: smallest ``L`` with ``x < 2**L`` (0 for 0).

    Computed by comparison with a table of powers of two (no logarithm); meant for reduced
    tensors (one value per token), it costs 63 comparisons per element.
    """
    return (x.unsqueeze(-1) >= _pow2_table(x.device)).sum(-1)


def sign_run_free(x: Tensor) -> Tensor:
    """``x`` XOR its sign extension: ``x`` for ``x >= 0``, ``-x - 1`` for ``x < 0``.

    Its highest set bit is the effective MSB of the two's-complement word: the first bit below
    the run of sign bits, which is what a bit-serial MSB-first detector sees change first.
    """
    return x ^ (x >> 63)


def effective_msb(x: Tensor, dims: int | tuple[int, ...] = -1) -> Tensor:
    """Bit length above the sign run over the reduced ``dims`` (keepdim), per window.

    ``L`` such that every value in the window satisfies ``-2**L <= x < 2**L``. The maximum of
    :func:`sign_run_free` has the same highest bit as the bitwise OR over the window, which is
    what the hardware detector accumulates while the bits stream in.
    """
    v = sign_run_free(x)
    v = v.amax(dim=dims, keepdim=True)
    return bit_length(v)


def window(m: Tensor, e: Tensor | int, bits: int, dims: int | tuple[int, ...] = -1, *,
           signed: bool = True) -> tuple[Tensor, Tensor]:
    """Keep a ``bits``-bit window below each window's effective MSB (the RAP "parsing").

    Args:
        m: integer mantissas.
        e: exponent(s) of ``m`` (broadcastable).
        bits: width of the kept window including the sign bit when ``signed``.
        dims: dimension(s) that share one exponent (a token: ``-1``).
        signed: symmetric signed window ``[-(2**(bits-1)-1), 2**(bits-1)-1]``; otherwise
            unsigned ``[0, 2**bits - 1]`` (``m`` must be non-negative).

    Returns:
        ``(m_w, e_w)``: windowed mantissas and the new exponents (keepdim over ``dims``).
        The requantization is one arithmetic shift (rounded) and a saturation.
    """
    mag_bits = bits - 1 if signed else bits
    length = effective_msb(m, dims)
    s = (length - mag_bits).clamp(min=0)
    top = (1 << mag_bits) - 1
    mw = shift_round(m, s).clamp(-top if signed else 0, top)
    return mw, as_int(e, m) + s


def align(m1: Tensor, e1: Tensor, m2: Tensor, e2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Bring two quantities to their common (smaller) exponent by left shifts.

    Returns:
        ``(a1, a2, e)`` with ``m1 * 2**e1 == a1 * 2**e`` and the same for ``m2``.
    """
    e = torch.minimum(e1, e2)
    return m1 << (e1 - e), m2 << (e2 - e), e


def int_matmul(a: Tensor, b: Tensor) -> Tensor:
    """Exact integer matrix product (int64 accumulation).

    On CPU this is ``torch.matmul`` on int64. CUDA has no int64 GEMM: there the product is
    formed in float64, which is exact while every partial sum stays below 2**53 (checked).
    """
    if a.device.type == "cpu":
        return torch.matmul(a.to(_I64), b.to(_I64))
    bound = int(a.abs().amax()) * int(b.abs().amax()) * a.shape[-1]
    if bound >= 2**53:
        raise OverflowError(f"int_matmul on {a.device}: |a||b|n = {bound} is not exact in float64")
    return torch.matmul(a.double(), b.double()).round().to(_I64)


def pow2_exponent(max_abs: float, bits: int) -> int:
    """Smallest power-of-two exponent ``e`` with ``max_abs / 2**e <= 2**(bits-1) - 1``.

    Offline (conversion-time) helper on Python floats: it sets scales, it is not in the path.
    """
    top = (1 << (bits - 1)) - 1
    if not max_abs > 0:
        return 0
    return math.ceil(math.log2(max_abs / top))


def quantize_pow2(x: Tensor, e: Tensor | int, bits: int) -> Tensor:
    """Offline quantizer: ``round(x / 2**e)`` saturated to the symmetric ``bits`` range."""
    top = (1 << (bits - 1)) - 1
    e_t = torch.as_tensor(e, dtype=x.dtype, device=x.device)
    return torch.round(x * torch.exp2(-e_t)).clamp(-top, top).to(_I64)


def fixed_point(value: float, frac_bits: int) -> int:
    """``round(value * 2**frac_bits)`` as a Python int (a constant of the integer kernels)."""
    return round(value * (1 << frac_bits))
