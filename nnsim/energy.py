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

Scaling of the array part (the choice, documented in docs/nnsim.md "Energy per inference"):
the array energy is drawn from the read-voltage sources, ``V_read x I_col x t_read``, so it
follows the column current, while the TIA (bias) and the drivers (line charging) cost about the
same per read. The table is characterized on one pattern (attribute ``pattern``). The array
part is scaled by ``I_mean / I_ref`` only when the table says it may be (attribute
``array_scaling = "column_current"`` with the pattern's column current ``i_col_a``) *and* the
caller passes the simulated mean column current; otherwise every part is taken per read, at
the characterized pattern's current, and the part's ``scaling`` field says so.

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
SCALE_CURRENT = "column_current"


@dataclass(frozen=True)
class CrossbarReadEnergy:
    """``crossbar/read_energy_j`` at one PVT point: energy per column read by part.

    Attributes:
        parts_j: Part -> J per column read (array, tia, drivers), at the corner.
        sources: Part -> where it comes from (table, corner, file, the table's source note).
        t_read_s: The read window the supply currents were integrated over (attribute).
        rows: Rows of the characterized column (attribute).
        pattern: The cell pattern it was characterized on (attribute), e.g. ``random``.
        array_scaling: ``"column_current"`` if the table says its array part scales with the
            column current (with ``i_ref_a``), else ``"per_read"``.
        i_ref_a: Column current of the characterized pattern (attribute ``i_col_a``) or None.
        notes: The table's scaling notes (attribute ``scaling``), verbatim.
    """

    parts_j: dict[str, float]
    sources: dict[str, str]
    t_read_s: float | None = None
    rows: int | None = None
    pattern: str = ""
    array_scaling: str = SCALE_PER_READ
    i_ref_a: float | None = None
    notes: str = ""
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def total_j(self) -> float:
        """J per column read, all parts."""
        return float(sum(self.parts_j.values()))

    @classmethod
    def from_table(cls, t: Any, where: str, src: str) -> CrossbarReadEnergy:
        """From the table selected at one point (dims ``(part,)``).

        Args:
            t: ``crossbar/read_energy_j`` after selecting the PVT point (a ``Table``).
            where: The point, for the sources (e.g. ``tt/1.8 V/27 degC``).
            src: The file(s), for the sources.

        Raises:
            ValueError: A part value is not finite and >= 0, or the table has no ``part`` axis.
        """
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
            note = a.get(f"source_{p}", "crossbar characterization's SPICE supply currents")
            sources[p] = f"{t.name} [part={p}] at {where} ({src}): {note}"
        t_read = a.get("t_read_s")
        i_ref = a.get("i_col_a")
        scaling = str(a.get("array_scaling", SCALE_PER_READ))
        ok_ref = i_ref is not None and math.isfinite(float(i_ref)) and float(i_ref) > 0
        return cls(parts, sources,
                   t_read_s=None if t_read is None else float(t_read),
                   rows=None if a.get("rows") is None else int(a["rows"]),
                   pattern=str(a.get("pattern", "")),
                   array_scaling=SCALE_CURRENT if scaling == SCALE_CURRENT and ok_ref
                   else SCALE_PER_READ,
                   i_ref_a=float(i_ref) if ok_ref else None,
                   notes=str(a.get("scaling", "")), attrs=a)


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
        mean_column_current_a: The simulated mean column current per read, A; used only
            where the table allows scaling the array part with it (module docstring).

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
                          "scaling": SCALE_PER_READ, "source": adc_p[1][name]})
    if crossbar is None:
        missing.append(CROSSBAR_NOT_CHARACTERIZED)
    else:
        for name, e in crossbar.parts_j.items():
            scale, how = 1.0, (f"per column read at the characterized pattern "
                               f"({crossbar.pattern or 'pattern not stated'}"
                               f"{f', {crossbar.rows} rows' if crossbar.rows else ''})")
            if name == "array" and crossbar.array_scaling == SCALE_CURRENT:
                if mean_column_current_a is not None and math.isfinite(mean_column_current_a):
                    scale = float(mean_column_current_a) / float(crossbar.i_ref_a)
                    how = (f"scaled by the simulated mean column current "
                           f"{mean_column_current_a:.4g} A / the pattern's {crossbar.i_ref_a:.4g}"
                           " A")
                else:
                    how += "; the table allows current scaling but no simulated current was given"
            parts.append({"part": f"crossbar/{name}", "j_per_inference": n_read * e * scale,
                          "j_per_event": e * scale, "events_per_inference": n_read,
                          "event": "column read", "scaling": how,
                          "source": crossbar.sources.get(name, CROSSBAR_READ_ENERGY)})
    if adc_p is None and crossbar is None:
        return None
    return {"total_j": float(sum(p["j_per_inference"] for p in parts)),
            "complete": not missing, "conversions_per_inference": n_conv,
            "column_reads_per_inference": n_read, "parts": parts,
            "not_characterized": missing}


def format_breakdown(b: dict[str, Any] | None, unit: str = "nJ") -> list[str]:
    """Text lines of a breakdown (the CLI's and the report's wording): the total, then each
    part with its share, then what is not characterized."""
    if not b:
        return ["energy per inference: not characterized"]
    f = {"pJ": 1e12, "nJ": 1e9, "uJ": 1e6}[unit]
    tot = b["total_j"]
    head = (f"energy per inference: {f * tot:.4g} {unit}"
            + ("" if b.get("complete", True) else " (incomplete: see below)"))
    out = [head]
    for p in b["parts"]:
        share = p["j_per_inference"] / tot if tot > 0 else float("nan")
        out.append(f"  {p['part']:<22} {f * p['j_per_inference']:>10.4g} {unit} "
                   f"({100 * share:4.1f} %; {p['j_per_event'] * 1e12:.4g} pJ x "
                   f"{p['events_per_inference']:.4g} {p['event']}s) - {p['source']}")
    for m in b.get("not_characterized", []):
        out.append(f"  not characterized: {m}")
    return out
