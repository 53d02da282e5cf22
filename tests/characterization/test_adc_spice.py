"""SAR ADC in ngspice: sky130 StrongARM Monte Carlo, full SAR vs behavioural, tiny sweep."""

from __future__ import annotations

import numpy as np
import pytest

from characterization.adc import SarInstance, draw_caps, sine_fit_enob, validate_instance
from characterization.adc._netlists import MISMATCH_DEVICES, ComparatorSizing
from characterization.adc.comparator import measure_comparator
from characterization.adc.metrics import coherent_sine_input, dnl_inl_from_thresholds

pytestmark = pytest.mark.ngspice
PVT = {"process": "tt", "vdd_v": 1.8, "temp_c": 27.0}


def _input_pair_draw(z: float, sizing: ComparatorSizing) -> dict[str, float]:
    # the same standard-normal draw scaled by each sizing's Pelgrom sigma
    dv = dict.fromkeys(MISMATCH_DEVICES, 0.0)
    dv["in1"] = z * sizing.sigma_vt_v("in1")
    return dv


def test_offset_grows_when_input_pair_shrinks_pelgrom():
    big, small = ComparatorSizing(w_in=4.0, l_in=0.3), ComparatorSizing(w_in=1.0, l_in=0.15)
    nominal = measure_comparator("tt", 1.8, 27.0, big, dict.fromkeys(MISMATCH_DEVICES, 0.0))
    off_big = measure_comparator("tt", 1.8, 27.0, big, _input_pair_draw(2.0, big)).offset_v
    off_small = measure_comparator("tt", 1.8, 27.0, small, _input_pair_draw(2.0, small)).offset_v
    d_big = abs(off_big - nominal.offset_v)
    # area ratio 8 -> Pelgrom ratio sqrt(8) = 2.8; an input-pair shift maps ~1:1 to offset
    assert abs(d_big - 2.0 * big.sigma_vt_v("in1")) < 0.3 * d_big
    assert abs(off_small) > 2.0 * d_big


def test_offset_spread_sane_and_corner_dependent():
    s = ComparatorSizing()
    rng = np.random.default_rng(7)
    draws = [{d: rng.normal(0, s.sigma_vt_v(d)) for d in MISMATCH_DEVICES} for _ in range(3)]
    res = {c: [measure_comparator(c, 1.8, 27.0, s, dv) for dv in draws] for c in ("ss", "ff")}
    off = {c: np.array([r.offset_v for r in rs]) for c, rs in res.items()}
    assert 1e-3 < off["ss"].std() < 60e-3
    assert np.all(np.abs(off["ss"] - off["ff"]) > 1e-5)  # the corner changes every instance
    # a slow corner decides (and therefore converts) more slowly
    assert min(r.delay_s for r in res["ss"]) > max(r.delay_s for r in res["ff"])
    assert all(1e-15 < r.energy_j < 1e-12 for r in res["ss"])


def test_spice_sar_4bit_tt_matches_behavioural_model():
    s = ComparatorSizing()
    rng = np.random.default_rng(21)
    dvt = {d: rng.normal(0, s.sigma_vt_v(d)) for d in MISMATCH_DEVICES}
    caps, dummy = draw_caps(4, 10e-15, 0.003, rng)
    c_par = 0.1 * (caps.sum() + dummy)
    c_t = caps.sum() + dummy + c_par
    cmp = measure_comparator("tt", 1.8, 27.0, s, dvt, c_kick_f=c_t)
    inst = SarInstance(4, caps, dummy, c_par, 1.0, offset_v=-cmp.offset_at_v(c_t))
    v = validate_instance(PVT, s, dvt, inst, conversions_per_code=8)
    t = v["thresholds_lsb"]
    assert np.all(np.diff(t) > 0)
    dnl, _ = dnl_inl_from_thresholds(t)
    assert np.max(np.abs(dnl)) < 0.5
    assert v["rms_lsb"] <= 0.1
    # energy integrated in SPICE (reference charge into the bottom plates, comparator supply)
    # against the behavioural DAC energy and the testbench energy per decision
    assert abs(v["ref_energy_j"] / v["ref_energy_beh_j"] - 1) < 0.1
    ratio = v["vdd_energy_j"] / (v["decisions_per_conversion"] * cmp.energy_j)
    assert 0.6 < ratio < 1.4
    # ENOB of the SPICE transfer (its thresholds) on a coherent sine
    x = coherent_sine_input(4096, 67, 7.6, 8.0)
    enob = sine_fit_enob(np.searchsorted(t, x, side="right"), 4).enob
    assert enob > 3.5
