"""``spicebridge demo``: from netlists to ViT accuracy on built-in defaults, with a report.

The demo is the README's first command. It runs the other subcommands in this process, in
order, each resumable, so a second run reuses what is done:

1. ``characterize crossbar --preset quick`` and ``characterize adc --preset quick`` (three
   process corners) into ``OUT/crossbar.h5`` and ``OUT/adc.h5``;
2. statistical fits of the characterized distributions (write noise, read noise, ADC
   thresholds) and a SPICE-in-the-loop fit of the memristor model to a bundled I-V loop;
3. ``train --dataset digits`` (or the cached checkpoint);
4. ``evaluate``: digital, analog, analog + ClipFormer and RAP across gamma, corner and ADC bits;
5. ``OUT/report.md``, ``OUT/report.json`` and the PNG plots.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the command line."""
    from imc.demo.pipeline import LANE_STOP_S, RAP_CHIPS, RAP_IMAGES

    p = sub.add_parser(
        "demo", help="run everything on built-in defaults: characterize, fit, train, evaluate, "
        "report (half an hour or more on 2 cores the first time, most of it SPICE; minutes "
        "once the SPICE files are there; resumable; each step's time in OUT/report.json)",
        description="Run every step, each resumable, so a second run reuses what is "
        "done:\n\n"
        "1. characterize crossbar and adc (--preset quick, three process corners) into "
        "OUT/crossbar.h5 and OUT/adc.h5;\n\n"
        "2. statistical fits of the characterized distributions (write noise, read noise, ADC "
        "thresholds) and a SPICE-in-the-loop fit of the memristor model to a bundled I-V "
        "loop;\n\n"
        "3. train --dataset digits (or the cached checkpoint);\n\n"
        "4. evaluate: digital, analog, analog + ClipFormer and RAP across gamma, corner and "
        "ADC bits, every analog setting on all test images and --chips chips; every RAP "
        f"setting on the first {RAP_IMAGES} test images and {RAP_CHIPS} chips, whatever "
        "--chips (RAP_IMAGES, RAP_CHIPS in imc/demo/pipeline.py: RAP on all images would not "
        "fit the evaluation time); the steps run in lanes, --jobs lanes at once, each lane in "
        "its own process (the corner, temperature, gamma and VAT steps in one lane, where a "
        "setting two steps share is simulated once; the ADC-bits step and each RAP step in "
        "their own);\n\n"
        "5. OUT/report.md, OUT/report.json and the PNG plots.\n\n"
        "Ctrl-C stops the running steps and their processes (at once; any still there "
        f"after {LANE_STOP_S:g} s are killed) and exits 130; the finished steps are kept and "
        "the same command run again resumes from them.")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder "
                   "(default runs/demo)")
    p.add_argument("--jobs", type=int, default=2,
                   help="SPICE worker processes, and evaluation lanes run at once, each in its "
                   "own process with one torch thread (default 2; 1: every evaluation step "
                   "in this process, one after another; the results are the same)")
    p.add_argument("--chips", type=int, default=5,
                   help="simulated chips per analog setting (default 5; the RAP settings "
                   f"always run on {RAP_CHIPS} chips x {RAP_IMAGES} images)")
    p.add_argument("--seed", type=int, default=0, help="root seed of the evaluations")
    p.add_argument("--redo", action="store_true",
                   help="recompute the statistical fits, the evaluations and the report (the "
                   "characterizations, the memristor fit and the trained model are reused)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    from .common import add_output_options

    add_output_options(p, quiet=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when the report was written."""
    from imc.demo.pipeline import DemoError, run_demo

    from .common import emit, quiet_stdout

    for flag, v in (("--jobs", args.jobs), ("--chips", args.chips)):
        if v < 1:
            print(f"spicebridge demo: {flag} must be a positive integer, got {v}",
                  file=sys.stderr)
            return 2
    try:
        with quiet_stdout(args):
            report = run_demo(args.out, jobs=args.jobs, chips=args.chips, seed=args.seed,
                              redo=args.redo, quiet=args.quiet)
    except DemoError as e:
        print(f"spicebridge demo: {e}", file=sys.stderr)
        return 1
    report = Path(report)
    emit(args, {"out": str(args.out), "report": str(report),
                "report_json": str(report.with_suffix(".json"))},
         lambda: print(f"\nreport: {report}"))
    return 0
