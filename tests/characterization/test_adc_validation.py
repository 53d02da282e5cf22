"""Behavioural SAR vs transistor-level SAR: a validation that can fail, with its own floor."""

from __future__ import annotations

import numpy as np
import pytest

from characterization.adc import SarInstance, draw_caps
from characterization.adc._netlists import ComparatorSizing, SwitchSizing
from characterization.adc.comparator import draw_mismatch, measure_comparator
from characterization.adc.sampling import measure_sampling
from characterization.adc.validation import (
    TARGET_RMS_LSB,
    refine_thresholds,
    select_codes,
    spice_converter,
    validate_refined,
)


def _step_converter(true_lsb: np.ndarray, codes: np.ndarray):
    """A converter whose transition k lies at true_lsb[k]: code = #(thresholds <= x)."""
    def convert(x):
        x = np.asarray(x)
        return np.searchsorted(true_lsb, x, side="right")
    return convert


def test_refinement_finds_known_transitions_within_its_bracket():
    rng = np.random.default_rng(3)
    true = np.cumsum(1 + 0.1 * rng.standard_normal(63)) + 0.37  # transitions 1..63
    codes = np.array([1, 16, 32, 48, 63])
    conv = _step_converter(true, codes)
    # start off by up to 0.4 LSB (inside the 2-LSB bracket) and by 2.5 LSB (outside: widened)
    for miss in (0.4, -0.4, 2.5, -2.5):
        est, width, used = refine_thresholds(conv, codes, true[codes - 1] + miss, probes=5,
                                             rounds=4, width_lsb=2.0)
        assert np.all(np.isfinite(est)), miss
        assert np.all(np.abs(est - true[codes - 1]) <= width / 2 + 1e-12)
        assert used == 4 * 5 * codes.size
        if abs(miss) < 1:
            assert np.all(width <= 2.0 / 6**4 + 1e-12)
    # never bracketed on both sides -> NaN, not a number from one side
    est, _, _ = refine_thresholds(conv, codes, true[codes - 1] + 9.0, probes=3, rounds=1)
    assert np.all(np.isnan(est))


def test_select_codes_takes_major_carries_then_seeded_others():
    c = select_codes(8, 12, np.random.default_rng(0))
    assert c.size == 12 and len(set(c)) == 12 and {128, 64, 192}.issubset(set(c))
    assert np.all((c >= 1) & (c <= 255))
    assert np.array_equal(c, select_codes(8, 12, np.random.default_rng(0)))
    assert select_codes(3, 50, np.random.default_rng(0)).size == 7


@pytest.mark.ngspice
def test_spice_sar_6bit_validation_passes_and_fails_when_model_is_shifted():
    """The full SAR with sky130 switches against the behavioural model built from the
    comparator testbench and the sampler testbench (pedestal, gains, kT/C)."""
    s, sw = ComparatorSizing(), SwitchSizing()
    rng = np.random.default_rng(11)
    dvt = draw_mismatch(s, rng)
    caps, dummy = draw_caps(6, 10e-15, 0.003, rng)
    c_par = 0.1 * (caps.sum() + dummy)
    cmp = measure_comparator("tt", 1.8, 27.0, s, dvt, c_kick_f=1.1 * 8 * 10e-15)
    sr = measure_sampling("tt", 1.8, 27.0, [6], c_unit_f=10e-15, c_par_rel=0.1, vref_v=1.0,
                          sw=sw)[6]
    c_t = caps.sum() + dummy + c_par
    model = dict(offset_v=-cmp.offset_at_v(c_t), pedestal_v=sr.pedestal_v, k_in=sr.k_in,
                 k_dac=sr.k_dac)
    inst = SarInstance(6, caps, dummy, c_par, 1.0, **model)
    pvt = {"process": "tt", "vdd_v": 1.8, "temp_c": 27.0}
    rec: dict = {}
    kw = dict(thresholds=3, probes=4, rounds=2, seed=5, record=rec, switches=sw,
              converter=spice_converter(pvt, s, dvt, inst, record=rec, switches=sw))
    v = validate_refined(pvt, s, dvt, inst, **kw)
    # the method's own floor is far below the target, and below the measured error's scale
    assert v["floor_rms_lsb"] < 0.03 and v["bracket_rms_lsb"] < 0.03
    assert v["unconfirmed"] == 0 and v["conversions"] == 3 * 4 * 2
    assert v["rms_lsb"] <= TARGET_RMS_LSB + 0.02, v
    # the SPICE SAR's reference energy (its Vref source) agrees with the closed form
    assert abs(v["ref_energy_j"] / v["ref_energy_beh_j"] - 1) < 0.1
    assert v["drive_energy_j"] > 0
    # a behavioural model off by 0.3 LSB fails the same validation
    bad = validate_refined(pvt, s, dvt, inst, beh_shift_lsb=-0.3, **kw)
    assert bad["rms_lsb"] > TARGET_RMS_LSB + 0.1, bad["rms_lsb"]
    assert bad["floor_rms_lsb"] < 0.03  # the method is as fine as before: the model is wrong
    # so does the model without the switches' charge-injection pedestal (~0.85 LSB at 6 bits),
    # against the same SPICE transitions
    no_ped = SarInstance(6, caps, dummy, c_par, 1.0, **{**model, "pedestal_v": 0.0})
    codes = np.asarray(v["codes"])
    miss = np.asarray(v["spice_lsb"]) - no_ped.thresholds_v()[codes - 1] / no_ped.lsb_v
    assert np.sqrt(np.mean(miss**2)) > TARGET_RMS_LSB + 0.3, miss
