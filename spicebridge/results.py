"""Simulation results: plain dataclasses of numpy arrays in SI units."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

# Raw-file plot titles -> the short analysis names ngspice uses for plots in shared mode.
_TITLE_TO_TYPE = {
    "operating point": "op",
    "transient analysis": "tran",
    "ac analysis": "ac",
    "dc transfer characteristic": "dc",
    "noise spectral density curves": "noise",
    "integrated noise": "noise",
    "transfer function": "tf",
    "sensitivity analysis": "sens",
    "pole-zero analysis": "pz",
    "distortion analysis": "disto",
}


def plot_type(title: str) -> str:
    """Short analysis name (``op``, ``tran``, ``ac`` ...) for a plot title or plot name."""
    t = title.strip().lower()
    if t in _TITLE_TO_TYPE:
        return _TITLE_TO_TYPE[t]
    m = re.match(r"([a-z]+)\d*$", t)
    return m.group(1) if m else re.sub(r"\W+", "_", t)


@dataclass(frozen=True)
class Plot:
    """One ngspice plot (the result of one analysis).

    Attributes:
        name: Key of this plot in its ``SimResult`` (``op1``, ``tran1``, ``noise2`` ...).
        title: ngspice's title (``Transient Analysis``).
        vectors: Lower-case vector name -> 1-D array, SI units. Node voltages are named
            ``v(node)``, source currents ``i(vsrc)``, as in ngspice raw files.
        scale: Name of the independent vector (``time``, ``frequency``), or None for ``.op``.
    """

    name: str
    title: str
    vectors: dict[str, np.ndarray]
    scale: str | None = None

    @property
    def type(self) -> str:
        """Analysis type: ``op``, ``tran``, ``ac``, ``dc``, ``noise`` ..."""
        return plot_type(self.title)

    def __getitem__(self, name: str) -> np.ndarray:
        key = name.lower()
        if key in self.vectors:
            return self.vectors[key]
        raise KeyError(f"no vector {name!r} in plot {self.name}; has {sorted(self.vectors)}")

    def real(self, name: str) -> np.ndarray:
        """Real part of a vector as float64."""
        return np.real(self[name]).astype(np.float64)


@dataclass(frozen=True)
class SimResult:
    """All plots of one simulation, in the order ngspice made them.

    Attributes:
        plots: Plot key -> plot.
        engine: Name of the engine that ran it.
        log: ngspice's messages for the run.
        analysis_time_s: ngspice's own analysis time where known (shared engine), else NaN.
    """

    plots: dict[str, Plot]
    engine: str
    log: str = ""
    analysis_time_s: float = float("nan")
    meta: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> Plot:
        if key in self.plots:
            return self.plots[key]
        for p in self.plots.values():  # by type: result["tran"] -> first tran plot
            if p.type == key:
                return p
        raise KeyError(f"no plot {key!r}; has {list(self.plots)}")

    @property
    def last(self) -> Plot:
        """The last plot made."""
        return next(reversed(self.plots.values()))

    def vector(self, name: str) -> np.ndarray:
        """A vector by name from the last plot that has it."""
        for p in reversed(self.plots.values()):
            if name.lower() in p.vectors:
                return p.vectors[name.lower()]
        have = sorted({v for p in self.plots.values() for v in p.vectors})
        raise KeyError(f"no vector {name!r} in any plot; vectors: {have}")

    def keep(self, vectors: Iterable[str]) -> SimResult:
        """A copy with only ``vectors`` (and each plot's scale) in every plot."""
        only = {v.lower() for v in vectors}
        plots = {k: Plot(name=p.name, title=p.title, scale=p.scale,
                         vectors={n: v for n, v in p.vectors.items()
                                  if n in only or n == p.scale})
                 for k, p in self.plots.items()}
        return replace(self, plots=plots)

    def to_json_dict(self) -> dict[str, dict[str, float | list[float]]]:
        """``{plot: {vector: number or list}}`` with real parts of complex data."""
        out: dict[str, dict[str, float | list[float]]] = {}
        for key, p in self.plots.items():
            d: dict[str, float | list[float]] = {}
            for n, v in p.vectors.items():
                r = np.real(v).astype(float)
                d[n] = float(r[0]) if r.size == 1 else r.tolist()
            out[key] = d
        return out


def number_plots(plots: list[Plot], deck: str | None = None) -> dict[str, Plot]:
    """Key plots ``op1``, ``tran1``, ``noise1``, ``noise2`` ... in order.

    With ``deck``, plots are ordered as the deck's analysis lines (ngspice runs ``.ac``
    before ``.op`` in shared mode but not in batch mode; results must not depend on that).
    """
    if deck is not None:
        order: list[str] = []
        for line in deck.lower().splitlines():
            m = re.match(r"^\s*\.(op|tran|ac|dc|noise|tf|sens|pz|disto)\b", line)
            if m and not line.strip().startswith(".option") and m.group(1) not in order:
                order.append(m.group(1))
        rank = {t: i for i, t in enumerate(order)}
        plots = sorted(plots, key=lambda p: rank.get(p.type, len(rank)))
    counts: dict[str, int] = {}
    out: dict[str, Plot] = {}
    for p in plots:
        t = p.type
        counts[t] = counts.get(t, 0) + 1
        key = f"{t}{counts[t]}"
        out[key] = Plot(key, p.title, p.vectors, p.scale)
    return out
