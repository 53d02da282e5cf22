"""Statistical fits: known models are recovered, goodness of fit tells a wrong form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from characterization.fitting import (
    fit_read_noise,
    fit_threshold_spread,
    fit_write_noise,
    read_noise_sigma,
)

G_MIN, G_MAX = 0.1e-6, 10e-6


def _write_samples(k, rng, n=2000):
    levels = np.linspace(G_MIN, G_MAX, 4)
    g = np.repeat(levels, n // 4)
    gp = g + k * np.sqrt((g - G_MIN) * (G_MAX - G_MIN)) * rng.standard_normal(g.size)
    return g, gp


def test_fit_write_noise_recovers_k_and_samples_alike():
    rng = np.random.default_rng(7)
    g, gp = _write_samples(0.05, rng)
    fit = fit_write_noise(g, gp, g_min_s=G_MIN, g_max_s=G_MAX)
    assert abs(fit.params["k"] - 0.05) < 3 * fit.stderr["k"]
    assert fit.gof["r2"] > 0.95
    assert fit.gof["ks_p"] > 0.01
    assert fit.gof["n"] == 1500  # the level at G_min carries no information on k
    again = fit.sample(rng, g_s=g)
    refit = fit_write_noise(g, again, g_min_s=G_MIN, g_max_s=G_MAX)
    assert abs(refit.params["k"] - fit.params["k"]) < 4 * fit.stderr["k"]
    json.dumps(fit.to_dict())


def test_fit_write_noise_flags_a_wrong_form():
    rng = np.random.default_rng(8)
    levels = np.linspace(G_MIN, G_MAX, 4)
    g = np.repeat(levels, 500)
    gp = g + 0.3e-6 * rng.standard_normal(g.size)  # constant sigma, not the sqrt form
    fit = fit_write_noise(g, gp, g_min_s=G_MIN, g_max_s=G_MAX)
    assert fit.gof["r2"] < 0.5  # per-level variance does not follow (G - Gmin)


def test_fit_write_noise_needs_levels_above_gmin():
    with pytest.raises(ValueError, match="g_min_s"):
        fit_write_noise([G_MIN, G_MIN], [G_MIN, 1.1 * G_MIN], g_min_s=G_MIN, g_max_s=G_MAX)


def test_fit_read_noise_recovers_variance_terms():
    i = np.logspace(-8, -4, 40)
    a, b, c = 1e-20, 3.2e-19 * 1e5 * 2, 1e-6
    true = np.sqrt(a + b * i + c * i ** 2)
    rng = np.random.default_rng(3)
    meas = true * (1 + 0.01 * rng.standard_normal(i.size))
    fit = fit_read_noise(i, meas)
    np.testing.assert_allclose(read_noise_sigma(fit, i), true, rtol=0.03)
    assert fit.gof["r2"] > 0.99
    assert all(v >= 0 for v in fit.params.values())


def test_fit_threshold_spread_recovers_offset_gain_and_residual():
    rng = np.random.default_rng(5)
    n_inst, bits = 400, 5
    ideal = np.arange(1, 2 ** bits) - 0.5
    mid = ideal.mean()
    off = 0.2 + 0.3 * rng.standard_normal((n_inst, 1))
    gain = 0.01 * rng.standard_normal((n_inst, 1))
    t = ideal + off + gain * (ideal - mid) + 0.1 * rng.standard_normal((n_inst, ideal.size))
    t = np.concatenate([t, np.full((n_inst, 32), np.nan)], axis=1)  # NaN padding (6-bit table)
    fit = fit_threshold_spread(t)
    p, se = fit.params, fit.stderr
    assert abs(p["offset_mean_lsb"] - 0.2) < 4 * se["offset_mean_lsb"]
    assert abs(p["offset_sigma_lsb"] - 0.3) < 4 * se["offset_sigma_lsb"]
    assert abs(p["residual_sigma_lsb"] - 0.1) < 4 * se["residual_sigma_lsb"]
    assert abs(p["gain_sigma"] - 0.01) < 0.002
    assert fit.gof["ks_p"] > 0.01
    draw = fit.sample(rng, instances=3)
    assert draw.shape == (3, ideal.size)
