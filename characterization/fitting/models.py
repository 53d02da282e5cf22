"""Memristor model forms the fit knows, and how each takes its start values from a record.

========== ========================================= =============================================
name       library                                   form
========== ========================================= =============================================
rram       netlists/rram/rram.lib                    this project's RRAM: G linear in the state,
                                                     sinh read nonlinearity, threshold switching
vteam      netlists/memristor/vteam.lib (iv=0)       VTEAM (Kvatinsky et al. 2015), R linear in
                                                     the state (paper eq. 3)
vteam-exp  netlists/memristor/vteam.lib (iv=1)       VTEAM, R exponential in the state (eq. 4)
========== ========================================= =============================================

Any other library (``--model PATH``) is fitted with the parameters it shares with these names
(``ron roff vset vreset kset kreset``), started from the record where it has them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spicebridge.netlist import netlist_dir
from spicebridge.units import parse_spice_number

from .errors import FitError
from .start import LoopFeatures, _runs

GENERIC_FIT: tuple[str, ...] = ("ron", "roff", "vset", "vreset", "kset", "kreset")
"""Parameters fitted by default where a model has them."""


@dataclass(frozen=True)
class ModelForm:
    """One compact model the fit can use.

    Attributes:
        name: Label (``rram``, ``vteam``, ``vteam-exp``, or a library's file stem).
        path: The library.
        subckt: Its subcircuit.
        fit: Parameters fitted by default.
        fixed: Parameters that define the form (e.g. ``iv=1``), always set.
        state: How the state maps to the read resistance, for the start state ``w0``:
            ``"g-linear"``, ``"r-linear"``, ``"r-exp"`` or ``""`` (not set from the record).
        reference: Where its equations come from.
    """

    name: str
    path: Path
    subckt: str
    fit: tuple[str, ...] = GENERIC_FIT
    fixed: dict[str, float] = field(default_factory=dict)
    state: str = ""
    reference: str = ""


def builtin_forms() -> dict[str, ModelForm]:
    """The shipped model forms, by name."""
    d = netlist_dir()
    vteam_ref = ("S. Kvatinsky, M. Ramadan, E. G. Friedman, A. Kolodny, 'VTEAM: A General "
                 "Model for Voltage-Controlled Memristors', IEEE TCAS-II 62(8) 786-790, 2015")
    return {
        "rram": ModelForm("rram", d / "rram" / "rram.lib", "rram", state="g-linear",
                          reference="netlists/rram/rram.lib (this project)"),
        "vteam": ModelForm("vteam", d / "memristor" / "vteam.lib", "vteam",
                           fixed={"iv": 0.0}, state="r-linear", reference=vteam_ref + ", eq. 3"),
        "vteam-exp": ModelForm("vteam-exp", d / "memristor" / "vteam.lib", "vteam",
                               fixed={"iv": 1.0}, state="r-exp", reference=vteam_ref + ", eq. 4"),
    }


def resolve_form(model: str | Path | None, subckt: str | None = None) -> ModelForm:
    """A model form by name (``rram``, ``vteam``, ``vteam-exp``) or a library path.

    Raises:
        FitError: Neither a known name nor an existing file.
    """
    forms = builtin_forms()
    if model is None:
        return forms["rram"]
    key = str(model)
    if key in forms and not Path(key).is_file():
        f = forms[key]
        return f if subckt in (None, f.subckt) else ModelForm(f.name, f.path, subckt, f.fit,
                                                              f.fixed, f.state, f.reference)
    path = Path(model)
    if not path.is_file():
        raise FitError(f"--model {model}: neither a model name ({', '.join(forms)}) nor a file")
    sub = subckt or "rram"
    state = "g-linear" if sub == "rram" else ""
    return ModelForm(path.stem, path, sub, state=state, reference=str(path))


@dataclass(frozen=True)
class StartValue:
    """A start value with its bounds and where both came from."""

    value: float
    lower: float
    upper: float
    source: str


def data_starts(form: ModelForm, f: LoopFeatures,
                defaults: dict[str, str]) -> dict[str, StartValue]:
    """Start values and bounds, from the record, for the parameters ``form`` has.

    Bounds cover the record: resistances from a tenth of the ON to ten times the OFF
    resistance it shows, thresholds between 1 % and 100 % of the largest device voltage of
    their polarity (a threshold beyond it would never switch), rates four decades either way
    of the rate that switches the state once in half the time the record spends beyond the
    threshold.
    """
    out: dict[str, StartValue] = {}
    lo_seen = max(f.r_seen[0] - f.r_series, f.r_on / 10)
    r_lo, r_hi = min(f.r_on, lo_seen) / 10, max(f.r_off, f.r_seen[1]) * 10
    rb = (f"0.1x the smallest to 10x the largest resistance the record shows ({r_lo * 10:.4g}"
          f"..{r_hi / 10:.4g} ohm: its low-|V| branches and |V/I|)")
    if "ron" in defaults:
        out["ron"] = StartValue(f.r_on, r_lo, r_hi, f"{f.notes['r_on']}; bounds {rb}")
    if "roff" in defaults:
        out["roff"] = StartValue(f.r_off, r_lo, r_hi, f"{f.notes['r_off']}; bounds {rb}")
    if "vset" in defaults and f.vd_max > 0:
        lo, hi = f.vd_max / 100, f.vd_max
        v = f.v_set if f.v_set is not None and lo < f.v_set < hi else 0.8 * f.vd_max
        src = f.notes["v_set"] if f.v_set is not None else f.notes["v_set"] + ": 0.8x max"
        out["vset"] = StartValue(v, lo, hi, f"{src}; bounds 1-100 % of the largest device "
                                 f"voltage {f.vd_max:.4g} V")
    if "vreset" in defaults and f.vd_min < 0:
        lo, hi = f.vd_min, f.vd_min / 100
        v = f.v_reset if f.v_reset is not None and lo < f.v_reset < hi else 0.8 * f.vd_min
        src = f.notes["v_reset"] if f.v_reset is not None else f.notes["v_reset"] + ": 0.8x min"
        out["vreset"] = StartValue(v, lo, hi, f"{src}; bounds 1-100 % of the most negative "
                                   f"device voltage {f.vd_min:.4g} V")
    for k, which, a in (("kset", "set", "aset"), ("kreset", "reset", "areset")):
        if k not in defaults:
            continue
        try:
            expo = parse_spice_number(defaults.get(a, "1"))
        except ValueError:
            expo = 1.0
        if which == "set" and "vset" in out:  # the overdrive beyond the start threshold
            th = out["vset"].value
        elif which == "reset" and "vreset" in out:
            th = out["vreset"].value
        else:
            continue
        rate = _rate_for(f, which, th, expo)
        if rate is None:
            continue
        out[k] = StartValue(rate, rate / 1e4, rate * 1e4,
                            "switches the state once in half the time the record spends "
                            f"beyond the start threshold {th:.3g} V ({a}={expo:g}); "
                            "bounds 1e-4x..1e4x")
    if "w0" in defaults and form.state:
        g0 = f.g_off + f.state0 * (f.g_on - f.g_off)
        r0 = 1.0 / g0 - f.r_series
        if form.state == "g-linear":
            w0 = f.state0
        elif form.state == "r-linear":
            w0 = (f.r_off - r0) / (f.r_off - f.r_on) if f.r_off > f.r_on else 0.0
        else:
            w0 = (1 - math.log(r0 / f.r_on) / math.log(f.r_off / f.r_on)
                  if f.r_off > f.r_on and r0 > 0 else 0.0)
        w0 = min(max(w0, 0.0), 1.0)
        out["w0"] = StartValue(w0, 0.0, 1.0, f.notes["state0"])
    return out


def _rate_for(f: LoopFeatures, which: str, threshold: float, exponent: float) -> float | None:
    """Rate switching the state once in half the time the record spends beyond
    ``threshold`` (device voltage), for ``dx/dt = k (V/threshold - 1)^exponent``."""
    vd, dt = f.vd_trace, f.dt_trace
    beyond = vd > threshold if which == "set" else vd < threshold
    if not beyond.any():
        return None
    n_exc = max(len(_runs(beyond)), 1)
    t = float(np.sum(dt[beyond])) / n_exc
    m = float(np.mean((vd[beyond] / threshold - 1) ** exponent))
    return 2.0 / (t * m) if t > 0 and m > 0 else None
