"""``spicebridge characterize crossbar``: the crossbar column characterization."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from characterization.crossbar.run import PRESETS

from .characterize import add_run_options


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``crossbar`` under ``spicebridge characterize``."""
    p = sub.add_parser(
        "crossbar", help="1T1R RRAM column: read transfer, read noise, write noise, margin",
        description="Characterize the 1T1R RRAM crossbar column (sky130 access transistors, "
        "netlists/rram/rram.lib memristor) over process x vdd x temperature x Monte Carlo and "
        "write a lookup HDF5 with the crossbar/* tables (docs/crossbar.md).")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="run size (default: quick; quick = tt/ss/ff x 27/85 degC, 64 rows)")
    g.add_argument("--config", type=Path, metavar="FILE.toml",
                   help="TOML plan: a preset plus overrides (docs/crossbar.md)")
    p.add_argument("--model", type=Path, metavar="FILE.lib", default=None,
                   help="memristor library instead of netlists/rram/rram.lib, e.g. one fitted "
                   "by 'spicebridge fit memristor' (.subckt rram te be params: ...); its "
                   "ron/roff set G_max/G_min unless the config sets them; its fit provenance "
                   "goes into the lookup file")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the characterization; 2 on a bad plan, 1 when every point failed."""
    from characterization.crossbar.run import characterize_crossbar, make_plan
    from characterization.errors import SweepError

    try:
        plan = make_plan(args.preset or "quick", args.config, model=args.model)
    except (OSError, ValueError) as e:
        print(f"spicebridge characterize crossbar: {e}", file=sys.stderr)
        return 2
    try:
        from .common import quiet_stdout

        with quiet_stdout(args):
            summary = characterize_crossbar(plan, args.out, jobs=args.jobs, dask=args.dask,
                                            quiet=args.quiet, plots=args.plots)
    except ValueError as e:  # the --model library does not simulate
        print(f"spicebridge characterize crossbar: {e}", file=sys.stderr)
        return 2
    except SweepError as e:
        print(f"spicebridge characterize crossbar: {e}", file=sys.stderr)
        return 1
    from .common import emit

    emit(args, summary, lambda: _human(summary))
    if summary["n_failed"]:
        print(f"spicebridge characterize crossbar: {summary['n_failed']} point(s) failed; "
              f"listed in {summary['path']} (spicebridge inspect)", file=sys.stderr)
    return 0


def _human(summary: dict) -> None:
    """One line per scalar of the run's summary (``--json`` has all of it)."""
    for k, v in summary.items():
        if k not in ("column", "write") and not isinstance(v, dict | list):
            print(f"{k}: {v}")
