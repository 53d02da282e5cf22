"""Whether a fit is adequate: residual against noise, bounds, identifiability, convergence.

A fit is **adequate** when all of these hold:

1. the optimizer converged;
2. the residual is within ``max_ratio`` (default 3) times what the record's noise alone would
   leave: the noise sigma of every fitted sample, in the residual's own scaling
   (``sigma_noise / sigma_weight``), RMS over the fitted samples, is what a perfect model
   would reach;
3. no fitted parameter sits on a bound (within 1e-3 of the bounded range, in the space the
   parameter is fitted in);
4. the Jacobian at the solution has full rank (every parameter changes the residual in its
   own way), and no parameter's standard error exceeds ``UNDETERMINED_SE`` in fit space (a
   log parameter known only within a factor of 7 either way at 95 % is not determined).

Each failure comes with what to try. Information criteria (for ranking model forms) are
computed on residuals scaled the same way for every model: by the measured data (running
median of |I| with the noise floor), not by each model's own fitted curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .spice_fit import FitResult

MAX_NOISE_RATIO = 3.0
"""Default: a relative rms residual more than this many times the noise's is not adequate."""
BOUND_TOL = 1e-3


@dataclass(frozen=True)
class Verdict:
    """The judgement of one fit.

    Attributes:
        adequate: All checks passed.
        reasons: One line per failed check, each with what to try.
        noise_ratio: Scaled rms residual / scaled rms noise.
        noise_rms_scaled: What the noise alone leaves, in the residual's scaling.
        residual_rms_scaled: The fit's scaled rms residual.
        max_ratio: The limit used.
        at_bound: ``name -> "lower"/"upper"``.
        noise_source: How the noise was found.
    """

    adequate: bool
    reasons: tuple[str, ...]
    noise_ratio: float
    noise_rms_scaled: float
    residual_rms_scaled: float
    max_ratio: float
    at_bound: dict[str, str]
    noise_source: str

    @property
    def label(self) -> str:
        """``adequate`` or ``NOT ADEQUATE``."""
        return "adequate" if self.adequate else "NOT ADEQUATE"

    def short(self) -> str:
        """One line: the label and the failed checks without advice."""
        if self.adequate:
            return f"adequate: residual {self.noise_ratio:.3g}x the noise"
        return "NOT ADEQUATE: " + "; ".join(r.split(" -- ")[0] for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"adequate": self.adequate, "label": self.label, "reasons": list(self.reasons),
                "noise_ratio": self.noise_ratio, "noise_rms_scaled": self.noise_rms_scaled,
                "residual_rms_scaled": self.residual_rms_scaled, "max_ratio": self.max_ratio,
                "at_bound": self.at_bound, "noise_source": self.noise_source}


def _at_bound(result: FitResult) -> dict[str, str]:
    out = {}
    for p in result.parameters:
        v = result.values[p.name]
        lo, hi = p.lower, p.upper
        if p.is_log:
            lo_i = math.log(lo) if lo > 0 else -math.inf
            hi_i = math.log(hi) if math.isfinite(hi) else math.inf
            z = math.log(v) if v > 0 else -math.inf
        else:
            lo_i, hi_i, z = lo, hi, v
        width = hi_i - lo_i
        tol = BOUND_TOL * width if math.isfinite(width) else BOUND_TOL * max(abs(z), 1.0)
        if math.isfinite(lo_i) and z - lo_i <= tol:
            out[p.name] = "lower"
        elif math.isfinite(hi_i) and hi_i - z <= tol:
            out[p.name] = "upper"
    return out


UNDETERMINED_SE = 1.0
"""A parameter whose standard error in fit space exceeds this (log parameters: a factor e per
sigma, a 95 % interval wider than x/÷ 7; linear ones: their own scale) is not determined."""


def _undetermined(result: FitResult) -> dict[str, float]:
    out = {}
    for p in result.parameters:
        v, se = result.values[p.name], result.stderr[p.name]
        z_se = (se / abs(v) if v else math.inf) if p.is_log else se / p.step_scale
        if not math.isfinite(z_se) or z_se > UNDETERMINED_SE:
            out[p.name] = z_se
    return out


def assess(result: FitResult, noise_sigma: Sequence[np.ndarray], *, noise_source: str,
           max_ratio: float = MAX_NOISE_RATIO, free_hint: Sequence[str] = (),
           bound_sources: dict[str, str] | None = None) -> Verdict:
    """Judge ``result`` (see module doc).

    Args:
        result: The fit.
        noise_sigma: Per-sample noise sigma of each curve's y (same units as y).
        noise_source: How the noise was found (for the report).
        max_ratio: Limit on residual / noise.
        free_hint: Parameters that are fixed now and could be freed (named in the advice).
        bound_sources: Parameter -> where its bounds came from (named in the advice).
    """
    res2 = noise2 = 0.0
    n = 0
    for c, sig in zip(result.curves, noise_sigma, strict=True):
        sel = np.ones(c.curve.x.size, bool) if c.curve.mask is None else c.curve.mask
        r = ((c.y_fit - c.curve.y) / c.sigma)[sel]
        q = (np.asarray(sig, float) / c.sigma)[sel]
        res2 += float(r @ r)
        noise2 += float(q @ q)
        n += int(sel.sum())
    res_rms = math.sqrt(res2 / max(n, 1))
    noise_rms = math.sqrt(noise2 / max(n, 1))
    ratio = res_rms / noise_rms if noise_rms > 0 else math.inf
    reasons = []
    if not result.converged:
        reasons.append(f"the optimizer did not converge ({result.message.split(';')[0]}) -- "
                       "raise --max-nfev, or start closer (--start)")
    if ratio > max_ratio:
        hint = f"free {', '.join(free_hint)}, " if free_hint else ""
        reasons.append(f"residual {ratio:.3g}x the noise (scaled rms {res_rms:.3g} against "
                       f"{noise_rms:.3g} from noise alone; limit {max_ratio:g}x) -- {hint}"
                       "try another model form (--compare), or check the noise (--noise)")
    at = _at_bound(result)
    for name, side in at.items():
        p = next(q for q in result.parameters if q.name == name)
        b = p.lower if side == "lower" else p.upper
        src = (bound_sources or {}).get(name, "")
        reasons.append(f"{name} = {result.values[name]:.4g} sits on its {side} bound {b:.4g}"
                       f"{' (' + src + ')' if src else ''} -- widen it (--bounds "
                       f"{name}=LO:HI) or fix it (--fixed {name}=VALUE)")
    n_par = len(result.parameters)
    if 0 <= result.rank < n_par:
        names = ", ".join(result.unidentified) or "?"
        them = "it" if len(result.unidentified) < 2 else "them"
        reasons.append(f"the Jacobian has rank {result.rank} of {n_par}: the record does not "
                       f"determine {names} given the others -- fix {them} (--fixed "
                       "NAME=VALUE), or measure a record that exercises them")
    loose = _undetermined(result)
    loose = {k: v for k, v in loose.items() if k not in result.unidentified}
    if loose:
        what = ", ".join(f"{k} (95 % CI [{result.ci_low[k]:.3g}, {result.ci_high[k]:.3g}])"
                         for k in loose)
        reasons.append(f"the Jacobian is nearly rank deficient: the record does not determine "
                       f"{what} -- fix it (--fixed NAME=VALUE) or measure a record that "
                       "exercises it")
    return Verdict(adequate=not reasons, reasons=tuple(reasons), noise_ratio=ratio,
                   noise_rms_scaled=noise_rms, residual_rms_scaled=res_rms, max_ratio=max_ratio,
                   at_bound=at, noise_source=noise_source)


def information_criteria(result: FitResult, data_sigma: Sequence[np.ndarray]) -> dict[str, float]:
    """AIC and BIC of a least-squares fit, on residuals scaled by ``data_sigma``.

    ``AIC = n ln(RSS/n) + 2k``, ``BIC = n ln(RSS/n) + k ln n`` (Gaussian errors of unknown
    common variance), ``k`` the number of fitted parameters. Compare only fits to the same
    record with the same ``data_sigma``.
    """
    rss = 0.0
    n = 0
    for c, s in zip(result.curves, data_sigma, strict=True):
        sel = np.ones(c.curve.x.size, bool) if c.curve.mask is None else c.curve.mask
        r = ((c.y_fit - c.curve.y) / s)[sel]
        rss += float(r @ r)
        n += int(sel.sum())
    k = len(result.parameters)
    base = n * math.log(max(rss, 1e-300) / n)
    return {"rss": rss, "n": n, "k": k, "rms": math.sqrt(rss / n),
            "aic": base + 2 * k, "bic": base + k * math.log(n)}
