"""``spicebridge fit memristor``: fit the RRAM compact model to a measured record."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from characterization.fitting.errors import FitError, MeasurementFormatError
from spicebridge.errors import SpiceBridgeError

if TYPE_CHECKING:  # the fit machinery (scipy) is imported only when a fit runs
    from characterization.fitting.spice_fit import FitResult, SpiceFitProblem


def _pairs(text: str | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"{what}: expected name=value, got {item!r}")
        out[name.strip().lower()] = value.strip()
    return out


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``fit`` (with ``memristor``) to the command line."""
    p = sub.add_parser("fit", help="fit compact-model parameters to measured data (SPICE in the "
                       "loop)", description="Fit device-model parameters to measured curves by "
                       "simulating the same stimulus in ngspice.")
    fsub = p.add_subparsers(dest="fit_command", metavar="MODEL", required=True)
    m = fsub.add_parser(
        "memristor", help="fit the RRAM model (netlists/rram/rram.lib) to an I-V record",
        description="Replay the measured voltage on the memristor model in ngspice and fit "
        "the chosen parameters (least squares with bounds, relative residuals, positive "
        "parameters in log space). Writes the model with the fitted defaults and the fit's "
        "provenance in its header. CSV format: docs/fitting.md.")
    m.add_argument("--data", type=Path, required=True, metavar="CSV",
                   help="measured record: time_s (or index), v_v, i_a [, pulse, curve]")
    m.add_argument("--model", type=Path, default=None, metavar="LIB",
                   help="compact model library (default: netlists/rram/rram.lib)")
    m.add_argument("--subckt", default="rram", help="subcircuit name (default rram)")
    m.add_argument("--params", default=None, metavar="A,B,C",
                   help="parameters to fit (default ron,roff,vset,vreset)")
    m.add_argument("--start", default=None, metavar="A=V,...", help="start values")
    m.add_argument("--bounds", default=None, metavar="A=LO:HI,...", help="bounds")
    m.add_argument("--fixed", default=None, metavar="A=V,...",
                   help="other model parameters set, not fitted (e.g. w0=0)")
    m.add_argument("--out", type=Path, required=True, metavar="FITTED.lib",
                   help="fitted model (an include the crossbar netlists accept)")
    m.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="write fit_report.json, fit_record.csv and fit_overlay.png here")
    m.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="worker processes for the Jacobian columns (default 1)")
    m.add_argument("--max-nfev", type=int, default=60, metavar="N",
                   help="limit on fit iterations (function evaluations; default 60)")
    m.add_argument("--sample-period-s", type=float, default=None, metavar="S",
                   help="time between samples, for a CSV with an index instead of time")
    m.add_argument("--temp-c", type=float, default=27.0, help="measurement temperature (degC)")
    m.add_argument("--fit-pulses", action="store_true",
                   help="also fit samples marked inside programming pulses")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(func=run_memristor)

    g = fsub.add_parser(
        "netlist", help="fit parameters of any netlist described in a TOML file",
        description="Fit .param or instance parameters of any deck to measured curves "
        "(format: docs/fitting.md, 'fit netlist').")
    g.add_argument("--config", type=Path, required=True, metavar="FIT.toml",
                   help="deck, parameters and curves")
    g.add_argument("--out", type=Path, required=True, metavar="FITTED.inc",
                   help="fitted .param values with the fit's provenance")
    g.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="write fit_report.json, fit_<curve>.csv and fit_overlay.png here")
    g.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="worker processes for the Jacobian columns (default 1)")
    g.add_argument("--max-nfev", type=int, default=60, metavar="N",
                   help="limit on function evaluations (default 60)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=run_netlist)


def run_memristor(args: argparse.Namespace) -> int:
    """Exit 0: converged; 3: not converged (best point written); 2: bad input; 1: SPICE error."""
    from characterization.fitting.measurement import read_measurement_csv
    from characterization.fitting.memristor import (
        DEFAULT_PARAMS,
        memristor_problem,
        write_fitted_model,
    )
    from characterization.fitting.report import write_fit_report

    prog = "spicebridge fit memristor"
    try:
        start = {k: float(v) for k, v in _pairs(args.start, "--start").items()}
        fixed = {k: float(v) for k, v in _pairs(args.fixed, "--fixed").items()}
        bounds = {}
        for k, v in _pairs(args.bounds, "--bounds").items():
            lo, sep, hi = v.partition(":")
            if not sep:
                raise argparse.ArgumentTypeError(f"--bounds: expected {k}=LO:HI, got {v!r}")
            bounds[k] = (float(lo), float(hi))
        params = ([p for p in args.params.split(",") if p.strip()] if args.params
                  else list(DEFAULT_PARAMS))
        meas = read_measurement_csv(args.data, sample_period_s=args.sample_period_s)
        problem = memristor_problem(meas, model_path=args.model, params=params, start=start,
                                    bounds=bounds, fixed=fixed, subckt=args.subckt,
                                    temp_c=args.temp_c, fit_pulses=args.fit_pulses)
    except FileNotFoundError as e:
        print(f"{prog}: {e.filename}: no such file", file=sys.stderr)
        return 2
    except (MeasurementFormatError, FitError, argparse.ArgumentTypeError, ValueError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2

    result = _fit_and_print(problem, args, prog, args.data)
    if result is None:
        return 1
    write_fitted_model(result, args.out, model_path=args.model, subckt=args.subckt)
    if args.report is not None:
        write_fit_report(result, args.report, title=f"memristor fit of {args.data.name}")
    print(f"wrote {args.out}" + (f" and {args.report}/" if args.report else ""))
    return 0 if result.converged else 3


def run_netlist(args: argparse.Namespace) -> int:
    """Exit 0: converged; 3: not converged (best point written); 2: bad input; 1: SPICE error."""
    from characterization.fitting.netlist_fit import load_fit_config, write_fitted_params
    from characterization.fitting.report import write_fit_report

    prog = "spicebridge fit netlist"
    try:
        problem = load_fit_config(args.config)
    except FileNotFoundError as e:
        print(f"{prog}: {e.filename}: no such file", file=sys.stderr)
        return 2
    except (MeasurementFormatError, FitError, SpiceBridgeError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    result = _fit_and_print(problem, args, prog, args.config)
    if result is None:
        return 1
    write_fitted_params(result, args.out)
    if args.report is not None:
        write_fit_report(result, args.report, title=f"fit {problem.name}")
    print(f"wrote {args.out}" + (f" and {args.report}/" if args.report else ""))
    return 0 if result.converged else 3


def _fit_and_print(problem: SpiceFitProblem, args: argparse.Namespace, prog: str,
                   source: Path) -> FitResult | None:
    """Run the fit with a progress bar and print the summary; ``None`` on a SPICE error."""
    from tqdm import tqdm

    from characterization.fitting.spice_fit import fit_spice

    bar = tqdm(total=None, unit="sim", desc="fit", disable=args.quiet, file=sys.stderr)

    def progress(n_sim: int, cost: float) -> None:
        bar.n = n_sim
        bar.set_postfix(cost=f"{cost:.4g}", refresh=True)

    try:
        result = fit_spice(problem, jobs=args.jobs, max_nfev=args.max_nfev, progress=progress)
    except (FitError, SpiceBridgeError) as e:
        bar.close()
        print(f"{prog}: {source}: {e}", file=sys.stderr)
        return None
    bar.close()
    print(f"{'converged' if result.converged else 'NOT CONVERGED'} after {result.n_sim} "
          f"simulations in {result.wall_s:.1f} s ({result.jobs} job(s))")
    for p in result.parameters:
        print(f"  {p.name:<8} = {result.values[p.name]:.6g} {p.units}   "
              f"{result.confidence:.0%} CI [{result.ci_low[p.name]:.6g}, "
              f"{result.ci_high[p.name]:.6g}]   start {result.start[p.name]:.6g}")
    for c in result.curves:
        u = c.curve.y_units
        print(f"  residual {c.name}: rms {c.rms:.4g} {u}, max {c.max_abs:.4g} {u}, "
              f"relative rms {c.rms_scaled:.4g}")
    print(f"  optimizer: {result.message}")
    if not result.converged:
        print(f"{prog}: {result.message}", file=sys.stderr)
    return result
