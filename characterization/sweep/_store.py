"""The resumable point store: one small file per finished chunk, in ``<out>.points/``.

Each chunk file is written to a temporary name and renamed into place (``os.replace`` is
atomic on POSIX), so a ``kill -9`` leaves either the whole chunk or nothing. A re-run reads the
finished indices and skips them.

A chunk file is data, never code: ``chunk-*.npz`` holds the point indices and one float array
per measure, read with ``allow_pickle=False``, and a JSON document (as UTF-8 bytes) with the
failures, the worker facts and the timings. Stores of older versions kept pickled chunks
(``chunk-*.pkl``); they are refused, never unpickled.
"""

from __future__ import annotations

import fcntl
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from characterization.errors import ConfigError
from spicebridge.fileio import atomic_write_bytes

from ..errors import SweepError
from ..lookup import Failure

_MANIFEST = "manifest.json"
_CHUNK_GLOB = "chunk-*.npz"
_PICKLE_GLOB = "chunk-*.pkl"
STORE_FORMAT = "imc-sweep-store"
STORE_VERSION = 2
"""Version 2: ``.npz`` + JSON chunks. Version 1 (pickled chunks) is refused."""


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
        try:
            self._open(path, fingerprint, manifest)
        except BaseException:
            self.close()
            raise
        self._counter = 0

    def _open(self, path: Path, fingerprint: str, manifest: dict[str, Any]) -> None:
        old = sorted(path.glob(_PICKLE_GLOB))
        if old:
            raise SweepError(
                f"{path} is a store of an older version: it holds pickled chunks ({old[0].name}"
                f"{f' and {len(old) - 1} more' if len(old) > 1 else ''}), which are never "
                "loaded (unpickling a file can run code). Delete the folder and run the sweep "
                "again (or choose another --out)")
        for stale in path.glob(".*.tmp"):  # a chunk being written when a run was killed
            stale.unlink(missing_ok=True)
        mf = path / _MANIFEST
        if mf.exists():
            try:
                doc = json.loads(mf.read_text(encoding="utf-8"))
                if not isinstance(doc, dict):
                    raise ConfigError("not a JSON object")
                have = doc.get("fingerprint")
            except (OSError, ValueError) as e:
                raise SweepError(f"{mf} is unreadable ({e}); delete {path} to start over") from e
            if doc.get("store_version", 1) != STORE_VERSION:
                raise SweepError(f"{path} is a store of version {doc.get('store_version', 1)}; "
                                 f"this version reads {STORE_VERSION}: delete it and run again")
            if have != fingerprint:
                raise SweepError(
                    f"{path} holds points of a different sweep (fingerprint {have}, this spec "
                    f"{fingerprint}); delete it or choose another --out")
        else:
            atomic_write_bytes(mf, json.dumps(
                {"format": STORE_FORMAT, "store_version": STORE_VERSION,
                 "fingerprint": fingerprint, **manifest},
                indent=1, sort_keys=True, default=str).encode())

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
                out.append(read_chunk(p))
            except ChunkFormatError:
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
                c = read_chunk(p)
            except ChunkFormatError:
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
        name = f"chunk-{first:010d}-{os.getpid()}-{self._counter:06d}.npz"
        p = self.path / name
        atomic_write_bytes(p, chunk_bytes(chunk))
        return p


class ChunkFormatError(ValueError):
    """A chunk file that is not a complete chunk of this format."""


def _json_safe(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return repr(o)
    if isinstance(o, dict):
        return {str(k): _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    if isinstance(o, np.generic):
        return _json_safe(o.item())
    if isinstance(o, (str, int, float, bool)) or o is None:
        return o
    return str(o)


def chunk_bytes(chunk: ChunkResult) -> bytes:
    """A chunk as ``.npz`` bytes: arrays plus one JSON document; no object arrays."""
    names = list(chunk.values)
    doc = {"format": "imc-sweep-chunk", "version": STORE_VERSION, "measures": names,
           "failures": [{"source": f.source, "point": f.point, "error_type": f.error_type,
                         "message": f.message} for f in chunk.failures],
           "meta": chunk.meta, "elapsed_s": chunk.elapsed_s, "point_fn_s": chunk.point_fn_s,
           "cpu_s": chunk.cpu_s}
    arrays = {"indices": np.asarray(chunk.indices, dtype=np.int64),
              "doc": np.frombuffer(json.dumps(_json_safe(doc)).encode(), dtype=np.uint8)}
    for i, m in enumerate(names):
        v = np.asarray(chunk.values[m])
        if v.dtype == object:
            raise TypeError(f"measure {m!r}: object arrays are not stored")
        arrays[f"m{i}"] = v
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def read_chunk(path: Path) -> ChunkResult:
    """One chunk file (``allow_pickle=False``: a file can never run code).

    Raises:
        ChunkFormatError: Unreadable, truncated or not a chunk of this format.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            doc = json.loads(z["doc"].tobytes().decode("utf-8"))
            if not isinstance(doc, dict) or doc.get("format") != "imc-sweep-chunk":
                raise ChunkFormatError(f"{path}: not a sweep chunk")
            idx = z["indices"].astype(np.int64)
            values = {m: z[f"m{i}"] for i, m in enumerate(doc["measures"])}
        failures = [Failure(str(f["source"]), dict(f["point"]), str(f["error_type"]),
                            str(f["message"])) for f in doc.get("failures", [])]
        return ChunkResult(idx, values, failures, dict(doc.get("meta") or {}),
                           float(doc.get("elapsed_s", 0.0)), float(doc.get("point_fn_s", 0.0)),
                           float(doc.get("cpu_s", 0.0)))
    except ChunkFormatError:
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise ChunkFormatError(f"{path}: {e}") from e


