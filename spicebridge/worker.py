"""One engine and one loaded circuit per worker process, for every caller.

libngspice holds one circuit per process. Callers that re-run a deck point after point (the
crossbar and ADC characterizations, the fits, the TOML sweeps) ask this module for it:
``circuit(key, deck)`` parses the deck once, returns the same loaded circuit while nothing
else was loaded, and loads it again when another deck (or a crash of ngspice) replaced it.

It also keeps the process's health counters: analyses run and crash reloads of libngspice.
A sweep recycles a worker whose ``needs_restart()`` is true (libngspice grows ~1 KB per
run and ~5 MB per crash reload, and gives nothing back).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from .engines import create_engine
from .engines.base import Engine, LoadedCircuit
from .errors import SimulationError

RECYCLE_RUNS = 20_000
"""Analyses per process after which ``needs_restart`` says to replace it (bounds the
per-run growth inside libngspice to ~20 MB)."""

_ENGINES: dict[tuple[Any, ...], Engine] = {}
_HELD: dict[str, Any] = {"key": None, "circuit": None, "pid": None}
_BAD: dict[Any, BaseException] = {}
_MAX_BAD = 256


def engine(name: str = "shared", **kwargs: Any) -> Engine:
    """This process's engine of that name and options (made once, then reused).

    Args:
        name: ``"shared"`` or ``"batch"``.
        **kwargs: Engine options (``allow_control=True`` ...); part of the cache key.
    """
    key = (os.getpid(), name, tuple(sorted(kwargs.items())))
    eng = _ENGINES.get(key)
    if eng is None:
        eng = _ENGINES[key] = create_engine(name, **kwargs)
    return eng


def circuit(key: Any, deck: str | Callable[[], str], *, engine_name: str = "shared",
            corner_key: str | None = None, remember_parse_errors: bool = False,
            **engine_kwargs: Any) -> LoadedCircuit:
    """The loaded circuit for ``key`` in this process.

    Shared engine: parsed once; reloaded when ``key`` changed, or when another load or a
    crash replaced it (``is_valid()`` false). Batch engine: a fresh circuit per call (a batch
    circuit replays every alteration made on it).

    Args:
        key: Hashable identity of the deck (a hash of its text, a config tuple); callers
            should prefix it with their own name.
        deck: The deck text, or a function that makes it (called only to load).
        engine_name: ``"shared"`` or ``"batch"``.
        corner_key: Passed to ``load`` (named in errors).
        remember_parse_errors: A deck that failed to parse fails again at once for the same
            key, without asking ngspice (sweeps: every later point of that deck).
        **engine_kwargs: Engine options (``allow_control``).

    Raises:
        SimulationError: ngspice rejected the deck (or did before, with
            ``remember_parse_errors``).
    """
    if remember_parse_errors and key in _BAD:
        raise _BAD[key]
    eng = engine(engine_name, **engine_kwargs)
    if engine_name == "batch":
        return eng.load(deck() if callable(deck) else deck, corner_key=corner_key)
    held = _HELD["circuit"]
    if (_HELD["pid"] == os.getpid() and _HELD["key"] == key and held is not None
            and held.is_valid()):
        return held
    _HELD.update(key=None, circuit=None, pid=None)
    try:
        circ = eng.load(deck() if callable(deck) else deck, corner_key=corner_key)
    except SimulationError as e:
        if remember_parse_errors:
            if len(_BAD) >= _MAX_BAD:
                _BAD.clear()
            _BAD[key] = e
        raise
    _HELD.update(key=key, circuit=circ, pid=os.getpid())
    return circ


def forget() -> None:
    """Drop the held circuit, the engines and remembered parse errors (tests)."""
    _HELD.update(key=None, circuit=None, pid=None)
    _ENGINES.clear()
    _BAD.clear()


def health() -> dict[str, Any]:
    """``runs`` (analyses), ``crash_reloads`` and ``exhausted`` of this process's libngspice
    (zeros when it was never loaded)."""
    from .engines import shared

    inst = shared._INSTANCE
    if inst is None or inst.pid != os.getpid():
        return {"runs": 0, "crash_reloads": 0, "exhausted": False}
    return {"runs": inst.runs, "crash_reloads": inst._reloads, "exhausted": inst.exhausted}


def needs_restart(max_runs: int = RECYCLE_RUNS) -> bool:
    """True when this process should be replaced: more than ``max_runs`` analyses, or
    libngspice crashed more often than it may be reloaded."""
    h = health()
    return bool(h["exhausted"] or h["runs"] >= max_runs)


def crash_guarded(fn: Callable[[], int], *, what: str, remedy: str,
                  on_error: Callable[[BaseException], int] | None = None) -> int:
    """Run ``fn`` in a forked child so that a crash of libngspice is reported, not silent.

    A segfault inside libngspice kills the process that loaded it: the command line would
    exit -11 without a word. Here the command runs in a child (a fork: no new interpreter, no
    re-import); when the child dies from a signal, the parent prints what happened and the
    remedy and returns 1. Where there is no ``fork``, stdout is not a real file (a test's
    captured output) or libngspice is loaded in this process already, ``fn`` runs here.

    Args:
        fn: The command; returns its exit status.
        what: What was running (``"simulate deck.cir"``), for the message.
        remedy: What to do about it (``"run it with --engine batch"``).
        on_error: Turns an exception raised by ``fn`` in the child into an exit status
            (printing its message); exceptions it does not handle print a traceback (exit 1).

    Returns:
        The exit status: ``fn``'s, or 1 when the child was killed by a signal.
    """
    import signal
    import sys

    try:
        real_out = sys.stdout.fileno() >= 0 and sys.stderr.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        real_out = False
    from .engines import shared

    loaded = shared._INSTANCE is not None and shared._INSTANCE.pid == os.getpid()
    if (loaded or not hasattr(os, "fork") or not real_out
            or os.environ.get("SPICEBRIDGE_NO_FORK")):
        # libngspice already in this process (a program calling the CLI twice): its threads
        # and locks do not survive a fork, so run here
        return fn()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: run, then leave without running the parent's exit handlers
        import faulthandler

        faulthandler.disable()  # the parent says what happened, in words
        code = 1
        try:
            code = int(fn() or 0)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except KeyboardInterrupt:
            code = 130
        except BrokenPipeError:  # `spicebridge simulate deck | head`: not an error to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = 1
        except BaseException as e:
            try:
                code = on_error(e) if on_error is not None else None
            except BaseException:
                code = None
            if code is None:
                import traceback

                traceback.print_exc()
                code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except OSError:
                pass
            finally:
                os._exit(code)
    def forward(signum: int, _frame: object) -> None:  # `kill PARENT` stops the child too
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    old = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}  # Ctrl-C reaches both
    for sig in (signal.SIGTERM, signal.SIGHUP):
        old[sig] = signal.signal(sig, forward)
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL):
            print(f"spicebridge: {what}: stopped by {name}", file=sys.stderr)
            return 128 + sig
        print(f"spicebridge: {what}: the process crashed ({name}; ngspice's shared library "
              f"most likely: it runs inside this process). Nothing after the crash was "
              f"written. Remedy: {remedy}", file=sys.stderr)
        return 1
    return os.WEXITSTATUS(status)
