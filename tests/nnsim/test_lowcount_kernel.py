"""The low-count conversions' C kernel (``nnsim/kernels/lowcount.c``, issue 17) against the
torch path of ``analog.moment_low_counts`` it replaces (the torch path is itself tested
against the bit-level readout in tests/nnsim/test_moment.py): the same correction and
variance term to float rounding, for 3- and 4-bit ADCs, signed and unsigned inputs, K/V-like
arrays with leading dimensions and a static array of three tiles."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nnsim.analog import (
    AnalogConfig,
    _lowcount_lib,
    build_array,
    map_matrix,
    moment_low_counts,
    quantize_inputs,
    write_levels,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def hw_coarse(tmp_path_factory):
    """Synthetic lookups with 3- and 4-bit ADCs (8 instances, 0.2 LSB noise, DNL, offset)."""
    from nnsim.hardware import HardwareModel
    from nnsim.synthetic import write_synthetic_adc, write_synthetic_crossbar

    d = tmp_path_factory.mktemp("lowcount")
    files = (write_synthetic_crossbar(d / "crossbar.h5", seed=1),
             write_synthetic_adc(d / "adc.h5", seed=2, bits=(3, 4)))
    return {b: HardwareModel.from_lookup(files, process="tt", vdd_v=1.8, temp_c=27.0,
                                         adc_bits=b) for b in (3, 4)}


def _lib():
    if _lowcount_lib(AnalogConfig(readout_kernel="auto"), torch.zeros(1)) is None:
        pytest.skip("no C compiler: the low-count kernel cannot be built (the torch path runs)")


def _array(hw, cfg, shape, g, instances: bool):
    w = torch.randn(shape, generator=g)
    sm = w.abs().amax((-2, -1), keepdim=True)
    mp = map_matrix(w, sm, cfg, hw)
    r, c = shape[-2:]
    t = -(-r // cfg.tile_rows)
    ns = mp.targets.shape[-4]
    inst = None
    if instances:
        inst = torch.randint(0, hw.adc().instances, (*shape[:-2], t, 1, ns * 2 * c),
                             generator=g)
    prog = write_levels(mp.targets, hw, "levels", "single", 1.0, None, g, True, True)
    return build_array(mp, prog, cfg, hw, inst)


CASES = [  # (matrix shape, input rows, tile rows, config overrides, ADC instances)
    ((3, 2, 16, 17), 17, 64, {}, True),  # K^T of 3 images x 2 heads: 16 rows, 17 tokens
    ((3, 2, 17, 16), 17, 64, {}, True),  # V: 17 token rows
    ((40, 12), 30, 16, {}, True),  # static: three tiles of 16 rows, the last of 8
    ((2, 24, 9), 11, 16, dict(nonlinearity=False, read_noise=False), False),
    ((2, 20, 7), 9, 16, dict(nonlinearity=False), True),  # a last tile of 4 rows
]


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("shape,m,tile_rows,kw,instances", CASES)
def test_kernel_low_counts_equal_the_torch_path(hw_coarse, bits, signed, shape, m, tile_rows,
                                                kw, instances):
    """``moment_low_counts`` through the kernel (``readout_kernel="c"``) gives the torch
    path's correction and variance term element by element, to float rounding (the sums of
    up to 8 planes x 8 slice-signs, in another order; erfcf against torch's erfc). (Mutation
    checked: in lowcount.c the variance term's slice weights not squared, the linear
    value's ``cb - g0`` as ``cb``, the code offset dropped or the read variance x2 fail here.)"""
    _lib()
    hw = hw_coarse[bits]
    adc = hw.adc()
    if bits == 3:  # a code offset (the synthetic ADC has none)
        adc = dataclasses.replace(adc, code_offset=0.25)
    cfg = AnalogConfig(fidelity="moment", tile_rows=tile_rows, readout_kernel="c", **kw)
    g = torch.Generator().manual_seed(7 * bits + len(shape))
    arr = _array(hw, cfg, shape, g, instances)
    x = torch.randn(*shape[:-2], m, shape[-2], generator=g) * 2.0
    if not signed:  # softmax rows: sparse high planes, many low counts
        x = (x * 3).softmax(-1)
    xq, _ = quantize_inputs(x, cfg.input_bits, signed, cfg.prob_scale)
    corr_c, dvar_c = moment_low_counts(xq, signed, arr, cfg, hw, adc)
    arr.cache = None
    corr_t, dvar_t = moment_low_counts(xq, signed, arr,
                                       dataclasses.replace(cfg, readout_kernel="torch"), hw, adc)
    assert corr_c.shape == corr_t.shape and dvar_c.shape == dvar_t.shape
    assert float(corr_t.abs().max()) > 0 and float(dvar_t.abs().max()) > 0
    torch.testing.assert_close(corr_c, corr_t, rtol=0, atol=1e-5 * float(corr_t.abs().max()))
    torch.testing.assert_close(dvar_c, dvar_t, rtol=0, atol=1e-5 * float(dvar_t.abs().max()))


def test_kernel_refuses_what_it_cannot_take(hw_coarse):
    """``readout_kernel="c"`` on float64 inputs is an error naming the dtype (``"auto"``
    falls back to the torch path)."""
    cfg = AnalogConfig(fidelity="moment", readout_kernel="c")
    with pytest.raises(ValueError, match="float32"):
        _lowcount_lib(cfg, torch.zeros(2, dtype=torch.float64))
    assert _lowcount_lib(dataclasses.replace(cfg, readout_kernel="auto"),
                         torch.zeros(2, dtype=torch.float64)) is None
    assert _lowcount_lib(dataclasses.replace(cfg, readout_kernel="torch"),
                         torch.zeros(2)) is None


def test_kernel_cdf_table_is_erfc_to_float32_rounding():
    """The kernel's Gaussian CDF (a cubic-Hermite table on [-4, 6) in double, 1 beyond the
    left end, 0 beyond the right) equals ``0.5 erfc(z)`` in float64 to 1e-7 absolute (float32's
    rounding near 1 is 6e-8) over [-7, 8], and is exactly 1 below -4 and 0 from 6. (Mutation
    checked: 8 table steps per unit instead of 128 fails; so does the derivative's sign.)"""
    _lib()
    from nnsim import kernels

    lib = _lowcount_lib(AnalogConfig(readout_kernel="c"), torch.zeros(1))
    z = torch.linspace(-7.0, 8.0, 200001, dtype=torch.float32)
    p = torch.empty_like(z)
    lib.imc_lowcount_cdf(z.numel(), kernels.ptr(z, torch.float32), kernels.ptr(p, torch.float32))
    ref = 0.5 * torch.erfc(z.double())
    err = (p.double() - ref).abs()
    assert float(err.max()) < 1e-7, float(err.max())
    inner = (z > -3.9) & (z < 3.9)  # away from the saturated ends: the interpolation itself
    assert float(err[inner].max()) < 6e-8, float(err[inner].max())
    assert bool((p[z < -4.0] == 1.0).all()) and bool((p[z >= 6.0] == 0.0).all())


def test_exact_path_attention_chunks_change_the_draws_not_their_distribution(
        tiny_digits_model, hw_coarse, monkeypatch):
    """The moment mode's exact low-count path (4 bits) chunks the attention by
    ``convert.MOMENT_EXACT_CHUNK`` (56 digits images per chunk; it used to be sized for
    ``bit``: 7): 48 copies of one image through few chunks and through many give the same logits
    in mean (within 4 standard errors) and in spread over the copies (the K/V write noise and
    the output noise, drawn per chunk; variance ratio within [0.6, 1.6]), while the draws
    differ. (Mutation checked: the output noise sd x2 in one of the two runs fails; the K/V
    write noise is small against it here, so its x2 does not.)"""
    import nnsim.convert as cv
    from nnsim.data import load_dataset

    model, _ = tiny_digits_model
    hw = hw_coarse[4]
    an = cv.convert_to_analog(model, hw, AnalogConfig(fidelity="moment"), seed=None)
    cv.program_chip(an, 0)
    cv.calibrate_moment(an, [load_dataset("digits", "calib").images[:8]], seed=0)
    x = load_dataset("digits", "test").images[:1].expand(48, -1, -1, -1).contiguous()
    writes = {}
    orig = cv.AnalogAttention._write

    def count(self, w_rc, salt):
        writes[tag] = writes.get(tag, 0) + 1
        return orig(self, w_rc, salt)

    monkeypatch.setattr(cv.AnalogAttention, "_write", count)
    out = {}
    for tag, factor in (("large", cv.MOMENT_EXACT_CHUNK), ("small", 48 * cv.MOMENT_EXACT_CHUNK)):
        monkeypatch.setattr(cv, "MOMENT_EXACT_CHUNK", factor)
        cv.program_chip(an, 1)
        with torch.no_grad():
            out[tag] = an(x).double()
        monkeypatch.undo()
        monkeypatch.setattr(cv.AnalogAttention, "_write", count)
    assert writes["small"] > 4 * writes["large"], writes  # the chunkings differ
    a, b = out["large"], out["small"]
    assert not torch.equal(a, b)  # other draws
    se = ((a.var(0) + b.var(0)) / 48).sqrt().clamp(min=1e-9)
    assert float(((a.mean(0) - b.mean(0)).abs() / se).max()) < 4.0
    ratio = float(a.var(0).sum() / b.var(0).sum())
    assert 0.6 < ratio < 1.6, ratio
