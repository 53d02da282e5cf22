"""The moment fidelity's K/V write path (``moment_write``) against the sliced write it replaces.

References: ``write_levels`` (the per-cell write every ``bit`` inference does) drawn many times,
and ``map_matrix`` + ``write_levels`` + ``build_array`` + ``_moment_terms`` (the moment mode's
per-cell path) drawn many times on the same matrix.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nnsim.analog import (
    AnalogConfig,
    _moment_terms,
    build_array,
    map_matrix,
    moment_write,
    write_levels,
    write_moments,
)

W2_8BIT = float(sum(4.0 ** j for j in range(8)))


@pytest.mark.parametrize("source,gamma", [("levels", 5.0), ("samples", 3.0), ("fit", 5.0),
                                          ("parametric", 4.0)])
def test_cell_write_moments_equal_the_drawn_cells(hw_tt, source, gamma):
    """Per target level, ``write_moments`` is the mean and variance of ``write_levels``'
    cells (bias once, gamma on the zero-mean part, the floor at 0 S). At gamma 5 the floor
    cuts the noisy levels' Gaussians. (Mutation checked: variance x2, or the floor dropped
    from the censored-Gaussian moments, fails here.)"""
    sigma = 0.12 if source == "parametric" else None
    mean, var = write_moments(hw_tt, source, "single", gamma, sigma, True)
    n = 40000
    g = torch.Generator().manual_seed(3)
    tg = torch.arange(hw_tt.levels, dtype=torch.float32).repeat_interleave(n).reshape(-1, n)
    lv = write_levels(tg, hw_tt, source, "single", gamma, sigma, g, True, True).double()
    se = (lv.var(1) / n).sqrt().clamp(min=1e-6)
    assert float(((lv.mean(1) - mean).abs() / se).max()) < 5.0, (lv.mean(1), mean)
    ok = var > 0
    ratio = lv.var(1)[ok] / var[ok]
    assert float((ratio - 1).abs().max()) < 0.05, ratio
    assert torch.equal(var[~ok], lv.var(1)[~ok]) or float(lv.var(1)[~ok].max()) < 1e-12
    floor = -(hw_tt.levels - 1) * hw_tt.g_min_s / (hw_tt.g_max_s - hw_tt.g_min_s)
    assert float(lv.min()) >= floor - 1e-6


@pytest.mark.parametrize("source", ["levels", "samples", "fit"])
def test_moment_write_equals_the_sliced_write_in_mean_and_variance(hw_tt, source):
    """An 80 x 9 matrix (two 64-row tiles) written per inference: the effective matrix of
    ``moment_write`` (one Gaussian per element) has the mean and the variance of the sliced
    per-cell path's effective matrix over 300 writes, element by element, and the same
    predicted readout variance (transfer gain per slice, sign, column and tile; ADC full
    scale per tile). (Mutation checked: the write variance x2 or x0.5, the readout variance
    x2, fail here.)"""
    cfg = AnalogConfig(fidelity="moment", gamma=3.0, write_noise=source)
    adc = hw_tt.adc()
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 1, 80, 9, generator=g)
    w[..., :3] *= 0.2  # columns of small currents beside full ones
    sm = w.abs().amax((-2, -1), keepdim=True)
    n = 300
    eff, ro = [], []
    for _ in range(n):
        mp = map_matrix(w, sm, cfg, hw_tt)
        pr = write_levels(mp.targets, hw_tt, source, "single", cfg.gamma, None, g, True, True)
        we, var = _moment_terms(build_array(mp, pr, cfg, hw_tt, None), cfg, hw_tt, adc, W2_8BIT)
        eff.append(we)
        ro.append(var)
    eff_t, ro_t = torch.stack(eff).double(), torch.stack(ro).double()
    exact = moment_write(w, sm, cfg, hw_tt, adc, g, noise=False)
    sd = eff_t.std(0)
    noisy = sd > 1e-6
    z = (eff_t.mean(0) - exact.w_eff)[noisy] / (sd[noisy] / n ** 0.5)
    assert 0.7 < float((z ** 2).mean()) < 1.4, float((z ** 2).mean())
    torch.testing.assert_close(exact.w_eff.double()[~noisy], eff_t[0][~noisy])
    drawn = torch.stack([moment_write(w, sm, cfg, hw_tt, adc, g).w_eff for _ in range(n)])
    v_ratio = float(drawn.double().var(0).sum() / eff_t.var(0).sum())
    assert 0.93 < v_ratio < 1.07, v_ratio
    torch.testing.assert_close(exact.var.double(), ro_t.mean(0), rtol=0.01, atol=0.0)
    torch.testing.assert_close(exact.scale, sm / 255)
    assert (exact.tiles, exact.conv_cols) == (2, 8 * 9)


def test_moment_write_without_readout_errors_is_the_quantized_matrix(hw_tt):
    """Exact readout and no write noise: the effective matrix is the 8-bit quantized (and
    ClipFormer-clipped) value, as ``map_matrix`` gives it."""
    cfg = dataclasses.replace(AnalogConfig(fidelity="moment", write_noise="none", adc=False,
                                           read_noise=False, nonlinearity=False))
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 2, 16, 17, generator=g)
    sm = w.abs().amax((-2, -1), keepdim=True)
    for clip in (None, (2.0, 0.25)):
        mw = moment_write(w, sm, cfg, hw_tt, None, g, clip=clip)
        mp = map_matrix(w, sm, cfg, hw_tt, clip)
        want = (mp.targets * (4.0 ** torch.arange(4.0))[:, None, None, None]).sum(-4)
        want = want[..., 0, :, :] - want[..., 1, :, :]
        torch.testing.assert_close(mw.w_eff, want)
        assert mw.var is None


@pytest.mark.parametrize("full_scale", ["tile", 0.5])
def test_moment_write_at_gamma_0_is_the_sliced_path_exactly(hw_tt, full_scale):
    """Without the stochastic part (gamma 0; the per-level bias stays) the programmed cells
    are their means, so ``moment_write`` and the sliced path agree to rounding: the transfer
    gain of every slice, sign, tile and column, the ADC full scale and the readout variance.
    (Mutation checked: a gain dropped from the top slice, or the ADC full scale x2, fails
    here.)"""
    cfg = AnalogConfig(fidelity="moment", gamma=0.0, write_noise="levels",
                       adc_full_scale=full_scale)
    adc = hw_tt.adc()
    g = torch.Generator().manual_seed(4)
    w = torch.randn(2, 3, 150, 7, generator=g)  # three tiles, the last one of 22 rows
    w[..., 0] *= 0.1
    sm = w.abs().amax((-2, -1), keepdim=True)
    mp = map_matrix(w, sm, cfg, hw_tt)
    pr = write_levels(mp.targets, hw_tt, "levels", "single", 0.0, None, g, True, True)
    arr = build_array(mp, pr, cfg, hw_tt, None)
    want_w, want_v = _moment_terms(arr, cfg, hw_tt, adc, W2_8BIT)
    got = moment_write(w, sm, cfg, hw_tt, adc, g)
    # the sliced path's last tile is zero-padded to 64 rows: its padding cells carry no
    # input but shift the tile's expected current by (b - g0)/2 per row; compare on an
    # exact multiple of the tile height instead where that matters
    torch.testing.assert_close(got.w_eff[..., :128, :], want_w[..., :128, :], rtol=2e-5,
                               atol=1e-4)
    w2 = w[..., :128, :]
    sm2 = w2.abs().amax((-2, -1), keepdim=True)
    mp2 = map_matrix(w2, sm2, cfg, hw_tt)
    pr2 = write_levels(mp2.targets, hw_tt, "levels", "single", 0.0, None, g, True, True)
    w_ref, v_ref = _moment_terms(build_array(mp2, pr2, cfg, hw_tt, None), cfg, hw_tt, adc,
                                 W2_8BIT)
    got2 = moment_write(w2, sm2, cfg, hw_tt, adc, g)
    torch.testing.assert_close(got2.w_eff, w_ref, rtol=2e-5, atol=1e-4)
    torch.testing.assert_close(got2.var, v_ref, rtol=2e-5, atol=0.0)
    assert want_v is not None and float((got.var / want_v - 1).abs().max()) < 0.02


def test_moment_gain_and_variance_calibrated_against_bit_on_held_out_inputs(
        synthetic_lookups, monkeypatch):
    """S V at a 4-bit ADC and 16-row tiles: softmax rows (most probabilities small) drive a
    40 x 16 V on crossbars. The bit-level output is a scaled copy of the linear moment mean
    (the ADC's low codes lose or gain small column sums) plus an error. Calibrated on one
    input set (``moment_fit_terms``: the sums ``calibrate_moment`` uses), on other inputs the
    moment mode's drawn output has the bit-level output's gain on the moment mean within 3 %
    and its error variance around it within 25 %. The linear readout model alone (the
    low-count conversions off: ``moment_low_counts`` is tested below). (Mutation checked:
    the mean gain dropped from ``mvm_moment``, or the variance factor x2 or x0.5, fails
    here.)"""
    import nnsim.analog as na
    from nnsim.analog import moment_fit_terms, mvm, mvm_moment
    from nnsim.hardware import HardwareModel

    monkeypatch.setattr(na, "MOMENT_EXACT_BITS", 0)

    hw = HardwareModel.from_lookup(synthetic_lookups, process="tt", vdd_v=1.8, temp_c=27.0,
                                   adc_bits=4)
    cfg = AnalogConfig(fidelity="moment", tile_rows=16)
    bit = dataclasses.replace(cfg, fidelity="bit")
    adc = hw.adc()
    g = torch.Generator().manual_seed(0)
    v = torch.randn(40, 16, generator=g)
    mp = map_matrix(v, v.abs().amax(), cfg, hw)
    arr = build_array(mp, write_levels(mp.targets, hw, "levels", "single", 1.0, None, g, True,
                                       True), cfg, hw, None)

    def probs(n: int, seed: int) -> torch.Tensor:
        gg = torch.Generator().manual_seed(seed)
        return (torch.randn(n, 40, generator=gg) * 2.5).softmax(-1)

    t = moment_fit_terms(probs(200, 1), arr, cfg, hw, adc, g, signed=False)
    gain = t["xy"] / t["yy"]
    factor = (t["bb"] - 2 * gain * t["xy"] + gain ** 2 * t["yy"]) / t["pred"]
    assert abs(gain - 1) > 0.06, gain  # the ADC's gain is there to be modelled
    x = probs(400, 2)
    y0 = mvm_moment(x, arr, cfg, hw, adc, g, signed=False, noise=False).double()
    y_bit = mvm(x, arr, bit, hw, adc, g, signed=False).double()
    y_mom = mvm_moment(x, arr, cfg, hw, adc, g, signed=False, var_scale=factor,
                       mean_gain=gain).double()

    def fit(y: torch.Tensor) -> tuple[float, float]:
        a = float((y * y0).sum() / (y0 * y0).sum())
        return a, float(((y - a * y0) ** 2).mean())

    (a_bit, e_bit), (a_mom, e_mom) = fit(y_bit), fit(y_mom)
    assert abs(a_mom / a_bit - 1) < 0.03, (a_mom, a_bit)
    assert 0.8 < e_mom / e_bit < 1.25, (e_mom, e_bit, factor)


@pytest.mark.parametrize("signed", [False, True])
def test_moment_low_counts_are_the_bit_readout_in_mean_and_variance(synthetic_lookups,
                                                                    monkeypatch, signed):
    """4-bit ADC, 16-row tiles, a 40 x 12 matrix (three tiles, the last of 8 rows): with every
    active-row count computed in expectation (``MOMENT_EXACT_ROWS`` = 16), the moment mode's
    noiseless mean is the bit-level path's mean over 40 draws of the same written array
    (read and ADC noise per conversion; no transfer spread, which bit draws once per array)
    output by output (z-scores), and its predicted variance is the draws' variance within
    10 %. The linear readout model alone misses the mean by far (so the check can fail).
    Softmax rows (unsigned) and signed inputs (two's complement planes). (Mutation checked:
    the correction x2, or its variance term x2, fails here.)"""
    import nnsim.analog as na
    from nnsim.analog import _moment_terms, input_scale, mvm, mvm_moment
    from nnsim.hardware import HardwareModel

    hw = HardwareModel.from_lookup(synthetic_lookups, process="tt", vdd_v=1.8, temp_c=27.0,
                                   adc_bits=4)
    cfg = AnalogConfig(fidelity="moment", tile_rows=16, nonlinearity=False)
    bit = dataclasses.replace(cfg, fidelity="bit", sampling="full")
    adc = hw.adc()
    g = torch.Generator().manual_seed(4)
    v = torch.randn(40, 12, generator=g)
    mp = map_matrix(v, v.abs().amax(), cfg, hw)
    inst = torch.randint(0, adc.instances, (3, 1, mp.targets.shape[-4] * 2 * 12), generator=g)
    arr = build_array(mp, write_levels(mp.targets, hw, "levels", "single", 1.0, None, g, True,
                                       True), cfg, hw, inst)
    x = torch.randn(60, 40, generator=g) * 2.5
    x = x if signed else x.softmax(-1)
    draws = torch.stack([mvm(x, arr, bit, hw, adc, g, signed=signed) for _ in range(40)])
    mean_b, var_b = draws.double().mean(0), draws.double().var(0)
    monkeypatch.setattr(na, "MOMENT_EXACT_ROWS", 16)
    y0 = mvm_moment(x, arr, cfg, hw, adc, g, signed=signed, noise=False).double()
    z2 = float((((mean_b - y0) / (var_b / 40).sqrt().clamp(min=1e-9)) ** 2).mean())
    assert 0.5 < z2 < 1.8, z2
    sx = input_scale(x, 8, signed)
    qmax = 127 if signed else 255
    xq = (torch.round(x / sx).clamp(-qmax, qmax) if signed
          else torch.round(x.clamp(0, 1) / sx).clamp(0, qmax))
    _, var = _moment_terms(arr, cfg, hw, adc, W2_8BIT)
    dvar = na.moment_low_counts(xq, signed, arr, cfg, hw, adc)[1]
    pred = ((var + dvar).clamp(min=0) * (sx * arr.scale) ** 2).double()
    assert abs(float(var_b.mean() / pred.mean()) - 1) < 0.1, (var_b.mean(), pred.mean())
    monkeypatch.setattr(na, "MOMENT_EXACT_BITS", 0)
    y_lin = mvm_moment(x, arr, cfg, hw, adc, g, signed=signed, noise=False).double()
    z2_lin = float((((mean_b - y_lin) / (var_b / 40).sqrt().clamp(min=1e-9)) ** 2).mean())
    assert z2_lin > 4.0, (z2_lin, z2)
