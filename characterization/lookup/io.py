"""Versioned HDF5 lookup files: tables with named dimensions, coordinates, units, provenance.

The contract is docs/lookup-format.md. This module imports neither PySpice nor ngspice:
``nnsim`` reads lookup files on machines that have neither.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import (
    ExtrapolationError,
    LegacyLookupWarning,
    LookupFormatError,
    LookupVersionError,
)

FORMAT = "imc-lookup"
SCHEMA_VERSION = 1
# Version log (full text in docs/lookup-format.md):
# v1: tables are datasets with attrs dims/units; coordinates under /_coords/<table>/<dim>;
#     failures as a compound-free group of parallel string datasets.
_MIGRATIONS: dict[int, Any] = {}  # version -> function(raw dict) -> raw dict of version+1

_COORDS = "_coords"
_FAILURES = "failures"
_STR = h5py.string_dtype("utf-8")
_RESERVED_ATTRS = frozenset(
    {"dims", "units", "DIMENSION_LABELS", "DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME"})


@dataclass(frozen=True, eq=False)
class Table:
    """An n-d array with named dimensions, coordinates and units.

    Attributes:
        name: Path in the file, e.g. ``crossbar/read_noise`` or ``v(out)``.
        data: The values.
        dims: One name per axis of ``data`` (``process``, ``vdd_v``, ``temp_c``, ``mc`` ...).
        coords: Dimension -> coordinate values (numbers, or strings for categorical axes).
        units: Units of ``data`` (SI: ``A``, ``V``, ``S``, ``J``, ``s``, ``LSB``, ``1``).
        coord_units: Dimension -> units of its coordinate (``V``, ``degC``, ``1``).
        attrs: Further attributes (``description``, fitted-model notes ...).
    """

    name: str
    data: np.ndarray
    dims: tuple[str, ...]
    coords: dict[str, np.ndarray]
    units: str
    coord_units: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "dims", tuple(self.dims))
        if data.ndim != len(self.dims):
            raise ValueError(f"table {self.name!r}: data has {data.ndim} axes but dims is "
                             f"{self.dims!r}")
        if len(set(self.dims)) != len(self.dims):
            raise ValueError(f"table {self.name!r}: repeated dimension in {self.dims!r}")
        coords = {}
        for i, d in enumerate(self.dims):
            c = self.coords.get(d)
            c = np.arange(data.shape[i]) if c is None else np.asarray(c)
            if c.dtype.kind in "OSU":
                c = np.asarray([x.decode() if isinstance(x, bytes) else str(x) for x in c])
            if c.shape != (data.shape[i],):
                raise ValueError(f"table {self.name!r}: coordinate {d!r} has shape {c.shape}, "
                                 f"axis {i} has length {data.shape[i]}")
            coords[d] = c
        extra = set(self.coords) - set(self.dims)
        if extra:
            raise ValueError(f"table {self.name!r}: coordinates {sorted(extra)} name no dimension")
        object.__setattr__(self, "coords", coords)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``data``."""
        return self.data.shape

    def axis(self, dim: str) -> int:
        """Index of a dimension.

        Raises:
            KeyError: No such dimension.
        """
        try:
            return self.dims.index(dim)
        except ValueError:
            raise KeyError(f"table {self.name!r} has no dimension {dim!r}; dims {self.dims}") \
                from None

    def sel(self, **where: Any) -> Table:
        """Select or interpolate along dimensions; the others stay.

        Categorical (string) coordinates need an exact match. Numeric coordinates are
        linearly interpolated between the two characterized neighbours; a value outside the
        characterized range raises ``ExtrapolationError`` naming that range.

        Raises:
            KeyError: Unknown dimension, or a categorical value not characterized.
            ExtrapolationError: A numeric value outside the characterized range.
        """
        t = self
        for dim, value in where.items():
            t = t._sel1(dim, value)
        return t

    def _sel1(self, dim: str, value: Any) -> Table:
        ax = self.axis(dim)
        c = self.coords[dim]
        keep = tuple(d for d in self.dims if d != dim)
        coords = {d: self.coords[d] for d in keep}
        cu = {d: u for d, u in self.coord_units.items() if d != dim}
        if c.dtype.kind == "U":
            hits = np.flatnonzero(c == str(value))
            if not hits.size:
                raise KeyError(f"table {self.name!r}: {dim}={value!r} was not characterized; "
                               f"available: {list(c)}")
            data = np.take(self.data, hits[0], axis=ax)
        else:
            v = float(value)
            order = np.argsort(c)
            cs = c[order].astype(float)
            lo, hi = cs[0], cs[-1]
            tol = 1e-9 * max(1.0, abs(hi - lo))
            if v < lo - tol or v > hi + tol:
                units = self.coord_units.get(dim, "")
                raise ExtrapolationError(
                    f"table {self.name!r}: {dim}={v:g} {units} is outside the characterized "
                    f"range [{lo:g}, {hi:g}] {units}; extrapolation is refused".replace("  ", " "))
            j = int(np.clip(np.searchsorted(cs, v), 1, max(1, cs.size - 1)))
            if cs.size == 1 or abs(v - cs[j - 1]) <= tol:
                data = np.take(self.data, order[j - 1 if cs.size > 1 else 0], axis=ax)
            elif abs(v - cs[j]) <= tol:
                data = np.take(self.data, order[j], axis=ax)
            else:
                w = (v - cs[j - 1]) / (cs[j] - cs[j - 1])
                a = np.take(self.data, order[j - 1], axis=ax).astype(float)
                b = np.take(self.data, order[j], axis=ax).astype(float)
                data = (1 - w) * a + w * b
        return Table(self.name, data, keep, coords, self.units, cu, dict(self.attrs))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no data): dims, coordinates, units, shape."""
        return {
            "dims": list(self.dims),
            "shape": list(self.shape),
            "units": self.units,
            "dtype": str(self.data.dtype),
            "coords": {d: {"values": _jsonable(self.coords[d]),
                           "units": self.coord_units.get(d, "")} for d in self.dims},
            "attrs": {k: _jsonable(v) for k, v in self.attrs.items()},
        }


@dataclass(frozen=True)
class Failure:
    """A sweep point that produced no result, kept so nothing is dropped silently."""

    source: str
    point: dict[str, Any]
    error_type: str
    message: str


@dataclass(frozen=True)
class LookupFile:
    """Everything in a lookup file, read into memory."""

    path: Path
    schema_version: int
    provenance: dict[str, Any]
    tables: dict[str, Table]
    failures: list[Failure]
    created: str = ""

    def __getitem__(self, name: str) -> Table:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"{self.path}: no table {name!r}; tables: {sorted(self.tables)}") \
                from None

    def __contains__(self, name: str) -> bool:
        return name in self.tables

    def to_dict(self) -> dict[str, Any]:
        """What ``spicebridge inspect --json`` prints."""
        return {
            "path": str(self.path),
            "format": FORMAT,
            "schema_version": self.schema_version,
            "created": self.created,
            "provenance": self.provenance,
            "datasets": {n: t.to_dict() for n, t in sorted(self.tables.items())},
            "failures": [f.__dict__ for f in self.failures],
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()] if v.ndim else _jsonable(v.item())
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, float) and not np.isfinite(v):
        return None if np.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def write_lookup(
    path: str | Path,
    tables: Iterable[Table],
    provenance: Mapping[str, Any],
    failures: Iterable[Failure] = (),
    *,
    overwrite: bool = True,
) -> Path:
    """Write a lookup file atomically (a temporary file renamed over ``path``).

    A kill during the write leaves the previous file (or none), never half a file.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite a characterized table")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            f.attrs["provenance"] = json.dumps(_jsonable_tree(dict(provenance)), sort_keys=True)
            for t in tables:
                _write_table(f, t)
            _write_failures(f, list(failures))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _jsonable_tree(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable_tree(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable_tree(v) for v in x]
    return _jsonable(x)


def _write_table(f: h5py.File, t: Table) -> None:
    if t.name.startswith(_COORDS) or t.name == _FAILURES:
        raise ValueError(f"table name {t.name!r} is reserved")
    data = t.data
    if data.dtype.kind in "OU":
        data = data.astype(object)
        ds = f.create_dataset(t.name, data=data, dtype=_STR)
    else:
        ds = f.create_dataset(t.name, data=data, compression="gzip" if data.size > 4096 else None)
    ds.attrs["units"] = t.units
    ds.attrs["dims"] = json.dumps(list(t.dims))
    for k, v in t.attrs.items():
        ds.attrs[k] = json.dumps(_jsonable_tree(v)) if isinstance(v, (dict, list, tuple)) else v
    for i, d in enumerate(t.dims):
        c = t.coords[d]
        cpath = f"{_COORDS}/{t.name}/{d}"
        if c.dtype.kind == "U":
            cds = f.create_dataset(cpath, data=c.astype(object), dtype=_STR)
        else:
            cds = f.create_dataset(cpath, data=c)
        cds.attrs["units"] = t.coord_units.get(d, "")
        if c.dtype.kind != "U":
            cds.make_scale(d)
            ds.dims[i].attach_scale(cds)
        ds.dims[i].label = d


def _write_failures(f: h5py.File, failures: list[Failure]) -> None:
    g = f.create_group(_FAILURES)
    g.attrs["count"] = len(failures)
    cols = {
        "source": [x.source for x in failures],
        "point": [json.dumps(_jsonable_tree(x.point), sort_keys=True) for x in failures],
        "error_type": [x.error_type for x in failures],
        "message": [x.message for x in failures],
    }
    for k, v in cols.items():
        g.create_dataset(k, data=np.asarray(v, dtype=object), dtype=_STR)


def read_lookup(path: str | Path) -> LookupFile:
    """Read and validate a lookup file.

    Raises:
        LookupFormatError: Missing, truncated, not a lookup file, or malformed.
        LookupVersionError: Written by a newer schema version than this reader knows.
    """
    path = Path(path)
    if not path.is_file():
        raise LookupFormatError(f"no lookup file at {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise LookupFormatError(f"{path} is not a readable HDF5 file (truncated or corrupt?): "
                                f"{e}") from e
    with f:
        fmt = f.attrs.get("format")
        if fmt != FORMAT:
            raise LookupFormatError(f"{path} is not an {FORMAT!r} file (format attribute: "
                                    f"{fmt!r})")
        try:
            version = int(f.attrs["schema_version"])
        except (KeyError, ValueError, TypeError) as e:
            raise LookupFormatError(f"{path}: missing or bad 'schema_version' attribute") from e
        if version > SCHEMA_VERSION:
            raise LookupVersionError(
                f"{path} uses schema v{version}; this reader knows up to v{SCHEMA_VERSION}. "
                "Upgrade the package.")
        if version < 1:
            raise LookupFormatError(f"{path}: schema_version {version} is not valid")
        try:
            provenance = json.loads(f.attrs.get("provenance", "{}"))
            raw_tables = {}
            f.visititems(lambda name, obj: raw_tables.__setitem__(name, obj)
                         if isinstance(obj, h5py.Dataset) and not name.startswith(
                             (_COORDS + "/", _FAILURES + "/")) else None)
            tables = {name: _read_table(f, name, ds, path) for name, ds in raw_tables.items()}
            failures = _read_failures(f)
        except (OSError, KeyError, ValueError) as e:
            raise LookupFormatError(f"{path}: malformed lookup file: {e}") from e
        created = str(f.attrs.get("created", ""))
    if version < SCHEMA_VERSION:
        warnings.warn(f"{path}: migrating schema v{version} -> v{SCHEMA_VERSION}",
                      LegacyLookupWarning, stacklevel=2)
        raw = {"tables": tables, "provenance": provenance, "failures": failures}
        for v in range(version, SCHEMA_VERSION):
            raw = _MIGRATIONS[v](raw)
        tables, provenance, failures = raw["tables"], raw["provenance"], raw["failures"]
    return LookupFile(path, version, provenance, tables, failures, created)


def _read_table(f: h5py.File, name: str, ds: h5py.Dataset, path: Path) -> Table:
    if "dims" not in ds.attrs or "units" not in ds.attrs:
        raise LookupFormatError(f"{path}: dataset {name!r} lacks its 'dims' or 'units' attribute")
    dims = tuple(json.loads(ds.attrs["dims"]))
    data = ds[()]
    if data.dtype.kind == "O":
        data = np.asarray([x.decode() if isinstance(x, bytes) else x for x in data.ravel()]
                          ).reshape(data.shape)
    coords, cu = {}, {}
    for d in dims:
        cds = f.get(f"{_COORDS}/{name}/{d}")
        if cds is None:
            raise LookupFormatError(f"{path}: dataset {name!r} has no coordinate for {d!r}")
        c = cds[()]
        if c.dtype.kind == "O":
            c = np.asarray([x.decode() if isinstance(x, bytes) else str(x) for x in c])
        coords[d] = c
        cu[d] = str(cds.attrs.get("units", ""))
    attrs = {}
    for k, v in ds.attrs.items():
        if k in _RESERVED_ATTRS:
            continue
        if isinstance(v, str) and v[:1] in "[{":
            with contextlib.suppress(ValueError):
                v = json.loads(v)
        attrs[k] = v.item() if isinstance(v, np.generic) else v
    return Table(name, data, dims, coords, str(ds.attrs["units"]), cu, attrs)


def _read_failures(f: h5py.File) -> list[Failure]:
    g = f.get(_FAILURES)
    if g is None:
        return []
    cols = {k: [x.decode() if isinstance(x, bytes) else x for x in g[k][()]] for k in
            ("source", "point", "error_type", "message")}
    return [Failure(s, json.loads(p), t, m) for s, p, t, m in
            zip(cols["source"], cols["point"], cols["error_type"], cols["message"], strict=True)]


def read_lookups(paths: Iterable[str | Path]) -> dict[str, Table]:
    """Tables of several lookup files merged by name (a crossbar file and an ADC file).

    Raises:
        LookupFormatError: Two files hold a table of the same name.
    """
    merged: dict[str, Table] = {}
    origin: dict[str, Path] = {}
    for p in paths:
        lf = read_lookup(p)
        for n, t in lf.tables.items():
            if n in merged:
                raise LookupFormatError(f"table {n!r} is in both {origin[n]} and {lf.path}")
            merged[n], origin[n] = t, lf.path
    return merged
