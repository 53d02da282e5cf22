"""Netlist generation for the 1T1R RRAM crossbar column and the single-cell write bench.

The column (rows ``i = 0 .. N-1``, row 0 at the top):

```
 Vrd (v_read, AC 1) - Rdrv - b0 -Rb- b1 -Rb- ... b(N-1)          bit line (BL), driver at top
                              |        |             |
                           rram_0   rram_1   ...  rram_(N-1)     te on the BL
                              |        |             |
            WL_i - Vmm_i -| nfet_i (sky130 nfet_01v8, gate on its word line)
                              |        |             |
                             s0 -Rs-  s1 -Rs- ... s(N-1) -Rs- sN  source line (SL)
                                                              |
                                               Rsense - tin (TIA virtual ground)
                           TIA: single-pole opamp (gain a0, GBW) with Rf || Cf: tin -> out
```

Row inputs are binary (bit-serial): a row is active when its word line is at ``vdd``.
``Vmm_i`` in series with each gate is the access transistor's threshold mismatch
(``v_gate = v_wl - dVt``), drawn per instance from Pelgrom's law by the caller.
The cell state, device-to-device factors and noise conductance are internal sources of the
memristor subcircuit (``netlists/rram/rram.lib``), changed with ``alter`` without re-parsing.

Variants for verification: ``cell="linear"`` (plain resistor ``Rm_i``), ``access="ideal"``
(a resistor ``Ra_i`` of ``r_switch`` ohms, ``r_off`` when off) and ``tia="ideal"`` (a 0 V clamp
``Vclamp`` at ``tin``; the column current is ``i(vclamp)``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from characterization.errors import ConfigError
from spicebridge.netlist import netlist_dir, sky130_corner_lib

NFET = "sky130_fd_pr__nfet_01v8"


def rram_lib_path() -> Path:
    """Path of the memristor compact model ``netlists/rram/rram.lib``."""
    return netlist_dir() / "rram" / "rram.lib"


@dataclass(frozen=True)
class ColumnConfig:
    """Electrical parameters of one crossbar column (SI units).

    Attributes:
        rows: Number of rows (16 to 256).
        r_on_ohm: Memristor low-resistance state (G_max = 1/r_on).
        on_off: ON/OFF ratio (G_min = G_max / on_off).
        levels: Conductance levels per cell (2 bits -> 4), equally spaced in G.
        v_read_v: Read voltage applied by the bit-line driver.
        r_wire_ohm: Wire resistance per cell segment, on the bit line and on the source line.
        r_drv_ohm: Bit-line driver output resistance.
        r_sense_ohm: Series resistance from the source line to the TIA input.
        w_um, l_um: Access transistor width and length (micrometres, sky130 scale).
        a_vt_mv_um: Pelgrom coefficient of the access transistor's threshold (mV um).
        tia_gain: Opamp DC gain (V/V).
        tia_gbw_hz: Opamp gain-bandwidth product.
        r_f_ohm: TIA feedback resistance; the output is ``-I * r_f``.
        f_sense_hz: Sense bandwidth (closed by ``Cf = 1/(2 pi Rf f_sense)``).
        f_noise_lo_hz: Lower end of the read-noise integration.
        f_noise_hi_hz: Upper end of the read-noise integration; 0: the opamp's
            gain-bandwidth ``tia_gbw_hz`` (the TIA's whole noise bandwidth, not cut at its pole).
        shot_fano: Fano factor ``F`` of the cells' shot noise (1: Poissonian). An active cell's
            noise resistor is ``1/(G(T) (1 + F q V_read / 2kT))``: PSD ``4kTG + 2 F q I``.
            An assumption (filamentary RRAM: F ~ 0.3-1 reported), recorded in provenance.
        tia_en_v_rthz: Opamp input-referred voltage noise density (V/sqrt(Hz)), modelled by the
            thermal noise of a resistor at the non-inverting input. An assumption.
        rtn_rel: Optional relative read-noise term (random telegraph / 1-f noise of the
            filaments, which ``.noise`` of the compact model does not hold): sigma
            ``rtn_rel * I`` added in quadrature to ``crossbar/read_noise``. An assumption,
            default 0 (off); reported for HfOx cells: 1-10 % of the current in HRS, below 1 %
            in LRS (Ielmini et al., IEEE TED 2010; Puglisi et al., IEEE TED 2015).
        t_read_s: Read window of one column read (word lines on, TIA settling and the
            ADC's sample): the time the read energy ``crossbar/read_energy_j`` integrates
            over. Default 100 ns: 6.3 time constants of the 10 MHz sense pole (settled to
            0.2 %).
        t_wl_edge_s: Rise time of the word-line drivers in the read-energy transient.
        tia_iq_a: Quiescent supply current of the TIA's opamp (from ``vdd``). The opamp is
            behavioural (no supply pin), so this is an assumption, recorded in provenance;
            the output current the TIA sinks is SPICE's. Default 20 uA.
        cell: ``"rram"`` (compact model) or ``"linear"`` (resistor).
        access: ``"sky130"`` or ``"ideal"`` (resistor ``r_switch_ohm``).
        tia: ``"opamp"`` or ``"ideal"`` (0 V clamp).
        r_switch_ohm: On-resistance of the ideal access switch.
        r_off_ohm: Off-resistance of the ideal access switch.
        rram_params: Extra ``.subckt rram`` parameters (name -> value), e.g. ``{"v0": 0.4}``.
        one_bin_models: Use the one-bin sky130 library (``models.nfet_one_bin_lib``, same
            device equations, much faster) instead of ``sky130_corner_lib`` (all 180 bins).
        rram_lib: Memristor library to include instead of ``netlists/rram/rram.lib`` (e.g. a
            model fitted by ``spicebridge fit memristor``); empty: the default. It must define
            ``.subckt rram te be params: ...`` with the default model's internal sources
            (``check_rram_lib``). ``ron``/``roff`` are still passed per instance from
            ``r_on_ohm``/``on_off`` (``make_plan`` takes them from the library).
    """

    rows: int = 64
    r_on_ohm: float = 100e3
    on_off: float = 100.0
    levels: int = 4
    v_read_v: float = 0.2
    r_wire_ohm: float = 5.0
    r_drv_ohm: float = 50.0
    r_sense_ohm: float = 20.0
    w_um: float = 0.5
    l_um: float = 0.15
    a_vt_mv_um: float = 5.0
    tia_gain: float = 1e4
    tia_gbw_hz: float = 1e9
    r_f_ohm: float = 5e3
    f_sense_hz: float = 10e6
    f_noise_lo_hz: float = 1e3
    f_noise_hi_hz: float = 0.0
    shot_fano: float = 1.0
    tia_en_v_rthz: float = 5e-9
    rtn_rel: float = 0.0
    t_read_s: float = 100e-9
    t_wl_edge_s: float = 0.2e-9
    tia_iq_a: float = 20e-6
    cell: str = "rram"
    access: str = "sky130"
    tia: str = "opamp"
    r_switch_ohm: float = 1e3
    r_off_ohm: float = 1e12
    rram_params: dict[str, float] = field(default_factory=dict)
    one_bin_models: bool = True
    rram_lib: str = ""

    def __post_init__(self) -> None:
        if not 1 <= int(self.rows) <= 1024:
            raise ConfigError(f"ColumnConfig.rows must be 1..1024 (16..256 typical), "
                             f"got {self.rows}")
        for name, allowed in (("cell", ("rram", "linear")), ("access", ("sky130", "ideal")),
                              ("tia", ("opamp", "ideal"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"ColumnConfig.{name} must be one of {allowed}, "
                                 f"got {getattr(self, name)!r}")
        if self.levels < 2:
            raise ConfigError(f"ColumnConfig.levels must be >= 2, got {self.levels}")

    @property
    def rram_lib_file(self) -> Path:
        """The memristor library the decks include (``rram_lib`` or the default)."""
        return Path(self.rram_lib) if self.rram_lib else rram_lib_path()

    @property
    def g_max_s(self) -> float:
        """Highest cell conductance, 1/r_on."""
        return 1.0 / self.r_on_ohm

    @property
    def g_min_s(self) -> float:
        """Lowest cell conductance, G_max / on_off."""
        return self.g_max_s / self.on_off

    @property
    def level_g_s(self) -> list[float]:
        """Conductance of each level, equally spaced from G_min to G_max."""
        n = self.levels - 1
        return [self.g_min_s + k / n * (self.g_max_s - self.g_min_s) for k in range(self.levels)]

    @property
    def i_full_scale_a(self) -> float:
        """Ideal column current with every row active at G_max: rows * G_max * v_read."""
        return self.rows * self.g_max_s * self.v_read_v

    @property
    def sigma_vt_v(self) -> float:
        """Pelgrom threshold sigma of one access transistor, A_vt / sqrt(W L)."""
        return self.a_vt_mv_um * 1e-3 / math.sqrt(self.w_um * self.l_um)

    @property
    def c_f_f(self) -> float:
        """TIA feedback capacitance for the sense bandwidth."""
        return 1.0 / (2 * math.pi * self.r_f_ohm * self.f_sense_hz)

    @property
    def f_noise_top_hz(self) -> float:
        """Upper end of the read-noise integration (``f_noise_hi_hz`` or the opamp's GBW)."""
        return self.f_noise_hi_hz if self.f_noise_hi_hz > 0 else self.tia_gbw_hz

    @property
    def r_en_ohm(self) -> float:
        """Resistor at the opamp's non-inverting input whose thermal noise at 27 degC is
        ``tia_en_v_rthz``: ``en^2 / (4 k T)``."""
        return self.tia_en_v_rthz ** 2 / (4 * 1.380649e-23 * 300.15)

    def shot_factor(self, temp_c: float, v_v: float | None = None) -> float:
        """``1 + F q V / 2kT``: the noise conductance of an active cell is ``G(T)`` times it."""
        v = self.v_read_v if v_v is None else v_v
        return 1.0 + self.shot_fano * 1.602176634e-19 * v / (
            2 * 1.380649e-23 * (temp_c + 273.15))

    def state_of(self, g_s: float) -> float:
        """Memristor state ``w`` whose small-signal conductance at tnom is ``g_s``."""
        return (g_s - self.g_min_s) / (self.g_max_s - self.g_min_s)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy (provenance, sweep context)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnConfig:
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        known = set(cls.__dataclass_fields__)
        bad = set(d) - known
        if bad:
            raise ConfigError(f"unknown column parameters {sorted(bad)}; known: {sorted(known)}")
        return cls(**d)


RRAM_ELEMENTS = ("vw0", "vdgon", "vdgoff", "vdvset", "vdk", "rnz", "cw")
"""Internal elements of ``.subckt rram`` that the point functions alter or probe."""
RRAM_PARAMS = ("ron", "roff", "w0", "sig_c2c", "t_c2c")
"""``.subckt rram`` parameters that the decks pass per instance."""


def check_rram_lib(path: str | Path) -> dict[str, str]:
    """Check that a memristor library can stand in for ``netlists/rram/rram.lib``.

    Returns:
        The ``.subckt rram`` default parameters as written (name -> text, lower case).

    Raises:
        ValueError: Missing file, no ``.subckt rram te be params:``, or a missing parameter or
            internal element, naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: memristor library not found")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.split()[:2] and
                  [x.lower() for x in ln.split()[:2]] == [".subckt", "rram"]), None)
    if start is None:
        raise ConfigError(f"{path}: no '.subckt rram te be params: ...' line (the crossbar "
                         "decks instantiate 'rram' with pins te be)")
    end = start + 1
    while end < len(lines) and lines[end].lstrip().startswith("+"):
        end += 1
    header = " ".join([lines[start]] + [ln.lstrip()[1:] for ln in lines[start + 1:end]])
    low = header.lower()
    if "params:" not in low or low.split()[2:4] != ["te", "be"]:
        raise ConfigError(f"{path}:{start + 1}: '.subckt rram' must be '.subckt rram te be "
                         f"params: ...', got {lines[start].strip()!r}")
    params = {m.group(1).lower(): m.group(2) for m in
              re.finditer(r"(\w+)\s*=\s*(\{[^}]*\}|'[^']*'|[^\s=]+)",
                          header[low.index("params:") + 7:])}
    missing = [p for p in RRAM_PARAMS if p not in params]
    if missing:
        raise ConfigError(f"{path}:{start + 1}: '.subckt rram' lacks parameter(s) {missing} "
                         f"that the crossbar decks set per instance")
    stop = next((i for i in range(end, len(lines))
                 if lines[i].strip().lower().startswith(".ends")), len(lines))
    names = {ln.split()[0].lower() for ln in lines[end:stop] if ln.split()}
    missing = [e for e in RRAM_ELEMENTS if e not in names]
    if missing:
        raise ConfigError(f"{path}:{start + 1}-{stop + 1}: '.subckt rram' lacks internal "
                         f"element(s) {missing} (state source, device-to-device sources, noise "
                         "resistor, state capacitor) that the characterization alters; start "
                         f"from {rram_lib_path()}")
    return params


def rram_check_deck(cfg: ColumnConfig, v_v: float | None = None) -> str:
    """One memristor of ``cfg.rram_lib_file`` at mid state (w0 = 0.5) under ``v_v`` (default
    ``v_read_v``) in ``.op``: the pre-flight check of a user's model library."""
    v = cfg.v_read_v if v_v is None else v_v
    return "\n".join([f"* memristor model check: {cfg.rram_lib_file}",
                      f'.include "{cfg.rram_lib_file}"', f"Vr te 0 DC {v:.12g}",
                      f"Xm0 te 0 rram params: {_rram_params(cfg, {'w0': 0.5})}",
                      ".op", ".end"]) + "\n"


def _rram_params(cfg: ColumnConfig, extra: dict[str, float] | None = None) -> str:
    p = {"ron": cfg.r_on_ohm, "roff": cfg.r_on_ohm * cfg.on_off, **cfg.rram_params,
         **(extra or {})}
    return " ".join(f"{k}={v:.12g}" for k, v in p.items())


def _models(cfg: ColumnConfig, corner: str) -> list[str]:
    lines = []
    if cfg.access == "sky130":
        if cfg.one_bin_models:
            from .models import nfet_one_bin_lib

            lib = nfet_one_bin_lib(cfg.w_um, cfg.l_um)
        else:
            lib = sky130_corner_lib(("nfet_01v8",))
        lines.append(f'.lib "{lib}" {corner}')
    if cfg.cell == "rram":
        lines.append(f'.include "{cfg.rram_lib_file}"')
    return lines


def _reference_cells(cfg: ColumnConfig) -> list[str]:
    """One cell per level at that level's state, alone under ``vref<l>`` at ``v_read``."""
    out = ["* reference cells: one per level, alone at v_read (cell read G(T))"]
    for lvl, gl in enumerate(cfg.level_g_s):
        out.append(f"Vref{lvl} rref{lvl} 0 DC {cfg.v_read_v:.12g}")
        if cfg.cell == "rram":
            w0 = min(max(cfg.state_of(gl), 0.0), 1.0)
            out.append(f"Xref{lvl} rref{lvl} 0 rram params: {_rram_params(cfg, {'w0': w0})}")
        else:
            out.append(f"Rref{lvl} rref{lvl} 0 {1.0 / gl:.12g}")
    return out


def cell_read_deck(cfg: ColumnConfig, temp_c: float = 27.0) -> str:
    """The column deck's reference cells alone (``.op``): each level's read conductance
    G(w_l, T) = ``|i(vref<l>)| / v_read`` at ``temp_c``, what ``crossbar/cell_read`` holds.
    The write bench's verify targets at T come from it."""
    return "\n".join(["* cell read G(T) of each level (generated by characterization.crossbar)",
                      *([f'.include "{cfg.rram_lib_file}"'] if cfg.cell == "rram" else []),
                      f".temp {temp_c:.12g}", *_reference_cells(cfg), ".op", ".end"]) + "\n"


def column_deck(cfg: ColumnConfig, corner: str = "tt", *, vdd_v: float = 1.8,
                temp_c: float = 27.0, g_s: list[float] | None = None,
                active: list[bool] | None = None, analysis: str = ".op") -> str:
    """SPICE deck of one column.

    Args:
        cfg: Column parameters.
        corner: sky130 process corner of the access transistors (``tt ff ss fs sf``).
        vdd_v: Word-line high level (the supply).
        temp_c: Circuit temperature.
        g_s: Cell conductances (default: all at G_min); ``cell="rram"`` sets the state w0.
        active: Word lines on (default: all on).
        analysis: Analysis lines appended (``.op``, ``.noise v(out) vrd dec 10 1k 10meg``).

    Returns:
        The deck text. Element names: ``vrd``, ``vwl<i>``, ``vmm<i>``, ``xm<i>`` (cell),
        ``rm<i>`` (linear cell), ``ra<i>`` (ideal switch), ``vclamp`` (ideal TIA); nodes
        ``b<i>``, ``s<i>``, ``tin``, ``out``. Reference cells ``xref<l>`` (``rref<l>``
        linear), one per level at that level's state, each alone under ``vref<l>`` at
        ``v_read`` (outside the column: the cell's read conductance G(T) at v_read,
        ``|i(vref<l>)| / v_read``, with no IR drop, access device or TIA).
    """
    n = cfg.rows
    g_s = list(g_s) if g_s is not None else [cfg.g_min_s] * n
    active = list(active) if active is not None else [True] * n
    if len(g_s) != n or len(active) != n:
        raise ConfigError(f"column_deck: need {n} conductances and {n} activity flags, got "
                         f"{len(g_s)} and {len(active)}")
    out = [f"* 1T1R RRAM crossbar column: rows={n} corner={corner} cell={cfg.cell} "
           f"access={cfg.access} tia={cfg.tia} (generated by characterization.crossbar)",
           *_models(cfg, corner),
           f".temp {temp_c:.12g}",
           f"Vrd drv 0 DC {cfg.v_read_v:.12g} AC 1",
           f"Rdrv drv b0 {cfg.r_drv_ohm:.12g}"]
    for i in range(n):
        on = active[i]
        if cfg.cell == "rram":
            w0 = min(max(cfg.state_of(g_s[i]), 0.0), 1.0)
            out.append(f"Xm{i} b{i} m{i} rram params: {_rram_params(cfg, {'w0': w0})}")
        else:
            out.append(f"Rm{i} b{i} m{i} {1.0 / g_s[i]:.12g}")
        if cfg.access == "sky130":
            out += [f"Vwl{i} wl{i} 0 DC {vdd_v if on else 0.0:.12g}",
                    f"Vmm{i} wl{i} g{i} DC 0",
                    f"Xa{i} m{i} g{i} s{i} 0 {NFET} W={cfg.w_um:.12g} L={cfg.l_um:.12g}"]
        else:
            out.append(f"Ra{i} m{i} s{i} {cfg.r_switch_ohm if on else cfg.r_off_ohm:.12g}")
        if i < n - 1:
            out.append(f"Rb{i} b{i} b{i + 1} {cfg.r_wire_ohm:.12g}")
        out.append(f"Rs{i} s{i} s{i + 1} {cfg.r_wire_ohm:.12g}")
    out.append(f"Rsense s{n} tin {cfg.r_sense_ohm:.12g}")
    out += _reference_cells(cfg)
    if cfg.tia == "ideal":
        out.append("Vclamp tin 0 DC 0")
    else:
        rp = 1e3
        fp = cfg.tia_gbw_hz / cfg.tia_gain
        out += ["* TIA: single-pole opamp (gain a0, pole gbw/a0), inverting input tin; Ren: "
                "input-referred voltage noise (thermal noise of a resistor at the + input)",
                f"Ren np 0 {cfg.r_en_ohm:.12g}",
                f"Gamp op 0 tin np {cfg.tia_gain / rp:.12g}",
                f"Rpole op 0 {rp:.12g}",
                f"Cpole op 0 {1.0 / (2 * math.pi * rp * fp):.12g}",
                "Eout out 0 op 0 1",
                f"Rf tin out {cfg.r_f_ohm:.12g}",
                f"Cf tin out {cfg.c_f_f:.12g}"]
    out += [analysis, ".end"]
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class WriteConfig:
    """Write (programming) scheme of the single-cell write bench (SI units).

    Attributes:
        v_set_v: SET pulse amplitude on the bit line (source line grounded, WL at vdd).
        v_verify_v: Read voltage of the verify reads (the read voltage, so the programmed
            conductances are what a read sees).
        period_s: Pulse period of the verify train; a verify cell's cycle-to-cycle factor is
            renewed every period (one draw per pulse, from the point's generator), a
            single-shot cell draws once (its one pulse).
        t_step_s: Width of one write-verify pulse.
        t_edge_s: Pulse rise and fall time.
        verify_tol_rel: Verify stops when the read at T ``G >= G(w_l, T) - tol * (G(1, T) -
            G(0, T))``: the target is the level's state as read at the write temperature (the
            reference cells of ``cell_read_deck``, what ``crossbar/cell_read`` holds), so a
            cell that passes maps back to its level through G(T) exactly as nnsim maps the
            samples (temperature applied once).
        sigma_gon: Device-to-device log-sigma of Gon.
        sigma_goff: Device-to-device log-sigma of Goff.
        sigma_vset_v: Device-to-device sigma of the threshold shift.
        sigma_k: Device-to-device log-sigma of the switching rate.
        sigma_c2c: Cycle-to-cycle log-sigma of the switching rate (one draw per pulse).
        cells_per_level: Cells per (mode, level) in one bench (samples per Monte-Carlo point).
        calibrate: ``"per_corner"``: the single-shot widths and the verify pulse budget are
            calibrated on the nominal device at each (corner, vdd, temperature) (a driver tuned
            per condition); ``"nominal"``: once at tt, the plan's middle vdd, 27 degC (a chip
            with fixed pulses: its programming error away from nominal is a real bias).
        verify_budget: Verify pulse budget as a multiple of the pulses the nominal device needs
            to reach the top level at the calibration point (at least 4 pulses).
        verify_max_pulses: Cap on the verify pulses per write, whatever the calibrated budget
            (a slow, cold corner cannot run an unbounded train); a cell that has not reached
            its level at the cap is a verify failure (``crossbar/write_verify_failure``).
        wl_frac: Word-line (access-transistor gate) voltage while writing, as a fraction of
            ``vdd`` (a WL driver fed from ``vdd`` through a fixed divider); 1: the WL at
            ``vdd`` (the transistor hardly limits the SET current). Below about 0.6 the
            transistor's saturation current is the SET compliance, so ``vdd`` and the corner
            change the programmed levels. With ``calibrate = "nominal"`` the pulses are tuned
            at the nominal point only, so the shift is the chip's; levels the nominal cell
            cannot reach at the calibration point are an error naming them.
        wl_frac_levels: Per-level write word lines (compliance as the multilevel knob), one
            fraction of ``vdd`` per level above level 0 (``levels - 1`` values, each 0.2..1);
            empty (default): every level at ``wl_frac``. Each level's single-shot width and the
            verify pulse budget are calibrated at that level's word line; a level whose word
            line saturates the nominal cell below it at the calibration point is an error.

    The device-to-device and cycle-to-cycle sigmas are inputs of the device model
    (assumptions, recorded as such in the lookup's provenance); ``fit`` sets them from
    measured data.
    """

    v_set_v: float = 1.6
    v_verify_v: float = 0.2
    period_s: float = 50e-9
    t_step_s: float = 10e-9
    t_edge_s: float = 1e-9
    verify_tol_rel: float = 0.03
    sigma_gon: float = 0.05
    sigma_goff: float = 0.10
    sigma_vset_v: float = 0.03
    sigma_k: float = 0.10
    sigma_c2c: float = 0.15
    cells_per_level: int = 2
    calibrate: str = "per_corner"
    verify_budget: float = 2.0
    verify_max_pulses: int = 1024
    wl_frac: float = 1.0
    wl_frac_levels: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        try:
            lv = tuple(float(x) for x in self.wl_frac_levels)
        except (TypeError, ValueError):
            raise ConfigError("WriteConfig.wl_frac_levels must be a list of numbers, got "
                              f"{self.wl_frac_levels!r}") from None
        object.__setattr__(self, "wl_frac_levels", lv)
        if any(not 0.2 <= x <= 1.0 for x in lv):
            raise ConfigError(f"WriteConfig.wl_frac_levels must be 0.2..1, got {list(lv)}")
        if self.calibrate not in CALIBRATE:
            raise ConfigError(f"WriteConfig.calibrate must be one of {CALIBRATE}, "
                             f"got {self.calibrate!r}")
        if not self.verify_budget >= 1.0:
            raise ConfigError(f"WriteConfig.verify_budget must be >= 1, got {self.verify_budget}")
        if not (isinstance(self.verify_max_pulses, int) and self.verify_max_pulses >= 4):
            raise ConfigError("WriteConfig.verify_max_pulses must be an integer >= 4, got "
                              f"{self.verify_max_pulses!r}")
        if not 0.2 <= self.wl_frac <= 1.0:
            raise ConfigError(f"WriteConfig.wl_frac must be 0.2..1, got {self.wl_frac}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy (``wl_frac_levels`` only where set, so plans without it keep their
        provenance and sweep hashes)."""
        d = asdict(self)
        if self.wl_frac_levels:
            d["wl_frac_levels"] = list(self.wl_frac_levels)
        else:
            del d["wl_frac_levels"]
        return d

    def wl_frac_of(self, level: int) -> float:
        """The write word line of ``level`` as a fraction of vdd (``wl_frac`` for level 0 and
        without ``wl_frac_levels``)."""
        if self.wl_frac_levels and level > 0:
            return self.wl_frac_levels[level - 1]
        return self.wl_frac

    def assumptions(self) -> dict[str, Any]:
        """The device-variability sigmas: inputs of the device model, not circuit results."""
        return {k: getattr(self, k) for k in ("sigma_gon", "sigma_goff", "sigma_vset_v",
                                              "sigma_k", "sigma_c2c")}


CALIBRATE = ("per_corner", "nominal")


MODES = ("single", "verify")


def _pwl(segments: list[tuple[float, float, float]], edge: float, t_stop: float) -> str:
    """PWL text for non-overlapping (t_start, t_end, v) plateaus from 0 V."""
    pts = [(0.0, 0.0)]
    for t0, t1, v in sorted(segments):
        pts += [(t0, 0.0), (t0 + edge, v), (t1 + edge, v), (t1 + 2 * edge, 0.0)]
    pts.append((t_stop, 0.0))
    return "PWL(" + " ".join(f"{t:.12g} {v:.12g}" for t, v in pts) + ")"


def write_bench_deck(cfg: ColumnConfig, wcfg: WriteConfig, corner: str, *,
                     single_widths_s: list[float], n_pulses: int, vdd_v: float = 1.8,
                     temp_c: float = 27.0, seed: int | None = None
                     ) -> tuple[str, dict[str, Any]]:
    """Deck of the write bench: independent 1T1R cells programmed from reset.

    For each mode (single, verify), level (0 .. levels-1) and cell copy: a bit-line PWL source
    ``vp<j>``, the memristor ``xm<j>`` (reset, w0 = 0, cycle-to-cycle noise on), an access nfet
    with mismatch source ``vmm<j>`` and word line ``vwl<j>`` at vdd.
    *single*: one SET pulse of the calibrated width for the level, then verify-voltage reads.
    *verify*: ``n_pulses`` pulses of ``t_step_s``, each followed by a read at
    ``v_verify_v``; the verify loop's decision is applied afterwards to the reads in order
    (stopping at the first read that passes is exactly what a causal controller would do,
    because later pulses cannot change earlier reads). Level 0 gets no pulse (reset state).

    ``seed``: ``.options seed=`` in the deck, so the cycle-to-cycle sources' draws at load
    time are seeded too (``setseed`` after the load comes too late for them).

    Returns:
        The deck, and a layout dict: ``cells`` (list of (mode, level, copy)), ``read_times_s``
        (sample time of each period's read), ``t_stop_s``.
    """
    per = wcfg.period_s
    t_stop = n_pulses * per
    read_t0, read_t1 = 0.55 * per, 0.9 * per
    read_times = [k * per + read_t1 - 0.05 * per for k in range(n_pulses)]
    lines = [f"* 1T1R write bench: corner={corner} (generated by characterization.crossbar)",
             *_models(cfg, corner), f".temp {temp_c:.12g}"]
    if seed is not None:  # seeds ngspice's random draws at load time, before the first one
        lines.append(f".options seed={int(seed)}")
    cells = []
    # the model's own cycle-to-cycle source (TRRANDOM) is off here: write_point draws one
    # factor per pulse from the point's generator and applies it through the rate source
    # v.xm<j>.vdk (a PWL for verify cells), so no draw depends on ngspice's time steps
    extra_v = {"w0": 0.0, "sig_c2c": 0.0, "t_c2c": per}
    extra_s = {**extra_v, "t_c2c": 2 * t_stop}
    j = 0
    for mode in MODES:
        for level in range(cfg.levels):
            for copy in range(wcfg.cells_per_level):
                segs: list[tuple[float, float, float]] = []
                if mode == "single":
                    width = single_widths_s[level] if level else 0.0
                    n_per = math.ceil((width + 0.1 * per) / per) if width else 0
                    if width:
                        segs.append((0.05 * per, 0.05 * per + width, wcfg.v_set_v))
                    for k in range(n_per, n_pulses):
                        segs.append((k * per + read_t0, k * per + read_t1, wcfg.v_verify_v))
                else:
                    for k in range(n_pulses):
                        if level:
                            segs.append((k * per + 0.05 * per, k * per + 0.05 * per
                                         + wcfg.t_step_s, wcfg.v_set_v))
                        segs.append((k * per + read_t0, k * per + read_t1, wcfg.v_verify_v))
                lines += [f"Vp{j} p{j} 0 {_pwl(segs, wcfg.t_edge_s, t_stop)}",
                          f"Xm{j} p{j} m{j} rram params: "
                          f"{_rram_params(cfg, extra_s if mode == 'single' else extra_v)}",
                          f"Vwl{j} wl{j} 0 DC {wcfg.wl_frac_of(level) * vdd_v:.12g}",
                          f"Vmm{j} wl{j} g{j} DC 0",
                          f"Xa{j} m{j} g{j} 0 0 {NFET} W={cfg.w_um:.12g} L={cfg.l_um:.12g}"]
                cells.append((mode, level, copy))
                j += 1
    lines += [f".tran {wcfg.t_edge_s / 2:.12g} {t_stop:.12g} 0 {per / 20:.12g}", ".end"]
    return "\n".join(lines) + "\n", {"cells": cells, "read_times_s": read_times,
                                     "t_stop_s": t_stop}


def calibration_deck(cfg: ColumnConfig, wcfg: WriteConfig, *, vdd_v: float,
                     t_pulse_s: float, corner: str = "tt", temp_c: float = 27.0) -> str:
    """Nominal cell (no variation) at ``corner``/``temp_c`` under one long SET pulse: state
    trace ``v(xm0.w)``."""
    seg = [(0.0, t_pulse_s, wcfg.v_set_v)]
    return "\n".join([
        "* 1T1R write calibration (generated by characterization.crossbar)",
        *_models(cfg, corner), f".temp {temp_c:.12g}", ".options seed=1",
        f"Vp0 p0 0 {_pwl(seg, wcfg.t_edge_s, t_pulse_s * 1.2)}",
        f"Xm0 p0 m0 rram params: {_rram_params(cfg, {'w0': 0.0})}",
        f"Vwl0 wl0 0 DC {wcfg.wl_frac * vdd_v:.12g}",
        f"Xa0 m0 wl0 0 0 {NFET} W={cfg.w_um:.12g} L={cfg.l_um:.12g}",
        f".tran {wcfg.t_edge_s / 2:.12g} {t_pulse_s * 1.2:.12g} 0 {t_pulse_s / 400:.12g}",
        ".end"]) + "\n"
