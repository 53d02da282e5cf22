"""Process, voltage and temperature (PVT) corners."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ProcessCorner(StrEnum):
    """Global CMOS corner named (NMOS, PMOS): ``FS`` is fast-N, slow-P."""

    TT = "tt"
    FF = "ff"
    SS = "ss"
    FS = "fs"
    SF = "sf"


@dataclass(frozen=True, slots=True)
class PVTCorner:
    """One process/voltage/temperature operating point.

    Attributes:
        process: Global corner; selects the ``.lib`` section of the model file.
        vdd_v: Supply voltage, volts.
        temp_c: Junction temperature, degrees Celsius.
    """

    process: ProcessCorner
    vdd_v: float
    temp_c: float

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "process", ProcessCorner(str(self.process).lower()))
        except ValueError:
            names = ", ".join(c.value for c in ProcessCorner)
            raise ValueError(
                f"process corner must be one of {names}; got {self.process!r}") from None
        if not 0.0 < float(self.vdd_v) < 5.0:
            raise ValueError(f"vdd_v must lie in (0, 5) V, got {self.vdd_v!r}")
        if not -55.0 <= float(self.temp_c) <= 175.0:
            raise ValueError(f"temp_c must lie in [-55, 175] degC, got {self.temp_c!r}")
        object.__setattr__(self, "vdd_v", float(self.vdd_v))
        object.__setattr__(self, "temp_c", float(self.temp_c))

    @property
    def key(self) -> str:
        """Stable name for run directories and HDF5 groups, e.g. ``ss_1p800v_m40c``."""
        vdd = f"{self.vdd_v:.3f}".replace(".", "p")
        temp = f"{self.temp_c:g}".replace("-", "m").replace(".", "p")
        return f"{self.process.value}_{vdd}v_{temp}c"


NOMINAL = PVTCorner(ProcessCorner.TT, 1.8, 27.0)
"""sky130 1.8 V devices at room temperature."""
