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


class ConfigError(CharacterizationError, ValueError):
    """A plan, preset, config value or argument is wrong; the message names file, key or
    value (the CLI exits 2)."""


class ModelCheckError(ConfigError):
    """A user's model library does not simulate (or reads outside its range) in the one-cell
    check; keeps the SPICE failure's deck and offending line instead of flattening them.

    Attributes:
        library: The model library file.
        deck_path: The deck ngspice saved for the failing check, when it ran.
        offending_line: The line ngspice complained about, when it named one.
    """

    def __init__(self, message: str, *, library: object = None, deck_path: object = None,
                 offending_line: str | None = None) -> None:
        super().__init__(message)
        self.library = library
        self.deck_path = deck_path
        self.offending_line = offending_line


class SweepSpecError(CharacterizationError, ValueError):
    """A sweep specification (TOML or Python) is wrong; the message names file and key."""


class SweepError(CharacterizationError, RuntimeError):
    """A sweep failed as a whole (every point failed, or --strict and some failed)."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep; the message says how many points are stored (a re-run resumes
    from them). A ``KeyboardInterrupt``: the command line prints it as one line, exit 130."""


class LegacyLookupWarning(UserWarning):
    """A lookup file of an older schema version was migrated on reading."""
