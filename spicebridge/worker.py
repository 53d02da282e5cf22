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
