"""The fused C kernel of RAP's programmed-cell MVM (``nnsim/kernels/rap_mvm.c``, issue 17
item 4) against the torch path it replaces (``SparseMVM._plane`` + ``ColumnReadout.convert``):
identical results where the conversion is deterministic, the same error distribution with
noise, bits independent of the thread count, the same seed the same bits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nnsim.hardware import HardwareModel
from nnsim.rap import MVMConfig, SparseMVM
from nnsim.rap.adc import ColumnADC
from nnsim.rap.crossbar import CellSettings, ColumnReadout
from nnsim.rap.sparse_mvm import kernel_path

pytestmark = pytest.mark.skipif(kernel_path() != "c", reason="no C compiler: torch path only")


@pytest.fixture(scope="module")
def hw_noisy(synthetic_lookups):
    """ss, 4-bit synthetic files with read noise x4, the transfer spread x20 and a 0.03-LSB
    ADC: many conversions uncertain and many certain, the per-column spread visible."""
    hw = HardwareModel.from_lookup(synthetic_lookups, process="ss", adc_bits=4)
    adcs = {b: dataclasses.replace(a, noise_lsb=0.03, _cache={}) for b, a in hw.adcs.items()}
    return dataclasses.replace(hw, read_sigma_a=hw.read_sigma_a * 4.0, adcs=adcs,
                               transfer_std=hw.transfer_std * 20.0, _cache={})


def _pair(hw, cfg, settings, w, zero_z=False):
    """The same chip twice (kernel, torch path) with one readout."""
    adc = ColumnADC.from_adc_model(hw.adc(cfg.adc_bits), cfg.shift, cfg.s_max)
    mvms = []
    for use_kernel in (True, False):
        chip = torch.Generator().manual_seed(3)
        m = SparseMVM(w, cfg, adc, chip, use_kernel=use_kernel).program(hw, settings, chip)
        if zero_z:
            m.z.zero_()
        mvms.append(m)
    r = ColumnReadout(hw, hw.adc(cfg.adc_bits), cfg.shift, max(m.max_sum_q() for m in mvms),
                      float(mvms[0].z.abs().max()), settings)
    for m in mvms:
        m.attach_readout(r)
    return mvms


def _operands(seed=0, out=10, inp=150, t=7):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(-127, 128, (out, inp), generator=g),
            torch.randint(-127, 128, (t, inp), generator=g) >> 1)


@pytest.mark.parametrize("mode,bits,shift", [("sparse", 4, None), ("sparse", 6, None),
                                             ("dense", 4, 3)])
def test_kernel_equals_torch_path_where_conversions_are_deterministic(hw_noisy, mode, bits,
                                                                      shift):
    """No read or ADC noise and no spread: every code is fixed by the programmed sums and the
    thresholds, so kernel and torch path agree exactly, counters included (3 tiles, both
    signs, every plane)."""
    w, x = _operands()
    cfg = MVMConfig(mode=mode, adc_bits=bits, adc_shift=shift)
    km, tm = _pair(hw_noisy, cfg, CellSettings(read_noise=False, adc_noise=False), w, True)
    a, b = km(x, torch.Generator().manual_seed(1)), tm(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, x @ w.T)          # the programmed cells and ADC do err
    for f in ("conversions", "cycles", "active_rows", "calls"):
        assert getattr(km.counters, f) == getattr(tm.counters, f), f
    assert km.kernel_draws == 0


def test_kernel_has_the_torch_paths_error_distribution_and_is_reproducible(hw_noisy):
    """With noise and spread: the same mean error per output and error rate as the torch
    path over repeated inferences of one chip (fails with the kernel's sigma x2 or without
    the spread); same seed same bits; 1 vs 2 threads the same bits."""
    w, x = _operands(1, out=12, inp=100, t=5)
    cfg = MVMConfig(mode="sparse", adc_bits=4)
    km, tm = _pair(hw_noisy, cfg, CellSettings(), w)
    ref = (x @ w.T).double()
    n = 40
    ek = torch.stack([km(x, torch.Generator().manual_seed(10 + i)).double() - ref
                      for i in range(n)])
    et = torch.stack([tm(x, torch.Generator().manual_seed(90 + i)).double() - ref
                      for i in range(n)])
    assert km.kernel_draws > 0 and et.abs().mean() > 1.0
    se = torch.sqrt((ek.var(0) + et.var(0)) / n).clamp(min=0.5)
    zs = (ek.mean(0) - et.mean(0)) / se
    assert zs.abs().mean() < 1.2 and (zs.abs() > 5).float().mean() < 0.02
    rk, rt = (ek != 0).double().mean(), (et != 0).double().mean()
    assert abs(rk - rt) < 0.05 * rt, (float(rk), float(rt))
    vk, vt = ek.var(0).mean(), et.var(0).mean()
    assert abs(vk - vt) < 0.15 * vt, (float(vk), float(vt))
    a = km(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, km(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, km(x, torch.Generator().manual_seed(8)))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        b = km(x, torch.Generator().manual_seed(7))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(a, b)
    assert np.isfinite(float(vk))
