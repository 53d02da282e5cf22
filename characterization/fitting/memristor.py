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

DEFAULT_PARAMS: tuple[str, ...] = ("ron", "roff", "vset", "vreset", "kset", "kreset")
"""Parameters fitted when none are named (those a model has): the two states, the two
thresholds and the two rates, all started from the record."""

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


def _pwl(time_s: np.ndarray, v_v: np.ndarray, node: str = "te") -> str:
    pairs = [f"{t:.12g} {v:.9g}" for t, v in zip(time_s, v_v, strict=True)]
    if time_s[0] > 0:
        pairs.insert(0, f"0 {v_v[0]:.9g}")
    rows = [" ".join(pairs[k:k + 8]) for k in range(0, len(pairs), 8)]
    return f"Vsrc {node} 0 PWL(\n" + "\n".join(f"+ {r}" for r in rows) + " )"


NUISANCE: tuple[str, ...] = ("v_offset", "i_offset", "r_series")
"""Parameters of the measurement, not the device: the instrument's voltage offset (the device
sees ``V - v_offset``), current offset (the logged current is the device's plus
``i_offset``) and a series resistance (sense resistor, probe)."""
NUISANCE_UNITS = {"v_offset": "V", "i_offset": "A", "r_series": "ohm"}
DEFAULT_NUISANCE: dict[str, float | str] = {"v_offset": "fit", "i_offset": "fit", "r_series": 0.0}
"""Offsets fitted, no series resistance, unless told otherwise."""


def memristor_deck(model_path: str | Path, time_s: np.ndarray, v_v: np.ndarray,
                   params: Mapping[str, float], *, subckt: str = SUBCKT,
                   temp_c: float = 27.0, max_step_s: float | None = None,
                   reltol: float = 1e-4, nuisance: Mapping[str, float] | None = None) -> str:
    """Testbench replaying ``v_v(time_s)`` on ``te`` (``be`` grounded).

    ``params`` become ``.param fit_<name>`` and instance parameters ``name={fit_name}``.
    ``nuisance`` (``v_offset``, ``i_offset``, ``r_series``; each a ``.param fit_<name>``)
    puts the measurement between the source and the device: a DC source ``v_offset`` in
    series, then ``r_series`` (left out when absent), and a current source ``i_offset`` drawn
    from the source's node. The logged current is ``-i(vsrc)`` in every case.
    """
    model_path = Path(model_path).resolve()
    nuisance = dict(nuisance or {})
    bad = sorted(set(nuisance) - set(NUISANCE))
    if bad:
        raise FitError(f"unknown measurement parameter(s) {bad}; known: {list(NUISANCE)}")
    dts = np.diff(time_s)
    step = float(np.median(dts))
    # a quarter sample: switching makes the current depend steeply on the state, and a
    # coarser step made finite-difference Jacobian columns of vset wrong by 2x
    tmax = float(max_step_s) if max_step_s is not None else step / 4
    allp = dict(params) | nuisance
    plist = " ".join(f"fit_{k}={v:.12g}" for k, v in allp.items())
    inst = " ".join(f"{k}={{fit_{k}}}" for k in params)
    if nuisance:
        src = "src"
        bench = []
        if "i_offset" in nuisance:
            bench.append("Iioff src 0 DC {fit_i_offset}")
        after_v = "nr" if "r_series" in nuisance else "te"
        bench.append(f"Vvoff src {after_v} DC "
                     + ("{fit_v_offset}" if "v_offset" in nuisance else "0"))
        if "r_series" in nuisance:
            bench.append("Rser nr te {fit_r_series}")
    else:
        src, bench = "te", []
    return "\n".join([
        f"* spicebridge fit memristor: replay of the measured voltage on {subckt}",
        f'.include "{model_path}"',
        f".param {plist}" if plist else "* no fitted parameters",
        f".options reltol={reltol:.3g} abstol=1e-15 vntol=1e-7",
        f".temp {temp_c:.6g}",
        _pwl(np.asarray(time_s, float), np.asarray(v_v, float), src),
        *bench,
        f"Xdut te 0 {subckt} {inst}",
        f".tran {step:.6g} {float(time_s[-1]):.12g} 0 {tmax:.6g}",
        ".end",
    ]) + "\n"


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _nuisance_parameter(name: str, f: Any, start: float | None,
                        bounds: tuple[float, float] | None) -> tuple[FitParameter, str]:
    """A fitted measurement parameter with data-derived start and bounds (and their source)."""
    vabs = max(abs(f.v_max), abs(f.v_min))
    if name == "v_offset":
        s0, lo, hi = f.v_offset, -0.1 * vabs, 0.1 * vabs
        src = f"{f.notes['v_offset']}; bounds +-10 % of the largest |V| {vabs:.4g} V"
        kw: dict[str, Any] = {"scale": 0.01 * vabs}
    elif name == "i_offset":
        s0, lo, hi = f.i_offset, -0.1 * f.i_max, 0.1 * f.i_max
        src = f"{f.notes['i_offset']}; bounds +-10 % of the largest |I| {f.i_max:.4g} A"
        kw = {"scale": 0.01 * f.i_max}
    else:
        r_min = 1.0 / f.g_on
        s0, lo, hi = 0.1 * r_min, 1e-3 * r_min, r_min
        src = (f"start 0.1x, bounds 0.001x..1x the record's smallest resistance {r_min:.4g} "
               "ohm (a series resistance cannot exceed it)")
        kw = {"log": True}
    if bounds is not None:
        lo, hi = bounds
        src = "bounds given"
    if start is not None:
        s0 = float(start)
    s0 = min(max(s0, lo), hi)
    if not lo < hi:
        raise FitError(f"{name}: bounds [{lo:g}, {hi:g}] are empty")
    return FitParameter(name=name, start=s0, lower=lo, upper=hi, units=NUISANCE_UNITS[name],
                        param=f"fit_{name}", **kw), src


def memristor_problem(
    measurement: Measurement,
    *,
    model_path: str | Path | None = None,
    params: Sequence[str] | None = None,
    start: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    fixed: Mapping[str, float] | None = None,
    subckt: str | None = None,
    temp_c: float = 27.0,
    fit_pulses: bool = False,
    scale: str = "noise",
    floor_rel: float = 1e-3,
    data_start: bool = True,
    nuisance: Mapping[str, float | str] | None = None,
    noise_a: float | None = None,
) -> SpiceFitProblem:
    """Build the fit problem for a measured record.

    Args:
        measurement: The record (see :func:`read_measurement_csv`).
        model_path: A model form's name (``rram``, ``vteam``, ``vteam-exp``; see
            :mod:`.models`) or a library path (default ``rram``: netlists/rram/rram.lib).
        params: Names of the model parameters to fit (default: the form's, those of
            ``ron roff vset vreset kset kreset`` it has).
        start: Start values (default: from the record, see :mod:`.start`; with
            ``data_start=False`` the model's defaults).
        bounds: ``name -> (lower, upper)`` (default: from the record where the start is, else
            :func:`default_parameter`).
        fixed: Other parameters set to given values, not fitted (e.g. ``w0`` of the record).
        subckt: Subcircuit name (default: the form's; ``rram`` for a path).
        temp_c: Temperature of the measurement.
        fit_pulses: Include samples inside programming pulses in the residual (by default
            they drive the simulation but are not fitted: currents under compliance or
            during edges are rarely trustworthy).
        scale: Residual scaling: ``"noise"`` (default): each sample's residual divided by
            its noise sigma (estimated from the record or ``noise_a``), so that the
            confidence intervals hold for noise of any shape (constant, or proportional to
            the reading) and the scaled rms residual of an adequate fit is about 1;
            ``"relative"`` / ``"absolute"``: see :class:`SpiceFitProblem`. The noise-weighted
            fit starts with a relative pass (robust far from the solution) and refines with
            the noise weights; a fit that stops in the first pass keeps relative weights.
        floor_rel: Floor of the relative scaling, as a fraction of max |I|; raised to twice
            the record's noise where that is larger (samples in the noise do not weigh more
            than the noise allows). With ``"noise"``: the noise sigma is floored at a fifth
            of its median (a stretch of identical samples is not infinitely precise).
        data_start: Start values, bounds and the initial state ``w0`` from the record.
        nuisance: Measurement parameters (``v_offset``, ``i_offset``, ``r_series``): a
            number fixes one, ``"fit"`` fits it (default :data:`DEFAULT_NUISANCE`; ``{}``: a
            bare device, as before).
        noise_a: Noise sigma of the current (default: from the record).

    Raises:
        FitError: Unknown parameter names, or a name both fitted and fixed.
    """
    from .models import data_starts, resolve_form
    from .start import loop_features

    form = resolve_form(model_path, subckt)
    model_path, subckt = form.path, form.subckt
    if not model_path.is_file():
        raise FitError(f"no memristor model at {model_path}")
    defaults = read_subckt_params(model_path, subckt)
    if params is None:
        params = [p for p in form.fit if p in defaults]
    params = [p.strip().lower() for p in params if p.strip()]
    nuis = dict(DEFAULT_NUISANCE if nuisance is None else nuisance)
    bad = sorted(set(nuis) - set(NUISANCE))
    if bad:
        raise FitError(f"unknown measurement parameter(s) {bad}; known: {list(NUISANCE)}")
    nuis_fit = [k for k in NUISANCE if isinstance(nuis.get(k), str)]
    for k in nuis_fit:
        if nuis[k] != "fit":
            raise FitError(f"{k}: expected a number or 'fit', got {nuis[k]!r}")
    nuis_fixed = {k: float(v) for k, v in nuis.items() if not isinstance(v, str)}
    fixed = {k.lower(): float(v) for k, v in (fixed or {}).items()}
    start = {k.lower(): float(v) for k, v in (start or {}).items()}
    bounds = {k.lower(): v for k, v in (bounds or {}).items()}
    model_keys = (set(fixed) | set(start) | set(bounds)) - set(NUISANCE)
    unknown = sorted((set(params) | model_keys) - set(defaults))
    if unknown:
        raise FitError(f"{model_path}: '.subckt {subckt}' has no parameter(s) {unknown}; "
                       f"it has {sorted(defaults)}")
    both = sorted(set(params) & set(fixed))
    if both:
        raise FitError(f"parameter(s) {both} are both fitted and fixed")
    extra = sorted((set(start) | set(bounds)) - set(params) - set(nuis_fit))
    if extra:
        raise FitError(f"start/bounds given for {extra}, which are not fitted "
                       f"({params + nuis_fit})")
    fixed = {k: v for k, v in form.fixed.items() if k not in params} | fixed
    r_ser = nuis_fixed.get("r_series", 0.0)
    feats = loop_features(measurement, r_series=r_ser, v_offset=nuis_fixed.get("v_offset"),
                          i_offset=nuis_fixed.get("i_offset"), noise_a=noise_a)
    sources: dict[str, str] = {}
    auto = data_starts(form, feats, defaults) if data_start else {}
    fit_params = []
    for n in params:
        sv = auto.get(n)
        if sv is not None and n not in start and n not in bounds:
            fit_params.append(default_parameter(n, defaults[n], start=sv.value,
                                                bounds=(sv.lower, sv.upper)))
            sources[n] = f"from the record: {sv.source}"
        elif sv is not None and n not in start:  # own bounds, start from the record
            lo, hi = bounds[n]
            fit_params.append(default_parameter(n, defaults[n], start=min(max(sv.value, lo), hi),
                                                bounds=bounds[n]))
            sources[n] = f"start from the record ({sv.source}); bounds given"
        elif sv is not None and n not in bounds:  # own start, bounds from the record
            lo, hi = min(sv.lower, start[n]), max(sv.upper, start[n])
            fit_params.append(default_parameter(n, defaults[n], start=start[n], bounds=(lo, hi)))
            sources[n] = f"start given; bounds from the record ({sv.source})"
        else:
            fit_params.append(default_parameter(n, defaults[n], start=start.get(n),
                                                bounds=bounds.get(n)))
            sources[n] = ("given" if n in start or n in bounds else
                          "the model's default; bounds around it (x/÷ 1000)")
    if data_start and "w0" in auto and "w0" not in params and "w0" not in fixed:
        fixed["w0"] = auto["w0"].value
        sources["w0"] = f"fixed from the record: {auto['w0'].source}"
    for k in nuis_fit:
        p, src = _nuisance_parameter(k, feats, start.get(k), bounds.get(k))
        fit_params.append(p)
        sources[k] = src
    nuis_vals = {p.name: p.start for p in fit_params if p.name in NUISANCE}
    nuis_vals |= {k: v for k, v in nuis_fixed.items() if not (k == "r_series" and v == 0.0)}
    if abs(float(measurement.v_v[0])) > 0.3:
        warnings.warn(f"the record starts at {measurement.v_v[0]:.3g} V: the operating point "
                      f"at t = 0 sets the model's state, so a start beyond a switching "
                      f"threshold switches the device before the record begins",
                      stacklevel=2)
    values = {p.name: p.start for p in fit_params if p.name not in NUISANCE} | fixed
    sim_only: dict[str, float] = {}
    if ("t_c2c" in defaults and "t_c2c" not in values and "sig_c2c" not in values
            and defaults.get("sig_c2c", "").strip() in ("0", "0.0")):
        # no cycle-to-cycle spread: its draw every t_c2c (100 ns) only forces time steps,
        # which made a 1 ms record 50x slower; the model written keeps the default
        sim_only["t_c2c"] = float(measurement.time_s[-1]) * 2 + 1e-9
        values["t_c2c"] = sim_only["t_c2c"]
    deck = memristor_deck(model_path, measurement.time_s, measurement.v_v, values,
                          subckt=subckt, temp_c=temp_c, nuisance=nuis_vals)
    mask = None if fit_pulses or not measurement.pulse.any() else ~measurement.pulse
    i_max = float(np.max(np.abs(measurement.i_a)))
    floor = max(floor_rel, 2.0 * feats.noise_rms_a / i_max) if i_max > 0 else floor_rel
    sigma = None
    scale_name = scale
    if scale == "noise":
        if not feats.noise_rms_a > 0:
            raise FitError("the record shows no noise (identical neighbouring samples): give "
                           "the noise (--noise) or another residual scale")
        sigma = np.maximum(feats.noise_a, 0.2 * feats.noise_rms_a)
        scale = "relative"  # first pass (robust from afar); then the noise weights
    curve = Curve(
        name="record", x=measurement.time_s, y=measurement.i_a, y_vector="i(vsrc)",
        y_sign=-1.0, x_vector="time", temp_c=temp_c, mask=mask, segments=measurement.curve,
        plot_x=measurement.v_v, x_units="V", y_units="A", x_label="applied voltage (V)",
        log_y=True, sigma=sigma)
    prov = {
        "data_path": str(measurement.path) if measurement.path else None,
        "data_sha256": measurement.sha256,
        "model_path": str(model_path),
        "model_sha256": _file_sha256(model_path),
        "model_form": form.name, "model_reference": form.reference,
        "subckt": subckt, "fixed": fixed, "temp_c": temp_c, "fit_pulses": fit_pulses,
        "n_samples": len(measurement),
        "measurement": {"fitted": nuis_fit, "fixed": nuis_fixed},
        "start_sources": sources,
        "record": feats.summary(),
        "noise_sigma_a": feats.noise_a.tolist(),
        "noise_source": feats.notes["noise"],
        "residual_scale": scale_name,
        "sim_only": sim_only,
    }
    return SpiceFitProblem(deck=deck, parameters=tuple(fit_params), curves=(curve,),
                           scale=scale, floor_rel=floor, name="memristor", provenance=prov)


def judge_memristor_fit(result: FitResult, *, max_ratio: float | None = None) -> FitResult:
    """``result`` with its verdict (:func:`.verdict.assess`) attached, from the noise and
    bound sources the problem recorded in the provenance."""
    import dataclasses

    from .verdict import MAX_NOISE_RATIO, assess

    prov = result.provenance
    sig = np.asarray(prov.get("noise_sigma_a", []), float)
    if sig.size != result.curves[0].curve.y.size:
        sig = np.zeros(result.curves[0].curve.y.size)
    fitted = {p.name for p in result.parameters}
    hint = [k for k in ("kset", "kreset", "v0", "aset", "areset", "r_series")
            if k not in fitted and (k in NUISANCE or k in read_subckt_params(
                prov["model_path"], prov["subckt"]))]
    v = assess(result, [sig], noise_source=str(prov.get("noise_source", "")),
               max_ratio=MAX_NOISE_RATIO if max_ratio is None else max_ratio,
               free_hint=hint, bound_sources=prov.get("start_sources"))
    prov = {k: val for k, val in prov.items() if k != "noise_sigma_a"}  # per sample: too big
    return dataclasses.replace(result, verdict=v.to_dict(), provenance=prov)


def fit_memristor(
    data: Measurement | str | Path,
    *,
    model_path: str | Path | None = None,
    params: Sequence[str] | None = None,
    start: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    fixed: Mapping[str, float] | None = None,
    sample_period_s: float | None = None,
    jobs: int = 1,
    max_nfev: int = 60,
    max_ratio: float | None = None,
    ftol: float = 1e-6,
    xtol: float = 1e-6,
    **problem_kwargs: Any,
) -> FitResult:
    """Fit the memristor model to a measured record (CSV path or :class:`Measurement`).

    Other keywords go to :func:`memristor_problem`; see :func:`fit_spice` for the result
    (``ftol``/``xtol`` 1e-6: on a noisy record a smaller relative change is not a better fit).
    The result carries its verdict (``result.verdict``, see :mod:`.verdict`).
    """
    m = data if isinstance(data, Measurement) else read_measurement_csv(
        data, sample_period_s=sample_period_s)
    problem = memristor_problem(m, model_path=model_path, params=params, start=start,
                                bounds=bounds, fixed=fixed, **problem_kwargs)
    return judge_memristor_fit(fit_spice(problem, jobs=jobs, max_nfev=max_nfev, ftol=ftol,
                                         xtol=xtol),
                               max_ratio=max_ratio)


def simulate_memristor(time_s: np.ndarray, v_v: np.ndarray, params: Mapping[str, float], *,
                       model_path: str | Path | None = None, subckt: str = SUBCKT,
                       temp_c: float = 27.0,
                       nuisance: Mapping[str, float] | None = None) -> np.ndarray:
    """Current of the model driven by ``v_v(time_s)``, at the sample times (synthetic data);
    ``nuisance`` as in :func:`memristor_deck`."""
    from .spice_fit import shared_engine

    model_path = Path(model_path) if model_path is not None else default_model_path()
    t = np.asarray(time_s, float)
    deck = memristor_deck(model_path, t, np.asarray(v_v, float), dict(params), subckt=subckt,
                          temp_c=temp_c, nuisance=nuisance)
    res = shared_engine().simulate(deck)
    plot = res.plots[list(res.plots)[-1]]
    return np.interp(t, plot.vectors["time"], -plot.vectors["i(vsrc)"])


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def write_fitted_model(result: FitResult, out: str | Path, *, model_path: str | Path | None = None,
                       subckt: str | None = None) -> Path:
    """Write the model with the fitted values as its defaults, provenance in the header.

    Parameters given as ``fixed`` in the fit are written too; the measurement's parameters
    (offsets, series resistance) are not part of the device and go into the header only.
    The file is written atomically.

    Returns:
        The path written.
    """
    prov = result.provenance
    model_path = Path(model_path or prov.get("model_path") or default_model_path())
    if not model_path.is_file():  # a form's name
        model_path = Path(prov.get("model_path") or default_model_path())
    subckt = subckt or prov.get("subckt") or SUBCKT
    out = Path(out)
    lines = model_path.read_text(encoding="utf-8").splitlines()
    i, j = _subckt_header(lines, subckt, model_path)
    new_values = {k: v for k, v in (dict(prov.get("fixed", {})) | result.values).items()
                  if k not in NUISANCE and k not in prov.get("sim_only", {})}
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
        f"* model form: {prov.get('model_form', subckt)} ({prov.get('model_reference', '')})",
        f"* converged: {status} -- {result.message}",
        f"* verdict: {_verdict_line(result)}",
        f"* fitted parameters, value [{result.confidence:.0%} confidence interval]:",
    ]
    for p in result.parameters:
        kind = " (measurement, not in the model)" if p.name in NUISANCE else ""
        top.append(f"*   {p.name:<8} = {_fmt(result.values[p.name])} {p.units}{kind} "
                   f"[{_fmt(result.ci_low[p.name])}, {_fmt(result.ci_high[p.name])}]"
                   f" (start {_fmt(result.start[p.name])})")
    for c in result.curves:
        top.append(f"* residual {c.name}: rms {c.rms:.4g} {c.curve.y_units}, max "
                   f"{c.max_abs:.4g} {c.curve.y_units}, relative rms {c.rms_scaled:.4g}")
    summary = {k: v for k, v in result.to_dict().items() if k not in ("correlation",)}
    top.append(_PROVENANCE_TAG + json.dumps(summary, sort_keys=True, default=str))
    top.append("*")
    # data stays inside its comment line: a newline in a file or curve name would start a
    # netlist line (a .control block) in the written model (issue 16)
    top = [re.sub(r"[\x00-\x1f\x7f]", " ", t) for t in top]
    text = "\n".join(top + lines[:i] + header + lines[j:]) + "\n"
    return atomic_write_text(out, text)


def _verdict_line(result: FitResult) -> str:
    v = result.verdict
    if not v:
        return "not judged"
    if v["adequate"]:
        return f"adequate (residual {v['noise_ratio']:.3g}x the noise)"
    return "NOT ADEQUATE: " + "; ".join(r.split(" -- ")[0] for r in v["reasons"])


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
