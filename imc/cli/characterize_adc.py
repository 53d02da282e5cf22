"""``spicebridge characterize adc``: the SAR ADC characterization into a lookup file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .characterize import add_run_options


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``adc`` under ``spicebridge characterize``."""
    p = sub.add_parser(
        "adc", help="SAR ADC: SPICE comparator/DAC Monte Carlo + behavioural SAR -> lookup file",
        description="Characterize the N-bit SAR ADC (sky130 StrongARM comparator, binary CDAC) "
        "over process x vdd x temp x bits with Monte Carlo, validate the behavioural model "
        "against full transistor-level SPICE conversions, and write the adc/* lookup tables.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", choices=("quick", "default", "full"), default=None,
                   help="built-in sweep (default: quick)")
    g.add_argument("--config", type=Path, metavar="FILE.toml",
                   help="TOML settings ([adc] table; keys of characterization.adc.DEFAULTS and "
                   "the presets)")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run it; exit 2 on a bad configuration, 1 when the sweep failed as a whole."""
    from characterization.adc.characterize import build_config, run_characterization
    from characterization.errors import CharacterizationError

    try:
        cfg = build_config(args.preset, args.config)
    except ValueError as e:
        print(f"spicebridge characterize adc: {e}", file=sys.stderr)
        return 2
    try:
        from .common import quiet_stdout

        with quiet_stdout(args):
            summary = run_characterization(cfg, args.out, jobs=args.jobs, quiet=args.quiet,
                                           plots_dir=args.plots, dask=args.dask)
    except CharacterizationError as e:
        print(f"spicebridge characterize adc: {e}", file=sys.stderr)
        return 1
    v = summary["validation"]
    from .common import emit

    emit(args, summary, lambda: _human(summary, v))
    return 0


def _human(summary: dict, v: dict) -> None:
    """The human summary: the file, its points, the validation against SPICE."""
    print(f"{summary['path']}: {summary['n_points']} points, {summary['n_failed']} failed, "
          f"{summary['wall_s']:.1f} s")
    print(f"validation: behavioural vs SPICE thresholds at {v['bits']} bits, "
          f"{v['instances']} instance(s): RMS {v['rms_lsb']:.3f} LSB, max "
          f"{v['max_lsb']:.3f} LSB (target <= {v['target_rms_lsb']} LSB RMS; method "
          f"floor {v.get('floor_rms_lsb', float('nan')):.4f} LSB)")
    for a in v.get("above_target", []):
        print(f"validation ABOVE TARGET at {a['process']}/{a['vdd_v']:g} V/"
              f"{a['temp_c']:g} °C, {a['bits']} bits: {a['rms_lsb']:.3f} LSB RMS")
