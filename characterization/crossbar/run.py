"""``characterize_crossbar``: presets, the two sweeps, reduction, the lookup file and plots."""

from __future__ import annotations

import copy
import json
import time
import tomllib
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from characterization.errors import ConfigError, ModelCheckError
from characterization.lookup import Table, write_lookup
from characterization.lookup.names import (
    CROSSBAR_CELL_READ,
    CROSSBAR_READ_ENERGY,
    CROSSBAR_READ_NOISE,
    CROSSBAR_READ_TRANSFER,
    CROSSBAR_SENSING_MARGIN,
    CROSSBAR_WRITE_NOISE,
    CROSSBAR_WRITE_NOISE_FIT,
    CROSSBAR_WRITE_NOISE_SAMPLES,
)
from characterization.sweep import SweepSpec, run_sweep
from spicebridge.netlist import deck_hash
from spicebridge.units import parse_spice_number

from . import points
from .netlist import (
    MODES,
    ColumnConfig,
    WriteConfig,
    check_rram_lib,
    column_deck,
    rram_lib_path,
)
from .reduce import (
    FIT_STATS,
    LEVEL_STATS,
    MARGIN_STATS,
    WRITE_STATS,
    XFER_GRID,
    estimate_write_noise,
    fit_write_noise_k,
    reduce_margin,
    reduce_transfer,
    reduce_write,
)

WL_FRAC = 0.75
"""Write word line of the presets, as a fraction of ``vdd`` (``WriteConfig.wl_frac``): the SET
compliance through the access transistor's gate. From SPICE (``compliance.scan``: the nominal
cell under one long SET pulse at every corner x 1.62/1.8/1.98 V x -40/27/85/125 degC of the
default grid, 64-row plan): at 0.5 .. 0.65 (0.05 steps) the nominal cell cannot reach the top
level (w >= 0.99) at some points (0.65: w saturates at 0.74 for ss, 0.52 for fs at 1.62 V /
-40 degC); at 0.7 it reaches it everywhere, but at the worst point (fs / 1.62 V / -40 degC)
only at its ceiling (w = 0.997 after 24 us, 14x the 1.65 us with the word line at vdd), so the
adaptive verify budget there is ~4800 pulses; at 0.75 the worst point takes 2.99 us (1.8x).
0.75 is the lowest word line with that margin: it still slows the SET at low vdd and slow-n
corners (time to the top level at 1.62 V / 27 degC: fs 312 / ss 273 / tt 193 ns against 193 /
188 / 168 ns with the word line at vdd), which is how vdd and the corner reach the programmed
levels (docs/crossbar.md, "Compliance")."""

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"process": ["tt", "ss", "ff"], "vdd_v": [1.8], "temp_c": [27.0, 85.0],
              "mc": 3, "mc_write": 16, "patterns": 4, "seed": 20240,
              "column": {"rows": 64}, "write": {"cells_per_level": 2, "wl_frac": WL_FRAC}},
    "default": {"process": ["tt", "ss", "ff", "fs", "sf"], "vdd_v": [1.62, 1.8, 1.98],
                "temp_c": [-40.0, 27.0, 85.0, 125.0], "mc": 4, "mc_write": 100, "patterns": 4,
                "seed": 20240, "column": {"rows": 64}, "rows": [16, 64, 128, 256],
                "write": {"cells_per_level": 2, "wl_frac": WL_FRAC}},
    "full": {"process": ["tt", "ss", "ff", "fs", "sf"], "vdd_v": [1.62, 1.8, 1.98],
             "temp_c": [-40.0, 27.0, 85.0, 125.0], "mc": 16, "mc_write": 128, "patterns": 4,
             "seed": 20240, "column": {"rows": 128}, "rows": [16, 64, 128, 256],
             "write": {"cells_per_level": 2, "wl_frac": WL_FRAC}},
}
"""Named run sizes; one PVT grid per preset, the same as the ADC preset of that name
(``characterization.adc``). ``mc``: column chips per corner; ``patterns``: read-transfer
patterns per ``XFER_GRID`` bin and chip (so ``mc * patterns`` >= 10 per bin); ``mc_write``:
write benches per corner (each programs ``cells_per_level`` cells per mode and level, so
``mc_write * cells_per_level`` samples per level: 200 in the default preset); ``rows``: the
column heights of a ``rows`` axis (the column tables get a ``rows`` dimension; the write
bench does not depend on it), absent: one column of ``column.rows``."""

ROWS_TABLES = (CROSSBAR_READ_TRANSFER, CROSSBAR_READ_NOISE, CROSSBAR_SENSING_MARGIN,
               CROSSBAR_READ_ENERGY)
"""The tables that get a ``rows`` dimension (after the PVT dims) in a plan with a rows axis."""

MIN_PATTERNS_PER_BIN = 10
"""Fewest read-transfer patterns (over chips) in any bin of a characterization's table."""


@dataclass
class CrossbarRun:
    """A characterization plan (a preset, maybe overridden by a TOML file)."""

    process: list[str]
    vdd_v: list[float]
    temp_c: list[float]
    mc: int
    mc_write: int
    patterns: int
    seed: int
    column: ColumnConfig
    write: WriteConfig
    name: str = "custom"
    extra: dict[str, Any] = field(default_factory=dict)
    rows: list[int] = field(default_factory=list)
    """The ``rows`` axis (column heights), empty: one column of ``column.rows`` rows."""

    @property
    def rows_values(self) -> list[int]:
        """The column heights characterized: the rows axis, or ``[column.rows]``."""
        return list(self.rows) if self.rows else [self.column.rows]

    def for_rows(self, rows: int) -> CrossbarRun:
        """This plan with a column of ``rows`` rows (no rows axis)."""
        return replace(self, column=replace(self.column, rows=int(rows)), rows=[])

    @property
    def vdd_nom_v(self) -> float:
        """The supply the write driver is tuned at: the middle of ``vdd_v``."""
        v = sorted(self.vdd_v)
        return float(v[len(v) // 2])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able plan (provenance)."""
        return {"name": self.name, "process": self.process, "vdd_v": self.vdd_v,
                "temp_c": self.temp_c, "mc": self.mc, "mc_write": self.mc_write,
                "patterns": self.patterns, "seed": self.seed,
                "column": self.column.to_dict(), "write": self.write.to_dict(),
                **({"rows": list(self.rows)} if self.rows else {})}


def make_plan(preset: str | None = "quick", config: str | Path | dict | None = None,
              model: str | Path | None = None) -> CrossbarRun:
    """Build a plan from a preset and optional overrides (a TOML file or a dict).

    TOML keys (all optional): ``preset``, ``process``, ``vdd_v``, ``temp_c``, ``mc``,
    ``mc_write``, ``patterns``, ``seed``, tables ``[column]`` (``ColumnConfig`` fields) and
    ``[write]`` (``WriteConfig`` fields); a ``[crossbar]`` table may hold them all.

    Args:
        preset: Preset name (a ``preset`` key in the config wins).
        config: TOML file or dict of overrides.
        model: Memristor library to use instead of ``netlists/rram/rram.lib`` (e.g. fitted by
            ``spicebridge fit memristor``); same as ``column.rram_lib`` (a relative path there
            is relative to the TOML file). Unless the config sets ``column.r_on_ohm`` /
            ``column.on_off``, they are taken from the library's ``ron`` / ``roff`` defaults.

    Raises:
        ValueError: Unknown preset or key, a bad value, or an unusable model library (named,
            with the file).
    """
    where = "config"
    over: dict[str, Any] = {}
    if isinstance(config, (str, Path)):
        where = str(config)
        with open(config, "rb") as f:
            over = tomllib.load(f)
        over = over.get("crossbar", over)
    elif isinstance(config, dict):
        over = copy.deepcopy(config)
    name = over.pop("preset", preset) or "quick"
    if name not in PRESETS:
        raise ConfigError(f"{where}: unknown preset {name!r}; presets: {sorted(PRESETS)}")
    d = copy.deepcopy(PRESETS[name])
    known = set(d) | {"column", "write", "rows"}
    bad = set(over) - known
    if bad:
        raise ConfigError(f"{where}: unknown keys {sorted(bad)}; known: {sorted(known)}")
    for k, v in over.items():
        if k in ("column", "write"):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    lib = model if model is not None else d["column"].get("rram_lib") or None
    if lib is not None:
        lib_path = Path(lib).expanduser()
        if model is None and where != "config" and not lib_path.is_absolute():
            lib_path = Path(where).parent / lib_path
        lib_path = lib_path.resolve()
        lib_params = check_rram_lib(lib_path)
        d["column"]["rram_lib"] = str(lib_path)
        col_over = over.get("column", {})
        if not {"r_on_ohm", "on_off"} <= set(col_over):
            try:
                ron = parse_spice_number(lib_params["ron"])
                roff = parse_spice_number(lib_params["roff"])
            except ValueError as e:
                raise ConfigError(f"{lib_path}: '.subckt rram' default ron={lib_params['ron']} "
                                 f"/ roff={lib_params['roff']} must be numbers ({e}); or set "
                                 "column.r_on_ohm and column.on_off in the plan") from e
            if "r_on_ohm" not in col_over:
                d["column"]["r_on_ohm"] = ron
            if "on_off" not in col_over:
                d["column"]["on_off"] = roff / ron
    try:
        col = ColumnConfig.from_dict(d["column"])
        wr = WriteConfig(**d["write"])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e
    if not 16 <= col.rows <= 256:
        raise ConfigError(f"{where}: column.rows must be 16..256, got {col.rows}")
    if wr.wl_frac_levels and len(wr.wl_frac_levels) != col.levels - 1:
        raise ConfigError(f"{where}: write.wl_frac_levels needs one word line per level above "
                         f"0 ({col.levels - 1} values), got {list(wr.wl_frac_levels)}")
    rows_axis = d.get("rows") or []
    if not isinstance(rows_axis, (list, tuple)) or any(
            isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 16 <= r <= 256
            for r in rows_axis) or len(set(rows_axis)) != len(rows_axis):
        raise ConfigError(f"{where}: rows must be a list of distinct integers 16..256, got "
                         f"{rows_axis!r}")
    rows_axis = sorted(int(r) for r in rows_axis)
    if rows_axis and col.rows not in rows_axis:
        raise ConfigError(f"{where}: column.rows = {col.rows} must be one of rows "
                         f"{rows_axis} (the rows axis holds the simulator's default tile)")
    label = name if not over else f"{name}+{Path(where).name if where != 'config' else 'dict'}"
    if model is not None:
        label += f"+{Path(model).name}"
    axes = _check_axes(d, where)
    counts = {}
    for key, low in (("mc", 1), ("mc_write", 1), ("patterns", 1), ("seed", 0)):
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ConfigError(f"{where}: {key} must be an integer >= {low}, got {v!r}")
        counts[key] = int(v)
    if counts["mc"] * counts["patterns"] < MIN_PATTERNS_PER_BIN:
        raise ConfigError(f"{where}: mc * patterns = {counts['mc']} * {counts['patterns']} "
                         f"read-transfer patterns per bin; need >= {MIN_PATTERNS_PER_BIN}")
    return CrossbarRun(*axes, counts["mc"], counts["mc_write"], counts["patterns"],
                       counts["seed"], col, wr, name=label, rows=rows_axis)


def _check_axes(d: dict[str, Any], where: str) -> tuple[list[str], list[float], list[float]]:
    """``process``, ``vdd_v``, ``temp_c`` as non-empty lists of known corners / numbers."""
    from spicebridge.corners import ProcessCorner

    known = [c.value for c in ProcessCorner]
    out: list[list[Any]] = []
    for key in ("process", "vdd_v", "temp_c"):
        v = d[key]
        if not isinstance(v, (list, tuple)) or not v:
            raise ConfigError(f"{where}: {key} must be a non-empty list, got {v!r}")
        if len(set(v)) != len(v):
            raise ConfigError(f"{where}: {key} has repeated values {v!r}")
        if key == "process":
            bad = [p for p in v if str(p) not in known]
            if bad:
                raise ConfigError(f"{where}: process {bad} unknown; sky130 corners: {known}")
            out.append([str(p) for p in v])
            continue
        try:
            vals = [float(x) for x in v]
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {key} must be numbers, got {v!r}") from None
        lim = (0.5, 2.5) if key == "vdd_v" else (-60.0, 200.0)
        bad = [x for x in vals if not lim[0] <= x <= lim[1]]
        if bad:
            raise ConfigError(f"{where}: {key} values {bad} outside {lim[0]:g}..{lim[1]:g}")
        out.append(vals)
    return out[0], out[1], out[2]


def noise_currents(plan: CrossbarRun) -> list[float] | None:
    """Ideal currents of ``crossbar/read_noise``: ``None`` (``points.NOISE_FRACS`` of the
    column's full scale) without a rows axis; with one, the union over its columns (each
    column measures those up to its own full scale)."""
    if not plan.rows:
        return None
    i = {round(f * plan.for_rows(r).column.i_full_scale_a, 15)
         for r in plan.rows for f in points.NOISE_FRACS}
    return sorted(i)


def column_seed(plan: CrossbarRun, rows: int) -> int:
    """Root seed of the column sweep of ``rows`` rows: the plan's seed for ``column.rows``
    (files without a rows axis keep their bits), offset for the other heights."""
    return plan.seed if rows == plan.column.rows else plan.seed + 7919 * int(rows)


def _specs(plan: CrossbarRun, rows: int | None = None,
           noise_i: list[float] | None = None) -> tuple[SweepSpec, SweepSpec]:
    axes = {"process": plan.process, "vdd_v": plan.vdd_v, "temp_c": plan.temp_c}
    rows = plan.column.rows if rows is None else int(rows)
    cfg, wcfg = plan.for_rows(rows).column, plan.write
    nlev = cfg.levels
    ctx = {"column": cfg.to_dict(), "patterns": plan.patterns,
           **({"noise_i_a": noise_i} if noise_i else {})}
    n_pat = plan.patterns * XFER_GRID.size
    n_noise = len(noise_i) if noise_i else len(points.NOISE_FRACS)
    col = SweepSpec(
        name="crossbar_column", axes=axes, mc=plan.mc, seed=column_seed(plan, rows),
        point_fn=points.column_point,
        measures={"cell_g_s": "S", "xfer_rel": "1", "xfer_ratio": "1", "noise_i_a": "A",
                  "noise_sigma_a": "A", "margin_i_a": "A", "margin_noise_a": "A",
                  "read_energy_j": "J"},
        measure_dims={"cell_g_s": {"level": list(range(nlev))},
                      "xfer_rel": {"pattern": list(range(n_pat))},
                      "xfer_ratio": {"pattern": list(range(n_pat))},
                      "noise_i_a": {"noise_point": list(range(n_noise))},
                      "noise_sigma_a": {"noise_point": list(range(n_noise))},
                      "margin_i_a": {"level": list(range(nlev))},
                      "margin_noise_a": {"level": list(range(nlev))},
                      "read_energy_j": {"part": list(points.ENERGY_PARTS)}},
        context=ctx,
        provenance={"column_deck_sha256": deck_hash(column_deck(cfg, "tt"))},
    )
    wctx = {"column": plan.column.to_dict(), "write": wcfg.to_dict(),
            "vdd_nom_v": plan.vdd_nom_v}
    wdims = {"mode": list(MODES), "level": list(range(nlev)),
             "copy": list(range(wcfg.cells_per_level))}
    wr = SweepSpec(
        name="crossbar_write", axes=axes, mc=plan.mc_write, seed=plan.seed + 1,
        point_fn=points.write_point,
        measures={"g_prog_s": "S", "n_pulses": "1", "verify_failed": "1", "pulse_budget": "1"},
        measure_dims={"g_prog_s": wdims, "n_pulses": wdims,
                      "verify_failed": {"level": list(range(nlev)),
                                        "copy": list(range(wcfg.cells_per_level))},
                      "pulse_budget": {"budget": [0]}}, context=wctx,
    )
    return col, wr


def characterize_crossbar(plan: CrossbarRun, out: str | Path, *, jobs: int = 1,
                          dask: str | None = None, quiet: bool = False,
                          plots: str | Path | None = None) -> dict[str, Any]:
    """Run both sweeps and write the lookup file with the ``crossbar/*`` tables.

    The raw sweep files (all Monte-Carlo samples, resumable point stores) go to
    ``<out>.raw/``. Failed points are kept in the lookup file's failures list. A user's
    memristor library (``column.rram_lib``) is simulated once first (``check_rram_model``).

    Raises:
        ValueError: The user's memristor library does not simulate.

    Returns:
        Summary: ``path``, ``wall_s``, ``n_points``, ``n_failed``, ``sims``, ``sims_per_s``,
        per-sweep summaries, and the ``plots`` written.
    """
    out = Path(out)
    if plan.column.rram_lib and plan.column.cell == "rram":
        check_rram_model(plan.column)  # a user's library: fail before the sweeps, not per point
    raw = out.with_name(out.name + ".raw")
    raw.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    noise_i = noise_currents(plan)
    col_specs, res_cs = {}, {}
    for r in plan.rows_values:  # one column sweep per height (the write bench: one)
        col_specs[r], wr_spec = _specs(plan, r, noise_i)
        name = f"column_r{r}.h5" if plan.rows else "column.h5"
        res_cs[r] = run_sweep(col_specs[r], raw / name, jobs=jobs, dask=dask, quiet=quiet)
    res_w = run_sweep(wr_spec, raw / "write.h5", jobs=jobs, dask=dask, quiet=quiet)
    res_c = res_cs[plan.column.rows]
    per_rows = {r: build_tables(plan.for_rows(r), res_cs[r].tables, res_w.tables, noise_i)
                for r in plan.rows_values}
    tables = stack_rows(plan, per_rows) if plan.rows else per_rows[plan.column.rows]
    prov = {
        "characterization": "crossbar", "plan": plan.to_dict(),
        **rram_provenance(plan.column),
        "sweeps": {"column": res_c.provenance, "write": res_w.provenance,
                   **({f"column_r{r}": res_cs[r].provenance for r in plan.rows}
                      if plan.rows else {})},
        "mismatch": "access nfet: per-instance gate-series source dVt ~ N(0, A_vt/sqrt(W L)), "
                    f"A_vt={plan.column.a_vt_mv_um} mV um (sky130 mc switches off)",
        "assumptions": {
            "note": "inputs of the device and noise models, not circuit results; 'spicebridge "
                    "fit' sets the device sigmas from measured data",
            "device_variability": plan.write.assumptions(),
            "a_vt_mv_um": plan.column.a_vt_mv_um,
            "shot_fano": plan.column.shot_fano,
            "tia_en_v_rthz": plan.column.tia_en_v_rthz,
            "rtn_rel": plan.column.rtn_rel,
            "tia_iq_a": plan.column.tia_iq_a},
        "raw_files": [*(str(res_cs[r].path) for r in plan.rows_values), str(res_w.path)],
        "write_word_line": {
            "wl_frac": plan.write.wl_frac, "wl_frac_levels": list(plan.write.wl_frac_levels),
            "vdd_v": list(plan.vdd_v), "wl_v": write_wl_v(plan),
            "wl_v_levels": write_wl_v_levels(plan), "calibrate": plan.write.calibrate,
            "note": "write word line (access-transistor gate) = wl_frac * vdd per vdd_v (per "
                    "level above 0 in wl_v_levels, wl_frac_levels where set): the SET "
                    "compliance; pulses calibrated per (corner, vdd, T) ('per_corner') or "
                    "once at tt / vdd_nom_v / 27 degC ('nominal')"},
    }
    failures = [*(f for r in plan.rows_values for f in res_cs[r].failures), *res_w.failures]
    path = write_lookup(out, tables, prov, failures)
    wall = time.perf_counter() - t0
    n_col = sum(len(c) for c in col_specs.values())
    n_sims_col = n_col * (plan.patterns * XFER_GRID.size + 2 * len(points.NOISE_FRACS)
                          + plan.column.levels + 3)
    n_sims = n_sims_col + len(wr_spec)
    made = []
    if plots:  # of the default tile's column
        from .plots import make_plots

        made = make_plots(per_rows[plan.column.rows], Path(plots), plan, raw=res_c.tables)
    return {"path": str(path), "wall_s": wall, "n_points": n_col + len(wr_spec),
            "n_failed": len(failures), "sims": n_sims, "sims_per_s": n_sims / wall,
            "column": res_c.summary, "write": res_w.summary, "plots": [str(p) for p in made]}


def check_rram_model(cfg: ColumnConfig) -> float:
    """Simulate one cell of the plan's memristor library before a sweep (``.op`` at v_read).

    Returns:
        The cell's read conductance at mid state (S).

    Raises:
        ValueError: ngspice cannot parse or solve the model, or the conductance is not
            between G_min/2 and 2 G_max; the message names the library, the deck ngspice saved
            and the offending line.
    """
    import spicebridge
    from spicebridge.errors import SimulationError

    from .netlist import rram_check_deck

    lib = cfg.rram_lib_file
    try:
        r = spicebridge.create_engine("shared").simulate(rram_check_deck(cfg),
                                                         corner_key="rram-model-check")
    except SimulationError as e:
        line = f"; offending line: {e.offending_line[:200]}" if e.offending_line else ""
        first = (str(e).splitlines() or [""])[0]
        first = first if len(first) <= 240 else first[:240] + " ..."
        raise ModelCheckError(f"{lib}: the memristor model does not simulate in ngspice "
                              f"(one cell, .op at {cfg.v_read_v:g} V; deck {e.deck_path}"
                              f"{line}): {first}", library=lib, deck_path=e.deck_path,
                              offending_line=e.offending_line) from e
    g = abs(float(np.real(r.vector("i(vr)")[0]))) / cfg.v_read_v
    if not (np.isfinite(g) and cfg.g_min_s / 2 <= g <= 2 * cfg.g_max_s):
        raise ConfigError(f"{lib}: one cell at w0=0.5 reads G = {g:.4g} S at {cfg.v_read_v:g} V, "
                         f"outside [G_min/2, 2 G_max] = [{cfg.g_min_s / 2:.4g}, "
                         f"{2 * cfg.g_max_s:.4g}] S (ron={cfg.r_on_ohm:g}, "
                         f"on_off={cfg.on_off:g})")
    return g


def rram_provenance(cfg: ColumnConfig) -> dict[str, Any]:
    """Provenance of the memristor model a plan uses.

    Returns:
        ``rram_lib`` (path), ``rram_lib_sha256``, ``rram_lib_default`` (whether it is
        ``netlists/rram/rram.lib``) and ``rram_fit``: the fit summary and provenance stored in a
        model fitted by ``spicebridge fit memristor``
        (``characterization.fitting.read_fit_provenance``), ``None`` for an unfitted model.
    """
    from characterization.fitting.memristor import read_fit_provenance

    lib = cfg.rram_lib_file
    return {"rram_lib": str(lib),
            "rram_lib_sha256": deck_hash(lib.read_text(encoding="utf-8")),
            "rram_lib_default": lib.resolve() == rram_lib_path().resolve(),
            "rram_fit": read_fit_provenance(lib)}


def stack_rows(plan: CrossbarRun, per_rows: dict[int, list[Table]]) -> list[Table]:
    """One list of tables from the per-height lists: the ``ROWS_TABLES`` stacked along a
    ``rows`` dimension after the PVT dims (attr ``rows`` becomes the list), the others (the
    cell's G(T), the write tables) from the ``column.rows`` list."""
    base = per_rows[plan.column.rows]
    out = []
    for t in base:
        if t.name not in ROWS_TABLES:
            out.append(t)
            continue
        parts = [next(x for x in per_rows[r] if x.name == t.name) for r in plan.rows]
        data = np.stack([np.asarray(p.data, float) for p in parts], axis=3)
        dims = (*t.dims[:3], "rows", *t.dims[3:])
        # attributes that differ per height: JSON lists along rows, named in per_rows_attrs
        # (a reader that selects one height puts that height's values back as scalars)
        per = [a for a in ("rows", "i_full_scale_a", "patterns_per_bin_min",
                           "bins_interpolated", "patterns_per_bin", "pattern_i_ideal_a",
                           "pattern_active_rows") if a in t.attrs]
        attrs = {**t.attrs, "default_rows": plan.column.rows,
                 "per_rows_attrs": json.dumps(per)}
        for a in per:
            attrs[a] = json.dumps([_plain_attr(p.attrs[a]) for p in parts])
        if "patterns_per_bin_min" in t.attrs:
            attrs["patterns_per_bin_min_all"] = int(min(p.attrs["patterns_per_bin_min"]
                                                        for p in parts))
        out.append(Table(t.name, data, dims, {**t.coords, "rows": np.asarray(plan.rows)},
                         t.units, {**t.coord_units, "rows": "1"}, attrs))
    return out


def write_wl_v(plan: CrossbarRun) -> list[float]:
    """The write word-line voltage (V) at each ``vdd_v`` of the plan: ``wl_frac * vdd``."""
    return [round(plan.write.wl_frac * float(v), 12) for v in plan.vdd_v]


def write_wl_v_levels(plan: CrossbarRun) -> list[list[float]]:
    """The write word-line voltage (V) of each level above 0 at each ``vdd_v``:
    ``WriteConfig.wl_frac_of(level) * vdd`` (all ``wl_frac * vdd`` without
    ``wl_frac_levels``)."""
    return [[round(plan.write.wl_frac_of(lvl) * float(v), 12)
             for lvl in range(1, plan.column.levels)] for v in plan.vdd_v]


def _plain_attr(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def build_tables(plan: CrossbarRun, col: dict[str, Table], wr: dict[str, Table],
                 noise_i: list[float] | None = None) -> list[Table]:
    """Reduce the sweeps' raw tables (dims ``process, vdd_v, temp_c, mc, ...``) to the
    contract tables (one column of ``plan.column.rows``; ``noise_i``: the read-noise
    currents of a rows axis, ``noise_currents``)."""
    cfg = plan.column
    lead = ("process", "vdd_v", "temp_c")
    coords = {"process": np.asarray(plan.process), "vdd_v": np.asarray(plan.vdd_v),
              "temp_c": np.asarray(plan.temp_c)}
    cu = {"process": "1", "vdd_v": "V", "temp_c": "degC"}
    shape = tuple(len(coords[d]) for d in lead)
    g_levels = np.asarray(cfg.level_g_s)
    attrs = {"g_min_s": cfg.g_min_s, "g_max_s": cfg.g_max_s, "levels": cfg.levels,
             "rows": cfg.rows, "v_read_v": cfg.v_read_v}

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        g_t = np.nanmean(col["cell_g_s"].data, axis=3)  # (p, v, t, level); no mismatch in it
    t_cell = Table(CROSSBAR_CELL_READ, g_t, (*lead, "level"),
                   {**coords, "level": np.arange(cfg.levels)}, "S", {**cu, "level": "1"},
                   {**attrs, "level_g_s": g_levels, "description": "read conductance "
                    "|I|/v_read of one cell at each level's state, alone at v_read and the "
                    "circuit temperature (reference cells of the column deck): the cell's G(T), "
                    "the only place the temperature of the cell's read enters; linear in the "
                    "state between level 0 and the top level"})

    xfer = np.empty((*shape, XFER_GRID.size, 2))
    counts = np.zeros((*shape, XFER_GRID.size), dtype=np.int64)
    filled = 0
    rel, ratio = col["xfer_rel"].data, col["xfer_ratio"].data
    half = 0.5 * float(XFER_GRID[1] - XFER_GRID[0])
    for idx in np.ndindex(*shape):
        xfer[idx], f = reduce_transfer(rel[idx], ratio[idx])
        filled += f
        r = np.ravel(rel[idx])[np.isfinite(np.ravel(ratio[idx]))]
        counts[idx] = [int(np.sum(np.abs(r - x) <= half + 1e-12)) for x in XFER_GRID]
    t_xfer = Table(CROSSBAR_READ_TRANSFER, xfer, (*lead, "i_ideal_rel", "stat"),
                   {**coords, "i_ideal_rel": XFER_GRID,
                    "stat": np.asarray(["mean_ratio", "std_ratio"])}, "1",
                   {**cu, "i_ideal_rel": "1", "stat": "1"},
                   {**attrs, "description": "sensed column current / ideal current at T "
                    "(v_read * sum of the active cells' crossbar/cell_read G(T)), binned by "
                    "that ideal current / the full scale at T (rows * v_read * G(T) of the top "
                    "level); the column only (IR drop, access device, TIA), not the cell's "
                    "G(T); mean and spread over patterns (all-HRS, all-LRS, random mixtures "
                    "per bin) and Monte-Carlo chips; use by piecewise-linear interpolation",
                    "i_full_scale_a": cfg.i_full_scale_a, "bins_interpolated": filled,
                    "patterns_per_bin_min": int(counts.min()),
                    "patterns_per_bin": json.dumps(counts.tolist())})

    with np.errstate(all="ignore"):
        sig = np.nanmean(col["noise_sigma_a"].data, axis=3) if plan.mc > 1 else \
            col["noise_sigma_a"].data[:, :, :, 0]
    i_col = np.asarray(noise_i, float) if noise_i else \
        np.asarray(points.NOISE_FRACS) * cfg.i_full_scale_a
    if cfg.rtn_rel > 0:  # the optional RTN / 1-f assumption, in quadrature
        sig = np.sqrt(sig**2 + (cfg.rtn_rel * i_col) ** 2)
    t_noise = Table(CROSSBAR_READ_NOISE, sig, (*lead, "i_col_a"), {**coords, "i_col_a": i_col},
                    "A", {**cu, "i_col_a": "A"},
                    {**attrs, "description": "sigma of the column current from .noise: "
                     "thermal + shot noise of the cells (noise resistor 1/(G(T)(1 + F q "
                     "V_read/2kT)) on active rows, 1/G(T) on inactive ones), wires, access "
                     "transistors incl. flicker, the TIA feedback and the opamp's input "
                     "voltage noise; integrated from f_noise_lo_hz to f_noise_hi_hz (the "
                     "TIA's whole noise bandwidth, not cut at its pole f_sense_hz); i_col_a "
                     "is the ideal column current of the pattern (tnom conductances)",
                     "f_sense_hz": cfg.f_sense_hz, "f_noise_lo_hz": cfg.f_noise_lo_hz,
                     "f_noise_hi_hz": cfg.f_noise_top_hz,
                     "noise_bandwidth_hz": 0.5 * np.pi * cfg.f_sense_hz,
                     "shot_fano": cfg.shot_fano, "tia_en_v_rthz": cfg.tia_en_v_rthz,
                     "rtn_rel": cfg.rtn_rel})

    g = wr["g_prog_s"].data  # (p, v, t, mc, mode, level, copy)
    g = np.moveaxis(g, 3, -2)  # (p, v, t, mode, level, mc, copy)
    samples = g.reshape(*g.shape[:-2], -1)
    wstats = reduce_write(samples, g_levels)
    # k and bias in the state domain: a sample read at T referred to tnom through the cell's
    # G(T) (crossbar/cell_read), so the temperature of the read is not counted as programming
    # error (the simulator maps the samples the same way)
    g0_t, gtop_t = g_t[..., :1, None], g_t[..., -1:, None]  # (p, v, t, 1, 1)
    eq = cfg.g_min_s + (samples - g0_t[:, :, :, None]) / (gtop_t - g0_t)[:, :, :, None] \
        * (cfg.g_max_s - cfg.g_min_s)
    fit = np.full((*shape, len(MODES), len(FIT_STATS)), np.nan)
    lvl = np.full((*shape, len(MODES), cfg.levels, len(LEVEL_STATS)), np.nan)
    for idx in np.ndindex(*shape):
        for m in range(len(MODES)):
            s = eq[idx][m]
            tg = np.broadcast_to(g_levels[:, None], s.shape)
            fit[idx][m][:3] = fit_write_noise_k(tg, s, cfg.g_min_s, cfg.g_max_s)
            est = estimate_write_noise(tg, s, cfg.g_min_s, cfg.g_max_s, center="mean")
            fit[idx][m][3] = est["k"]
            at = np.searchsorted(g_levels, est["levels_s"])
            lvl[idx][m][at] = np.stack([est["bias_s"], est["k_level"], est["std_s"],
                                        est["n_level"]], axis=-1)
    vf = wr["verify_failed"].data  # (p, v, t, mc, level, copy)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fail = np.nanmean(np.moveaxis(vf, 3, -2).reshape(*shape, cfg.levels, -1), axis=-1)
        budget = np.nanmax(wr["pulse_budget"].data.reshape(*shape, -1), axis=-1)
    wc = {**coords, "mode": np.asarray(MODES), "level": np.arange(cfg.levels)}
    wcu = {**cu, "mode": "1", "level": "1"}
    wattrs = {**attrs, "level_g_s": g_levels, "write": json.dumps(plan.write.to_dict()),
              "vdd_nom_v": plan.vdd_nom_v, "wl_frac": plan.write.wl_frac,
              "wl_v": json.dumps(write_wl_v(plan)),
              "wl_v_levels": json.dumps(write_wl_v_levels(plan))}
    t_w = Table(CROSSBAR_WRITE_NOISE, wstats, (*lead, "mode", "level", "stat"),
                {**wc, "stat": np.asarray(WRITE_STATS)}, "S", {**wcu, "stat": "1"},
                {**wattrs, "description": "programmed conductance from reset (w=0) per target "
                 "level: single-shot (calibrated pulse width) and write-verify (step pulses "
                 "until the read at T >= G(w_l, T) - tol, the level as read at T), as read at "
                 "T"})
    t_ws = Table(CROSSBAR_WRITE_NOISE_SAMPLES, samples, (*lead, "mode", "level", "sample"),
                 {**wc, "sample": np.arange(samples.shape[-1])}, "S", {**wcu, "sample": "1"},
                 {**wattrs, "description": "empirical programmed conductances (Monte-Carlo "
                  "benches x cells per level)"})
    t_fit = Table(CROSSBAR_WRITE_NOISE_FIT, fit, (*lead, "mode", "stat"),
                  {**coords, "mode": np.asarray(MODES), "stat": np.asarray(FIT_STATS)}, "1",
                  {**cu, "mode": "1", "stat": "1"},
                  {**attrs, "form": "G' = G + k*sqrt((G-Gmin)*(Gmax-Gmin))*N(0,1)",
                   "description": "k = sqrt(mean(u^2)), u the normalized deviation from the "
                   "target over levels above G_min (the ClipFormer/TxSim k: a programming "
                   "bias counts in it); k_zero_mean: the same about each level's mean (the "
                   "bias taken out; crossbar/write_noise_levels has the bias); k_stderr = "
                   "k/sqrt(2n); r2 of the normal probability plot of u. Conductances referred "
                   "to tnom through crossbar/cell_read (the state domain)"})
    t_lv = Table("crossbar/write_noise_levels", lvl, (*lead, "mode", "level", "stat"),
                 {**wc, "stat": np.asarray(LEVEL_STATS)}, "1", {**wcu, "stat": "1"},
                 {**wattrs, "stat_units": json.dumps({"bias_s": "S", "k": "1", "std_s": "S",
                                                      "n": "1"}),
                  "calibrate": plan.write.calibrate,
                  "description": "per target level: bias_s = mean programmed error G' - G "
                  "(applied once, not scaled by gamma), k = zero-mean spread of the TxSim form "
                  "about the level's mean (NaN at G_min), std_s, n samples; conductances "
                  "referred to tnom through crossbar/cell_read (the state domain). With "
                  "calibrate='nominal' (fixed pulses) the bias away from tt/27 degC is the "
                  "chip's real programming error"})
    t_vf = Table("crossbar/write_verify_failure", fail, (*lead, "level"),
                 {**coords, "level": np.arange(cfg.levels)}, "1", {**cu, "level": "1"},
                 {**wattrs, "pulse_budget": json.dumps(np.asarray(budget).tolist()),
                  "calibrate": plan.write.calibrate,
                  "verify_max_pulses": plan.write.verify_max_pulses,
                  "description": "fraction of write-verify cells that never reached their "
                  "level (read at T >= G(w_l, T) - verify_tol_rel (G(1, T) - G(0, T)), the "
                  "level's state as read at the write temperature, crossbar/cell_read) within "
                  "the pulse budget (verify_budget x the pulses the nominal device needs at "
                  "the calibration point, at most verify_max_pulses; pulse_budget per point, "
                  "in the PVT order); their last read is kept in the samples"})

    mi, mn = col["margin_i_a"].data, col["margin_noise_a"].data
    marg = np.empty((*shape, len(MARGIN_STATS)))
    for idx in np.ndindex(*shape):
        prog = wstats[idx][MODES.index("verify"), :, 2] * cfg.v_read_v
        marg[idx] = reduce_margin(mi[idx], mn[idx], prog)
    t_m = Table(CROSSBAR_SENSING_MARGIN, marg, (*lead, "stat"),
                {**coords, "stat": np.asarray(MARGIN_STATS)}, "A", {**cu, "stat": "1"},
                {**attrs, "stat_units": json.dumps({"margin_a": "A", "sigma_a": "A",
                                                     "margin_sigma": "1"}),
                 "description": "one active row (row 0) at each level, other rows off at random "
                 "levels: margin_a = min distance of adjacent mean level currents; sigma_a = "
                 "max level spread sqrt(var over chips + read noise^2 + (write-verify G "
                 "sigma * v_read)^2); margin_sigma = ratio"})
    return [t_cell, t_xfer, t_noise, t_w, t_ws, t_fit, t_lv, t_vf, t_m,
            read_energy_table(plan, col["read_energy_j"].data, coords, cu, attrs)]


def read_energy_table(plan: CrossbarRun, e: np.ndarray, coords: dict[str, np.ndarray],
                      cu: dict[str, str], attrs: dict[str, Any]) -> Table:
    """``crossbar/read_energy_j`` from the column sweep's ``read_energy_j`` (dims ``process,
    vdd_v, temp_c, mc, part``): the mean over the chips, each of which read its own
    ``points.energy_pattern`` (the same patterns at every PVT point)."""
    cfg = plan.column
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(e, axis=3)
    pats = [points.energy_pattern(cfg, m) for m in range(plan.mc)]
    i_ideal = [cfg.v_read_v * float(g[a].sum()) for g, a in pats]
    n_act = [int(a.sum()) for _, a in pats]
    scaling = {"array": "proportional to the column current: v_read * I_col * t_read",
               "tia": "vdd * (tia_iq_a + |I_col|) * t_read: the quiescent part is fixed, "
                      "the output part proportional to the column current",
               "drivers": "proportional to the active rows: vdd * Q_gate(vdd) per active row "
                          "and read"}
    return Table(CROSSBAR_READ_ENERGY, mean, ("process", "vdd_v", "temp_c", "part"),
                 {**coords, "part": np.asarray(points.ENERGY_PARTS)}, "J", {**cu, "part": "1"},
                 {**attrs, "t_read_s": cfg.t_read_s, "t_wl_edge_s": cfg.t_wl_edge_s,
                  "tia_iq_a": cfg.tia_iq_a,
                  "pattern": f"mean over {plan.mc} random-mixture read patterns (one per "
                  "chip; each cell at a uniformly drawn level, each row active with "
                  "probability 1/2; the same patterns at every corner, supply and "
                  "temperature)",
                  "pattern_i_ideal_a": float(np.mean(i_ideal)),
                  "pattern_active_rows": float(np.mean(n_act)),
                  "scaling": json.dumps(scaling),
                  "description": "energy of one column read over the read window t_read_s "
                  "(word lines on for t_read after a t_wl_edge rise), from a SPICE transient "
                  "of the column: array = read driver's v_read * I; tia = vdd * (tia_iq_a + "
                  "|I_out|), the output current from SPICE, the opamp's quiescent current "
                  "tia_iq_a an assumption (behavioural opamp); drivers = word-line drivers' "
                  "vdd * I (the access transistors' gate charge; word-line wire capacitance "
                  "not modelled). Per read of the stored pattern (pattern_i_ideal_a, "
                  "pattern_active_rows); scale per 'scaling'"})
