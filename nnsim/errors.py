"""The simulator's errors: one root, ``NnsimError``, whose subclasses say what failed.

``imc.cli.common.exit_code_for`` maps every ``NnsimError`` to exit status 2 (bad input): a
lookup file that lacks a table, a corner that was not characterized, a model the converter
does not know, a dataset split that is missing. The old names stay importable where they
were (``nnsim.hardware.HardwareModelError``, ``nnsim.hardware.NotCharacterizedError``,
``nnsim.convert.ModuleConversionError``).

Each error keeps the message it was raised with and, where known, the structured facts
(``file``, ``table``, ``corner``, ``split``) as attributes, so a caller can report them
without parsing text.
"""

from __future__ import annotations

from typing import Any


class NnsimError(Exception):
    """Root of the simulator's errors (bad input to the simulator: exit status 2).

    Attributes:
        file: The file (or files, comma separated) involved, or None.
        table: The lookup table involved, or None.
        corner: The PVT point / setting involved (a dict or a string), or None.
    """

    exit_code = 2

    def __init__(self, message: str = "", *, file: str | None = None, table: str | None = None,
                 corner: Any = None) -> None:
        super().__init__(message)
        self.file, self.table, self.corner = file, table, corner

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class HardwareModelError(NnsimError, ValueError):
    """A lookup file lacks what the hardware model needs, or a setting was not characterized."""


class NotCharacterizedError(HardwareModelError, KeyError):
    """A categorical setting (e.g. a process corner) that the lookup files do not hold.

    Also a ``KeyError`` (what ``Table.sel`` raises) for callers that catch that; its message
    is printed as is, naming the files, the table and the characterized values.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ModuleConversionError(NnsimError, TypeError):
    """The model has nothing ``convert_to_analog`` knows how to convert."""


class MissingSplitError(NnsimError, FileNotFoundError):
    """A dataset split that a calibrating step needs is not there (no fallback to test data).

    Attributes:
        split: The missing split (``calib``, ``test``, ...).
    """

    def __init__(self, message: str, *, split: str, file: str | None = None) -> None:
        super().__init__(message, file=file)
        self.split = split


class CalibrationError(NnsimError, RuntimeError):
    """A calibrated setting (K/V range, moment variance) was used before its calibration."""
