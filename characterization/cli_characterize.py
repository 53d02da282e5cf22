"""``spicebridge characterize crossbar|adc``: the built-in characterizations.

Each characterization package (``characterization.crossbar``, ``characterization.adc``) has a
``cli`` module with ``register(subparsers)``; this module only makes the group.
"""

from __future__ import annotations

import argparse
import importlib

_TARGETS = ("characterization.crossbar.cli", "characterization.adc.cli")


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
