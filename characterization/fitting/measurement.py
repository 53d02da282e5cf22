"""Measured device curves from CSV: time (or sweep index), applied voltage, current.

The format is specified in docs/fitting.md. In short: ``#`` lines are comments, the first
other line is the header, every column name carries its unit as a suffix (``time_s``,
``v_v``, ``i_a``, or scaled ones such as ``time_us``, ``v_mv``, ``i_ua``), and every error
names the file, the line and the column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from characterization.errors import ConfigError
from spicebridge.fileio import atomic_write_text

from .errors import MeasurementFormatError

# quantity -> (accepted unit suffix -> factor to SI)
_UNITS: dict[str, dict[str, float]] = {
    "time": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9},
    "v": {"v": 1.0, "mv": 1e-3},
    "i": {"a": 1.0, "ma": 1e-3, "ua": 1e-6, "na": 1e-9, "pa": 1e-12},
}
_UNITLESS = ("index", "pulse", "curve")


@dataclass(frozen=True, eq=False)
class Measurement:
    """One continuous measured record of a two-terminal device.

    Attributes:
        time_s: Sample times, strictly increasing, seconds.
        v_v: Applied voltage (top electrode against bottom), volts.
        i_a: Measured current into the top electrode, amperes.
        pulse: True where the sample lies inside a programming pulse (``pulse`` column;
            all False without it).
        curve: Label of the segment each sample belongs to (``curve`` column; ``"all"``
            without it); residuals are reported per label.
        path: The file read, if any.
        sha256: SHA-256 of the file's bytes (or of the arrays when made in memory).
        time_from_index: True when the file had a sweep ``index`` instead of time.
        comments: The file's ``#`` lines, without the ``#``.
    """

    time_s: np.ndarray
    v_v: np.ndarray
    i_a: np.ndarray
    pulse: np.ndarray
    curve: np.ndarray
    path: Path | None = None
    sha256: str = ""
    time_from_index: bool = False
    comments: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        n = len(self.time_s)
        for name in ("v_v", "i_a", "pulse", "curve"):
            if len(getattr(self, name)) != n:
                raise ConfigError(f"{name} has {len(getattr(self, name))} samples, time_s has {n}")
        if n < 2:
            raise ConfigError(f"a measurement needs at least 2 samples, got {n}")
        if not self.sha256:
            h = hashlib.sha256()
            for a in (self.time_s, self.v_v, self.i_a):
                h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
            object.__setattr__(self, "sha256", h.hexdigest())

    def __len__(self) -> int:
        return len(self.time_s)

    @property
    def curves(self) -> list[str]:
        """Segment labels in order of first appearance."""
        seen: dict[str, None] = {}
        for c in self.curve:
            seen.setdefault(str(c), None)
        return list(seen)

    @classmethod
    def from_arrays(cls, time_s: np.ndarray, v_v: np.ndarray, i_a: np.ndarray, *,
                    pulse: np.ndarray | None = None,
                    curve: np.ndarray | None = None) -> Measurement:
        """A measurement made in memory (synthetic data, tests)."""
        t = np.asarray(time_s, dtype=float)
        return cls(time_s=t, v_v=np.asarray(v_v, dtype=float), i_a=np.asarray(i_a, dtype=float),
                   pulse=np.zeros(len(t), bool) if pulse is None else np.asarray(pulse, bool),
                   curve=np.full(len(t), "all") if curve is None else np.asarray(curve, str))


def _column_kind(name: str) -> tuple[str, float] | None:
    """``"i_ua"`` -> ``("i", 1e-6)``; ``None`` for columns outside the format."""
    low = name.strip().lower()
    if low in _UNITLESS:
        return low, 1.0
    base, sep, unit = low.partition("_")
    if not sep or base not in _UNITS:
        return None
    return base, _UNITS[base].get(unit, math.nan)


def read_measurement_csv(path: str | Path, *, sample_period_s: float | None = None
                         ) -> Measurement:
    """Read and validate a measurement CSV (format: docs/fitting.md).

    Args:
        path: The CSV file.
        sample_period_s: Time between samples, for files with an ``index`` column instead
            of time (quasi-static sweeps); ignored when the file has a time column.

    Raises:
        MeasurementFormatError: Missing or duplicated columns, unknown units, values that are
            empty, not numbers, NaN or infinite, non-increasing time or index; the message
            names the file, the line and the column.
        FileNotFoundError: No such file.
    """
    path = Path(path)
    raw = path.read_bytes()
    text = raw.decode("utf-8-sig", errors="replace")
    comments: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            comments.append(line.lstrip()[1:].strip())
            continue
        rows.append((lineno, next(csv.reader(io.StringIO(line)))))
    if not rows:
        raise MeasurementFormatError("no header line (expected e.g. time_s,v_v,i_a)", path=path)
    header_line, header = rows[0]
    data = rows[1:]

    cols: dict[str, tuple[int, str, float]] = {}  # kind -> (index, header name, factor)
    for j, name in enumerate(header):
        kind = _column_kind(name)
        if kind is None:
            continue  # extra columns are allowed and ignored
        base, factor = kind
        if math.isnan(factor):
            allowed = ", ".join(f"{base}_{u}" for u in _UNITS[base])
            raise MeasurementFormatError(
                f"unknown unit {name.partition('_')[2]!r} for {base!r}; use one of {allowed}",
                path=path, row=header_line, column=name.strip())
        if base in cols:
            raise MeasurementFormatError(
                f"duplicate {base!r} column (also {cols[base][1]!r})",
                path=path, row=header_line, column=name.strip())
        cols[base] = (j, name.strip(), factor)
    if "time" in cols and "index" in cols:
        raise MeasurementFormatError("give either a time column or an index column, not both",
                                     path=path, row=header_line, column=cols["index"][1])
    missing = [w for w, ok in (("time_s (or index)", "time" in cols or "index" in cols),
                               ("v_v", "v" in cols), ("i_a", "i" in cols)) if not ok]
    if missing:
        raise MeasurementFormatError(
            f"missing column(s) {', '.join(missing)}; header is {','.join(header)!r} "
            f"(names are quantity_unit, e.g. time_us, v_mv, i_ua; columns other than "
            f"time/index, v, i, pulse, curve are ignored; format: docs/fitting.md)",
            path=path, row=header_line)
    if "index" in cols and sample_period_s is None:
        raise MeasurementFormatError(
            "the file has a sweep index instead of time: give the sample period "
            "(--sample-period-s, or sample_period_s=)", path=path, row=header_line,
            column=cols["index"][1])
    if len(data) < 2:
        raise MeasurementFormatError(f"needs at least 2 data rows, has {len(data)}", path=path)

    def numbers(kind: str) -> np.ndarray:
        j, name, factor = cols[kind]
        out = np.empty(len(data))
        for k, (lineno, fields) in enumerate(data):
            if j >= len(fields) or not fields[j].strip():
                raise MeasurementFormatError("empty value", path=path, row=lineno, column=name)
            try:
                x = float(fields[j])
            except ValueError:
                raise MeasurementFormatError(f"not a number: {fields[j]!r}", path=path,
                                             row=lineno, column=name) from None
            if not math.isfinite(x):
                raise MeasurementFormatError(f"value is {fields[j].strip()!r} (NaN or infinite)",
                                             path=path, row=lineno, column=name)
            out[k] = x * factor
        return out

    tkind = "time" if "time" in cols else "index"
    t = numbers(tkind)
    bad = np.flatnonzero(np.diff(t) <= 0)
    if bad.size:
        k = int(bad[0]) + 1
        j = cols[tkind][0]
        raise MeasurementFormatError(
            f"{tkind} must increase strictly: "
            f"{data[k][1][j].strip()} follows {data[k - 1][1][j].strip()}",
            path=path, row=data[k][0], column=cols[tkind][1])
    if tkind == "index":
        if sample_period_s is None or not sample_period_s > 0:
            raise MeasurementFormatError(f"sample_period_s must be > 0, got {sample_period_s!r}",
                                         path=path)
        t = (t - t[0]) * sample_period_s
    v, i = numbers("v"), numbers("i")
    if "pulse" in cols:
        p = numbers("pulse")
        nonint = np.flatnonzero(p != np.round(p))
        if nonint.size:
            k = int(nonint[0])
            raise MeasurementFormatError("pulse markers must be integers (0 outside a pulse)",
                                         path=path, row=data[k][0], column=cols["pulse"][1])
        pulse = p != 0
    else:
        pulse = np.zeros(len(data), bool)
    if "curve" in cols:
        j = cols["curve"][0]
        labels = []
        for lineno, fields in data:
            if j >= len(fields) or not fields[j].strip():
                raise MeasurementFormatError("empty curve label", path=path, row=lineno,
                                             column=cols["curve"][1])
            labels.append(fields[j].strip())
        curve = np.asarray(labels, dtype=str)
    else:
        curve = np.full(len(data), "all")
    return Measurement(time_s=t, v_v=v, i_a=i, pulse=pulse, curve=curve, path=path,
                       sha256=hashlib.sha256(raw).hexdigest(), time_from_index=tkind == "index",
                       comments=tuple(comments))


def write_measurement_csv(path: str | Path, m: Measurement, *,
                          comments: tuple[str, ...] = ()) -> Path:
    """Write ``m`` in the format :func:`read_measurement_csv` reads (atomically).

    Columns: ``time_s,v_v,i_a,pulse,curve``; ``comments`` become ``#`` lines on top.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    for c in comments:
        buf.write(f"# {c}\n")
    buf.write("time_s,v_v,i_a,pulse,curve\n")
    for t, v, i, p, c in zip(m.time_s, m.v_v, m.i_a, m.pulse, m.curve, strict=True):
        buf.write(f"{t:.12g},{v:.9g},{i:.9g},{int(p)},{c}\n")
    return atomic_write_text(path, buf.getvalue())


def read_curve_csv(path: str | Path, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """Two named numeric columns of a CSV (``#`` comments allowed), for generic fits.

    Args:
        path: The file.
        x: Header name of the abscissa column (e.g. ``v_v``).
        y: Header name of the measured column (e.g. ``i_a``).

    Raises:
        MeasurementFormatError: A column is missing, a value is empty, not a number, NaN or
            infinite; the message names the file, the line and the column.
    """
    path = Path(path)
    rows: list[tuple[int, list[str]]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append((lineno, next(csv.reader(io.StringIO(line)))))
    if not rows:
        raise MeasurementFormatError("no header line", path=path)
    header_line, header = rows[0]
    names = [h.strip() for h in header]
    out = []
    for col in (x, y):
        if col not in names:
            raise MeasurementFormatError(f"missing column {col!r}; header is {names}",
                                         path=path, row=header_line)
        j = names.index(col)
        vals = np.empty(len(rows) - 1)
        for k, (lineno, fields) in enumerate(rows[1:]):
            text = fields[j].strip() if j < len(fields) else ""
            try:
                v = float(text)
            except ValueError:
                raise MeasurementFormatError(f"not a number: {text!r}" if text else
                                             "empty value", path=path, row=lineno,
                                             column=col) from None
            if not math.isfinite(v):
                raise MeasurementFormatError(f"value is {text!r} (NaN or infinite)",
                                             path=path, row=lineno, column=col)
            vals[k] = v
        out.append(vals)
    if out[0].size < 2:
        raise MeasurementFormatError(f"needs at least 2 data rows, has {out[0].size}", path=path)
    return out[0], out[1]
