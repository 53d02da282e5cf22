"""``spicebridge sweep SPEC.toml`` and ``spicebridge inspect FILE.h5``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .common import dumps


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``sweep`` and ``inspect`` to the command line."""
    p = sub.add_parser(
        "sweep", help="run a TOML sweep spec of a netlist into a lookup HDF5 (resumable)",
        description="Run every point of a sweep spec (docs/sweeps.md) on worker processes or a "
        "Dask cluster. Finished points are stored in OUT.points/ as they finish; running the "
        "same command again skips them. Exit status: 0 done (failed points are recorded in "
        "the file), 1 every point failed or --strict and some failed, 2 bad spec or usage.")
    p.add_argument("spec", type=Path, help="sweep spec (TOML)")
    p.add_argument("--out", "-o", type=Path, metavar="RESULT.h5",
                   help="lookup HDF5 to write; its store is RESULT.h5.points/ (required "
                   "except with --point)")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="local worker processes (joblib loky); -1: all cores (default 1)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--dask", metavar="ADDRESS", help="run on a Dask scheduler, tcp://host:port")
    g.add_argument("--dask-local", type=int, metavar="N",
                   help="start a local Dask cluster of N single-threaded worker processes")
    p.add_argument("--chunk-size", type=int, metavar="K",
                   help="points per task and per store file (default: automatic, at most 64 "
                   "points and at least 50 chunks per run)")
    p.add_argument("--retry-failed", action="store_true",
                   help="run again the points that failed in an earlier run of this --out")
    p.add_argument("--strict", action="store_true", help="exit 1 if any point failed")
    p.add_argument("--allow-control", action="store_true",
                   help="let the netlist and its included / .lib files hold .control blocks "
                   "and shell lines (refused by default: model files are data)")
    p.add_argument("--yes", action="store_true",
                   help="run a sweep of more than 10^8 points (refused otherwise)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no summary")
    from .common import add_output_options as _add_json

    _add_json(p, quiet=False)  # --json [PATH]: the run's summary and failures
    p.add_argument("--point", type=int, metavar="INDEX",
                   help="run only point INDEX (the 'index' of a failure record) in this "
                   "process and print its coordinates, seed and measures as JSON; writes "
                   "nothing (exit 1 if it fails)")
    p.set_defaults(func=run_sweep_cli)

    from .common import Formatter, add_output_options

    q = sub.add_parser("inspect", help="show what a lookup HDF5 holds",
                       formatter_class=Formatter,
                       description="Print a lookup file's format and version, provenance, and "
                       "for each dataset its dimensions, coordinates, units, shape and cells "
                       "(valid, padding of a ragged axis, missing = failed points). The JSON "
                       "(--json) holds format, schema_version, provenance, datasets and "
                       "failures.")
    q.add_argument("file", type=Path, help="lookup HDF5 file")
    add_output_options(q, quiet=False)
    q.add_argument("--plot", type=Path, metavar="DIR",
                   help="also write one PNG per dataset into DIR: one panel per corner "
                        "(process x vdd x temp, all of them), the value against the table's "
                        "main numeric axis, one line per other coordinate, mean +-1 sigma "
                        "over mc/instance/sample; SI-prefixed units")
    q.set_defaults(func=inspect_cli)


def run_sweep_cli(args: argparse.Namespace) -> int:
    """Run a TOML sweep; see ``register`` for the exit statuses."""
    from characterization.errors import SweepSpecError
    from characterization.sweep import load_spec

    try:
        spec = load_spec(args.spec, allow_control=args.allow_control)
    except SweepSpecError as e:
        print(f"spicebridge sweep: {e}", file=sys.stderr)
        return 2
    if args.point is not None:
        return _run_one_point(spec, args.point, str(args.spec))
    if args.out is None:
        print("spicebridge sweep: --out RESULT.h5 is required (except with --point)",
              file=sys.stderr)
        return 2
    if args.out.is_dir():
        print(f"spicebridge sweep: --out {args.out} is a folder; give the lookup file to "
              f"write (e.g. {args.out / (spec.name + '.h5')})", file=sys.stderr)
        return 2
    if args.jobs == 0 or (args.dask_local is not None and args.dask_local < 1):
        print("spicebridge sweep: --jobs and --dask-local need at least 1 worker",
              file=sys.stderr)
        return 2
    if args.chunk_size is not None and args.chunk_size < 1:
        print(f"spicebridge sweep: --chunk-size {args.chunk_size}: must be a positive number "
              "of points", file=sys.stderr)
        return 2
    serial = args.jobs == 1 and args.dask is None and args.dask_local is None
    if serial and spec.context.get("engine", "shared") == "shared":
        from spicebridge.worker import crash_guarded

        return crash_guarded(
            _said_interrupt(lambda: _sweep(args, spec)), what=f"sweep {args.spec}",
            remedy="run again: finished chunks are kept in "
            f"{args.out}.points/; with --jobs 2 a point that crashes ngspice becomes a "
            "failure record and the rest of the sweep lands; or set engine = \"batch\" in "
            "the spec (one ngspice process per point)",
            on_error=_exit_code)
    return _sweep(args, spec)


def _said_interrupt(fn: Any, command: str = "sweep") -> Any:
    """``fn`` for ``crash_guarded``'s child process: Ctrl-C there prints the command line's one
    line (``imc.cli.interrupted``: what is stored) and exits 130 (the child's exit status is
    all the parent reports)."""
    def run() -> int:
        try:
            return int(fn() or 0)
        except KeyboardInterrupt as e:
            from imc.cli import interrupted

            return interrupted(command, e)

    return run


def _exit_code(e: BaseException) -> int | None:
    from .common import exit_code_for

    code = exit_code_for(e)
    if code is not None:
        print(f"spicebridge sweep: {e}", file=sys.stderr)
    return code


def _sweep(args: argparse.Namespace, spec: Any) -> int:
    import warnings

    from characterization.errors import SweepError, SweepSpecError
    from characterization.sweep import run_sweep

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda m, *a, **k: print(f"spicebridge sweep: warning: {m}",
                                                            file=sys.stderr)
            res = run_sweep(spec, args.out, jobs=args.jobs, dask=args.dask,
                            dask_local=args.dask_local, strict=args.strict, quiet=args.quiet,
                            chunk_size=args.chunk_size, retry_failed=args.retry_failed,
                            yes=args.yes)
    except SweepSpecError as e:
        print(f"spicebridge sweep: {e}", file=sys.stderr)
        return 2
    except SweepError as e:
        print(f"spicebridge sweep: {e}", file=sys.stderr)
        return 1
    from .common import emit

    emit(args, {"path": str(res.path), **res.summary,
                "failures": [f.__dict__ for f in res.failures]}, lambda: _sweep_human(res))
    return 0


def _sweep_human(res: Any) -> None:
    """The sweep's one-line summary and its first failures."""
    s = res.summary
    print(f"{res.path}: {s['n_points']} points, {s['n_failed']} failed, "
          f"{s['n_resumed']} resumed from {res.path.name}.points/, {s['n_run']} run in "
          f"{s['wall_s']:.1f} s ({s['points_per_s']:.0f} points/s, {s['backend']})")
    for f in res.failures[:5]:
        first = f.message.splitlines()[0] if f.message else ""
        print(f"  failed {f.point}: {f.error_type}: {first}")
    if len(res.failures) > 5:
        print(f"  ... {len(res.failures) - 5} more (spicebridge inspect {res.path})")


def _run_one_point(spec: Any, index: int, source: str) -> int:
    """Re-run one point alone (same coordinates and seed as in the sweep) and print it."""
    import time

    try:
        pt = spec.point(index)
    except IndexError as e:
        print(f"spicebridge sweep: {source}: {e}", file=sys.stderr)
        return 2
    head = {"index": pt.index, "coords": pt.coords, "mc": pt.mc, "seed": pt.seed}
    t0 = time.perf_counter()
    try:
        values = spec.point_fn(pt)
    except Exception as e:  # a failed point is reported, as the sweep would record it
        print(dumps(head), file=sys.stderr)
        print(f"spicebridge sweep: point {index} failed: {type(e).__name__}: {e}",
              file=sys.stderr)
        return 1
    out = {**head, "measures": {k: values.get(k) for k in spec.measures},
           "units": dict(spec.measures), "wall_s": round(time.perf_counter() - t0, 6)}
    sys.stdout.write(dumps(out) + "\n")
    return 0


def _range(c: np.ndarray) -> str:
    if c.dtype.kind == "U":
        return ", ".join(c.tolist()) if c.size <= 8 else f"{', '.join(c[:6])}, ... ({c.size})"
    if c.size == 0:
        return "(empty)"
    if c.size <= 6:
        return ", ".join(f"{x:g}" for x in c.tolist())
    return f"{c.min():g} .. {c.max():g} ({c.size} values)"


def inspect_cli(args: argparse.Namespace) -> int:
    """Print a lookup file's contents; exit 2 when it cannot be read."""
    from characterization.lookup import LookupFormatError, read_lookup

    try:
        lf = read_lookup(args.file)
    except LookupFormatError as e:
        print(f"spicebridge inspect: {e}", file=sys.stderr)
        return 2
    from .common import emit

    pngs = []
    if getattr(args, "plot", None) is not None:
        from characterization.sweep.plot import plot_lookup

        pngs = plot_lookup(lf.tables, args.plot)
        for png in pngs:
            print(f"wrote {png}", file=sys.stderr)
    d = lf.to_dict()
    d["failures_count"] = len(lf.failures)
    d["plots"] = [str(p) for p in pngs]
    try:
        emit(args, d, lambda: _print_inspect(lf))
        sys.stdout.flush()
    except BrokenPipeError:  # `spicebridge inspect F --json | head`: not an error
        sys.stdout = None  # type: ignore[assignment]  # no flush at exit
    return 0


def _cells(t: Any) -> str:
    """``264 values, 96 padding (code used per bits: 3:7, 4:15), 1 missing``."""
    from characterization.lookup import PADDING
    from characterization.lookup.names import DIM_BITS, DIM_CODE

    c = t.counts()
    out = f"{c['valid']} values"
    if c["padding"]:
        out += f", {c['padding']} padding"
        if DIM_CODE in t.dims and DIM_BITS in t.dims and t.status is not None:
            ax, ab = t.axis(DIM_CODE), t.axis(DIM_BITS)
            used = np.moveaxis(t.status != PADDING, (ab, ax), (0, -1))
            used = used.reshape(used.shape[0], -1, used.shape[-1]).any(axis=1)
            lens = ", ".join(f"{b}:{int(u.sum())}" for b, u in zip(t.coords[DIM_BITS], used,
                                                                    strict=True))
            out += f" (code used per bits: {lens})"
    if c["missing"]:
        out += f", {c['missing']} missing (no value: a failed or not-run point)"
    return out


def _print_inspect(lf: Any) -> None:
    print(f"{lf.path}: format {d_format()} v{lf.schema_version}, created {lf.created}")
    prov = lf.provenance
    for k in ("kind", "n_points", "root_seed", "package_version", "git_commit",
              "ngspice_version", "netlist", "netlist_sha256", "host", "created"):
        if k in prov and prov[k] is not None:
            print(f"  {k}: {prov[k]}")
    sweep: dict[str, Any] = prov.get("sweep") or {}
    if sweep:
        print(f"  sweep: {sweep.get('name')} (point_fn {sweep.get('point_fn')}, mc "
              f"{sweep.get('mc')})")
    others = sorted(set(prov) - {"kind", "n_points", "root_seed", "package_version",
                                 "git_commit", "ngspice_version", "netlist", "netlist_sha256",
                                 "host", "created", "sweep", "spec_toml"})
    for path, fp in (prov.get("fitted_models") or {}).items():
        vals = ", ".join(f"{q.get('name')}={q.get('value', float('nan')):.6g}"
                         for q in fp.get("parameters") or [] if isinstance(q, dict))
        print(f"  fitted model {path}: {vals} (data sha256 "
              f"{str((fp.get('provenance') or {}).get('data_sha256', '?'))[:12]}...)")
    if others:
        print(f"  more provenance: {', '.join(others)} (--json shows all)")
    print(f"datasets ({len(lf.tables)}):")
    for name, t in sorted(lf.tables.items()):
        print(f"  {name} [{t.units}] shape {t.shape} dims ({', '.join(t.dims)}): {_cells(t)}")
        for d in t.dims:
            u = t.coord_units.get(d, "")
            print(f"    {d}: {_range(t.coords[d])}{' ' + u if u and u != '1' else ''}")
    print(f"failures: {len(lf.failures)}")
    for f in lf.failures[:5]:
        first = f.message.splitlines()[0] if f.message else ""
        print(f"  {f.point}: {f.error_type}: {first}")


def d_format() -> str:
    """The lookup format name (``imc-lookup``)."""
    from characterization.lookup import FORMAT

    return FORMAT
