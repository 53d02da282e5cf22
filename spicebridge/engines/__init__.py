"""Engines that run SPICE decks: in-process libngspice and ``ngspice -b``."""

from __future__ import annotations

from .base import Engine, LoadedCircuit
from .batch import BatchEngine, find_ngspice
from .shared import SharedEngine, find_libngspice

__all__ = ["BatchEngine", "Engine", "LoadedCircuit", "SharedEngine", "create_engine",
           "find_libngspice", "find_ngspice"]


def create_engine(name: str = "shared", **kwargs) -> Engine:
    """``"shared"`` (in-process, fast) or ``"batch"`` (one process per run, isolated).

    Raises:
        ValueError: Unknown engine name.
    """
    if name == "shared":
        return SharedEngine(**kwargs)
    if name == "batch":
        return BatchEngine(**kwargs)
    raise ValueError(f"engine must be 'shared' or 'batch', got {name!r}")
