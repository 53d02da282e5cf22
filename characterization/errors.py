"""Error hierarchy of characterization."""

from __future__ import annotations


class CharacterizationError(Exception):
    """Root of every error raised by characterization."""


class LookupFormatError(CharacterizationError, OSError):
    """A file is not a lookup model, is truncated, or breaks the format's rules."""


class LookupVersionError(LookupFormatError):
    """A lookup file uses a schema version newer than this reader knows."""


class ExtrapolationError(CharacterizationError, ValueError):
    """A value lies outside the characterized range of an axis; extrapolation is refused."""


class SweepSpecError(CharacterizationError, ValueError):
    """A sweep specification (TOML or Python) is wrong; the message names file and key."""


class SweepError(CharacterizationError, RuntimeError):
    """A sweep failed as a whole (every point failed, or --strict and some failed)."""


class LegacyLookupWarning(UserWarning):
    """A lookup file of an older schema version was migrated on reading."""
