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
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SweepError, SweepInterrupted, SweepSpecError
from ..lookup import Failure, Table, write_lookup
from ._store import ChunkResult, PointStore, store_dir
from .spec import SEEDING_RULE, SweepPoint, SweepSpec, guess_axis_units

log = logging.getLogger(__name__)

_CACHE: dict[Any, Any] = {}
_MAX_MESSAGE = 4000  # characters of error text kept per failed point

WARN_POINTS = 10**7
"""Sweeps with more points than this get a warning (memory: 8 bytes per point and value)."""
MAX_POINTS = 10**8
"""Sweeps with more points than this are refused unless ``yes=True`` (``--yes``)."""
RECYCLE_POINTS = 20_000
"""Points per worker process before the pool's workers are replaced by fresh ones
(libngspice grows ~1 KB per run and gives nothing back; this bounds it to ~20 MB)."""


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
    meta = _worker_meta()
    from spicebridge.worker import needs_restart

    if needs_restart():  # too many crash reloads (or runs) in this worker: replace it
        meta["recycle"] = True
    return ChunkResult(idx, values, failures, meta, time.perf_counter() - t0, fn_s,
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
    import dask

    try:
        # a task whose worker died is given up at once (KilledWorker), not retried on two
        # more workers that it would crash too; the sweep then isolates it
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
                LocalCluster(n_workers=dask_local, threads_per_worker=1, processes=True,
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
    yes: bool = False,
    recycle_points: int = RECYCLE_POINTS,
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
        yes: Run a sweep of more than ``MAX_POINTS`` points (refused otherwise).
        recycle_points: Replace the pool's worker processes after this many points each.

    Returns:
        The tables, failures, provenance, the file path and a summary.

    Raises:
        SweepError: Every point failed, or ``strict`` and some failed (the file is written
            first in both cases), the store holds another sweep, an old (pickled) store or is
            in use, or the Dask scheduler cannot be reached. A worker process that dies (a
            crash of ngspice) does not stop the sweep: its chunk is run again point by point
            in fresh processes and the point that crashes becomes a failure record.
        SweepSpecError: ``jobs`` is 0, ``chunk_size`` is not positive, ``out`` is a folder,
            or the sweep has more than ``MAX_POINTS`` points and ``yes`` is false.
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs == 0:
        raise SweepSpecError(f"jobs must be a non-zero integer (-1: all cores), got {jobs!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise SweepSpecError(f"chunk size must be a positive integer, got {chunk_size!r}")
    if not isinstance(recycle_points, int) or recycle_points < 1:
        raise SweepSpecError(f"recycle_points must be a positive integer, got "
                             f"{recycle_points!r}")
    t_start = time.perf_counter()
    commit_start = _git_commit()  # the code the run starts on, not the tree at its end
    out = Path(out)
    if out.is_dir():
        raise SweepSpecError(f"--out {out} is a folder; give the lookup file to write "
                             f"(e.g. {out / (spec.name + '.h5')})")
    n = len(spec)
    if n > MAX_POINTS and not yes:
        raise SweepSpecError(f"sweep {spec.name!r} has {n:.3g} points (shape {spec.shape}), "
                             f"more than {MAX_POINTS:.0e}: its tables alone need "
                             f"{8 * n * len(spec.measures) / 2**30:.1f} GiB; pass --yes "
                             "(yes=True) if you mean it")
    if n > WARN_POINTS:
        warnings.warn(f"sweep {spec.name!r} has {n:.3g} points (more than {WARN_POINTS:.0e}); "
                      f"its tables need {8 * n * len(spec.measures) / 2**30:.1f} GiB",
                      stacklevel=2)
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
                # a long serial run goes to one worker process all the same: it is recycled
                # every `recycle_points` points (libngspice's per-run growth) and a crash
                # there is isolated instead of taking this process down
                pooled = workers > 1 or todo.size > recycle_points
                backend = "dask" if client is not None else ("loky" if pooled else "serial")
                bar = _progress(n, n_resumed, len(done["failures"]), quiet, spec.name)
                try:
                    for chunk in _guard(_execute(spec, tasks, backend, workers, client,
                                                 recycle_points), done, spec):
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
        provenance = _provenance(spec, metas, backend, jobs, dask, dask_local, commit_start)
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
    """A pool that cannot go on (not a single dead worker: those are isolated) -> SweepError."""
    try:
        yield from chunks
    except SweepError:
        raise
    except KeyboardInterrupt:
        n = int(done["mask"].sum())
        raise SweepInterrupted(
            f"sweep {spec.name!r}: {n} of {done['mask'].size} points are stored; the same "
            "command run again resumes from them") from None
    except Exception as e:
        if not _is_death(e):
            raise
        raise SweepError(
            f"sweep {spec.name!r}: the worker pool failed ({type(e).__name__}: {e}). The "
            f"{int(done['mask'].sum())} points finished so far are stored; run again to "
            "resume.") from e


def _is_death(e: BaseException) -> bool:
    """A worker process died (loky's TerminatedWorkerError, a broken pool, Dask's
    KilledWorker or a lost connection to it)."""
    from concurrent.futures import CancelledError
    from concurrent.futures.process import BrokenProcessPool

    name = type(e).__name__
    return (isinstance(e, BrokenProcessPool | CancelledError)
            or any(w in name for w in ("Terminated", "Killed", "Broken", "CommClosed")))


def _execute(spec: SweepSpec, tasks: list[np.ndarray], backend: str, workers: int,
             client: Any = None, recycle_points: int = RECYCLE_POINTS) -> Iterator[ChunkResult]:
    if backend == "serial":
        for t in tasks:
            yield run_chunk(spec, t)
        return
    if backend == "dask":
        yield from _execute_dask(spec, tasks, client, workers)
        return
    yield from _execute_loky(spec, tasks, workers, recycle_points)


def _execute_loky(spec: SweepSpec, tasks: list[np.ndarray], workers: int,
                  recycle_points: int) -> Iterator[ChunkResult]:
    """Worker processes (never threads: libngspice is not thread-safe), each with its own
    libngspice. A chunk whose worker died is isolated (``_isolated``); the pool is replaced
    by fresh workers after ``recycle_points`` points per worker, or when one asks for it."""
    from concurrent.futures import FIRST_COMPLETED, wait

    # A private pool, not loky's process-wide reusable executor: joblib's own loky backend
    # (fits, other callers in this process) shares that singleton and breaks on one that it
    # did not create.
    from joblib.externals.loky import ProcessPoolExecutor

    pending = deque(tasks)
    suspects: list[tuple[np.ndarray, BaseException]] = []
    while pending:
        # the workers ignore Ctrl-C (the terminal sends it to them too: a KeyboardInterrupt
        # inside libngspice's callbacks printed tracebacks); this process takes it and kills
        # them. SIGINT is blocked while they start, so none takes it before ignoring it.
        ex = ProcessPoolExecutor(max_workers=workers, initializer=_worker_ignores_sigint)
        budget, sent, stop = recycle_points * workers, 0, False
        inflight: dict[Any, np.ndarray] = {}
        try:
            while True:
                with sigint_blocked():
                    while (pending and not stop and len(inflight) < 2 * workers
                           and sent < budget):
                        t = pending.popleft()
                        inflight[ex.submit(run_chunk, spec, t)] = t
                        sent += len(t)
                if not inflight:
                    break
                finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for f in finished:
                    t = inflight.pop(f)
                    try:
                        res = f.result()
                    except Exception as e:
                        if not _is_death(e):
                            raise
                        suspects.append((t, e))
                        stop = True  # the pool is broken: drain it, then start a fresh one
                        continue
                    if res.meta.pop("recycle", False):
                        stop = True
                    yield res
        except BaseException:  # Ctrl-C, an error, the caller closing: no worker left behind
            ex.shutdown(wait=False, kill_workers=True)
            raise
        ex.shutdown(wait=True, kill_workers=True)
    for t, e in suspects:
        yield _isolated(spec, t, e)


def _worker_ignores_sigint() -> None:
    """A loky worker's initializer: Ctrl-C is the parent's to handle (it kills the pool)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT held back (delivered on exit) while worker processes may be started: they
    inherit the mask and unblock it only once they have their own SIGINT disposition
    (``_worker_ignores_sigint`` here, the demo's lane initializer in ``imc.demo.pipeline``)."""
    import signal

    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _execute_dask(spec: SweepSpec, tasks: list[np.ndarray], client: Any,
                  workers: int) -> Iterator[ChunkResult]:
    """Chunks as Dask futures; a chunk whose worker died (``KilledWorker``) is isolated
    locally, never waited on forever."""
    from distributed import as_completed

    pending = deque(tasks)
    suspects: list[tuple[np.ndarray, BaseException]] = []
    inflight: dict[Any, np.ndarray] = {}

    def submit() -> None:
        while pending and len(inflight) < 2 * workers:
            t = pending.popleft()
            inflight[client.submit(run_chunk, spec, t, pure=False, retries=0)] = t

    submit()
    ac = as_completed(list(inflight))
    for f in ac:
        t = inflight.pop(f)
        try:
            res = f.result()
        except Exception as e:
            if not _is_death(e):
                raise
            suspects.append((t, e))
        else:
            res.meta.pop("recycle", None)
            yield res
        before = set(inflight)
        submit()
        for nf in set(inflight) - before:
            ac.add(nf)
    # Isolated on the cluster, one point at a time: every task that was on a dying worker
    # fails with it (queued ones too), so only a point that runs alone is known to be the one
    for t, e in suspects:
        t0 = time.perf_counter()
        outcome: list[ChunkResult | BaseException] = []
        for i in t:
            try:
                outcome.append(client.submit(run_chunk, spec, [int(i)], pure=False,
                                             retries=0).result())
            except Exception as err:
                if not _is_death(err):
                    raise
                outcome.append(err)
        yield _assemble(spec, t, outcome, e, t0)


def _crash_failure(spec: SweepSpec, index: int, e: BaseException) -> Failure:
    point = spec.point(index)
    msg = (f"the worker process died while running point {index} {point.coords} (mc "
           f"{point.mc}): {type(e).__name__}: {e}. It crashed its process (ngspice itself, "
           "most likely); the other points of its chunk were run again without it. A deck "
           "that crashes ngspice can run isolated with engine = \"batch\".")
    return Failure(spec.name, point.to_dict(), "WorkerCrashed", msg[:_MAX_MESSAGE])


def _assemble(spec: SweepSpec, indices: np.ndarray, outcome: list[Any], cause: BaseException,
              t0: float) -> ChunkResult:
    """One chunk from the per-point results of its isolated re-run (an exception: a crash)."""
    idx = np.asarray(indices, dtype=np.int64)
    values = {m: np.full((len(idx), *spec.measure_shape(m)), np.nan) for m in spec.measures}
    failures: list[Failure] = []
    fn_s = cpu_s = 0.0
    meta: dict[str, Any] = {}
    for row, (i, res) in enumerate(zip(idx, outcome, strict=True)):
        if isinstance(res, BaseException):
            failures.append(_crash_failure(spec, int(i), res))
            continue
        for m in spec.measures:
            values[m][row] = res.values[m][0]
        failures += res.failures
        fn_s += res.point_fn_s
        cpu_s += res.cpu_s
        meta = res.meta
    meta = {k: v for k, v in meta.items() if k != "recycle"}
    meta["isolated_after"] = type(cause).__name__
    return ChunkResult(idx, values, failures, meta, time.perf_counter() - t0, fn_s, cpu_s)


def _isolated(spec: SweepSpec, indices: np.ndarray, cause: BaseException) -> ChunkResult:
    """Run a chunk whose worker died again, point by point, in a fresh process.

    Every chunk in flight when a worker dies fails with it (a broken pool), so each is run
    again here, one point at a time: only a point that runs alone is known to be the one.
    The process lives on while its points pass; the point during which it dies becomes a
    failure record (``WorkerCrashed``, naming its index, coordinates and the exit code), and
    a fresh process takes the next point.
    """
    from joblib.externals.loky import ProcessPoolExecutor

    t0 = time.perf_counter()
    outcome: list[ChunkResult | BaseException] = []
    ex = None
    try:
        for i in indices:
            if ex is None:
                ex = ProcessPoolExecutor(max_workers=1)
            try:
                outcome.append(ex.submit(run_chunk, spec, [int(i)]).result())
            except Exception as e:
                if not _is_death(e):
                    raise
                ex.shutdown(wait=True, kill_workers=True)
                ex = None
                outcome.append(e)
    finally:
        if ex is not None:
            ex.shutdown(wait=True)
    return _assemble(spec, indices, outcome, cause, t0)


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
                dask: str | None, dask_local: int | None,
                commit_start: str | None = None) -> dict[str, Any]:
    """The sweep's provenance. ``git_commit`` is the commit the run started on
    (``commit_start``; ``-dirty`` when tracked files differed); when the tree's commit at the
    end differs, that one is ``git_commit_end``."""
    commit_end = _git_commit()
    versions = sorted({m["ngspice_version"] for m in metas if m.get("ngspice_version")})
    prov: dict[str, Any] = {
        "kind": "sweep",
        "sweep": spec.to_dict(),
        "fingerprint": spec.fingerprint(),
        "seeding": SEEDING_RULE,
        "root_seed": spec.seed,
        "n_points": len(spec),
        "package_version": _package_version(),
        "git_commit": commit_start if commit_start is not None else commit_end,
        "ngspice_version": versions[0] if len(versions) == 1 else (versions or None),
        "python": platform.python_version(),
        "host": platform.node(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "execution": {"backend": backend, "jobs": jobs, "dask": dask, "dask_local": dask_local},
    }
    if commit_start is not None and commit_end != commit_start:
        prov["git_commit_end"] = commit_end
    prov.update(spec.provenance)
    return prov
