"""Lookup models: the versioned HDF5 files between characterization and nnsim.

Imports neither PySpice nor ngspice.
"""

from __future__ import annotations

from ..errors import ExtrapolationError, LegacyLookupWarning, LookupFormatError, LookupVersionError
from . import names
from .io import (
    FORMAT,
    MISSING,
    PADDING,
    SCHEMA_VERSION,
    VALID,
    Failure,
    LookupFile,
    Table,
    read_lookup,
    read_lookups,
    sha256_file,
    write_lookup,
)

__all__ = [
    "FORMAT", "MISSING", "PADDING", "SCHEMA_VERSION", "VALID", "ExtrapolationError",
    "Failure", "LegacyLookupWarning", "LookupFile", "LookupFormatError", "LookupVersionError",
    "Table", "names", "read_lookup", "read_lookups", "sha256_file", "write_lookup",
]
