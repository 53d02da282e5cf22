"""``spicebridge characterize crossbar|adc``: the built-in characterizations.

Each characterization package (``characterization.crossbar``, ``characterization.adc``) has a
``cli`` module with ``register(subparsers)``; this module only makes the group.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

_TARGETS = ("imc.cli.characterize_crossbar", "imc.cli.characterize_adc")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options every characterization shares: output, workers, Dask, plots, quiet,
    ``--json [PATH]`` (the run's summary)."""
    p.add_argument("--out", type=Path, required=True, metavar="FILE.h5", help="lookup file")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="worker processes (one libngspice each); -1 = all cores")
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run on a Dask scheduler (tcp://host:port) instead of local workers")
    p.add_argument("--plots", type=Path, metavar="DIR", default=None, help="write PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    from .common import add_output_options

    add_output_options(p, quiet=False)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("characterize", help="characterize a built-in circuit (crossbar, adc) "
                       "over PVT and Monte Carlo into a lookup file")
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    for mod in _TARGETS:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name and mod.startswith(exc.name):
                continue
            raise
        module.register(targets)
