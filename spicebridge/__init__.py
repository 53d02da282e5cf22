"""spicebridge: Python <-> ngspice. Engines, netlist templates, PVT corners, results, errors."""

from __future__ import annotations

from .corners import NOMINAL, ProcessCorner, PVTCorner
from .engines import BatchEngine, Engine, LoadedCircuit, SharedEngine, create_engine
from .errors import (
    ConvergenceError,
    EngineCrashedError,
    NetlistError,
    ParseError,
    SimulationError,
    SimulationTimeoutError,
    SimulatorUnavailableError,
    SpiceBridgeError,
)
from .netlist import NetlistTemplate, netlist_dir, netlist_path, sky130_include
from .rawfile import read_raw
from .results import Plot, SimResult

__version__ = "0.1.0"

__all__ = [
    "NOMINAL", "BatchEngine", "ConvergenceError", "Engine", "EngineCrashedError",
    "LoadedCircuit", "NetlistError", "NetlistTemplate", "PVTCorner", "ParseError", "Plot",
    "ProcessCorner", "SharedEngine", "SimResult", "SimulationError", "SimulationTimeoutError",
    "SimulatorUnavailableError", "SpiceBridgeError", "__version__", "create_engine",
    "netlist_dir", "netlist_path", "read_raw", "sky130_include",
]
