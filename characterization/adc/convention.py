"""The ADC threshold convention: written once by the characterization, read by one function.

Transition k (between codes k-1 and k) of the ideal ADC lies at ``k - ideal_threshold_k_minus``
LSB. The SAR characterized here is a floor quantizer (``0.0``: transition k at k LSB); a
mid-tread quantizer has ``0.5`` (transition k at k - 0.5). The writer stores the value as the
attribute ``ideal_threshold_k_minus`` of every ``adc/*`` table; every reader (nnsim's hardware
model, the demo pipeline, RAP through the hardware model's ``code_offset``) calls
``ideal_threshold_k_minus`` instead of assuming a default.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from characterization.errors import ConfigError

ATTR = "ideal_threshold_k_minus"
"""Attribute name on the ``adc/*`` tables."""

IDEAL_THRESHOLD_K_MINUS = 0.0
"""The value this characterization writes (floor quantizer)."""

THRESHOLD_CONVENTION = ("floor quantizer: transition k (between codes k-1 and k) of the ideal "
                        "ADC lies at k LSB, LSB = vref_v / 2^bits; input range 0 .. vref_v")


def ideal_threshold_k_minus(attrs: Mapping[str, Any], data: Any = None, *,
                            source: str = "adc/thresholds") -> float:
    """Where the ideal transition k lies, as ``k - value`` LSB (0.0 or 0.5).

    Args:
        attrs: The table's attributes (``ATTR`` is read).
        data: Thresholds ``(..., code)`` in LSB, code axis last, starting at transition 1;
            used only for files written before the attribute existed (judged from the median
            deviation from ``k``, with a warning naming ``source``).
        source: Name used in messages (file and table).

    Raises:
        ValueError: The attribute is not 0.0 or 0.5, or it is missing and no data was given.
    """
    said = attrs.get(ATTR)
    if said is not None:
        v = float(np.asarray(said).reshape(-1)[0])
        if not math.isfinite(v) or v not in (0.0, 0.5):
            raise ConfigError(f"{source}: attribute {ATTR} = {said!r}; expected 0.0 or 0.5")
        return v
    if data is None:
        raise ConfigError(f"{source}: no {ATTR} attribute (threshold convention unknown)")
    a = np.asarray(data, float)
    k = np.arange(1, a.shape[-1] + 1)
    dev = a - k
    d = float(np.nanmedian(dev)) if np.isfinite(dev).any() else -0.5
    v = 0.5 if abs(d + 0.5) < abs(d) else 0.0
    warnings.warn(f"{source}: no {ATTR} attribute; threshold convention judged from the data "
                  f"as k - {v}", stacklevel=2)
    return v
