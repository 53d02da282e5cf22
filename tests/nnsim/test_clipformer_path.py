"""The attention path as every inference runs it (issue 15, item 7): ClipFormer through the
real mapping and write path (``AnalogAttention._write`` -> ``map_matrix`` -> ``write_levels``
-> ``build_array`` -> ``mvm``), and the per-row power-of-two scale of the softmax
probabilities that drive the rows of S V.

References are independent of the code under test: the paper's clipping formula written out
on the values, the TxSim write-noise variance ``(gamma k)^2 (G - G_min)(G_max - G_min)``
propagated through the product by hand, and the half-LSB bound of round-to-nearest.
(Mutation checked once each, then restored: the write noise x2, beta x2, alpha x2, the
probability scale x2 and x0.5 all fail here.)
"""

from __future__ import annotations

import pytest
import torch

from nnsim.analog import (
    AnalogConfig,
    build_array,
    clipformer_protocol,
    input_planes,
    input_scale,
    map_matrix,
    mvm,
)
from nnsim.convert import AnalogAttention, convert_to_analog
from nnsim.hardware import HardwareModel

ALPHA, BETA, GAMMA = 2.0, 0.25, 5.0


def _attention(model, hw, clip, gamma):
    """The first AnalogAttention of the model converted under ClipFormer's protocol (static
    weights exact, K/V with the zero-mean TxSim form), exact readout so that only the K/V
    writes add error."""
    cfg = clipformer_protocol(AnalogConfig(gamma=gamma, clipformer=clip, adc=False,
                                           read_noise=False, nonlinearity=False))
    analog = convert_to_analog(model, hw, cfg, seed=3)
    return next(m for m in analog.modules() if isinstance(m, AnalogAttention))


def _heavy_tailed(shape, gen):
    """Mostly small values with a few outliers (what ClipFormer is for)."""
    x = torch.randn(shape, generator=gen)
    out = torch.rand(shape, generator=gen) < 0.03
    return torch.where(out, 8.0 * x, x)


def _written(att, w_rc, salt, x, signed):
    """One write of ``w_rc`` and the product ``x @ written`` through the module's own MVM."""
    arr = att._write(w_rc, salt)
    return att._mvm(x, arr, salt, signed=signed)


def _clipped_value(w_rc, hw, alpha, beta):
    """The paper's G <- min(max(G - alpha G_min, G_min), beta G_max) on the linear mapping
    G = G_min + |w| / max|w| (G_max - G_min), back in value units, 8-bit quantized on the
    unclipped scale."""
    dg = hw.g_max_s - hw.g_min_s
    vmax = w_rc.abs().amax((-2, -1), keepdim=True)
    mag = (w_rc.abs() / vmax - alpha * hw.g_min_s / dg).clamp(min=0.0)
    mag = mag.clamp(max=(beta * hw.g_max_s - hw.g_min_s) / dg)
    return torch.sign(w_rc) * torch.round(mag * 255) / 255 * vmax


def _predicted_noise_power(att, w_rc, x, signed, clip, hw):
    """Sum over outputs of Var(x_q @ noise): TxSim per cell, variance (gamma k)^2 * 3 * l in
    level units (l = (G - G_min) / (G_max - G_min) * 3), slice s weighs 4^s, one LSB of the
    magnitude is max|w| / 255."""
    cfg = att.config
    mapped = map_matrix(w_rc, w_rc.abs().amax((-2, -1), keepdim=True), cfg, hw, clip)
    k = GAMMA * hw.write_noise_k("single")
    w16 = (16.0 ** torch.arange(mapped.targets.shape[-4], dtype=torch.float64))
    # (..., S, 2, R, C) -> per element variance in LSB^2
    var_lsb = (k ** 2 * 3.0 * mapped.targets.double()).sum(-3)  # both cells of the pair
    var_lsb = (var_lsb * w16[:, None, None]).sum(-3)  # (..., R, C)
    var_w = var_lsb * mapped.scale.double() ** 2
    sx = input_scale(x, 8, signed)
    qmax = 127 if signed else 255
    lo = -qmax if signed else 0
    xq = (torch.round(x / sx).clamp(lo, qmax) * sx).double()
    return float((xq ** 2 @ var_w).sum())


@pytest.mark.parametrize("which", ["K", "V"])
def test_clipformer_cuts_the_kv_write_noise_in_the_attention_output(tiny_digits_model, hw_tt,
                                                                    which):
    """Q K^T (K^T written, Q signed row inputs) and S V (V written, S unsigned rows), gamma 5,
    heavy-tailed K/V, 24 writes: the write noise each product carries equals the TxSim
    variance propagated by hand (within 15 %), with and without ClipFormer, and (2, 0.25)
    removes most of it (the top slice holds nothing, the shift lowers every conductance);
    at gamma 0 the written matrix is the paper's clipping formula, its largest magnitude at
    (beta G_max - G_min) / (G_max - G_min) of the matrix maximum."""
    model, _ = tiny_digits_model
    gen = torch.Generator().manual_seed(11)
    hd, n, reps = 16, 65, 24
    if which == "K":  # K^T: rows = head_dim, columns = tokens; Q: (tokens, head_dim)
        w_rc = _heavy_tailed((1, 2, hd, n), gen).expand(reps, 2, hd, n)
        x = torch.randn(reps, 2, n, hd, generator=gen)
        signed, salt = True, 1
    else:  # V: rows = tokens; S: softmax rows
        w_rc = _heavy_tailed((1, 2, n, hd), gen).expand(reps, 2, n, hd)
        x = (3.0 * torch.randn(1, 2, n, n, generator=gen)).softmax(-1).expand(reps, 2, n, n)
        signed, salt = False, 2
    power = {}
    with torch.no_grad():
        for clip in (None, (ALPHA, BETA)):
            y0 = _written(_attention(model, hw_tt, clip, 0.0), w_rc, salt, x, signed)
            att = _attention(model, hw_tt, clip, GAMMA)
            y = _written(att, w_rc, salt, x, signed)
            meas = float(((y - y0) ** 2).double().sum()) / reps
            pred = _predicted_noise_power(att, w_rc[:1], x[:1], signed, clip, hw_tt)
            assert meas == pytest.approx(pred, rel=0.15), (clip, meas, pred)
            power[clip] = meas
        ratio = power[(ALPHA, BETA)] / power[None]
        assert ratio < 0.5, power  # 0.25 (K) here
        # gamma 0: what the readout sees of the written matrix (identity rows, exact) is the
        # paper's clipping formula, and the clipping level is where the formula puts it
        att0 = _attention(model, hw_tt, (ALPHA, BETA), 0.0)
        r = w_rc.shape[-2]
        eye = torch.eye(r).expand(1, 2, r, r)
        seen = _written(att0, w_rc[:1], salt, eye, signed=False)
        want = _clipped_value(w_rc[:1], hw_tt, ALPHA, BETA)
        torch.testing.assert_close(seen, want, rtol=1e-5, atol=1e-6)
        vmax = w_rc[:1].abs().amax((-2, -1))
        dg = hw_tt.g_max_s - hw_tt.g_min_s
        level = round((BETA * hw_tt.g_max_s - hw_tt.g_min_s) / dg * 255) / 255
        torch.testing.assert_close(seen.abs().amax((-2, -1)), level * vmax)
        # the dead zone: |w| <= alpha G_min / dG of the maximum is written as 0, above it
        # the shift, alpha G_min / dG, is subtracted
        rel = w_rc[:1].abs() / vmax[..., None, None]
        dead = rel <= ALPHA * hw_tt.g_min_s / dg
        assert dead.any() and float(seen[dead].abs().max()) == 0.0


def test_attention_probabilities_on_a_row_power_of_two_scale():
    """197-token softmax rows (DeiT-S's token count), sharp and flat: each row's full scale
    (255 LSB) is the power of two at or above its largest probability and below twice it;
    every probability, rebuilt from the bit planes that drive the rows, is within half an LSB
    of that scale; the S V product through ``mvm`` (exact readout, real-valued V) differs
    from the float product by at most half an LSB times sum |v|; the fixed 1/255 grid is
    never better and is 60x worse on flat rows."""
    gen = torch.Generator().manual_seed(5)
    temps = torch.tensor([0.3, 2.0, 8.0, 30.0])[:, None, None]
    p = (temps * torch.randn(4, 197, 197, generator=gen)).softmax(-1)
    planes, w, sx = input_planes(p, 8, signed=False)
    full = sx * 255.0
    e = torch.log2(full.double())
    assert torch.equal(e, e.round()), "full scale is not a power of two"
    pmax = p.amax(-1, keepdim=True)
    assert bool((full >= pmax).all()) and bool((full < 2 * pmax).all())
    rebuilt = (planes * w.view(-1, 1, 1, 1)).sum(0) * sx
    err = (rebuilt - p).abs()
    assert bool((err <= 0.5 * sx * (1 + 1e-5)).all()), float((err / sx).max())
    assert float((err / sx).max()) > 0.45  # round to nearest: the bound is reached
    # through the crossbar arithmetic (one row input per plane, shifted back by the scale)
    hw = HardwareModel.ideal()
    cfg = AnalogConfig(weight_bits=None, input_bits=8, adc=False, write_noise="none",
                       read_noise=False, nonlinearity=False, adc_noise=False, tile_rows=64)
    v = torch.randn(4, 197, 16, generator=gen)
    mapped = map_matrix(v, v.abs().amax((-2, -1), keepdim=True), cfg, hw)
    arr = build_array(mapped, mapped.targets, cfg, hw, None)
    y = mvm(p, arr, cfg, hw, None, None, signed=False)
    torch.testing.assert_close(y, rebuilt @ v, rtol=1e-4, atol=1e-6)
    bound = 0.5 * sx * v.abs().sum(-2, keepdim=True)
    assert bool(((y - p @ v).abs() <= bound * (1 + 1e-4) + 1e-6).all())
    _, _, sx_f = input_planes(p, 8, signed=False, prob_scale="fixed")

    def row_error(scale):
        q = torch.round(p / scale) * scale
        return ((q - p).norm(dim=-1) / p.norm(dim=-1)).mean(-1)  # per temperature

    fixed, pow2 = row_error(sx_f), row_error(sx)
    assert bool((pow2 <= fixed * 1.001).all()), (fixed, pow2)
    assert float(fixed[0]) > 20 * float(pow2[0]), (fixed, pow2)  # flat rows: 20 % vs 0.3 %
