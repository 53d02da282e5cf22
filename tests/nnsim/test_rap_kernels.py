"""RAP integer kernels: shifts, effective MSB, windows, softmax, LayerNorm, GELU vs float."""

import math

import pytest
import torch

from nnsim.rap import (
    GELU_ABS_BOUND,
    LAYERNORM_ABS_BOUND,
    SOFTMAX_ABS_BOUND,
    effective_msb,
    int_gelu,
    int_layernorm,
    int_softmax,
    shift_round,
    window,
)
from nnsim.rap.intops import pow2_exponent, quantize_pow2


def _val(m, e):
    return m.double() * torch.exp2(torch.as_tensor(e).double())


def test_shift_round_matches_round_half_up():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-(1 << 40), 1 << 40, (5000,), generator=g)
    s = torch.randint(-10, 30, (5000,), generator=g)
    got = shift_round(x, s)
    ref = [math.floor(xi / 2.0**si + 0.5) if si > 0 else xi << -si
           for xi, si in zip(x.tolist(), s.tolist(), strict=True)]
    assert got.tolist() == ref


def test_effective_msb_is_first_bit_below_sign_run():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(-(1 << 20), 1 << 20, (300, 16), generator=g) >> torch.randint(
        0, 20, (300, 1), generator=g)
    got = effective_msb(x, -1)[:, 0].tolist()
    ref = [max((v if v >= 0 else -v - 1).bit_length() for v in row) for row in x.tolist()]
    assert got == ref


def test_window_keeps_bits_below_emsb_with_half_lsb_error():
    g = torch.Generator().manual_seed(2)
    x = torch.randint(-(1 << 24), 1 << 24, (200, 32), generator=g)
    m, e = window(x, 0, 8, -1)
    assert m.abs().max() <= 127
    assert int(m.abs().amax(-1).min()) >= 32              # the window is really used
    err = (_val(m, e) - x.double()).abs()
    lsb = torch.exp2(e.double())
    inside = m.abs() < 127
    assert bool((err[inside] <= (lsb.expand_as(err) * 0.5)[inside]).all())
    assert (err / lsb).max() <= 1.0          # rounding up into saturation costs < 1 LSB


def test_softmax_within_bound_of_float():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2000, 17, generator=g) * 4
    m, e = torch.round(x * 2**10).long(), -10
    ref = torch.softmax(m.double() * 2.0**e, -1)
    p, pe = int_softmax(m, e, out_bits=None)
    err = (_val(p, pe) - ref).abs().max().item()
    assert err <= SOFTMAX_ABS_BOUND
    p8, pe8 = int_softmax(m, e, out_bits=8)
    assert p8.max() <= 255 and p8.min() >= 0
    assert (_val(p8, pe8) - ref).abs().max().item() <= 2.0**-8 + SOFTMAX_ABS_BOUND
    # pure power-of-two normalisation: each row sums to [0.5, 1) (the gain error it leaves)
    pp, ppe = int_softmax(m, e, out_bits=None, normalize="pow2")
    s = _val(pp, ppe).sum(-1)
    assert bool(((s >= 0.5 - 1e-6) & (s < 1.0)).all())


@pytest.mark.parametrize("mean_ratio", [0.0, 3.0])
def test_layernorm_within_bound_of_float(mean_ratio):
    g = torch.Generator().manual_seed(4)
    c, n = 64, 2000
    scale = torch.exp(torch.randn(n, 1, generator=g) * 2)
    x = (torch.randn(n, c, generator=g) + mean_ratio * torch.randn(n, 1, generator=g)) * scale
    m = torch.round(x * 2**20).long()
    eps_e = pow2_exponent(1e-6, 24)
    eps_m = int(quantize_pow2(torch.tensor(1e-6, dtype=torch.float64), eps_e, 24))
    y, ye = int_layernorm(m, torch.full((n, 1), -20), torch.full((c,), 1 << 14), -14,
                          torch.zeros(c, dtype=torch.long), 0, eps_m, eps_e, in_bits=16,
                          out_bits=None)
    ref = torch.nn.functional.layer_norm(m.double() * 2.0**-20, (c,), eps=1e-6)
    assert (_val(y, ye) - ref).abs().max().item() <= LAYERNORM_ABS_BOUND


def test_layernorm_affine_and_8bit_window():
    g = torch.Generator().manual_seed(5)
    c = 48
    x = torch.randn(500, c, generator=g) * 3 + 1
    gam, bet = torch.randn(c, generator=g) * 0.5 + 1, torch.randn(c, generator=g) * 0.3
    ge, be = pow2_exponent(gam.abs().max().item(), 16), pow2_exponent(bet.abs().max().item(), 16)
    m = torch.round(x * 2**12).long()
    y, ye = int_layernorm(m, torch.full((500, 1), -12), quantize_pow2(gam, ge, 16), ge,
                          quantize_pow2(bet, be, 16), be, 1, -30, out_bits=8)
    ref = torch.nn.functional.layer_norm(m.double() * 2.0**-12, (c,), gam.double(),
                                         bet.double(), eps=2.0**-30)
    lsb = torch.exp2(ye.double())
    assert ((_val(y, ye) - ref).abs() <= lsb + 4 * LAYERNORM_ABS_BOUND).all()


def test_gelu_within_bound_of_float():
    x = torch.linspace(-8, 8, 20001)
    m = torch.round(x * 2**10).long()
    y, ye = int_gelu(m, torch.full((1,), -10), out_bits=None)
    ref = torch.nn.functional.gelu(m.double() * 2.0**-10)
    err = (_val(y, ye) - ref).abs().max().item()
    assert err <= GELU_ABS_BOUND
    assert err > 1e-3        # the I-BERT polynomial is an approximation: the bound is real
