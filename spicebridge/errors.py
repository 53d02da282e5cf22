"""Error hierarchy of spicebridge: every error carries what is needed to reproduce it."""

from __future__ import annotations

from pathlib import Path


class SpiceBridgeError(Exception):
    """Root of every error raised by spicebridge."""


class NetlistError(SpiceBridgeError, ValueError):
    """A netlist or template is missing, malformed, or rendered with wrong parameters."""


class UnsafeDeckError(NetlistError):
    """Data would execute something: a ``.control`` block or ``shell`` line in an included
    model file, or a spec field that is not the name or number it should be.

    Attributes:
        path: The file that was refused, when one was.
    """

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self):  # picklable across loky / dask workers
        return (type(self), (self.args[0],), {"path": self.path})


class SimulatorUnavailableError(SpiceBridgeError, RuntimeError):
    """The ngspice shared library or binary cannot be found or loaded."""


class SimulationError(SpiceBridgeError, RuntimeError):
    """ngspice ran but reported a failure; the deck was saved to ``deck_path`` first.

    Attributes:
        deck_path: Where the failing deck was written, to re-run it by hand.
        log: ngspice's messages (stdout and stderr) for this run.
        corner_key: The PVT corner key of the run, when known.
        offending_line: The deck line ngspice complained about, when it named one.
    """

    def __init__(
        self,
        message: str,
        *,
        deck_path: Path | None,
        log: str,
        corner_key: str | None = None,
        offending_line: str | None = None,
    ) -> None:
        super().__init__(message)
        self.deck_path = deck_path
        self.log = log
        self.corner_key = corner_key
        self.offending_line = offending_line

    def __reduce__(self):  # picklable across loky / dask workers
        return (
            _rebuild_simulation_error,
            (type(self), self.args[0], self.deck_path, self.log, self.corner_key,
             self.offending_line),
        )

    def __str__(self) -> str:
        where = f" [{self.corner_key}]" if self.corner_key else ""
        parts = [f"{self.args[0]}{where}"]
        if self.offending_line:
            parts.append(f"  offending line: {self.offending_line}")
        if self.deck_path is not None:
            parts.append(f"  deck: {self.deck_path}")
        tail = "\n".join("    " + (ln if len(ln) <= 240 else ln[:240] + " ...")
                         for ln in self.log.strip().splitlines()[-15:])
        if tail:
            parts.append(f"  ngspice log (tail):\n{tail}")
        return "\n".join(parts)


def _rebuild_simulation_error(cls, message, deck_path, log, corner_key, offending_line):
    return cls(message, deck_path=deck_path, log=log, corner_key=corner_key,
               offending_line=offending_line)


class ParseError(SimulationError):
    """ngspice rejected the deck while parsing it."""


class ConvergenceError(SimulationError):
    """The analysis did not converge, also after the standard remedies were tried."""


class SimulationTimeoutError(SimulationError, TimeoutError):
    """The analysis ran longer than its timeout and was stopped."""


class EngineCrashedError(SimulationError):
    """The simulator process or shared library died or asked to exit during a run."""


class RawFileError(SpiceBridgeError, ValueError):
    """A SPICE raw file is truncated or not in the binary raw format."""
