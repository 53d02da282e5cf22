"""The fast default of ``fidelity="bit"`` (issue 17): the fused readout table against the
lookup tables' own numbers, the exact table-driven ADC against a binary search, threshold-near
sampling against full sampling and the analytic code distribution, reproducibility across
processes, and the CLI's help."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from nnsim.analog import AnalogConfig, build_array, map_matrix, mvm, write_levels
from nnsim.hardware import AdcModel


def _kinked(hw):
    """``hw`` with a kinked transfer mean and spread (the segment structure must come back)."""
    kinked = np.array([1.0, 0.999, 0.99, 0.97, 0.937, 0.93, 0.9, 0.88, 0.87, 0.86, 0.851])
    std = np.linspace(0.0, 0.02, kinked.size) ** 1.5
    return dataclasses.replace(hw, transfer_mean=kinked[:hw.transfer_i_rel.size],
                               transfer_std=std[:hw.transfer_i_rel.size], _cache={})


def _truth(hw, u):
    """The tables' piecewise-linear interpolants (float64, numpy): sensed mean, spread sigma,
    read-noise sigma at the sensed current, in level units."""
    rel = u * hw.unit_a / hw.i_full_t_a
    g = np.interp(rel, hw.transfer_i_rel, hw.transfer_mean)
    mean = u * g
    spread = np.interp(rel, hw.transfer_i_rel, hw.transfer_std) * mean
    read = np.interp(mean * hw.unit_a, hw.read_i_a, hw.read_sigma_a) / hw.unit_a
    return mean, spread, read


def test_fused_readout_is_the_tables_at_their_knots_and_between(hw_tt):
    """One gather table per term, no segment search, no fit: at the transfer table's knots
    (SPICE's points) the gain is the table's number; between and beyond (the tables clamp) the
    piecewise-linear interpolant, to float32 precision; the read noise at the sensed current."""
    hw = _kinked(hw_tt)
    tb = hw.fused_readout("cpu")
    u_full = hw.i_full_t_a / hw.unit_a
    knots = hw.transfer_i_rel * u_full
    mean, spread, _ = (t.double().numpy() for t in
                          hw.fused_terms(torch.tensor(knots, dtype=torch.float32), tb))
    u32 = torch.tensor(knots, dtype=torch.float32).double().numpy()
    ok = u32 > 0
    np.testing.assert_allclose(mean[ok] / u32[ok], hw.transfer_mean[ok], rtol=2e-6)
    np.testing.assert_allclose(spread[ok] / mean[ok], hw.transfer_std[ok], rtol=1e-5,
                               atol=1e-9)
    # read noise at the sensed currents of the read-noise table's own knots
    rng = np.random.default_rng(0)
    u = np.concatenate([rng.uniform(0.0, 1.3 * u_full, 20000), knots,
                        np.linspace(0.0, 1.3 * u_full, 5001)])
    got = [t.double().numpy() for t in hw.fused_terms(torch.tensor(u, dtype=torch.float32),
                                                        tb)]
    want = _truth(hw, torch.tensor(u, dtype=torch.float32).double().numpy())
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=2e-6 * u_full)
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-4 * max(want[1].max(), 1e-12))
    np.testing.assert_allclose(got[2], want[2], rtol=0, atol=1e-4 * want[2].max())
    # the terms the readout does not ask for are not there
    assert hw.fused_readout("cpu", gain=False, spread=False)["names"] == ("mean", "read")


def test_fused_readout_reproduces_the_piecewise_linear_readout_terms(hw_tt):
    """The same functions as ``readout_terms`` (the moment mode's and RAP's path)."""
    hw = _kinked(hw_tt)
    u = torch.linspace(0.0, hw.i_full_t_a / hw.unit_a, 4001)
    gain, s_read, s_spread = hw.readout_terms(u.double())
    mean, spread, read = hw.fused_terms(u, hw.fused_readout("cpu"))
    np.testing.assert_allclose(mean.double(), u.double() * gain, atol=1e-4)
    np.testing.assert_allclose(read.double(), s_read, rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(spread.double(), s_spread, rtol=1e-3, atol=1e-7)


def test_table_driven_adc_is_exact(hw_tt):
    """``quantize_fast`` (one cell table + one comparison) equals the binary search over each
    instance's thresholds everywhere, also just below, at and above every threshold."""
    adc = hw_tt.adc()
    th = torch.as_tensor(adc.thresholds_lsb, dtype=torch.float32)
    for inst in range(adc.instances):
        t = th[inst]
        x = torch.cat([torch.linspace(-4, adc.max_code + 4, 40001), t, t - 1e-4, t + 1e-4,
                       t - 0.5 / adc.LUT_STEPS, t + 0.5 / adc.LUT_STEPS])
        want = adc.quantize(x.double(), inst, noise=False).float()
        assert torch.equal(adc.quantize_fast(x, inst), want)
    # per-column instances, and thresholds closer than a table cell (refined grid)
    x = torch.linspace(-1, adc.max_code + 1, 30001)
    inst = torch.randint(0, adc.instances, x.shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(adc.quantize_fast(x, inst), adc.quantize(x.double(), inst,
                                                                noise=False).float())
    tight = adc.thresholds_lsb.copy()
    tight[:, 5] = tight[:, 4] + 0.004
    a2 = AdcModel(adc.bits, np.maximum.accumulate(tight, axis=1), adc.noise_lsb)
    assert a2._steps() >= 256
    assert torch.equal(a2.quantize_fast(x, 0), a2.quantize(x.double(), 0, noise=False).float())


def _analytic_code_moments(th: np.ndarray, x: np.ndarray, sd: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``#{k: th_k <= x + sd Z}`` (Z ~ N(0,1)), exactly."""
    from scipy.stats import norm

    p = norm.cdf((x[:, None] - th[None, :]) / sd[:, None])  # P(code >= k+1)
    mean = p.sum(1)
    # E[c^2] = sum_k (2k+1) P(c >= k+1) for P(c >= k+1) = p_k with ordered thresholds
    ks = np.arange(th.size)
    m2 = ((2 * ks + 1)[None, :] * p).sum(1)
    return mean, m2 - mean ** 2


@pytest.mark.parametrize("dense_at", [1.0, 0.0])
@pytest.mark.parametrize("noise_lsb", [0.06, 0.01])
def test_threshold_sampling_matches_full_and_the_analytic_distribution(hw_tt, noise_lsb,
                                                                       dense_at):
    """Per conversion on a fixed pattern (inputs at, near and far from thresholds, two noise
    levels): the codes' mean and variance under threshold-near sampling (its selection path,
    ``DENSE_AT`` 1, and its dense path, 0) and under full sampling all equal the exact ones
    (Gaussian CDF over the instance's thresholds)."""
    adc = dataclasses.replace(hw_tt.adc(), _cache={})
    adc.DENSE_AT = dense_at
    th = adc.thresholds_lsb[2]
    base = np.concatenate([th[[3, 20, 40]], th[[3, 20, 40]] + 0.5 * noise_lsb,
                           th[[3, 20, 40]] - 2 * noise_lsb, th[[10, 30]] + 0.45,
                           [-1.0, adc.max_code + 1.0]])
    sd = np.full(base.size, noise_lsb)
    sd[::3] *= 1.7
    reps = 20000
    x = torch.tensor(np.tile(base, (reps, 1)), dtype=torch.float32)
    var = torch.tensor(np.tile(sd ** 2, (reps, 1)), dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    near = adc.quantize_near(x, var, 2, g).double()
    full = adc.quantize_fast(x + var.sqrt() * torch.randn(x.shape, generator=g), 2).double()
    mean, v = _analytic_code_moments(th, base, sd)
    for codes in (near, full):
        se = np.sqrt(np.maximum(v, 1e-12) / reps)
        assert np.all(np.abs(codes.mean(0).numpy() - mean) < 5 * se + 1e-9)
        ok = v > 1e-3
        np.testing.assert_allclose(codes.var(0).numpy()[ok], v[ok], rtol=0.1)
        assert np.all(codes.var(0).numpy()[~ok] < 1e-3)
    # far from every threshold nothing is drawn: the selection is what saves the draws
    far = torch.tensor(th[10:40] + 0.5 * np.diff(th)[10:40], dtype=torch.float32)
    adc.DENSE_AT = 1.0
    adc.quantize_near(far, 1e-4, 2, g)
    assert adc.last_near_fraction == 0.0


def _small_array(hw, cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(64, 12, generator=g)
    mapped = map_matrix(w, w.abs().amax(0, keepdim=True), cfg, hw)
    prog = write_levels(mapped.targets, hw, "fit", "verify", 1.0, None, g, mapped.integer)
    inst = torch.randint(0, hw.adc().instances, (1, 1, prog.shape[-4] * 2 * 12), generator=g)
    return build_array(mapped, prog, cfg, hw, inst)


def test_bit_mvm_threshold_and_full_sampling_agree_per_output(hw_tt):
    """A written array read 300 times per sampling mode (same chip: same spread, programmed
    cells, ADC instances): per output, the mean agrees within 5 standard errors and the
    variance within 25 % (4- and 6-bit ADC; and read noise alone through the selection path,
    where most conversions are certain)."""
    for bits, adc_noise in ((4, True), (6, True), (6, False)):
        hw = dataclasses.replace(hw_tt, adc_bits=bits, _cache={},
                                 adcs={b: dataclasses.replace(a, _cache={})
                                       for b, a in hw_tt.adcs.items()})
        hw.adc().DENSE_AT = 1.0 if not adc_noise else AdcModel.DENSE_AT
        cfg = AnalogConfig(adc_noise=adc_noise)
        arr = _small_array(hw, cfg)
        x = torch.randn(6, 64, generator=torch.Generator().manual_seed(5))
        out = {}
        for mode in ("threshold", "full"):
            c = dataclasses.replace(cfg, sampling=mode)
            g = torch.Generator().manual_seed(11)
            arr.cache.pop("spread_z", None)
            out[mode] = torch.stack([mvm(x, arr, c, hw, hw.adc(), g) for _ in range(300)])
        a, b = out["threshold"].double(), out["full"].double()
        se = torch.sqrt((a.var(0) + b.var(0)) / 300).clamp(min=1e-9)
        assert float(((a.mean(0) - b.mean(0)).abs() / se).max()) < 5.0
        ratio = a.var(0) / b.var(0).clamp(min=1e-20)
        assert 0.75 < float(ratio.median()) < 1.33
        assert float(b.var(0).mean()) > 0  # the noise is there at all


_CHILD = """
import json, sys, torch
sys.path.insert(0, {root!r})
from tests.nnsim.test_fidelity_speed import _digest
print(json.dumps(_digest({paths!r})))
"""


def _digest(paths) -> list[float]:
    from nnsim.hardware import HardwareModel

    torch.set_num_threads(1)
    hw = HardwareModel.from_lookup(paths, process="tt", vdd_v=1.8, temp_c=27.0, adc_bits=4)
    cfg = AnalogConfig()
    arr = _small_array(hw, cfg)
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(7)
    return [float(v) for v in mvm(x, arr, cfg, hw, hw.adc(), g).reshape(-1)]


def test_same_seed_same_bits_in_another_process(synthetic_lookups):
    """Threshold-near sampling draws from the recorded seed only: a fresh process gives the
    same outputs, bit for bit."""
    from pathlib import Path

    paths = [str(p) for p in synthetic_lookups]
    here = _digest(paths)
    root = str(Path(__file__).resolve().parents[2])
    r = subprocess.run([sys.executable, "-c", _CHILD.format(root=root, paths=paths)],
                       capture_output=True, text=True, timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == here
    assert _digest(paths) == here


def test_digits_accuracy_threshold_equals_full_within_the_interval(tiny_digits_model, hw_tt):
    """The default sampling scores the tiny digits ViT like full sampling: paired over the same
    3 chips and 40 images, the difference's 95 % interval holds 0 and is narrow."""
    from nnsim.data import load_dataset
    from nnsim.evaluate import compare, evaluate_chips

    model, _ = tiny_digits_model
    ds = load_dataset("digits", "test").subset(40)
    pts = {m: evaluate_chips(model, hw_tt, AnalogConfig(sampling=m), ds, chips=3, seed=4,
                             batch_size=40, cache=None) for m in ("threshold", "full")}
    c = compare(pts["threshold"], pts["full"], "threshold - full")
    lo, hi = c.difference_ci95
    assert lo <= 0.0 <= hi, (c.difference_mean, c.difference_ci95)
    assert hi - lo < 0.15
    assert pts["full"].accuracy_mean > 0.6


def test_evaluate_help_states_the_default_fidelity_and_sampling(capsys):
    from imc.cli import main

    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--sampling {threshold,full}" in text
    assert "bit (the default)" in text
    assert "threshold (the default)" in text
    assert "6 sigma" in text
    with pytest.raises(ValueError, match="sampling"):
        AnalogConfig(sampling="some")
    assert math.isclose(AdcModel.SIGMAS, 6.0)
