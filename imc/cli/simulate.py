"""``spicebridge simulate DECK``: run a plain SPICE deck and print its vectors."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from spicebridge.engines import create_engine
from spicebridge.errors import SpiceBridgeError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``simulate`` to the command line."""
    p = sub.add_parser("simulate", help="run a SPICE deck as is and print its vectors",
                       description="Run a plain SPICE deck (its own .op/.tran/.ac/.noise lines) "
                       "in ngspice and print every vector of every plot.")
    p.add_argument("deck", type=Path, help="SPICE deck file")
    p.add_argument("--engine", choices=("shared", "batch"), default="shared",
                   help="shared: in-process libngspice (fast); batch: ngspice -b (isolated)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="json: one object {plot: {vector: number or list}} on stdout")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="stop an analysis running longer than S seconds (default 600)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Simulate the deck; exit 1 with ngspice's words on failure, 2 on a missing file."""
    try:
        deck = args.deck.read_text(encoding="latin-1")
    except OSError as e:
        print(f"spicebridge simulate: cannot read {args.deck}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        engine = create_engine(args.engine)
        result = engine.simulate(deck, timeout_s=args.timeout)
    except SpiceBridgeError as e:
        print(f"spicebridge simulate: {args.deck}: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        json.dump(result.to_json_dict(), sys.stdout)
        sys.stdout.write("\n")
        return 0
    for key, plot in result.plots.items():
        print(f"{key}: {plot.title}")
        for name, vec in plot.vectors.items():
            v = np.real(vec)
            if v.size == 1:
                print(f"  {name:<24} {v[0]: .9g}")
            else:
                print(f"  {name:<24} {v.size} points, first {v[0]:.6g}, last {v[-1]:.6g}, "
                      f"min {v.min():.6g}, max {v.max():.6g}")
    return 0
