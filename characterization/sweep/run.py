"""Running a sweep: chunks of points on joblib workers (loky or Dask), a resumable store, tables."""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import platform
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SweepError
from ..lookup import Failure, Table, write_lookup
from ._store import ChunkResult, PointStore, store_dir
from .spec import SEEDING_RULE, SweepPoint, SweepSpec, guess_axis_units

log = logging.getLogger(__name__)

_CACHE: dict[Any, Any] = {}
_MAX_MESSAGE = 4000  # characters of error text kept per failed point


def worker_cache(key: Any, factory: Callable[[], Any]) -> Any:
    """Per-process memo: build a value once per worker and reuse it for every later point.

    Use it to load a circuit once per worker (``worker_cache(("col", rows), lambda:
    engine.load(deck))``); the cache lives as long as the worker process.

    Args:
        key: Hashable key.
        factory: Called with no argument when ``key`` is not cached yet.

    Returns:
        The cached value.
    """
    try:
        return _CACHE[key]
    except KeyError:
        value = _CACHE[key] = factory()
        return value


def clear_worker_cache() -> None:
    """Empty this process's ``worker_cache`` (tests, or to free a loaded circuit)."""
    _CACHE.clear()


@dataclass
class SweepResult:
    """What ``run_sweep`` returns."""

    tables: dict[str, Table]
    """Measure name -> table with dims ``(*axes, "mc", *extra dims)``; NaN where a point failed."""
    failures: list[Failure]
    """One record per failed point (coords, seed, error type and text)."""
    provenance: dict[str, Any]
    """What the file's provenance holds (spec, seeding rule, versions, git commit)."""
    path: Path
    """The lookup HDF5 written."""
    summary: dict[str, Any] = field(default_factory=dict)
    """``n_points``, ``n_failed``, ``n_resumed`` (finished before this call), ``n_run``,
    ``wall_s``, ``points_per_s``, ``backend``, ``point_fn_s`` (time spent inside the point
    function, summed over workers), ``worker_cpu_s`` (CPU time of the workers on the chunks)."""

    @property
    def n_failed(self) -> int:
        """Number of failed points."""
        return len(self.failures)


def run_chunk(spec: SweepSpec, indices: list[int] | np.ndarray) -> ChunkResult:
    """Evaluate ``spec.point_fn`` at the given point indices (runs on a worker).

    A point that raises is recorded as a ``Failure`` (its values stay NaN) and the chunk goes on.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    idx = np.asarray(indices, dtype=np.int64)
    values = {m: np.full((len(idx), *spec.measure_shape(m)), np.nan) for m in spec.measures}
    failures: list[Failure] = []
    fn_s = 0.0
    for row, i in enumerate(idx):
        point = spec.point(int(i))
        try:
            t_fn = time.perf_counter()
            try:
                out = spec.point_fn(point)
            finally:
                fn_s += time.perf_counter() - t_fn
            if not isinstance(out, Mapping):
                raise TypeError(f"point_fn returned {type(out).__name__}, expected a dict of "
                                f"measures {sorted(spec.measures)}")
            missing = set(spec.measures) - set(out)
            if missing:
                raise KeyError(f"point_fn returned no value for {sorted(missing)}")
            for m in spec.measures:
                v = np.asarray(out[m], dtype=float)
                if v.shape != values[m].shape[1:]:
                    v = v.reshape(values[m].shape[1:])  # scalars as (1,) arrays etc.
                values[m][row] = v
        except Exception as e:  # a failed point is data, whatever it raised
            for m in spec.measures:
                values[m][row] = np.nan
            failures.append(_failure(spec.name, point, e))
    return ChunkResult(idx, values, failures, _worker_meta(), time.perf_counter() - t0, fn_s,
                       time.process_time() - c0)


def _failure(source: str, point: SweepPoint, e: BaseException) -> Failure:
    msg = str(e) or repr(e)
    for attr in ("corner_key", "deck_path", "offending_line"):
        v = getattr(e, attr, None)
        if v and str(v) not in msg:
            msg += f"\n{attr}: {v}"
    log_text = getattr(e, "log", None)
    if log_text and "log" not in msg:
        msg += "\nngspice log tail:\n" + "\n".join(str(log_text).splitlines()[-15:])
    tb = traceback.extract_tb(e.__traceback__)
    if tb:
        fr = tb[-1]
        msg += f"\nraised at {fr.filename}:{fr.lineno} in {fr.name}"
    return Failure(source, point.to_dict(), type(e).__name__, msg[:_MAX_MESSAGE])


def _worker_meta() -> dict[str, Any]:
    meta: dict[str, Any] = {"pid": os.getpid(), "host": platform.node()}
    from spicebridge.engines.shared import loaded_version

    version = loaded_version()
    if version is not None:
        meta["ngspice_version"] = version
    return meta


def _chunks(todo: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for s in range(0, len(todo), size):
        yield todo[s:s + size]


PROGRESS_STEPS = 50
"""The automatic chunk size splits a run into at least this many chunks (progress updates)."""


def _auto_chunk_size(n_todo: int, n_workers: int) -> int:
    # At least PROGRESS_STEPS chunks (the bar moves once per finished chunk) and 4 per worker
    # (keeps the workers busy to the end, bounds what a kill loses); at most 64 points per
    # chunk. A chunk costs ~0.3 ms in-process and ~1.5 ms through loky (store file, dispatch,
    # merge), so a run pays at most ~50 such costs when small, and 1/64 of one per point when
    # large.
    return max(1, min(64, n_todo // max(PROGRESS_STEPS, 4 * n_workers)))


@contextlib.contextmanager
def _dask_client(dask: str | None, dask_local: int | None) -> Iterator[Any]:
    if dask is None and dask_local is None:
        yield None
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as e:  # pragma: no cover - distributed is a dependency
        raise SweepError("Dask execution needs the 'distributed' package") from e
    if dask is not None and dask_local is not None:
        raise SweepError("give either dask (a scheduler address) or dask_local, not both")
    if dask is not None:
        try:
            client = Client(dask, timeout="30s")
        except (OSError, TimeoutError) as e:
            raise SweepError(f"cannot reach the Dask scheduler at {dask}: {e}") from e
        with client:
            yield client
        return
    if dask_local < 1:
        raise SweepError(f"dask_local must be >= 1 worker, got {dask_local}")
    # distributed logs its start-up at INFO through the root handler; keep the CLI quiet
    dlog = logging.getLogger("distributed")
    level = dlog.level
    dlog.setLevel(max(level, logging.WARNING))
    try:
        with LocalCluster(n_workers=dask_local, threads_per_worker=1, processes=True,
                          dashboard_address=":0", silence_logs=logging.WARNING) as cluster, \
                Client(cluster) as client:
            yield client
    finally:
        dlog.setLevel(level)


def _n_workers(jobs: int, client: Any) -> int:
    if client is not None:
        try:
            return max(1, sum(w["nthreads"] for w in
                              client.scheduler_info()["workers"].values()))
        except Exception:
            return 1
    return jobs if jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + jobs)


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    jobs: int = 1,
    dask: str | None = None,
    dask_local: int | None = None,
    strict: bool = False,
    quiet: bool = False,
    chunk_size: int | None = None,
    retry_failed: bool = False,
) -> SweepResult:
    """Run every unfinished point of ``spec`` and write the lookup file ``out``.

    Finished chunks go to ``<out>.points/`` as they arrive; calling again with the same spec and
    ``out`` skips them (after a crash or a ``kill -9``, at most the chunks in flight are redone).

    Args:
        spec: The sweep.
        out: Lookup HDF5 to write (atomically) at the end.
        jobs: Local worker processes (joblib loky); 1 runs in this process; -1 all cores.
        dask: Address of a Dask scheduler (``tcp://host:port``); overrides ``jobs``.
        dask_local: Start a local Dask cluster of this many single-threaded worker processes.
        strict: Raise ``SweepError`` when any point failed (after writing the file).
        quiet: No progress bar.
        chunk_size: Points per task and per store file; default: automatic, so that the run
            makes at least ``PROGRESS_STEPS`` (50) chunks (progress updates), at most 64 points
            each.
        retry_failed: Run again the points that failed in earlier runs of this store (by
            default a failed point counts as finished).

    Returns:
        The tables, failures, provenance, the file path and a summary.

    Raises:
        SweepError: Every point failed, or ``strict`` and some failed (the file is written
            first in both cases), a worker process died, the store holds another sweep or is
            in use, or the Dask scheduler cannot be reached.
        ValueError: ``jobs`` is 0 or ``chunk_size`` is not positive.
    """
    if not isinstance(jobs, int) or jobs == 0:
        raise ValueError(f"jobs must be a non-zero integer (-1: all cores), got {jobs!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    t_start = time.perf_counter()
    out = Path(out)
    n = len(spec)
    store = PointStore(store_dir(out), spec.fingerprint(), {"spec": spec.to_dict()})
    try:
        if retry_failed:
            store.drop_failures()
        stored = store.chunks()
        done = _collect(stored, spec)
        n_resumed = int(done["mask"].sum())
        todo = np.flatnonzero(~done["mask"])
        metas: list[dict[str, Any]] = [c.meta for c in stored]
        backend = "resumed"
        fn_s = cpu_s = 0.0
        if todo.size:
            with _dask_client(dask, dask_local) as client:
                workers = _n_workers(jobs, client)
                size = chunk_size or _auto_chunk_size(todo.size, workers)
                tasks = list(_chunks(todo, size))
                backend = "dask" if client is not None else ("loky" if workers > 1 else "serial")
                bar = _progress(n, n_resumed, len(done["failures"]), quiet, spec.name)
                try:
                    for chunk in _guard(_execute(spec, tasks, backend, workers), done, spec):
                        store.write(chunk)
                        _merge(done, chunk, spec)
                        metas.append(chunk.meta)
                        fn_s += chunk.point_fn_s
                        cpu_s += chunk.cpu_s
                        if bar is not None:
                            bar.update(len(chunk.indices))
                            bar.set_postfix(failed=len(done["failures"]), refresh=False)
                finally:
                    if bar is not None:
                        bar.close()
        failures = sorted(done["failures"], key=lambda f: f.point.get("index", 0))
        provenance = _provenance(spec, metas, backend, jobs, dask, dask_local)
        tables = _tables(spec, done["values"])
        path = write_lookup(out, tables.values(), provenance, failures)
    finally:
        store.close()
    wall = time.perf_counter() - t_start
    n_run = int(todo.size)
    summary = {"n_points": n, "n_failed": len(failures), "n_resumed": n_resumed,
               "n_run": n_run, "wall_s": wall, "points_per_s": n_run / wall if wall else 0.0,
               "backend": backend, "point_fn_s": fn_s, "worker_cpu_s": cpu_s}
    result = SweepResult(tables, failures, provenance, path, summary)
    if failures and (strict or len(failures) == n):
        why = "every point failed" if len(failures) == n else "--strict and points failed"
        f0 = failures[0]
        raise SweepError(f"sweep {spec.name!r}: {why} ({len(failures)}/{n}); results and "
                         f"failures written to {path}. First failure at {f0.point}: "
                         f"{f0.error_type}: {f0.message.splitlines()[0] if f0.message else ''}")
    return result


def _guard(chunks: Iterator[ChunkResult], done: dict[str, Any],
           spec: SweepSpec) -> Iterator[ChunkResult]:
    """Turn a dead worker (a crash of ngspice takes its process with it) into a SweepError."""
    try:
        yield from chunks
    except (SweepError, KeyboardInterrupt):
        raise
    except Exception as e:
        name = type(e).__name__
        if "Terminated" not in name and "Killed" not in name and "Broken" not in name:
            raise
        raise SweepError(
            f"sweep {spec.name!r}: a worker process died ({name}: {e}). The "
            f"{int(done['mask'].sum())} points finished so far are stored; run again to "
            "resume. A deck that crashes ngspice itself can run isolated with engine = "
            "\"batch\" (TOML) or a point function that uses create_engine(\"batch\").") from e


def _execute(spec: SweepSpec, tasks: list[np.ndarray], backend: str,
             workers: int) -> Iterator[ChunkResult]:
    if backend == "serial":
        for t in tasks:
            yield run_chunk(spec, t)
        return
    from joblib import Parallel, delayed, parallel_config

    calls = (delayed(run_chunk)(spec, t) for t in tasks)
    if backend == "dask":
        with parallel_config(backend="dask"):
            yield from Parallel(n_jobs=-1, return_as="generator_unordered",
                                pre_dispatch="2*n_jobs")(calls)
        return
    # loky: worker processes, each with its own libngspice (never threads: not thread-safe)
    yield from Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered",
                        pre_dispatch="2*n_jobs", batch_size=1)(calls)


def _collect(chunks: list[ChunkResult], spec: SweepSpec) -> dict[str, Any]:
    n = len(spec)
    done: dict[str, Any] = {
        "mask": np.zeros(n, dtype=bool),
        "values": {m: np.full((n, *spec.measure_shape(m)), np.nan) for m in spec.measures},
        "failures": [],
    }
    for c in chunks:
        _merge(done, c, spec)
    return done


def _merge(done: dict[str, Any], chunk: ChunkResult, spec: SweepSpec) -> None:
    new = ~done["mask"][chunk.indices]
    if not new.any():
        return
    idx = chunk.indices[new]
    for m in spec.measures:
        done["values"][m][idx] = chunk.values[m][new]
    done["mask"][idx] = True
    keep = set(idx.tolist())
    done["failures"].extend(f for f in chunk.failures if f.point.get("index") in keep)


def _tables(spec: SweepSpec, values: dict[str, np.ndarray]) -> dict[str, Table]:
    coords: dict[str, Any] = {k: np.asarray(v) for k, v in spec.axes.items()}
    coords["mc"] = np.arange(spec.mc)
    cu = {k: spec.axis_units.get(k, guess_axis_units(k)) for k in spec.axes}
    cu["mc"] = "1"
    tables = {}
    for m, units in spec.measures.items():
        extra = spec.measure_dims.get(m, {})
        data = values[m].reshape(*spec.shape, *spec.measure_shape(m))
        tc = {**coords, **{d: np.asarray(c) for d, c in extra.items()}}
        tcu = {**cu, **{d: spec.axis_units.get(d, guess_axis_units(d)) for d in extra}}
        tables[m] = Table(m, data, (*spec.dims, *extra), tc, units, tcu,
                          dict(spec.measure_attrs.get(m, {})))
    return tables


def _progress(total: int, initial: int, failed: int, quiet: bool, name: str) -> Any:
    if quiet:
        return None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, desc=f"sweep {name}", unit="pt", smoothing=0.1,
               dynamic_ncols=True)
    bar.set_postfix(failed=failed)
    return bar


def _package_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("imc-spicebridge")
    except Exception:  # provenance is best effort
        import spicebridge

        return getattr(spicebridge, "__version__", None)


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                           text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    commit = r.stdout.strip()
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=5,
                               check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return commit + ("-dirty" if dirty else "")


def _provenance(spec: SweepSpec, metas: list[dict[str, Any]], backend: str, jobs: int,
                dask: str | None, dask_local: int | None) -> dict[str, Any]:
    versions = sorted({m["ngspice_version"] for m in metas if m.get("ngspice_version")})
    prov: dict[str, Any] = {
        "kind": "sweep",
        "sweep": spec.to_dict(),
        "fingerprint": spec.fingerprint(),
        "seeding": SEEDING_RULE,
        "root_seed": spec.seed,
        "n_points": len(spec),
        "package_version": _package_version(),
        "git_commit": _git_commit(),
        "ngspice_version": versions[0] if len(versions) == 1 else (versions or None),
        "python": platform.python_version(),
        "host": platform.node(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "execution": {"backend": backend, "jobs": jobs, "dask": dask, "dask_local": dask_local},
    }
    prov.update(spec.provenance)
    return prov
