"""SPICE number syntax (``1.5k``, ``10meg``, ``2n``)."""

from __future__ import annotations

import re

_SUFFIX = {"t": 1e12, "g": 1e9, "meg": 1e6, "k": 1e3, "mil": 25.4e-6, "m": 1e-3, "u": 1e-6,
           "n": 1e-9, "p": 1e-12, "f": 1e-15, "a": 1e-18}
_NUM_RE = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)(meg|mil|[tgkmunpfa])?[a-z]*$",
                     re.IGNORECASE)


def parse_spice_number(text: str) -> float:
    """Parse a SPICE number with its scale suffix (``10meg`` -> 1e7, ``5ns`` -> 5e-9).

    Raises:
        ValueError: Not a SPICE number.
    """
    m = _NUM_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a SPICE number: {text!r}")
    mult = _SUFFIX[m.group(2).lower()] if m.group(2) else 1.0
    return float(m.group(1)) * mult
