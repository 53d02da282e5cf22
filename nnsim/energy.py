"""Energy per inference as a sum of named parts, each naming its source.

One function, ``energy_per_inference``, for every evaluation that counts conversions (the dense
analog path in ``nnsim.evaluate`` and RAP in ``nnsim.rap``)::

    energy = sum over ADC parts p   of  conversions/inference  x  E_adc[p]   (J / conversion)
           + sum over crossbar parts q of column reads/inference x E_read[q] (J / column read)

* ADC parts: ``adc/energy_breakdown_j`` at the evaluated corner and resolution
  (``AdcModel.energy_parts_j``: comparator, DAC reference, SAR logic, sampling drive; each
  part's source is the table's ``source_<part>`` attribute). A file without the breakdown
  gives one part ``adc/total`` from ``adc/energy_j``, labelled "not broken down".
* Crossbar parts: ``crossbar/read_energy_j`` at the evaluated corner (``CrossbarReadEnergy``:
  array, TIA, drivers; energy per column read over the read window ``t_read_s``, from the
  crossbar characterization's supply currents). A lookup without that table lists the crossbar
  read under ``not_characterized`` and adds nothing: never a silent 0, and ``complete`` is
  False, so the total reads as "ADC only".

Scaling to the simulated read (the choice, documented in docs/nnsim.md "Energy per inference"):
the table is measured on fixed read patterns (attributes ``pattern``, ``pattern_i_ideal_a``:
their mean ideal column current, ``pattern_active_rows``: their mean active rows) and its
``scaling`` attribute says how each part moves with the read: array ``v_read I_col t_read``
(proportional to the column current), TIA ``vdd (tia_iq_a + |I_col|) t_read`` (a fixed
quiescent part plus a part proportional to the current), drivers proportional to the active
rows. A part is scaled only where the table states its rule and carries the reference it needs
*and* the caller passes the simulated quantity (``mean_column_current_a``,
``mean_active_rows``); otherwise it is taken per read at the characterized pattern, and the
part's ``scaling`` field says which was done. The dense analog path does not record its column
currents yet, so there every part is per read at the pattern.

For the dense analog path one column read is one conversion (every column read of a bit plane
is converted), so ``column_reads_per_inference`` defaults to the conversion count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from characterization.lookup.names import (
    ADC_ENERGY_BREAKDOWN_J,
    ADC_ENERGY_J,
    CROSSBAR_READ_ENERGY,
)

#: The crossbar read parts the contract names (``crossbar/read_energy_j`` ``part`` axis).
CROSSBAR_PARTS = ("array", "tia", "drivers")
#: ``not_characterized`` entry for a crossbar lookup without the read-energy table.
CROSSBAR_NOT_CHARACTERIZED = (f"crossbar read (array + TIA + drivers): not characterized (the "
                              f"crossbar lookup has no {CROSSBAR_READ_ENERGY} table); the "
                              "total is the ADC only")
#: ``not_characterized`` entry for an ADC without characterized energy (e.g. the ideal ADC).
ADC_NOT_CHARACTERIZED = (f"ADC: not characterized (no {ADC_ENERGY_J} / {ADC_ENERGY_BREAKDOWN_J} "
                         "at this resolution, or an ideal ADC)")
SCALE_PER_READ = "per_read"


@dataclass(frozen=True)
class CrossbarReadEnergy:
    """``crossbar/read_energy_j`` at one PVT point: energy per column read by part.

    Attributes:
        parts_j: Part -> J per column read (array, tia, drivers), at the corner.
        sources: Part -> where it comes from (table, corner, file, the table's source note).
        t_read_s: The read window the supply currents were integrated over (attribute).
        rows: Rows of the characterized column (attribute).
        pattern: The cell patterns it was characterized on (attribute), verbatim.
        scaling: Part -> the table's note on how it scales (attribute ``scaling``).
        i_ref_a: Mean ideal column current of the patterns (``pattern_i_ideal_a``), or None.
        active_rows_ref: Mean active rows of the patterns (``pattern_active_rows``), or None.
        tia_iq_a: The TIA's quiescent current (``tia_iq_a``, an assumption of the
            characterization), or None.
        vdd_v: The supply of the point (for the TIA's fixed part ``vdd tia_iq_a t_read``).
    """

    parts_j: dict[str, float]
    sources: dict[str, str]
    t_read_s: float | None = None
    rows: int | None = None
    pattern: str = ""
    scaling: dict[str, str] = field(default_factory=dict)
    i_ref_a: float | None = None
    active_rows_ref: float | None = None
    tia_iq_a: float | None = None
    vdd_v: float | None = None

    @property
    def total_j(self) -> float:
        """J per column read, all parts."""
        return float(sum(self.parts_j.values()))

    def rule(self, part: str) -> str:
        """How ``part`` may be scaled to the simulated read: ``"current"`` (array),
        ``"quiescent+current"`` (tia), ``"rows"`` (drivers), or ``"per_read"`` where the table
        does not state it or lacks the reference."""
        note = self.scaling.get(part, "").lower()
        if part == "array" and "current" in note and self.i_ref_a:
            return "current"
        if part == "tia" and "current" in note and self.i_ref_a and None not in (
                self.tia_iq_a, self.vdd_v, self.t_read_s):
            return "quiescent+current"
        if part == "drivers" and "rows" in note and self.active_rows_ref:
            return "rows"
        return SCALE_PER_READ

    def at_read(self, part: str, i_col_a: float | None, active_rows: float | None
                ) -> tuple[float, str]:
        """``(J, how)`` of ``part`` for one read with mean ideal current ``i_col_a`` and
        ``active_rows`` (None: not known; then per read at the pattern)."""
        e = self.parts_j[part]
        rule = self.rule(part)
        at_pattern = (f"per read at the characterized pattern (mean "
                      f"{_fmt(self.i_ref_a, 'A')}, {_fmt(self.active_rows_ref, 'active rows')}"
                      f"{f', {self.rows}-row column' if self.rows else ''})")
        if rule == "current" and _ok(i_col_a):
            return e * i_col_a / self.i_ref_a, (f"x simulated mean column current "
                                                f"{i_col_a:.4g} A / the pattern's "
                                                f"{self.i_ref_a:.4g} A")
        if rule == "quiescent+current" and _ok(i_col_a):
            fixed = min(e, float(self.vdd_v) * float(self.tia_iq_a) * float(self.t_read_s))
            return fixed + (e - fixed) * i_col_a / self.i_ref_a, (
                f"quiescent {fixed * 1e12:.4g} pJ + the rest x simulated mean column current "
                f"{i_col_a:.4g} A / the pattern's {self.i_ref_a:.4g} A")
        if rule == "rows" and _ok(active_rows):
            return e * active_rows / self.active_rows_ref, (
                f"x simulated mean active rows {active_rows:.4g} / the pattern's "
                f"{self.active_rows_ref:.4g}")
        if rule != SCALE_PER_READ:
            at_pattern += f"; the table allows scaling ({rule}), the simulator gave no value"
        return e, at_pattern

    @classmethod
    def from_table(cls, t: Any, where: str, src: str, vdd_v: float | None = None
                   ) -> CrossbarReadEnergy:
        """From the table selected at one point (dims ``(part,)``).

        Args:
            t: ``crossbar/read_energy_j`` after selecting the PVT point (a ``Table``).
            where: The point, for the sources (e.g. ``tt/1.8 V/27 degC``).
            src: The file(s), for the sources.
            vdd_v: The point's supply (the TIA's fixed part).

        Raises:
            ValueError: A part value is not finite and >= 0, or the table has no ``part`` axis.
        """
        import json

        import numpy as np

        if "part" not in t.dims:
            raise ValueError(f"{src}: table {t.name!r} has no 'part' axis (dims {t.dims})")
        data = np.asarray(t.data, float).reshape(-1)
        names = [str(p) for p in t.coords["part"]]
        if data.size != len(names):
            raise ValueError(f"{src}: table {t.name!r} at {where}: expected one value per "
                             f"part {names}, got shape {np.shape(t.data)}")
        a = dict(t.attrs)
        parts, sources = {}, {}
        for p, e in zip(names, data, strict=True):
            if not (math.isfinite(e) and e >= 0):
                raise ValueError(f"{src}: table {t.name!r} at {where}, part={p}: {e} J is "
                                 "not a finite energy >= 0")
            parts[p] = float(e)
            note = a.get(f"source_{p}") or _default_source(p, a)
            sources[p] = f"{t.name} [part={p}] at {where}: {note} ({src})"
        sc = a.get("scaling", {})
        if isinstance(sc, str):
            try:
                sc = json.loads(sc)
            except ValueError:
                sc = {}
        sc = {str(k): str(v) for k, v in sc.items()} if isinstance(sc, dict) else {}
        return cls(parts, sources, t_read_s=_num_attr(a, "t_read_s"),
                   rows=None if a.get("rows") is None else int(a["rows"]),
                   pattern=str(a.get("pattern", "")), scaling=sc,
                   i_ref_a=_num_attr(a, "pattern_i_ideal_a"),
                   active_rows_ref=_num_attr(a, "pattern_active_rows"),
                   tia_iq_a=_num_attr(a, "tia_iq_a"),
                   vdd_v=None if vdd_v is None else float(vdd_v))


def _default_source(part: str, a: dict[str, Any]) -> str:
    """A part's source where the table has no ``source_<part>`` attribute (the crossbar
    writer's description: each part a supply's delivered energy in the column transient)."""
    if part == "array":
        return ("SPICE: the bit-line read driver's v_read * I over t_read in the column "
                "transient (cells, wires, access devices)")
    if part == "tia":
        iq = a.get("tia_iq_a")
        return ("SPICE + assumption: vdd * |I_out| from the column transient plus vdd * "
                f"tia_iq_a, the behavioural op-amp's quiescent current "
                f"{'' if iq is None else f'{float(iq):.3g} A '}(an assumption, not a circuit "
                "result), over t_read")
    if part == "drivers":
        return ("SPICE: the word-line drivers' vdd * I in the column transient (the access "
                "transistors' gate charge; word-line wire capacitance not modelled)")
    return "SPICE: crossbar characterization (crossbar/read_energy_j; no source attribute)"


def _ok(x: float | None) -> bool:
    return x is not None and math.isfinite(float(x))


def _num_attr(a: dict[str, Any], key: str) -> float | None:
    try:
        v = float(a[key])
    except (KeyError, TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _fmt(x: float | None, unit: str) -> str:
    return "? " + unit if x is None else f"{x:.4g} {unit}"


def _adc_parts(adc: Any) -> tuple[dict[str, float], dict[str, str]] | None:
    """``{part: J/conversion}``, ``{part: source}`` of an ADC model, or None if it has no
    characterized energy."""
    if adc is None:
        return None
    parts = {str(k): float(v) for k, v in (getattr(adc, "energy_parts_j", {}) or {}).items()}
    srcs = dict(getattr(adc, "energy_sources", {}) or {})
    if parts:
        return ({f"adc/{k}": v for k, v in parts.items()},
                {f"adc/{k}": f"{ADC_ENERGY_BREAKDOWN_J} [part={k}]: "
                             f"{srcs.get(k, 'source not stated in the file')}" for k in parts})
    e = float(getattr(adc, "energy_j", math.nan) if getattr(adc, "energy_j", None) is not None
              else math.nan)
    if not math.isfinite(e):
        return None
    return ({"adc/total": e}, {"adc/total": f"{ADC_ENERGY_J} (the file has no "
                                            f"{ADC_ENERGY_BREAKDOWN_J}: not broken down)"})


def energy_per_inference(conversions_per_inference: float, adc: Any,
                         crossbar: CrossbarReadEnergy | None = None, *,
                         column_reads_per_inference: float | None = None,
                         mean_column_current_a: float | None = None,
                         mean_active_rows: float | None = None,
                         ) -> dict[str, Any] | None:
    """Energy per inference by part, each with its source.

    Args:
        conversions_per_inference: ADC conversions per image (as counted by the simulator).
        adc: The ADC at the evaluated corner and resolution (``nnsim.hardware.AdcModel``:
            ``energy_parts_j``, ``energy_sources``, ``energy_j``), or None (no ADC).
        crossbar: The crossbar read energy at the evaluated corner
            (``HardwareModel.read_energy``), or None: the lookup has no
            ``crossbar/read_energy_j`` (listed under ``not_characterized``).
        column_reads_per_inference: Column reads per image; default the conversion count
            (dense analog: one conversion per column read).
        mean_column_current_a: The simulated mean ideal column current per read, A (scales
            the array and TIA parts where the table allows it; module docstring).
        mean_active_rows: The simulated mean active rows per read (scales the drivers).

    Returns:
        None when neither the ADC nor the crossbar has a characterized energy; else
        ``{"total_j", "complete", "conversions_per_inference", "column_reads_per_inference",
        "parts": [{"part", "j_per_inference", "j_per_event", "events_per_inference",
        "event", "scaling", "source"}], "not_characterized": [...]}``. ``total_j`` is the
        sum of the parts' ``j_per_inference``; ``complete`` is False when a part of the read
        chain is not characterized (the total then leaves it out, and says so).
    """
    n_conv = float(conversions_per_inference)
    n_read = n_conv if column_reads_per_inference is None else float(column_reads_per_inference)
    parts: list[dict[str, Any]] = []
    missing: list[str] = []
    adc_p = _adc_parts(adc)
    if adc_p is None:
        missing.append(ADC_NOT_CHARACTERIZED)
    else:
        for name, e in adc_p[0].items():
            parts.append({"part": name, "j_per_inference": n_conv * e, "j_per_event": e,
                          "events_per_inference": n_conv, "event": "conversion",
                          "scaling": "per conversion at the evaluated corner and resolution",
                          "source": adc_p[1][name]})
    if crossbar is None:
        missing.append(CROSSBAR_NOT_CHARACTERIZED)
    else:
        for name in crossbar.parts_j:
            e, how = crossbar.at_read(name, mean_column_current_a, mean_active_rows)
            parts.append({"part": f"crossbar/{name}", "j_per_inference": n_read * e,
                          "j_per_event": e, "events_per_inference": n_read,
                          "event": "column read", "scaling": how,
                          "source": crossbar.sources.get(name, CROSSBAR_READ_ENERGY)})
    if adc_p is None and crossbar is None:
        return None
    return {"total_j": float(sum(p["j_per_inference"] for p in parts)),
            "complete": not missing, "conversions_per_inference": n_conv,
            "column_reads_per_inference": n_read, "parts": parts,
            "not_characterized": missing}


def short_source(source: str) -> str:
    """``table [part=p]: KIND`` of a part's source (KIND: the note's first word where it is one
    of SPICE / formula / estimate, as the characterization writes them), for one-line output."""
    head, _, note = source.partition(": ")
    kind = note.split(":", 1)[0].strip()
    return f"{head}: {kind}" if kind in ("SPICE", "formula", "estimate",
                                          "SPICE + assumption") else head


_UNITS = {"pJ": 1e12, "nJ": 1e9, "uJ": 1e6, "mJ": 1e3}


def auto_unit(total_j: float) -> str:
    """The unit that puts ``total_j`` between 1 and 1000 (pJ .. mJ)."""
    for u, lim in (("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9)):
        if abs(total_j) >= lim:
            return u
    return "pJ"


def format_breakdown(b: dict[str, Any] | None, unit: str | None = None, *,
                     full_sources: bool = False) -> list[str]:
    """Text lines of a breakdown (the CLI's wording): the total, then each part with its
    share and source (``short_source`` unless ``full_sources``), then what is not
    characterized."""
    if not b:
        return ["energy per inference: not characterized"]
    tot = b["total_j"]
    unit = unit or auto_unit(tot)
    f = _UNITS[unit]
    out = [f"energy per inference: {f * tot:.4g} {unit}"
           + ("" if b.get("complete", True) else " (incomplete: see 'not characterized')")]
    for p in b["parts"]:
        share = p["j_per_inference"] / tot if tot > 0 else float("nan")
        src = p["source"] if full_sources else short_source(p["source"])
        out.append(f"  {p['part']:<20} {f * p['j_per_inference']:>9.4g} {unit} "
                   f"({100 * share:4.1f} %; {p['j_per_event'] * 1e12:.4g} pJ x "
                   f"{p['events_per_inference']:.4g} {p['event']}s) - {src}")
    for m in b.get("not_characterized", []):
        out.append(f"  not characterized: {m}")
    return out


def format_breakdown_line(b: dict[str, Any] | None, unit: str | None = None) -> str:
    """One line: the total and each part (for a sweep's per-point output); the sources are in
    the JSON (``parts[].source``) and in ``format_breakdown``."""
    if not b:
        return "energy per inference: not characterized"
    unit = unit or auto_unit(b["total_j"])
    f = _UNITS[unit]
    parts = " + ".join(f"{p['part']} {f * p['j_per_inference']:.4g}" for p in b["parts"])
    miss = "".join(f"; {m.split(':')[0]}: not characterized"
                   for m in b.get("not_characterized", []))
    return f"energy per inference {f * b['total_j']:.4g} {unit} = {parts} ({unit}){miss}"
