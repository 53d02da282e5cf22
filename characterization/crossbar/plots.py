"""PNG plots of a crossbar characterization (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from characterization.lookup import Table

from .netlist import MODES


def _label(t: Table, idx: tuple[int, int, int]) -> str:
    p, v, c = (t.coords[d][i] for d, i in zip(("process", "vdd_v", "temp_c"), idx, strict=True))
    return f"{p} {float(v):.2f}V {float(c):g}C"


def _nominal(t: Table, plan: Any) -> tuple[int, int, int]:
    """Index of the corner nearest tt, the plan's nominal supply, 27 C."""
    procs = [str(p) for p in t.coords["process"]]
    ip = procs.index("tt") if "tt" in procs else 0
    iv = int(np.argmin(np.abs(np.asarray(t.coords["vdd_v"], float) - plan.vdd_nom_v)))
    it = int(np.argmin(np.abs(np.asarray(t.coords["temp_c"], float) - 27.0)))
    return ip, iv, it


def _legend(ax: Any, n: int) -> None:
    """A legend for up to 12 corners; beyond that a note (a 45-entry legend hides the axes)."""
    if n <= 12:
        ax.legend(fontsize=6)
    else:
        ax.text(0.01, 0.99, f"{n} corners (legend omitted; values in the table)",
                transform=ax.transAxes, fontsize=7, va="top")


def _hz(f: float) -> str:
    for scale, unit in ((1e9, "GHz"), (1e6, "MHz"), (1e3, "kHz")):
        if f >= scale:
            return f"{f / scale:g} {unit}"
    return f"{f:g} Hz"


def make_plots(tables: list[Table], outdir: Path, plan: Any,
               raw: dict[str, Table] | None = None) -> list[Path]:
    """Transfer curves, read noise, programmed-conductance distributions, sensing margin.

    Args:
        tables: The contract tables (``build_tables``).
        outdir: Folder for the PNGs (created).
        plan: The ``CrossbarRun``.
        raw: The column sweep's raw tables (``xfer_rel``, ``xfer_ratio`` per pattern); with
            them the transfer figure shows a histogram of the per-pattern error per corner,
            without them the binned mean error per corner.

    Returns:
        The PNG paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir.mkdir(parents=True, exist_ok=True)
    t = {x.name.split("/")[-1]: x for x in tables}
    made = []
    shape = t["read_transfer"].data.shape[:3]
    corners = list(np.ndindex(*shape))

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    xt = t["read_transfer"]
    x = xt.coords["i_ideal_rel"]
    for idx in corners:
        m, s = xt.data[idx][:, 0], xt.data[idx][:, 1]
        ax[0].errorbar(x, m, yerr=s, capsize=2, label=_label(xt, idx))
    ax[0].set(xlabel="ideal current / full scale", ylabel="sensed / ideal (mean +- std)",
              title=f"read transfer ({plan.column.rows} rows)")
    _legend(ax[0], len(corners))
    if raw is not None and "xfer_ratio" in raw and "xfer_rel" in raw:
        err = (raw["xfer_ratio"].data - 1.0) * 100  # (p, v, t, mc, pattern)
        rel = raw["xfer_rel"].data
        keep = np.isfinite(err) & (rel >= 0.05)
        lo, hi = (np.percentile(err[keep], [0.5, 99.5]) if keep.any() else (-1.0, 1.0))
        pad = 0.05 * max(hi - lo, 1e-3)
        edges = np.linspace(lo - pad, hi + pad, 41)
        for idx in corners:
            e = err[idx][keep[idx]]
            out = int(np.sum((e < edges[0]) | (e > edges[-1])))
            ax[1].hist(np.clip(e, edges[0], edges[-1]), bins=edges, histtype="step", lw=1.4,
                       label=f"{_label(xt, idx)} (n={e.size}"
                       + (f", {out} clipped)" if out else ")"))
        ax[1].axvline(0.0, color="gray", lw=0.5)
        ax[1].set(xlabel="error of sensed current vs ideal (%)", ylabel="patterns",
                  title="error histogram per corner (patterns >= 5 % of full scale)")
    else:
        for idx in corners:
            ax[1].plot(x, (xt.data[idx][:, 0] - 1) * 100, "o-", label=_label(xt, idx))
        ax[1].axhline(0.0, color="gray", lw=0.5)
        ax[1].set(xlabel="ideal current / full scale", ylabel="mean error (%)",
                  title="systematic error per corner")
    _legend(ax[1], len(corners))
    fig.tight_layout()
    made.append(outdir / "crossbar_read_transfer.png")
    fig.savefig(made[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    rn = t["read_noise"]
    for idx in corners:
        ax.plot(rn.coords["i_col_a"] * 1e6, rn.data[idx] * 1e9, "o-", label=_label(rn, idx))
    ax.set(xlabel="column current (uA)", ylabel="read-noise sigma (nA)",
           title=f"read-noise sigma over {_hz(plan.column.f_noise_lo_hz)} to "
           f"{_hz(plan.column.f_sense_hz)}")
    _legend(ax, len(corners))
    fig.tight_layout()
    made.append(outdir / "crossbar_read_noise.png")
    fig.savefig(made[-1], dpi=110)
    plt.close(fig)

    ws, wf = t["write_noise_samples"], t["write_noise_fit"]
    g_min, g_max = ws.attrs["g_min_s"], ws.attrs["g_max_s"]
    targets = np.asarray(ws.attrs["level_g_s"])
    idx0 = _nominal(ws, plan)
    fig, ax = plt.subplots(1, len(MODES), figsize=(11, 4), sharey=True)
    bins = np.linspace(0, g_max * 1.3e6, 66)
    width = bins[1] - bins[0]
    for m, mode in enumerate(MODES):
        k = wf.data[idx0][m, 0]
        for lvl, g in enumerate(targets):
            s = ws.data[idx0][m, lvl]
            s = s[np.isfinite(s)] * 1e6
            if s.size:
                ax[m].hist(s, bins=bins, alpha=0.6, label=f"level {lvl}")
            sd = k * np.sqrt(max(g - g_min, 0) * (g_max - g_min)) * 1e6
            if sd > 0 and s.size:
                xs = np.linspace(g * 1e6 - 4 * sd, g * 1e6 + 4 * sd, 100)
                pdf = np.exp(-0.5 * ((xs - g * 1e6) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
                ax[m].plot(xs, pdf * s.size * width, "k--", lw=1)
            ax[m].axvline(g * 1e6, color="gray", lw=0.5)
        ax[m].set(xlabel="programmed G (uS)",
                  title=f"{mode}: k={k:.3f} ({_label(ws, idx0)}); dashed: fitted form")
    ax[0].set_ylabel("cells")
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    made.append(outdir / "crossbar_write_noise.png")
    fig.savefig(made[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    sm = t["sensing_margin"]
    labels = [_label(sm, i) for i in corners]
    pos = np.arange(len(corners))
    ax[0].bar(pos - 0.2, [sm.data[i][0] * 1e9 for i in corners], 0.4, label="margin")
    ax[0].bar(pos + 0.2, [sm.data[i][1] * 1e9 for i in corners], 0.4, label="sigma")
    ax[0].set(ylabel="nA", title="sensing margin vs spread")
    top = np.nanmax([sm.data[i][:2] for i in corners]) * 1e9 if corners else 1.0
    if np.isfinite(top) and top > 0:
        ax[0].set_ylim(0, top * 1.25)
    ax[0].legend(loc="upper center", ncol=2)
    ax[1].bar(pos, [sm.data[i][2] for i in corners])
    ax[1].set(ylabel="margin / sigma", title="sigmas between adjacent levels")
    for a in ax:
        a.set_xticks(pos, labels, rotation=60, fontsize=7)
    kf = [wf.data[i][:, 0] for i in corners]
    fig.suptitle("k single/verify per corner: " + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in kf),
                 fontsize=8)
    fig.tight_layout()
    made.append(outdir / "crossbar_sensing_margin.png")
    fig.savefig(made[-1], dpi=110)
    plt.close(fig)
    return made
