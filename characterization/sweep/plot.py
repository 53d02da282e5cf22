"""Quick-look plots of sweep results (``spicebridge inspect FILE.h5 --plot DIR``).

One PNG per dataset: the value against the first numeric dimension with more than one value
(the x axis), one line per combination of the other dimensions (at most ``max_lines``; the rest
are named in the title as left out), the Monte-Carlo mean with a +-1 sigma band when the
dataset has an ``mc`` dimension with more than one repetition.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np

from ..lookup import Table


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dataset"


def plot_table(table: Table, path: str | Path, *, max_lines: int = 8) -> Path:
    """Write a PNG of one table (see the module docstring) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.asarray(table.data)
    dims = list(table.dims)
    if np.iscomplexobj(data):
        data = np.abs(data)
    data = data.astype(float)
    has_mc = "mc" in dims and data.shape[dims.index("mc")] > 1
    if "mc" in dims:
        ax_mc = dims.index("mc")
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(data, axis=ax_mc)
                std = np.nanstd(data, axis=ax_mc) if has_mc else np.zeros_like(mean)
        dims.pop(ax_mc)
    else:
        mean, std = data, np.zeros_like(data)
    coords = {d: np.asarray(table.coords[d]) for d in dims}
    x_dim = next((d for d in dims if coords[d].dtype.kind in "iuf" and coords[d].size > 1),
                 None)
    if x_dim is None:  # nothing numeric to put on x: one point per combination
        x_dim = next((d for d in dims if coords[d].size > 1), None)
    others = [d for d in dims if d != x_dim]
    if x_dim is not None:
        order = [dims.index(x_dim)] + [dims.index(d) for d in others]
        mean, std = np.transpose(mean, order), np.transpose(std, order)
        x = coords[x_dim]
        x_num = x if x.dtype.kind in "iuf" else np.arange(x.size)
    else:
        mean, std = mean.reshape(1, -1), std.reshape(1, -1)
        x, x_num = np.array([0]), np.array([0])
    combos = list(itertools.product(*[range(coords[d].size) for d in others]))
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for combo in combos[:max_lines]:
        idx = (slice(None), *combo)
        y, s = mean[idx].reshape(-1), std[idx].reshape(-1)
        label = ", ".join(f"{d}={coords[d][i]}" if coords[d].dtype.kind not in "f"
                          else f"{d}={coords[d][i]:g}" for d, i in zip(others, combo,
                                                                        strict=True))
        (line,) = ax.plot(x_num, y, "o-", ms=3, label=label or None)
        if has_mc:
            ax.fill_between(x_num, y - s, y + s, color=line.get_color(), alpha=0.2, lw=0)
    if x_dim is not None and x.dtype.kind not in "iuf":
        ax.set_xticks(x_num, [str(v) for v in x])
    xu = table.coord_units.get(x_dim, "") if x_dim else ""
    ax.set_xlabel(f"{x_dim} ({xu})" if x_dim and xu and xu != "1" else (x_dim or ""))
    ax.set_ylabel(f"{table.name} ({table.units})" if table.units and table.units != "1"
                  else table.name)
    title = table.name + (" - mean over mc, band +-1 sigma" if has_mc else "")
    if len(combos) > max_lines:
        title += f"\n(first {max_lines} of {len(combos)} lines; the rest left out)"
    ax.set_title(title, fontsize=10)
    if x_dim and x_num.size > 2 and np.all(x_num > 0) and x_num.max() / x_num.min() >= 100:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    if others:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_lookup(tables: dict[str, Table], out_dir: str | Path, *, max_lines: int = 8
                ) -> list[Path]:
    """One PNG per table into ``out_dir`` (named after the table); returns the paths."""
    out_dir = Path(out_dir)
    return [plot_table(t, out_dir / f"{_safe(name)}.png", max_lines=max_lines)
            for name, t in sorted(tables.items())]
