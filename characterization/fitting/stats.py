"""Statistical fits of characterization data, sharing one interface.

Every ``fit_*`` here returns a :class:`StatFit`: the fitted parameters with standard errors,
goodness-of-fit numbers (``r2``, a Kolmogorov-Smirnov test of the standardized residuals
against N(0, 1), ``n``), and ``sample(rng, ...)`` to draw from the fitted model, so that a
simulator can use either the empirical distribution or the fitted one.

- :func:`fit_write_noise`: the ClipFormer/TxSim form
  ``G' = G + k * sqrt((G - G_min)(G_max - G_min)) * N(0, 1)``.
- :func:`fit_read_noise`: ``sigma_I^2 = a + b |I| + c I^2`` (thermal floor, shot-like,
  relative/flicker-like), non-negative coefficients.
- :func:`fit_threshold_spread`: ADC code thresholds per instance as
  ``t[i, k] = ideal_k + offset_i + gain_i * (ideal_k - mid) + e[i, k]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

from characterization.errors import ConfigError


@dataclass(frozen=True)
class StatFit:
    """A fitted statistical model.

    Attributes:
        name: ``write_noise``, ``read_noise``, ``threshold_spread``.
        form: The model as a formula.
        params: Fitted parameters.
        stderr: Standard error of each parameter.
        gof: Goodness of fit: ``r2``, ``ks_stat``, ``ks_p`` (standardized residuals against
            N(0, 1)), ``n`` and model-specific numbers.
        units: Units of each parameter.
        extra: Model-specific arrays (per-level moments, per-instance offsets).
    """

    name: str
    form: str
    params: dict[str, float]
    stderr: dict[str, float]
    gof: dict[str, float]
    units: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (arrays as lists)."""
        ex = {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v)
              for k, v in self.extra.items()}
        return {"name": self.name, "form": self.form, "params": self.params,
                "stderr": self.stderr, "gof": self.gof, "units": self.units, "extra": ex}

    def sample(self, rng: np.random.Generator, **inputs: Any) -> np.ndarray:
        """Draw from the fitted model.

        ``write_noise``: ``g_s=`` targets -> programmed conductances. ``read_noise``:
        ``i_a=`` currents -> noisy currents. ``threshold_spread``: ``instances=`` -> an
        (instances, codes) array of thresholds in LSB.
        """
        p = self.params
        if self.name == "write_noise":
            g = np.asarray(inputs["g_s"], float)
            gmin, gmax = self.extra["g_min_s"], self.extra["g_max_s"]
            spread = np.sqrt(np.clip((g - gmin) * (gmax - gmin), 0, None))
            return g + p["k"] * spread * rng.standard_normal(g.shape)
        if self.name == "read_noise":
            i = np.asarray(inputs["i_a"], float)
            return i + read_noise_sigma(self, i) * rng.standard_normal(i.shape)
        if self.name == "threshold_spread":
            n = int(inputs["instances"])
            ideal = np.asarray(self.extra["ideal_lsb"], float)
            mid = float(self.extra["mid_lsb"])
            off = p["offset_mean_lsb"] + p["offset_sigma_lsb"] * rng.standard_normal((n, 1))
            gain = p["gain_sigma"] * rng.standard_normal((n, 1))
            e = p["residual_sigma_lsb"] * rng.standard_normal((n, ideal.size))
            return ideal[None, :] + off + gain * (ideal[None, :] - mid) + e
        raise ConfigError(f"no sampler for a {self.name!r} fit; known: write_noise, read_noise, "
                         "threshold_spread")


def _ks(z: np.ndarray) -> tuple[float, float]:
    z = z[np.isfinite(z)]
    if z.size < 3:
        return math.nan, math.nan
    r = stats.kstest(z, "norm")
    return float(r.statistic), float(r.pvalue)


def _r2(y: np.ndarray, yhat: np.ndarray) -> float:
    ss_res = float(np.sum((y - yhat) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan


def fit_write_noise(g_target_s: np.ndarray, g_programmed_s: np.ndarray, *, g_min_s: float,
                    g_max_s: float, center: str = "target") -> StatFit:
    """Fit ``k`` of ``G' = G + k sqrt((G - G_min)(G_max - G_min)) N(0, 1)``.

    Args:
        g_target_s: Target conductance of each sample (or one per level, broadcast).
        g_programmed_s: Programmed conductances, same shape as the targets.
        g_min_s: Minimum conductance of the cell.
        g_max_s: Maximum conductance.
        center: ``"target"``: deviations from the target (the ClipFormer form);
            ``"mean"``: from each level's mean (removes a systematic offset).

    Returns:
        ``params = {"k"}``; ``gof`` has ``r2`` of the per-level variance against the form,
        the KS test of the standardized deviations, ``n``; ``extra`` has per-level moments.

    Raises:
        ValueError: No sample above ``g_min_s``, or shapes that do not match.
    """
    from characterization.crossbar.reduce import estimate_write_noise  # the one k estimator

    g = np.broadcast_to(np.asarray(g_target_s, float), np.shape(g_programmed_s)).ravel()
    gp = np.asarray(g_programmed_s, float).ravel()
    if center not in ("target", "mean"):
        raise ConfigError(f"center must be 'target' or 'mean', got {center!r}")
    ok = np.isfinite(g) & np.isfinite(gp)
    g, gp = g[ok], gp[ok]
    levels = np.unique(g)
    dev = gp - g
    if center == "mean":
        for lv in levels:
            w = g == lv
            dev[w] = gp[w] - gp[w].mean()
    spread2 = (g - g_min_s) * (g_max_s - g_min_s)
    if not (spread2 > 0).any():
        raise ConfigError("no sample has a target above g_min_s: k is undefined")
    est = estimate_write_noise(g, gp, g_min_s, g_max_s, center=center)
    n = est["n"]
    k = float(est["k"]) if n >= 2 else float(np.sqrt(np.mean(est["u"] ** 2)))
    k2 = k * k
    k_se = k / math.sqrt(2 * n)
    z = est["u"] / k if k > 0 else np.full(n, np.nan)
    ks, ksp = _ks(z)
    var_obs = np.array([np.mean(dev[g == lv] ** 2) for lv in levels])
    var_fit = k2 * np.clip((levels - g_min_s) * (g_max_s - g_min_s), 0, None)
    r2 = _r2(var_obs, var_fit) if levels.size > 1 else math.nan
    return StatFit(
        name="write_noise", form="G' = G + k*sqrt((G-Gmin)*(Gmax-Gmin))*N(0,1)",
        params={"k": k}, stderr={"k": k_se}, gof={"r2": r2, "ks_stat": ks, "ks_p": ksp, "n": n},
        units={"k": "1"},
        extra={"g_min_s": float(g_min_s), "g_max_s": float(g_max_s), "levels_s": levels,
               "std_s": np.sqrt(var_obs), "std_fit_s": np.sqrt(var_fit), "center": center})


def fit_read_noise(i_a: np.ndarray, sigma_a: np.ndarray) -> StatFit:
    """Fit ``sigma^2 = a + b |I| + c I^2`` (a, b, c >= 0) to read-noise sigma against current.

    Weighted by ``1/sigma^2`` so that small currents count as much as large ones.

    Returns:
        ``params = {"a_a2", "b_a", "c"}``; ``gof`` has ``r2`` (on log sigma), the largest
        relative error and ``n``.
    """
    i = np.abs(np.asarray(i_a, float)).ravel()
    s = np.asarray(sigma_a, float).ravel()
    ok = np.isfinite(i) & np.isfinite(s) & (s > 0)
    i, s = i[ok], s[ok]
    if i.size < 3:
        raise ConfigError(f"need at least 3 finite (current, sigma) pairs, got {i.size}")
    A = np.stack([np.ones_like(i), i, i ** 2], axis=1) / (s ** 2)[:, None]
    coef, _ = optimize.nnls(A, np.ones_like(i))
    pred = np.sqrt(np.clip(np.stack([np.ones_like(i), i, i ** 2], 1) @ coef, 1e-300, None))
    resid = (s ** 2 - pred ** 2) / s ** 2
    dof = max(i.size - 3, 1)
    s2 = float(resid @ resid) / dof
    try:
        cov = np.linalg.pinv(A.T @ A) * s2
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        se = np.full(3, math.nan)
    names = ("a_a2", "b_a", "c")
    rel = np.abs(pred - s) / s
    return StatFit(
        name="read_noise", form="sigma_I^2 = a + b*|I| + c*I^2",
        params=dict(zip(names, map(float, coef), strict=True)),
        stderr=dict(zip(names, map(float, se), strict=True)),
        gof={"r2": _r2(np.log(s), np.log(pred)), "max_rel_err": float(rel.max()),
             "rms_rel_err": float(np.sqrt(np.mean(rel ** 2))), "n": int(i.size)},
        units={"a_a2": "A^2", "b_a": "A", "c": "1"})


def read_noise_sigma(fit: StatFit, i_a: np.ndarray) -> np.ndarray:
    """Sigma of the read current at ``i_a`` from a :func:`fit_read_noise` result."""
    i = np.abs(np.asarray(i_a, float))
    p = fit.params
    return np.sqrt(p["a_a2"] + p["b_a"] * i + p["c"] * i ** 2)


def fit_threshold_spread(thresholds_lsb: np.ndarray, *, ideal_lsb: np.ndarray | None = None
                         ) -> StatFit:
    """Fit per-instance offset and gain plus a residual spread to ADC code thresholds.

    Args:
        thresholds_lsb: (instances, codes) transition levels in LSB; NaN entries (codes
            beyond 2^bits - 1) are ignored.
        ideal_lsb: Ideal transition levels per code (default: ``k - 0.5`` for code k =
            1, 2, ...).

    Returns:
        ``params = {"offset_mean_lsb", "offset_sigma_lsb", "gain_sigma",
        "residual_sigma_lsb"}``; ``gof`` has ``r2`` of the offset+gain model on the
        deviations, the KS test of the residuals, ``n``; ``extra`` has per-instance offsets
        and gains and the per-code residual sigma (DNL-like pattern).
    """
    t = np.atleast_2d(np.asarray(thresholds_lsb, float))
    codes = np.arange(1, t.shape[1] + 1)
    ideal = (codes - 0.5) if ideal_lsb is None else np.asarray(ideal_lsb, float)
    valid = np.isfinite(t).all(axis=0)
    t, ideal_v = t[:, valid], ideal[valid]
    if t.shape[1] < 3 or t.shape[0] < 2:
        raise ConfigError(f"need >= 2 instances and >= 3 codes with finite thresholds, got "
                         f"{t.shape}")
    mid = float(ideal_v.mean())
    x = ideal_v - mid
    dev = t - ideal_v[None, :]
    X = np.stack([np.ones_like(x), x], 1)
    coef, *_ = np.linalg.lstsq(X, dev.T, rcond=None)  # (2, instances)
    offsets, gains = coef[0], coef[1]
    resid = dev - (X @ coef).T
    n_i, n_k = t.shape
    dof = max(n_i * (n_k - 2), 1)
    rs = math.sqrt(float(np.sum(resid ** 2)) / dof)
    z = resid.ravel() / rs if rs > 0 else np.full(resid.size, np.nan)
    ks, ksp = _ks(z)
    params = {"offset_mean_lsb": float(offsets.mean()),
              "offset_sigma_lsb": float(offsets.std(ddof=1)),
              "gain_sigma": float(gains.std(ddof=1)), "residual_sigma_lsb": rs}
    se = {"offset_mean_lsb": params["offset_sigma_lsb"] / math.sqrt(n_i),
          "offset_sigma_lsb": params["offset_sigma_lsb"] / math.sqrt(2 * (n_i - 1)),
          "gain_sigma": params["gain_sigma"] / math.sqrt(2 * (n_i - 1)),
          "residual_sigma_lsb": rs / math.sqrt(2 * dof)}
    ideal_full = ideal.copy()
    return StatFit(
        name="threshold_spread",
        form="t[i,k] = ideal_k + offset_i + gain_i*(ideal_k - mid) + N(0, residual_sigma^2)",
        params=params, stderr=se,
        gof={"r2": _r2(dev.ravel(), (X @ coef).T.ravel()), "ks_stat": ks, "ks_p": ksp,
             "n": int(dev.size)},
        units={"offset_mean_lsb": "LSB", "offset_sigma_lsb": "LSB", "gain_sigma": "1",
               "residual_sigma_lsb": "LSB"},
        extra={"ideal_lsb": ideal_full[valid], "mid_lsb": mid, "offsets_lsb": offsets,
               "gains": gains, "residual_sigma_per_code_lsb": resid.std(axis=0, ddof=1)})
