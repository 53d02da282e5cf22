"""Reader for ngspice's binary raw files (``ngspice -b deck -r out.raw``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import RawFileError
from .results import Plot


def read_raw(source: str | Path | bytes) -> list[Plot]:
    """Read every plot of a binary raw file.

    Args:
        source: Path of the file, or its bytes.

    Returns:
        The plots in file order; real data as float64, complex (``.ac``) as complex128.
        Vector names are lower-cased. The ``frequency`` scale of complex plots is returned
        as its real part (ngspice 39 writes garbage in its imaginary part).

    Raises:
        RawFileError: The file is truncated, ASCII-format or otherwise malformed.
    """
    name = "<bytes>"
    if isinstance(source, (str, Path)):
        name = str(source)
        buf = Path(source).read_bytes()
    else:
        buf = bytes(source)
    plots: list[Plot] = []
    pos = 0
    while pos < len(buf):
        if not buf[pos:].strip():
            break
        hdr: dict[str, str] = {}
        names: list[str] = []
        while True:
            eol = buf.find(b"\n", pos)
            if eol < 0:
                raise RawFileError(f"{name}: header of plot {len(plots) + 1} is truncated")
            line = buf[pos:eol].decode("latin-1")
            pos = eol + 1
            key, _, val = line.partition(":")
            key = key.strip()
            if key == "Variables":
                try:
                    nvar = int(hdr["No. Variables"])
                except (KeyError, ValueError) as e:
                    raise RawFileError(f"{name}: 'Variables' before 'No. Variables'") from e
                for _ in range(nvar):
                    eol = buf.find(b"\n", pos)
                    if eol < 0:
                        raise RawFileError(f"{name}: variable list is truncated")
                    fields = buf[pos:eol].split()
                    if len(fields) < 2:
                        raise RawFileError(f"{name}: bad variable line {buf[pos:eol]!r}")
                    names.append(fields[1].decode("latin-1").lower())
                    pos = eol + 1
                continue
            if key == "Values":
                raise RawFileError(f"{name}: ASCII raw files are not supported; use binary")
            if key == "Binary":
                break
            if key:
                hdr[key] = val.strip()
        try:
            nv, npt = int(hdr["No. Variables"]), int(hdr["No. Points"])
        except (KeyError, ValueError) as e:
            raise RawFileError(f"{name}: header lacks 'No. Variables'/'No. Points'") from e
        cplx = "complex" in hdr.get("Flags", "").lower()
        width = 2 if cplx else 1
        nbytes = 8 * nv * npt * width
        if pos + nbytes > len(buf):
            raise RawFileError(
                f"{name}: plot {hdr.get('Plotname', '?')!r} needs {nbytes} data bytes, "
                f"only {len(buf) - pos} left (truncated file)"
            )
        a = np.frombuffer(buf, "<f8", nv * npt * width, pos)
        pos += nbytes
        a = (a.view("<c16") if cplx else a).reshape(npt, nv)
        vectors = {n: a[:, i].copy() for i, n in enumerate(names)}
        scale = names[0] if names else None
        if cplx and scale == "frequency":
            vectors[scale] = vectors[scale].real.copy()
        title = hdr.get("Plotname", "unknown")
        if title.lower() == "operating point":
            scale = None
        plots.append(Plot(name=title, title=title, vectors=vectors, scale=scale))
    if not plots:
        raise RawFileError(f"{name}: no plot found (empty file?)")
    return plots
