"""Lookup models: the versioned HDF5 files between characterization and nnsim.

Imports neither PySpice nor ngspice.
"""

from __future__ import annotations

from ..errors import ExtrapolationError, LegacyLookupWarning, LookupFormatError, LookupVersionError
from .io import (
    FORMAT,
    SCHEMA_VERSION,
    Failure,
    LookupFile,
    Table,
    read_lookup,
    read_lookups,
    write_lookup,
)

__all__ = [
    "FORMAT", "SCHEMA_VERSION", "ExtrapolationError", "Failure", "LegacyLookupWarning",
    "LookupFile", "LookupFormatError", "LookupVersionError", "Table", "read_lookup",
    "read_lookups", "write_lookup",
]
