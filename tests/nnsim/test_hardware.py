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
    with pytest.raises(HardwareModelError, match="no k_zero_mean"):
        hw.write_noise_k("verify", zero_mean=True)  # a file from before issue 13
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


def _rewrite(src, dst, *, temps=None, extra=()):
    """A copy of lookup file ``src`` with its temperature axis cut to ``temps`` and tables
    ``extra`` added (written with the real writer)."""
    from characterization.lookup import Table, write_lookup

    lf = read_lookup(src)
    out = []
    for t in lf.tables.values():
        if temps is not None and "temp_c" in t.dims:
            c = np.asarray(t.coords["temp_c"], float)
            keep = [int(np.flatnonzero(c == x)[0]) for x in temps]
            t = Table(t.name, np.take(t.data, keep, axis=t.axis("temp_c")), t.dims,
                      {**t.coords, "temp_c": c[keep]}, t.units, t.coord_units, t.attrs)
        out.append(t)
    write_lookup(dst, [*out, *extra], lf.provenance, [])
    return dst


def test_crossbar_and_adc_files_must_share_one_pvt_grid(synthetic_lookups, tmp_path):
    xbar = _rewrite(synthetic_lookups[0], tmp_path / "xbar.h5", temps=[-40.0, 27.0])
    with pytest.raises(HardwareModelError, match=r"different PVT grids.*crossbar/read_transfer"
                       r".*'temp_c': \[-40.0, 27.0\].*adc/thresholds.*'temp_c': "
                       r"\[-40.0, 27.0, 85.0\]"):
        HardwareModel.from_lookup([xbar, synthetic_lookups[1]], "tt", 1.8, 27.0, 6)
    # without the ADC the crossbar file alone is fine; the same grids combine
    HardwareModel.from_lookup([xbar], "tt", 1.8, 27.0, adc_bits=None)
    HardwareModel.from_lookup(synthetic_lookups, "tt", 1.8, 27.0, 6)


def test_a_tile_taller_than_the_characterized_column_is_an_error(hw_tt):
    hw_tt.check_tile_rows(64)
    with pytest.raises(HardwareModelError, match=r"tile_rows=128 .* column has 64 rows"):
        hw_tt.check_tile_rows(128)


def test_readout_is_the_tables_piecewise_linear_interpolant(hw_tt):
    """No polynomial fit between the table and the network: a kinked transfer table comes back
    exactly, and so does the read noise at the sensed current."""
    import dataclasses

    kinked = np.array([1.0, 0.999, 0.99, 0.97, 0.937, 0.93, 0.9, 0.88, 0.87, 0.86, 0.851])
    hw = dataclasses.replace(hw_tt, transfer_mean=kinked, _cache={})
    u = torch.linspace(0.0, hw.i_full_a / hw.unit_a, 2001, dtype=torch.float64)
    gain, s_read, s_spread = hw.readout_terms(u)
    rel = u.numpy() * hw.unit_a / hw.i_full_a
    want = np.interp(rel, hw.transfer_i_rel, kinked)
    np.testing.assert_allclose(gain.numpy(), want, rtol=2e-6, atol=1e-7)
    i_s = u.numpy() * want * hw.unit_a
    np.testing.assert_allclose(s_read.numpy() * hw.unit_a,
                               np.interp(i_s, hw.read_i_a, hw.read_sigma_a), rtol=1e-4)
    np.testing.assert_allclose(s_spread.numpy(), np.interp(rel, hw.transfer_i_rel,
                                                           hw.transfer_std) * u.numpy() * want,
                               rtol=1e-4, atol=1e-9)
    # one term at a time is that term alone; none asked is three Nones (was a TypeError)
    g1, r1, sp1 = hw.readout_terms(u, gain=False, read=True, spread=False)
    assert g1 is None and sp1 is None
    torch.testing.assert_close(r1, s_read)
    assert hw.readout_terms(u, gain=False, read=False, spread=False) == (None, None, None)


def test_cell_read_table_is_the_cells_temperature(synthetic_lookups, tmp_path):
    """``crossbar/cell_read`` (G(T) per level) sets the ideal current of a pattern, and the
    write samples (read at T) are mapped to the states that read so: temperature once."""
    from characterization.lookup import Table

    lf = read_lookup(synthetic_lookups[0])
    ref = lf["crossbar/read_transfer"]
    g_t = 0.187e-6 + np.arange(4) / 3 * (9.68e-6 - 0.187e-6)  # HRS up 1.87x, LRS down 3 %
    shape = tuple(ref.coords[d].size for d in ("process", "vdd_v", "temp_c"))
    cell = Table("crossbar/cell_read", np.broadcast_to(g_t, (*shape, 4)).copy(),
                 ("process", "vdd_v", "temp_c", "level"),
                 {**{d: ref.coords[d] for d in ("process", "vdd_v", "temp_c")},
                  "level": np.arange(4)}, "S",
                 {"process": "", "vdd_v": "V", "temp_c": "degC", "level": "1"}, ref.attrs)
    path = _rewrite(synthetic_lookups[0], tmp_path / "xbar.h5", extra=[cell])
    hw = HardwareModel.from_lookup(path, "tt", 1.8, 27.0, adc_bits=None)
    plain = HardwareModel.from_lookup(synthetic_lookups[0], "tt", 1.8, 27.0, adc_bits=None)
    a, b = hw.cell_map()
    lv = np.array([0, 0, 1, 3, 2, 3])
    want = hw.v_read_v * g_t[lv].sum() / hw.unit_a
    assert a * lv.sum() + b * lv.size == pytest.approx(want, rel=1e-12)
    assert hw.i_full_t_a == pytest.approx(64 * 9.68e-6 * 0.2)
    # samples: G read at T -> the state's tnom conductance; the readout maps them back
    s_t, s_0 = hw.write_samples_s["verify"], plain.write_samples_s["verify"]
    back = g_t[0] + (s_t - hw.g_min_s) / (hw.g_max_s - hw.g_min_s) * (g_t[-1] - g_t[0])
    np.testing.assert_allclose(back, s_0, rtol=1e-9, atol=1e-15)
