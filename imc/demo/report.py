"""``report.md``, ``report.json`` and the accuracy plots of ``spicebridge demo``.

Everything here is read back from the demo's products (lookup files, fit JSON, evaluation
JSON), so the report can be rebuilt from a finished run without re-running anything.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from characterization.lookup.names import (
    ADC_CONVERSION_TIME_S,
    ADC_ENERGY_BREAKDOWN_J,
    ADC_ENERGY_J,
    ADC_ENOB,
    ADC_NOISE_LSB,
    ADC_OFFSET_LSB,
    ADC_SINAD_DB,
    ADC_VALIDATION_FLOOR_LSB,
    ADC_VALIDATION_MAX_LSB,
    ADC_VALIDATION_RMS_LSB,
    CROSSBAR_READ_ENERGY,
    CROSSBAR_READ_TRANSFER,
    CROSSBAR_SENSING_MARGIN,
    CROSSBAR_WRITE_NOISE_FIT,
    CROSSBAR_WRITE_NOISE_LEVELS,
    CROSSBAR_WRITE_VERIFY_FAILURE,
)
from spicebridge.fileio import atomic_path, atomic_write_text

CORNER_ORDER = ("tt", "ss", "ff", "fs", "sf")


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _pct_ci(x: float | None, ci: list[float | None] | None) -> str:
    """``mean [low, high]`` in percent."""
    if x is None:
        return "-"
    if not ci or ci[0] is None or ci[1] is None:
        return f"{100 * x:.1f}"
    return f"{100 * x:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _pct(x: float | None, ci: float | None = None) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f} ± {100 * ci:.1f}" if ci is not None else f"{100 * x:.1f}"


def setting_key(method: str, gamma: float, corner: str, bits: int,
                temp_c: float | None = None) -> str:
    """The report.json key of one evaluated setting, e.g. ``analog/gamma=1/corner=tt/bits=6``;
    a temperature other than the demo's nominal one is appended (``.../temp=85``)."""
    key = f"{method}/gamma={gamma:g}/corner={corner}/bits={bits}"
    return key if temp_c is None else f"{key}/temp={temp_c:g}"


# ----------------------------------------------------------------------------- circuits


def circuit_summary(xbar: Path, adc: Path, vdd_v: float, temp_c: float) -> dict[str, Any]:
    """Crossbar and ADC numbers per corner from the lookup files."""
    from characterization.lookup import read_lookup

    xb, ad = read_lookup(xbar), read_lookup(adc)
    cross: dict[str, Any] = {"vdd_v": vdd_v, "temp_c": temp_c, "write_noise_k": {},
                             "write_noise_k_by_temp": {}, "sensing_margin": {},
                             "read_transfer_mean_ratio": {}}
    fit = xb[CROSSBAR_WRITE_NOISE_FIT]
    for c in fit.coords["process"]:
        c = str(c)
        at = fit.sel(process=c, vdd_v=vdd_v)
        cross["write_noise_k"][c] = {str(m): _f(at.sel(temp_c=temp_c, mode=str(m), stat="k").data)
                                     for m in fit.coords["mode"]}
        cross["write_noise_k_by_temp"][c] = {
            f"{t:g}": {str(m): _f(at.sel(temp_c=float(t), mode=str(m), stat="k").data)
                       for m in fit.coords["mode"]} for t in fit.coords["temp_c"]}
        if CROSSBAR_SENSING_MARGIN in xb:  # optional in files made elsewhere
            sm = xb[CROSSBAR_SENSING_MARGIN].sel(process=c, vdd_v=vdd_v, temp_c=temp_c)
            cross["sensing_margin"][c] = {str(s): _f(sm.sel(stat=str(s)).data)
                                          for s in sm.coords["stat"]}
        rt = xb[CROSSBAR_READ_TRANSFER].sel(process=c, vdd_v=vdd_v, temp_c=temp_c,
                                              stat="mean_ratio")
        cross["read_transfer_mean_ratio"][c] = {
            "min": _f(np.nanmin(rt.data)), "max": _f(np.nanmax(rt.data))}
    adcd: dict[str, Any] = {"vdd_v": vdd_v, "temp_c": temp_c, "enob": {}, "sinad_db": {},
                            "energy_j": {}, "energy_j_by_corner": {}, "noise_lsb": {},
                            "offset_sigma_lsb": {}, "conversion_time_s": {}}
    enob = ad[ADC_ENOB]
    bits = [int(b) for b in enob.coords["bits"]]
    for c in enob.coords["process"]:
        c = str(c)
        at = dict(process=c, vdd_v=vdd_v, temp_c=temp_c)
        adcd["enob"][c] = {str(b): _f(enob.sel(**at, bits=b).data) for b in bits}
        for key, table in (("sinad_db", ADC_SINAD_DB), ("energy_j_by_corner", ADC_ENERGY_J),
                           ("conversion_time_s", ADC_CONVERSION_TIME_S),
                           ("noise_lsb", ADC_NOISE_LSB)):
            if table in ad:
                adcd[key][c] = {str(b): _f(ad[table].sel(**at, bits=b).data) for b in bits}
        if ADC_OFFSET_LSB in ad:
            adcd["offset_sigma_lsb"][c] = {
                str(b): _f(np.nanstd(ad[ADC_OFFSET_LSB].sel(**at, bits=b).data, ddof=1))
                for b in bits}
    by = adcd["energy_j_by_corner"]
    ref = "tt" if "tt" in by else next(iter(by), None)
    adcd["energy_j"] = dict(by.get(ref, {}))
    adcd["energy_j_corner"] = ref
    val = ad.provenance.get("adc", {}).get("validation")
    if val:
        adcd["validation"] = {k: v for k, v in val.items() if not isinstance(v, (list, dict))}
    if ADC_VALIDATION_RMS_LSB in ad:
        adcd["validation_table"] = validation_table(ad, vdd_v)
    if ADC_ENERGY_BREAKDOWN_J in ad:
        eb = ad[ADC_ENERGY_BREAKDOWN_J]
        adcd["energy_breakdown_j"] = {
            str(c): {str(b): {str(p): _f(eb.sel(process=str(c), vdd_v=vdd_v, temp_c=temp_c,
                                                bits=b, part=str(p)).data)
                              for p in eb.coords["part"]} for b in bits}
            for c in eb.coords["process"]}
    cross.update(write_tables(xb, vdd_v))
    if CROSSBAR_READ_ENERGY in xb:
        re_t = xb[CROSSBAR_READ_ENERGY]
        cross["read_energy_j"] = {
            str(c): {str(p): _f(re_t.sel(process=str(c), vdd_v=vdd_v, temp_c=temp_c,
                                         part=str(p)).data) for p in re_t.coords["part"]}
            for c in re_t.coords["process"]} if "rows" not in re_t.dims else {}
    return {"crossbar": cross, "adc": adcd,
            "provenance": {"crossbar": _prov(xb.provenance), "adc": _prov(ad.provenance)}}


def validation_table(ad: Any, vdd_v: float) -> dict[str, Any]:
    """``adc/validation_rms_lsb`` (with its floor and max) per corner, temperature and
    resolution at ``vdd_v``, each row marked ``above_target`` where the RMS error exceeds the
    table's ``target_rms_lsb`` (issue 14: an error above target is said in the report)."""
    rms = ad[ADC_VALIDATION_RMS_LSB]
    target = _f(rms.attrs.get("target_rms_lsb"))
    rows = []
    for c in rms.coords["process"]:
        for t in rms.coords["temp_c"]:
            for b in rms.coords["bits"]:
                at = dict(process=str(c), vdd_v=vdd_v, temp_c=float(t), bits=int(b))
                row = {"corner": str(c), "temp_c": float(t), "bits": int(b),
                       "rms_lsb": _f(rms.sel(**at).data)}
                for key, name in (("floor_lsb", ADC_VALIDATION_FLOOR_LSB),
                                  ("max_lsb", ADC_VALIDATION_MAX_LSB)):
                    row[key] = _f(ad[name].sel(**at).data) if name in ad else None
                row["above_target"] = (None if target is None or row["rms_lsb"] is None
                                       else row["rms_lsb"] > target)
                rows.append(row)
    return {"target_rms_lsb": target, "rows": rows,
            "above_target": [r for r in rows if r["above_target"]]}


def write_tables(xb: Any, vdd_v: float) -> dict[str, Any]:
    """The crossbar's per-level programming bias (``crossbar/write_noise_levels``: mean
    programmed - target, its spread and sample count) and the write-verify failure fraction
    (``crossbar/write_verify_failure``) per corner and temperature at ``vdd_v``; empty for
    files without them."""
    out: dict[str, Any] = {}
    if CROSSBAR_WRITE_NOISE_LEVELS in xb:
        t = xb[CROSSBAR_WRITE_NOISE_LEVELS]
        stats = [str(s) for s in t.coords["stat"]]
        bias: dict[str, Any] = {}
        for c in t.coords["process"]:
            for tc in t.coords["temp_c"]:
                for m in t.coords["mode"]:
                    for lv in t.coords["level"]:
                        at = t.sel(process=str(c), vdd_v=vdd_v, temp_c=float(tc), mode=str(m),
                                   level=lv)
                        bias.setdefault(str(c), {}).setdefault(f"{float(tc):g}", {}).setdefault(
                            str(m), {})[str(int(lv))] = {
                                s: _f(at.sel(stat=s).data) for s in stats}
        out["write_bias"] = {"calibrate": str(t.attrs.get("calibrate", "")),
                             "level_g_s": [float(g) for g in t.attrs.get("level_g_s", [])],
                             "by_corner": bias}
    if CROSSBAR_WRITE_VERIFY_FAILURE in xb:
        t = xb[CROSSBAR_WRITE_VERIFY_FAILURE]
        fail: dict[str, Any] = {}
        for c in t.coords["process"]:
            for tc in t.coords["temp_c"]:
                at = t.sel(process=str(c), vdd_v=vdd_v, temp_c=float(tc))
                fail.setdefault(str(c), {})[f"{float(tc):g}"] = {
                    str(int(lv)): _f(at.sel(level=lv).data) for lv in t.coords["level"]}
        out["verify_failure"] = {"by_corner": fail,
                                 "pulse_budget": t.attrs.get("pulse_budget")}
    return out


def energy_parts(b: dict[str, Any] | None) -> dict[str, Any] | None:
    """An evaluation's ``energy_per_inference`` in ``nnsim.energy``'s shape (``parts`` a list
    of ``{part, j_per_inference, j_per_event, events_per_inference, source}``,
    ``not_characterized``); runs made before it (``parts`` keyed ``adc_<part>``,
    ``not_included``) are read too."""
    if not b:
        return None
    parts = b.get("parts")
    if isinstance(parts, dict):  # before nnsim.energy: ADC parts only
        n = _f(b.get("conversions_per_inference"))
        lst = [{"part": k.replace("adc_", "adc/", 1).replace("crossbar_", "crossbar/", 1),
                "j_per_inference": _f(v.get("j")), "j_per_event": _f(v.get("j_per_conversion")),
                "events_per_inference": n, "event": "conversion", "source": v.get("source")}
               for k, v in parts.items()]
        missing = list(b.get("not_included", []))
        return {"total_j": _f(b.get("total_j")), "complete": not missing,
                "conversions_per_inference": n, "parts": lst, "not_characterized": missing}
    return dict(b)


def _prov(p: dict[str, Any]) -> dict[str, Any]:
    keys = ("root_seed", "ngspice_version", "package_version", "git_commit", "netlist",
            "rram_lib_sha256", "fingerprint")
    out = {k: p[k] for k in keys if k in p and not isinstance(p[k], dict)}
    # a characterization made of several sweeps keeps its plan's seed and per-sweep records
    if "root_seed" not in out and isinstance(p.get("plan"), dict) and "seed" in p["plan"]:
        out["root_seed"] = p["plan"]["seed"]
    for sweep in (p.get("sweeps") or {}).values():
        if isinstance(sweep, dict):
            for k in ("ngspice_version", "package_version", "git_commit"):
                if k not in out and k in sweep:
                    out[k] = sweep[k]
    return out


# ----------------------------------------------------------------------------- accuracy


def collect_accuracy(evals: Path, nominal_temp_c: float = 27.0) -> dict[str, Any]:
    """Every evaluated setting of the demo's ``eval/*.json`` files (``evaluate --json``:
    ``points``, ``rap``, ``comparisons``, ``meta``; ``nnsim.results``), keyed by setting
    (the temperature is part of the key where it is not ``nominal_temp_c``)."""
    acc: dict[str, Any] = {}
    digital = None
    comparisons: list[dict[str, Any]] = []
    for path in sorted(evals.glob("*.json")):
        d = json.loads(path.read_text(encoding="utf-8"))
        rap_run = "rap" in path.stem  # RAP runs score fewer images: their analog rows
        if digital is None and not rap_run:  # duplicate the full analog runs
            digital = _f(d["meta"]["digital_accuracy"])
        for r in d["rap"]:
            _add_rap(acc, r, path.stem)
            comparisons.extend(dict(c, source=path.stem) for c in r["comparisons"])
        if not rap_run:
            for p in d["points"]:
                _add_analog(acc, p, path.stem, nominal_temp_c)
            comparisons.extend(dict(c, source=path.stem) for c in d["comparisons"])
    return {"digital": digital, "comparisons": comparisons, **dict(sorted(acc.items()))}


def _add_analog(acc: dict[str, Any], r: dict[str, Any], source: str,
                nominal_temp_c: float = 27.0) -> None:
    s = r["setting"]
    method = "analog+clipformer" if s["clipformer"] else "analog"
    temp = s.get("temp_c")
    temp = None if temp is None or float(temp) == nominal_temp_c else float(temp)
    key = setting_key(method, float(s["gamma"]), str(s["process"]), int(s["bits"]), temp)
    if key in acc:
        return
    acc[key] = {
        "method": method, "gamma": float(s["gamma"]), "corner": s["process"],
        "temp_c": nominal_temp_c if temp is None else temp,
        "bits": int(s["bits"]), "accuracy_mean": _f(r["accuracy_mean"]),
        "accuracy_ci95": r["accuracy_ci95"], "ci_method": r["ci_method"],
        "chips": r["chips"], "n_images": r["n_images"],
        "digital_accuracy_same_images": _f(r["digital_accuracy"]),
        "clipformer": s["clipformer"], "warnings": r["warnings"], "digital": r["digital"],
        "conversions_per_inference": _f(r["conversions_per_inference"]),
        "adc_energy_j_per_inference": _f(r["adc_energy_j_per_inference"]),
        "energy_per_inference": energy_parts(r.get("energy_per_inference")),
        "timing": _timing(r.get("timing")), "source": source}


def _add_rap(acc: dict[str, Any], r: dict[str, Any], source: str) -> None:
    corner = (r["corner"] or {}).get("process", "ideal")
    trim = (r.get("rap_config") or {}).get("adc_trim") or "none"
    for part, method in (("rap", "rap"), ("dense", "rap-dense")):
        m = r[part]
        if m is None:
            continue
        if trim != "none":  # a trimmed ADC is another setting (rap-trim-pedestal, ...)
            method = f"{method}-trim-{trim}"
        # RAP's crossbar cells are ideal (the ADC is the circuit's): no write noise, gamma 0
        key = setting_key(method, 0.0, str(corner), int(r["bits"]))
        if key in acc:
            continue
        acc[key] = {
            "method": method, "gamma": 0.0, "corner": corner, "bits": int(r["bits"]),
            "accuracy_mean": _f(m["accuracy_mean"]), "accuracy_ci95": m["accuracy_ci95"],
            "ci_method": m["ci_method"], "chips": m["chips"], "n_images": m["n_images"],
            "k": m["k"], "adc_trim": trim, "fp32_accuracy": _f(r["fp32_accuracy"]),
            "digital_accuracy_same_images": _f(r["fp32_accuracy"]),
            "ptq_float_accuracy": _f(r["ptq_float_accuracy"]),
            "rap_integer_accuracy": _f(r["rap_integer_accuracy"]),
            "adc_range": m["adc_range"]["method"], "crossbar": m["crossbar"],
            "digital": m["digital"], "warnings": m["warnings"],
            "conversions_per_inference": _f(m["conversions_per_inference"]),
            "adc_energy_j_per_inference": _f(m["adc_energy_j_per_inference"]),
            "energy_per_inference": energy_parts(m.get("energy_per_inference")),
            "timing": _timing(r.get("timing"), dense=part == "dense"), "source": source}


def _timing(t: dict[str, Any] | None, *, dense: bool = False) -> dict[str, Any] | None:
    """A result's own cost: the digital forward over the same images (``digital_s``) and
    seconds per simulated chip (``per_chip_s``; RAP's dense baseline: ``dense_per_chip_s``);
    ``reused`` when the demo took the setting from an earlier step (the time is that run's)."""
    if not isinstance(t, dict):
        return None
    per_chip = t.get("dense_per_chip_s") if dense else t.get("per_chip_s")
    return {"digital_s": _f(t.get("digital_s")), "per_chip_s": _f(per_chip),
            "reused": bool(t.get("reused", False))}


def _rap_scope(acc: dict[str, Any], st: dict[str, Any]) -> str:
    """Which images x chips RAP was scored on, and why when they are fewer than the analog
    settings' (the demo's RAP_IMAGES x RAP_CHIPS, sized to the evaluation time budget)."""
    raps = [v for k, v in acc.items() if isinstance(v, dict) and str(v.get("method", ""))
            .startswith("rap")]
    ana = [v for v in acc.values() if isinstance(v, dict) and v.get("method") == "analog"]
    if not raps:
        return "no RAP setting was evaluated."
    scope = sorted({(v["n_images"], v["chips"]) for v in raps})
    text = "scored on " + " / ".join(f"{n} images x {c} chips" for n, c in scope)
    full = max((v["n_images"] for v in ana), default=None)
    if full is not None and (any(n < full for n, _ in scope)
                             or any(c < st["chips"] for _, c in scope)):
        text += (f", fewer than the analog settings' {full} x {st['chips']}: every RAP "
                 "conversion on programmed cells goes through the circuit ADC's sampler, and "
                 "the RAP steps on all images and chips would not fit the demo's evaluation "
                 "time (RAP_IMAGES, RAP_CHIPS in imc/demo/pipeline.py)")
    return text + "."


def _images_text(acc: dict[str, Any]) -> str:
    """The test images the analog settings were scored on (``"the 450 test images"``)."""
    n = sorted({v.get("n_images") for v in acc.values() if isinstance(v, dict)
                and v.get("method") in ("analog", "analog+clipformer")} - {None})
    return f"the {' / '.join(map(str, n))} test images" if n else "the test images"


def _cost_markdown(acc: dict[str, Any], w: Any) -> None:
    rows = [(k, v) for k, v in acc.items() if isinstance(v, dict) and v.get("timing")]
    if not rows:
        return
    w("\nWhat each evaluated setting cost (its JSON's `timing`: seconds per simulated chip over "
      "the images it scored, and the digital forward over the same images, the fastest of up "
      "to 3 timed forwards (RAP: its one FP32 pass); a reused setting shows the run that made "
      "it; RAP settings score fewer images and chips than the analog ones, so compare their "
      "ratio, not their seconds):\n")
    w("| setting | images x chips | s per chip | digital s | per chip / digital |\n"
      "|---|---|---|---|---|")
    for k, v in rows:
        t = v["timing"]
        pc, dg = t.get("per_chip_s"), t.get("digital_s")
        ratio = f"{pc / dg:.0f}x" if pc is not None and dg else ""
        w(f"| {k}{' (reused)' if t.get('reused') else ''} | {v.get('n_images')} x "
          f"{v.get('chips')} | {_n(pc, 3)} | {_n(dg, 3)} | {ratio} |")


def _yerr(rows: list[dict[str, Any]]) -> list[list[float]]:
    """Asymmetric error bars (percent) from each row's ``accuracy_ci95`` = [low, high]."""
    lo, hi = [], []
    for r in rows:
        ci, m = r["accuracy_ci95"], r["accuracy_mean"]
        ok = ci and ci[0] is not None and ci[1] is not None and m is not None
        lo.append(100 * (m - ci[0]) if ok else 0.0)
        hi.append(100 * (ci[1] - m) if ok else 0.0)
    return [lo, hi]


def _rows(acc: dict[str, Any], **where: Any) -> list[dict[str, Any]]:
    """The settings matching ``where``; at the nominal temperature unless ``temp_c`` is asked
    for (the corner, bits and gamma plots are at the nominal temperature)."""
    return [v for k, v in acc.items() if k not in ("digital", "comparisons")
            and ("temp_c" in where or "/temp=" not in k)
            and all(v.get(a) == b for a, b in where.items())]


# ----------------------------------------------------------------------------- plots


def _plots(acc: dict[str, Any], circuits: dict[str, Any], plots: Path, demo_bits: int,
           gamma_main: float = 1.0) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # paper-sized text: 10 pt labels, 9 pt legends (outside the data), 150 dpi
    plt.rcParams.update({"font.size": 10, "axes.titlesize": 10, "legend.fontsize": 9,
                         "xtick.labelsize": 9, "ytick.labelsize": 9})
    plots.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    digital = acc.get("digital")
    colors = {"analog": "#1f77b4", "analog+clipformer": "#ff7f0e", "rap": "#2ca02c"}
    labels = {"analog": "analog (dense MVM)", "analog+clipformer": "analog + ClipFormer",
              "rap": "RAP (sparse low-ENOB MVM)"}
    # each method's images x chips in its label: RAP is scored on fewer (RAP_IMAGES, RAP_CHIPS)
    labels = {m: f"{lab}, {sc}" if (sc := _scope(_rows(acc, method=m))) else lab
              for m, lab in labels.items()}

    # accuracy per corner
    corners = [c for c in CORNER_ORDER if _rows(acc, corner=c, bits=demo_bits)]
    if corners:
        fig, ax = plt.subplots(figsize=(7, 4))
        width = 0.26
        for i, m in enumerate(("analog", "analog+clipformer", "rap")):
            ys, es = [], [[], []]
            for c in corners:
                rows = [r for r in _rows(acc, method=m, corner=c, bits=demo_bits)
                        if m == "rap" or r["gamma"] == gamma_main]
                ys.append(100 * rows[0]["accuracy_mean"] if rows else np.nan)
                lo_hi = _yerr(rows[:1]) if rows else [[0.0], [0.0]]
                es[0].extend(lo_hi[0])
                es[1].extend(lo_hi[1])
            x = np.arange(len(corners)) + (i - 1) * width
            # points with their 95 % intervals (bars would need a y axis from 0)
            ax.errorbar(x, ys, yerr=es, fmt="o", ms=6, capsize=4, lw=1.5, color=colors[m],
                        label=labels[m])
        if digital is not None:
            ax.axhline(100 * digital, color="k", ls="--", lw=1, label="digital")
        _rap_reference(ax, acc, colors["rap"])
        ax.set_xticks(np.arange(len(corners)), [c.upper() for c in corners])
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_xlabel("process corner (1.8 V, 27 °C)")
        _ylim_spread(ax, _rows(acc, bits=demo_bits), digital)
        ax.set_title(f"Digits ViT on circuit-characterized hardware, {demo_bits}-bit column ADC")
        _legend_outside(ax)
        ax.grid(axis="y", alpha=0.3)
        out["accuracy_vs_corner"] = _save(fig, plots / "accuracy_vs_corner.png")

    # accuracy and ADC energy vs bits (tt)
    an = sorted(_rows(acc, method="analog", corner="tt", gamma=gamma_main),
                key=lambda r: r["bits"])
    rp = sorted(_rows(acc, method="rap", corner="tt"), key=lambda r: r["bits"])
    if an or rp:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        whole = False  # the whole read (ADC + crossbar) where every part is characterized
        for rows, m in ((an, "analog"), (rp, "rap")):
            if not rows:
                continue
            b = [r["bits"] for r in rows]
            a1.errorbar(b, [100 * r["accuracy_mean"] for r in rows],
                        yerr=_yerr(rows), marker="o",
                        capsize=3, color=colors[m], label=labels[m])
            tot = [_f(ep["total_j"]) if (ep := r.get("energy_per_inference"))
                   and ep.get("complete") else None for r in rows]
            if any(v is not None for v in tot):
                whole = True
                a2.semilogy(b, [np.nan if v is None else v * 1e6 for v in tot], marker="o",
                            color=colors[m])
            e = [r["adc_energy_j_per_inference"] for r in rows]
            if any(v is not None for v in e):
                a2.semilogy(b, [np.nan if v is None else v * 1e6 for v in e], marker="o",
                            color=colors[m], ls="--" if whole else "-", label=labels[m])
        if digital is not None:
            a1.axhline(100 * digital, color="k", ls="--", lw=1, label="digital")
        _rap_reference(a1, acc, colors["rap"])
        a1.set_xlabel("column ADC resolution (bits)")
        a1.set_ylabel("top-1 accuracy (%)")
        a1.set_title("accuracy against ADC bits (tt)")
        a1.grid(alpha=0.3)
        _legend_below(a1)
        a2.set_xlabel("column ADC resolution (bits)")
        a2.set_ylabel("energy per image (µJ)" if whole else "ADC energy per image (µJ)")
        a2.set_title("energy per inference: whole read (solid), ADC only (dashed)" if whole
                     else "ADC energy per inference (characterized J/conversion)")
        a2.grid(alpha=0.3, which="both")
        _int_ticks(a1, a2)  # one legend (under the accuracy panel): the colours are shared
        _plain_log(a2)
        out["accuracy_vs_bits"] = _save(fig, plots / "accuracy_vs_bits.png")

    # accuracy vs gamma
    g_rows = {m: sorted(_rows(acc, method=m, corner="tt", bits=demo_bits),
                        key=lambda r: r["gamma"]) for m in ("analog", "analog+clipformer")}
    if any(len(v) > 1 for v in g_rows.values()):
        fig, ax = plt.subplots(figsize=(6, 4))
        k = circuits["crossbar"]["write_noise_k"].get("tt", {}).get("single")
        for m, rows in g_rows.items():
            ax.errorbar([r["gamma"] for r in rows], [100 * r["accuracy_mean"] for r in rows],
                        yerr=_yerr(rows), marker="o",
                        capsize=3, color=colors[m], label=labels[m])
        if digital is not None:
            ax.axhline(100 * digital, color="k", ls="--", lw=1, label="digital")
        ax.set_xlabel("gamma: K/V write noise in units of the characterized k"
                      + (f" (k = {k:.3f} at tt)" if k else ""))
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title("K/V write noise and ClipFormer (tt, 6-bit ADC)")
        ax.grid(alpha=0.3)
        _legend_outside(ax)
        out["accuracy_vs_gamma"] = _save(fig, plots / "accuracy_vs_gamma.png")

    # circuit summary: write-noise k per corner, ENOB and energy against bits
    cb, ad = circuits["crossbar"], circuits["adc"]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(13, 3.8))
    cs = [c for c in CORNER_ORDER if c in cb["write_noise_k"]]
    for i, mode in enumerate(("single", "verify")):
        a1.bar(np.arange(len(cs)) + (i - 0.5) * 0.35,
               [cb["write_noise_k"][c].get(mode) or np.nan for c in cs], 0.35,
               label=f"{mode}-shot" if mode == "single" else "write-verify")
    a1.set_xticks(np.arange(len(cs)), [c.upper() for c in cs])
    a1.set_ylabel("k = gamma·sigma")
    a1.set_title("RRAM write noise (SPICE, 27 °C)")
    _legend_below(a1)
    for c in [c for c in CORNER_ORDER if c in ad["enob"]]:
        b = sorted(int(x) for x in ad["enob"][c])
        a2.plot(b, [ad["enob"][c][str(x)] for x in b], marker="o", label=c.upper())
        if c in ad["energy_j_by_corner"]:
            a3.semilogy(b, [1e12 * ad["energy_j_by_corner"][c][str(x)] for x in b],
                        marker="o", label=c.upper())
    b = sorted(int(x) for x in ad["energy_j"])
    if b:
        e_top = ad["energy_j"][str(b[-1])]
        a3.semilogy(b, [1e12 * e_top * 2.0 ** (x - b[-1]) for x in b], "k--", lw=1,
                    label="∝ 2^bits")
        a2.plot(b, b, "k--", lw=1, label="ideal")
    a2.set_xlabel("bits")
    a2.set_ylabel("ENOB (IEEE 1241 sine fit)")
    a2.set_title("SAR ADC ENOB")
    _legend_below(a2)
    a3.set_xlabel("bits")
    a3.set_ylabel("energy per conversion (pJ)")
    a3.set_title("SAR ADC energy")
    _legend_below(a3)
    for a in (a1, a2, a3):
        a.grid(alpha=0.3)
    _int_ticks(a2, a3)
    _plain_log(a3)
    out["circuit_summary"] = _save(fig, plots / "circuit_summary.png")
    return out


def _int_ticks(*axes: Any) -> None:
    """Integer ticks on the x axis (ADC bits)."""
    from matplotlib.ticker import MaxNLocator

    for a in axes:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))


def _plain_log(ax: Any) -> None:
    """A log y axis labelled 0.5, 1, 2 (not 10^0); linear when the data span less than a
    decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 10:
        ax.set_yscale("linear")
        return

    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _p: ""))


def _legend_outside(ax: Any) -> None:
    """The legend to the right of the axes, off the data."""
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)


def _legend_below(ax: Any) -> None:
    """The legend under the axes (for side-by-side panels), off the data."""
    n = len(ax.get_legend_handles_labels()[0])
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(n, 2), frameon=False)


def _ylim_spread(ax: Any, rows: list[dict[str, Any]], digital: float | None) -> None:
    """A y axis (percent) that spans the points, their 95 % intervals and the digital
    reference with a margin, so the spread shows and no interval runs off the axis."""
    vals = [100 * v for r in rows for v in (r["accuracy_mean"], *(r["accuracy_ci95"] or ()))
            if v is not None]
    if digital is not None:
        vals.append(100 * digital)
    if not vals:
        return
    lo, hi = min(vals), max(vals)
    pad = max(1.0, 0.08 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad) + (0.5 if hi + pad > 100 else 0.0))


def _scope(rows: list[dict[str, Any]]) -> str:
    """The images x chips ``rows`` were scored on (``"90 images x 3 chips"``; several joined
    with ``/``); empty for no rows."""
    sc = sorted({(r.get("n_images"), r.get("chips")) for r in rows})
    return " / ".join(f"{n} images x {c} chips" for n, c in sc)


def _step_scope(s: dict[str, Any]) -> str:
    """What an evaluation step scored, from its record (``pipeline._eval_counts``): images x
    chips (settings), RAP's separately; empty for the other steps."""
    def one(settings: Any, images: Any, chips: Any, what: str = "") -> str:
        if not settings:
            return ""
        j = "/".join
        return (f"{what}{j(map(str, images or ['?']))} x {j(map(str, chips or ['?']))} "
                f"({settings} setting{'s' if settings != 1 else ''})")

    parts = [one(s.get("settings"), s.get("images"), s.get("chips")),
             one(s.get("rap_settings"), s.get("rap_images"), s.get("rap_chips"), "RAP ")]
    return "; ".join(p for p in parts if p)


def _rap_reference(ax: Any, acc: dict[str, Any], color: str) -> None:
    """RAP is scored on fewer images: draw FP32 on those images, so gaps read right."""
    rows = _rows(acc, method="rap")
    ref = [r["digital_accuracy_same_images"] for r in rows
           if r.get("digital_accuracy_same_images") is not None]
    if ref and rows[0].get("n_images"):
        ax.axhline(100 * ref[0], color=color, ls=":", lw=1.2,
                   label=f"digital on RAP's {rows[0]['n_images']} images")


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- report


def vat_summary(evals: Path) -> dict[str, Any] | None:
    """ClipFormer's Table II analogue from ``eval/vat.json`` (``evaluate --vat --clipformer
    both``): per gamma the four cells (standard / VAT x without / with ClipFormer, same chips
    and images), their paired gains, and VAT's training cost; None if the file is absent."""
    import re

    path = evals / "vat.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text(encoding="utf-8"))
    rows: dict[str, dict[str, Any]] = {}
    for p in d["points"]:
        s = p["setting"]
        cell = ("vat" if s.get("method") == "vat" else "standard") + (
            "+clipformer" if s.get("clipformer") else "")
        rows.setdefault(f"{float(s['gamma']):g}", {})[cell] = {
            "accuracy_mean": _f(p["accuracy_mean"]), "accuracy_ci95": p["accuracy_ci95"],
            "chips": p["chips"], "n_images": p["n_images"], "clipformer": s.get("clipformer")}
    for c in d["comparisons"]:
        m = re.search(r"gamma=([0-9.]+)", c["a"])
        if m is None:
            continue
        a_vat, a_clip = "[vat]" in c["a"], "clip(" in c["a"]
        name = {("method vat vs analog", False): "vat_gain",
                ("method vat vs analog", True): "vat_gain_clipformer",
                ("clipformer vs none", False): "clipformer_gain_standard",
                ("clipformer vs none", True): "clipformer_gain_vat",
                ("vat + clipformer vs standard", True): "vat_clipformer_vs_standard",
                }.get((c["name"], a_vat if c["name"] == "clipformer vs none" else a_clip))
        if name and f"{float(m.group(1)):g}" in rows:
            rows[f"{float(m.group(1)):g}"][name] = {
                "difference_mean": _f(c["difference_mean"]),
                "difference_ci95": c["difference_ci95"]}
    ck = (d["meta"].get("vat") or [{}])[0]
    base = ck.get("base") or {}
    cost = {"vat_train_s": _f(ck.get("train_time_s")), "vat_cpu_s": _f(ck.get("train_cpu_s")),
            "standard_train_s": _f(base.get("train_time_s")),
            "standard_cpu_s": _f(base.get("train_cpu_s")), "steps": ck.get("steps"),
            "recipe": ck.get("recipe"), "vat_gamma": (ck.get("settings") or {}).get("gamma"),
            "checkpoint": ck.get("path"), "vat_digital_accuracy": _f(ck.get("test_accuracy"))}
    for k in ("", "cpu_"):
        v, s = cost[f"vat_{k or 'train_'}s"], cost[f"standard_{k or 'train_'}s"]
        cost[f"ratio_{k or 'wall'}".rstrip("_")] = v / s if v and s else None
    return {"rows": dict(sorted(rows.items(), key=lambda kv: float(kv[0]))), "cost": cost}


def _vat_markdown(r: dict[str, Any], w: Any) -> None:
    v = r.get("vat")
    if not v:
        return
    c = v["cost"]
    w("\n## Variation-aware training (ClipFormer's Table II)\n")
    cost = ""
    if c["vat_train_s"] is not None:
        cost = (f" Fine-tuning took {c['vat_train_s']:.0f} s"
                + (f" ({c['vat_cpu_s']:.0f} CPU s)" if c["vat_cpu_s"] else "")
                + (f", against {c['standard_train_s']:.0f} s for standard training "
                   f"({c['ratio_wall']:.2f}x; the two ran at different times, "
                   "bench/vat_cost.py measures them back to back)"
                   if c["standard_train_s"] else "") + ".")
    w(f"VAT: the digits ViT fine-tuned ({c['steps']} steps) with the circuit's non-idealities "
      f"in the forward pass at gamma {c['vat_gamma']} (K/V write noise per step, chip "
      "re-programmed per step, read noise and ADC with a straight-through gradient; "
      "docs/nnsim.md)." + cost + " Every cell on the same chips and images; gains are "
      "paired (95 % bootstrap interval, points).\n")
    w("| gamma | standard | standard + ClipFormer | VAT | VAT + ClipFormer | VAT gain | "
      "VAT gain with ClipFormer | ClipFormer gain on VAT | VAT + ClipFormer vs standard |")
    w("|---|---|---|---|---|---|---|---|---|")

    def cell(row: dict[str, Any], k: str) -> str:
        x = row.get(k)
        if x is None or x["accuracy_mean"] is None:
            return "-"
        lo, hi = x["accuracy_ci95"] or (None, None)
        ci = "" if lo is None or hi is None else f" [{100 * lo:.1f}, {100 * hi:.1f}]"
        return f"{100 * x['accuracy_mean']:.1f}{ci}"

    def gain(row: dict[str, Any], k: str) -> str:
        x = row.get(k)
        if x is None or x["difference_mean"] is None:
            return "-"
        lo, hi = x["difference_ci95"]
        return f"{100 * x['difference_mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"

    for g, row in v["rows"].items():
        w(f"| {g} | {cell(row, 'standard')} | {cell(row, 'standard+clipformer')} | "
          f"{cell(row, 'vat')} | {cell(row, 'vat+clipformer')} | {gain(row, 'vat_gain')} | "
          f"{gain(row, 'vat_gain_clipformer')} | {gain(row, 'clipformer_gain_vat')} | "
          f"{gain(row, 'vat_clipformer_vs_standard')} |")
    w("")


def write_report(out: Path, *, xbar: Path, adc: Path, fits_path: Path, fit_dir: Path,
                 evals: Path, steps: list[dict[str, Any]], settings: dict[str, Any],
                 wall_s: float, evaluation: dict[str, Any] | None = None) -> Path:
    """Write ``report.json``, ``report.md`` and the plots; returns the path of ``report.md``.

    ``evaluation``: the evaluation phase's lanes, workers, wall and CPU seconds
    (``imc.demo.pipeline.run_evaluations``)."""
    vdd_v, temp_c = settings["vdd_v"], settings["temp_c"]
    demo_bits = int(settings.get("demo_bits", 6))
    circuits = circuit_summary(xbar, adc, vdd_v, temp_c)
    acc = collect_accuracy(evals, float(temp_c))
    fits = json.loads(fits_path.read_text(encoding="utf-8")) if fits_path.is_file() else {}
    mem_path = fit_dir / "fit_report.json"
    mem = json.loads(mem_path.read_text(encoding="utf-8")) if mem_path.is_file() else None
    figs = _plots(acc, circuits, out / "plots", demo_bits)

    report = {
        "generated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_s": round(wall_s, 1), "settings": settings, "steps": steps,
        "evaluation": evaluation,
        "crossbar": circuits["crossbar"], "adc": circuits["adc"],
        "provenance": circuits["provenance"],
        "fits": _fit_summary(fits, mem),
        "accuracy": acc,
        "vat": vat_summary(evals),
        "plots": {k: str(v.relative_to(out)) for k, v in figs.items()},
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=1, default=str) + "\n")
    return atomic_write_text(out / "report.md", _markdown(report, out))


def _fit_summary(fits: dict[str, Any], mem: dict[str, Any] | None) -> dict[str, Any]:
    s: dict[str, Any] = {"write_noise": {}, "read_noise": {}, "adc_threshold_spread": {}}
    for c, modes in fits.get("write_noise", {}).items():
        s["write_noise"][c] = {m: {"k": f["params"]["k"], "k_stderr": f["stderr"]["k"],
                                   "r2": f["gof"].get("r2"), "ks_p": f["gof"].get("ks_p")}
                               for m, f in modes.items()}
    for c, f in fits.get("read_noise", {}).items():
        s["read_noise"][c] = {"params": f["params"], "r2": f["gof"].get("r2")}
    for c, f in fits.get("adc_threshold_spread", {}).items():
        s["adc_threshold_spread"][c] = {"params": f["params"], "r2": f["gof"].get("r2")}
    if mem:
        s["memristor"] = {
            "converged": mem.get("converged"),
            "verdict": (mem.get("verdict") or {}).get("label"),
            "verdict_reasons": (mem.get("verdict") or {}).get("reasons", []),
            "noise_ratio": (mem.get("verdict") or {}).get("noise_ratio"),
            "parameters": {p["name"]: {"value": p["value"], "ci_low": p["ci_low"],
                                       "ci_high": p["ci_high"], "units": p.get("units")}
                           for p in mem.get("parameters", [])},
            "curves": [{"name": c["name"], "rms_scaled": c.get("rms_scaled")}
                       for c in mem.get("curves", [])],
            "n_sim": mem.get("n_sim"), "wall_s": mem.get("wall_s")}
    return s


def _markdown(r: dict[str, Any], out: Path) -> str:
    acc, cb, ad, st = r["accuracy"], r["crossbar"], r["adc"], r["settings"]
    L: list[str] = []
    w = L.append
    w("# spicebridge demo report\n")
    w(f"Generated {r['generated']} in {r['wall_s'] / 60:.1f} min on {st['machine']}. "
      "Every number below comes from ngspice runs of the netlists in `netlists/` (sky130 "
      "transistors, the RRAM compact model), reduced into the lookup files "
      "`crossbar.h5` and `adc.h5`, and from a ViT evaluated on hardware models read from "
      "those files.\n")
    w("## What was run\n")
    w("| step | status | time (when it ran) | CPU | lane | images x chips (settings) | "
      "command |\n|---|---|---|---|---|---|---|")
    for s in r["steps"]:
        cmd = f"`{s['command']}`" if s.get("command") else ""
        cpu = f"{s['cpu_s']:.0f} s" if s.get("cpu_s") is not None else ""
        lane = str(s["lane"]) if s.get("lane") is not None else ""
        w(f"| {s['step']} | {s['status']} | {s['seconds']:.0f} s | {cpu} | {lane} | "
          f"{_step_scope(s)} | {cmd} |")
    ev = r.get("evaluation")
    if ev and ev.get("workers"):
        w(f"\nEvaluation steps: {ev['wall_s']:.0f} s wall on {ev['workers']} process(es) at "
          f"once; the wall times of the steps that ran add up to {ev['steps_s']:.0f} s, their "
          f"CPU time to {ev['cpu_s']:.0f} s"
          + (f" ({ev['process_cpu_s']:.0f} CPU s with the processes' start-up)"
             if ev.get("process_cpu_s") is not None else "")
          + ". Lanes (a lane's steps run in order in one process and share one evaluation "
          "cache): "
          + "; ".join(f"{i}: {', '.join(lane)}" for i, lane in enumerate(ev["lanes"])) + ".")
    _cost_markdown(acc, w)
    prov = r["provenance"]
    w(f"\nSeeds: crossbar sweep root seed {prov['crossbar'].get('root_seed', '-')}, ADC sweep "
      f"root seed {prov['adc'].get('root_seed', '-')}, evaluation seed {st['seed']} "
      f"({st['chips']} simulated chips per analog setting). ngspice "
      f"{prov['crossbar'].get('ngspice_version', '-')}.\n")

    w("## Circuits\n")
    w("![circuit summary](plots/circuit_summary.png)\n")
    w(f"At {cb['vdd_v']:g} V, {cb['temp_c']:g} °C:\n")
    w("| corner | write-noise k, single-shot | k, write-verify | sensing margin (σ) | "
      "read transfer actual/ideal | ADC ENOB at 6 bits | ADC offset σ (LSB) | ADC noise (LSB) |")
    w("|---|---|---|---|---|---|---|---|")
    for c in [c for c in CORNER_ORDER if c in cb["write_noise_k"]]:
        k = cb["write_noise_k"][c]
        sm = cb["sensing_margin"].get(c, {})
        rt = cb["read_transfer_mean_ratio"].get(c, {})
        e6 = ad["enob"].get(c, {}).get("6")
        off = ad["offset_sigma_lsb"].get(c, {}).get("6")
        nz = ad["noise_lsb"].get(c, {}).get("6")
        w(f"| {c} | {_n(k.get('single'))} | {_n(k.get('verify'))} | "
          f"{_n(sm.get('margin_sigma'), 1)} | {_n(rt.get('min'))} .. {_n(rt.get('max'))} | "
          f"{_n(e6, 2)} | {_n(off, 2)} | {_n(nz, 3)} |")
    bits = sorted(int(b) for b in ad["energy_j"])
    w("\n| ADC bits | " + " | ".join(str(b) for b in bits) + " |")
    w("|---|" + "---|" * len(bits))
    for c in [c for c in CORNER_ORDER if c in ad["enob"]]:
        w(f"| ENOB {c} | " + " | ".join(_n(ad["enob"][c].get(str(b)), 2) for b in bits) + " |")
    w(f"| energy {ad['energy_j_corner']} (pJ) | "
      + " | ".join(_n(1e12 * ad["energy_j"][str(b)], 2) for b in bits) + " |")
    eb = ad.get("energy_breakdown_j", {}).get(ad["energy_j_corner"], {})
    for part in (list(next(iter(eb.values()))) if eb else []):
        w(f"| - {part} (pJ) | " + " | ".join(
            _n(1e12 * (eb.get(str(b), {}).get(part) or math.nan), 2) for b in bits) + " |")
    if "validation_table" in ad:
        _validation_markdown(ad["validation_table"], w)
    elif "validation" in ad:
        v = ad["validation"]
        w(f"\nThe behavioural SAR model (driven by SPICE-extracted comparator and DAC "
          f"parameters) was checked against transistor-level SPICE conversions: "
          f"{_n(v.get('rms_lsb'), 3)} LSB RMS threshold error "
          f"(max {_n(v.get('max_lsb'), 3)} LSB; target 0.1 LSB RMS).")
    _write_tables_markdown(cb, w)
    for name, title in (("crossbar_write_noise.png", "write noise"),
                        ("crossbar_read_transfer.png", "read transfer"),
                        ("adc_transfer_dnl_inl.png", "ADC DNL/INL"),
                        ("adc_enob_energy_vs_bits.png", "ADC ENOB and energy")):
        if (out / "plots" / name).is_file():
            w(f"\n![{title}](plots/{name})")
    w("")

    fs = r["fits"]
    w("## Fitted models\n")
    if fs.get("write_noise"):
        w("Write noise, `G' = G + k sqrt((G - Gmin)(Gmax - Gmin)) N(0,1)`, fitted to the "
          "programmed-conductance samples (the simulator uses the empirical samples by "
          "default and this fit on request):\n")
        w("| corner | mode | k | stderr | KS p-value |\n|---|---|---|---|---|")
        for c, modes in fs["write_noise"].items():
            for m, f in modes.items():
                w(f"| {c} | {m} | {_n(f['k'])} | {_n(f['k_stderr'])} | {_n(f['ks_p'], 2)} |")
    mem = fs.get("memristor")
    if mem:
        w(f"\nMemristor compact model fitted to `examples/fitting/iv_loop.csv` with ngspice in "
          f"the loop ({mem['n_sim']} simulations, {_n(mem['wall_s'], 1)} s; verdict: "
          f"**{mem.get('verdict') or ('converged' if mem['converged'] else 'not converged')}**"
          + (f", residual {_n(mem['noise_ratio'], 2)}x the record's noise"
             if mem.get("noise_ratio") is not None else "")
          + (f"; {'; '.join(map(str, mem['verdict_reasons']))}"
             if mem.get("verdict_reasons") else "") + "):\n")
        w("| parameter | value | 95 % CI |\n|---|---|---|")
        for n, p in mem["parameters"].items():
            w(f"| {n} | {p['value']:.4g} {p.get('units') or ''} | {p['ci_low']:.4g} .. "
              f"{p['ci_high']:.4g} |")
        if (out / "fit_memristor" / "fit_overlay.png").is_file():
            w("\n![memristor fit](fit_memristor/fit_overlay.png)")
    w("")

    w("## Accuracy\n")
    w(f"Digits ViT, digital (FP32): **{_pct(acc.get('digital'))} %**. Analog settings: "
      f"mean ± 95 % CI over {st['chips']} simulated chips (each chip draws its own "
      "programming noise, ADC instances and read noise) on "
      f"{_images_text(acc)}; K and V "
      f"written on every inference with the circuit's write noise scaled by gamma; "
      f"ClipFormer alpha = {st['clip_alpha']:g}, beta = {st['clip_beta']:g}. RAP: sparse "
      "low-ENOB MVM on the circuit ADC (thresholds, noise and energy of the characterized SAR at "
      "each corner), integer-only digital path, cells programmed once per chip with the "
      "circuit's write noise and read through the crossbar's transfer, spread and read noise, "
      "attention products digital; " + _rap_scope(acc, st) + "\n")
    for key in ("accuracy_vs_corner", "accuracy_vs_bits", "accuracy_vs_gamma"):
        if key in r["plots"]:
            w(f"![{key}]({r['plots'][key]})\n")
    w("| setting | accuracy (%) | digital on the same images (%) | chips | images | "
      "ADC conversions / image | ADC energy / image (µJ) |\n|---|---|---|---|---|---|---|")
    for k, v in acc.items():
        if k in ("digital", "comparisons"):
            continue
        e = v["adc_energy_j_per_inference"]
        c = v["conversions_per_inference"]
        w(f"| `{k}` | {_pct_ci(v['accuracy_mean'], v['accuracy_ci95'])} | "
          f"{_pct(v['digital_accuracy_same_images'])} | {v['chips']} "
          f"| {v['n_images']} | {'-' if c is None else f'{c:.3g}'} | "
          f"{'-' if e is None else f'{1e6 * e:.3g}'} |")
    comps = r["accuracy"]["comparisons"]
    if comps:
        w("\nPaired comparisons (same chips, same images; 95 % interval from a bootstrap over "
          "chips and images):\n")
        w("| comparison | difference (points) | chips | images |\n|---|---|---|---|")
        for c in comps:
            lo, hi = c["difference_ci95"]
            w(f"| {c['name']}: {c['a']} - {c['b']} | {100 * c['difference_mean']:+.1f} "
              f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | {c['chips']} | {c['n_images']} |")
        _decisions_markdown(comps, w)
    raps = _rows(r["accuracy"], method="rap")
    if raps:
        w(f"\nRAP: {raps[0]['crossbar']}. Digital in RAP: {'; '.join(raps[0]['digital'])}. "
          "ADC offset trim: none (the thresholds as characterized) except the "
          "`rap-trim-<trim>` rows (docs/rap.md section 4.1).\n")
    _energy_markdown(r, w)
    _vat_markdown(r, w)
    w("\n## Reproduce\n")
    w("`make demo` (or `spicebridge demo --out runs/demo`) re-runs only what is missing; "
      "`spicebridge demo --redo` recomputes the evaluations. Each step's command above runs "
      "it alone. `report.json` holds every number on this page.\n")
    return "\n".join(L) + "\n"


def _validation_markdown(v: dict[str, Any], w: Any) -> None:
    """The ADC validation per corner, temperature and resolution, above-target rows marked."""
    t = v["target_rms_lsb"]
    w("\nBehavioural SAR thresholds against the transistor-level SPICE SAR's code transitions "
      "on the same die (`adc/validation_rms_lsb`, `adc/validation_max_lsb`), next to the "
      "floor of the measurement method itself (`adc/validation_floor_lsb`)"
      + (f"; target {_n(t, 2)} LSB RMS" if t is not None else "") + ":\n")
    w("| corner | temperature (°C) | bits | RMS error (LSB) | max error (LSB) | method floor "
      "(LSB) | against target |\n|---|---|---|---|---|---|---|")
    for row in v["rows"]:
        mark = {True: "**above target**", False: "within", None: "-"}[row["above_target"]]
        w(f"| {row['corner']} | {row['temp_c']:g} | {row['bits']} | {_n(row['rms_lsb'], 3)} | "
          f"{_n(row['max_lsb'], 3)} | {_n(row['floor_lsb'], 4)} | {mark} |")
    above = v["above_target"]
    if above:
        pts = ", ".join(f"{a['corner']}/{a['temp_c']:g} °C/{a['bits']} bits" for a in above)
        w(f"\n**The validation error is above target at {len(above)} of {len(v['rows'])} "
          f"points** ({pts}): the behavioural model does not reproduce the SPICE SAR's "
          "thresholds to the target there.")
    elif t is not None:
        w(f"\nWithin target at every characterized point ({len(v['rows'])}).")


def _write_tables_markdown(cb: dict[str, Any], w: Any) -> None:
    """Per-level programming bias and write-verify failure, per corner and temperature; the
    read energy per column read by part."""
    re_j = cb.get("read_energy_j")
    if re_j:
        parts = list(next(iter(re_j.values())))
        w(f"\nCrossbar read energy per column read (`crossbar/read_energy_j`, pJ, "
          f"{cb['vdd_v']:g} V, {cb['temp_c']:g} °C; the TIA's quiescent current is an "
          "assumption of the characterization):\n")
        w("| corner | " + " | ".join(parts) + " | total |\n|---|" + "---|" * (len(parts) + 1))
        for c in [c for c in CORNER_ORDER if c in re_j]:
            vals = [re_j[c].get(p) for p in parts]
            w(f"| {c} | " + " | ".join(_n(None if v is None else 1e12 * v, 3) for v in vals)
              + f" | {_n(1e12 * sum(v for v in vals if v is not None), 3)} |")
    wb = cb.get("write_bias")
    if wb:
        levels = sorted({lv for temps in wb["by_corner"].values() for modes in temps.values()
                         for lvs in modes.values() for lv in lvs}, key=int)
        w(f"\nWrite programming bias per level (`crossbar/write_noise_levels`: mean programmed "
          f"conductance - target, ± its spread, µS (the bias's own standard error is the "
          f"spread / sqrt(samples)); pulses calibrated "
          f"{wb['calibrate'] or 'as the file says'}; the simulator adds the bias once, unscaled):"
          "\n")
        w("| corner | temperature (°C) | mode | " + " | ".join(f"level {lv}" for lv in levels)
          + " | samples per level |\n|---|---|---|" + "---|" * (len(levels) + 1))
        for c in [c for c in CORNER_ORDER if c in wb["by_corner"]]:
            for tc, modes in wb["by_corner"][c].items():
                for m, lvs in modes.items():
                    cells = []
                    for lv in levels:
                        x = lvs.get(lv, {})
                        b, sd = _f(x.get("bias_s")), _f(x.get("std_s"))
                        cells.append("-" if b is None else f"{1e6 * b:+.2f}"
                                     + ("" if sd is None else f" ± {1e6 * sd:.2f}"))
                    n = {_f(x.get("n")) for x in lvs.values()} - {None}
                    w(f"| {c} | {tc} | {m} | " + " | ".join(cells) + " | "
                      + ("/".join(f"{x:g}" for x in sorted(n)) or "-") + " |")
    vf = cb.get("verify_failure")
    if vf:
        levels = sorted({lv for temps in vf["by_corner"].values() for lvs in temps.values()
                         for lv in lvs}, key=int)
        w("\nWrite-verify failure (`crossbar/write_verify_failure`: fraction of write-verify "
          "cells that never reached their level within the pulse budget):\n")
        w("| corner | temperature (°C) | " + " | ".join(f"level {lv}" for lv in levels)
          + " |\n|---|---|" + "---|" * len(levels))
        cells = (wb or {}).get("by_corner", {})
        for c in [c for c in CORNER_ORDER if c in vf["by_corner"]]:
            for tc, lvs in vf["by_corner"][c].items():
                row = []
                for lv in levels:
                    x = _f(lvs.get(lv))
                    n = _f(cells.get(c, {}).get(tc, {}).get("verify", {}).get(lv, {}).get("n"))
                    row.append("-" if x is None else f"{100 * x:.1f} %"
                               + ("" if n is None else f" ({round(x * n):d}/{n:g})"))
                w(f"| {c} | {tc} | " + " | ".join(row) + " |")


def _energy_markdown(r: dict[str, Any], w: Any) -> None:
    """Energy per inference by part: the nominal dense point in full (with sources), then every
    evaluated setting's parts (dense analog once per corner, temperature and resolution; RAP
    sparse and dense)."""
    from nnsim.energy import short_source

    acc, st = r["accuracy"], r["settings"]
    rows = [(k, v) for k, v in acc.items() if k not in ("digital", "comparisons")
            and v.get("energy_per_inference")]
    if not rows:
        return
    w("\n## Energy per inference\n")
    w("Energy per image = each ADC part's energy per conversion (`adc/energy_breakdown_j` at "
      "the evaluated corner and resolution) x the conversions the simulator counted, + each "
      "crossbar read part's energy per column read (`crossbar/read_energy_j`: array, TIA, "
      "drivers) x the column reads (`nnsim.energy`). Energy does not depend on the write noise "
      "(gamma) or ClipFormer, so the dense analog path is listed once per corner, temperature "
      "and resolution.\n")
    bits = int(st.get("demo_bits", 6))
    nominal = next((v for k, v in rows if k == setting_key("analog", 1.0, "tt", bits)),
                   rows[0][1])
    e = nominal["energy_per_inference"]
    tot = e["total_j"] or 0.0
    w(f"At `{next(k for k, v in rows if v is nominal)}` ({_count(e['conversions_per_inference'])}"
      f" conversions per image): **{1e6 * tot:.3g} µJ per image**"
      + ("" if e.get("complete", True) else " (incomplete: see below)") + ".\n")
    w("| part | per event (pJ) | events per image | per image (µJ) | share | source |\n"
      "|---|---|---|---|---|---|")
    for p in e["parts"]:
        j = p["j_per_inference"] or 0.0
        w(f"| {p['part']} | {_n(1e12 * (p['j_per_event'] or 0.0), 3)} | "
          f"{_count(p['events_per_inference'])} {p.get('event', 'conversion')}s | "
          f"{1e6 * j:.3g} | {100 * j / tot if tot else float('nan'):.1f} % | "
          f"{short_source(p['source'] or '')} |")
    for m in e.get("not_characterized", []):
        w(f"| **{m.split(':')[0]}** | - | - | **not characterized** | - | {m} |")
    notes = [p.get("scaling") or "" for p in e["parts"] if p["part"].startswith("crossbar/")]
    how = sorted({n.split("; the table allows")[0] for n in notes if n})
    if how:
        w(f"\nCrossbar read parts: {'; '.join(how)}"
          + ("; the table says how each part scales with the column current and the active "
             "rows, but the simulator does not record them yet, so a workload whose column "
             "currents are lower than the pattern's reads less array and TIA-output energy "
             "than this" if any("the table allows" in n for n in notes) else "")
          + " (docs/nnsim.md, Energy per inference).")
    names: list[str] = []
    for _, v in rows:
        for p in v["energy_per_inference"]["parts"]:
            if p["part"] not in names:
                names.append(p["part"])
    missing = sorted({m.split(":")[0] for _, v in rows
                      for m in v["energy_per_inference"].get("not_characterized", [])})
    w("\nEvery evaluated setting (µJ per image):\n")
    w("| setting | conversions per image | " + " | ".join(names)
      + "".join(f" | {m}" for m in missing) + " | total |\n|---|---|"
      + "---|" * (len(names) + len(missing) + 1))
    seen = set()
    order = {c: i for i, c in enumerate(CORNER_ORDER)}
    rows.sort(key=lambda kv: (kv[1]["method"] not in ("analog", "analog+clipformer"),
                              kv[1]["method"], order.get(kv[1]["corner"], 99),
                              kv[1].get("temp_c") or 0.0, kv[1]["bits"]))
    for _k, v in rows:
        if v["method"] in ("analog", "analog+clipformer"):
            ident = ("analog", v["corner"], v.get("temp_c"), v["bits"])
            if ident in seen:
                continue
            seen.add(ident)
            label = f"dense analog, {v['corner']}, {v.get('temp_c', st['temp_c']):g} °C, " \
                    f"{v['bits']} bits"
        else:
            label = f"{'RAP dense' if 'dense' in v['method'] else 'RAP sparse'}, " \
                    f"{v['corner']}, {v['bits']} bits, ADC trim {v.get('adc_trim', 'none')} " \
                    f"({_scope([v])})"
        ev = v["energy_per_inference"]
        by = {p["part"]: p["j_per_inference"] for p in ev["parts"]}
        miss = {m.split(":")[0] for m in ev.get("not_characterized", [])}
        w(f"| {label} | {_count(ev['conversions_per_inference'])} | "
          + " | ".join("-" if by.get(n) is None else f"{1e6 * by[n]:.3g}" for n in names)
          + "".join(" | not characterized" if m in miss else " | -" for m in missing)
          + f" | {1e6 * (ev['total_j'] or 0.0):.3g}"
          + ("" if ev.get("complete", True) else " (incomplete)") + " |")
    if missing:
        w(f"\n**Not characterized: {'; '.join(missing)}.** The totals above leave "
          "it out (they are not the whole read).")


# the comparisons that are circuit decisions (corner, supply, temperature, ADC resolution) and
# the mitigation, as ``nnsim.evaluate.sweep_comparisons`` names them
_DECISIONS = {"corner": "process corner", "vdd_v": "supply", "temp_c": "temperature",
              "bits": "ADC resolution", "clipformer": "ClipFormer"}


def _decisions_markdown(comps: list[dict[str, Any]], w: Any) -> None:
    """One table: which circuit decision moved accuracy, by how much (paired, 95 % CI), sorted
    by the size of the effect; a decision whose interval holds 0 is marked as not resolved."""
    rows, seen = [], set()
    for c in comps:  # the same pair can come from two runs (corners and temperature): once
        axis = c["name"].split(" ", 1)[0]
        if axis in _DECISIONS and None not in c["difference_ci95"] \
                and (c["name"], c["a"], c["b"]) not in seen:
            seen.add((c["name"], c["a"], c["b"]))
            rows.append((abs(c["difference_mean"]), axis, c))
    if not rows:
        return
    w("\n### Which circuit decision moved accuracy\n")
    w("Paired on the same chips and images; sorted by the size of the effect. *resolved*: the "
      "95 % interval excludes 0.\n")
    w("| decision | change | baseline | difference (points) | resolved | images x chips |\n"
      "|---|---|---|---|---|---|")
    for _, axis, c in sorted(rows, key=lambda t: -t[0]):
        lo, hi = c["difference_ci95"]
        change = c["name"].split(" ", 1)[1] if " " in c["name"] else c["name"]
        w(f"| {_DECISIONS[axis]} | {change} | {c['b']} | {100 * c['difference_mean']:+.1f} "
          f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | {'yes' if lo > 0 or hi < 0 else 'no'} | "
          f"{c.get('n_images')} x {c.get('chips')} |")


def _count(x: Any) -> str:
    v = _f(x)
    return "-" if v is None else f"{v:,.0f}"


def _n(x: Any, digits: int = 3) -> str:
    v = _f(x)
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if abs(v) >= 10 ** -digits or v == 0 else f"{v:.2e}"
