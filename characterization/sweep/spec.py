"""Sweep specifications and points: a grid of axes x Monte-Carlo repeats, one seed per point."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SweepSpecError

SEEDING_RULE = ("seed = SeedSequence(root_seed, spawn_key=(index,)).generate_state(1, uint64)[0]; "
                "rng = numpy.random.default_rng(seed); index = position of the point in the "
                "C-order grid (*axes, mc)")
"""How every point's seed is derived; written into the provenance of every sweep file."""

_AXIS_UNITS = {"vdd_v": "V", "temp_c": "degC", "process": ""}
_SUFFIX_UNITS = (("_v", "V"), ("_a", "A"), ("_s", "s"), ("_ohm", "Ohm"), ("_f", "F"),
                 ("_hz", "Hz"), ("_c", "degC"), ("_j", "J"), ("_w", "W"))


def point_seed(root_seed: int, index: int) -> int:
    """Seed of point ``index`` of a sweep with root seed ``root_seed``.

    It depends on nothing else (not on scheduling, workers or resumption), so any single point
    can be re-run alone: ``np.random.default_rng(point_seed(root, i))``.

    Args:
        root_seed: The sweep's root seed (non-negative integer).
        index: Position of the point in the grid (C order over ``(*axes, mc)``).

    Returns:
        A 64-bit unsigned integer seed.
    """
    ss = np.random.SeedSequence(root_seed, spawn_key=(index,))
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def guess_axis_units(name: str) -> str:
    """Units of an axis from its name (``vdd_v`` -> ``V``, ``temp_c`` -> ``degC``), else ``""``."""
    if name in _AXIS_UNITS:
        return _AXIS_UNITS[name]
    for suffix, units in _SUFFIX_UNITS:
        if name.endswith(suffix):
            return units
    return ""


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: grid coordinates, a Monte-Carlo repeat and its seed.

    A point's numbers must depend only on these fields, never on scheduling.
    """

    index: int
    """Position in the C-order grid over ``(*axes, mc)``; also the key of the seed."""
    coords: dict[str, Any]
    """One value per axis, e.g. ``{"process": "tt", "vdd_v": 1.8, "temp_c": 27.0}``."""
    mc: int
    """Monte-Carlo repetition, ``0 .. spec.mc - 1``."""
    seed: int
    """This point's seed (see ``point_seed``); recorded with failures."""
    context: dict[str, Any] = field(default_factory=dict)
    """The sweep's JSON-able constants (``SweepSpec.context``)."""

    def rng(self) -> np.random.Generator:
        """A generator seeded from this point's seed (fresh at every call)."""
        return np.random.default_rng(self.seed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (used in failure records)."""
        return {"index": self.index, **self.coords, "mc": self.mc, "seed": self.seed}


@dataclass(frozen=True)
class SweepSpec:
    """What to run: a Cartesian grid of axes x ``mc`` repeats, measured by ``point_fn``.

    The grid is ordered in C order over ``(*axes, "mc")`` (the last axis varies fastest); a
    point's index in that order keys its seed.
    """

    name: str
    """Sweep name, used in provenance and failure records (``crossbar_read``)."""
    axes: Mapping[str, Any]
    """Axis name -> list of values (numbers, or strings for categorical axes like ``process``)."""
    point_fn: Callable[[SweepPoint], Mapping[str, Any]]
    """Module-level (picklable) function ``SweepPoint -> {measure: value or array}``; it raises
    on failure."""
    measures: Mapping[str, str]
    """Measure name -> units of its values."""
    mc: int = 1
    """Monte-Carlo repetitions per grid point (dimension ``mc``); 1 means no Monte Carlo."""
    seed: int = 0
    """Root seed; every point's seed is spawned from it (``SEEDING_RULE``)."""
    measure_dims: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Measure name -> {extra trailing dim: coordinate values} for array-valued measures."""
    context: Mapping[str, Any] = field(default_factory=dict)
    """JSON-able constants passed to every point."""
    axis_units: Mapping[str, str] = field(default_factory=dict)
    """Axis name -> units of its coordinate; guessed from the name when absent."""
    measure_attrs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Measure name -> attributes stored on its table (``description``, ``g_min_s`` ...)."""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    """Extra provenance entries (netlist path and hash ...), merged into the file's."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SweepSpecError(f"sweep name must be a non-empty string, got {self.name!r}")
        axes: dict[str, tuple[Any, ...]] = {}
        for k, v in dict(self.axes).items():
            if k == "mc":
                raise SweepSpecError("axis name 'mc' is reserved for Monte-Carlo repetitions")
            if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
                raise SweepSpecError(f"axis {k!r}: values must be a list, got {v!r}")
            vals = tuple(_plain(x) for x in v)
            if not vals:
                raise SweepSpecError(f"axis {k!r} has no values")
            if len(set(vals)) != len(vals):
                raise SweepSpecError(f"axis {k!r} has repeated values: {list(vals)!r}")
            kinds = {isinstance(x, str) for x in vals}
            if len(kinds) > 1:
                raise SweepSpecError(f"axis {k!r} mixes strings and numbers: {list(vals)!r}")
            axes[k] = vals
        object.__setattr__(self, "axes", axes)
        if not isinstance(self.mc, int) or isinstance(self.mc, bool) or self.mc < 1:
            raise SweepSpecError(f"mc must be an integer >= 1, got {self.mc!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise SweepSpecError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not callable(self.point_fn):
            raise SweepSpecError(f"point_fn must be callable, got {self.point_fn!r}")
        measures = dict(self.measures)
        if not measures:
            raise SweepSpecError("a sweep needs at least one measure")
        object.__setattr__(self, "measures", measures)
        mdims = {m: {d: tuple(_plain(x) for x in c) for d, c in dict(ds).items()}
                 for m, ds in dict(self.measure_dims).items()}
        for m, ds in mdims.items():
            if m not in measures:
                raise SweepSpecError(f"measure_dims names {m!r}, which is not a measure "
                                     f"({sorted(measures)})")
            clash = set(ds) & (set(axes) | {"mc"})
            if clash:
                raise SweepSpecError(f"measure {m!r}: extra dims {sorted(clash)} repeat an axis")
        object.__setattr__(self, "measure_dims", mdims)
        for name in ("context", "axis_units", "measure_attrs", "provenance"):
            object.__setattr__(self, name, dict(getattr(self, name)))
        try:
            json.dumps(self.context)
        except TypeError as e:
            raise SweepSpecError(f"sweep context must be JSON-able: {e}") from e

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape ``(*len(axis), mc)``."""
        return (*(len(v) for v in self.axes.values()), self.mc)

    @property
    def dims(self) -> tuple[str, ...]:
        """Grid dimension names ``(*axes, "mc")``."""
        return (*self.axes, "mc")

    def __len__(self) -> int:
        return math.prod(self.shape)

    def measure_shape(self, measure: str) -> tuple[int, ...]:
        """Shape of one point's value of ``measure`` (``()`` for scalars)."""
        return tuple(len(c) for c in self.measure_dims.get(measure, {}).values())

    def point(self, index: int) -> SweepPoint:
        """The point at ``index`` (C order over ``(*axes, mc)``).

        Raises:
            IndexError: ``index`` outside ``0 .. len(self) - 1``.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"point index {index} outside 0..{len(self) - 1}")
        idx = np.unravel_index(index, self.shape)
        coords = {k: v[int(i)] for (k, v), i in zip(self.axes.items(), idx[:-1], strict=True)}
        return SweepPoint(index, coords, int(idx[-1]), point_seed(self.seed, index),
                          dict(self.context))

    def points(self) -> Iterator[SweepPoint]:
        """Every point, in index order."""
        for i in range(len(self)):
            yield self.point(i)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (provenance and the store fingerprint)."""
        fn = self.point_fn
        return {
            "name": self.name,
            "axes": {k: list(v) for k, v in self.axes.items()},
            "mc": self.mc,
            "seed": self.seed,
            "point_fn": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}",
            "measures": dict(self.measures),
            "measure_dims": {m: {d: list(c) for d, c in ds.items()}
                             for m, ds in self.measure_dims.items()},
            "context": dict(self.context),
            "axis_units": dict(self.axis_units),
        }

    def fingerprint(self) -> str:
        """Hash of everything that decides the numbers; a store only resumes the same sweep."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(x: Any) -> Any:
    """numpy scalars -> Python scalars, so specs hash and serialize the same way."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, bytes):
        return x.decode()
    return x

