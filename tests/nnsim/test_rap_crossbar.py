"""RAP through the crossbar's non-idealities (issue 15 item 4) and the fused sampler (issue 17).

References are independent of the code under test: the per-level programming statistics from
the files' samples in NumPy, the column transfer and read noise by ``numpy.interp`` of the raw
tables, the code distribution by the Gaussian CDF at the thresholds.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.special import ndtr
from torch.utils.data import DataLoader, Subset

from nnsim.data import load_dataset, make_loader
from nnsim.hardware import HardwareModel
from nnsim.rap import MVMConfig, SparseMVM, convert_to_rap
from nnsim.rap.adc import ColumnADC
from nnsim.rap.crossbar import (
    CUTOFF_SIGMA,
    MISS_PROBABILITY,
    CellSettings,
    ColumnReadout,
    program_cells,
)
from nnsim.rap.evaluate import correct_of


@pytest.fixture(scope="module")
def hw_ss(synthetic_lookups):
    return HardwareModel.from_lookup(synthetic_lookups, process="ss", adc_bits=4)


def _noisy(hw, read_x=4.0, write_x=10.0, adc_noise=0.03):
    """The same files with read noise x4, write-noise samples spread x10 about each level's
    mean and shifted by +0.05 level per level (a programming bias to see), and a quieter ADC
    (the synthetic one's 0.26 LSB leaves no conversion certain): many conversions uncertain
    and many certain, so the comparisons bite both ways."""
    dg3 = (hw.g_max_s - hw.g_min_s) / 3
    bias = 0.05 * dg3 * np.arange(4)[:, None] * (np.arange(4)[:, None] > 0)  # +0.05 l / level
    s = {m: v.mean(1, keepdims=True) + write_x * (v - v.mean(1, keepdims=True)) + bias
         for m, v in hw.write_samples_s.items()}
    adcs = {b: dataclasses.replace(a, noise_lsb=adc_noise, _cache={})
            for b, a in hw.adcs.items()}
    return dataclasses.replace(hw, read_sigma_a=hw.read_sigma_a * read_x, write_samples_s=s,
                               adcs=adcs, _cache={})


def test_programmed_cells_follow_the_characterized_write_statistics(hw_ss):
    """Per level, the programmed read currents have the samples' mean error and sigma, and
    the cell map a l + b (reference: the files' samples in NumPy). Fails with gamma x2 or
    without the programming bias."""
    hw = _noisy(hw_ss)
    levels = torch.arange(4).repeat_interleave(20000).reshape(-1, 1)
    st = CellSettings()
    q = program_cells(levels, hw, st, torch.Generator().manual_seed(0))
    a, b = hw.cell_map()
    lv = (q.double() / 2 ** st.frac_bits - b) / a
    smp = hw.write_samples_s["verify"]
    ref = (smp - hw.g_min_s) / (hw.g_max_s - hw.g_min_s) * 3                # (4, n)
    for k in range(4):
        got = lv[levels[:, 0] == k, 0].numpy()
        bias, sd = ref[k].mean() - k, ref[k].std(ddof=1)
        se = sd / math.sqrt(got.size) + 2 ** -st.frac_bits
        assert abs((got.mean() - k) - bias) < 5 * se + 1e-3, (k, got.mean() - k, bias)
        assert abs(got.std() / max(sd, 1e-9) - 1) < 0.05 or sd < 2e-3, (k, got.std(), sd)
    assert ref[1:].std(1).min() > 0.05                      # the spread is not negligible
    assert (ref[1:].mean(1) - np.arange(1, 4)).min() > 0.04   # nor is the bias


def _readout(hw, bits=4, shift=0, size=16 * 1024, z_max=3.0, **kw):
    return ColumnReadout(hw, hw.adc(bits), shift, size - 1, z_max, CellSettings(**kw))


def test_readout_tables_match_the_raw_tables(hw_ss):
    """x0 = u g(u) / 2**shift + code_offset and sigma^2 = (read/LSB)^2 + adc^2, spread = std
    ratio x sensed current, against numpy.interp of the raw tables (fails with the read noise,
    the gain's deviation from 1 or the spread x2)."""
    hw = _noisy(hw_ss)
    for shift in (0, 2):
        r = _readout(hw, shift=shift, size=200 * 1024)            # up to ~ full scale
        u = np.arange(r.size) / 2 ** r.frac_bits
        i_rel = u * hw.unit_a / hw.i_full_t_a
        g = np.interp(i_rel, hw.transfer_i_rel, hw.transfer_mean)
        sensed = u * g
        lsb = 2.0 ** shift
        x0 = sensed / lsb + hw.adc(4).code_offset
        sig = np.sqrt((np.interp(sensed * hw.unit_a, hw.read_i_a, hw.read_sigma_a)
                       / hw.unit_a / lsb) ** 2 + hw.adc(4).noise_lsb ** 2)
        spread = np.interp(i_rel, hw.transfer_i_rel, hw.transfer_std) * sensed / lsb
        assert np.abs(r.x0.numpy() - x0).max() < 2e-4 * (1 + x0.max())
        assert np.allclose(r.sigma.numpy(), sig, rtol=2e-3, atol=1e-6)
        assert np.allclose(r.spread.numpy(), spread, rtol=2e-3, atol=1e-7)
        assert (1 - g).max() > 0.02 and spread.max() > 0.02    # effects large enough to see
        assert (sig > 1.5 * hw.adc(4).noise_lsb).any()          # the read noise counts


def _pattern(r, n_rep):
    """Every (u, instance) on a coarse grid, each repeated n_rep times, with z per column."""
    u = torch.arange(0, r.size, 173)
    inst = torch.arange(r.n_instances)
    uu, ii = torch.meshgrid(u, inst, indexing="ij")
    uu, ii = uu.reshape(1, -1), ii.reshape(1, -1)
    z = torch.linspace(-2.5, 2.5, uu.shape[1], dtype=torch.float64)[None]
    off = r.offsets(ii, z)
    return uu.expand(n_rep, -1).contiguous(), off, z


def test_conversions_follow_the_exact_code_distribution(hw_ss):
    """Fused and fully sampled codes against P(code | u, instance, z) from the Gaussian CDF
    at the thresholds (independent of the sampler), on a pattern of every current and
    instance; certain entries convert to their code every time in both paths."""
    r = _readout(_noisy(hw_ss))
    n = 2000
    u, off, z = _pattern(r, n)
    fused = r.convert(u, None, off, z, torch.Generator().manual_seed(1))
    full = r.convert(u, None, off, z, torch.Generator().manual_seed(2), fused=False)
    cert = r.certain.take(u[0] + off[0])
    assert 0.1 < float((cert < 0).double().mean()) < 0.9   # both kinds on the pattern
    bad = 0
    for j in range(u.shape[1]):
        th = r.thresholds[int(off[0, j]) // r.size % r.n_instances].numpy()
        x = (float(r.x0[u[0, j]]) + float(r.spread[u[0, j]]) * float(z[0, j]))
        s = float(r.sigma[u[0, j]])
        p = np.diff(np.concatenate([[0.0], ndtr((th - x) / s), [1.0]]))
        if cert[j] >= 0:
            assert p[int(cert[j])] > 1 - 1e-9
            assert (fused[:, j] == cert[j]).all() and (full[:, j] == cert[j]).all()
            continue
        for codes in (fused[:, j], full[:, j]):
            emp = np.bincount(codes.numpy(), minlength=p.size) / n
            tol = 5 * np.sqrt(np.maximum(p * (1 - p), 1e-4) / n)
            bad += int((np.abs(emp - p) > tol).sum())
    assert bad <= 2


def test_certain_entries_miss_with_probability_below_1e9(hw_ss):
    """Every entry the table calls certain keeps its code with probability >= 1 - 1e-9 at
    the extreme z of its class (exact CDF); the documented bound holds. Fails with the cutoff
    halved."""
    assert MISS_PROBABILITY < 1e-9 and 2 * ndtr(-CUTOFF_SIGMA) == pytest.approx(MISS_PROBABILITY)
    r = _readout(_noisy(hw_ss))
    cert = r.certain.reshape(len(r.z_edges), r.n_instances, r.size)
    worst = 0.0
    for c, z_c in enumerate(r.z_edges):
        for i in range(r.n_instances):
            idx = (cert[c, i] >= 0).nonzero()[:, 0]
            for uq in idx[:: max(1, idx.numel() // 150)].tolist():
                code = int(cert[c, i, uq])
                for z in (-z_c, z_c):
                    p = r.code_distribution(uq, i, z)
                    worst = max(worst, 1.0 - p[code])
    assert worst < 1e-9, worst
    assert (cert[0] >= 0).sum() > (cert[-1] >= 0).sum()   # the classes matter


def test_sparse_mvm_programmed_cells_fused_matches_full_sampling(hw_ss):
    """One layer on programmed cells: the fused and the fully sampled MVM have the same error
    distribution around x @ w.T (mean per output and error rate), same chip."""
    g = torch.Generator().manual_seed(0)
    w = torch.randint(-127, 128, (12, 100), generator=g)
    x = torch.randint(-127, 128, (5, 100), generator=g) >> 2
    hw = _noisy(hw_ss)
    cfg = MVMConfig(mode="sparse", adc_bits=4)
    adc = ColumnADC.from_adc_model(hw.adc(4), cfg.shift, cfg.s_max)
    mvms = []
    for fused in (True, False):
        chip = torch.Generator().manual_seed(3)
        m = SparseMVM(w, cfg, adc, chip, fused=fused).program(hw, CellSettings(), chip)
        mvms.append(m)
    assert torch.equal(mvms[0].cells, mvms[1].cells) and torch.equal(mvms[0].z, mvms[1].z)
    r = ColumnReadout(hw, hw.adc(4), cfg.shift, max(m.max_sum_q() for m in mvms),
                      float(mvms[0].z.abs().max()), CellSettings())
    for m in mvms:
        m.attach_readout(r)
    ref = (x @ w.T).double()
    ef = torch.stack([mvms[0](x, torch.Generator().manual_seed(10 + i)).double() - ref
                      for i in range(24)])
    ea = torch.stack([mvms[1](x, torch.Generator().manual_seed(50 + i)).double() - ref
                      for i in range(24)])
    assert ea.abs().mean() > 1.0                           # the readout errs
    se = torch.sqrt((ef.var(0) + ea.var(0)) / 24).clamp(min=0.5)
    zs = (ef.mean(0) - ea.mean(0)) / se
    assert zs.abs().mean() < 1.2 and (zs.abs() > 5).float().mean() < 0.02
    rf, ra = (ef != 0).double().mean(), (ea != 0).double().mean()
    assert abs(rf - ra) < 0.05 * ra


def test_chip_programmed_once_reproducible_and_seeded(tiny_digits_model, hw_ss):
    """Same seed: the same bits. One chip: cells fixed between inferences, the noise redrawn.
    Another seed: other programmed cells. Sparse and dense read through one readout."""
    calib = make_loader(load_dataset("digits", "calib"), 128)
    rap = convert_to_rap(tiny_digits_model[0], calib)
    x = load_dataset("digits", "test").images[:6]
    cfg = MVMConfig(mode="sparse", adc_bits=4)
    hw = _noisy(hw_ss)
    rap.set_mvm(cfg, hw, seed=0)
    assert rap.cells_model == "programmed"
    cells0 = rap.blocks[0].fc1.mvm.cells.clone()
    y1, y2 = rap(x), rap(x)
    assert torch.equal(rap.blocks[0].fc1.mvm.cells, cells0)
    assert not torch.equal(y1, y2)                          # per-conversion noise redrawn
    rap.set_mvm(cfg, hw, seed=0)
    assert torch.equal(rap(x), y1)                          # same seed, same bits
    rap.set_mvm(cfg, hw, seed=1)
    assert not torch.equal(rap.blocks[0].fc1.mvm.cells, cells0)
    rap.set_mvm(MVMConfig(mode="dense", adc_bits=4, adc_shift=2), hw, seed=0)
    assert rap.cells_model == "programmed" and rap.readout.shift == 2
    assert torch.equal(rap.blocks[0].fc1.mvm.cells, cells0)  # same chip, same cells
    rap.set_mvm(cfg, hw, seed=0, ideal_cells=True)
    assert rap.cells_model == "ideal" and rap.readout is None


def test_fused_and_full_sampling_agree_on_a_tiny_model(tiny_digits_model, hw_ss):
    """Accuracy of the digits-tiny RAP network, sparse 4-bit on noisy programmed cells:
    fused vs fully sampled on the same chips and images, the paired difference within its
    interval; and the readout noise really moves the logits (the comparison is not
    vacuous)."""
    calib = make_loader(load_dataset("digits", "calib"), 128)
    rap = convert_to_rap(tiny_digits_model[0], calib)
    test = DataLoader(Subset(load_dataset("digits", "test"), range(12)), batch_size=12)
    hw = _noisy(hw_ss, read_x=60.0, write_x=30.0)
    cfg = MVMConfig(mode="sparse", adc_bits=4)
    res = {}
    for fused in (True, False):
        res[fused] = np.stack([correct_of(rap.set_mvm(cfg, hw, seed=s, fused=fused), test)
                               for s in (0, 1)])
    d = res[True].astype(float) - res[False].astype(float)
    half = 2.6 * d.std(ddof=1) / math.sqrt(d.size) + 1e-9
    assert abs(d.mean()) <= half, (d.mean(), half)
    xb = next(iter(test))[0][:4]
    y = rap.set_mvm(cfg, hw, seed=0)(xb)
    y0 = rap.set_mvm(MVMConfig(mode="digital"))(xb)
    assert (y - y0).abs().mean() > 0.05 * y0.abs().mean()   # the noise moves the logits


@pytest.mark.parametrize("mode", ["sparse", "dense"])
@pytest.mark.parametrize("use_kernel", [True, False])
def test_programmed_mvm_records_the_simulated_column_currents_and_rows(hw_ss, mode,
                                                                       use_kernel):
    """Both paths (C kernel, torch) add per conversion the programmed column sum (the ideal
    column current at T, G_min included) and count the active rows: equal to a float64 NumPy
    recomputation from the input bits, the programmed cells and the grouping rule (at most k
    active rows per conversion in sparse mode; one conversion per plane and array in dense
    mode), on 2 arrays. Fails with the recorded current x2."""
    from nnsim.rap.sparse_mvm import kernel_path

    if use_kernel and kernel_path() != "c":
        pytest.skip("no C compiler: torch path only")
    cfg = MVMConfig(adc_bits=4, rows=64, cell_bits=2, mode=mode,
                    **({"adc_shift": 3} if mode == "dense" else {}))
    adc = ColumnADC.from_adc_model(hw_ss.adc(4), cfg.shift, cfg.s_max)
    g = torch.Generator().manual_seed(5)
    w = torch.randint(-127, 128, (6, 100), generator=g)
    x = torch.randint(-127, 128, (5, 100), generator=g) >> 2
    st = CellSettings()
    chip = torch.Generator().manual_seed(1)
    m = SparseMVM(w, cfg, adc, chip, use_kernel=use_kernel).program(hw_ss, st, chip)
    m.attach_readout(ColumnReadout(hw_ss, hw_ss.adc(4), cfg.shift, m.max_sum_q(),
                                   float(m.z.abs().max()), st))
    m(x, torch.Generator().manual_seed(0))
    c = m.counters
    # reference: NumPy, float64
    cells = m.cells.numpy().astype(np.float64) / 2 ** st.frac_bits     # (in_pad, cols) levels
    xn = np.pad(x.numpy(), ((0, 0), (0, m.n_tiles * 64 - 100)))
    want_i = want_rows = conv = 0.0
    for sign in (1, -1):
        mag = np.clip(sign * xn, 0, None)
        for k in range(cfg.input_bits - 1):
            bits = ((mag >> k) & 1).reshape(5, m.n_tiles, 64).astype(np.float64)
            n = bits.sum(-1)                                             # (T, tiles)
            groups = np.ones_like(n) if mode == "dense" else np.ceil(n / cfg.k_active)
            want_i += float(np.einsum("ptr,trc->", bits,
                                      cells.reshape(m.n_tiles, 64, -1)))
            want_rows += float((n * m.cols).sum())   # every column of a cycle reads its rows
            conv += float(groups.sum() * m.cols)
    assert c.conversions == conv
    recorded_i = c.current_q / 2 ** st.frac_bits * hw_ss.unit_a / c.conversions
    assert recorded_i == pytest.approx(want_i * hw_ss.unit_a / conv, rel=1e-12, abs=0)
    assert c.active_rows / c.cycles == pytest.approx(want_rows / conv, rel=1e-12, abs=0)
    # between the G_min floor of one row and k rows at the top level
    assert hw_ss.g_min_s * hw_ss.v_read_v * 0.5 < recorded_i * c.conversions / (
        c.active_rows * m.cols) < 1.5 * hw_ss.g_max_s * hw_ss.v_read_v
