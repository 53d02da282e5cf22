"""The SAR's transistor-level sampling front end: kT/C floor, charge balance, and the
behavioural model's use of what SPICE extracted (pedestal, gains, sampled noise)."""

from __future__ import annotations

import numpy as np
import pytest

from characterization.adc import SarInstance
from characterization.adc._netlists import sampler_schedule
from characterization.adc.sampling import K_B, interpolate, measure_sampling, nominal_front


def test_behavioural_thresholds_follow_pedestal_and_gains():
    caps, dummy, c_par = nominal_front(6, 10e-15, 0.1)
    caps = np.asarray(caps)
    ideal = SarInstance(6, caps, dummy, c_par, 1.0)
    c_s, c_t = ideal.c_s, ideal.c_t
    ped = 0.01
    shifted = SarInstance(6, caps, dummy, c_par, 1.0, pedestal_v=ped)
    dt = (shifted.thresholds_v() - ideal.thresholds_v()) / ideal.lsb_v
    assert np.allclose(dt, ped * c_t / c_s / ideal.lsb_v, atol=1e-9)
    # an input gain below the DAC's stretches the transfer: transition k moves by k * (1/g - 1)
    g = 0.98
    gained = SarInstance(6, caps, dummy, c_par, 1.0, k_in=g, k_dac=1.0)
    k = np.arange(1, 64)
    assert np.allclose(gained.thresholds_v() / ideal.lsb_v, k / g, atol=1e-9)
    # the same gain on both sides cancels (a top-plate parasitic scales the whole residue)
    both = SarInstance(6, caps, dummy, c_par, 1.0, k_in=g, k_dac=g)
    assert np.allclose(both.thresholds_v(), ideal.thresholds_v(), atol=1e-12)
    # the sampled noise is drawn once per conversion, referred to the input
    noisy = SarInstance(6, caps, dummy, c_par, 1.0, sample_noise_v=0.5 * ideal.lsb_v)
    x = np.full(20000, 31.5 * ideal.lsb_v)
    codes = noisy.convert(x, np.random.default_rng(1))
    sd = np.std(codes)
    assert 0.4 < sd < 0.6, sd


@pytest.mark.ngspice
def test_sampled_noise_is_kt_over_c_and_input_charge_balances():
    r = measure_sampling("tt", 1.8, 27.0, [3, 4, 5], c_unit_f=10e-15, c_par_rel=0.1,
                         vref_v=1.0, simulate_bits=[3, 5])
    for b in (3, 5):
        s = r[b]
        assert not s.interpolated
        # the physical floor: a switch (resistor-like channel) sampling onto C_T
        assert s.ktc_v == pytest.approx(np.sqrt(K_B * 300.15 / s.c_t_f))
        assert 0.8 < s.noise_top_v / s.ktc_v < 1.25, (b, s.noise_top_v / s.ktc_v)
        # charge balance: the input driver's SPICE charge per sample vs the closed form of
        # the same sequence (each sample starts from the previous input's final code)
        caps, dummy, c_par = nominal_front(b, 10e-15, 0.1)
        ideal = SarInstance(b, np.asarray(caps), dummy, c_par, 1.0)
        vins, _ = sampler_schedule(b, 1.0)
        half = len(vins) // 2
        q_form = ideal.sampling_energy_j(np.asarray(vins[1:half + 1]),
                                         np.asarray(vins[:half]), 1.8).mean()
        assert 0.85 < s.e_input_j / q_form < 1.15, (b, s.e_input_j, q_form)
        # gains near 1 (switch junctions on the top plate), small fit residual, fast settling
        assert 0.9 < s.k_in < 1.0 and 0.9 < s.k_dac < 1.0
        assert abs(s.gain_error) < 0.01
        assert s.fit_rms_v * s.c_t_f / s.c_s_f < 0.05 / 2**b  # under 0.05 LSB
        assert s.tau_track_s < 4e-9 / 8
    # noise scales as 1/sqrt(C_T) (wider switches, same kT/C)
    assert r[3].noise_top_v / r[5].noise_top_v == pytest.approx(
        np.sqrt(r[5].c_t_f / r[3].c_t_f), rel=0.05)
    # the interpolated resolution sits between its simulated neighbours
    mid = r[4]
    assert mid.interpolated
    assert min(r[3].pedestal_v, r[5].pedestal_v) <= mid.pedestal_v <= max(r[3].pedestal_v,
                                                                          r[5].pedestal_v)
    again = interpolate(r[3], r[5], 4, mid.c_s_f, mid.c_t_f, 27.0)
    assert again == mid
