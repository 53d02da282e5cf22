"""The resumable point store: one small file per finished chunk, in ``<out>.points/``.

Each chunk file is written to a temporary name and renamed into place (``os.replace`` is
atomic on POSIX), so a ``kill -9`` leaves either the whole chunk or nothing. A re-run reads the
finished indices and skips them.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spicebridge.fileio import atomic_write_bytes

from ..errors import SweepError
from ..lookup import Failure

_MANIFEST = "manifest.json"
_CHUNK_GLOB = "chunk-*.pkl"


@dataclass
class ChunkResult:
    """What a worker returns for a chunk of points (and what one chunk file holds)."""

    indices: np.ndarray
    """Point indices of the chunk (int64)."""
    values: dict[str, np.ndarray]
    """Measure -> array ``(len(indices), *measure shape)``; NaN rows where a point failed."""
    failures: list[Failure] = field(default_factory=list)
    """One record per failed point."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Worker facts (ngspice version, pid) for provenance."""
    elapsed_s: float = 0.0
    """Wall time the worker spent on the chunk."""
    point_fn_s: float = 0.0
    """Of which inside the point function (the rest is the engine's per-point overhead)."""
    cpu_s: float = 0.0
    """CPU time of the worker process for the chunk (``time.process_time``)."""


def store_dir(out: Path) -> Path:
    """The store folder of a sweep whose result goes to ``out``."""
    return out.with_name(out.name + ".points")


class PointStore:
    """Finished chunks of one sweep, on disk.

    Args:
        path: The store folder.
        fingerprint: The sweep's fingerprint; a store of another sweep is refused.
        manifest: What to write in a new store's manifest (the spec, for humans).

    Raises:
        SweepError: The folder holds a different sweep.
    """

    def __init__(self, path: Path, fingerprint: str, manifest: dict[str, Any]) -> None:
        self.path = path
        self.fingerprint = fingerprint
        path.mkdir(parents=True, exist_ok=True)
        # One run per store at a time; the OS drops the lock when the process dies (kill -9).
        self._lock = (path / "lock").open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._lock.close()
            raise SweepError(f"{path} is in use by another running sweep") from e
        for stale in path.glob(".*.tmp"):  # a chunk being written when a run was killed
            stale.unlink(missing_ok=True)
        mf = path / _MANIFEST
        if mf.exists():
            try:
                have = json.loads(mf.read_text(encoding="utf-8")).get("fingerprint")
            except (OSError, ValueError) as e:
                raise SweepError(f"{mf} is unreadable ({e}); delete {path} to start over") from e
            if have != fingerprint:
                raise SweepError(
                    f"{path} holds points of a different sweep (fingerprint {have}, this spec "
                    f"{fingerprint}); delete it or choose another --out")
        else:
            atomic_write_bytes(mf, json.dumps({"fingerprint": fingerprint, **manifest}, indent=1,
                                         sort_keys=True, default=str).encode())
        self._counter = 0

    def close(self) -> None:
        """Release the store's lock."""
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def chunks(self) -> list[ChunkResult]:
        """Every finished chunk (files that cannot be read are skipped and redone).

        A point found in more than one chunk (possible only if two runs shared a store at once)
        is kept once: the first chunk in file-name order wins.
        """
        out = []
        for p in sorted(self.path.glob(_CHUNK_GLOB)):
            try:
                with p.open("rb") as f:
                    out.append(pickle.load(f))
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError):
                p.unlink(missing_ok=True)  # only complete files are ever renamed in: stale
        return out

    def drop_failures(self) -> int:
        """Forget failed points, so that the next run retries them.

        Each chunk with failures is rewritten without them (new file first, then the old one
        removed: a kill in between leaves a point twice, which ``chunks`` readers dedupe).

        Returns:
            The number of failed points dropped.
        """
        dropped = 0
        for p in sorted(self.path.glob(_CHUNK_GLOB)):
            try:
                with p.open("rb") as f:
                    c: ChunkResult = pickle.load(f)
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError):
                continue
            if not c.failures:
                continue
            bad = {f.point.get("index") for f in c.failures}
            keep = np.array([int(i) not in bad for i in c.indices], dtype=bool)
            if keep.any():
                self.write(ChunkResult(c.indices[keep], {m: v[keep] for m, v in c.values.items()},
                                       [], c.meta, c.elapsed_s, c.point_fn_s))
            p.unlink()
            dropped += int((~keep).sum())
        return dropped

    def write(self, chunk: ChunkResult) -> Path:
        """Write one finished chunk atomically."""
        self._counter += 1
        first = int(chunk.indices[0]) if len(chunk.indices) else 0
        name = f"chunk-{first:010d}-{os.getpid()}-{self._counter:06d}.pkl"
        p = self.path / name
        atomic_write_bytes(p, pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL))
        return p


