"""The moment mode's C kernel (``nnsim/kernels/moment.c``, issue 17) against the torch path it
replaces: the noiseless K/V write to float rounding, the write noise and the output noise in
distribution (the kernel draws from its own counter-based generator), and reproducibility."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nnsim.analog import AnalogConfig, _moment_lib, moment_write, mvm_moment

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _lib():
    lib = _moment_lib(AnalogConfig(), torch.zeros(1))
    if lib is None:
        pytest.skip("no C compiler: the moment kernel cannot be built (the torch path runs)")
    return lib


CASES = [((6, 3, 16, 17), None, {}), ((4, 2, 17, 16), (2.0, 0.5), {}),
         ((2, 3, 130, 40), None, {}),  # three tiles of 64 rows, the last one short
         ((3, 2, 24, 9), None, dict(nonlinearity=False, read_noise=False, adc=False)),
         ((5, 20, 7), (1.0, 0.75), dict(adc_full_scale=0.5))]


@pytest.mark.parametrize("shape,clip,kw", CASES)
def test_kernel_write_equals_the_torch_path_noiseless(hw_tt, shape, clip, kw):
    """Without write noise the kernel's effective matrix and readout variance are the torch
    path's (the per-column tables' sums unrolled per element: float rounding only), for
    every tile layout, ClipFormer, the ideal readout and a fixed ADC range."""
    _lib()
    g = torch.Generator().manual_seed(1)
    w = torch.randn(shape, generator=g)
    w[..., 0, 0] = 0.0
    sm = w.abs().amax((-2, -1), keepdim=True)
    c = AnalogConfig(fidelity="moment", readout_kernel="c", **kw)
    t = dataclasses.replace(c, readout_kernel="torch")
    a = moment_write(w, sm, c, hw_tt, hw_tt.adc(), None, clip=clip, noise=False)
    b = moment_write(w, sm, t, hw_tt, hw_tt.adc(), None, clip=clip, noise=False)
    assert a.w_eff.shape == b.w_eff.shape
    scale = b.w_eff.abs().max()
    torch.testing.assert_close(a.w_eff, b.w_eff, rtol=0, atol=2e-7 * float(scale))
    if b.var is None:
        assert a.var is None
    else:
        torch.testing.assert_close(a.var, b.var, rtol=1e-6, atol=0)
    assert a.tiles == b.tiles and a.conv_cols == b.conv_cols


def test_kernel_write_noise_has_the_torch_paths_distribution(hw_tt):
    """The drawn write noise (written minus noiseless) per element: zero mean and the torch
    path's variance, element by element pooled over 40 draws (a 2x variance fails), and the
    same seed gives the same matrix."""
    _lib()
    g = torch.Generator().manual_seed(2)
    w = torch.randn(4, 2, 16, 17, generator=g)
    sm = w.abs().amax((-2, -1), keepdim=True)
    c = AnalogConfig(fidelity="moment", readout_kernel="c", gamma=2.0)
    t = dataclasses.replace(c, readout_kernel="torch")
    mean = moment_write(w, sm, t, hw_tt, hw_tt.adc(), None, noise=False).w_eff
    gk, gt = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    dk = torch.stack([moment_write(w, sm, c, hw_tt, hw_tt.adc(), gk).w_eff - mean
                      for _ in range(40)])
    dt = torch.stack([moment_write(w, sm, t, hw_tt, hw_tt.adc(), gt).w_eff - mean
                      for _ in range(40)])
    vk, vt = dk.double().pow(2).mean(0), dt.double().pow(2).mean(0)
    ok = vt > 1e-6 * float(vt.max())
    ratio = float((vk[ok] / vt[ok]).mean())  # per element, then averaged: ~1 +- 0.03
    assert 0.9 < ratio < 1.1, ratio
    z = float(dk.double().mean() / (vk.mean() / dk.numel()).sqrt())
    assert abs(z) < 5.0, z
    a = moment_write(w, sm, c, hw_tt, hw_tt.adc(), torch.Generator().manual_seed(9)).w_eff
    b = moment_write(w, sm, c, hw_tt, hw_tt.adc(), torch.Generator().manual_seed(9)).w_eff
    assert torch.equal(a, b)


def test_kernel_output_noise_has_the_predicted_variance(hw_tt):
    """mvm_moment's output noise from the kernel: per output, mean zero and variance
    ``var x var_scale x (input scale x output scale)^2`` (a 2x variance fails), and the
    kernel's Gaussians are standard normal (mean, variance, 2-sigma tail)."""
    lib = _lib()
    from nnsim import kernels

    z = torch.empty(1 << 18)
    lib.imc_moment_normal(12345, z.numel(), kernels.ptr(z))
    assert abs(float(z.mean())) < 0.01 and abs(float(z.var()) - 1.0) < 0.01
    assert abs(float((z.abs() > 2).float().mean()) - 0.0455) < 0.003
    g = torch.Generator().manual_seed(4)
    wt = torch.randn(2, 3, 32, 12, generator=g)  # K^T-like: (B, H, rows, cols)
    sm = wt.abs().amax((-2, -1), keepdim=True)
    cfg = AnalogConfig(fidelity="moment", readout_kernel="c")
    arr = moment_write(wt, sm, cfg, hw_tt, hw_tt.adc(), None, noise=False)
    x = torch.randn(2, 3, 50, 32, generator=g)
    y0 = mvm_moment(x, arr, cfg, hw_tt, hw_tt.adc(), None, noise=False)
    ys = torch.stack([mvm_moment(x, arr, cfg, hw_tt, hw_tt.adc(), g, var_scale=1.7)
                      for _ in range(30)])
    from nnsim.analog import quantize_inputs

    _, sx = quantize_inputs(x, cfg.input_bits, True, cfg.prob_scale)
    y_mean = y0  # the noiseless mean, after the input and output scales
    pred = (arr.var * 1.7) * (sx * arr.scale) ** 2
    emp = (ys - y_mean).double().pow(2).mean(0)
    ratio = float((emp / pred.double()).mean())
    assert 0.93 < ratio < 1.07, ratio
    zz = (ys - y_mean).double() / pred.double().sqrt()
    assert abs(float(zz.mean())) < 0.02


def test_torch_readout_kernel_setting_runs_the_torch_path(hw_tt, monkeypatch):
    """``readout_kernel="torch"`` never loads the moment kernel; ``"c"`` on a non-float32
    tensor is an error naming the need."""
    import nnsim.analog as analog

    def boom(*a, **k):
        raise AssertionError("kernel loaded")

    monkeypatch.setattr(analog.kernels, "load", boom)
    w = torch.randn(2, 16, 17)
    sm = w.abs().amax((-2, -1), keepdim=True)
    cfg = AnalogConfig(fidelity="moment", readout_kernel="torch")
    moment_write(w, sm, cfg, hw_tt, hw_tt.adc(), None)
    with pytest.raises(ValueError, match="float32"):
        _moment_lib(dataclasses.replace(cfg, readout_kernel="c"), w.double())


def test_code_moments_window_equals_every_threshold(hw_tt):
    """``_code_moments`` evaluates the Gaussian CDF only at the thresholds within 8 sd of the
    input (those below count as crossed): the code's mean and variance equal the sum over
    every threshold of every instance (float64 reference) to float32 rounding."""
    from nnsim.analog import _code_moments
    from nnsim.hardware import HardwareModel

    for bits in (3, 4):
        hw = HardwareModel.ideal(adc_bits=bits) if bits not in hw_tt.adcs else hw_tt
        adc = hw.adc(bits) if bits in hw.adcs else hw_tt.adc(4)
        g = torch.Generator().manual_seed(bits)
        n = 20000
        x = torch.rand(n, generator=g) * (adc.max_code + 3) - 1.5
        sd = torch.rand(n, generator=g) * 0.6 + 0.01
        inst = torch.randint(0, adc.instances, (n,), generator=g)
        e1, var = _code_moments(x, sd, inst if adc.instances > 1 else None, adc)
        th = torch.as_tensor(adc.thresholds_lsb, dtype=torch.float64)
        tn = th[inst if adc.instances > 1 else torch.zeros(n, dtype=torch.long)]
        p = 0.5 * torch.erfc((tn - x.double()[:, None]) / (sd.double()[:, None] * 2 ** 0.5))
        k = torch.arange(th.shape[1], dtype=torch.float64)
        r1 = p.sum(1)
        r2 = ((2 * k + 1) * p).sum(1)
        torch.testing.assert_close(e1.double(), r1, rtol=0, atol=2e-5 * adc.max_code)
        torch.testing.assert_close(var.double(), (r2 - r1 ** 2).clamp(min=0), rtol=0,
                                   atol=5e-5 * adc.max_code ** 2)
