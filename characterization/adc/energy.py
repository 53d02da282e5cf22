"""Energy per inference as a sum of parts, each naming its source.

The ADC parts come from ``adc/energy_breakdown_j`` (see ``characterize.ENERGY_SOURCES``):
comparator (SPICE supply current), DAC reference and sampling drive (closed-form charge,
assumptions named), SAR logic (estimate with a named assumption). The crossbar read (array +
TIA + drivers) belongs to the crossbar characterization; while its lookup has no read-energy
table, the breakdown lists it under ``not_included`` instead of inventing a number.
"""

from __future__ import annotations

import math
from typing import Any

CROSSBAR_READ_MISSING = ("crossbar read (array + TIA + drivers): the crossbar lookup has no "
                         "read-energy table, so it is not included")


def energy_per_inference(conversions_per_inference: float, adc: Any, *,
                         crossbar_parts_j: dict[str, tuple[float, str]] | None = None
                         ) -> dict[str, Any] | None:
    """Energy per inference by part.

    Args:
        conversions_per_inference: ADC conversions per image.
        adc: An object with ``energy_j`` and optionally ``energy_parts_j`` / ``energy_sources``
            (``nnsim.hardware.AdcModel``); ``None`` for an ideal ADC (returns ``None``).
        crossbar_parts_j: Crossbar read energy per conversion by part, ``{name: (J, source)}``,
            when the crossbar characterization provides it.

    Returns:
        ``{"total_j", "conversions_per_inference", "parts": {name: {"j", "j_per_conversion",
        "source"}}, "not_included": [...]}``; the parts sum to ``total_j``. ``None`` when the
        ADC has no characterized energy.
    """
    if adc is None:
        return None
    e_total = float(getattr(adc, "energy_j", math.nan))
    parts_in = dict(getattr(adc, "energy_parts_j", {}) or {})
    sources = dict(getattr(adc, "energy_sources", {}) or {})
    if not parts_in:
        if not math.isfinite(e_total):
            return None
        parts_in = {"adc_total": e_total}
        sources = {"adc_total": "adc/energy_j (file without adc/energy_breakdown_j: not "
                                "broken down)"}
    n = float(conversions_per_inference)
    parts: dict[str, dict[str, Any]] = {}
    for name, e in parts_in.items():
        parts[f"adc_{name}" if name != "adc_total" else name] = {
            "j": n * float(e), "j_per_conversion": float(e),
            "source": sources.get(name, "not stated in the file")}
    not_included = []
    if crossbar_parts_j:
        for name, (e, src) in crossbar_parts_j.items():
            parts[f"crossbar_{name}"] = {"j": n * float(e), "j_per_conversion": float(e),
                                         "source": src}
    else:
        not_included.append(CROSSBAR_READ_MISSING)
    return {"total_j": float(sum(p["j"] for p in parts.values())),
            "conversions_per_inference": n, "parts": parts, "not_included": not_included}
