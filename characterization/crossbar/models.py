"""A one-bin sky130 nfet_01v8 corner library for the column's access transistors.

The sky130 ``nfet_01v8`` subcircuit carries all 180 BSIM4 size bins as models *inside* the
subcircuit, and ngspice copies every one of them for every instance: a 16-row column holds
2880 models, which makes parsing super-linear in the rows (8-13x slower to load at 16 rows,
bench/crossbar_char.py). All access transistors share one size, so this library keeps only
the bin that covers it; the device equations and parameters are the PDK's, unchanged (checked
in tests against the full library). A re-run after ``alter`` costs about the same either way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from characterization.errors import ConfigError
from spicebridge.corners import ProcessCorner
from spicebridge.fileio import atomic_write_text
from spicebridge.netlist import deck_hash, sky130_cells_dir

_NUM = r"([-+0-9.eE]+)"


def _keep_bin(block: str, w_m: float, l_m: float) -> bool:
    vals = {}
    for key in ("lmin", "lmax", "wmin", "wmax"):
        m = re.search(rf"\b{key}\s*=\s*{_NUM}", block)
        if not m:
            return False
        vals[key] = float(m.group(1))
    eps = 1e-12
    return (vals["lmin"] - eps <= l_m < vals["lmax"] - eps
            and vals["wmin"] - eps <= w_m < vals["wmax"] - eps)


def filter_pm3(text: str, w_um: float, l_um: float) -> str:
    """Keep only the ``.model`` bins of a sky130 ``*.pm3.spice`` that cover W x L (um).

    Raises:
        ValueError: No bin covers the size.
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    block: list[str] = []
    kept = 0

    def flush() -> None:
        nonlocal kept
        if block:
            b = "".join(block)
            if _keep_bin(b, w_um * 1e-6, l_um * 1e-6):
                out.append(b)
                kept += 1
            block.clear()

    in_model = False
    for ln in lines:
        low = ln.lstrip().lower()
        if low.startswith(".model"):
            flush()
            in_model = True
            block.append(ln)
        elif in_model and (low.startswith(".ends") or low.startswith(".subckt")):
            flush()
            in_model = False
            out.append(ln)
        elif in_model:
            block.append(ln)
        else:
            out.append(ln)
    flush()
    if kept == 0:
        raise ConfigError(f"no sky130 nfet_01v8 bin covers W={w_um} um, L={l_um} um")
    return "".join(out)


def nfet_one_bin_lib(w_um: float, l_um: float, directory: Path | None = None) -> Path:
    """Write (once) a ``.lib`` with tt/ff/ss/fs/sf sections holding only the W x L bin.

    Use as ``.lib "<path>" ss``; the sections set ``.option scale=1.0u`` and include the PDK's
    mismatch file (``mc_mm_switch=0``; the column draws its own Pelgrom mismatch).

    Returns:
        Path of the library (in ``~/.cache/spicebridge`` or ``directory``).
    """
    cells = sky130_cells_dir() / "nfet_01v8"
    directory = directory or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) \
        / "spicebridge"
    directory.mkdir(parents=True, exist_ok=True)
    tag = f"w{w_um:g}_l{l_um:g}".replace(".", "p")
    parts = [f"* sky130 nfet_01v8 one-bin corner library {tag} (characterization.crossbar)"]
    for corner in ProcessCorner:
        c = corner.value
        pm3 = (cells / f"sky130_fd_pr__nfet_01v8__{c}.pm3.spice").read_text(encoding="utf-8")
        small = filter_pm3(pm3, w_um, l_um)
        pm3_path = _write_once(directory, f"nfet_01v8_{c}_{tag}", ".pm3.spice", small)
        corner_txt = (cells / f"sky130_fd_pr__nfet_01v8__{c}.corner.spice").read_text(
            encoding="utf-8")
        corner_txt = re.sub(r'^\.include\s+"[^"]*pm3\.spice"', f'.include "{pm3_path}"',
                            corner_txt, flags=re.MULTILINE)
        corner_path = _write_once(directory, f"nfet_01v8_{c}_{tag}", ".corner.spice",
                                  corner_txt)
        mm = cells / "sky130_fd_pr__nfet_01v8__mismatch.corner.spice"
        parts += [f".lib {c}", ".param mc_mm_switch=0 mc_pr_switch=0", ".option scale=1.0u",
                  f'.include "{corner_path}"', f'.include "{mm}"', f".endl {c}"]
    return _write_once(directory, f"sky130_nfet_01v8_{tag}", ".lib", "\n".join(parts) + "\n")


def _write_once(directory: Path, stem: str, suffix: str, text: str) -> Path:
    path = directory / f"{stem}_{deck_hash(text)[:10]}{suffix}"
    if not path.exists():
        atomic_write_text(path, text)
    return path
