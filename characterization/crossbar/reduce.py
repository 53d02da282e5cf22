"""Reduction of the crossbar sweeps' raw measures to the contract tables, and the k fit.

Pure NumPy: no ngspice needed (unit-testable on synthetic data).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from characterization.errors import ConfigError

XFER_GRID = np.round(np.linspace(0.0, 1.0, 11), 10)
"""``i_ideal_rel`` coordinates of ``crossbar/read_transfer``; each collects the patterns within
half a grid step (0.05) of it."""

WRITE_STATS = ("target_s", "mean_s", "std_s", "q01_s", "q50_s", "q99_s")
FIT_STATS = ("k", "k_stderr", "r2", "k_zero_mean")
LEVEL_STATS = ("bias_s", "k", "std_s", "n")
MARGIN_STATS = ("margin_a", "sigma_a", "margin_sigma")


def write_noise_scale(g_s: np.ndarray, g_min_s: float, g_max_s: float) -> np.ndarray:
    """``sqrt((G - G_min)(G_max - G_min))``: the scale of the TxSim/ClipFormer write-noise form
    ``G' = G + k * scale * N(0, 1)`` (0 at and below G_min). The one formula everything uses."""
    g = np.asarray(g_s, dtype=float)
    return np.sqrt(np.clip(g - g_min_s, 0.0, None) * (g_max_s - g_min_s))


def write_noise_draw(g_s: np.ndarray, k: float, z: np.ndarray, g_min_s: float,
                     g_max_s: float) -> np.ndarray:
    """``G' = G + k sqrt((G - G_min)(G_max - G_min)) z`` for standard-normal draws ``z``."""
    return np.asarray(g_s, float) + k * write_noise_scale(g_s, g_min_s, g_max_s) * z


def estimate_write_noise(g_target_s: np.ndarray, g_prog_s: np.ndarray, g_min_s: float,
                         g_max_s: float, *, center: str = "target") -> dict[str, Any]:
    """The one write-noise ``k`` estimator (the crossbar tables and ``fitting.stats`` use it).

    With ``u = (G' - c) / sqrt((G - Gmin)(Gmax - Gmin))`` over the samples whose target is
    above ``G_min`` (a cell at G_min carries no information on ``k``), the maximum-likelihood
    ``k`` of a zero-mean Gaussian ``u`` is ``sqrt(mean(u^2))``, standard error
    ``k / sqrt(2 n)``. ``center="target"``: ``c = G`` (the ClipFormer/TxSim k; a programming
    bias counts in it); ``center="mean"``: ``c`` = the mean of the level's samples (the
    zero-mean spread, the bias taken out).

    Returns:
        ``k``, ``k_stderr``, ``n``, ``u`` (the normalized deviations used), and per distinct
        target level (sorted, ``levels_s``): ``bias_s`` (mean G' - G), ``std_s`` (sample
        standard deviation), ``k_level`` (zero-mean k of the level, NaN at G_min),
        ``n_level``. ``k`` is NaN with fewer than 2 usable samples.
    """
    if center not in ("target", "mean"):
        raise ConfigError(f"center must be 'target' or 'mean', got {center!r}")
    gp = np.asarray(g_prog_s, dtype=float).ravel()
    g = np.broadcast_to(np.asarray(g_target_s, dtype=float), np.shape(g_prog_s)).ravel()
    fin = np.isfinite(gp) & np.isfinite(g)
    g, gp = g[fin], gp[fin]
    levels = np.unique(g)
    dev = gp - g
    bias = np.array([dev[g == lv].mean() for lv in levels])
    std = np.array([dev[g == lv].std(ddof=1) if np.sum(g == lv) > 1 else np.nan
                    for lv in levels])
    if center == "mean":
        for lv, b in zip(levels, bias, strict=True):
            dev[g == lv] = dev[g == lv] - b
    scale = write_noise_scale(g, g_min_s, g_max_s)
    use = scale > 1e-6 * (g_max_s - g_min_s)
    u = dev[use] / scale[use]
    n = int(u.size)
    k = float(np.sqrt(np.mean(u**2))) if n >= 2 else float("nan")
    k_level, n_level = [], []
    for lv, b in zip(levels, bias, strict=True):
        w = g == lv
        sc = float(write_noise_scale(lv, g_min_s, g_max_s))
        n_level.append(int(w.sum()))
        k_level.append(float(np.sqrt(np.mean((gp[w] - lv - b) ** 2)) / sc)
                       if sc > 1e-6 * (g_max_s - g_min_s) else float("nan"))
    return {"k": k, "k_stderr": k / np.sqrt(2.0 * n) if n >= 2 else float("nan"), "n": n,
            "u": u, "levels_s": levels, "bias_s": bias, "std_s": std,
            "k_level": np.asarray(k_level), "n_level": np.asarray(n_level)}


def fit_write_noise_k(g_target_s: np.ndarray, g_prog_s: np.ndarray, g_min_s: float,
                      g_max_s: float, *, center: str = "target") -> tuple[float, float, float]:
    """``k`` of ``G' = G + k sqrt((G - Gmin)(Gmax - Gmin)) N(0,1)`` (``estimate_write_noise``)
    with its standard error and ``r2``, the squared correlation of the sorted ``u`` with the
    normal quantiles (probability-plot r^2: 1 for Gaussian deviations).

    Returns:
        ``(k, k_stderr, r2)``; NaN when fewer than 2 usable samples.
    """
    est = estimate_write_noise(g_target_s, g_prog_s, g_min_s, g_max_s, center=center)
    u, n = est["u"], est["n"]
    if n < 2:
        return float("nan"), float("nan"), float("nan")
    us = np.sort(u)
    from scipy import stats  # imported here: scipy.stats costs ~1 s of every CLI start

    q = stats.norm.ppf((np.arange(1, n + 1) - 0.375) / (n + 0.25))  # Blom positions
    r2 = float(np.corrcoef(us, q)[0, 1] ** 2) if np.std(us) > 0 else float("nan")
    return est["k"], float(est["k_stderr"]), r2


def reduce_transfer(rel: np.ndarray, ratio: np.ndarray) -> tuple[np.ndarray, int]:
    """Bin (ideal/full-scale, actual/ideal) samples onto ``XFER_GRID``.

    Args:
        rel, ratio: Samples of one corner (any shape, NaN ignored).

    Returns:
        ``(len(XFER_GRID), 2)`` of [mean_ratio, std_ratio] (empty bins linearly interpolated
        from their neighbours), and the number of empty bins that were filled.
    """
    rel, ratio = np.ravel(rel), np.ravel(ratio)
    ok = np.isfinite(rel) & np.isfinite(ratio)
    rel, ratio = rel[ok], ratio[ok]
    out = np.full((XFER_GRID.size, 2), np.nan)
    half = 0.5 * (XFER_GRID[1] - XFER_GRID[0])
    for b, x in enumerate(XFER_GRID):
        sel = np.abs(rel - x) <= half + 1e-12
        if sel.any():
            out[b, 0] = ratio[sel].mean()
            out[b, 1] = ratio[sel].std(ddof=1) if sel.sum() > 1 else 0.0
    have = np.isfinite(out[:, 0])
    filled = int((~have).sum())
    if have.any() and filled:
        for s in range(2):
            out[~have, s] = np.interp(XFER_GRID[~have], XFER_GRID[have], out[have, s])
    return out, filled


def reduce_write(g_prog: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Statistics of programmed conductances.

    Args:
        g_prog: ``(..., level, sample)`` samples.
        targets: Target conductance per level.

    Returns:
        ``(..., level, 6)`` with ``WRITE_STATS``.
    """
    out = np.empty((*g_prog.shape[:-1], len(WRITE_STATS)))
    out[..., 0] = np.broadcast_to(targets, g_prog.shape[:-1])
    with np.errstate(all="ignore"), _quiet_nan():
        out[..., 1] = np.nanmean(g_prog, axis=-1)
        out[..., 2] = np.nanstd(g_prog, axis=-1, ddof=1)
        out[..., 3:6] = np.moveaxis(np.nanquantile(g_prog, [0.01, 0.5, 0.99], axis=-1), 0, -1)
    return out


def reduce_margin(i_lvl: np.ndarray, noise_lvl: np.ndarray,
                  prog_sigma_a: np.ndarray | None = None) -> np.ndarray:
    """Sensing margin from per-level column currents of Monte-Carlo chips.

    Args:
        i_lvl: ``(mc, level)`` sensed currents with one active row at each level.
        noise_lvl: ``(mc, level)`` read-noise sigma at those currents.
        prog_sigma_a: Optional per-level current spread from programming (write-verify
            conductance sigma x read voltage), added in quadrature.

    Returns:
        ``[margin_a, sigma_a, margin_sigma]``: the smallest distance between adjacent mean
        level currents, the largest level spread ``sqrt(var over chips + mean noise^2
        + prog^2)``, and their ratio (sigmas between adjacent levels).
    """
    with np.errstate(all="ignore"), _quiet_nan():
        mu = np.nanmean(i_lvl, axis=0)
        n_ok = np.sum(np.isfinite(i_lvl), axis=0)
        var = np.where(n_ok > 1, np.nanvar(i_lvl, axis=0, ddof=1), 0.0)
        prog = 0.0 if prog_sigma_a is None else np.nan_to_num(np.asarray(prog_sigma_a)) ** 2
        sig = np.sqrt(var + np.nanmean(np.asarray(noise_lvl) ** 2, axis=0) + prog)
    margin = float(np.min(np.diff(mu)))
    sigma = float(np.max(sig))
    return np.array([margin, sigma, margin / sigma if sigma > 0 else np.nan])


class _quiet_nan:
    """Silence 'Mean of empty slice' warnings (all-NaN corners stay NaN)."""

    def __enter__(self) -> None:
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._w.__exit__(*exc)
