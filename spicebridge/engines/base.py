"""The engine interface, shared by the in-process and the batch engine."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import ConvergenceError, ParseError, SimulationError
from ..results import SimResult

# ngspice's words for a failed analysis, and those that mean "did not converge".
_FAIL_RE = re.compile(
    r"(^|\s)(error|fatal)\b|simulation\(s\) aborted|doAnalyses:|singular matrix|"
    r"timestep too small|no convergence|gmin stepping failed|source stepping failed|"
    r"iteration limit reached",
    re.IGNORECASE,
)
_CONV_RE = re.compile(
    r"timestep too small|no convergence|gmin stepping failed|source stepping failed|"
    r"singular matrix|iteration limit reached|trouble with node",
    re.IGNORECASE,
)
_IGNORE_RE = re.compile(
    r"^\s*(warning|note)\b|no compatibility mode|unsupported ngspice|"
    r"error: \(internal\) ?$|using sparse|background thread",
    re.IGNORECASE,
)

DEFAULT_REMEDIES: tuple[tuple[str, ...], ...] = (
    # 1: more gmin and source steps, more DC iterations
    ("gminsteps=100", "srcsteps=100", "itl1=500", "itl2=200"),
    # 2: Gear integration, more transient iterations, looser tolerance, smaller steps
    ("method=gear", "itl4=100", "reltol=0.003", "gminsteps=100", "srcsteps=100", "itl1=500"),
)
"""Options tried, in order, after a run fails to converge (ngspice's standard remedies).
Remedy 2 also halves the transient step and caps the maximum step."""

RESTORE_OPTIONS = ("gminsteps=10", "srcsteps=10", "itl1=100", "itl2=50", "itl4=10",
                   "reltol=0.001", "method=trap")


def failure_lines(log: str) -> list[str]:
    """Lines of ngspice's log that report a failure (warnings excluded)."""
    out = []
    for raw in log.splitlines():
        line = re.sub(r"^(stdout|stderr)\s?", "", raw).strip()
        if line and _FAIL_RE.search(line) and not _IGNORE_RE.search(line):
            out.append(line)
    return out


def offending_line(log: str, deck: str) -> str | None:
    """The deck line ngspice complained about, when its log lets us find it."""
    lines = [re.sub(r"^(stdout|stderr)\s?", "", x) for x in log.splitlines()]
    for i, ln in enumerate(lines):
        m = re.search(r"error on line\s+(\d+)", ln, re.IGNORECASE)
        if m:
            for nxt in lines[i + 1 : i + 3]:
                if nxt.strip():
                    return nxt.strip()
            n = int(m.group(1))
            deck_lines = deck.splitlines()
            if 0 < n <= len(deck_lines):
                return deck_lines[n - 1].strip()
    # "unknown subckt: x1 a b foo", "could not find a valid modelname" -> search the deck
    for ln in lines:
        m = re.search(r"(?:line|instance|device)\s*:?\s*['\"]?([A-Za-z]\w*)", ln)
        if m and re.search(r"error|could not|unknown", ln, re.IGNORECASE):
            name = m.group(1).lower()
            for d in deck.splitlines():
                if d.strip().lower().split()[:1] == [name]:
                    return d.strip()
    return None


def _stderr_words(log: str, skip: str | None) -> str:
    """ngspice's own error words, without the echo of the deck line."""
    out: list[str] = []
    for raw in log.splitlines():
        if not raw.startswith("stderr"):
            continue
        line = raw[6:].strip()
        if not line or (skip and line.lower() == skip.lower()) or line in out:
            continue
        low = line.lower()
        if low.startswith(("note", "or no active", "simulation interrupted", "error: circuit not")):
            continue
        if _IGNORE_RE.search(line) and not low.startswith("warning, can't find"):
            continue
        out.append(line)
    return "; ".join(out[:4])


def classify_failure(
    log: str, deck: str, *, deck_path: Path | None, corner_key: str | None, stage: str
) -> SimulationError:
    """Turn ngspice's log into the right ``SimulationError`` subclass."""
    fails = failure_lines(log)
    words = "; ".join(fails[:3]) if fails else "no result produced"
    if stage == "parse":
        bad = offending_line(log, deck)
        said = _stderr_words(log, skip=bad)
        return ParseError(
            f"ngspice could not parse the deck: {said or words}",
            deck_path=deck_path, log=log, corner_key=corner_key, offending_line=bad,
        )
    if _CONV_RE.search(log):
        return ConvergenceError(
            f"analysis did not converge: {words}",
            deck_path=deck_path, log=log, corner_key=corner_key,
        )
    return SimulationError(
        f"ngspice analysis failed: {words}", deck_path=deck_path, log=log, corner_key=corner_key,
        offending_line=offending_line(log, deck),
    )


def shrink_tran_step(analysis: str) -> str:
    """``tran 1n 100n`` -> ``tran 0.5n 100n 0 0.5n``: half the step, capped maximum step."""
    parts = analysis.split()
    if not parts or parts[0].lower() != "tran" or len(parts) < 3:
        return analysis
    from ..units import parse_spice_number

    try:
        step = parse_spice_number(parts[1]) / 2
    except ValueError:
        return analysis
    rest = [p for p in parts[3:] if p.lower() != "uic"]
    uic = [p for p in parts[3:] if p.lower() == "uic"]
    tstart = rest[0] if rest else "0"
    return " ".join(["tran", f"{step:.6g}", parts[2], tstart, f"{step:.6g}", *uic])


@runtime_checkable
class LoadedCircuit(Protocol):
    """A circuit loaded once and re-run with altered parameters (Monte Carlo, PVT)."""

    def is_valid(self) -> bool:
        """False once this circuit can no longer run (a later load replaced it in the
        process's one libngspice, or ngspice gave up): load the deck again."""

    def alter(self, element: str, value: float | None = None, **params: float) -> None:
        """``alter element = value`` or ``alter element param = value``.

        Raises:
            UnsafeDeckError: ``element``/a parameter is not a name, or a value is not finite.
            SimulationError: ngspice refused it (no such element or parameter), naming it.
        """

    def alterparam(self, name: str, value: float) -> None:
        """Change a ``.param`` of the deck (takes effect at the next run); as ``alter``."""

    def alterparams(self, values: dict[str, float]) -> None:
        """Change several ``.param``s with one ``reset`` after them; as ``alter``."""

    def reset(self) -> None:
        """Re-evaluate the deck's parameters (fresh ``agauss`` draws); undoes ``alter``s."""

    def command(self, cmd: str) -> str:
        """Send one ngspice command (the caller's code, sent as is); returns its messages
        (the shared engine) or ``""`` (the batch engine replays it at the next run)."""

    def set_temp(self, temp_c: float) -> None:
        """Circuit temperature, degrees Celsius."""

    def run(self, analysis: str | None = None, *, timeout_s: float | None = None,
            vectors: Iterable[str] | None = None) -> SimResult:
        """Run the deck's analyses (or ``analysis``, e.g. ``"op"``) and read every plot
        (or only ``vectors`` and the scale)."""


@runtime_checkable
class Engine(Protocol):
    """Runs SPICE decks. Two implementations: ``SharedEngine`` and ``BatchEngine``."""

    name: str

    def simulate(
        self, deck: str, *, corner_key: str | None = None, timeout_s: float | None = None,
        rundir: Path | None = None,
    ) -> SimResult:
        """Run a plain deck as is and return all its plots."""

    def load(self, deck: str, *, corner_key: str | None = None) -> LoadedCircuit:
        """Load a deck for repeated runs."""
