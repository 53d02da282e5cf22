"""SPICE-in-the-loop least squares: fit parameters of any netlist to measured curves.

A :class:`SpiceFitProblem` is a deck, the parameters to fit (each a ``.param`` changed with
``alterparam``, or an instance parameter changed with ``alter``) and the measured curves
(each an ngspice analysis, a temperature and the vector to compare). :func:`fit_spice`
minimises the scaled residuals with ``scipy.optimize.least_squares`` (trust-region
reflective, bounds), with positive parameters in log space, and simulates the columns of the
finite-difference Jacobian in parallel: one loky worker process per job, each with its own
libngspice and the deck loaded once, varied with ``alterparam``/``alter`` and re-run.

Confidence intervals come from the Jacobian at the solution (Gauss-Newton covariance scaled
by the residual variance, Student-t quantile), in the space the parameter is fitted in: a
log-space parameter gets a multiplicative interval.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

from characterization.errors import ConfigError
from spicebridge.errors import SimulationError
from spicebridge.netlist import deck_hash

from .errors import FitError

_INF = math.inf


@dataclass(frozen=True)
class FitParameter:
    """One parameter to fit.

    Attributes:
        name: The ``.param`` name in the deck (changed with ``alterparam``), or a label when
            ``alter`` is given.
        start: Start value.
        lower: Lower bound (``-inf``: none).
        upper: Upper bound (``inf``: none).
        log: Fit ``ln(value)`` instead of the value. ``None`` (default): log space when the
            parameter is positive (``lower >= 0`` and ``start > 0``).
        alter: ``(instance, instance_parameter)`` to set with ngspice's ``alter`` instead of
            ``alterparam``, e.g. ``("m.xm1.msky130_fd_pr__nfet_01v8", "delvto")``. Instance
            parameters need no re-parse (faster with big PDK models).
        scale: Typical size of a linear parameter, for the relative scaling of the step
            (default ``|start|``, or 1 when the start is 0).
        units: Units of the value, for reports (``V``, ``ohm``, ``1``).
        param: The deck's ``.param`` name when it differs from ``name`` (``fit_ron``).
    """

    name: str
    start: float
    lower: float = -_INF
    upper: float = _INF
    log: bool | None = None
    alter: tuple[str, str] | None = None
    scale: float | None = None
    units: str = ""
    param: str | None = None

    def __post_init__(self) -> None:
        if not self.name.replace("_", "").isalnum():
            raise ConfigError(f"parameter name must be a SPICE identifier, got {self.name!r}")
        if not (self.lower <= self.start <= self.upper) or self.lower >= self.upper:
            raise ConfigError(f"parameter {self.name!r}: start {self.start!r} must lie within "
                             f"bounds [{self.lower!r}, {self.upper!r}] (lower < upper)")
        if self.log and not (self.start > 0 and self.lower >= 0):
            raise ConfigError(f"parameter {self.name!r}: log=True needs start > 0 and lower >= 0, "
                             f"got start={self.start!r} lower={self.lower!r}")
        if self.scale is not None and not self.scale > 0:
            raise ConfigError(f"parameter {self.name!r}: scale must be > 0, got {self.scale!r}")

    @property
    def spice_name(self) -> str:
        """The ``.param`` name changed with ``alterparam``."""
        return self.param or self.name

    @property
    def is_log(self) -> bool:
        """Whether the fit runs on ``ln(value)``."""
        return bool(self.log) if self.log is not None else (self.lower >= 0 and self.start > 0)

    @property
    def step_scale(self) -> float:
        """Value per unit of the internal variable of a linear parameter."""
        if self.scale is not None:
            return float(self.scale)
        return abs(self.start) if self.start != 0 else 1.0

    def to_internal(self, value: float) -> float:
        """Value -> the variable the optimizer sees."""
        if self.is_log:
            return math.log(value) if value > 0 else -_INF
        return value / self.step_scale

    def from_internal(self, z: float) -> float:
        """The optimizer's variable -> value."""
        return math.exp(z) if self.is_log else z * self.step_scale


@dataclass(frozen=True, eq=False)
class Curve:
    """One measured curve and how to simulate it.

    Attributes:
        name: Label in reports (``iv_27c``, ``loop``).
        x: Measured abscissa, in the units of the simulation's scale vector (seconds for a
            transient, volts for a DC sweep); the simulated curve is interpolated there.
        y: Measured values.
        y_vector: Vector of the result to compare (``i(vd)``, ``v(out)``).
        y_sign: Factor on the simulated vector (``-1`` turns a source's branch current into
            the current delivered to the device).
        analysis: ngspice analysis command (``dc vg 0 1.8 0.02``, ``tran 1n 1u uic``);
            ``None`` runs the deck's own analysis lines.
        x_vector: Scale vector of the simulation; ``None``: the plot's own scale.
        temp_c: Circuit temperature, degrees Celsius.
        alter: ``(element, value)`` pairs set with ``alter`` before the run (a bias).
        mask: Points that enter the residual (``None``: all).
        segments: A label per point; residuals are also reported per label.
        plot_x: Abscissa for the overlay plot (e.g. the applied voltage of an I-V loop);
            ``None``: ``x``.
        x_units: Units of ``x`` (or ``plot_x``) for plots.
        y_units: Units of ``y``.
        x_label: Axis label for plots.
        log_y: Plot ``|y|`` on a log axis.
        sigma: Residual scale of each point (e.g. the measurement's noise sigma): the first
            pass of the fit uses the problem's ``scale`` (robust far from the solution), the
            second pass and the confidence intervals these weights.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    y_vector: str
    y_sign: float = 1.0
    analysis: str | None = None
    x_vector: str | None = None
    temp_c: float = 27.0
    alter: tuple[tuple[str, float], ...] = ()
    mask: np.ndarray | None = None
    segments: np.ndarray | None = None
    plot_x: np.ndarray | None = None
    x_units: str = ""
    y_units: str = ""
    x_label: str = "x"
    log_y: bool = False
    sigma: np.ndarray | None = None

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x, float), np.asarray(self.y, float)
        if self.sigma is not None:
            sg = np.asarray(self.sigma, float)
            if sg.shape != y.shape or not (np.isfinite(sg).all() and (sg > 0).all()):
                raise ConfigError(f"curve {self.name!r}: sigma must be positive, one per point")
            object.__setattr__(self, "sigma", sg)
        if x.shape != y.shape or x.ndim != 1 or x.size < 1:
            raise ConfigError(f"curve {self.name!r}: x and y must be 1-d of equal length, got "
                             f"{x.shape} and {y.shape}")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ConfigError(f"curve {self.name!r}: x and y must be finite")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        if self.mask is not None:
            m = np.asarray(self.mask, bool)
            if m.shape != x.shape or not m.any():
                raise ConfigError(f"curve {self.name!r}: mask must match x and select a point")
            object.__setattr__(self, "mask", m)


@dataclass(frozen=True, eq=False)
class SpiceFitProblem:
    """A deck, the parameters to fit and the measured curves.

    Attributes:
        deck: Full SPICE deck (with ``.param`` lines for every ``alterparam`` parameter).
        parameters: What to fit.
        curves: What to match.
        scale: ``"relative"``: residual = (sim - meas) / max(|meas|, floor), so a curve
            spanning decades weighs every decade (|meas| is a running median over 5 points,
            so that noise in the weights does not bias the fit); ``"absolute"``:
            (sim - meas) / floor.
        floor_rel: The floor, as a fraction of each curve's max |meas|.
        timeout_s: Per-simulation timeout.
        name: Label in reports and provenance.
        provenance: Extra provenance (data and model hashes) carried into the result.
    """

    deck: str
    parameters: tuple[FitParameter, ...]
    curves: tuple[Curve, ...]
    scale: str = "relative"
    floor_rel: float = 1e-3
    timeout_s: float | None = 60.0
    name: str = "fit"
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", tuple(self.parameters))
        object.__setattr__(self, "curves", tuple(self.curves))
        if not self.parameters:
            raise ConfigError("a fit needs at least one parameter")
        if not self.curves:
            raise ConfigError("a fit needs at least one curve")
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate parameter names in {names}")
        if self.scale not in ("relative", "absolute"):
            raise ConfigError(f"scale must be 'relative' or 'absolute', got {self.scale!r}")
        if not self.floor_rel > 0:
            raise ConfigError(f"floor_rel must be > 0, got {self.floor_rel!r}")
        n_res = sum(int(c.mask.sum()) if c.mask is not None else c.x.size for c in self.curves)
        if n_res <= len(self.parameters):
            raise ConfigError(f"{n_res} residual points cannot determine "
                             f"{len(self.parameters)} parameters")

    def sigma(self, curve: Curve) -> np.ndarray:
        """Residual scale of each point of ``curve`` (of the first pass, see ``fit_spice``)."""
        y = curve.y if curve.mask is None else curve.y[curve.mask]
        floor = self.floor_rel * float(np.max(np.abs(y))) or 1e-30
        if self.scale == "absolute":
            return np.full(curve.y.shape, floor)
        # running median of |y| over 5 points: weights from noisy values would bias the fit
        # by O(noise^2) towards small |y|; the median keeps edges and averages noise down
        from scipy.ndimage import median_filter

        return np.maximum(median_filter(np.abs(curve.y), size=5, mode="nearest"), floor)


# --- simulation (runs in the parent or in a loky worker) -------------------------------------

_WORKER: dict[str, Any] = {}


def shared_engine() -> Any:
    """The one ``SharedEngine`` this package uses in this process.

    Everything here loads decks through it: a ``SharedEngine`` knows only of the circuits it
    loaded itself, so a deck loaded through a second engine object would silently replace
    the circuit cached below.
    """
    engine = _WORKER.get("engine")
    if engine is None:
        from spicebridge.engines import SharedEngine

        engine = _WORKER["engine"] = SharedEngine()
    return engine


def _loaded(deck: str) -> Any:
    """The deck loaded in this process's libngspice, parsed once per process."""
    from spicebridge.worker import circuit

    return circuit(("fit", deck_hash(deck)), deck)


def simulate_curves(problem: SpiceFitProblem, values: Sequence[float]) -> list[np.ndarray]:
    """Simulate every curve of ``problem`` with parameter ``values`` (in this process).

    Returns:
        The simulated y of each curve at its measured x.

    Raises:
        SimulationError: ngspice failed (parse, convergence, timeout).
    """
    circ = _loaded(problem.deck)
    params = problem.parameters
    reparse = False
    for p, v in zip(params, values, strict=True):
        if p.alter is None:
            circ.command(f"alterparam {p.spice_name} = {v:.12g}")
            reparse = True
    if reparse:
        circ.reset()
    for p, v in zip(params, values, strict=True):
        if p.alter is not None:
            circ.alter(p.alter[0], **{p.alter[1]: float(v)})
    out = []
    for c in problem.curves:
        for element, value in c.alter:
            circ.alter(element, float(value))
        circ.set_temp(c.temp_c)
        res = circ.run(c.analysis, timeout_s=problem.timeout_s)
        plot = res.plots[list(res.plots)[-1]]
        vecs = plot.vectors
        if c.y_vector.lower() not in vecs:
            raise SimulationError(f"curve {c.name!r}: no vector {c.y_vector!r} in plot "
                                  f"{plot.name}; have {sorted(vecs)}", deck_path=None,
                                  log=res.log[-2000:], corner_key=None)
        xs_name = (c.x_vector or plot.scale or "").lower()
        if xs_name not in vecs:
            raise SimulationError(f"curve {c.name!r}: no scale vector {xs_name!r} in plot "
                                  f"{plot.name}", deck_path=None, log="", corner_key=None)
        xs = np.real(vecs[xs_name]).astype(float)
        ys = c.y_sign * np.real(vecs[c.y_vector.lower()]).astype(float)
        if xs.size > 1 and xs[-1] < xs[0]:
            xs, ys = xs[::-1], ys[::-1]
        out.append(np.interp(c.x, xs, ys))
    return out


def _worker_task(problem: SpiceFitProblem, values: tuple[float, ...]) -> Any:
    try:
        return simulate_curves(problem, values)
    except SimulationError as e:  # a failed point is data: the parent decides
        return f"{type(e).__name__}: {e}"


# --- the fit -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CurveFit:
    """Measured and fitted values of one curve, with residual statistics.

    Attributes:
        name: The curve's name.
        curve: The curve.
        y_fit: Simulated y at the fitted parameters.
        y_start: Simulated y at the start parameters.
        rms: Residual RMS over the fitted points, in the curve's y units.
        max_abs: Largest |residual|, in y units.
        rms_scaled: RMS of the scaled residuals (relative error for ``scale="relative"``).
        max_scaled: Largest scaled |residual|.
        segments: Segment label -> ``{"rms", "max_abs", "rms_scaled", "n"}``.
        sigma: The residual scale of each point (``scaled = (y_fit - y) / sigma``).
    """

    name: str
    curve: Curve
    y_fit: np.ndarray
    y_start: np.ndarray
    rms: float
    max_abs: float
    rms_scaled: float
    max_scaled: float
    segments: dict[str, dict[str, float]]
    sigma: np.ndarray


@dataclass(frozen=True, eq=False)
class FitResult:
    """The outcome of :func:`fit_spice`; a fit that did not converge keeps its best point.

    Attributes:
        parameters: The fitted parameters as specified.
        values: Name -> fitted value (the best point seen).
        start: Name -> start value.
        stderr: Name -> standard error (linearised; for log parameters ``value * se_ln``).
        ci_low: Name -> lower end of the confidence interval.
        ci_high: Name -> upper end.
        confidence: Level of the intervals (0.95).
        correlation: Parameter correlation matrix (fit space).
        converged: Whether the optimizer met its tolerances.
        status: ``least_squares`` status (0: evaluation limit; > 0: converged).
        message: What the optimizer said, and for a failed fit what was kept.
        cost: Cost at the best point, ``0.5 * sum(scaled residual**2)`` with the final
            weights (after ``reweight``, those of the fitted curve).
        start_cost: Cost at the start point.
        n_points: Residual points.
        n_fun: Function evaluations (each simulates every curve).
        n_jac: Jacobian evaluations.
        n_sim: Simulations of the whole curve set.
        n_failed: Simulations that failed (penalised, the optimizer stepped back).
        wall_s: Wall time of the fit.
        jobs: Worker processes used.
        curves: Per-curve fit statistics and data for plots.
        provenance: Data and model hashes, ngspice version, settings.
        rank: Numerical rank of the Jacobian at the solution (columns scaled to unit norm,
            singular values below ``RANK_RTOL`` of the largest count as zero).
        unidentified: Parameters the residual does not depend on, and (rank deficient) those
            that QR with column pivoting puts last: fixing these leaves a full-rank problem.
        verdict: Whether the fit is adequate (``characterization.fitting.verdict``), where
            the caller judged it.
    """

    parameters: tuple[FitParameter, ...]
    values: dict[str, float]
    start: dict[str, float]
    stderr: dict[str, float]
    ci_low: dict[str, float]
    ci_high: dict[str, float]
    confidence: float
    correlation: np.ndarray
    converged: bool
    status: int
    message: str
    cost: float
    start_cost: float
    n_points: int
    n_fun: int
    n_jac: int
    n_sim: int
    n_failed: int
    wall_s: float
    jobs: int
    curves: tuple[CurveFit, ...]
    provenance: dict[str, Any]
    rank: int = -1
    unidentified: tuple[str, ...] = ()
    verdict: dict[str, Any] | None = None

    def within_ci(self, truth: dict[str, float]) -> dict[str, bool]:
        """Whether each given true value lies inside its confidence interval."""
        return {k: bool(self.ci_low[k] <= v <= self.ci_high[k]) for k, v in truth.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no curve arrays)."""
        return {
            "converged": self.converged, "status": self.status, "message": self.message,
            "parameters": [
                {"name": p.name, "value": self.values[p.name], "start": self.start[p.name],
                 "stderr": self.stderr[p.name], "ci_low": self.ci_low[p.name],
                 "ci_high": self.ci_high[p.name], "lower": p.lower, "upper": p.upper,
                 "log": p.is_log, "units": p.units,
                 "alter": list(p.alter) if p.alter else None}
                for p in self.parameters],
            "confidence": self.confidence,
            "correlation": np.round(self.correlation, 6).tolist(),
            "cost": self.cost, "start_cost": self.start_cost, "n_points": self.n_points,
            "n_fun": self.n_fun, "n_jac": self.n_jac, "n_sim": self.n_sim,
            "n_failed": self.n_failed, "wall_s": round(self.wall_s, 3), "jobs": self.jobs,
            "curves": [{"name": c.name, "n": int(c.curve.x.size), "rms": c.rms,
                        "max_abs": c.max_abs, "rms_scaled": c.rms_scaled,
                        "max_scaled": c.max_scaled, "y_units": c.curve.y_units,
                        "segments": c.segments} for c in self.curves],
            "rank": self.rank, "unidentified": list(self.unidentified),
            "verdict": self.verdict,
            "provenance": self.provenance,
        }


def _ngspice_version() -> str:
    try:
        return str(shared_engine().version)
    except Exception as e:  # provenance only; never fatal
        return f"unknown ({type(e).__name__})"


class _Evaluator:
    """Residuals at internal points, parallel batches, best point and counters."""

    def __init__(self, problem: SpiceFitProblem, jobs: int, parallel: Any) -> None:
        self.problem = problem
        self.jobs = jobs
        self.parallel = parallel
        self.sigmas = [problem.sigma(c) for c in problem.curves]
        self.n_sim = 0
        self.n_failed = 0
        self.failures: list[str] = []
        self.best: tuple[float, np.ndarray, list[np.ndarray]] | None = None
        self.penalty = 1e3

    def values(self, z: np.ndarray) -> tuple[float, ...]:
        return tuple(p.from_internal(float(v))
                     for p, v in zip(self.problem.parameters, z, strict=True))

    def residuals(self, ys: list[np.ndarray]) -> np.ndarray:
        parts = []
        for c, s, y in zip(self.problem.curves, self.sigmas, ys, strict=True):
            r = (y - c.y) / s
            parts.append(r if c.mask is None else r[c.mask])
        return np.concatenate(parts)

    def simulate_many(self, zs: list[np.ndarray]) -> list[list[np.ndarray] | str]:
        vals = [self.values(z) for z in zs]
        self.n_sim += len(vals)
        if self.parallel is None or (len(vals) == 1 and self.jobs == 1):
            outs = [_worker_task(self.problem, v) for v in vals]
        else:
            from joblib import delayed

            outs = list(self.parallel(delayed(_worker_task)(self.problem, v) for v in vals))
        for o in outs:
            if isinstance(o, str):
                self.n_failed += 1
                if len(self.failures) < 20:
                    self.failures.append(o)
        return outs

    def record(self, z: np.ndarray, ys: list[np.ndarray], r: np.ndarray) -> None:
        cost = 0.5 * float(r @ r)
        if self.best is None or cost < self.best[0]:
            self.best = (cost, z.copy(), ys)

    def fun(self, z: np.ndarray) -> np.ndarray:
        (out,) = self.simulate_many([z])
        if isinstance(out, str):
            return np.full(self.n_res, self.penalty)
        r = self.residuals(out)
        self.record(z, out, r)
        return r

    n_res = 0


def fit_spice(
    problem: SpiceFitProblem,
    *,
    jobs: int = 1,
    max_nfev: int = 60,
    fd_step: float = 1e-3,
    ftol: float = 1e-8,
    xtol: float = 1e-8,
    gtol: float = 1e-8,
    confidence: float = 0.95,
    reweight: bool = True,
    progress: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Fit ``problem``'s parameters by SPICE-in-the-loop least squares.

    Args:
        problem: Deck, parameters and curves.
        jobs: Worker processes for the Jacobian columns (1: in this process).
        max_nfev: Limit on function evaluations; reaching it ends the fit as not converged,
            keeping the best point seen.
        fd_step: Forward-difference step in fit space (relative for log parameters).
        ftol: Relative cost-change tolerance of ``least_squares``.
        xtol: Relative step tolerance.
        gtol: Gradient tolerance.
        confidence: Level of the reported confidence intervals.
        reweight: For relative scaling, refit once with weights from the fitted curves
            instead of the noisy data (removes an O(noise^2) bias; a few more evaluations).
        progress: Called as ``progress(n_sim, cost)`` after each function evaluation.

    Returns:
        The fit; check ``converged`` (``message`` says why not).

    Raises:
        FitError: The start point cannot be simulated.
    """
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    t0 = time.perf_counter()
    params = problem.parameters
    z0 = np.array([p.to_internal(p.start) for p in params])
    lo = np.array([p.to_internal(p.lower) if not (p.is_log and p.lower <= 0) else -_INF
                   for p in params])
    hi = np.array([p.to_internal(p.upper) for p in params])

    parallel = None
    if jobs > 1:
        from joblib import Parallel

        parallel = Parallel(n_jobs=jobs, backend="loky")
        parallel.__enter__()
    try:
        ev = _Evaluator(problem, jobs, parallel)
        (first,) = ev.simulate_many([z0])
        if isinstance(first, str):
            raise FitError(f"{problem.name}: the start point "
                           f"{dict(zip([p.name for p in params], ev.values(z0), strict=True))} "
                           f"cannot be simulated: {first}")
        r0 = ev.residuals(first)
        ev.n_res = r0.size
        ev.record(z0, first, r0)
        start_cost = 0.5 * float(r0 @ r0)
        ev.penalty = 10.0 * (float(np.max(np.abs(r0))) + 1.0)
        n_jac = 0
        cache: dict[bytes, np.ndarray] = {z0.tobytes(): r0}

        def fun(z: np.ndarray) -> np.ndarray:
            key = z.tobytes()
            if key in cache:
                return cache[key]
            r = ev.fun(z)
            cache.clear()
            cache[key] = r
            if progress is not None:
                progress(ev.n_sim, 0.5 * float(r @ r))
            return r

        def jac(z: np.ndarray) -> np.ndarray:
            nonlocal n_jac
            n_jac += 1
            f0 = fun(z)
            steps = []
            for k in range(len(params)):
                h = fd_step * max(1.0, abs(z[k])) if not params[k].is_log else fd_step
                if z[k] + h > hi[k]:  # stay inside the bounds: step backwards
                    h = -h
                steps.append(h)
            zs = [z + np.eye(len(params))[k] * steps[k] for k in range(len(params))]
            outs = ev.simulate_many(zs)
            J = np.zeros((f0.size, len(params)))
            for k, o in enumerate(outs):
                if isinstance(o, str):
                    continue  # a column that cannot be simulated stays zero
                J[:, k] = (ev.residuals(o) - f0) / steps[k]
            return J

        res = optimize.least_squares(
            fun, z0, jac=jac, bounds=(lo, hi), method="trf", x_scale=1.0,
            ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=max_nfev)
        if ev.best is None:  # pragma: no cover - the start point always sets it
            raise FitError(f"{problem.name}: no point was evaluated")
        best_cost, zb, ys_best = ev.best
        converged = res.status > 0
        n_fun = int(res.nfev)
        given = any(c.sigma is not None for c in problem.curves)
        if (reweight or given) and converged and n_fun < max_nfev and (
                problem.scale == "relative" or given):
            # second pass with weights from the fitted (noise-free) curves: weights taken
            # from noisy data bias a relative fit by O(noise^2) per point
            ev.sigmas = [c.sigma if c.sigma is not None else
                         np.maximum(np.abs(y), s.min()) if problem.scale == "relative" else s
                         for c, y, s in zip(problem.curves, ys_best, ev.sigmas, strict=True)]
            ev.best = None
            cache.clear()
            res = optimize.least_squares(
                fun, zb, jac=jac, bounds=(lo, hi), method="trf", x_scale=1.0,
                ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=max_nfev - n_fun)
            n_fun += int(res.nfev)
            if ev.best is None:  # pragma: no cover
                raise FitError(f"{problem.name}: no point was evaluated")
            best_cost, zb, ys_best = ev.best
            converged = res.status > 0
        # where the optimizer's point is not the best one seen, linearise at the best one
        J = res.jac if converged and np.allclose(res.x, zb) else jac(zb)
    finally:
        if parallel is not None:
            parallel.__exit__(None, None, None)

    n = len(params)
    m = ev.n_res
    dof = max(m - n, 1)
    s2 = 2.0 * best_cost / dof
    jtj = J.T @ J
    try:
        cov = np.linalg.pinv(jtj, rcond=1e-12) * s2
    except np.linalg.LinAlgError:
        cov = np.full((n, n), np.nan)
    rank, unidentified = _rank(J, [p.name for p in params])
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    if rank < n:
        se = np.where(np.abs(J).sum(axis=0) == 0, np.inf, se)
    tq = float(stats.t.ppf(0.5 + confidence / 2, dof))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
        corr = np.where(d > 0, cov / d, np.nan)

    values, stderr, lo_ci, hi_ci = {}, {}, {}, {}
    for k, p in enumerate(params):
        v = p.from_internal(float(zb[k]))
        values[p.name] = v
        if p.is_log:
            stderr[p.name] = v * float(se[k])
            lo_ci[p.name] = v * math.exp(-tq * se[k]) if np.isfinite(se[k]) else 0.0
            hi_ci[p.name] = v * math.exp(tq * se[k]) if np.isfinite(se[k]) else _INF
        else:
            stderr[p.name] = float(se[k]) * p.step_scale
            lo_ci[p.name] = v - tq * stderr[p.name]
            hi_ci[p.name] = v + tq * stderr[p.name]

    z_start = z0
    ys_start = first
    curve_fits = []
    for c, s, y_fit, y_start in zip(problem.curves, ev.sigmas, ys_best, ys_start, strict=True):
        sel = np.ones(c.x.size, bool) if c.mask is None else c.mask
        d_abs = (y_fit - c.y)[sel]
        d_sc = ((y_fit - c.y) / s)[sel]
        segs: dict[str, dict[str, float]] = {}
        if c.segments is not None:
            labels = np.asarray(c.segments)[sel]
            for lab in dict.fromkeys(labels.tolist()):
                w = labels == lab
                segs[str(lab)] = {"n": int(w.sum()),
                                  "rms": float(np.sqrt(np.mean(d_abs[w] ** 2))),
                                  "max_abs": float(np.max(np.abs(d_abs[w]))),
                                  "rms_scaled": float(np.sqrt(np.mean(d_sc[w] ** 2)))}
        curve_fits.append(CurveFit(
            name=c.name, curve=c, y_fit=y_fit, y_start=y_start,
            rms=float(np.sqrt(np.mean(d_abs ** 2))), max_abs=float(np.max(np.abs(d_abs))),
            rms_scaled=float(np.sqrt(np.mean(d_sc ** 2))),
            max_scaled=float(np.max(np.abs(d_sc))), segments=segs, sigma=s))

    if converged:
        message = f"converged: {res.message}"
    else:
        message = (f"did not converge: {res.message} (status {res.status}); kept the best point "
                   f"seen, cost {best_cost:.6g} against {start_cost:.6g} at the start")
    if rank < n:
        message += (f"; the Jacobian has rank {rank} < {n}: not identifiable: "
                    f"{', '.join(unidentified)}")
    if ev.n_failed:
        message += f"; {ev.n_failed} simulations failed (first: {ev.failures[0]})"

    provenance = {
        "fit": problem.name,
        "deck_sha256": deck_hash(problem.deck),
        "ngspice_version": _ngspice_version(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "scale": problem.scale, "floor_rel": problem.floor_rel,
        "optimizer": {"method": "trf", "max_nfev": max_nfev, "fd_step": fd_step, "ftol": ftol,
                      "xtol": xtol, "gtol": gtol},
        **problem.provenance,
    }
    del z_start
    return FitResult(
        parameters=params, values=values, start={p.name: p.start for p in params},
        stderr=stderr, ci_low=lo_ci, ci_high=hi_ci, confidence=confidence, correlation=corr,
        converged=converged, status=int(res.status), message=message, cost=best_cost,
        start_cost=start_cost, n_points=m, n_fun=n_fun, n_jac=n_jac, n_sim=ev.n_sim,
        n_failed=ev.n_failed, wall_s=time.perf_counter() - t0, jobs=jobs,
        curves=tuple(curve_fits), provenance=provenance, rank=rank,
        unidentified=tuple(unidentified))


RANK_RTOL = 1e-6
"""Singular values of the column-normalised Jacobian below this fraction of the largest count
as zero (a pair of parameters correlated beyond 1 - 1e-12 is one parameter), and so does a
column below this fraction of the largest column (a parameter the residual ignores)."""


def _rank(J: np.ndarray, names: list[str]) -> tuple[int, list[str]]:
    """Numerical rank of ``J`` (unit-norm columns) and the parameters that lack support."""
    if not np.isfinite(J).all():
        return 0, list(names)
    norms = np.linalg.norm(J, axis=0)
    live = norms > RANK_RTOL * (norms.max() if norms.size else 0.0)  # fit space: comparable
    dead = [names[k] for k in range(len(names)) if not live[k]]
    if not live.any():
        return 0, list(names)
    Jn = J[:, live] / norms[live]
    s = np.linalg.svd(Jn, compute_uv=False)
    r = int(np.sum(s > RANK_RTOL * s[0]))
    live_names = [n for n, ok in zip(names, live, strict=True) if ok]
    if r == len(live_names):
        return r, dead
    # QR with column pivoting: the last columns pivoted are the ones the others explain;
    # fixing those leaves a full-rank problem
    from scipy.linalg import qr

    _, _, piv = qr(Jn, mode="economic", pivoting=True)
    return r, dead + [live_names[j] for j in piv[r:]]
