"""``evaluate --config EXPERIMENT.toml``: one file that says what an evaluation runs.

Sections (docs/experiments.md)::

    [model]     dataset, model, weights, data, calib_data, train_seed, cache_dir
    [hardware]  lookup (list, paths relative to this file), ideal, and the hardware points:
                process, vdd_v, temp_c, bits (a value or a list; their Cartesian product)
    [sweep]     gamma (a value or a list), clipformer ("both", [alpha, beta] or false),
                chips, seed, limit, batch_size, device, threads, protocol, calibrate_clipformer,
                rap, rap_k, rap_no_dense
    [analog]    any field of nnsim.analog.AnalogConfig (the ablation switches read_noise,
                adc_noise, nonlinearity, write_bias, static_write_noise, adc, ...), except
                gamma and clipformer, which are swept in [sweep]

A flag given on the command line wins over the file. Every key is checked: an unknown
section or key, or a value of the wrong type, is an error naming the file and the key
(exit 2). The effective configuration goes into the run JSON (``meta.experiment``) with the
lookup files' sha256, the package version and the git commit taken when the run started
(``run_start``, ``run_metadata``).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from characterization.lookup import sha256_file

#: [section] -> key -> (argparse dest, kind); kind: "str", "int", "float", "bool", "path",
#: "paths", "list" (a value or a list, joined with commas for the CLI's comma lists),
#: "clip".
SECTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "model": {"dataset": ("dataset", "str"), "model": ("model", "str"),
              "weights": ("weights", "path"), "data": ("data", "path"),
              "calib_data": ("calib_data", "path"), "train_seed": ("train_seed", "int"),
              "cache_dir": ("cache_dir", "path")},
    "hardware": {"lookup": ("lookup", "paths"), "ideal": ("ideal", "bool"),
                 "process": ("process", "list"), "vdd_v": ("vdd_v", "list"),
                 "temp_c": ("temp_c", "list"), "bits": ("bits", "list")},
    "sweep": {"gamma": ("gamma", "list"), "clipformer": ("clipformer", "clip"),
              "chips": ("chips", "int"), "seed": ("seed", "int"), "limit": ("limit", "int"),
              "batch_size": ("batch_size", "int"), "device": ("device", "str"),
              "threads": ("threads", "int"), "protocol": ("protocol", "str"),
              "calibrate_clipformer": ("calibrate_clipformer", "bool"),
              "rap": ("rap", "bool"), "rap_k": ("rap_k", "int"),
              "rap_no_dense": ("rap_no_dense", "bool")},
}
#: AnalogConfig fields the [analog] table may not set (swept in [sweep]).
_SWEPT = ("gamma", "clipformer")
#: AnalogConfig fields that ``evaluate`` also has a flag for (field -> argparse dest).
_CLI_FLAGS = {"write_noise": "write_noise", "write_noise_sigma": "write_noise_sigma",
              "static": "static", "fidelity": "fidelity", "kv_range": "kv_range",
              "tile_rows": "tile_rows"}


class ExperimentError(ValueError):
    """A bad experiment file; the message names the file and the key (exit 2)."""

    exit_code = 2


def analog_fields() -> dict[str, Any]:
    """AnalogConfig field name -> its type (what the [analog] table may set)."""
    from nnsim.analog import AnalogConfig

    hints = typing.get_type_hints(AnalogConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(AnalogConfig)
            if f.name not in _SWEPT}


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, list | tuple) and all(isinstance(v, int | float)
                                                       for v in value)
    return False


def _typename(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(path: Path, section: str, key: str, value: Any, kind: str) -> Any:
    where = f"{path}: [{section}] {key}"
    if kind == "list":
        vals = value if isinstance(value, list) else [value]
        if not vals or not all(isinstance(v, str | int | float) and not isinstance(v, bool)
                               for v in vals):
            raise ExperimentError(f"{where}: expected a value or a non-empty list of values, "
                                  f"got {value!r}")
        return ",".join(str(v) for v in vals)
    if kind == "paths":
        vals = value if isinstance(value, list) else [value]
        if not vals or not all(isinstance(v, str) for v in vals):
            raise ExperimentError(f"{where}: expected a path or a list of paths")
        return [(path.parent / v) for v in vals]
    if kind == "path":
        if not isinstance(value, str):
            raise ExperimentError(f"{where}: expected a path (string), got {value!r}")
        return path.parent / value
    if kind == "clip":
        if value is False:
            return None
        if value == "both" or (isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
            return value if value == "both" else f"{value[0]},{value[1]}"
        raise ExperimentError(f"{where}: expected \"both\", [alpha, beta] or false, got "
                              f"{value!r}")
    tp = {"str": str, "int": int, "float": float, "bool": bool}[kind]
    if not _type_ok(value, tp):
        raise ExperimentError(f"{where}: expected {kind}, got {value!r}")
    return value


def load_experiment(path: Path, args: argparse.Namespace, defaults: dict[str, Any]
                    ) -> dict[str, Any]:
    """Apply ``path`` to ``args`` where the command line left the default; return the
    ``[analog]`` overrides (checked against AnalogConfig's fields and types).

    Raises:
        ExperimentError: Unreadable TOML, an unknown section or key, a wrong type.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ExperimentError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ExperimentError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ExperimentError(f"{path}: not valid TOML: {e}") from None
    unknown = sorted(set(raw) - {*SECTIONS, "analog"})
    if unknown:
        raise ExperimentError(f"{path}: unknown section(s) {unknown}; known: "
                              f"{sorted([*SECTIONS, 'analog'])}")
    for section, keys in SECTIONS.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise ExperimentError(f"{path}: [{section}] must be a table")
        for key, value in table.items():
            if key not in keys:
                raise ExperimentError(f"{path}: [{section}] unknown key {key!r}; known: "
                                      f"{sorted(keys)}")
            dest, kind = keys[key]
            v = _convert(path, section, key, value, kind)
            if getattr(args, dest, None) == defaults.get(dest):  # the command line wins
                setattr(args, dest, v)
    analog = raw.get("analog", {})
    if not isinstance(analog, dict):
        raise ExperimentError(f"{path}: [analog] must be a table")
    fields = analog_fields()
    out: dict[str, Any] = {}
    for key, value in analog.items():
        if key in _SWEPT:
            raise ExperimentError(f"{path}: [analog] {key}: set it in [sweep] (it is swept)")
        if key not in fields:
            raise ExperimentError(f"{path}: [analog] unknown key {key!r}; AnalogConfig "
                                  f"fields: {sorted(fields)}")
        if not _type_ok(value, fields[key]):
            raise ExperimentError(f"{path}: [analog] {key}: expected "
                                  f"{_typename(fields[key])}, got {value!r}")
        value = tuple(value) if isinstance(value, list) else value
        if key in _CLI_FLAGS:  # fields the command line also sets: go through its flag
            dest = _CLI_FLAGS[key]
            if getattr(args, dest, None) == defaults.get(dest):
                setattr(args, dest, ("analog" if value else "digital") if key == "static"
                        else value)
            continue
        out[key] = value
    return out


def package_version() -> str:
    """The installed package's version (``unknown`` from an uninstalled source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imc-spicebridge")
    except PackageNotFoundError:
        return "unknown"


def git_commit(where: str | Path | None = None) -> str | None:
    """The source tree's commit (``-dirty`` when tracked files changed), or None (not a git
    checkout, no git). ``where``: a folder in the tree (default: this package's)."""
    here = Path(where) if where is not None else Path(__file__).resolve().parent
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                           text=True, timeout=5, check=False)
        if r.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=5,
                               check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() + ("-dirty" if dirty else "")


def run_start() -> dict[str, Any]:
    """What a run records when it starts, before any work: the source tree's commit
    (``git_commit``: ``-dirty`` when tracked files differ from it) and the UTC time. The
    commit is that of the code that ran, not of a tree edited while the run went on."""
    import datetime as _dt

    return {"git_commit": git_commit(),
            "started_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}


def run_metadata(args: argparse.Namespace, analog: Any,
                 start: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the run JSON records about how it was made: the effective configuration
    (every AnalogConfig field, the hardware points, the sweep), the config file and the
    lookup files with their sha256, the package version and the git commit.

    ``start``: ``run_start()`` taken when the run began; its commit is ``git_commit``, and
    if the tree's commit differs when the JSON is written, that one is ``git_commit_end``
    (the source changed during the run). Without it the commit is read now."""
    exp = {
        "analog": {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in dataclasses.asdict(analog).items()},
        "hardware": {"lookup": [str(p) for p in args.lookup], "ideal": bool(args.ideal),
                     "process": str(args.process).split(","),
                     "vdd_v": None if args.vdd_v is None else
                     [float(x) for x in str(args.vdd_v).split(",")],
                     "temp_c": None if args.temp_c is None else
                     [float(x) for x in str(args.temp_c).split(",")],
                     "bits": [int(b) for b in str(args.bits).split(",")]},
        "sweep": {k: getattr(args, d, None) for k, (d, _) in SECTIONS["sweep"].items()},
        "model": {k: (str(v) if isinstance(v, Path) else v) for k, (d, _) in
                  SECTIONS["model"].items() for v in [getattr(args, d, None)]},
    }
    exp["sweep"]["gamma"] = [float(g) for g in str(args.gamma).split(",")]
    cfg = getattr(args, "config", None)
    out = {
        "experiment": exp,
        "config_file": None if cfg is None else {"path": str(cfg), "sha256": sha256_file(cfg)},
        "lookup_files": [{"path": str(p), "sha256": sha256_file(p)} for p in args.lookup],
        "package_version": package_version(),
    }
    if start is None:
        out["git_commit"] = git_commit()
    else:
        out.update(git_commit=start["git_commit"], started_utc=start["started_utc"])
        end = git_commit()
        if end != start["git_commit"]:
            out["git_commit_end"] = end
    return out
