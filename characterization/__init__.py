"""characterization: sweeps over PVT and Monte Carlo, extraction, fitting, lookup models."""

from __future__ import annotations

from .errors import CharacterizationError, ExtrapolationError, LookupFormatError, SweepError

__all__ = ["CharacterizationError", "ExtrapolationError", "LookupFormatError", "SweepError"]
