"""Versioned HDF5 lookup files: tables with named dimensions, coordinates, units, provenance.

The contract is docs/lookup-format.md. Schema v2 is netCDF-4 compatible: one HDF5 group per
table holding its data variable and its coordinate variables (dimension scales, strings
included), CF attributes (``units``, ``long_name``, ``_FillValue``, ``ancillary_variables``,
``flag_values``), so ``xarray.open_datatree(path, engine="h5netcdf")`` opens every file.

This module imports neither PySpice nor ngspice (``nnsim`` reads lookup files on machines
that have neither); xarray and h5netcdf are imported only by the writer and ``to_xarray``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import posixpath
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from characterization.errors import ConfigError

from ..errors import (
    ExtrapolationError,
    LegacyLookupWarning,
    LookupFormatError,
    LookupVersionError,
)
from .names import DIM_BITS, DIM_CODE

if TYPE_CHECKING:  # pragma: no cover
    import xarray

FORMAT = "imc-lookup"
SCHEMA_VERSION = 2
# Version log (full text in docs/lookup-format.md):
# v1: tables are datasets with attrs dims/units; coordinates under /_coords/<table>/<dim>;
#     failures as a compound-free group of parallel string datasets; NaN marks a missing value
#     and padding alike.
# v2: netCDF-4 / CF: one group per table (data variable + coordinate variables as dimension
#     scales, strings too), long_name for the description, a <var>_status flag variable that
#     says which cells are padding (ragged axes) or missing (failed points); NaN anywhere else
#     is refused on reading. v1 files are migrated on reading (_migrate_v1_to_v2).

#: Cell status codes of the ``<var>_status`` variable (CF ``flag_values``/``flag_meanings``).
VALID, PADDING, MISSING = 0, 1, 2
STATUS_MEANINGS = "valid padding missing"

#: Largest table (or coordinate) a reader allocates, in bytes; ``IMC_LOOKUP_MAX_BYTES``
#: overrides it. A file declaring more is refused before anything is read.
MAX_TABLE_BYTES = 2 * 1024**3
#: Largest sum over all datasets of one file; ``IMC_LOOKUP_MAX_TOTAL_BYTES`` overrides it.
MAX_TOTAL_BYTES = 8 * 1024**3
#: Deepest JSON nesting accepted in provenance, failures and attributes.
MAX_JSON_DEPTH = 64

_COORDS = "_coords"  # v1 only
_FAILURES = "failures"
_VAR_ATTR = "imc_variable"  # group attribute naming the table's data variable
_STR = h5py.string_dtype("utf-8")
_CF_RESERVED = frozenset({
    "units", "long_name", "_FillValue", "ancillary_variables", "DIMENSION_LIST",
    "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Coordinates", "_Netcdf4Dimid", "coordinates",
    "dims", "DIMENSION_LABELS"})
# A ragged axis: (dimension, the dimension whose value sets its length). Writers that do not
# say which NaN are padding get padding inferred along these (ADC codes per resolution).
_RAGGED = ((DIM_CODE, DIM_BITS),)


def _max_bytes(var: str = "IMC_LOOKUP_MAX_BYTES", default: int = MAX_TABLE_BYTES) -> int:
    env = os.environ.get(var)
    if env:
        with contextlib.suppress(ValueError):
            return int(env)
    return default


@dataclass(frozen=True, eq=False)
class Table:
    """An n-d array with named dimensions, coordinates and units.

    Attributes:
        name: Path in the file, e.g. ``crossbar/read_noise`` or ``v(out)``.
        data: The values (NaN at cells that are padding or missing).
        dims: One name per axis of ``data`` (``process``, ``vdd_v``, ``temp_c``, ``mc`` ...).
        coords: Dimension -> coordinate values (numbers, or strings for categorical axes).
        units: Units of ``data`` (SI: ``A``, ``V``, ``S``, ``J``, ``s``, ``LSB``, ``1``).
        coord_units: Dimension -> units of its coordinate (``V``, ``degC``, ``1``).
        attrs: Further attributes (``description``, fitted-model notes ...).
        status: ``None`` (every cell valid) or an int8 array of ``data``'s shape: ``VALID``
            (0), ``PADDING`` (1, a ragged axis' unused tail, e.g. ADC codes beyond
            ``2**bits - 1``) or ``MISSING`` (2, a failed sweep point).
    """

    name: str
    data: np.ndarray
    dims: tuple[str, ...]
    coords: dict[str, np.ndarray]
    units: str
    coord_units: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    status: np.ndarray | None = None

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "dims", tuple(self.dims))
        if data.ndim != len(self.dims):
            raise ConfigError(f"table {self.name!r}: data has {data.ndim} axes but dims is "
                             f"{self.dims!r}")
        if len(set(self.dims)) != len(self.dims):
            raise ConfigError(f"table {self.name!r}: repeated dimension in {self.dims!r}")
        coords = {}
        for i, d in enumerate(self.dims):
            c = self.coords.get(d)
            c = np.arange(data.shape[i]) if c is None else np.asarray(c)
            if c.dtype.kind in "OSU":
                c = np.asarray([x.decode() if isinstance(x, bytes) else str(x) for x in c])
            if c.shape != (data.shape[i],):
                raise ConfigError(f"table {self.name!r}: coordinate {d!r} has shape {c.shape}, "
                                 f"axis {i} has length {data.shape[i]}")
            coords[d] = c
        extra = set(self.coords) - set(self.dims)
        if extra:
            raise ConfigError(f"table {self.name!r}: coordinates {sorted(extra)} name no dimension")
        object.__setattr__(self, "coords", coords)
        if self.status is not None:
            st = np.asarray(self.status, dtype=np.int8)
            if st.shape != data.shape:
                raise ConfigError(f"table {self.name!r}: status has shape {st.shape}, data "
                                 f"{data.shape}")
            if st.size and (st.min() < VALID or st.max() > MISSING):
                raise ConfigError(f"table {self.name!r}: status values must be 0, 1 or 2")
            object.__setattr__(self, "status", st)

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

    def counts(self) -> dict[str, int]:
        """Cells that are ``valid``, ``padding`` and ``missing``.

        A cell without a status that is not finite (only possible in memory, after
        arithmetic) counts as missing.
        """
        if self.status is not None:
            st = self.status
            return {"valid": int((st == VALID).sum()), "padding": int((st == PADDING).sum()),
                    "missing": int((st == MISSING).sum())}
        bad = int((~np.isfinite(self.data)).sum()) if self.data.dtype.kind in "fc" else 0
        return {"valid": int(self.data.size) - bad, "padding": 0, "missing": bad}

    def with_ragged(self, dim: str, along: str, lengths: Mapping[Any, int]) -> Table:
        """This table with the tail of ``dim`` marked as padding, per value of ``along``.

        ``lengths`` maps each coordinate value of ``along`` to the used length of ``dim``
        (e.g. ``{b: 2**b - 1 for b in bits}`` for ADC thresholds). Padding cells become NaN.
        """
        ax, ax_along = self.axis(dim), self.axis(along)
        st = np.zeros(self.shape, np.int8) if self.status is None else self.status.copy()
        n = self.shape[ax]
        for j, v in enumerate(self.coords[along]):
            key = v.item() if hasattr(v, "item") else v
            if key not in lengths:
                raise KeyError(f"table {self.name!r}: no ragged length for {along}={key!r}")
            tail = np.arange(n) >= int(lengths[key])
            sl = [slice(None)] * self.data.ndim
            sl[ax_along], sl[ax] = j, tail
            st[tuple(sl)] = PADDING
        data = self.data
        if st.any() and data.dtype.kind in "fc":
            data = np.where(st == PADDING, np.nan, data)
        return Table(self.name, data, self.dims, self.coords, self.units, self.coord_units,
                     dict(self.attrs), st)

    def sel(self, **where: Any) -> Table:
        """Select or interpolate along dimensions; the others stay.

        Categorical (string) coordinates need an exact match. Numeric coordinates are
        linearly interpolated between the two characterized neighbours; a value outside the
        characterized range raises ``ExtrapolationError`` naming that range. An
        interpolated cell is valid only where both neighbours are.

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
        st = self.status

        def take(i: int) -> tuple[np.ndarray, np.ndarray | None]:
            return (np.take(self.data, i, axis=ax),
                    None if st is None else np.take(st, i, axis=ax))

        if c.dtype.kind == "U":
            hits = np.flatnonzero(c == str(value))
            if not hits.size:
                raise KeyError(f"table {self.name!r}: {dim}={value!r} was not characterized; "
                               f"available: {list(c)}")
            data, s = take(int(hits[0]))
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
                data, s = take(int(order[j - 1 if cs.size > 1 else 0]))
            elif abs(v - cs[j]) <= tol:
                data, s = take(int(order[j]))
            else:
                w = (v - cs[j - 1]) / (cs[j] - cs[j - 1])
                a, sa = take(int(order[j - 1]))
                b, sb = take(int(order[j]))
                data = (1 - w) * a.astype(float) + w * b.astype(float)
                s = None if st is None else np.maximum(sa, sb)
        return Table(self.name, data, keep, coords, self.units, cu, dict(self.attrs), s)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no data): dims, coordinates, units, shape, cell counts."""
        return {
            "dims": list(self.dims),
            "shape": list(self.shape),
            "units": self.units,
            "dtype": str(self.data.dtype),
            "coords": {d: {"values": _jsonable(self.coords[d]),
                           "units": self.coord_units.get(d, "")} for d in self.dims},
            "attrs": {k: _jsonable(v) for k, v in self.attrs.items()},
            "cells": self.counts(),
        }

    def to_xarray(self) -> xarray.DataArray:
        """The table as an ``xarray.DataArray`` (units and descriptions in ``attrs``, each
        coordinate's units in its own ``attrs``; padding and missing cells are NaN)."""
        import xarray as xr

        attrs = {k: _attr_value(v) for k, v in self.attrs.items()}
        attrs["units"] = self.units
        coords = {d: xr.Variable(d, self.coords[d],
                                 {"units": self.coord_units[d]} if self.coord_units.get(d)
                                 else {}) for d in self.dims}
        return xr.DataArray(self.data, dims=self.dims, coords=coords,
                            name=posixpath.basename(self.name), attrs=attrs)


def _attr_value(v: Any) -> Any:
    """An attribute as netCDF can hold it: numbers, strings, 1-d arrays; else JSON text."""
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(_jsonable_tree(v))
    if isinstance(v, bool | np.bool_):
        return int(v)
    return v


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

    def to_datatree(self) -> xarray.DataTree:
        """The file as an ``xarray.DataTree``: one node per table (its ``DataArray`` under
        the table's base name), root attributes format/schema/provenance."""
        import xarray as xr

        nodes: dict[str, Any] = {"/": xr.Dataset(attrs={
            "format": FORMAT, "schema_version": self.schema_version, "created": self.created,
            "provenance": json.dumps(_jsonable_tree(self.provenance), sort_keys=True)})}
        for n, t in self.tables.items():
            da = t.to_xarray()
            nodes["/" + n] = da.to_dataset(name=str(da.name))
        return xr.DataTree.from_dict(nodes)


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


def _jsonable_tree(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable_tree(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable_tree(v) for v in x]
    return _jsonable(x)


# ------------------------------------------------------------------------------ writing


def write_lookup(
    path: str | Path,
    tables: Iterable[Table],
    provenance: Mapping[str, Any],
    failures: Iterable[Failure] = (),
    *,
    overwrite: bool = True,
) -> Path:
    """Write a lookup file (schema v2, netCDF-4) atomically: a temporary file renamed over
    ``path``. A kill during the write leaves the previous file (or none), never half a file.

    Cells that are not finite must be marked in ``Table.status``; where a table has none,
    non-finite cells along a ragged axis' tail (``code`` per ``bits``) become padding and all
    others missing.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: A reserved or nested table name, or a non-finite cell marked valid.
    """
    import h5netcdf

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite a characterized table")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5netcdf.File(tmp, "w") as f:
            names: list[str] = []
            for t in tables:
                _check_name(t.name, names)
                names.append(t.name)
                _write_table(f, t)
            _write_failures(f, list(failures))
        with h5py.File(tmp, "r+") as f:  # root attributes as HDF5 scalars (netCDF: (1,))
            f.attrs["Conventions"] = "CF-1.10"
            f.attrs["format"] = FORMAT
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            f.attrs["provenance"] = json.dumps(_jsonable_tree(dict(provenance)), sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_name(name: str, earlier: list[str]) -> None:
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"table name {name!r} is not a path of non-empty names")
    if parts[0] in (_FAILURES, _COORDS):
        raise ConfigError(f"table name {name!r} is reserved")
    for e in earlier:
        if e == name:
            raise ConfigError(f"table {name!r} is written twice")
        if e.startswith(name + "/") or name.startswith(e + "/"):
            raise ConfigError(f"table {name!r} and table {e!r} would nest (one group inside "
                             "the other); netCDF readers need each table in a leaf group")


def _status_for_write(t: Table) -> np.ndarray | None:
    data = t.data
    if data.dtype.kind not in "fc":
        return t.status
    bad = ~np.isfinite(data)
    if t.status is not None:
        wrong = bad & (t.status == VALID)
        if wrong.any():
            raise ConfigError(f"table {t.name!r}: non-finite value at "
                             f"{_corner(t, np.argwhere(wrong)[0])} is marked valid")
        return t.status
    if not bad.any():
        return None
    return _infer_status(t.dims, bad)


def _infer_status(dims: tuple[str, ...], bad: np.ndarray) -> np.ndarray:
    """Non-finite cells -> MISSING, except a ragged axis' tail (per value of its length
    dimension, beyond the last finite cell anywhere in that slice) -> PADDING."""
    st = np.where(bad, MISSING, VALID).astype(np.int8)
    for dim, along in _RAGGED:
        if dim not in dims or along not in dims:
            continue
        ax, ax_a = dims.index(dim), dims.index(along)
        good = np.moveaxis(~bad, (ax_a, ax), (0, -1))  # (along, ..., dim)
        n = good.shape[-1]
        used = good.reshape(good.shape[0], -1, n).any(axis=1)  # (along, dim)
        # a slice with no finite cell at all is missing, not padding
        length = np.where(used.any(axis=1), n - np.argmax(used[:, ::-1], axis=1), n)
        tail = np.arange(n)[None, :] >= length[:, None]  # (along, dim)
        shape = [1] * bad.ndim
        shape[ax_a], shape[ax] = tail.shape
        tail_full = np.broadcast_to(
            np.moveaxis(tail.reshape(tail.shape[0], *([1] * (bad.ndim - 2)), tail.shape[1]),
                        (0, -1), (ax_a, ax)), bad.shape)
        st[tail_full & bad] = PADDING
    return st


def _corner(t: Table, idx: Iterable[int]) -> str:
    return ", ".join(f"{d}={_jsonable(t.coords[d][i])}" for d, i in zip(t.dims, idx,
                                                                        strict=True)) or "()"


def _write_table(f: Any, t: Table) -> None:
    g = f.create_group(t.name)
    base = posixpath.basename(t.name)
    var = base if base not in t.dims and base + "_status" not in t.dims else base + "_value"
    g.attrs[_VAR_ATTR] = var
    g.dimensions = {d: int(n) for d, n in zip(t.dims, t.shape, strict=True)}
    for d in t.dims:
        c = t.coords[d]
        if c.dtype.kind == "U":
            cv = g.create_variable(d, (d,), dtype=_STR, data=c.astype(object))
        else:
            cv = g.create_variable(d, (d,), data=c)
        if t.coord_units.get(d):
            cv.attrs["units"] = t.coord_units[d]
    data = t.data
    big = {"compression": "gzip"} if data.size > 4096 else {}
    if data.dtype.kind in "OU":
        dv = g.create_variable(var, t.dims, dtype=_STR, data=data.astype(object))
    elif data.dtype.kind == "b":
        raise ConfigError(f"table {t.name!r}: boolean data; store it as integers")
    elif data.dtype.kind in "fc":
        dv = g.create_variable(var, t.dims, data=data, fillvalue=np.nan, **big)
    else:
        dv = g.create_variable(var, t.dims, data=data, **big)
    dv.attrs["units"] = t.units
    for k, v in t.attrs.items():
        if k == "description":
            dv.attrs["long_name"] = str(v)
        elif k in _CF_RESERVED or k.startswith("_"):
            raise ConfigError(f"table {t.name!r}: attribute name {k!r} is reserved")
        else:
            dv.attrs[k] = _attr_value(v)
    st = _status_for_write(t)
    if st is not None and st.any():
        sv = g.create_variable(var + "_status", t.dims, data=st.astype(np.int8),
                               compression="gzip")
        sv.attrs["flag_values"] = np.array([VALID, PADDING, MISSING], np.int8)
        sv.attrs["flag_meanings"] = STATUS_MEANINGS
        sv.attrs["long_name"] = f"status of each cell of {var}"
        dv.attrs["ancillary_variables"] = var + "_status"


def _write_failures(f: Any, failures: list[Failure]) -> None:
    g = f.create_group(_FAILURES)
    g.attrs["count"] = len(failures)
    g.dimensions = {"failure": len(failures)}
    cols = {
        "source": [x.source for x in failures],
        "point": [json.dumps(_jsonable_tree(x.point), sort_keys=True) for x in failures],
        "error_type": [x.error_type for x in failures],
        "message": [x.message for x in failures],
    }
    for k, v in cols.items():
        g.create_variable(k, ("failure",), dtype=_STR, data=np.asarray(v, dtype=object))


# ------------------------------------------------------------------------------ reading


def read_lookup(path: str | Path) -> LookupFile:
    """Read and validate a lookup file (v2; v1 is migrated with a ``LegacyLookupWarning``).

    Raises:
        LookupFormatError: Missing, truncated, not a lookup file, malformed, a table larger
            than ``IMC_LOOKUP_MAX_BYTES`` (checked before reading it), a non-finite value in
            a cell not marked padding or missing, provenance that is not a JSON object or
            nests deeper than ``MAX_JSON_DEPTH``.
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
        fmt = _s(f.attrs.get("format"))
        if fmt != FORMAT:
            raise LookupFormatError(f"{path} is not an {FORMAT!r} file (format attribute: "
                                    f"{fmt!r})")
        try:
            version = int(np.asarray(f.attrs["schema_version"]).reshape(-1)[0])
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise LookupFormatError(f"{path}: missing or bad 'schema_version' attribute") from e
        if version > SCHEMA_VERSION:
            raise LookupVersionError(
                f"{path} uses schema v{version}; this reader knows up to v{SCHEMA_VERSION}. "
                "Upgrade the package.")
        if version < 1:
            raise LookupFormatError(f"{path}: schema_version {version} is not valid")
        provenance = _json_obj(_s(f.attrs.get("provenance", "{}")), f"{path}: provenance")
        reader = _Reader(path)
        try:
            tables = reader.tables_v1(f) if version == 1 else reader.tables_v2(f)
            failures = reader.failures(f)
        except LookupFormatError:
            raise
        except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
            raise LookupFormatError(f"{path}: malformed lookup file: {e}") from e
        created = _s(f.attrs.get("created", ""))
    if version < SCHEMA_VERSION:
        warnings.warn(f"{path}: migrating schema v{version} -> v{SCHEMA_VERSION}",
                      LegacyLookupWarning, stacklevel=2)
        raw = {"tables": tables, "provenance": provenance, "failures": failures}
        for v in range(version, SCHEMA_VERSION):
            raw = _MIGRATIONS[v](raw)
        tables, provenance, failures = raw["tables"], raw["provenance"], raw["failures"]
    for t in tables.values():
        reader.check_finite(t)
    return LookupFile(path, version, provenance, tables, failures, created)


def _s(v: Any) -> str:
    if isinstance(v, bytes | np.bytes_):
        return v.decode()
    if isinstance(v, np.ndarray) and v.size == 1:
        return _s(v.reshape(-1)[0])
    return "" if v is None else str(v)


def _depth_ok(x: Any, limit: int) -> bool:
    stack = [(x, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict | list):
            if d > limit:
                return False
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return True


def _json_any(text: str, where: str) -> Any:
    try:
        obj = json.loads(text)
    except RecursionError:
        raise LookupFormatError(f"{where}: JSON nests deeper than {MAX_JSON_DEPTH} levels") \
            from None
    except ValueError as e:
        raise LookupFormatError(f"{where}: not valid JSON: {e}") from None
    if not _depth_ok(obj, MAX_JSON_DEPTH):
        raise LookupFormatError(f"{where}: JSON nests deeper than {MAX_JSON_DEPTH} levels")
    return obj


def _json_obj(text: str, where: str) -> dict[str, Any]:
    obj = _json_any(text, where)
    if not isinstance(obj, dict):
        raise LookupFormatError(f"{where}: expected a JSON object, found a "
                                f"{type(obj).__name__}")
    return obj


class _Reader:
    """Reads tables with the size limit applied before each dataset is read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.limit = _max_bytes()
        self.total_limit = _max_bytes("IMC_LOOKUP_MAX_TOTAL_BYTES", MAX_TOTAL_BYTES)
        self.total = 0

    def load(self, ds: h5py.Dataset, what: str, shape: tuple[int, ...] | None = None) \
            -> np.ndarray:
        if shape is not None and tuple(ds.shape) != tuple(shape):
            raise LookupFormatError(f"{self.path}: {what} has shape {tuple(ds.shape)}, "
                                    f"expected {tuple(shape)}")
        if ds.dtype.kind not in "biufcSO" or (ds.dtype.kind == "O"
                                               and h5py.check_string_dtype(ds.dtype) is None):
            raise LookupFormatError(f"{self.path}: {what} has unsupported type {ds.dtype}")
        n = int(np.prod(ds.shape, dtype=np.float64) * max(ds.dtype.itemsize, 8
                                                             if ds.dtype.kind == "O" else 1))
        if n > self.limit:
            raise LookupFormatError(
                f"{self.path}: {what} declares shape {tuple(ds.shape)} ({n / 2**30:.1f} GiB), "
                f"over the reader's limit of {self.limit / 2**30:.1f} GiB "
                "(IMC_LOOKUP_MAX_BYTES); refusing to read it")
        self.total += n
        if self.total > self.total_limit:
            raise LookupFormatError(
                f"{self.path}: its datasets declare more than {self.total_limit / 2**30:.1f} "
                f"GiB in all (at {what}; IMC_LOOKUP_MAX_TOTAL_BYTES); refusing to read on")
        v = ds[()]
        if isinstance(v, np.ndarray) and v.dtype.kind in "OS":
            v = np.asarray([x.decode() if isinstance(x, bytes) else str(x)
                            for x in v.ravel()]).reshape(v.shape)
        return np.asarray(v)

    def attrs(self, a: h5py.AttributeManager, where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in a.items():
            if k in _CF_RESERVED or k.startswith("_"):
                continue
            if isinstance(v, bytes | np.bytes_):
                v = v.decode()
            if isinstance(v, np.ndarray) and v.shape == (1,):  # netCDF stores scalars as (1,)
                v = v[0]
            if isinstance(v, str) and v[:1] in "[{":
                with contextlib.suppress(LookupFormatError):
                    v = _json_any(v, f"{where} attribute {k!r}")
            out[k] = v.item() if isinstance(v, np.generic) else v
        return out

    # -- v2
    def tables_v2(self, f: h5py.File) -> dict[str, Table]:
        groups: list[tuple[str, h5py.Group]] = []
        f.visititems(lambda n, o: groups.append((n, o)) if isinstance(o, h5py.Group)
                     and _VAR_ATTR in o.attrs else None)
        return {name: self.table_v2(name, g) for name, g in groups}

    def table_v2(self, name: str, g: h5py.Group) -> Table:
        where = f"{self.path}: table {name!r}"
        var = _s(g.attrs[_VAR_ATTR])
        ds = g.get(var)
        if not isinstance(ds, h5py.Dataset):
            raise LookupFormatError(f"{where}: no data variable {var!r}")
        if "units" not in ds.attrs:
            raise LookupFormatError(f"{where}: data variable lacks its 'units' attribute")
        dims, coords, cu = [], {}, {}
        for i in range(ds.ndim):
            scales = list(ds.dims[i].values()) if len(ds.dims[i]) else []
            if not scales:
                raise LookupFormatError(f"{where}: axis {i} has no coordinate (dimension scale)")
            cds = scales[0]
            d = posixpath.basename(cds.name)
            dims.append(d)
            coords[d] = self.load(cds, f"{where} coordinate {d!r}", (ds.shape[i],))
            u = _s(cds.attrs.get("units", ""))
            cu[d] = u
        data = self.load(ds, where)
        status = None
        anc = _s(ds.attrs.get("ancillary_variables", ""))
        if anc:
            sds = g.get(anc)
            if not isinstance(sds, h5py.Dataset):
                raise LookupFormatError(f"{where}: status variable {anc!r} is missing")
            status = self.load(sds, f"{where} status", ds.shape)
            if status.dtype.kind not in "iu" or (status.size and (
                    status.min() < VALID or status.max() > MISSING)):
                raise LookupFormatError(f"{where}: status values must be 0, 1 or 2")
        attrs = self.attrs(ds.attrs, where)
        if "long_name" in ds.attrs:
            attrs = {"description": _s(ds.attrs["long_name"]), **attrs}
        try:
            return Table(name, data, tuple(dims), coords, _s(ds.attrs["units"]), cu, attrs,
                         status)
        except ValueError as e:
            raise LookupFormatError(f"{where}: {e}") from None

    # -- v1 (migrated afterwards)
    def tables_v1(self, f: h5py.File) -> dict[str, Table]:
        raw: dict[str, h5py.Dataset] = {}
        f.visititems(lambda name, obj: raw.__setitem__(name, obj)
                     if isinstance(obj, h5py.Dataset) and not name.startswith(
                         (_COORDS + "/", _FAILURES + "/")) else None)
        return {name: self.table_v1(f, name, ds) for name, ds in raw.items()}

    def table_v1(self, f: h5py.File, name: str, ds: h5py.Dataset) -> Table:
        where = f"{self.path}: dataset {name!r}"
        if "dims" not in ds.attrs or "units" not in ds.attrs:
            raise LookupFormatError(f"{where} lacks its 'dims' or 'units' attribute")
        dims = _json_any(_s(ds.attrs["dims"]), f"{where} attribute 'dims'")
        if not isinstance(dims, list) or len(dims) != ds.ndim or \
                not all(isinstance(d, str) for d in dims):
            raise LookupFormatError(f"{where}: 'dims' must list one name per axis")
        coords, cu = {}, {}
        for i, d in enumerate(dims):
            cds = f.get(f"{_COORDS}/{name}/{d}")
            if not isinstance(cds, h5py.Dataset):
                raise LookupFormatError(f"{where} has no coordinate for {d!r}")
            coords[d] = self.load(cds, f"{where} coordinate {d!r}", (ds.shape[i],))
            cu[d] = _s(cds.attrs.get("units", ""))
        data = self.load(ds, where)
        attrs = self.attrs(ds.attrs, where)
        return Table(name, data, tuple(dims), coords, _s(ds.attrs["units"]), cu, attrs)

    def failures(self, f: h5py.File) -> list[Failure]:
        g = f.get(_FAILURES)
        if g is None:
            return []
        cols = {k: [str(x) for x in self.load(g[k], f"failures/{k}")] for k in
                ("source", "point", "error_type", "message")}
        if len({len(v) for v in cols.values()}) != 1:
            raise LookupFormatError(f"{self.path}: failures columns differ in length")
        return [Failure(s, _json_obj(p, f"{self.path}: failure {i} point"), t, m)
                for i, (s, p, t, m) in enumerate(zip(cols["source"], cols["point"],
                                                     cols["error_type"], cols["message"],
                                                     strict=True))]

    def check_finite(self, t: Table) -> None:
        if t.data.dtype.kind not in "fc":
            return
        bad = ~np.isfinite(t.data)
        if t.status is not None:
            bad &= t.status == VALID
        if bad.any():
            idx = np.argwhere(bad)
            raise LookupFormatError(
                f"{self.path}: table {t.name!r} holds {len(idx)} non-finite value(s) in cells "
                f"not marked padding or missing, first at {_corner(t, idx[0])} "
                f"({t.data[tuple(idx[0])]})")


def _migrate_v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """v1 used NaN for padding and missing values alike: classify them (ragged ``code`` tail
    per ``bits`` -> padding, the rest -> missing)."""
    tables = {}
    for n, t in raw["tables"].items():
        if t.data.dtype.kind in "fc" and not np.isfinite(t.data).all():
            st = _infer_status(t.dims, ~np.isfinite(t.data))
            t = Table(t.name, t.data, t.dims, t.coords, t.units, t.coord_units, t.attrs, st)
        tables[n] = t
    return {**raw, "tables": tables}


_MIGRATIONS: dict[int, Any] = {1: _migrate_v1_to_v2}  # version -> raw dict of version + 1


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


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
