"""Errors of the fitting package (under ``CharacterizationError``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import CharacterizationError


class FitError(CharacterizationError, RuntimeError):
    """A fit could not start or not finish (no simulation at the start point, bad bounds)."""


class MeasurementFormatError(CharacterizationError, ValueError):
    """A measurement CSV breaks the format of docs/fitting.md.

    Attributes:
        path: The file.
        row: 1-based line number in the file (the header is line 1), or ``None``.
        column: The column's header name, or ``None``.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, row: int | None = None,
                 column: str | None = None) -> None:
        where = []
        if path is not None:
            where.append(str(path))
        if row is not None:
            where.append(f"line {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")
        self.path = Path(path) if path is not None else None
        self.row = row
        self.column = column
