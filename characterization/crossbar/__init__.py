"""1T1R RRAM crossbar column: netlists, point functions, reduction to lookup tables.

Public API: ``ColumnConfig``, ``WriteConfig``, ``column_deck``, ``write_bench_deck``,
``rram_lib_path``, ``check_rram_lib``, ``make_plan``, ``characterize_crossbar``,
``rram_provenance``, ``fit_write_noise_k``, ``PRESETS``. See docs/crossbar.md.
"""

from __future__ import annotations

from .netlist import (
    ColumnConfig,
    WriteConfig,
    check_rram_lib,
    column_deck,
    rram_lib_path,
    write_bench_deck,
)
from .reduce import fit_write_noise_k
from .run import (
    PRESETS,
    CrossbarRun,
    build_tables,
    characterize_crossbar,
    make_plan,
    rram_provenance,
)

__all__ = ["PRESETS", "ColumnConfig", "CrossbarRun", "WriteConfig", "build_tables",
           "characterize_crossbar", "check_rram_lib", "column_deck", "fit_write_noise_k",
           "make_plan", "rram_lib_path", "rram_provenance", "write_bench_deck"]
