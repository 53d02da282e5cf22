"""``spicebridge compare RUN.json... --x bits --hue process [--out fig.png]``.

Reads the JSON of several ``evaluate`` runs (docs/experiments.md), prints one table row per
evaluated point (analog points and RAP results) and plots accuracy with its 95 % interval
against ``--x``, one line per ``--hue`` value and method, with a second panel for the ADC
energy per inference where the runs record it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

#: Keys of a point's ``setting`` that --x and --hue may name (and "method", "run").
KEYS = ("process", "vdd_v", "temp_c", "bits", "gamma", "clipformer", "protocol", "method",
        "run")
_UNITS = {"vdd_v": "V", "temp_c": "°C"}
_AXIS = {"bits": "column ADC resolution (bits)", "gamma": "gamma (K/V write noise x k)",
         "vdd_v": "supply vdd (V)", "temp_c": "temperature (°C)", "process": "process corner"}


class CompareError(ValueError):
    """A run file that cannot be compared (missing, not an evaluate run); exit 2."""

    exit_code = 2


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``compare`` to the command line."""
    from .common import add_output_options

    p = sub.add_parser(
        "compare", help="compare evaluate runs: a table and a figure of accuracy (95 %% CI) "
        "and ADC energy",
        description="Read the JSON of evaluate runs (evaluate --json RUN.json), print one row "
        "per evaluated point (analog points and RAP results) and plot accuracy with its 95 % "
        "interval against --x, one line per --hue value and method; a second panel shows "
        "the ADC energy per inference where the runs record it.")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN.json", help="evaluate outputs")
    p.add_argument("--x", default="bits", choices=KEYS, help="the x axis")
    p.add_argument("--hue", default="process", choices=KEYS,
                   help="one line per value of this key (and per method)")
    p.add_argument("--out", type=Path, default=None, metavar="FIG.png",
                   help="write the figure here (no figure without it)")
    add_output_options(p)
    p.set_defaults(func=run)


def _label(v: Any) -> str:
    if v is None:
        return "off"
    if isinstance(v, list):
        return "(" + ", ".join(f"{x:g}" for x in v) + ")"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def load_rows(paths: list[Path]) -> list[dict[str, Any]]:
    """One row per evaluated point of each run: setting keys, method, run, accuracy and its
    interval, ADC energy per inference, n_images, chip_seeds.

    Raises:
        CompareError: A file is missing, not JSON, or holds no evaluate points.
    """
    rows: list[dict[str, Any]] = []
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise CompareError(f"{path}: cannot read: {e.strerror or e}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CompareError(f"{path}: not a JSON file: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("points"), list):
            raise CompareError(f"{path}: not an evaluate run (no 'points' list); make one "
                               "with spicebridge evaluate ... --json RUN.json")
        run_name = Path(path).stem
        for i, p in enumerate(doc["points"]):
            if not isinstance(p, dict) or "accuracy_mean" not in p:
                raise CompareError(f"{path}: points[{i}] has no accuracy_mean")
            s = dict(p.get("setting") or {})
            rows.append({**{k: s.get(k) for k in KEYS}, "method": s.get("method") or
                         p.get("method", "analog"), "run": run_name,
                         "accuracy": p["accuracy_mean"], "ci": p.get("accuracy_ci95"),
                         "energy_j": p.get("adc_energy_j_per_inference"),
                         "digital": p.get("digital_accuracy"), "n_images": p.get("n_images"),
                         "chip_seeds": p.get("chip_seeds"), **_timing(p.get("timing")),
                         "file": str(path)})
        for i, r in enumerate(doc.get("rap") or []):
            mvm = r.get("rap") if isinstance(r, dict) else None
            if not isinstance(mvm, dict) or "accuracy_mean" not in mvm:
                raise CompareError(f"{path}: rap[{i}] has no rap.accuracy_mean")
            corner = r.get("corner") or {}
            rows.append({**{k: corner.get(k) for k in KEYS}, "bits": r.get("bits"),
                         "method": "rap", "run": run_name, "accuracy": mvm["accuracy_mean"],
                         "ci": mvm.get("accuracy_ci95"),
                         "energy_j": mvm.get("adc_energy_j_per_inference"),
                         "digital": r.get("fp32_accuracy"), "n_images": mvm.get("n_images"),
                         "chip_seeds": mvm.get("chip_seeds"), **_timing(r.get("timing")),
                         "file": str(path)})
    if not rows:
        raise CompareError("no evaluated points in " + ", ".join(map(str, paths)))
    return rows


def _timing(t: Any) -> dict[str, Any]:
    """A point's own cost (its ``timing``): seconds per simulated chip and of the digital
    forward over the same images (None where the run did not record them)."""
    t = t if isinstance(t, dict) else {}
    return {"per_chip_s": t.get("per_chip_s"), "digital_s": t.get("digital_s")}


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, int | float) else (1, _label(v))


def paired(rows: list[dict[str, Any]]) -> bool:
    """True when every row was scored on the same number of images and the same chips."""
    return len({(r["n_images"], tuple(r["chip_seeds"] or ())) for r in rows}) <= 1


def plot(rows: list[dict[str, Any]], x: str, hue: str, out: Path) -> Path:
    """Accuracy (95 % CI error bars) against ``x``, a line per (``hue``, method); ADC energy
    per inference in a second panel where present. Returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from characterization.sweep.plot import si_scale

    xs = sorted({r[x] for r in rows}, key=_sort_key)
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in xs)
    pos = {v: (float(v) if numeric else i) for i, v in enumerate(xs)}
    # line style: the run and the method, where they vary (colour: the hue)
    multi_run = len({r["run"] for r in rows}) > 1 and "run" not in (x, hue)
    multi_m = len({r["method"] for r in rows}) > 1 and "method" not in (x, hue)

    def style_of(r: dict[str, Any]) -> str:
        return ", ".join(([r["run"]] if multi_run else []) + ([r["method"]] if multi_m
                                                                 else []))

    methods = sorted({style_of(r) for r in rows})
    groups: dict[tuple[Any, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r[hue], style_of(r)), []).append(r)
    has_energy = any(r["energy_j"] is not None for r in rows)
    fig, axes = plt.subplots(1, 2 if has_energy else 1, figsize=(10.5 if has_energy else 6.4,
                                                                 4.2), squeeze=False)
    ax = axes[0][0]
    colors = plt.get_cmap("tab10").colors
    hues = sorted({k[0] for k in groups}, key=_sort_key)
    markers = "osD^v<>P*X"
    n_g = max(1, len(groups))
    width = (min(np.diff(sorted(pos.values()))) if len(pos) > 1 else 1.0) * 0.25
    lo_all, hi_all = [], []
    for gi, ((h, m), rs) in enumerate(sorted(groups.items(), key=lambda kv: (
            _sort_key(kv[0][0]), kv[0][1]))):
        rs = sorted(rs, key=lambda r: _sort_key(r[x]))
        dx = (gi - (n_g - 1) / 2) * width / max(1, n_g - 1) if n_g > 1 else 0.0
        px = np.array([pos[r[x]] + dx for r in rs])
        y = np.array([100 * r["accuracy"] for r in rs])
        lo = np.array([100 * r["ci"][0] if r["ci"] and r["ci"][0] is not None else np.nan
                       for r in rs])
        hi = np.array([100 * r["ci"][1] if r["ci"] and r["ci"][1] is not None else np.nan
                       for r in rs])
        err = np.vstack([np.where(np.isnan(lo), 0, y - lo), np.where(np.isnan(hi), 0, hi - y)])
        label = f"{hue}={_label(h)}" + (f", {m}" if m else "")
        color = colors[hues.index(h) % 10]
        ax.errorbar(px, y, yerr=err, fmt=markers[methods.index(m) % len(markers)],
                    color=color, ms=5, lw=1.3, capsize=3,
                    ls="-" if methods.index(m) == 0 else "--", label=label)
        lo_all += list(np.where(np.isnan(lo), y, lo))
        hi_all += list(np.where(np.isnan(hi), y, hi))
        if has_energy:
            e = np.array([r["energy_j"] if r["energy_j"] is not None else np.nan for r in rs])
            axes[0][1].plot(px, e, markers[methods.index(m) % len(markers)],
                            color=color, ms=5, lw=1.3,
                            ls="-" if methods.index(m) == 0 else "--")
    digital = sorted({round(100 * r["digital"], 6) for r in rows if r["digital"] is not None})
    if len(digital) == 1:
        ax.axhline(digital[0], color="0.4", lw=1, ls=":", label=f"digital {digital[0]:.1f} %")
        lo_all.append(digital[0])
        hi_all.append(digital[0])
    span = max(hi_all) - min(lo_all)
    pad = max(0.5, 0.08 * span)
    ax.set_ylim(max(0.0, min(lo_all) - pad), min(100.0, max(hi_all) + pad))
    xl = _AXIS.get(x, f"{x} ({_UNITS[x]})" if x in _UNITS else x)
    for a in axes[0]:
        a.set_xlabel(xl)
        a.grid(alpha=0.3)
        if not numeric:
            a.set_xticks(list(pos.values()), [_label(v) for v in xs])
        elif x == "bits":
            a.set_xticks([pos[v] for v in xs], [_label(v) for v in xs])
    ax.set_ylabel("top-1 accuracy (%), 95 % CI")
    n_img = sorted({r["n_images"] for r in rows if r["n_images"]})
    chips = sorted({len(r["chip_seeds"] or ()) for r in rows})
    ax.set_title(f"accuracy ({'/'.join(map(str, n_img))} images x "
                 f"{'/'.join(map(str, chips))} chips"
                 f"{'' if paired(rows) else ', NOT paired'})", fontsize=10)
    if has_energy:
        ea = axes[0][1]
        ev = np.array([r["energy_j"] for r in rows if r["energy_j"] is not None], float)
        f, u = si_scale(ev, "J")
        if ev.size and ev.max() / max(ev.min(), 1e-300) > 8:
            ea.set_yscale("log")
            ea.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ea.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ea.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _p: f"{v * f:g}"))
        ea.set_ylabel(f"ADC energy per inference ({u})")
        ea.set_title("ADC energy per inference", fontsize=10)
    fig.legend(*ax.get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5),
               fontsize=9, frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return out


def _table(rows: list[dict[str, Any]], x: str, hue: str) -> None:
    from characterization.sweep.plot import si_scale

    ev = [r["energy_j"] for r in rows if r["energy_j"] is not None]
    f, u = si_scale(ev, "J") if ev else (1.0, "J")
    head = f"{'run':<16} {'method':<8} {x:>9} {hue:>9} {'accuracy %':>10} {'95 % CI':>15}"
    print(head + (f" {'ADC energy (' + u + ')':>18}" if ev else "")
          + f" {'s/chip':>9} {'digital s':>9}")
    for r in sorted(rows, key=lambda r: (r["run"], r["method"], _sort_key(r[hue]),
                                         _sort_key(r[x]))):
        ci = r["ci"] or [None, None]
        cis = (f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if None not in ci else "")
        line = (f"{r['run'][:16]:<16} {r['method']:<8} {_label(r[x]):>9} {_label(r[hue]):>9} "
                f"{100 * r['accuracy']:>10.2f} {cis:>15}")
        if ev:
            line += f" {r['energy_j'] * f:>18.4g}" if r["energy_j"] is not None else \
                f" {'':>18}"
        for k in ("per_chip_s", "digital_s"):  # the point's own cost
            line += f" {r[k]:>9.3g}" if isinstance(r.get(k), int | float) else f" {'-':>9}"
        print(line)
    if not paired(rows):
        print("note: the rows were scored on different images or chips; they are not paired")


def run(args: argparse.Namespace) -> int:
    """Print the table, write the figure; exit 2 on a file that is not an evaluate run."""
    from .common import emit

    rows = load_rows(args.runs)
    for key in (args.x, args.hue):
        if all(r[key] is None for r in rows) and key not in ("method", "run"):
            raise CompareError(f"no run records {key!r}; the points have "
                               f"{sorted(k for k in KEYS if any(r[k] is not None for r in rows))}")
    fig = plot(rows, args.x, args.hue, args.out) if args.out else None
    if not paired(rows):
        print("spicebridge compare: the runs were scored on different images or chips "
              "(not paired)", file=sys.stderr)
    result = {"x": args.x, "hue": args.hue, "figure": str(fig) if fig else None,
              "paired": paired(rows),
              "rows": [{k: v for k, v in r.items() if k != "chip_seeds"} for r in rows]}

    def human() -> None:
        _table(rows, args.x, args.hue)
        if fig:
            print(f"wrote {fig}")

    emit(args, result, human)
    return 0 if all(math.isfinite(r["accuracy"]) for r in rows) else 1
