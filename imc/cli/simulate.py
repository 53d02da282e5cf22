"""``spicebridge simulate DECK``: run a plain SPICE deck and print its vectors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from spicebridge.engines import create_engine
from spicebridge.errors import SpiceBridgeError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``simulate`` to the command line."""
    p = sub.add_parser("simulate", help="run a SPICE deck as is and print its vectors",
                       description="Run a plain SPICE deck (its own .op/.tran/.ac/.noise lines) "
                       "in ngspice and print every vector of every plot. The deck is your code "
                       "and runs as ngspice would run it; the model files it includes are data "
                       "and may not hold .control blocks or shell lines (--allow-control "
                       "lifts that).")
    p.add_argument("deck", type=Path, help="SPICE deck file")
    p.add_argument("--engine", choices=("shared", "batch"), default="shared",
                   help="shared: in-process libngspice (fast); batch: ngspice -b (isolated)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="json: one object {plot: {vector: number or list}} on stdout (the "
                   "same as --json)")
    from .common import add_output_options

    add_output_options(p, quiet=False)
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="stop an analysis running longer than S seconds (default 600)")
    p.add_argument("--allow-control", action="store_true",
                   help="let included / .lib model files run .control blocks and shell "
                   "lines (refused by default: included files are data)")
    p.add_argument("--keep", action="store_true",
                   help="batch engine: keep the run's work folder (deck, raw file) instead "
                   "of removing it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Simulate the deck; exit 1 with ngspice's words on failure, 2 on bad input.

    The shared engine runs in a forked child, so that a crash of libngspice is reported
    (with the ``--engine batch`` remedy) instead of a silent exit -11.
    """
    if not (args.timeout > 0 and args.timeout < float("inf")):
        print(f"spicebridge simulate: --timeout {args.timeout}: must be a positive number of "
              "seconds", file=sys.stderr)
        return 2
    try:
        deck = args.deck.read_text(encoding="latin-1")
    except OSError as e:
        print(f"spicebridge simulate: cannot read {args.deck}: {e.strerror}", file=sys.stderr)
        return 2
    if args.engine == "shared":
        from spicebridge.worker import crash_guarded

        from .sweep import _said_interrupt

        return crash_guarded(_said_interrupt(lambda: _simulate(args, deck), "simulate"),
                             what=f"simulate {args.deck}",
                             remedy=f"spicebridge simulate --engine batch {args.deck} (one "
                             "ngspice process per run: a crash is reported as an error)")
    return _simulate(args, deck)


def _simulate(args: argparse.Namespace, deck: str) -> int:
    from spicebridge.errors import NetlistError

    kw = {"allow_control": True} if args.allow_control else {}
    if args.engine == "batch" and args.keep:
        kw["keep_dirs"] = True
    try:
        engine = create_engine(args.engine, **kw)
        result = engine.simulate(deck, timeout_s=args.timeout)
    except NetlistError as e:  # bad input: an included file refused, a .control in batch
        print(f"spicebridge simulate: {args.deck}: {e}", file=sys.stderr)
        return 2
    except SpiceBridgeError as e:
        print(f"spicebridge simulate: {args.deck}: {e}", file=sys.stderr)
        return 1
    from .common import emit

    if args.format == "json" and not args.json:
        args.json = "-"
    emit(args, result.to_json_dict(), lambda: _print_plots(result))
    return 0


def _print_plots(result: Any) -> None:
    """Every vector of every plot, one line each."""
    for key, plot in result.plots.items():
        print(f"{key}: {plot.title}")
        for name, vec in plot.vectors.items():
            v = np.real(vec)
            if v.size == 1:
                print(f"  {name:<24} {v[0]: .9g}")
            else:
                print(f"  {name:<24} {v.size} points, first {v[0]:.6g}, last {v[-1]:.6g}, "
                      f"min {v.min():.6g}, max {v.max():.6g}")
