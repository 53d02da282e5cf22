"""Fit the RRAM compact model (``netlists/rram/rram.lib``) to a measured record.

The measured voltage is replayed as a piecewise-linear source on the model's ``te`` pin
(``be`` grounded) in one transient, so SET/RESET history, pulse trains and read-outs between
them are simulated exactly as measured. The fitted parameters are passed to the subcircuit as
instance parameters bound to global ``.param fit_<name>`` values, which ``alterparam`` changes
between runs. The fitted model is written back as a copy of the library with new defaults in
its ``.subckt ... params:`` header and the fit's provenance in a comment header, so the
crossbar netlists accept it unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spicebridge.fileio import atomic_write_text
from spicebridge.netlist import netlist_dir
from spicebridge.units import parse_spice_number

from .errors import FitError
from .measurement import Measurement, read_measurement_csv
from .spice_fit import Curve, FitParameter, FitResult, SpiceFitProblem, fit_spice

DEFAULT_PARAMS: tuple[str, ...] = ("ron", "roff", "vset", "vreset")
"""Parameters fitted when none are named: what a quasi-static I-V loop determines best."""

SUBCKT = "rram"

# physical ranges for parameters whose generic bounds would be wrong
_KNOWN_BOUNDS: dict[str, tuple[float, float]] = {
    "w0": (0.0, 1.0), "wedge": (1e-4, 0.5), "d_vset": (-1.0, 1.0), "sig_c2c": (0.0, 2.0),
    "tc_on": (-0.05, 0.05), "ea_off": (0.0, 2.0), "ea_sw": (0.0, 2.0), "tnom": (-60.0, 200.0),
}
_UNITS = {"ron": "ohm", "roff": "ohm", "v0": "V", "vset": "V", "vreset": "V", "kset": "1/s",
          "kreset": "1/s", "d_vset": "V", "t_c2c": "s", "cp": "F", "gnoise": "S",
          "ea_off": "eV", "ea_sw": "eV", "tnom": "degC", "tc_on": "1/K"}
_PROVENANCE_TAG = "* fit-provenance-json: "


def default_model_path() -> Path:
    """``netlists/rram/rram.lib`` of this installation."""
    return netlist_dir() / "rram" / "rram.lib"


def _subckt_header(lines: list[str], subckt: str, path: Path) -> tuple[int, int]:
    """Line range [start, end) of the ``.subckt NAME`` line and its ``+`` continuations."""
    for i, line in enumerate(lines):
        parts = line.split()
        if len(parts) >= 2 and parts[0].lower() == ".subckt" and parts[1].lower() == subckt:
            j = i + 1
            while j < len(lines) and lines[j].lstrip().startswith("+"):
                j += 1
            return i, j
    raise FitError(f"{path}: no '.subckt {subckt}' line")


_PARAM_RE = re.compile(r"(\w+)\s*=\s*(\{[^}]*\}|'[^']*'|[^\s=]+)")


def read_subckt_params(path: str | Path, subckt: str = SUBCKT) -> dict[str, str]:
    """Default parameters of ``.subckt NAME ... params: a=1 b=2`` as written (name -> text).

    Raises:
        FitError: No such subcircuit, or it declares no ``params:``.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    i, j = _subckt_header(lines, subckt, path)
    text = " ".join([lines[i]] + [ln.lstrip()[1:] for ln in lines[i + 1 : j]])
    low = text.lower()
    if "params:" not in low:
        raise FitError(f"{path}: '.subckt {subckt}' declares no 'params:' defaults")
    body = text[low.index("params:") + len("params:"):]
    return {m.group(1).lower(): m.group(2) for m in _PARAM_RE.finditer(body)}


def default_parameter(name: str, default_text: str, *, start: float | None = None,
                      bounds: tuple[float, float] | None = None) -> FitParameter:
    """A :class:`FitParameter` for a model parameter, with physical default bounds.

    Positive defaults are fitted in log space within x1000 either way; negative ones
    linearly between 10x and 1/1000 of the default; a few parameters have their own range.
    The default bounds are set around the model's default value (not around ``start``), so
    a start of the wrong sign or far off is refused instead of fitted into nonsense.

    Raises:
        FitError: The default is an expression and no start was given, or the start lies
            outside the bounds.
    """
    try:
        d_model: float | None = parse_spice_number(default_text)
    except ValueError:
        d_model = None
    if start is None and d_model is None:
        raise FitError(f"parameter {name!r} defaults to the expression {default_text!r}; "
                       f"give a start value (and bounds) for it")
    d = float(start) if start is not None else float(d_model)  # type: ignore[arg-type]
    ref = d_model if d_model else d  # ranges around the model's default where it has one
    if bounds is not None:
        lo, hi = bounds
    elif name in _KNOWN_BOUNDS:
        lo, hi = _KNOWN_BOUNDS[name]
    elif ref > 0:
        lo, hi = ref / 1e3, ref * 1e3
    elif ref < 0:
        lo, hi = 10 * ref, ref / 1e3
    else:
        lo, hi = -1.0, 1.0
    if not lo <= d <= hi:
        how = ("the bounds given" if bounds is not None else
               f"default bounds around the model's default {default_text}")
        raise FitError(f"parameter {name!r}: start {d!r} outside its bounds [{lo:g}, {hi:g}] "
                       f"({how}); give a start inside them, or other bounds "
                       f"(--bounds {name}=LO:HI)")
    return FitParameter(name=name, start=d, lower=lo, upper=hi, units=_UNITS.get(name, "1"),
                        param=f"fit_{name}")


def _pwl(time_s: np.ndarray, v_v: np.ndarray) -> str:
    pairs = [f"{t:.12g} {v:.9g}" for t, v in zip(time_s, v_v, strict=True)]
    if time_s[0] > 0:
        pairs.insert(0, f"0 {v_v[0]:.9g}")
    rows = [" ".join(pairs[k:k + 8]) for k in range(0, len(pairs), 8)]
    return "Vsrc te 0 PWL(\n" + "\n".join(f"+ {r}" for r in rows) + " )"


def memristor_deck(model_path: str | Path, time_s: np.ndarray, v_v: np.ndarray,
                   params: Mapping[str, float], *, subckt: str = SUBCKT,
                   temp_c: float = 27.0, max_step_s: float | None = None,
                   reltol: float = 1e-4) -> str:
    """Testbench replaying ``v_v(time_s)`` on ``te`` (``be`` grounded).

    ``params`` become ``.param fit_<name>`` and instance parameters ``name={fit_name}``.
    The device current is ``-i(vsrc)``.
    """
    model_path = Path(model_path).resolve()
    dts = np.diff(time_s)
    step = float(np.median(dts))
    # a quarter sample: switching makes the current depend steeply on the state, and a
    # coarser step made finite-difference Jacobian columns of vset wrong by 2x
    tmax = float(max_step_s) if max_step_s is not None else step / 4
    plist = " ".join(f"fit_{k}={v:.12g}" for k, v in params.items())
    inst = " ".join(f"{k}={{fit_{k}}}" for k in params)
    return "\n".join([
        f"* spicebridge fit memristor: replay of the measured voltage on {subckt}",
        f'.include "{model_path}"',
        f".param {plist}" if plist else "* no fitted parameters",
        f".options reltol={reltol:.3g} abstol=1e-15 vntol=1e-7",
        f".temp {temp_c:.6g}",
        _pwl(np.asarray(time_s, float), np.asarray(v_v, float)),
        f"Xdut te 0 {subckt} {inst}",
        f".tran {step:.6g} {float(time_s[-1]):.12g} 0 {tmax:.6g}",
        ".end",
    ]) + "\n"


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def memristor_problem(
    measurement: Measurement,
    *,
    model_path: str | Path | None = None,
    params: Sequence[str] = DEFAULT_PARAMS,
    start: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    fixed: Mapping[str, float] | None = None,
    subckt: str = SUBCKT,
    temp_c: float = 27.0,
    fit_pulses: bool = False,
    scale: str = "relative",
    floor_rel: float = 1e-3,
) -> SpiceFitProblem:
    """Build the fit problem for a measured record.

    Args:
        measurement: The record (see :func:`read_measurement_csv`).
        model_path: The compact model (default: ``netlists/rram/rram.lib``).
        params: Names of the model parameters to fit.
        start: Start values (default: the model's defaults).
        bounds: ``name -> (lower, upper)`` (default: see :func:`default_parameter`).
        fixed: Other parameters set to given values, not fitted (e.g. ``w0`` of the record).
        subckt: Subcircuit name.
        temp_c: Temperature of the measurement.
        fit_pulses: Include samples inside programming pulses in the residual (by default
            they drive the simulation but are not fitted: currents under compliance or
            during edges are rarely trustworthy).
        scale: Residual scaling (see :class:`SpiceFitProblem`).
        floor_rel: Floor of the relative scaling, as a fraction of max |I|.

    Raises:
        FitError: Unknown parameter names, or a name both fitted and fixed.
    """
    model_path = Path(model_path) if model_path is not None else default_model_path()
    if not model_path.is_file():
        raise FitError(f"no memristor model at {model_path}")
    defaults = read_subckt_params(model_path, subckt)
    params = [p.strip().lower() for p in params if p.strip()]
    fixed = {k.lower(): float(v) for k, v in (fixed or {}).items()}
    start = {k.lower(): float(v) for k, v in (start or {}).items()}
    bounds = {k.lower(): v for k, v in (bounds or {}).items()}
    unknown = sorted((set(params) | set(fixed) | set(start) | set(bounds)) - set(defaults))
    if unknown:
        raise FitError(f"{model_path}: '.subckt {subckt}' has no parameter(s) {unknown}; "
                       f"it has {sorted(defaults)}")
    both = sorted(set(params) & set(fixed))
    if both:
        raise FitError(f"parameter(s) {both} are both fitted and fixed")
    extra = sorted((set(start) | set(bounds)) - set(params))
    if extra:
        raise FitError(f"start/bounds given for {extra}, which are not fitted ({params})")
    fit_params = tuple(default_parameter(n, defaults[n], start=start.get(n),
                                         bounds=bounds.get(n)) for n in params)
    if abs(float(measurement.v_v[0])) > 0.3:
        warnings.warn(f"the record starts at {measurement.v_v[0]:.3g} V: the operating point "
                      f"at t = 0 sets the model's state, so a start beyond a switching "
                      f"threshold switches the device before the record begins",
                      stacklevel=2)
    values = {p.name: p.start for p in fit_params} | fixed
    deck = memristor_deck(model_path, measurement.time_s, measurement.v_v, values,
                          subckt=subckt, temp_c=temp_c)
    mask = None if fit_pulses or not measurement.pulse.any() else ~measurement.pulse
    curve = Curve(
        name="record", x=measurement.time_s, y=measurement.i_a, y_vector="i(vsrc)",
        y_sign=-1.0, x_vector="time", temp_c=temp_c, mask=mask, segments=measurement.curve,
        plot_x=measurement.v_v, x_units="V", y_units="A", x_label="applied voltage (V)",
        log_y=True)
    prov = {
        "data_path": str(measurement.path) if measurement.path else None,
        "data_sha256": measurement.sha256,
        "model_path": str(model_path),
        "model_sha256": _file_sha256(model_path),
        "subckt": subckt, "fixed": fixed, "temp_c": temp_c, "fit_pulses": fit_pulses,
        "n_samples": len(measurement),
    }
    return SpiceFitProblem(deck=deck, parameters=fit_params, curves=(curve,), scale=scale,
                           floor_rel=floor_rel, name="memristor", provenance=prov)


def fit_memristor(
    data: Measurement | str | Path,
    *,
    model_path: str | Path | None = None,
    params: Sequence[str] = DEFAULT_PARAMS,
    start: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    fixed: Mapping[str, float] | None = None,
    sample_period_s: float | None = None,
    jobs: int = 1,
    max_nfev: int = 60,
    **problem_kwargs: Any,
) -> FitResult:
    """Fit the memristor model to a measured record (CSV path or :class:`Measurement`).

    Other keywords go to :func:`memristor_problem`; see :func:`fit_spice` for the result.
    """
    m = data if isinstance(data, Measurement) else read_measurement_csv(
        data, sample_period_s=sample_period_s)
    problem = memristor_problem(m, model_path=model_path, params=params, start=start,
                                bounds=bounds, fixed=fixed, **problem_kwargs)
    return fit_spice(problem, jobs=jobs, max_nfev=max_nfev)


def simulate_memristor(time_s: np.ndarray, v_v: np.ndarray, params: Mapping[str, float], *,
                       model_path: str | Path | None = None, subckt: str = SUBCKT,
                       temp_c: float = 27.0) -> np.ndarray:
    """Current of the model driven by ``v_v(time_s)``, at the sample times (synthetic data)."""
    from .spice_fit import shared_engine

    model_path = Path(model_path) if model_path is not None else default_model_path()
    t = np.asarray(time_s, float)
    deck = memristor_deck(model_path, t, np.asarray(v_v, float), dict(params), subckt=subckt,
                          temp_c=temp_c)
    res = shared_engine().simulate(deck)
    plot = res.plots[list(res.plots)[-1]]
    return np.interp(t, plot.vectors["time"], -plot.vectors["i(vsrc)"])


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def write_fitted_model(result: FitResult, out: str | Path, *, model_path: str | Path | None = None,
                       subckt: str = SUBCKT) -> Path:
    """Write the model with the fitted values as its defaults, provenance in the header.

    Parameters given as ``fixed`` in the fit are written too. The file is written atomically.

    Returns:
        The path written.
    """
    prov = result.provenance
    model_path = Path(model_path or prov.get("model_path") or default_model_path())
    out = Path(out)
    lines = model_path.read_text(encoding="utf-8").splitlines()
    i, j = _subckt_header(lines, subckt, model_path)
    new_values = dict(prov.get("fixed", {})) | result.values
    header = lines[i:j]
    for name, value in new_values.items():
        pat = re.compile(rf"(?<![\w.])({re.escape(name)}\s*=\s*)(\{{[^}}]*\}}|[^\s=]+)",
                         re.IGNORECASE)
        for k, line in enumerate(header):
            body_start = line.lower().find("params:") if k == 0 else 0
            if body_start < 0:
                continue
            new, n = pat.subn(lambda m, v=value: f"{m.group(1)}{v:.9g}", line[body_start:], 1)
            if n:
                header[k] = line[:body_start] + new
                break
    status = "yes" if result.converged else "NO"
    top = [
        f"* {out.name}: {subckt} model fitted by `spicebridge fit memristor`",
        f"* created {prov.get('created')}, ngspice {prov.get('ngspice_version')}",
        f"* data:  {prov.get('data_path')} sha256 {prov.get('data_sha256')}",
        f"* model: {prov.get('model_path')} sha256 {prov.get('model_sha256')}",
        f"* converged: {status} -- {result.message}",
        f"* fitted parameters, value [{result.confidence:.0%} confidence interval]:",
    ]
    for p in result.parameters:
        top.append(f"*   {p.name:<8} = {_fmt(result.values[p.name])} {p.units} "
                   f"[{_fmt(result.ci_low[p.name])}, {_fmt(result.ci_high[p.name])}]"
                   f" (start {_fmt(result.start[p.name])})")
    for c in result.curves:
        top.append(f"* residual {c.name}: rms {c.rms:.4g} {c.curve.y_units}, max "
                   f"{c.max_abs:.4g} {c.curve.y_units}, relative rms {c.rms_scaled:.4g}")
    summary = {k: v for k, v in result.to_dict().items() if k not in ("correlation",)}
    top.append(_PROVENANCE_TAG + json.dumps(summary, sort_keys=True, default=str))
    top.append("*")
    text = "\n".join(top + lines[:i] + header + lines[j:]) + "\n"
    return atomic_write_text(out, text)


def read_fit_provenance(path: str | Path) -> dict[str, Any] | None:
    """The fit summary and provenance stored in a fitted model's header (``None``: not fitted).

    Characterizations that include a fitted model put this into their lookup provenance.
    """
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(_PROVENANCE_TAG):
            return json.loads(line[len(_PROVENANCE_TAG):])
        if line.lower().startswith(".subckt"):
            break
    return None
