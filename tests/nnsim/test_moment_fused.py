"""The moment kernel's fused passes (``nnsim/kernels/moment.c``, issue 17 round 5) against the
torch operations they replace: input quantization, the per-column readout terms of the K/V
writes, the output epilogue (gain, noise, scales) and the AVX-512 Gaussian blocks, each bit
for bit (or, for the readout terms, to float32 rounding where a CPU's torch kernels do not
fuse their multiply-adds), so that the model computes what it did before."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nnsim import kernels
from nnsim.analog import (
    AnalogConfig,
    _chip_keys,
    _colterms_kernel,
    _epilogue_kernel,
    _moment_lib,
    _quantize_kernel,
    _readout_var,
    quantize_inputs,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _lib():
    lib = _moment_lib(AnalogConfig(), torch.zeros(1))
    if lib is None:
        pytest.skip("no C compiler: the moment kernel cannot be built (the torch path runs)")
    return lib


def test_vector_gaussians_equal_the_scalar_generator():
    """The AVX-512 blocks of 16 counters (rng.h's imc_normal64_stream, where built) give the
    scalar Philox4x32-10 + Box-Muller's bits for the moment stream, for any length (blocks
    and tail); another key gives other numbers."""
    lib = _lib()
    for n in (1, 63, 64, 1000, 4099):
        a, b = torch.empty(n), torch.empty(n)
        lib.imc_moment_normal(987654321, n, kernels.ptr(a))
        lib.imc_moment_normal_scalar(987654321, n, kernels.ptr(b))
        assert torch.equal(a, b), n
    c = torch.empty(1000)
    lib.imc_moment_normal(987654322, 1000, kernels.ptr(c))
    assert not torch.equal(c, a[:1000])


@pytest.mark.parametrize("signed,prob_scale", [(True, "row_pow2"), (False, "row_pow2"),
                                               (False, "fixed")])
def test_kernel_quantization_equals_quantize_inputs(signed, prob_scale):
    """Codes and per-row scales of ``_quantize_kernel`` equal ``quantize_inputs``' bit for bit:
    signed rows, softmax-like rows (values outside [0, 1] clamped, a power-of-two maximum, an
    all-zero row), a non-contiguous input and one row of one element."""
    lib = _lib()
    g = torch.Generator().manual_seed(5)
    for shape in ((7, 3, 17, 16), (300, 64), (5, 1)):
        x = torch.randn(shape, generator=g) * 3
        if not signed:
            x = torch.softmax(x, -1)
            x[0, ...] = 0.0
            if shape[-1] > 2:
                x[-1, ..., 0], x[-1, ..., 1] = 1.5, -0.25  # clamped to [0, 1]
                x.view(-1, shape[-1])[1, :] = 0.0
                x.view(-1, shape[-1])[1, 0] = 0.125  # an exact power of two
        for xx in (x, x.transpose(-2, -1) if x.dim() > 2 else x):
            q_ref, s_ref = quantize_inputs(xx, 8, signed, prob_scale)
            q, s = _quantize_kernel(lib, xx, 8, signed, prob_scale)
            assert torch.equal(s, s_ref), (shape, signed, prob_scale)
            assert torch.equal(q, q_ref), (shape, signed, prob_scale)


def _gaussians(lib, key: int, n: int) -> torch.Tensor:
    z = torch.empty(n)
    lib.imc_moment_normal(key, n, kernels.ptr(z))
    return z


@pytest.mark.parametrize("per_row", [False, True])
def test_epilogue_equals_the_torch_operations_on_the_kernels_gaussians(per_row):
    """``((y gain + z sd) sx) scale`` in one kernel pass equals the torch path's separate
    operations on the same Gaussians (the kernel's generator, one key per chip drawn from the
    chip's generator, element = flat index within the chip's block), for one chip and for
    two chips in one call, with a per-column or a per-row variance; without noise only the
    scales apply. Any factor off (sd, sx, the gain, the per-chip key) fails."""
    lib = _lib()
    g = torch.Generator().manual_seed(6)
    chips, L, M, C = 2, 3, 5, 7
    y0 = torch.randn(chips, L, M, C, generator=g)
    var = torch.rand(chips, L, M if per_row else 1, C, generator=g) + 0.1
    sx = torch.rand(chips, L, M, 1, generator=g) + 0.5
    scale = torch.rand(chips, L, 1, 1, generator=g) + 0.5
    gens = [torch.Generator().manual_seed(10 + i) for i in range(chips)]
    keys = _chip_keys([torch.Generator().manual_seed(10 + i) for i in range(chips)])
    y = _epilogue_kernel(lib, y0.clone(), var, sx, scale, 1.7, 0.9, gens)
    sd = (var * 1.7).sqrt()
    for k in range(chips):
        z = _gaussians(lib, int(keys[k]), L * M * C).view(L, M, C)
        ref = y0[k].mul(0.9).add(z.mul(sd[k])).mul(sx[k]).mul(scale[k])
        assert torch.equal(y[k], ref), k
    one = _epilogue_kernel(lib, y0[1].clone(), var[1], sx[1], scale[1], 1.7, 0.9,
                           [torch.Generator().manual_seed(11)])
    assert torch.equal(one, y[1])  # a chip alone draws what it draws in a chip batch
    plain = _epilogue_kernel(lib, y0.clone(), None, sx, scale, 1.7, 1.0, gens)
    assert torch.equal(plain, y0.mul(sx).mul(scale))


@pytest.mark.parametrize("kw", [{}, dict(adc=False), dict(nonlinearity=False),
                                dict(read_noise=False), dict(adc_full_scale=0.5),
                                dict(adc_noise=False)])
def test_column_terms_equal_readout_var(hw_tt, kw):
    """``_colterms_kernel`` (expected currents, fused-table transfer gain, read and spread
    variance, the tile ADC's LSB from the largest digit sum over the matrix's columns)
    equals ``moment_write``'s torch operations and ``_readout_var`` on the same column sums:
    bit for bit where torch's addcmul fuses its multiply-add (this CPU), else to float32
    rounding; a wrong LSB (over the tiles instead of the columns) or a missing term fails."""
    lib = _lib()
    cfg = dataclasses.replace(AnalogConfig(fidelity="moment"), **kw)
    hw, adc = hw_tt, hw_tt.adc()
    g = torch.Generator().manual_seed(7)
    t, rows, n_lv = 3, 64, hw.levels - 1
    sums = torch.rand(4, 10, t, 2, 2, 2, 2, generator=g) * 60
    sums[..., 1] = sums[..., 1].round()
    sums[0, 0, 0, 0, 0, 0, 0] = -5.0  # a negative current: gain 1, the tables' first cell
    n_r = torch.tensor([64.0, 64.0, 30.0])[:, None, None, None]
    a_mg = 0.013 + hw.g_min_s * n_lv / (hw.g_max_s - hw.g_min_s)
    gk, vk = _colterms_kernel(lib, sums, n_r, a_mg, cfg, hw, adc, rows, n_lv)
    u_bar = 0.5 * (sums[..., 0] + a_mg * n_r)
    lsb = None
    if cfg.adc:
        if cfg.adc_full_scale == "tile":
            grp = sums[..., 1].amax(-5, keepdim=True).clamp(min=1.0)
            i_fs = hw.v_read_v * (hw.g_min_s * rows + (hw.g_max_s - hw.g_min_s) / n_lv * grp)
        else:
            i_fs = torch.full_like(u_bar[..., :1, :, :, :, :], float(cfg.adc_full_scale)
                                   * rows * hw.g_max_s * hw.v_read_v)
        lsb = i_fs / (hw.unit_a * adc.max_code)
    gt, vt = _readout_var(u_bar, lsb, cfg, hw, adc)
    a, b, c = torch.randn(64, generator=g), torch.randn(64, generator=g), torch.rand(64) * 100
    fused = torch.equal(torch.addcmul(a, c, b), (a.double() + c.double() * b.double()).float())
    tol = dict(rtol=0, atol=0) if fused else dict(rtol=1e-6, atol=0)
    if gt is None:
        assert gk is None
    else:
        torch.testing.assert_close(gk, gt, **tol)
    torch.testing.assert_close(vk, vt, **tol)


def test_matrix_absmax_equals_torch():
    """The K/V writes' full-scale magnitude per matrix from the kernel (one pass over the
    kernel's layout) is ``abs().amax((-2, -1))``'s, and a larger element anywhere changes it."""
    from nnsim.analog import matrix_absmax

    lib = _lib()
    g = torch.Generator().manual_seed(8)
    w = torch.randn(3, 4, 16, 17, generator=g)
    assert torch.equal(matrix_absmax(lib, w), w.abs().amax((-2, -1), keepdim=True))
    w[2, 1, 15, 16] = -40.0
    m = matrix_absmax(lib, w)
    assert float(m[2, 1, 0, 0]) == 40.0 and torch.equal(m, w.abs().amax((-2, -1), keepdim=True))


@pytest.mark.parametrize("shape,clip", [((6, 3, 16, 17), None), ((2, 3, 130, 40), (2.0, 0.5)),
                                        ((3, 2, 17, 16), (1.0, 0.75))])
def test_vector_write_pass_equals_the_scalar_loop(hw_tt, shape, clip, monkeypatch):
    """The K/V write's AVX-512 passes (16 rows per step: the column sums' digit counts by
    popcount, the element pass with the level tables in registers) give the scalar loops'
    bits, effective matrix and readout variance, with write noise (the same Gaussians),
    ClipFormer, three tiles with a short last one and a 16-row tail; one sign's gain or
    count, or the clip, dropped in the lanes fails."""
    import nnsim.analog as analog
    from nnsim.analog import moment_write

    _lib()
    g = torch.Generator().manual_seed(9)
    w = torch.randn(shape, generator=g)
    w[..., 0, 0] = 0.0
    sm = w.abs().amax((-2, -1), keepdim=True)
    cfg = AnalogConfig(fidelity="moment", readout_kernel="c", gamma=2.0)
    out = {}
    for simd in (True, False):
        monkeypatch.setattr(analog, "MOMENT_KERNEL_SIMD", simd)
        gen = torch.Generator().manual_seed(3)
        mw = moment_write(w, sm, cfg, hw_tt, hw_tt.adc(), gen, clip=clip)
        out[simd], out[(simd, "var")] = mw.w_eff, mw.var
    assert torch.equal(out[True], out[False])
    assert torch.equal(out[(True, "var")], out[(False, "var")])
    noiseless = moment_write(w, sm, cfg, hw_tt, hw_tt.adc(), None, clip=clip, noise=False).w_eff
    assert not torch.equal(out[True], noiseless)  # the noise is there
