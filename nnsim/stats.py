"""Confidence intervals that account for both chips and images, and paired differences.

An evaluation scores the same ``n_images`` images on each of ``n_chips`` simulated chips:
a crossed design (every chip sees every image). The accuracy's uncertainty has two sources,
the chip sample (programming errors, ADC instances) and the image sample. ``bootstrap_ci``
resamples both at once (chips with replacement, images with replacement, independently; the
statistic of a resample is the mean of the selected sub-matrix), which covers both sources
(it is slightly conservative: the chip x image interaction is counted twice).

Paired differences: two settings evaluated with the same chip seeds on the same images give
two correctness matrices; their difference is bootstrapped with the *same* resampled chips
and images, so chip-to-chip and image-to-image variation common to both cancels.

With fewer than 3 chips the chip part of the variance is poorly known: a warning is returned
(and raised) with the interval. Every resample is drawn from a recorded seed.
"""

from __future__ import annotations

import warnings

import numpy as np

MIN_CHIPS = 3
"""Below this many chips the interval carries a warning."""
N_BOOT = 2000
"""Bootstrap resamples."""


def chip_warning(chips: int) -> list[str]:
    """The warning (as a list of messages) for fewer than ``MIN_CHIPS`` chips, else []."""
    if chips >= MIN_CHIPS:
        return []
    msg = (f"{chips} chip(s): the chip-to-chip part of the interval is poorly known "
           f"(use --chips {MIN_CHIPS} or more)")
    if chips <= 1:
        msg = ("1 chip: the interval covers the image sample only, not chip-to-chip "
               f"variation (use --chips {MIN_CHIPS} or more)")
    return [msg]


def bootstrap_ci(correct: np.ndarray, *, seed: int = 0, n_boot: int = N_BOOT,
                 level: float = 0.95, warn: bool = True) -> tuple[float, list[float], list[str]]:
    """Mean and percentile interval of a (chips, images) matrix, resampling chips and images.

    Args:
        correct: (chips, images) of 0/1 (or differences in -1..1 for a paired comparison).
        seed: Seed of the resampling.
        n_boot: Resamples.
        level: Coverage.
        warn: Also ``warnings.warn`` the messages.

    Returns:
        ``(mean, [low, high], messages)``.
    """
    c = np.asarray(correct, dtype=np.float64)
    if c.ndim != 2 or c.size == 0:
        raise ValueError(f"correctness matrix of shape {c.shape}; expected (chips, images)")
    n_c, n_i = c.shape
    rng = np.random.default_rng(seed)
    # mean of c[chips_b][:, images_b] = (w_c^T c w_i) / (n_c n_i) with bincount weights
    wc = np.stack([np.bincount(rng.integers(0, n_c, n_c), minlength=n_c) for _ in range(n_boot)])
    wi = np.stack([np.bincount(rng.integers(0, n_i, n_i), minlength=n_i) for _ in range(n_boot)])
    stats = np.einsum("bc,ci,bi->b", wc.astype(np.float64), c, wi.astype(np.float64),
                      optimize=True) / (n_c * n_i)
    a = (1.0 - level) / 2
    lo, hi = np.quantile(stats, [a, 1.0 - a])
    msgs = chip_warning(n_c)
    if warn:
        for m in msgs:
            warnings.warn(m, stacklevel=2)
    return float(c.mean()), [float(lo), float(hi)], msgs


def paired_difference(a: np.ndarray, b: np.ndarray, *, seed: int = 0, n_boot: int = N_BOOT,
                      warn: bool = True) -> tuple[float, list[float], list[str]]:
    """``mean(a) - mean(b)`` and its interval, resampling the same chips and images for both.

    Raises:
        ValueError: The matrices differ in shape (not the same chips and images).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same chips and images: shapes "
                         f"{a.shape} and {b.shape}")
    return bootstrap_ci(a - b, seed=seed, n_boot=n_boot, warn=warn)
