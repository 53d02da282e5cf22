"""Sweep engine: parallel (loky, Dask), resumable, seeded characterization runs.

A ``SweepSpec`` is a grid of axes x Monte-Carlo repeats measured by a point function;
``run_sweep`` runs it on worker processes, stores finished chunks so a killed run resumes, and
writes one lookup HDF5 (``characterization.lookup``) with dims ``(*axes, "mc", *extra)``.
``load_spec`` reads the TOML form for users' own netlists (docs/sweeps.md).
"""

from __future__ import annotations

from .run import SweepResult, clear_worker_cache, run_chunk, run_sweep, worker_cache
from .spec import SEEDING_RULE, SweepPoint, SweepSpec, point_seed
from .toml_spec import load_spec

__all__ = [
    "SEEDING_RULE", "SweepPoint", "SweepResult", "SweepSpec", "clear_worker_cache",
    "load_spec", "point_seed", "run_chunk", "run_sweep", "worker_cache",
]

