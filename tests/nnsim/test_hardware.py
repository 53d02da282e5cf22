"""HardwareModel.from_lookup on lookup files written with the real writer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from characterization.errors import ExtrapolationError
from characterization.lookup import read_lookup
from nnsim.hardware import AdcModel, HardwareModel, HardwareModelError, NotCharacterizedError


def test_reads_the_contract_tables(hw_tt, synthetic_lookups):
    hw = hw_tt
    assert (hw.g_min_s, hw.g_max_s, hw.levels, hw.rows) == (1e-7, 1e-5, 4, 64)
    assert hw.write_noise_k("single") == pytest.approx(0.02)
    assert hw.write_noise_k("verify") == pytest.approx(0.005)
    adc = hw.adc()
    assert adc.bits == 6 and adc.thresholds_lsb.shape == (8, 63)
    assert adc.thresholds_lsb.dtype == np.float64
    assert adc.code_offset == 0.0  # thresholds near k - 0.5
    assert hw.adc(8).thresholds_lsb.shape == (8, 255)
    lf = read_lookup(synthetic_lookups[1])
    raw = lf["adc/thresholds"].sel(process="tt", vdd_v=1.8, temp_c=27.0, bits=6).data[:, :63]
    np.testing.assert_allclose(adc.thresholds_lsb, raw)
    assert adc.noise_lsb == pytest.approx(0.2)
    assert adc.energy_j > 0 and adc.conversion_time_s > 0
    with pytest.raises(HardwareModelError, match="not characterized"):
        hw.adc(5)


def test_interpolates_between_characterized_points(synthetic_lookups):
    lo = HardwareModel.from_lookup(synthetic_lookups, "ss", 1.62, 27.0, 6)
    hi = HardwareModel.from_lookup(synthetic_lookups, "ss", 1.8, 27.0, 6)
    mid = HardwareModel.from_lookup(synthetic_lookups, "ss", 1.71, 27.0, 6)
    assert mid.write_noise_k() == pytest.approx(0.5 * (lo.write_noise_k() + hi.write_noise_k()))
    np.testing.assert_allclose(mid.adc().thresholds_lsb,
                               0.5 * (lo.adc().thresholds_lsb + hi.adc().thresholds_lsb))
    # samples interpolated quantile by quantile: sorted, between the neighbours
    s_lo, s_hi, s_mid = (h.write_samples_s["single"][3] for h in (lo, hi, mid))
    np.testing.assert_allclose(s_mid, 0.5 * (s_lo + s_hi))
    assert np.all(np.diff(s_mid) >= 0)


def test_refuses_to_extrapolate_and_names_the_range(synthetic_lookups):
    with pytest.raises(ExtrapolationError, match=r"vdd_v=2\.1.*\[1\.62, 1\.98\]"):
        HardwareModel.from_lookup(synthetic_lookups, "tt", 2.1, 27.0, 6)
    with pytest.raises(ExtrapolationError, match="temp_c"):
        HardwareModel.from_lookup(synthetic_lookups, "tt", 1.8, 125.0, 6)
    with pytest.raises(KeyError, match="sf"):
        HardwareModel.from_lookup(synthetic_lookups, "sf", 1.8, 27.0, 6)
    with pytest.raises(HardwareModelError, match=r"5 bits .* available: \[4, 6, 8\]"):
        HardwareModel.from_lookup(synthetic_lookups, "tt", 1.8, 27.0, 5)


def test_uncharacterized_corner_names_files_and_the_characterized_corners(synthetic_lookups):
    with pytest.raises(NotCharacterizedError) as info:
        HardwareModel.from_lookup(synthetic_lookups, "sf", 1.8, 27.0, 6)
    msg = str(info.value)
    assert str(synthetic_lookups[0]) in msg and "process='sf'" in msg
    assert "['tt', 'ss', 'ff']" in msg and "np.str_" not in msg
    assert isinstance(info.value, HardwareModelError)


def test_missing_table_is_named(synthetic_lookups):
    with pytest.raises(HardwareModelError, match="adc/thresholds"):
        HardwareModel.from_lookup(synthetic_lookups[:1], "tt", 1.8, 27.0, 6)


def test_nominal_defaults(synthetic_lookups):
    hw = HardwareModel.from_lookup(synthetic_lookups)
    assert (hw.process, hw.vdd_v, hw.temp_c, hw.adc_bits) == ("tt", 1.8, 27.0, 6)


def test_adc_quantize_uses_the_instance_thresholds(hw_tt):
    adc = hw_tt.adc()
    x = torch.linspace(-1, 64, 5001, dtype=torch.float64)
    for inst in (0, 3):
        th = adc.thresholds_lsb[inst]
        want = np.searchsorted(th, x.numpy(), side="right")
        got = adc.quantize(x, inst, noise=False).numpy()
        np.testing.assert_array_equal(got, want)
        lut = adc.quantize_lut(x.float(), inst).numpy()
        # the table resolves thresholds to 1/32 LSB: codes differ only that close to one
        near = np.min(np.abs(x.numpy()[:, None] - th[None]), axis=1) < 1 / 32
        assert np.array_equal(lut[~near], want[~near])
    per_col = torch.tensor([0, 3])
    got = adc.quantize(x[:, None].expand(-1, 2), per_col, noise=False).numpy()
    for j, inst in enumerate((0, 3)):
        np.testing.assert_array_equal(
            got[:, j], np.searchsorted(adc.thresholds_lsb[inst], x.numpy(), side="right"))


def test_adc_noise_dithers_codes(hw_tt):
    adc = hw_tt.adc()
    th = adc.thresholds_lsb[0]
    g = torch.Generator().manual_seed(3)
    x = torch.full((20000,), float(th[30]), dtype=torch.float64)  # on a transition
    codes = adc.quantize(x, 0, g).numpy()
    assert set(np.unique(codes)) <= {29.0, 30.0, 31.0, 32.0}
    assert 0.3 < (codes >= 31).mean() < 0.7  # noise decides half of them
    assert np.unique(adc.quantize(x, 0, noise=False).numpy()).tolist() == [31.0]
    assert np.array_equal(AdcModel.ideal(4).quantize(torch.tensor([0.4, 0.6, 20.0]), 0,
                                                     noise=False).numpy(), [0, 1, 15])
