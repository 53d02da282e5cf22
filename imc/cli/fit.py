"""``spicebridge fit memristor``: fit the RRAM compact model to a measured record."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
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
        "memristor", help="fit a memristor model (rram, vteam, vteam-exp or a library) to an "
        "I-V record",
        description="Replay the measured voltage on the memristor model in ngspice and fit "
        "the chosen parameters (least squares with bounds, relative residuals, positive "
        "parameters in log space), with the instrument's offsets and a series resistance "
        "between the source and the device. Start values and bounds come from the record "
        "(branch slopes, where the branches part, the record's rate). The fit is judged: "
        "residual against the record's noise, parameters on bounds, Jacobian rank; a fit "
        "that is not adequate exits 3 and says why. Writes the model with the fitted "
        "defaults and the fit's provenance in its header. CSV format: docs/fitting.md.")
    m.add_argument("--data", type=Path, required=True, metavar="CSV",
                   help="measured record: time_s (or index), v_v, i_a [, pulse, curve]")
    m.add_argument("--model", default=None, metavar="NAME|LIB",
                   help="model form: rram (netlists/rram/rram.lib, the default), vteam "
                   "(VTEAM, Kvatinsky 2015, R linear in the state), vteam-exp (R exponential "
                   "in the state), or a library file")
    m.add_argument("--subckt", default=None, help="subcircuit name (default: the form's; rram "
                   "for a library file)")
    m.add_argument("--params", default=None, metavar="A,B,C",
                   help="model parameters to fit (default: those of ron,roff,vset,vreset,kset,"
                   "kreset the model has)")
    m.add_argument("--start", default=None, metavar="A=V,...",
                   help="start values (default: from the record)")
    m.add_argument("--bounds", default=None, metavar="A=LO:HI,...",
                   help="bounds (default: from the record; the report says from what)")
    m.add_argument("--fixed", default=None, metavar="A=V,...",
                   help="other model parameters set, not fitted (e.g. w0=0)")
    m.add_argument("--v-offset", default="fit", metavar="V|fit",
                   help="instrument voltage offset: a value (V) fixes it, 'fit' fits it")
    m.add_argument("--i-offset", default="fit", metavar="A|fit",
                   help="instrument current offset: a value (A) fixes it, 'fit' fits it")
    m.add_argument("--r-series", default="0", metavar="OHM|fit",
                   help="series resistance between the logged voltage and the device (sense "
                   "resistor, probe): a value fixes it (0: none), 'fit' fits it")
    m.add_argument("--noise", type=float, default=None, metavar="A",
                   help="noise sigma of the current (default: estimated from the record)")
    m.add_argument("--max-noise-ratio", type=float, default=3.0, metavar="X",
                   help="a residual more than X times the noise's is not adequate")
    m.add_argument("--model-start", action="store_true",
                   help="start from the model's defaults, not from the record")
    m.add_argument("--compare", nargs="?", const="rram,vteam,vteam-exp", default=None,
                   metavar="A,B",
                   help="fit each model form (default rram,vteam,vteam-exp) and rank them by "
                   "BIC; --out gets the best, <out>_<form>.lib each")
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
    from .common import add_output_options

    add_output_options(m)  # --json [PATH]: the fit result (as fit_report.json); --quiet
    m.set_defaults(func=_json_stdout(run_memristor))

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
    add_output_options(g)
    g.set_defaults(func=_json_stdout(run_netlist))


def _json_stdout(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace],
                                                                          int]:
    """Run ``func`` with its human output on stderr when ``--json`` owns stdout."""
    from .common import quiet_stdout

    def run(args: argparse.Namespace) -> int:
        with quiet_stdout(args):
            code = func(args)
        if getattr(args, "_json_result", None) is not None:
            from .common import emit

            emit(args, args._json_result)
        return code

    run.__doc__ = func.__doc__
    return run


def _nuisance_arg(text: str, flag: str) -> float | str:
    t = str(text).strip().lower()
    if t == "fit":
        return "fit"
    try:
        return float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{flag}: expected a number or 'fit', got {text!r}") from None


def run_memristor(args: argparse.Namespace) -> int:
    """Exit 0: adequate; 3: not adequate (best point written, reasons printed); 2: bad input;
    1: SPICE error."""
    from characterization.fitting.measurement import read_measurement_csv
    from characterization.fitting.memristor import (
        judge_memristor_fit,
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
        params = ([p for p in args.params.split(",") if p.strip()] if args.params else None)
        nuisance = {"v_offset": _nuisance_arg(args.v_offset, "--v-offset"),
                    "i_offset": _nuisance_arg(args.i_offset, "--i-offset"),
                    "r_series": _nuisance_arg(args.r_series, "--r-series")}
        if args.noise is not None and not args.noise > 0:
            raise argparse.ArgumentTypeError(f"--noise must be > 0, got {args.noise!r}")
        meas = read_measurement_csv(args.data, sample_period_s=args.sample_period_s)
        forms = ([f.strip() for f in args.compare.split(",") if f.strip()] if args.compare
                 else [args.model])
        problems = [memristor_problem(meas, model_path=f, params=params, start=start,
                                      bounds=bounds, fixed=fixed, subckt=args.subckt,
                                      temp_c=args.temp_c, fit_pulses=args.fit_pulses,
                                      data_start=not args.model_start, nuisance=nuisance,
                                      noise_a=args.noise) for f in forms]
    except FileNotFoundError as e:
        print(f"{prog}: {e.filename}: no such file", file=sys.stderr)
        return 2
    except (MeasurementFormatError, FitError, argparse.ArgumentTypeError, ValueError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2

    results = []
    for problem in problems:
        if len(problems) > 1:
            print(f"== {problem.provenance['model_form']} "
                  f"({problem.provenance['model_reference']})")
        result = _fit_and_print(problem, args, prog, args.data, judge=lambda r:
                                judge_memristor_fit(r, max_ratio=args.max_noise_ratio))
        if result is None:
            return 1
        results.append((problem, result))
    if len(results) == 1:
        (_, result), = results
        write_fitted_model(result, args.out)
        if args.report is not None:
            write_fit_report(result, args.report, title=f"memristor fit of {args.data.name}")
        print(f"wrote {args.out}" + (f" and {args.report}/" if args.report else ""))
        args._json_result = {"out": str(args.out), **result.to_dict()}
        return 0 if result.verdict["adequate"] else 3
    return _compare(results, args)


def _compare(results: list, args: argparse.Namespace) -> int:
    """Rank fitted forms by BIC on the same data-scaled residuals; write each and the best."""
    import json

    from characterization.fitting.memristor import write_fitted_model
    from characterization.fitting.report import write_fit_report
    from characterization.fitting.verdict import information_criteria
    from spicebridge.fileio import atomic_write_text

    rows = []
    for problem, result in results:
        ic = information_criteria(result, [c.sigma if c.sigma is not None else
                                           problem.sigma(c) for c in problem.curves])
        form = problem.provenance["model_form"]
        out = args.out.with_name(f"{args.out.stem}_{form}{args.out.suffix or '.lib'}")
        write_fitted_model(result, out)
        if args.report is not None:
            write_fit_report(result, args.report / form,
                             title=f"{form} fit of {args.data.name}")
        rows.append({"form": form, "reference": problem.provenance["model_reference"],
                     "adequate": result.verdict["adequate"], "verdict": result.verdict,
                     "rel_rms": ic["rms"], "noise_ratio": result.verdict["noise_ratio"],
                     "k": ic["k"], "n": ic["n"], "aic": ic["aic"], "bic": ic["bic"],
                     "wall_s": result.wall_s, "n_sim": result.n_sim, "out": str(out),
                     "values": result.values, "ci_low": result.ci_low,
                     "ci_high": result.ci_high, "result": result})
    rows.sort(key=lambda r: (not r["adequate"], r["bic"]))
    best = rows[0]
    write_fitted_model(best["result"], args.out)
    print("\nmodel forms ranked (adequate first, then BIC; residuals scaled by the data, the "
          "same for every form):")
    print(f"  {'form':<10} {'rms/sigma':>9} {'x noise':>8} {'k':>3} {'AIC':>10} {'BIC':>10}  "
          "verdict")
    for r in rows:
        print(f"  {r['form']:<10} {r['rel_rms']:>9.4g} {r['noise_ratio']:>8.3g} {r['k']:>3d} "
              f"{r['aic']:>10.1f} {r['bic']:>10.1f}  "
              f"{'adequate' if r['adequate'] else 'NOT ADEQUATE'}")
    print(f"best: {best['form']}; wrote {args.out} and "
          f"{', '.join(r['out'] for r in rows)}")
    if args.report is not None:
        summary = [{k: v for k, v in r.items() if k != "result"} for r in rows]
        args.report.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.report / "compare.json",
                          json.dumps({"best": best["form"], "ranked": summary}, indent=1,
                                     default=str) + "\n")
    args._json_result = {"best": best["form"], "out": str(args.out),
                         "ranked": [{k: v for k, v in r.items() if k != "result"}
                                    for r in rows]}
    if not best["adequate"]:
        print(f"spicebridge fit memristor: no model form is adequate; the best, "
              f"{best['form']}: {'; '.join(best['verdict']['reasons'])}", file=sys.stderr)
    return 0 if best["adequate"] else 3


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
    args._json_result = {"out": str(args.out), **result.to_dict()}
    return 0 if result.converged else 3


def _fit_and_print(problem: SpiceFitProblem, args: argparse.Namespace, prog: str,
                   source: Path, judge: Callable[[FitResult], FitResult] | None = None,
                   ) -> FitResult | None:
    """Run the fit with a progress bar and print the summary; ``None`` on a SPICE error.

    ``judge`` attaches a verdict (memristor fits); the summary then prints it."""
    import numpy as np
    from tqdm import tqdm

    from characterization.fitting.spice_fit import fit_spice

    bar = tqdm(total=None, unit="sim", desc="fit", disable=args.quiet, file=sys.stderr)

    def progress(n_sim: int, cost: float) -> None:
        bar.n = n_sim
        bar.set_postfix(cost=f"{cost:.4g}", refresh=True)

    try:
        if judge is not None:  # noisy records: a relative cost change of 1e-6 is converged
            result = judge(fit_spice(problem, jobs=args.jobs, max_nfev=args.max_nfev,
                                     progress=progress, ftol=1e-6, xtol=1e-6))
        else:
            result = fit_spice(problem, jobs=args.jobs, max_nfev=args.max_nfev,
                               progress=progress)
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
        scaled = ("rms/noise" if result.provenance.get("residual_scale") == "noise"
                  else "relative rms")
        rel = float(np.sqrt(np.mean(((c.y_fit - c.curve.y) / np.maximum(
            np.abs(c.curve.y), 1e-3 * np.max(np.abs(c.curve.y)))) ** 2)))
        print(f"  residual {c.name}: rms {c.rms:.4g} {u}, max {c.max_abs:.4g} {u}, "
              f"{scaled} {c.rms_scaled:.4g}"
              + (f", relative rms {rel:.4g}" if scaled == "rms/noise" else ""))
    print(f"  optimizer: {result.message}")
    v = result.verdict
    if v is not None:
        print(f"  noise: {v['noise_source']}; residual {v['noise_ratio']:.3g}x what the noise "
              f"leaves (limit {v['max_ratio']:g}x)")
        srcs = result.provenance.get("start_sources", {})
        for name, src in srcs.items():
            print(f"  start {name}: {src}")
        print(f"  verdict: {'adequate' if v['adequate'] else 'NOT ADEQUATE'}")
        for r in v["reasons"]:
            print(f"    - {r}")
        if not v["adequate"]:
            print(f"{prog}: not adequate: {'; '.join(v['reasons'])}", file=sys.stderr)
    elif not result.converged:
        print(f"{prog}: {result.message}", file=sys.stderr)
    return result
