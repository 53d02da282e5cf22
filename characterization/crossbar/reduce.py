"""Reduction of the crossbar sweeps' raw measures to the contract tables, and the k fit.

Pure NumPy: no ngspice needed (unit-testable on synthetic data).
"""

from __future__ import annotations

import numpy as np

XFER_GRID = np.round(np.linspace(0.0, 1.0, 11), 10)
"""``i_ideal_rel`` coordinates of ``crossbar/read_transfer``; each collects the patterns within
half a grid step (0.05) of it."""

WRITE_STATS = ("target_s", "mean_s", "std_s", "q01_s", "q50_s", "q99_s")
FIT_STATS = ("k", "k_stderr", "r2")
MARGIN_STATS = ("margin_a", "sigma_a", "margin_sigma")


def fit_write_noise_k(g_target_s: np.ndarray, g_prog_s: np.ndarray, g_min_s: float,
                      g_max_s: float) -> tuple[float, float, float]:
    """Fit ``k`` of ``G' = G + k sqrt((G - Gmin)(Gmax - Gmin)) N(0,1)``.

    With ``u = (G' - G) / sqrt((G - Gmin)(Gmax - Gmin))`` over the samples whose target is
    above ``G_min`` (a cell at ``G_min`` carries no information on ``k``), the maximum-likelihood
    ``k`` of the zero-mean Gaussian is ``sqrt(mean(u^2))`` (a programming bias counts in it: the
    simulator's noise then has the measured second moment). Its standard error is
    ``k / sqrt(2 n)``. ``r2`` is the squared correlation of the sorted ``u`` with the normal
    quantiles (probability-plot r^2: 1 for Gaussian deviations).

    Args:
        g_target_s: Target conductance of each sample.
        g_prog_s: Programmed conductance of each sample (NaN samples are ignored).
        g_min_s, g_max_s: The conductance range.

    Returns:
        ``(k, k_stderr, r2)``; NaN when fewer than 2 usable samples.
    """
    g = np.asarray(g_target_s, dtype=float).ravel()
    gp = np.asarray(g_prog_s, dtype=float).ravel()
    if g.shape != gp.shape:
        g = np.broadcast_to(np.asarray(g_target_s, dtype=float), np.shape(g_prog_s)).ravel()
    scale = np.sqrt(np.clip(g - g_min_s, 0.0, None) * (g_max_s - g_min_s))
    ok = np.isfinite(gp) & np.isfinite(g) & (scale > 1e-6 * (g_max_s - g_min_s))
    u = (gp[ok] - g[ok]) / scale[ok]
    n = u.size
    if n < 2:
        return float("nan"), float("nan"), float("nan")
    k = float(np.sqrt(np.mean(u**2)))
    stderr = k / np.sqrt(2.0 * n)
    us = np.sort(u)
    from scipy import stats  # imported here: scipy.stats costs ~1 s of every CLI start

    q = stats.norm.ppf((np.arange(1, n + 1) - 0.375) / (n + 0.25))  # Blom positions
    r2 = float(np.corrcoef(us, q)[0, 1] ** 2) if np.std(us) > 0 else float("nan")
    return k, float(stderr), r2


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
