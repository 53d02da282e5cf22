"""RAP low-ENOB sparse MVM: exactness with an ideal ADC, conversion counts, circuit ADC."""

import math

import numpy as np
import pytest
import torch

from nnsim.hardware import AdcModel
from nnsim.rap import ColumnADC, MVMConfig, SparseMVM, adc_bits_needed, k_exact


def _operands(seed, out=40, inp=150, t=29):
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(-127, 128, (out, inp), generator=g)
    x = torch.randint(-127, 128, (t, inp), generator=g)
    x = x >> torch.randint(0, 5, (t, 1), generator=g)       # sparse high bit-planes
    return w, x, g


def _popcount_conversions(x, cfg, cols):
    """Independent count: per sign phase, magnitude bit-plane, array: ceil(popcount / K)."""
    xs = x.numpy()
    rows, n_tiles = cfg.rows, math.ceil(xs.shape[1] / cfg.rows)
    cycles = 0
    for sign in (1, -1):
        mag = np.clip(sign * xs, 0, None)
        for k in range(cfg.input_bits - 1):
            bits = (mag >> k) & 1
            for tile in range(n_tiles):
                pop = bits[:, tile * rows:(tile + 1) * rows].sum(1)
                cycles += (np.ones_like(pop) if cfg.mode == "dense"
                           else -(-pop // cfg.k_active)).sum()
    return int(cycles), int(cycles) * cols


def test_adc_bits_formula():
    assert adc_bits_needed(7, 1) == 3 and adc_bits_needed(2, 2) == 3
    assert adc_bits_needed(64, 2) == 8 and adc_bits_needed(5, 2) == 4
    assert k_exact(3, 2) == 2 and k_exact(3, 1) == 7 and k_exact(8, 2, rows=64) == 64
    for bits in range(2, 9):
        for cb in (1, 2):
            k = k_exact(bits, cb)
            assert adc_bits_needed(k, cb) <= bits < adc_bits_needed(k + 1, cb)


@pytest.mark.parametrize(("mode", "bits", "k"), [("sparse", 3, None), ("sparse", 4, 3),
                                                 ("sparse", 8, None), ("dense", 8, None)])
def test_sparse_mvm_ideal_adc_is_exact_and_counts_match(mode, bits, k):
    w, x, g = _operands(0)
    cfg = MVMConfig(mode=mode, adc_bits=bits, k=k)
    assert cfg.shift == 0
    mvm = SparseMVM(w, cfg, ColumnADC.ideal(bits, cfg.shift, cfg.s_max), g, exact_shortcut=False)
    y = mvm(x)
    assert torch.equal(y, x @ w.T)
    cycles, conv = _popcount_conversions(x, cfg, mvm.cols)
    assert (mvm.counters.cycles, mvm.counters.conversions) == (cycles, conv)
    assert mvm.counters.active_rows == sum(bin(abs(v)).count("1") for v in x.flatten().tolist())
    fast = SparseMVM(w, cfg, ColumnADC.ideal(bits, cfg.shift, cfg.s_max), g)  # shortcut path
    assert torch.equal(fast(x), y) and fast.counters == mvm.counters


def test_dense_low_bit_adc_is_lossy_where_sparse_is_exact():
    w, x, g = _operands(1)
    dense = MVMConfig(mode="dense", adc_bits=3)
    assert dense.shift == 5                  # 64 rows x 3 levels = 192 needs 8 bits
    yd = SparseMVM(w, dense, ColumnADC.ideal(3, dense.shift, dense.s_max), g)(x)
    ref = (x @ w.T).double()
    assert (yd.double() - ref).norm() / ref.norm() > 0.1
    sparse = MVMConfig(mode="sparse", adc_bits=3)
    ys = SparseMVM(w, sparse, ColumnADC.ideal(3, 0, sparse.s_max), g, exact_shortcut=False)(x)
    assert torch.equal(ys, x @ w.T)


def test_circuit_adc_table_from_ideal_model_is_exact():
    w, x, g = _operands(2)
    cfg = MVMConfig(mode="sparse", adc_bits=4)
    adc = ColumnADC.from_adc_model(AdcModel.ideal(4), cfg.shift, cfg.s_max)
    assert adc.source == "circuit" and float(adc.error_probability().max()) == 0.0
    y = SparseMVM(w, cfg, adc, g)(x, torch.Generator().manual_seed(0))
    assert torch.equal(y, x @ w.T)


@pytest.mark.parametrize("sampler", ["table", "exact"])
def test_circuit_adc_sampling_matches_adc_model_quantize(sampler):
    rng = np.random.default_rng(3)
    bits, n_inst = 3, 4
    th = np.arange(1, 2**bits)[None] - 0.5 + rng.normal(0, 0.3, (n_inst, 1)) \
        + rng.normal(0, 0.1, (n_inst, 2**bits - 1))
    model = AdcModel(bits, np.maximum.accumulate(th, 1), 0.3)
    adc = ColumnADC.from_adc_model(model, 0, 2**bits - 1, sampler=sampler)
    assert (adc.qtable is not None) == (sampler == "table")
    s = torch.arange(2**bits).repeat(20000)
    gen = torch.Generator().manual_seed(1)
    for inst in range(n_inst):
        codes = adc.convert(s[None], torch.full((1,), inst), gen)[0]
        ref = model.quantize(s.double() + model.code_offset, inst, gen)
        for v in range(2**bits):
            sel = s == v
            assert abs(codes[sel].double().mean() - ref[sel].mean()) < 0.03, (inst, v)
            assert abs((codes[sel] != v).double().mean() - (ref[sel] != v).double().mean()) \
                < 0.02, (inst, v)
    assert float(adc.error_probability().max()) > 0.05      # the noise really bites


def test_mvm_refuses_out_of_range_operands():
    w, x, g = _operands(4)
    cfg = MVMConfig(mode="sparse", adc_bits=3)
    mvm = SparseMVM(w, cfg, ColumnADC.ideal(3, 0, cfg.s_max), g)
    with pytest.raises(ValueError, match="inputs exceed 8 bits"):
        mvm(x * 4)
    with pytest.raises(ValueError, match="does not match"):
        SparseMVM(w, cfg, ColumnADC.ideal(3, 1, cfg.s_max), g)
    with pytest.raises(ValueError, match="k=0"):
        MVMConfig(k=0)


def _partly_noisy_adc(bits=3, n_inst=4, noise=0.03, seed=5):
    """Thresholds near some bin centres (uncertain conversions) and far from others."""
    rng = np.random.default_rng(seed)
    th = np.arange(1, 2**bits)[None] - 0.5 + rng.uniform(-0.45, 0.45, (n_inst, 2**bits - 1))
    return AdcModel(bits, np.sort(th, 1), noise)


@pytest.mark.parametrize("sampler", ["table", "exact"])
def test_fused_sampler_draws_only_where_uncertain_and_agrees_with_full_sampling(sampler):
    model = _partly_noisy_adc()
    adc = ColumnADC.from_adc_model(model, 0, 2**3 - 1, sampler=sampler)
    cert = adc.certain.reshape(adc.n_instances, -1)
    assert 0.05 < adc.uncertain_fraction < 0.5 and (cert >= 0).any()
    n = 6000
    s = torch.arange(2**3).repeat(n)
    for inst in range(adc.n_instances):
        i = torch.full((1,), inst)
        fused = adc.convert(s[None], i, torch.Generator().manual_seed(1))[0]
        full = adc.convert(s[None], i, torch.Generator().manual_seed(2), fused=False)[0]
        for v in range(2**3):
            sel = s == v
            c = int(cert[inst, v])
            if c >= 0:       # certain: both paths give exactly that code, every time
                assert (fused[sel] == c).all() and (full[sel] == c).all()
                continue
            for code in range(2**3):
                pf = (fused[sel] == code).double().mean()
                pa = (full[sel] == code).double().mean()
                tol = 5 * math.sqrt(max(pa * (1 - pa), 1e-4) * 2 / n)
                assert abs(pf - pa) < tol, (inst, v, code, float(pf), float(pa))
    # where uncertain the noise really bites (the comparison is not vacuous)
    assert float(adc.error_probability().max()) > 0.02


def test_sparse_mvm_fused_agrees_with_full_sampling_and_certain_adc_is_exact():
    w, x, _g = _operands(6, out=16, inp=100, t=6)
    cfg = MVMConfig(mode="sparse", adc_bits=3)
    adc = ColumnADC.from_adc_model(_partly_noisy_adc(), cfg.shift, cfg.s_max)
    fused = SparseMVM(w, cfg, adc, torch.Generator().manual_seed(3))
    full = SparseMVM(w, cfg, adc, torch.Generator().manual_seed(3), fused=False)
    assert not fused.exact and torch.equal(fused.instance, full.instance)
    ref = (x @ w.T).double()
    gf, ga = torch.Generator().manual_seed(4), torch.Generator().manual_seed(5)
    ef = torch.stack([fused(x, gf).double() - ref for _ in range(24)])
    ea = torch.stack([full(x, ga).double() - ref for _ in range(24)])
    assert ea.abs().mean() > 1.0                           # the ADC errs
    se = torch.sqrt((ef.var(0) + ea.var(0)) / 24).clamp(min=0.5)
    z = (ef.mean(0) - ea.mean(0)) / se
    assert z.abs().mean() < 1.2 and (z.abs() > 5).float().mean() < 0.01
    rf, ra = (ef != 0).double().mean(), (ea != 0).double().mean()   # output error rates
    assert abs(rf - ra) < 0.05 * ra, (float(rf), float(ra))
    # an ADC certain and ideal on every sum: the exact shortcut, identical to converting
    exact = ColumnADC.from_adc_model(AdcModel.ideal(3), cfg.shift, cfg.s_max)
    short = SparseMVM(w, cfg, exact, torch.Generator().manual_seed(3))
    slow = SparseMVM(w, cfg, exact, torch.Generator().manual_seed(3), exact_shortcut=False)
    assert short.exact and not slow.exact
    assert torch.equal(short(x), slow(x, torch.Generator().manual_seed(0)))
    assert torch.equal(short(x), x @ w.T)
