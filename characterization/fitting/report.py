"""Fit report: JSON summary, measured-vs-fitted CSV per curve, and a PNG overlay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spicebridge.fileio import atomic_path, atomic_write_text

from .spice_fit import FitResult


def write_fit_report(result: FitResult, directory: str | Path, *,
                     title: str = "fit") -> dict[str, Path]:
    """Write ``fit_report.json``, ``fit_<curve>.csv`` and ``fit_overlay.png`` into ``directory``.

    Returns:
        What was written, by kind (``json``, ``png``, ``csv_<curve>``).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    p = d / "fit_report.json"
    atomic_write_text(p, json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
    out["json"] = p
    for c in result.curves:
        cv = c.curve
        rows = ["x,plot_x,y_measured,y_fitted,y_start,fitted,segment"]
        px = cv.plot_x if cv.plot_x is not None else cv.x
        mask = cv.mask if cv.mask is not None else np.ones(cv.x.size, bool)
        seg = cv.segments if cv.segments is not None else np.full(cv.x.size, "")
        for k in range(cv.x.size):
            rows.append(f"{cv.x[k]:.12g},{px[k]:.9g},{cv.y[k]:.9g},{c.y_fit[k]:.9g},"
                        f"{c.y_start[k]:.9g},{int(mask[k])},{seg[k]}")
        p = d / f"fit_{c.name}.csv"
        atomic_write_text(p, "\n".join(rows) + "\n")
        out[f"csv_{c.name}"] = p
    out["png"] = plot_fit(result, d / "fit_overlay.png", title=title)
    return out


def plot_fit(result: FitResult, path: str | Path, *, title: str = "fit") -> Path:
    """Measured (dots) against fitted (line) and start (dashed) curves, with residuals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []  # (curve fit, abscissa, label)
    for c in result.curves:
        cv = c.curve
        if cv.plot_x is not None:
            panels.append((c, cv.plot_x, cv.x_label))
            panels.append((c, cv.x, "time (s)" if cv.x_vector == "time" else cv.x_vector or "x"))
        else:
            panels.append((c, cv.x, cv.x_label))
    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(5.5 * n, 6.5), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]})
    for k, (c, px, xlabel) in enumerate(panels):
        cv = c.curve
        ax, axr = axes[0, k], axes[1, k]
        tr = (lambda y: np.abs(y)) if cv.log_y else (lambda y: y)
        ax.plot(px, tr(cv.y), ".", ms=3, color="k", label="measured")
        ax.plot(px, tr(c.y_start), "--", lw=1, color="0.6", label="start")
        ax.plot(px, tr(c.y_fit), "-", lw=1.2, color="C3", label="fitted")
        if cv.log_y:
            ax.set_yscale("log")
        ylab = f"|y| ({cv.y_units})" if cv.log_y else f"y ({cv.y_units})"
        ax.set_ylabel(ylab)
        noise_w = result.provenance.get("residual_scale") == "noise" and cv.sigma is not None
        ax.set_title(f"{cv.name}: rms {c.rms:.3g} {cv.y_units}, "
                     f"{'rms/noise' if noise_w else 'rel. rms'} {c.rms_scaled:.3g}", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        resid = (c.y_fit - cv.y) / c.sigma
        axr.plot(px, resid, ".", ms=2, color="C3")
        if cv.mask is not None:
            axr.plot(px[~cv.mask], resid[~cv.mask], "x", ms=3, color="0.6", label="not fitted")
            axr.legend(fontsize=7)
        axr.axhline(0, color="k", lw=0.6)
        axr.set_xlabel(xlabel)
        axr.set_ylabel("(fit - meas) / noise" if noise_w else "(fit - meas) / sigma"
                       if result.provenance.get("scale") == "absolute" else "relative residual")
        axr.grid(alpha=0.3)
    lines = []
    for p in result.parameters:
        v = result.values[p.name]
        lines.append(f"{p.name} = {v:.5g} [{result.ci_low[p.name]:.5g}, "
                     f"{result.ci_high[p.name]:.5g}] {p.units}")
    v = result.verdict
    if v is not None:  # the judgement, not the optimizer's status
        status = ("adequate" if v["adequate"] else "NOT ADEQUATE: " + "; ".join(
            r.split(" -- ")[0] for r in v["reasons"]))
        lines.insert(0, f"residual {v['noise_ratio']:.3g}x the noise (limit "
                     f"{v['max_ratio']:g}x)")
    else:
        status = "converged" if result.converged else "NOT CONVERGED"
    import textwrap

    status_lines = textwrap.wrap(f"{title} ({status}), {result.confidence:.0%} CI", 110)
    lines = status_lines[1:] + lines
    fig.suptitle(status_lines[0] + "\n" + "\n".join(lines), fontsize=9)
    head_in = 0.18 * (len(lines) + 1) + 0.1
    fig.set_size_inches(fig.get_size_inches()[0], 6.5 + head_in)
    fig.tight_layout()
    fig.subplots_adjust(top=1 - (head_in + 0.3) / (6.5 + head_in))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
