"""Quick-look plots of lookup tables (``spicebridge inspect FILE.h5 --plot DIR``).

One PNG per table, faceted over every characterized corner: one panel per process corner
(rows) and supply x temperature (columns), all of them. In each panel the value is drawn
against the table's main numeric axis (the non-corner numeric dimension with the most
values, e.g. ``code``, ``i_col_a``, ``bits``; a corner axis when there is no other), one
line per combination of the remaining dimensions. Statistical dimensions (``mc``,
``instance``, ``sample``) are reduced to their mean with a +-1 sigma band. Padding and
missing cells are left out (they are NaN). Units carry SI prefixes (``µA``, ``pJ``, ``°C``).
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from pathlib import Path

import numpy as np

from characterization.errors import ConfigError

from ..lookup import Table
from ..lookup.names import DIM_INSTANCE, DIM_MC, DIM_PROCESS, DIM_SAMPLE, DIM_TEMP_C, DIM_VDD_V

#: Dimensions reduced to mean +-1 sigma instead of drawn as lines.
STAT_DIMS = (DIM_MC, DIM_INSTANCE, DIM_SAMPLE)
#: Units that take SI prefixes.
PREFIXABLE = frozenset({"A", "V", "S", "J", "s", "C", "F", "Hz", "W", "Ohm", "Ω", "m"})
_PREFIXES = {-15: "f", -12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G"}
MAX_LINES = 10


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dataset"


def unit_label(units: str) -> str:
    """Units as a person writes them: ``degC`` -> ``°C``, ``Ohm`` -> ``Ω``, ``1`` -> ``""``."""
    return {"degC": "°C", "Ohm": "Ω", "ohm": "Ω", "1": "", "uS": "µS", "uA": "µA"}.get(
        units, units)


def si_scale(values: np.ndarray, units: str) -> tuple[float, str]:
    """``(factor, label)``: multiply ``values`` by ``factor`` to show them in ``label``.

    ``si_scale([2e-6, 5e-6], "A") == (1e6, "µA")``; units without SI prefixes (``LSB``,
    ``bits``, ``dB``, ``1``, ``degC``) keep factor 1.
    """
    label = unit_label(units)
    if units not in PREFIXABLE:
        return 1.0, label
    v = np.abs(np.asarray(values, dtype=float))
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return 1.0, label
    exp3 = int(math.floor(math.log10(float(np.max(v))) / 3.0) * 3)
    exp3 = min(max(exp3, -15), 9)
    return 10.0 ** (-exp3), _PREFIXES[exp3] + ("Ω" if units in ("Ohm", "Ω") else units)


def _fmt(d: str, v: object, units: str) -> str:
    if isinstance(v, (float, np.floating)):
        f, u = si_scale(np.array([v]), units)
        return f"{d}={float(v) * f:g}{(' ' + u) if u else ''}"
    return f"{d}={v}"


def _reduce_stats(data: np.ndarray, dims: list[str]) -> tuple[np.ndarray, np.ndarray, list[str],
                                                              list[str]]:
    reduced = [d for d in STAT_DIMS if d in dims and data.shape[dims.index(d)] > 1]
    single = [d for d in STAT_DIMS if d in dims and data.shape[dims.index(d)] == 1]
    axes = tuple(dims.index(d) for d in reduced + single)
    if not axes:
        return data, np.zeros_like(data), dims, []
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(data, axis=axes)
        std = np.nanstd(data, axis=axes) if reduced else np.zeros_like(mean)
    return mean, std, [d for d in dims if d not in reduced + single], reduced


def layout(table: Table, *, max_lines: int = MAX_LINES) -> dict[str, object]:
    """How ``plot_table`` draws ``table``: ``x`` (dimension on the x axis), ``rows`` (the
    dimension of the panel rows), ``cols`` (dimensions of the panel columns), ``lines``
    (dimensions drawn as lines), ``reduced`` (mean +-1 sigma), ``panels`` (their number)."""
    dims = list(table.dims)
    shape = dict(zip(dims, table.shape, strict=True))
    reduced = [d for d in STAT_DIMS if d in dims and shape[d] > 1]
    dims = [d for d in dims if d not in STAT_DIMS]
    coords = {d: np.asarray(table.coords[d]) for d in dims}
    numeric = [d for d in dims if coords[d].dtype.kind in "iuf" and coords[d].size > 1]
    corner_dims = [d for d in (DIM_PROCESS, DIM_VDD_V, DIM_TEMP_C) if d in dims]
    cand = [d for d in numeric if d not in corner_dims]
    x_dim = max(cand, key=lambda d: coords[d].size) if cand else (numeric[0] if numeric else None)
    if x_dim is None:
        x_dim = next((d for d in dims if coords[d].size > 1 and d not in corner_dims), None)
    if x_dim is None and DIM_PROCESS in dims and coords[DIM_PROCESS].size > 1:
        x_dim = DIM_PROCESS  # only corners: the corners on x
    rows_d = DIM_PROCESS if DIM_PROCESS in dims and x_dim != DIM_PROCESS else None
    col_dims = [d for d in (DIM_VDD_V, DIM_TEMP_C) if d in dims and d != x_dim]
    line_dims = [d for d in dims if d not in (x_dim, rows_d, *col_dims)]
    # too many lines: move line dimensions into the columns until they fit
    while line_dims and math.prod(coords[d].size for d in line_dims) > max_lines:
        col_dims.append(line_dims.pop(0))
    panels = (coords[rows_d].size if rows_d else 1) * math.prod(coords[d].size
                                                                 for d in col_dims)
    return {"x": x_dim, "rows": rows_d, "cols": col_dims, "lines": line_dims,
            "reduced": reduced, "panels": panels}


def plot_table(table: Table, path: str | Path, *, max_lines: int = MAX_LINES) -> Path:
    """Write a PNG of one table (see the module docstring) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.asarray(table.data)
    if data.dtype.kind not in "biufc":
        raise ConfigError(f"table {table.name!r} holds no numbers to plot")
    data = (np.abs(data) if np.iscomplexobj(data) else data).astype(float)
    mean, std, dims, reduced = _reduce_stats(data, list(table.dims))
    coords = {d: np.asarray(table.coords[d]) for d in dims}
    cu = {d: table.coord_units.get(d, "") for d in dims}
    lay = layout(table, max_lines=max_lines)
    x_dim, rows_d = lay["x"], lay["rows"]
    col_dims, line_dims = list(lay["cols"]), list(lay["lines"])  # type: ignore[call-overload]
    order = [d for d in (rows_d, *col_dims, *line_dims, x_dim) if d is not None]
    extra = [d for d in dims if d not in order]  # length-1 leftovers
    order = extra + order
    perm = [dims.index(d) for d in order]
    mean, std = np.transpose(mean, perm), np.transpose(std, perm)
    mean = mean.reshape(mean.shape[len(extra):]) if extra else mean
    std = std.reshape(std.shape[len(extra):]) if extra else std
    if x_dim is None:
        mean, std = mean[..., None], std[..., None]
    n_rows = coords[rows_d].size if rows_d else 1
    col_combos = list(itertools.product(*[range(coords[d].size) for d in col_dims]))
    line_combos = list(itertools.product(*[range(coords[d].size) for d in line_dims]))
    yf, yu = si_scale(mean, table.units)
    if x_dim is not None:
        x = coords[x_dim]
        x_is_num = x.dtype.kind in "iuf"
        xf, xu = si_scale(x, cu[x_dim]) if x_is_num else (1.0, "")
        x_plot = x * xf if x_is_num else np.arange(x.size)
    else:
        x, x_is_num, xf, xu, x_plot = np.array([0]), False, 1.0, "", np.array([0])
    n_cols = len(col_combos)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(min(3.2 * n_cols + 2.6, 40),
                                                      min(2.6 * n_rows + 1.2, 40)),
                             sharex=True, sharey=True, squeeze=False)
    colors = plt.get_cmap("tab10").colors
    handles: dict[str, object] = {}
    for r in range(n_rows):
        for ci, cc in enumerate(col_combos):
            ax = axes[r][ci]
            base = ((r,) if rows_d else ()) + tuple(cc)
            for li, lc in enumerate(line_combos):
                idx = base + tuple(lc)
                y, s = mean[idx] * yf, std[idx] * yf
                label = ", ".join(_fmt(d, coords[d][i], cu[d])
                                  for d, i in zip(line_dims, lc, strict=True)) or table.name
                (h,) = ax.plot(x_plot, y, "o-", ms=2.5, lw=1.2, color=colors[li % 10])
                if reduced:
                    ax.fill_between(x_plot, y - s, y + s, color=colors[li % 10], alpha=0.2,
                                    lw=0)
                handles.setdefault(label, h)
            parts = ([f"{coords[rows_d][r]}"] if rows_d else []) + [
                _fmt(d, coords[d][i], cu[d]) for d, i in zip(col_dims, cc, strict=True)]
            ax.set_title(", ".join(parts), fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            if x_dim is not None and not x_is_num:
                ax.set_xticks(x_plot, [str(v) for v in x], rotation=30, fontsize=8)
    if x_dim is not None and x_is_num and x.dtype.kind == "f" and x_plot.size > 2 \
            and np.all(x_plot > 0) and x_plot.max() / x_plot.min() >= 100:
        axes[0][0].set_xscale("log")
    xlabel = f"{x_dim} ({xu})" if x_dim and xu else (x_dim or "")
    ylabel = f"{posixpath_base(table.name)} ({yu})" if yu else posixpath_base(table.name)
    fig.supxlabel(xlabel, fontsize=10)
    fig.supylabel(ylabel, fontsize=10)
    title = table.name
    if reduced:
        title += f": mean over {', '.join(reduced)}, band ±1σ"
    fig.suptitle(title, fontsize=11)
    if len(handles) > 1 or line_dims:
        fig.legend(list(handles.values()), list(handles.keys()), loc="center left",
                   bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def posixpath_base(name: str) -> str:
    """The last component of a table name (``crossbar/read_noise`` -> ``read_noise``)."""
    return name.rsplit("/", 1)[-1]


def plot_lookup(tables: dict[str, Table], out_dir: str | Path, *, max_lines: int = MAX_LINES
                ) -> list[Path]:
    """One PNG per numeric table into ``out_dir`` (named after the table); returns the paths."""
    out_dir = Path(out_dir)
    return [plot_table(t, out_dir / f"{_safe(name)}.png", max_lines=max_lines)
            for name, t in sorted(tables.items()) if t.data.dtype.kind in "biufc"]
