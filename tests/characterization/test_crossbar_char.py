"""Crossbar characterization: the k fit on synthetic data, reductions, a tiny end-to-end run."""

from __future__ import annotations

import numpy as np
import pytest

from characterization.crossbar.reduce import (
    XFER_GRID,
    fit_write_noise_k,
    reduce_margin,
    reduce_transfer,
    reduce_write,
)
from characterization.crossbar.run import characterize_crossbar, make_plan
from characterization.lookup import read_lookup

G_MIN, G_MAX = 1e-7, 1e-5


@pytest.mark.parametrize("k_true", [0.02, 0.1, 0.3])
def test_k_is_fitted_back_from_synthetic_clipformer_noise(k_true):
    rng = np.random.default_rng(7)
    levels = G_MIN + np.arange(4) / 3 * (G_MAX - G_MIN)
    g = np.repeat(levels, 1500)
    gp = g + k_true * np.sqrt((g - G_MIN) * (G_MAX - G_MIN)) * rng.standard_normal(g.size)
    k, se, r2 = fit_write_noise_k(g, gp, G_MIN, G_MAX)
    assert se == pytest.approx(k / np.sqrt(2 * 4500), rel=1e-9)   # level 0 carries no info
    assert abs(k - k_true) < 4 * se
    assert r2 > 0.995


def test_k_fit_flags_non_gaussian_deviations_and_too_few_samples():
    g = np.full(2000, G_MIN + 0.5 * (G_MAX - G_MIN))
    rng = np.random.default_rng(1)
    gp = g + 1e-7 * np.sign(rng.standard_normal(g.size))        # two-point deviations
    _, _, r2 = fit_write_noise_k(g, gp, G_MIN, G_MAX)
    assert r2 < 0.9
    assert np.isnan(fit_write_noise_k([G_MIN], [G_MIN], G_MIN, G_MAX)[0])


def test_transfer_binning_and_margin():
    rel = np.array([0.02, 0.11, 0.12, 0.49, 0.93])
    ratio = np.array([1.0, 0.9, 0.8, 0.7, 0.6])
    out, filled = reduce_transfer(rel, ratio)
    assert out.shape == (XFER_GRID.size, 2)
    assert out[1, 0] == pytest.approx(0.85) and out[1, 1] == pytest.approx(np.std([0.9, 0.8],
                                                                                  ddof=1))
    assert filled == XFER_GRID.size - 4 and np.isfinite(out).all()
    i_lvl = np.array([[0.0, 1.0, 2.0, 3.1], [0.0, 1.0, 2.0, 2.9]]) * 1e-6
    m = reduce_margin(i_lvl, np.full_like(i_lvl, 1e-8))
    assert m[0] == pytest.approx(1e-6)
    assert m[2] == pytest.approx(m[0] / m[1])
    st = reduce_write(np.array([[1.0, 2.0, 3.0], [4.0, np.nan, 6.0]]), np.array([2.0, 5.0]))
    assert st[1, :3] == pytest.approx([5.0, 5.0, np.std([4, 6], ddof=1)])


def test_plan_errors_name_the_key(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text('preset = "quick"\nrowz = 3\n')
    with pytest.raises(ValueError, match=r"x.toml.*rowz"):
        make_plan(config=bad)
    with pytest.raises(ValueError, match="unknown preset"):
        make_plan("huge")


@pytest.mark.ngspice
def test_tiny_characterization_writes_the_contract_tables(tmp_path):
    plan = make_plan(config={"process": ["ss", "ff"], "vdd_v": [1.8], "temp_c": [27.0],
                             "mc": 2, "mc_write": 3, "patterns": 4,
                             "column": {"rows": 16}, "write": {"cells_per_level": 2}})
    summary = characterize_crossbar(plan, tmp_path / "xbar.h5", jobs=1, quiet=True,
                                    plots=tmp_path / "plots")
    lf = read_lookup(summary["path"])
    assert summary["n_failed"] == 0 and lf.failures == []
    names = {"crossbar/read_transfer", "crossbar/read_noise", "crossbar/write_noise",
             "crossbar/write_noise_samples", "crossbar/write_noise_fit",
             "crossbar/sensing_margin"}
    assert names <= set(lf.tables)
    for n in names:
        t = lf[n]
        assert t.dims[:3] == ("process", "vdd_v", "temp_c")
        assert t.attrs["rows"] == 16 and t.attrs["g_max_s"] == pytest.approx(1e-5)
        assert np.isfinite(t.data).all(), n
    assert lf["crossbar/write_noise"].dims[3:] == ("mode", "level", "stat")
    fit = lf["crossbar/write_noise_fit"].sel(process="ss", vdd_v=1.8, temp_c=27.0)
    k_single, k_verify = fit.data[0, 0], fit.data[1, 0]
    assert 0 < k_verify < k_single                     # write-verify narrows the distribution
    xfer = lf["crossbar/read_transfer"]
    assert xfer.sel(process="ss", vdd_v=1.8, temp_c=27.0).data[-1, 0] < \
        xfer.sel(process="ff", vdd_v=1.8, temp_c=27.0).data[-1, 0]        # ss loses more
    noise = lf["crossbar/read_noise"].data
    assert (noise > 0).all() and (noise < 1e-6).all()
    assert lf.provenance["plan"]["column"]["rows"] == 16
    assert len(list((tmp_path / "plots").glob("*.png"))) == 4
