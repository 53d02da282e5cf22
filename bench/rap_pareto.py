"""Accuracy against energy per inference (RAP sparse vs dense, per corner; top: ADC energy,
bottom: ADC + crossbar read, ``nnsim.energy``) from the ``bench/rap_fair.py`` JSONs; the
Pareto front of each corner and row marked; trimmed-ADC points hollow. Writes
docs/rap_pareto.png.

Usage::

    .venv/bin/python bench/rap_pareto.py bench/results/rap_fair_tt.json \\
        bench/results/rap_fair_ss.json bench/results/rap_fair_ff.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from nnsim.rap.evaluate import pareto_front

ENERGIES = (("adc_energy_j_per_inference", "ADC energy per inference (µJ)"),
            ("total_j", "ADC + crossbar read energy per inference (µJ)"))


def main() -> None:
    pts: dict[str, list[dict]] = {}
    for f in sys.argv[1:]:
        d = json.loads(Path(f).read_text())
        for p in d["points"]:
            c = p["corner"]["process"]
            trim = p.get("adc_trim") or (p.get("rap_config") or {}).get("adc_trim") or "none"
            for m in (p["rap"], p["dense"]):
                ev = m.get("energy_per_inference") or {}
                pts.setdefault(c, []).append(dict(
                    mode=m["mode"], bits=m["adc_bits"], accuracy_mean=m["accuracy_mean"],
                    trim=trim, adc_energy_j_per_inference=m["adc_energy_j_per_inference"],
                    total_j=ev.get("total_j") or m["adc_energy_j_per_inference"],
                    complete=ev.get("complete", False), n=m["n_images"], chips=m["chips"]))
    fig, axes = plt.subplots(2, len(pts), figsize=(4 * len(pts), 6.6), sharey=True,
                             squeeze=False)
    for row, (key, xlabel) in enumerate(ENERGIES):
        for ax, (c, ps) in zip(axes[row], sorted(pts.items()), strict=True):
            front = pareto_front(ps, x=key)
            for p, on in zip(ps, front, strict=True):
                mk = "o" if p["mode"] == "sparse" else "s"
                col = "tab:blue" if p["mode"] == "sparse" else "tab:orange"
                fill = col if p["trim"] == "none" else "white"
                ax.scatter(p[key] * 1e6, 100 * p["accuracy_mean"], marker=mk, color=fill,
                           edgecolor="k" if on else col, linewidths=1.5 if on else 1.0, s=60)
                lab = f"{p['bits']}b" + ("" if p["trim"] == "none" else f" {p['trim'][:3]}")
                ax.annotate(lab, (p[key] * 1e6, 100 * p["accuracy_mean"]), fontsize=7,
                            xytext=(4, -10), textcoords="offset points")
            ax.set_title(f"{c} ({ps[0]['n']} images x {ps[0]['chips']} chips)", fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_xscale("log")
        axes[row][0].set_ylabel("accuracy (%)")
    axes[0][0].scatter([], [], marker="o", color="tab:blue", label="RAP sparse")
    axes[0][0].scatter([], [], marker="s", color="tab:orange", label="dense (calibrated range)")
    axes[0][0].scatter([], [], marker="o", color="white", edgecolor="gray",
                       label="ADC trimmed (pedestal / offset)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("programmed cells, circuit ADC (trim none unless marked); black edge: Pareto "
                 "front; attention products digital", fontsize=9)
    fig.tight_layout()
    out = Path(__file__).parent.parent / "docs" / "rap_pareto.png"
    fig.savefig(out, dpi=110)
    print(out)

if __name__ == "__main__":
    main()
