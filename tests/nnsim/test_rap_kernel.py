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


def _single_conversions(hw, plane, n_tok=3000, seed=5):
    """A kernel MVM whose every token converts one group per column: rows 0 and 1 active in
    input bit-plane ``plane`` (one group of two rows), so the column code sums are single
    codes shifted by ``plane``; returns (mvm, codes (T, cols), u (cols,))."""
    w, _ = _operands(4, out=10, inp=60)
    cfg = MVMConfig(mode="sparse", adc_bits=4)
    km, _tm = _pair(hw, cfg, CellSettings(), w)
    x = torch.zeros(n_tok, 60, dtype=torch.int64)
    x[:, :2] = 1 << plane
    acc = km.kernel_column_codes(x, torch.Generator().manual_seed(seed))
    assert (acc % (1 << plane) == 0).all()
    return km, acc >> plane, km.cells[0] + km.cells[1]


@pytest.mark.parametrize("plane", [0, 3])
def test_kernel_conversions_follow_the_exact_code_distribution(hw_noisy, plane):
    """Each column's codes over 3000 independent conversions of one sum against
    P(code | u, instance, z) from the Gaussian CDF at the instance's thresholds
    (ColumnReadout.code_distribution, independent of the kernel); certain entries give their
    code every time. Fails with the kernel's sigma or spread x2. The quantile-cell shortcut
    changes no bit (kernel_slow computes every variate)."""
    km, codes, u = _single_conversions(hw_noisy, plane)
    r = km.readout
    kt = r.kernel_tables()
    inst, z = km.instance[0], km.z[0]
    n = codes.shape[0]
    bad, uncertain = 0, 0
    for j in range(codes.shape[1]):
        p = r.code_distribution(int(u[j]), int(inst[j]), float(z[j]))
        e = int(kt["entry"][int(km.inst_off[0, j]) + int(u[j])])
        if e >= 0:
            assert p[e] > 1 - 1e-9 and (codes[:, j] == e).all()
            continue
        uncertain += 1
        emp = np.bincount(codes[:, j].numpy(), minlength=p.size)[:p.size] / n
        tol = 5 * np.sqrt(np.maximum(p * (1 - p), 1e-4) / n)
        bad += int((np.abs(emp - p) > tol).sum())
    assert uncertain >= 10 and bad <= 2, (uncertain, bad)
    km.kernel_slow = True
    x = torch.zeros(200, 60, dtype=torch.int64)
    x[:, :2] = 1 << plane
    x[::3, 5:40:3] = 5                                 # and some larger groups
    a = km.kernel_column_codes(x, torch.Generator().manual_seed(11))
    km.kernel_slow = False
    for in_pass in (False, True, None):                # stay cells listed, in the pass, auto
        km.kernel_stay_in_pass = in_pass
        assert torch.equal(a, km.kernel_column_codes(x, torch.Generator().manual_seed(11)))


def test_kernel_normal_variate_is_the_inverse_normal_cdf():
    """The kernel's variate of 64 random bits is Phi^-1((k + 1/2) 2^-52) of their top 52 bits
    (against scipy.special.ndtri), antisymmetric, in both tails to about 8.1 sigma."""
    from scipy.special import ndtri

    from nnsim.rap.sparse_mvm import _kernel

    lib = _kernel()
    rng = np.random.default_rng(0)
    hs = [int(h) for h in rng.integers(0, 2 ** 63, 3000, dtype=np.uint64)] + \
        [0, 1 << 12, 2 ** 64 - 1, (1 << 63) - 1, 1 << 63]
    hs += [h | (1 << 63) for h in hs[:1000]]
    n = np.array([lib.rap_normal_of_bits(h) for h in hs])
    u = np.array([((h >> 12) + 0.5) * 2.0 ** -52 for h in hs])
    ref = ndtri(u)
    assert np.abs(n - ref).max() < 1e-12 * (1 + np.abs(ref).max())
    assert n.min() < -8.0 and n.max() > 8.0
    k = np.array([h >> 12 for h in hs], dtype=np.uint64)
    mirror = [int(((1 << 52) - 1 - int(kk)) << 12) for kk in k[:200]]
    assert np.array_equal(np.array([lib.rap_normal_of_bits(h) for h in mirror]), -n[:200])


def test_kernel_without_avx512_gives_the_same_bits(hw_noisy, tmp_path):
    """The portable loops (a build for x86-64-v2 or any CPU without AVX-512) and this
    machine's build give identical outputs and counters (a subprocess with other flags)."""
    import json
    import os
    import subprocess
    import sys

    w, x = _operands(2, out=9, inp=130, t=6)
    cfg = MVMConfig(mode="sparse", adc_bits=4)
    km, _tm = _pair(hw_noisy, cfg, CellSettings(), w)
    here = km.kernel_column_codes(x, torch.Generator().manual_seed(3))
    kt = km.readout.kernel_tables()
    cells, inst_off, col_inst, z = km._kernel_bufs
    blob = tmp_path / "in.pt"
    torch.save({"x": x, "cells": cells, "inst_off": inst_off, "col_inst": col_inst, "z": z,
                "entry_stay": kt["entry_stay"], "xss": kt["xss"], "thr": kt["thr"]},
               blob)
    code = f"""
import json, ctypes, torch
from nnsim import kernels
from nnsim.rap.sparse_mvm import _kernel
d = torch.load({str(blob)!r}, weights_only=True)
lib = _kernel()
x = d["x"].contiguous(); xp = torch.nn.functional.pad(x, (0, {km.n_tiles} * 64 - x.shape[1]))
p = kernels.ptr
res = []
for in_pass in (0, 1, 2):   # stay cells listed, in the pass, auto
    acc = torch.zeros(x.shape[0], d["cells"].shape[1], dtype=torch.int64)
    st = torch.zeros(4, dtype=torch.int64)
    rc = lib.rap_mvm(p(xp), x.shape[0], {km.n_tiles}, 64, acc.shape[1], 7, {cfg.k_active}, 0,
                     p(d["cells"]), p(d["inst_off"]), p(d["col_inst"]), p(d["z"]),
                     p(d["entry_stay"]), p(d["xss"]), p(d["thr"]), d["thr"].shape[1],
                     ctypes.c_uint64(SEED), 1, 0, in_pass, p(acc), p(st), 1)
    res.append({{"rc": rc, "acc": acc.tolist(), "stats": st.tolist()}})
print(json.dumps(res))
"""
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=torch.Generator().manual_seed(3),
                             dtype=torch.int64))
    env = dict(os.environ, IMC_KERNEL_CFLAGS="-O2 -march=x86-64-v2 -ffp-contract=off "
               "-fno-math-errno -fno-trapping-math", IMC_KERNEL_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code.replace("SEED", str(seed))], env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(results) == 3
    for res in results:
        assert res["rc"] == 0
        assert torch.equal(torch.tensor(res["acc"]), here)
        assert res["stats"][2] == km.kernel_draws > 0


def test_rap_forward_on_two_threads_runs_the_kernel_on_them_and_torch_on_one(
        tiny_digits_model, hw_noisy):
    """With torch on two threads, RapViT's forward runs its torch operations on one thread
    and the kernel on two (inside a layer: torch 1, ``kernel_threads`` 2), restores torch's
    count afterwards, and gives the bits of a one-thread forward of the same chip and seed."""
    from nnsim.data import load_dataset, make_loader
    from nnsim.rap import convert_to_rap

    rap = convert_to_rap(tiny_digits_model[0], make_loader(load_dataset("digits", "calib"), 128))
    x = load_dataset("digits", "test").images[:4]
    cfg = MVMConfig(mode="sparse", adc_bits=4)
    old = torch.get_num_threads()
    seen = []
    lin = rap.analog_layers()[0]
    try:
        torch.set_num_threads(1)
        y1 = rap.set_mvm(cfg, hw_noisy, seed=0)(x)
        hook = lin.register_forward_pre_hook(
            lambda mod, args: seen.append((torch.get_num_threads(), mod.mvm.kernel_threads)))
        torch.set_num_threads(2)
        y2 = rap.set_mvm(cfg, hw_noisy, seed=0)(x)
        assert torch.get_num_threads() == 2
        hook.remove()
    finally:
        torch.set_num_threads(old)
    assert seen == [(1, 2)]
    assert lin.mvm.kernel_threads is None and lin.mvm.kernel_draws > 0
    assert torch.equal(y1, y2)
