"""IEEE 1241 metrics and the behavioural SAR (no ngspice)."""

from __future__ import annotations

import numpy as np
import pytest

from characterization.adc import (
    SarInstance,
    coherent_sine_input,
    dnl_inl_from_thresholds,
    draw_caps,
    histogram_dnl_inl,
    sine_fit_enob,
)


def _quantize(x_lsb, bits, thresholds=None):
    if thresholds is None:
        return np.clip(np.floor(x_lsb), 0, 2**bits - 1).astype(int)
    return np.searchsorted(thresholds, x_lsb, side="right")


@pytest.mark.parametrize("bits", [3, 4, 5, 6, 8])
@pytest.mark.parametrize("fs", [0.999, 0.9, 0.7])
def test_sine_fit_enob_of_ideal_quantizer_is_bits(bits, fs):
    x = coherent_sine_input(4096, 67, 2**bits / 2 * fs, 2**bits / 2)
    r = sine_fit_enob(_quantize(x, bits), bits)
    assert abs(r.enob - bits) < 0.05
    assert r.sinad_db > 6.02 * bits + 1.76 - 1.0 - 20 * np.log10(1 / fs)


def test_low_resolution_bias_is_removed():
    # 3 bits, 70 % amplitude: the textbook 1/sqrt(12) reference is off by > 0.1 bit
    x = coherent_sine_input(4096, 67, 4 * 0.7, 4)
    r = sine_fit_enob(_quantize(x, 3), 3)
    assert abs(r.enob_uncorrected - 3) > 0.1
    assert abs(r.enob - 3) < 0.05


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_gaussian_noise_lowers_enob_as_theory_says(sigma):
    bits = 8
    rng = np.random.default_rng(11)
    x = coherent_sine_input(8192, 1031, 2**bits / 2 * 0.9, 2**bits / 2)
    r = sine_fit_enob(_quantize(x + rng.normal(0, sigma, x.size), bits), bits)
    theory = bits - 0.5 * np.log2(1 + 12 * sigma**2)
    assert abs(r.enob - theory) < 0.05


def test_histogram_recovers_known_dnl_pattern_ramp_and_sine():
    bits = 4
    rng = np.random.default_rng(3)
    widths = 1 + rng.uniform(-0.4, 0.4, 2**bits - 2)     # inner code widths, LSB
    t = np.concatenate([[1.0], 1.0 + np.cumsum(widths)])  # transitions 1..15
    dnl_true, inl_true = dnl_inl_from_thresholds(t)
    ramp = np.linspace(-1, t[-1] + 2, 400_001)
    r = histogram_dnl_inl(_quantize(ramp, bits, t), bits, stimulus="ramp")
    np.testing.assert_allclose(r.dnl_lsb, dnl_true, atol=2e-3)
    np.testing.assert_allclose(r.inl_lsb, inl_true, atol=2e-3)
    mid, amp = (t[0] + t[-1]) / 2, (t[-1] - t[0]) / 2 + 1.5  # overdriven sine
    s = coherent_sine_input(1_000_003, 99_991, amp, mid)
    r = histogram_dnl_inl(_quantize(s, bits, t), bits, stimulus="sine")
    np.testing.assert_allclose(r.dnl_lsb, dnl_true, atol=0.01)
    assert r.missing_codes.size == 0


def test_histogram_rejects_out_of_range_codes():
    with pytest.raises(ValueError, match=r"0\.\.7"):
        histogram_dnl_inl(np.array([0, 8]), 3)


def test_ideal_behavioural_sar_is_a_floor_quantizer():
    for bits in (3, 6):
        inst = SarInstance(bits, 1e-14 * 2.0 ** np.arange(bits), 1e-14, 1e-15, 1.0)
        np.testing.assert_allclose(inst.thresholds_v() / inst.lsb_v, np.arange(1, 2**bits),
                                   atol=1e-9)
        assert not inst.decision_error().any()


def test_behavioural_offset_noise_and_energy():
    rng = np.random.default_rng(0)
    caps, d = draw_caps(6, 1e-14, 0.003, rng)
    base = SarInstance(6, caps, d, 0.1 * caps.sum(), 1.0)
    shifted = SarInstance(6, caps, d, 0.1 * caps.sum(), 1.0, offset_v=0.01, noise_v=2e-3)
    shift = (shifted.thresholds_v() - base.thresholds_v()) / base.lsb_v
    np.testing.assert_allclose(shift, 0.01 * base.c_t / base.c_s / base.lsb_v, rtol=1e-3)
    de = shifted.decision_error()
    assert 0.05 < de.mean() < 1
    e = [SarInstance(b, 1e-14 * 2.0 ** np.arange(b), 1e-14, 0, 1.0).reference_energy_j(
        np.linspace(0, 1, 101)).mean() for b in (3, 5, 7)]
    assert e[0] < e[1] < e[2]
    assert 3 < e[2] / e[1] < 5  # binary-weighted DAC energy ~ 2^N


def test_histogram_method_on_behavioural_sar_matches_its_thresholds():
    # the two DNL/INL routes agree on a mismatched instance: code density of an overdriven
    # coherent sine (IEEE 1241 arcsine mapping) vs the instance's exact transition levels
    rng = np.random.default_rng(5)
    bits = 5
    caps, d = draw_caps(bits, 1e-14, 0.05, rng)  # large mismatch: DNL of tenths of an LSB
    inst = SarInstance(bits, caps, d, 0.1 * (caps.sum() + d), 1.0, offset_v=2e-3)
    dnl_t, inl_t = dnl_inl_from_thresholds(inst.thresholds_v())
    assert np.max(np.abs(dnl_t)) > 0.1
    x = coherent_sine_input(400_009, 99_991, 0.6, 0.5)  # overdrives both ends of 0..1 V
    r = histogram_dnl_inl(inst.convert(x), bits)
    np.testing.assert_allclose(r.dnl_lsb, dnl_t, atol=0.02)
    np.testing.assert_allclose(r.inl_lsb, inl_t, atol=0.02)
    assert r.missing_codes.size == 0
