"""Accuracy against ADC energy per inference (RAP sparse vs dense, per corner) from the
``bench/rap_fair.py`` JSONs; the Pareto front of each corner marked. Writes docs/rap_pareto.png.

Usage::

    .venv/bin/python bench/rap_pareto.py bench/results/rap_fair_*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from nnsim.rap.evaluate import pareto_front


def main() -> None:
    pts: dict[str, list[dict]] = {}
    for f in sys.argv[1:]:
        d = json.loads(Path(f).read_text())
        for p in d["points"]:
            c = p["corner"]["process"]
            for m in (p["rap"], p["dense"]):
                pts.setdefault(c, []).append(dict(
                    mode=m["mode"], bits=m["adc_bits"], accuracy_mean=m["accuracy_mean"],
                    adc_energy_j_per_inference=m["adc_energy_j_per_inference"],
                    n=m["n_images"], chips=m["chips"]))
    fig, axes = plt.subplots(1, len(pts), figsize=(4 * len(pts), 3.4), sharey=True)
    axes = [axes] if len(pts) == 1 else list(axes)
    for ax, (c, ps) in zip(axes, sorted(pts.items()), strict=True):
        front = pareto_front(ps)
        for p, on in zip(ps, front, strict=True):
            mk = "o" if p["mode"] == "sparse" else "s"
            col = "tab:blue" if p["mode"] == "sparse" else "tab:orange"
            ax.scatter(p["adc_energy_j_per_inference"] * 1e6, 100 * p["accuracy_mean"],
                       marker=mk, color=col, edgecolor="k" if on else "none", s=60)
            ax.annotate(f"{p['bits']}b", (p["adc_energy_j_per_inference"] * 1e6,
                                          100 * p["accuracy_mean"]), fontsize=8,
                        xytext=(4, -10), textcoords="offset points")
        ax.set_title(f"{c} ({ps[0]['n']} images x {ps[0]['chips']} chips)")
        ax.set_xlabel("ADC energy per inference (µJ)")
        ax.set_xscale("log")
    axes[0].set_ylabel("accuracy (%)")
    axes[0].scatter([], [], marker="o", color="tab:blue", label="RAP sparse")
    axes[0].scatter([], [], marker="s", color="tab:orange", label="dense (calibrated range)")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("programmed cells, circuit ADC; black edge: Pareto front; attention digital",
                 fontsize=9)
    fig.tight_layout()
    out = Path(__file__).parent.parent / "docs" / "rap_pareto.png"
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
