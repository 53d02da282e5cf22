"""The demo pipeline behind ``spicebridge demo`` (see ``imc.cli.demo``).

Each step runs a documented subcommand in this process and leaves its product in the output
folder; a step whose product is already there is skipped, so a second run reuses the
characterizations, the fits, the cached checkpoint and the evaluations.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from characterization.adc.convention import ideal_threshold_k_minus
from characterization.sweep.run import sigint_blocked
from spicebridge.errors import SpiceBridgeError
from spicebridge.fileio import atomic_write_text

CORNERS = ("tt", "ss", "ff")
VDD_V, TEMP_C = 1.8, 27.0
BITS_SWEEP = (3, 4, 5, 6, 8)
RAP_BITS = (3, 4, 5, 6, 8)  # 3 bits (K = 2): 1.2x the analog forward with the C kernel
GAMMAS = (1.0, 3.0, 5.0)
VAT_GAMMAS, VAT_GAMMA = (1.0, 3.0, 4.0, 5.0), 5.0  # the four-way table; VAT trained at 5
DEMO_BITS = 6
# ClipFormer on this small model: alpha = 2 as in the paper; beta = 0.5 with a per-layer K/V
# range calibrated on the calib split (the paper's beta = 0.25 clips this model's K/V, which
# are not heavy-tailed, too hard: docs/nnsim.md).
CLIP_ALPHA, CLIP_BETA = 2.0, 0.5


class DemoError(SpiceBridgeError):
    """A demo step failed; the message names the step and the command to re-run it."""


#: The exit status of a command stopped by Ctrl-C (``imc.cli.common.EXIT_INTERRUPTED``).
EXIT_INTERRUPTED = 130
#: Seconds the demo waits for its evaluation lanes' processes to stop after Ctrl-C before
#: it kills them (they stop within milliseconds: the next Python bytecode of their step).
LANE_STOP_S = 10.0


def _cli(argv: list[str]) -> int:
    """Run a documented subcommand in this process; Ctrl-C propagates (``KeyboardInterrupt``)."""
    from imc.cli import run_command

    return run_command(argv)


def _interrupted(what: str, folder: Path, inner: BaseException | None = None) -> BaseException:
    """The ``imc.cli.common.Interrupted`` a Ctrl-C in the demo raises: ``what`` was stopped
    (with what it kept, when the step's own interrupt says: a sweep's stored points), the
    finished steps are kept and a re-run resumes them (the CLI prints it as one line)."""
    from imc.cli.common import Interrupted

    kept = str(inner).split(";")[0] if inner is not None and str(inner) else ""
    return Interrupted(f"{what} stopped{f' ({kept})' if kept else ''}; the finished steps are "
                       f"kept in {folder} and running the same command again resumes them")


def _valid_lookup(path: Path) -> bool:
    if not path.is_file():
        return False
    from characterization.lookup import read_lookup

    try:
        read_lookup(path)
    except OSError:
        return False
    return True


def _valid_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


class _Steps:
    """Runs numbered steps, prints what each does, records time and status."""

    def __init__(self, total: int, previous: list[dict[str, Any]] | None = None,
                 out: Path | None = None) -> None:
        self.total, self.n = total, 0
        self.out = out  # the demo's folder, named when Ctrl-C stops a step
        self.log: list[dict[str, Any]] = []
        # the last report's step records, so a reused step keeps the time it took to make
        self.previous = {s.get("step"): s for s in previous or []}

    def run(self, title: str, fn: Callable[[], Any], *, done: bool = False,
            command: str | None = None, ok_codes: tuple[int, ...] = (0,)) -> Any:
        self.n += 1
        head = f"[{self.n}/{self.total}] {title}"
        if done:
            print(f"{head}: done before, reused", flush=True)
            prev = self.previous.get(title, {})
            self.log.append(dict(step=title, status="reused", seconds=prev.get("seconds", 0.0),
                                 command=command))
            return None
        print(f"{head} ...", flush=True)
        t0 = time.perf_counter()
        try:
            res = fn()
        except KeyboardInterrupt as e:  # with what the step said it kept (a sweep's points)
            raise _interrupted(f"step {self.n}/{self.total} ({title})",
                               self.out or Path.cwd(), e) from None
        dt = time.perf_counter() - t0
        if res == EXIT_INTERRUPTED:  # a command that ran its work in a child process
            raise _interrupted(f"step {self.n}/{self.total} ({title})",
                               self.out or Path.cwd())
        if isinstance(res, int) and res not in ok_codes:
            raise DemoError(f"step '{title}' failed (exit {res}); re-run it alone with: "
                            f"{command}")
        print(f"{head}: {dt:.0f} s", flush=True)
        self.log.append(dict(step=title, status="ran", seconds=dt, command=command,
                             exit=res if isinstance(res, int) else 0))
        return res


def run_demo(out: Path, *, jobs: int = 2, chips: int = 5, seed: int = 0, redo: bool = False,
             quiet: bool = False) -> Path:
    """Run the whole demo into ``out``; returns the path of ``report.md``.

    Raises:
        DemoError: A step failed.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = out / "plots"
    evals = out / "eval"
    evals.mkdir(exist_ok=True)
    q = ["--quiet"] if quiet else []
    xbar, adc = out / "crossbar.h5", out / "adc.h5"
    lookups = [str(xbar), str(adc)]
    t_start = time.perf_counter()
    previous = None
    with contextlib.suppress(OSError, ValueError, TypeError):
        previous = json.loads((out / "report.json").read_text(encoding="utf-8"))["steps"]
    steps = _Steps(total=6 + len(_EVALS), previous=previous, out=out)

    argv = ["characterize", "crossbar", "--preset", "quick", "--out", str(xbar), "--jobs",
            str(jobs), "--plots", str(plots), *q]
    steps.run("characterize the 1T1R crossbar column (quick preset: tt/ss/ff x 27/85 degC)",
              lambda: _cli(argv), done=_valid_lookup(xbar), command=_cmd(argv))
    argv = ["characterize", "adc", "--preset", "quick", "--out", str(adc), "--jobs", str(jobs),
            "--plots", str(plots), *q]
    steps.run("characterize the SAR ADC (quick preset: tt/ss/ff, 3-8 bits)",
              lambda: _cli(argv), done=_valid_lookup(adc), command=_cmd(argv))

    fits_path = out / "fits.json"
    steps.run("fit statistical models to the characterized distributions",
              lambda: _write_json(fits_path, statistical_fits(xbar, adc)),
              done=_valid_json(fits_path) and not redo)
    iv = Path(str(importlib.resources.files("imc.demo") / "data" / "iv_loop.csv"))
    fit_dir = out / "fit_memristor"
    argv = ["fit", "memristor", "--data", str(iv), "--out", str(fit_dir / "rram_fitted.lib"),
            "--report", str(fit_dir), "--jobs", "1", *q]
    steps.run("fit the memristor model to a measured I-V loop (SPICE in the loop)",
              (lambda: _cli(argv)) if iv.is_file() else (lambda: 0),
              done=(fit_dir / "rram_fitted.lib").is_file(), command=_cmd(argv),
              ok_codes=(0, 3))

    # one torch thread: with two, a tiny ViT spends its time in OpenMP spin-waits whenever the
    # other core is busy (vit.md measured 50x slower)
    argv = ["train", "--dataset", "digits", "--threads", "1", *q]
    steps.run("train (or load the cached) digits ViT", lambda: _cli(argv), command=_cmd(argv))

    common = ["evaluate", "--dataset", "digits", "--lookup", *lookups, "--vdd-v", str(VDD_V),
              "--temp-c", str(TEMP_C), "--chips", str(chips), "--seed", str(seed),
              "--fidelity", "moment", "--kv-range", "calibrated", "--threads", "1", *q]
    evaluation = run_evaluations(evals, common, chips=chips, seed=seed, redo=redo,
                                 workers=jobs, steps=steps)

    from imc.demo.report import write_report

    md = steps.run("write the report", lambda: write_report(
        out, xbar=xbar, adc=adc, fits_path=fits_path, fit_dir=fit_dir, evals=evals,
        steps=steps.log, settings=dict(jobs=jobs, chips=chips, seed=seed, vdd_v=VDD_V,
                                       temp_c=TEMP_C, clip_alpha=CLIP_ALPHA,
                                       clip_beta=CLIP_BETA, demo_bits=DEMO_BITS,
                                       machine=platform.platform()),
        wall_s=time.perf_counter() - t_start, evaluation=evaluation))
    return md


def run_evaluations(evals: Path, common: list[str], *, chips: int, seed: int,
                    redo: bool = False, workers: int = 2, steps: _Steps | None = None,
                    specs: dict[str, tuple[str, list[str]]] | None = None,
                    lanes: tuple[tuple[str, ...], ...] | None = None) -> dict[str, Any]:
    """Run the evaluation steps ``specs`` (default ``_EVALS``) into ``evals/<name>.json``.

    The steps are grouped in ``lanes`` (default ``LANES``); each lane runs its steps one after
    another in one process with one ``EvalCache`` (``nnsim.evaluate.shared_evaluations``), so
    a setting two steps of a lane share is simulated once. With ``workers`` > 1 the lanes run
    in that many spawned processes at once (one torch thread each); with 1, in this process,
    one after another, sharing one cache across all of them. Every step's result is the
    same either way: the same command, seed and chips (a shared setting is the identical
    result, ``test_demo_parallel``).

    Returns:
        ``{"workers", "lanes", "wall_s", "steps_s" (sum of the steps' wall times),
        "cpu_s" (their CPU time), "process_cpu_s" (the phase's CPU in this process and the
        lanes' processes, start-up included)}`` of the steps that ran; each step's record
        (in ``steps.log``, in ``specs`` order) holds ``seconds``, ``cpu_s`` and ``lane``.
    """
    specs = _EVALS if specs is None else specs
    lanes = LANES if lanes is None else lanes
    steps = steps if steps is not None else _Steps(total=len(specs))
    missing = set(specs) - {n for lane in lanes for n in lane}
    if missing:
        raise ValueError(f"evaluation steps in no lane: {sorted(missing)}")
    base_n = steps.n
    todo: dict[str, dict[str, Any]] = {}
    records: dict[str, dict[str, Any]] = {}
    for i, (name, (title, extra)) in enumerate(specs.items()):
        path = evals / f"{name}.json"
        argv = [*common, *extra, "--json", str(path)]
        want = _eval_chips(extra, chips)  # an older run's chips or images: redo
        if _eval_done(path, chips=want, seed=seed,
                      images=_flag([*common, *extra], "--limit", None)) and not redo:
            print(f"[{base_n + i + 1}/{steps.total}] {title}: done before, reused", flush=True)
            prev = steps.previous.get(title, {})  # the time it took to make
            records[name] = dict(step=title, status="reused", seconds=prev.get("seconds", 0.0),
                                 cpu_s=prev.get("cpu_s"), lane=prev.get("lane"),
                                 command=_cmd(argv), **_eval_counts(path, 0, 0, ran=False))
            continue
        todo[name] = dict(name=name, n=base_n + i + 1, title=title, argv=argv,
                          path=str(path))
    t0, cpu0 = time.perf_counter(), _cpu_with_children()
    work = [(no, [todo[n] for n in lane if n in todo]) for no, lane in enumerate(lanes)]
    work = [(no, w) for no, w in work if w]
    n_workers = max(1, min(workers, len(work)))
    if n_workers == 1:
        from nnsim.evaluate import shared_evaluations

        try:
            with shared_evaluations():  # one cache across every lane, as before lanes existed
                for lane_no, w in work:
                    records.update(_run_lane(w, total=steps.total, lane=lane_no))
        except _LaneStepInterrupted as e:
            raise _interrupted(f"step {e.n}/{steps.total} ({e.title})", evals) from None
    else:
        records.update(_run_lanes_in_processes(work, n_workers, total=steps.total,
                                               evals=evals))
    wall, cpu1 = time.perf_counter() - t0, _cpu_with_children()
    steps.log.extend(records[name] for name in specs)
    steps.n = base_n + len(specs)
    ran = [r for r in records.values() if r["status"] == "ran"]
    return {"workers": n_workers if work else 0,
            "lanes": [list(lane) for lane in lanes],
            "wall_s": wall, "steps_s": sum(r["seconds"] for r in ran),
            "cpu_s": sum(r["cpu_s"] for r in ran),
            "process_cpu_s": None if cpu0 is None or cpu1 is None else cpu1 - cpu0}


def _cpu_with_children() -> float | None:
    """CPU seconds (user + system) of this process and its finished child processes (the
    lanes' workers once the pool is shut down: their start-up and imports included)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _run_lanes_in_processes(work: list[tuple[int, list[dict[str, Any]]]], n_workers: int, *,
                            total: int, evals: Path) -> dict[str, dict[str, Any]]:
    """Run the lanes ``work`` in ``n_workers`` spawned processes; each step's record by name.

    Ctrl-C (SIGINT to the terminal's process group, or to this process alone) stops every
    lane's process (``_stop_lane_processes``): they leave without a traceback, a step's JSON
    is written whole or not at all (atomically), and no process is left behind; then
    ``imc.cli.common.Interrupted`` names the steps that were running.

    Raises:
        DemoError: A step failed (after the lanes already running have finished).
        imc.cli.common.Interrupted: Ctrl-C.
    """
    import concurrent.futures as cf
    import multiprocessing

    # spawn, not fork: a forked torch (OpenMP pools, the kernel loader) is not safe
    ctx = multiprocessing.get_context("spawn")
    # each step's progress, shared with the lanes' processes: 0 waiting, 1 running, 2 done
    progress = ctx.Array("b", max(w["n"] for _, lane in work for w in lane) + 1, lock=False)
    records: dict[str, dict[str, Any]] = {}
    errors: list[BaseException] = []
    pool = cf.ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx,
                                  initializer=_lane_process_init, initargs=(progress,))
    try:
        # SIGINT blocked while the processes start: they inherit the mask and take Ctrl-C
        # only once their handler is installed (a Ctrl-C meanwhile is delivered after that)
        with sigint_blocked():
            # no progress bars: two processes' bars would overwrite each other's lines
            futs = [pool.submit(_run_lane, w, total=total, lane=lane_no,
                                to_stderr=sys.stdout is sys.stderr, bars=False)
                    for lane_no, w in work]
        for f in futs:
            try:
                records.update(f.result())
            except cf.CancelledError:
                continue
            except Exception as e:  # re-raised below, after the other lanes
                errors.append(e)
                for g in futs:  # lanes not started yet are dropped
                    g.cancel()
    except KeyboardInterrupt:
        _stop_lane_processes(pool)
        running = [w for _, lane in work for w in lane if progress[w["n"]] == 1]
        what = (f"step {running[0]['n']}/{total} ({running[0]['title']})" if len(running) == 1
                else "steps " + ", ".join(f"{w['n']}/{total}" for w in running) if running
                else "the evaluation steps")
        raise _interrupted(what, evals) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if errors:
        raise errors[0]
    return records


def _stop_lane_processes(pool: Any) -> None:
    """Stop the lanes' processes after Ctrl-C: SIGTERM to each (its handler ends the running
    step, its subprocesses with it, and leaves with status 130; a process still starting up
    dies at once), then SIGKILL to any still there after ``LANE_STOP_S``. A second Ctrl-C
    meanwhile is ignored (the wait is bounded)."""
    from multiprocessing.connection import wait

    procs = list(getattr(pool, "_processes", {}).values())
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for p in procs:
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + LANE_STOP_S
        left = [p for p in procs if p.exitcode is None]
        while left and time.monotonic() < deadline:
            # the sentinels, not join(): the pool's own thread reaps these processes
            ready = wait([p.sentinel for p in left], timeout=deadline - time.monotonic())
            left = [p for p in left if p.sentinel not in ready]
        for p in left:
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(p.pid, signal.SIGKILL)
    finally:
        signal.signal(signal.SIGINT, old)


class _LaneStepInterrupted(KeyboardInterrupt):
    """Ctrl-C inside a lane's step ``n`` (``title``)."""

    def __init__(self, n: int, title: str) -> None:
        super().__init__(n, title)
        self.n, self.title = n, title


# In a lane's process: the steps' progress array (``_run_lanes_in_processes``) and whether a
# step is running (a Ctrl-C then unwinds it; between steps the process leaves at once).
_LANE_PROGRESS: Any = None
_LANE_BUSY = False


def _lane_process_init(progress: Any) -> None:
    """The initializer of a lane's process: Ctrl-C (SIGINT, from the terminal) and the demo's
    SIGTERM (``_stop_lane_processes``) end it quietly with status 130 (``_lane_stop``)."""
    global _LANE_PROGRESS
    _LANE_PROGRESS = progress
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _lane_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent


def _ignore_signal(signum: int, frame: Any) -> None:
    """A signal handler that does nothing."""


def _lane_stop(signum: int, frame: Any) -> None:
    """A lane process's SIGINT / SIGTERM handler: further signals are ignored; between steps
    it leaves at once (status 130, no traceback); in a step it raises ``KeyboardInterrupt``,
    which unwinds the step (a kernel compiler it runs is killed, a JSON being written is
    removed) up to ``_run_lane``, which leaves with status 130."""
    # a Python no-op, not SIG_IGN: the terminal's SIGINT and the demo's SIGTERM arrive
    # together, and a signal already pending whose handler became SIG_IGN makes Python print
    # "Signal 15 ignored due to race condition"
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _ignore_signal)
    if not _LANE_BUSY:
        os._exit(EXIT_INTERRUPTED)
    raise KeyboardInterrupt


def _run_lane(work: list[dict[str, Any]], *, total: int, lane: int, to_stderr: bool = False,
              bars: bool = True) -> dict[str, dict[str, Any]]:
    """Run one lane's evaluation steps in order, sharing one cache (the active one when
    there is one, else a new one); returns each step's record by name. ``to_stderr``: print
    to stderr (the parent's stdout is its JSON); ``bars``: False adds ``--quiet``.

    Raises:
        DemoError: A step exited with an error (it names the command to re-run).
    """
    global _LANE_BUSY
    from nnsim.evaluate import active_cache, shared_evaluations

    redirect = contextlib.redirect_stdout(sys.stderr) if to_stderr else contextlib.nullcontext()
    out: dict[str, dict[str, Any]] = {}
    w: dict[str, Any] = {}
    _LANE_BUSY = True
    try:
        with redirect, shared_evaluations(active_cache()) as cache:
            for w in work:
                if _LANE_PROGRESS is not None:
                    _LANE_PROGRESS[w["n"]] = 1
                out[w["name"]] = _run_lane_step(w, cache, total=total, lane=lane, bars=bars)
                if _LANE_PROGRESS is not None:
                    _LANE_PROGRESS[w["n"]] = 2
    except KeyboardInterrupt:
        if _LANE_PROGRESS is not None:  # a lane's process: leave quietly; the demo reports
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        raise _LaneStepInterrupted(w.get("n", 0), w.get("title", "")) from None
    finally:
        _LANE_BUSY = False
    return out


def _run_lane_step(w: dict[str, Any], cache: Any, *, total: int, lane: int,
                   bars: bool) -> dict[str, Any]:
    """Run one evaluation step of a lane; its record."""
    head = f"[{w['n']}/{total}] {w['title']}"
    print(f"{head} ...", flush=True)
    hits, misses = cache.hits, cache.misses
    argv = w["argv"] if bars or "--quiet" in w["argv"] else [*w["argv"], "--quiet"]
    t0, c0 = time.perf_counter(), time.process_time()
    res = _cli(argv)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    cmd = _cmd(argv)
    if res == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    if res != 0:
        raise DemoError(f"step '{w['title']}' failed (exit {res}); re-run it alone "
                        f"with: {cmd}")
    print(f"{head}: {dt:.0f} s ({cpu:.0f} CPU s, lane {lane})", flush=True)
    rec = dict(step=w["title"], status="ran", seconds=dt, cpu_s=cpu, lane=lane,
               command=cmd, exit=0)
    rec.update(_eval_counts(Path(w["path"]), cache.hits - hits,
                            cache.misses - misses, ran=True))
    return rec


_CLIP = ["--clipformer", "both", "--alpha", str(CLIP_ALPHA), "--beta", str(CLIP_BETA)]
# RAP on programmed cells converts 5-34 M times per image (fused C kernel nnsim/kernels/
# rap_mvm.c): bench/results/rap_speed.json measured 74/69/75/99/133/146 CPU ms per image-chip
# at 3/4/5/6/8/8-trimmed bits (#17, session 5, at load 7-8 on 2 cores; 46/40/45/74/95/123 at
# load 2-4 before the kernel got 1.3-1.8x faster in the same run, docs/rap.md 8.0d). In the
# demo (session 5, idle 2-core machine) the RAP steps at 90 x 5 took 118 + 140 + 57 = 315 CPU
# s, ~0.09 s per image-chip-setting, so their 8 settings on all 450 images x 5 chips would be
# ~1,600 CPU s (~13 min on 2 cores), over the demo's 5-minute evaluation target by itself.
# The RAP steps therefore score the first RAP_IMAGES test images on RAP_CHIPS chips (the
# analog runs use all 450 images; the report says so). Measured at 90 x 5 (#17, session 5,
# idle machine): the evaluations 238 s wall, 446 CPU s (analog lanes 44 + 80 CPU s).
RAP_IMAGES, RAP_CHIPS = 90, 5
# --rap-only: the report takes the analog points from the full analog steps, not from the RAP
# steps (which would score them again on RAP_IMAGES x RAP_CHIPS)
_RAP = ["--rap-only", "--rap-no-dense", "--limit", str(RAP_IMAGES), "--chips",
        str(RAP_CHIPS)]
_EVALS: dict[str, tuple[str, list[str]]] = {
    "corners": ("evaluate analog and analog + ClipFormer at each corner (6-bit ADC)",
                ["--process", ",".join(CORNERS), "--bits", str(DEMO_BITS), "--gamma", "1",
                 *_CLIP]),
    "temperature": ("evaluate analog at 27 and 85 degC at each corner (6-bit ADC)",
                    ["--process", ",".join(CORNERS), "--temp-c", "27,85", "--bits",
                     str(DEMO_BITS), "--gamma", "1"]),
    "bits": ("evaluate dense analog MVM across ADC bits (tt)",
             ["--process", "tt", "--bits", ",".join(map(str, BITS_SWEEP)), "--gamma", "1"]),
    "gamma": ("evaluate analog and analog + ClipFormer across write-noise gamma (tt)",
              ["--process", "tt", "--bits", str(DEMO_BITS), "--gamma",
               ",".join(f"{g:g}" for g in GAMMAS), *_CLIP]),
    "rap_corners": ("evaluate RAP (sparse low-ENOB MVM on the circuit ADC) at each corner",
                    ["--process", ",".join(CORNERS), "--bits", str(DEMO_BITS), "--gamma", "1",
                     *_RAP]),
    "rap_bits": ("evaluate RAP across ADC bits (tt)",
                 ["--process", "tt", "--bits",
                  ",".join(str(b) for b in RAP_BITS if b != DEMO_BITS), "--gamma", "1",
                  *_RAP]),
    # RAP at 8 bits again with the ADC's sampling pedestal trimmed (a design option, default
    # off: docs/rap.md section 4.1); the untrimmed 8-bit point is in rap_bits
    "rap_trim": ("evaluate RAP at 8 bits with the ADC pedestal trimmed (tt)",
                 ["--process", "tt", "--bits", "8", "--gamma", "1", "--adc-trim", "pedestal",
                  *_RAP]),
    # ClipFormer's Table II: standard and VAT (fine-tuned once, at gamma VAT_GAMMA, then
    # cached), each without and with ClipFormer, on the same chips, at the circuit's own
    # noise and at gamma 3/4/5
    "vat": ("variation-aware training (gamma 5) and the four-way table: standard / VAT x "
            "without / with ClipFormer, gamma 1/3/4/5 (tt)",
            ["--process", "tt", "--bits", str(DEMO_BITS), "--gamma",
             ",".join(f"{g:g}" for g in VAT_GAMMAS), *_CLIP, "--vat", "--vat-gamma",
             f"{VAT_GAMMA:g}"]),
}


# The evaluation steps in lanes: a lane runs its steps one after another in one process
# with one EvalCache, and run_demo runs --jobs lanes at once (one torch thread each), so both
# cores work. The dense analog steps share settings (the tt 6-bit gamma-1 point is in four of
# them, the corners in temperature and vat): they stay in one lane. The RAP steps share
# nothing with them or with each other (--rap-only: no analog points), so each is its own
# lane; a free process takes the next lane in this order (the longest first, as measured).
# longest first: the workers take lanes in this order (the ADC-bits lane, 3- and 4-bit exact
# low counts, and the analog lane with the VAT fine-tune are the longest; measured #17)
LANES: tuple[tuple[str, ...], ...] = (
    ("bits",), ("corners", "temperature", "gamma", "vat"), ("rap_corners",), ("rap_bits",),
    ("rap_trim",))


def _flag(extra: list[str], flag: str, default: int | None) -> int | None:
    """An evaluation step's own integer ``flag`` (``--chips``, ``--limit``; the last one wins,
    as in argparse), else ``default``."""
    idx = [i for i, a in enumerate(extra) if a == flag]
    return int(extra[idx[-1] + 1]) if idx else default


def _eval_chips(extra: list[str], chips: int) -> int:
    """The chips an evaluation step runs with: its own ``--chips``, else the demo's."""
    return int(_flag(extra, "--chips", chips) or chips)


def _eval_done(path: Path, *, chips: int, seed: int, images: int | None = None) -> bool:
    """An evaluation step's JSON is there and was made with these chips and this seed (and
    on ``images`` test images, when given: a step with ``--limit``)."""
    try:
        r = json.loads(path.read_text(encoding="utf-8"))
        rap = [m for x in r.get("rap") or [] for m in (x.get("rap"), x.get("dense")) if m]
        made = [*r.get("points", []), *rap]
        return (r["meta"].get("chips") == chips and r["meta"].get("seed") == seed
                and all(p.get("chips") == chips for p in made)
                and (images is None or all(p.get("n_images") == images for p in made)))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return False


def _eval_counts(path: Path, reused: int, evaluated: int, *, ran: bool) -> dict[str, Any]:
    """What an evaluation step scored (from its JSON): settings, chips, images, and how many
    settings it simulated and how many it took from an earlier step (same result)."""
    out: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
        r = json.loads(path.read_text(encoding="utf-8"))
        pts = r.get("points", [])
        out["settings"] = len(pts)
        out["chips"] = sorted({p.get("chips") for p in pts})
        out["images"] = sorted({p.get("n_images") for p in pts})
        rap = r.get("rap") or []
        if rap:
            out["rap_settings"] = len(rap)
            out["rap_chips"] = sorted({m.get("chips") for x in rap for m in
                                       (x.get("rap"), x.get("dense")) if m})
            out["rap_images"] = sorted({m.get("n_images") for x in rap for m in
                                        (x.get("rap"), x.get("dense")) if m})
    if ran:
        out.update(settings_simulated=evaluated, settings_reused=reused)
    return out


def _cmd(argv: list[str]) -> str:
    return "spicebridge " + " ".join(argv)


def _write_json(path: Path, obj: Any) -> int:
    from imc.cli.common import dumps

    atomic_write_text(path, dumps(obj) + "\n")
    return 0


def statistical_fits(xbar: Path, adc: Path) -> dict[str, Any]:
    """The shared ``fit_*`` models fitted per corner at the nominal supply and temperature."""
    import numpy as np

    from characterization.fitting import fit_read_noise, fit_threshold_spread, fit_write_noise
    from characterization.lookup import read_lookup

    xb, ad = read_lookup(xbar), read_lookup(adc)
    out: dict[str, Any] = {"vdd_v": VDD_V, "temp_c": TEMP_C, "write_noise": {},
                           "read_noise": {}, "adc_threshold_spread": {}}
    samples, wn = xb["crossbar/write_noise_samples"], xb["crossbar/write_noise"]
    g_min, g_max = float(wn.attrs["g_min_s"]), float(wn.attrs["g_max_s"])
    for corner in samples.coords["process"]:
        at = dict(process=str(corner), vdd_v=VDD_V, temp_c=TEMP_C)
        out["write_noise"][str(corner)] = {}
        for mode in samples.coords["mode"]:
            s = samples.sel(**at, mode=str(mode))           # (level, sample)
            target = wn.sel(**at, mode=str(mode), stat="target_s").data  # (level,)
            g_t = np.broadcast_to(np.asarray(target)[:, None], s.data.shape)
            g_s = np.asarray(s.data, float)
            if "crossbar/cell_read" in xb:  # read at T -> the state domain (as nnsim does)
                c = np.asarray(xb["crossbar/cell_read"].sel(**at).data, float)
                g_s = g_min + (g_s - c[0]) / (c[-1] - c[0]) * (g_max - g_min)
            f = fit_write_noise(g_t, g_s, g_min_s=g_min, g_max_s=g_max)
            out["write_noise"][str(corner)][str(mode)] = f.to_dict()
        rn = xb["crossbar/read_noise"].sel(**at)
        out["read_noise"][str(corner)] = fit_read_noise(rn.coords["i_col_a"], rn.data).to_dict()
        th = ad["adc/thresholds"].sel(**at, bits=DEMO_BITS)  # (instance, code)
        n = 2 ** DEMO_BITS - 1
        k_minus = ideal_threshold_k_minus(th.attrs, th.data[:, :n],
                                          source=f"{corner}: adc/thresholds")
        ideal = np.arange(1, n + 1) - k_minus
        out["adc_threshold_spread"][str(corner)] = fit_threshold_spread(
            th.data[:, :n], ideal_lsb=ideal).to_dict()
    return out
