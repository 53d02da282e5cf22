"""SAR ADC characterization: SPICE comparator Monte Carlo + behavioural SAR -> lookup tables.

One sweep point is one Monte-Carlo instance at one (process, vdd_v, temp_c): its comparator
is simulated in SPICE (sky130, mismatch drawn from the point's seed), its DAC capacitors are
drawn per resolution, and the behavioural SAR (``behavioural.SarInstance``) gives its
thresholds, DNL/INL, sine-fit ENOB, energy, conversion time and decision-error probability
for every resolution. The first ``validate.instances`` instances of each grid point are also
converted by the full transistor-level SAR in SPICE at each ``validate.bits`` resolution
(``validation.validate_refined``: selected code transitions by successive refinement, with
the method's own floor measured beside the error); the per-corner result is stored as the
tables ``adc/validation_rms_lsb`` and ``adc/validation_floor_lsb``. Energy per conversion is
stored by part (``ENERGY_PARTS``, sources in ``ENERGY_SOURCES``).
"""

from __future__ import annotations

import time
import tomllib
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from characterization.errors import ConfigError
from spicebridge.corners import ProcessCorner
from spicebridge.netlist import deck_hash

from ._netlists import (
    MISMATCH_DEVICES,
    ComparatorSizing,
    SwitchSizing,
    mismatch_source,
    read_sar_codes,
    read_sar_energy,
    sar_deck,
)
from .behavioural import SarInstance, draw_caps
from .comparator import (
    draw_mismatch,
    measure_comparator,
    noise_sigma_v,
    noise_spectrum,
    shared_engine,
)
from .convention import IDEAL_THRESHOLD_K_MINUS, THRESHOLD_CONVENTION
from .logic import dff_energy, sar_logic_energy_j
from .metrics import coherent_sine_input, dnl_inl_from_thresholds, sine_fit_enob
from .sampling import measure_sampling
from .validation import TARGET_RMS_LSB, validate_refined

PRESETS: dict[str, dict[str, Any]] = {
    # the same PVT grid as the crossbar presets (characterization/crossbar/run.py)
    "quick": {"process": ["tt", "ss", "ff"], "vdd_v": [1.8], "temp_c": [27.0, 85.0],
              "bits": [3, 4, 5, 6, 7, 8], "mc": 4,
              # 2 probes x 5 rounds: final bracket 2/243 LSB (floor ~0.0025 LSB) from 80
              # conversions per validation, against 2/125 LSB from 96 with 4 x 3
              "validate": {"instances": 1, "bits": [6, 8], "thresholds": 8, "probes": 2,
                           "rounds": 5}},
    "default": {"process": ["tt", "ss", "ff", "fs", "sf"], "vdd_v": [1.62, 1.8, 1.98],
                "temp_c": [-40.0, 27.0, 85.0, 125.0], "bits": [3, 4, 5, 6, 7, 8], "mc": 8,
                "validate": {"instances": 1, "bits": [4, 6, 8], "thresholds": 16,
                             "probes": 5, "rounds": 3}},
    "full": {"process": ["tt", "ss", "ff", "fs", "sf"], "vdd_v": [1.62, 1.8, 1.98],
             "temp_c": [-40.0, 27.0, 85.0, 125.0], "bits": [3, 4, 5, 6, 7, 8], "mc": 32,
             "validate": {"instances": 2, "bits": [3, 4, 5, 6, 7, 8], "thresholds": 32,
                          "probes": 5, "rounds": 3}},
}
"""Built-in sweeps. Common settings are in ``DEFAULTS``."""

DEFAULTS: dict[str, Any] = {
    "seed": 20260523,
    "vref_v": 1.0,
    "c_unit_f": 10e-15,
    "cap_sigma_unit_rel": 0.003,   # A_C = 0.95 %*sqrt(fF) MOM unit of 10 fF (assumption)
    "c_par_rel": 0.1,              # top-plate parasitic / DAC capacitance
    "switches": asdict(SwitchSizing()),  # sky130 sampling / bottom-plate switch widths
    "t_logic_s": 2e-10,            # SAR register + DAC driver delay per bit (XSPICE delays)
    "tclk_cmp_s": 4e-9,            # comparator testbench clock (= the SAR's: 2 ns evaluation)
    "sine_samples": 2048,
    "sine_cycles": 67,
    "sine_amplitude_rel": 0.45,    # amplitude / vref: -0.9 dBFS, keeps offsets from clipping
    "sizing": asdict(ComparatorSizing()),
}


def build_config(preset: str | None = None, config_file: str | Path | None = None
                 ) -> dict[str, Any]:
    """Settings of a run: ``DEFAULTS`` + a preset + a TOML file (``[adc]`` table or top level).

    Raises:
        ValueError: Unknown preset, unknown key, or a bad value (the message names the file).
    """
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    cfg = {**DEFAULTS, **PRESETS[preset or "quick"]}
    if config_file is not None:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: cannot read ADC config: {e}") from e
        data = data.get("adc", data)
        for k, v in data.items():
            if k not in cfg:
                raise ConfigError(f"{path}: unknown key {k!r}; known: {sorted(cfg)}")
            if isinstance(cfg[k], dict):
                if not isinstance(v, dict):
                    raise ConfigError(f"{path}: {k!r} must be a table ([adc.{k}]), got {v!r}")
                cfg[k] = {**cfg[k], **v}
            else:
                cfg[k] = v
    src = str(config_file) if config_file is not None else f"preset {preset or 'quick'!r}"
    _check_config(cfg, src)
    return cfg


_VALIDATE_KEYS = ("instances", "bits", "thresholds", "probes", "rounds")


def _num_list(cfg: dict[str, Any], key: str, src: str, lo: float, hi: float) -> list[float]:
    v = cfg[key]
    if not isinstance(v, list) or not v:
        raise ConfigError(f"{src}: {key} must be a non-empty list, got {v!r}")
    for x in v:
        if isinstance(x, bool) or not isinstance(x, int | float) or not lo <= x <= hi:
            raise ConfigError(f"{src}: {key} value {x!r} must be a number in [{lo}, {hi}]")
    return [float(x) for x in v]



def _check_sizing_table(src: str, key: str, table: Any, cls: type) -> None:
    """``[adc.<key>]`` holds only ``cls``'s fields, with values ``cls`` accepts.

    Raises:
        ConfigError: Not a table, an unknown key, or a value ``cls`` refuses.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{src}: {key} must be a table ([adc.{key}]), got {table!r}")
    known = sorted(asdict(cls()))
    bad = sorted(set(table) - set(known))
    if bad:
        raise ConfigError(f"{src}: unknown {key} key(s) {bad}; known: {known}")
    try:
        cls(**table)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{src}: {key}: {e}") from e

def _check_config(cfg: dict[str, Any], src: str) -> None:
    """Validate a merged configuration in place; errors name ``src`` and the key."""
    procs = cfg["process"]
    known = [c.value for c in ProcessCorner]
    if not isinstance(procs, list) or not procs or any(p not in known for p in procs):
        raise ConfigError(f"{src}: process must be a non-empty list of {known}, got {procs!r}")
    cfg["vdd_v"] = _num_list(cfg, "vdd_v", src, 0.9, 2.2)  # sky130 1.8 V devices
    cfg["temp_c"] = _num_list(cfg, "temp_c", src, -273.15, 200.0)
    bits = cfg["bits"]
    if (not isinstance(bits, list) or not bits
            or any(isinstance(b, bool) or not isinstance(b, int) or not 3 <= b <= 8
                   for b in bits)):
        raise ConfigError(f"{src}: bits must be a non-empty list of integers in 3..8, "
                         f"got {bits!r}")
    cfg["bits"] = sorted(set(bits))

    def integer(key: str, value: Any, lo: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ConfigError(f"{src}: {key} must be an integer >= {lo}, got {value!r}")
        return value

    def positive(key: str, value: Any, *, zero_ok: bool = False) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and (
            value >= 0 if zero_ok else value > 0)
        if not ok:
            raise ConfigError(f"{src}: {key} must be a number {'>=' if zero_ok else '>'} 0, "
                             f"got {value!r}")
        return float(value)

    integer("mc", cfg["mc"], 1)
    integer("seed", cfg["seed"], 0)
    for k in ("vref_v", "c_unit_f", "tclk_cmp_s"):
        positive(k, cfg[k])
    for k in ("cap_sigma_unit_rel", "c_par_rel", "t_logic_s"):
        positive(k, cfg[k], zero_ok=True)
    if cfg["vref_v"] > min(cfg["vdd_v"]):
        raise ConfigError(f"{src}: vref_v = {cfg['vref_v']} exceeds the lowest vdd_v "
                         f"{min(cfg['vdd_v'])}")
    n, cyc = integer("sine_samples", cfg["sine_samples"], 64), \
        integer("sine_cycles", cfg["sine_cycles"], 1)
    if np.gcd(n, cyc) != 1 or cyc >= n // 2:
        raise ConfigError(f"{src}: sine_cycles = {cyc} must be coprime with sine_samples = {n} "
                         "and below sine_samples / 2 (coherent sampling)")
    amp = positive("sine_amplitude_rel", cfg["sine_amplitude_rel"])
    if amp > 0.5:
        raise ConfigError(f"{src}: sine_amplitude_rel must be in (0, 0.5], got {amp!r}")
    for key, cls in (("sizing", ComparatorSizing), ("switches", SwitchSizing)):
        _check_sizing_table(src, key, cfg[key], cls)
    val = cfg["validate"]
    bad = sorted(set(val) - set(_VALIDATE_KEYS))
    if bad:
        raise ConfigError(f"{src}: unknown validate key(s) {bad}; known: {list(_VALIDATE_KEYS)}")
    inst = integer("validate.instances", val.get("instances", 0), 0)
    vb = val.get("bits", [6, 8])
    vb = [vb] if isinstance(vb, int) and not isinstance(vb, bool) else vb
    if (not isinstance(vb, list) or not vb
            or any(isinstance(b, bool) or not isinstance(b, int) for b in vb)):
        raise ConfigError(f"{src}: validate.bits must be a list of integers, got {vb!r}")
    if inst > 0 and any(b not in cfg["bits"] for b in vb):
        raise ConfigError(f"{src}: validate.bits = {vb} is not among bits {cfg['bits']}")
    val["bits"] = sorted(set(vb))
    val["thresholds"] = integer("validate.thresholds", val.get("thresholds", 12), 1)
    val["probes"] = integer("validate.probes", val.get("probes", 5), 2)
    val["rounds"] = integer("validate.rounds", val.get("rounds", 3), 1)
    val["instances"] = inst


def _ramp_thresholds(codes: np.ndarray, vin: np.ndarray, levels: int) -> np.ndarray:
    """Code-density transitions of a monotonic ramp: midpoint around each count."""
    order = np.argsort(vin)
    vin, codes = vin[order], codes[order]
    below = np.array([np.sum(codes < k) for k in range(1, levels)])
    below = np.clip(below, 1, vin.size - 1)
    return 0.5 * (vin[below - 1] + vin[below])


def validate_instance(coords: dict[str, Any], sizing: ComparatorSizing, dvt: dict[str, float],
                      inst: SarInstance, conversions_per_code: int, *, tclk_s: float = 4e-9
                      ) -> dict[str, Any]:
    """Full transistor-level SAR conversions of one instance vs its behavioural thresholds.

    Returns:
        ``rms_lsb``, ``max_lsb`` (SPICE - behavioural thresholds), the SPICE thresholds in LSB,
        the wall time, and the energy per conversion integrated in SPICE: ``ref_energy_j``
        (from vref, bottom-plate charge) next to the behavioural ``ref_energy_beh_j`` at the
        same inputs, and ``vdd_energy_j`` (comparator supply, ``decisions_per_conversion``
        = bits + 2 clocked decisions; the tables count ``bits`` decisions, clock gated).
    """
    bits = inst.bits
    levels = 2**bits
    lsb = inst.lsb_v
    conv = levels * conversions_per_code
    tclk = tclk_s
    deck = sar_deck(coords["process"], float(coords["vdd_v"]), float(coords["temp_c"]), sizing,
                    caps_f=list(inst.caps_f), c_dummy_f=inst.c_dummy_f, c_par_f=inst.c_par_f,
                    vref_v=inst.vref_v, conversions=conv, vin_lo_v=-0.5 * lsb,
                    vin_hi_v=inst.vref_v + 0.5 * lsb, tclk_s=tclk)
    t0 = time.perf_counter()
    circ = shared_engine().load(deck)
    for d in MISMATCH_DEVICES:
        circ.alter(mismatch_source("c", d), dvt[d])
    plot = circ.run()["tran1"]
    codes, vin = read_sar_codes(plot, bits, conv, tclk)
    t_spice = _ramp_thresholds(codes, vin, levels) / lsb
    t_beh = inst.thresholds_v() / lsb
    err = t_spice - t_beh
    e_ref, e_vdd = read_sar_energy(plot, list(inst.caps_f), inst.vref_v,
                                   float(coords["vdd_v"]), conv)
    return {"rms_lsb": float(np.sqrt(np.mean(err**2))), "max_lsb": float(np.max(np.abs(err))),
            "thresholds_lsb": t_spice, "wall_s": time.perf_counter() - t0,
            "ref_energy_j": e_ref, "ref_energy_beh_j": float(inst.reference_energy_j(vin).mean()),
            "vdd_energy_j": e_vdd, "decisions_per_conversion": bits + 2,
            "deck_sha256": deck_hash(deck)}


def measure_point(point: Any) -> dict[str, Any]:
    """Sweep point function: one Monte-Carlo instance at one PVT point (see module docs)."""
    ctx = point.context
    coords = point.coords
    process, vdd_v, temp_c = str(coords["process"]), float(coords["vdd_v"]), \
        float(coords["temp_c"])
    bits_list = [int(b) for b in ctx["bits"]]
    max_codes = 2 ** max(bits_list)
    sizing = ComparatorSizing(**ctx["sizing"])
    # Mismatch (comparator devices, DAC capacitors) is a property of the die: instance ``mc``
    # is the same die at every process/vdd/temp point (common random numbers), seeded from
    # (root seed, mc). Comparator noise in the sine test is drawn from the point's own seed.
    ss_die = np.random.SeedSequence([int(ctx["mismatch_seed"]), int(point.mc)])
    rng_cmp, rng_caps = (np.random.default_rng(s) for s in ss_die.spawn(2))
    rng_noise = point.rng()
    dvt = draw_mismatch(sizing, rng_cmp)
    t_stage = time.perf_counter()
    # kickback onto the floating top plate: measured with the smallest DAC in series
    c_kick = (1 + ctx["c_par_rel"]) * 2 ** min(bits_list) * ctx["c_unit_f"]
    cmp = measure_comparator(process, vdd_v, temp_c, sizing, dvt, tclk_s=ctx["tclk_cmp_s"],
                             c_kick_f=c_kick)
    f, dens = noise_spectrum(process, vdd_v, temp_c, sizing)
    noise_v = noise_sigma_v(f, dens, cmp.t_int_s)
    e_dff = dff_energy(process, vdd_v, temp_c, tclk_s=ctx["tclk_cmp_s"])
    switches = SwitchSizing(**ctx["switches"])
    t_cmp = time.perf_counter() - t_stage
    t_stage = time.perf_counter()
    # sampling front end (sky130 switches, nominal capacitors): one deck per process/supply
    samp = measure_sampling(process, vdd_v, temp_c, bits_list, c_unit_f=ctx["c_unit_f"],
                            c_par_rel=ctx["c_par_rel"], vref_v=float(ctx["vref_v"]),
                            sw=switches, tclk_s=ctx["tclk_cmp_s"],
                            simulate_bits=list(ctx.get("validate", {}).get("bits", [])))
    t_samp = time.perf_counter() - t_stage
    t_stage = time.perf_counter()
    nb = len(bits_list)
    out: dict[str, Any] = {
        "thresholds_lsb": np.full((nb, max_codes - 1), np.nan),
        "dnl_lsb": np.full((nb, max_codes - 1), np.nan),
        "inl_lsb": np.full((nb, max_codes - 1), np.nan),
        "decision_error": np.full((nb, max_codes), np.nan),
        "offset_lsb": np.zeros(nb), "noise_lsb": np.zeros(nb), "enob": np.zeros(nb),
        "sinad_db": np.zeros(nb), "energy_j": np.zeros(nb), "conversion_time_s": np.zeros(nb),
        "cmp_offset_v": cmp.offset_v, "cmp_noise_v": noise_v, "cmp_delay_s": cmp.delay_s,
        "cmp_energy_j": cmp.energy_j, "cmp_t_int_s": cmp.t_int_s, "cmp_kick_q_c": cmp.kick_q_c,
        "energy_breakdown_j": np.full((nb, len(ENERGY_PARTS)), np.nan),
        **{m: np.zeros(nb) for m in _SAMPLING_MEASURES},
        **{m: np.full(len(ctx.get("validate", {}).get("bits", [])), np.nan)
           for m in _VALIDATION_MEASURES},
    }
    vref = float(ctx["vref_v"])
    insts = {}
    for j, bits in enumerate(bits_list):
        levels = 2**bits
        caps, dummy = draw_caps(bits, ctx["c_unit_f"], ctx["cap_sigma_unit_rel"], rng_caps)
        # cmp=1 when v(vcm) - v(top) > offset; the comparator's inputs are (top, vcm), and
        # its testbench flip level is in v(inp) - v(inn) = v(top) - v(vcm)
        c_par = ctx["c_par_rel"] * float(caps.sum() + dummy)
        c_t = float(caps.sum() + dummy) + c_par
        sr = samp[bits]
        inst = SarInstance(bits, caps, dummy, c_par, vref, offset_v=-cmp.offset_at_v(c_t),
                           noise_v=noise_v, pedestal_v=sr.pedestal_v, k_in=sr.k_in,
                           k_dac=sr.k_dac, sample_noise_v=sr.noise_in_v)
        insts[bits] = inst
        lsb = inst.lsb_v
        out["sampling_pedestal_lsb"][j] = (sr.pedestal_v * inst.c_t
                                           / (sr.k_in * inst.c_s) / lsb)
        out["sampling_gain_error"][j] = sr.gain_error
        out["sampling_noise_lsb"][j] = sr.noise_in_v / lsb
        out["sampling_ktc_ratio"][j] = sr.noise_top_v / sr.ktc_v
        out["sampling_tau_track_s"][j] = sr.tau_track_s
        out["sampling_tau_dac_s"][j] = sr.tau_dac_s
        out["sampling_fit_rms_lsb"][j] = sr.fit_rms_v * inst.c_t / (sr.k_in * inst.c_s) / lsb
        t = inst.thresholds_v() / lsb
        dnl, inl = dnl_inl_from_thresholds(t)
        out["thresholds_lsb"][j, : levels - 1] = t
        out["dnl_lsb"][j, : levels - 2] = dnl
        out["inl_lsb"][j, : levels - 1] = inl
        out["decision_error"][j, :levels] = inst.decision_error()
        gain = inst.c_t / (inst.k_in * inst.c_s)
        out["offset_lsb"][j] = (inst.offset_v + inst.pedestal_v) * gain / lsb
        # comparator noise (per decision, referred to the input) and the sampled kT/C noise
        # (once per conversion), in quadrature: the simulator draws one input-referred sigma
        out["noise_lsb"][j] = float(np.hypot(noise_v * gain, sr.noise_in_v)) / lsb
        vin = coherent_sine_input(ctx["sine_samples"], ctx["sine_cycles"],
                                  ctx["sine_amplitude_rel"] * vref, vref / 2)
        fit = sine_fit_enob(inst.convert(vin, rng_noise), bits,
                            freq_cycles=float(ctx["sine_cycles"]))
        out["enob"][j], out["sinad_db"][j] = fit.enob, fit.sinad_db
        # energy per conversion, by part (ENERGY_PARTS; sources in ENERGY_SOURCES)
        u = np.linspace(0, vref, 257)
        e_parts = {
            "comparator": bits * cmp.energy_j,
            "dac_reference": float(inst.reference_energy_j(u).mean()),
            "sar_logic": sar_logic_energy_j(bits, *e_dff),
            "sampling_drive": sr.e_drive_j,
        }
        out["energy_breakdown_j"][j] = [e_parts[p] for p in ENERGY_PARTS]
        out["energy_j"][j] = float(sum(e_parts.values()))
        # settling to half an LSB with the SPICE time constants (tracking, DAC drivers)
        n_tau = np.log(2.0 ** (bits + 1))
        out["conversion_time_s"][j] = (n_tau * sr.tau_track_s + bits * (
            cmp.delay_s + n_tau * sr.tau_dac_s + ctx["t_logic_s"]))
    out["stage_comparator_s"] = t_cmp
    out["stage_sampling_s"] = t_samp
    out["stage_behavioural_s"] = time.perf_counter() - t_stage
    t_stage = time.perf_counter()
    val = ctx.get("validate", {})
    if point.mc < int(val.get("instances", 0)):
        for jv, vb in enumerate(val.get("bits", [])):
            if vb not in insts:
                continue
            v = validate_refined(coords, sizing, dvt, insts[vb],
                                 thresholds=int(val["thresholds"]), probes=int(val["probes"]),
                                 rounds=int(val["rounds"]),
                                 seed=int(ctx["mismatch_seed"]) + int(point.mc),
                                 switches=switches)
            for key, src in (("validation_rms_lsb", "rms_lsb"),
                             ("validation_max_lsb", "max_lsb"),
                             ("validation_floor_lsb", "floor_rms_lsb"),
                             ("validation_bracket_lsb", "bracket_rms_lsb"),
                             ("validation_ref_energy_j", "ref_energy_j"),
                             ("validation_ref_energy_beh_j", "ref_energy_beh_j"),
                             ("validation_vdd_energy_j", "vdd_energy_j"),
                             ("validation_drive_energy_j", "drive_energy_j")):
                out[key][jv] = v[src]
    out["stage_validation_s"] = time.perf_counter() - t_stage
    return out


ENERGY_PARTS = ("comparator", "dac_reference", "sar_logic", "sampling_drive")
"""Parts of ``adc/energy_breakdown_j`` (its ``part`` axis); they sum to ``adc/energy_j``."""

ENERGY_SOURCES = {
    "comparator": "SPICE: sky130 StrongARM testbench supply current, vdd * integral(i(vdd)) "
                  "per decision (Monte-Carlo instance), x bits decisions (clock-gated)",
    "dac_reference": "formula: closed-form charge drawn from vref by the binary CDAC "
                     "(behavioural.SarInstance.reference_energy_j, mean over a uniform input; "
                     "ideal reference, no buffer loss: assumption), checked against the SPICE "
                     "SAR's bottom-plate charge (adc/records/validation_ref_energy_j)",
    "sar_logic": "SPICE: supply current of a transistor-level sky130 static master-slave DFF "
                 "(netlists/adc/dff.cir: energy per clock event and per q toggle, "
                 "characterization/adc/logic.py) x the SAR register's counts per conversion "
                 "((bits+2)(2 bits+2) clock events, 4 bits+4 toggles: an estimate of the "
                 "activity); combinational gates not included (the SPICE SAR's logic is "
                 "XSPICE digital, which draws no supply current)",
    "sampling_drive": "SPICE: sampler testbench (characterization/adc/sampling.py, "
                      "_netlists.sampler_deck: sky130 top-plate transmission gate and "
                      "bottom-plate switches of _netlists.frontend_lines, nominal capacitors) "
                      "per sample: input-driver charge x vdd (a driver on vdd that only "
                      "sources: assumption) + gate charge of the sampling switches x vdd + "
                      "bottom-plate driver gate charge per switching event x vdd x the SAR's "
                      "events per conversion (sampling.DAC_GATE_EVENTS: an estimate of the "
                      "activity); gate drivers themselves ideal (their own energy not included)",
}
"""Where each energy part comes from (stored on the table as ``source_<part>``)."""


_SCALAR_MEASURES = {"cmp_offset_v": "V", "cmp_noise_v": "V", "cmp_delay_s": "s",
                    "cmp_energy_j": "J", "cmp_t_int_s": "s", "cmp_kick_q_c": "C",
                    # wall time of each stage of the point (profiling; 0 when cached)
                    "stage_comparator_s": "s", "stage_sampling_s": "s",
                    "stage_behavioural_s": "s", "stage_validation_s": "s"}
_VALIDATION_MEASURES = {"validation_rms_lsb": "LSB", "validation_max_lsb": "LSB",
                        "validation_floor_lsb": "LSB", "validation_bracket_lsb": "LSB",
                        "validation_ref_energy_j": "J", "validation_ref_energy_beh_j": "J",
                        "validation_vdd_energy_j": "J", "validation_drive_energy_j": "J"}
_SAMPLING_MEASURES = {
    "sampling_pedestal_lsb": ("LSB", "sampling-switch charge injection and feed-through: the "
                              "held residue's offset referred to the input"),
    "sampling_gain_error": ("1", "input gain / DAC gain - 1 of the held residue"),
    "sampling_noise_lsb": ("LSB", "sampled (kT/C) noise sigma referred to the input (.noise "
                           "of the sampling phase, frozen top-plate charge)"),
    "sampling_ktc_ratio": ("1", "sampled noise / sqrt(kT/C_T) of the nominal capacitors "
                           "(the physical floor of an RC sampler; BSIM4 channel noise)"),
    "sampling_tau_track_s": ("s", "tracking time constant while sampling (top-plate charge)"),
    "sampling_tau_dac_s": ("s", "bottom-plate driver time constant (held residue)"),
    "sampling_fit_rms_lsb": ("LSB", "RMS residual of the linear residue fit (nonlinearity and "
                             "memory of the front end), referred to the input"),
}
"""Sampling front-end figures per resolution (``sampling.py``), stored as
``adc/sampling/<name without 'sampling_'>``."""

_BITS_MEASURES = {"offset_lsb": "LSB", "noise_lsb": "LSB", "enob": "bits", "sinad_db": "dB",
                  "energy_j": "J", "conversion_time_s": "s"}
_CODE_MEASURES = {"thresholds_lsb": "LSB", "dnl_lsb": "LSB", "inl_lsb": "LSB"}


def make_spec(cfg: dict[str, Any]):
    """The ``SweepSpec`` of a configuration (``build_config``)."""
    from characterization.sweep import SweepSpec

    bits = cfg["bits"]
    codes = list(range(1, 2 ** max(bits)))
    md = {m: {"bits": bits, "code": codes} for m in _CODE_MEASURES}
    md["decision_error"] = {"bits": bits, "code": list(range(2 ** max(bits)))}
    md["energy_breakdown_j"] = {"bits": bits, "part": list(ENERGY_PARTS)}
    md |= {m: {"bits": list(cfg["validate"]["bits"])} for m in _VALIDATION_MEASURES}
    md |= {m: {"bits": bits} for m in (*_BITS_MEASURES, *_SAMPLING_MEASURES)}
    measures = {**_CODE_MEASURES, "decision_error": "1", "energy_breakdown_j": "J",
                **_BITS_MEASURES, **{m: u for m, (u, _) in _SAMPLING_MEASURES.items()},
                **_SCALAR_MEASURES, **_VALIDATION_MEASURES}
    ctx = {k: v for k, v in cfg.items() if k not in ("process", "vdd_v", "temp_c", "mc", "seed")}
    ctx["mismatch_seed"] = int(cfg["seed"])
    return SweepSpec(
        name="adc_sar", axes={"process": list(cfg["process"]), "vdd_v": list(cfg["vdd_v"]),
                              "temp_c": list(cfg["temp_c"])},
        point_fn=measure_point, measures=measures, mc=int(cfg["mc"]), seed=int(cfg["seed"]),
        measure_dims=md, context=ctx,
        axis_units={"process": "1", "vdd_v": "V", "temp_c": "degC"},
        provenance={"netlist": "netlists/adc/strongarm.cir + characterization/adc/_netlists.py"})


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    """Mean ignoring NaN (failed points, codes beyond 2^bits), NaN where all are NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def contract_tables(sweep_tables: dict[str, Any], cfg: dict[str, Any]) -> list[Any]:
    """ADC contract tables (leading dims process, vdd_v, temp_c, bits) from the sweep tables."""
    from characterization.lookup import Table

    base = sweep_tables["thresholds_lsb"]
    lead = ("process", "vdd_v", "temp_c")
    coords = {d: base.coords[d] for d in lead}
    cu = {"process": "1", "vdd_v": "V", "temp_c": "degC", "bits": "1", "instance": "1",
          "code": "1"}
    attrs = {"vref_v": float(cfg["vref_v"]), "full_scale_v": float(cfg["vref_v"]),
             "threshold_convention": THRESHOLD_CONVENTION,
             "ideal_threshold_k_minus": IDEAL_THRESHOLD_K_MINUS}
    bits = np.asarray(cfg["bits"])
    out = []

    def tab(name, data, dims, units, extra_coords, description):
        c = {**coords, "bits": bits, **extra_coords}
        out.append(Table(name, data, (*lead, "bits", *dims), {d: c[d] for d in
                                                             (*lead, "bits", *dims)}, units,
                         {d: cu[d] for d in (*lead, "bits", *dims)},
                         {**attrs, "description": description}))

    # sweep dims: (process, vdd_v, temp_c, mc, bits, code) -> (..., bits, instance, code)
    inst = np.arange(base.shape[3])
    for src, name, desc in (("thresholds_lsb", "adc/thresholds", "transition level k (between "
                             "codes k-1 and k) of each Monte-Carlo instance"),
                            ("dnl_lsb", "adc/dnl", "DNL of code k (endpoint line), NaN beyond "
                             "2^bits-2"),
                            ("inl_lsb", "adc/inl", "INL at transition k (endpoint line)")):
        t = sweep_tables[src]
        tab(name, np.moveaxis(t.data, 3, 4), ("instance", "code"), "LSB",
            {"instance": inst, "code": t.coords["code"]}, desc)
    off = sweep_tables["offset_lsb"]
    tab("adc/offset_lsb", np.moveaxis(off.data, 3, 4), ("instance",), "LSB",
        {"instance": inst}, "offset referred to the ADC input, per instance: comparator "
        "(SPICE Monte Carlo, with kickback) + sampling-switch pedestal "
        "(adc/sampling/pedestal_lsb)")
    for src, name, units, desc in (
            ("noise_lsb", "adc/noise_lsb", "LSB", "input-referred noise sigma: comparator "
             "(.noise at the integration phase, integrate-and-dump weighted) and sampled "
             "kT/C noise (adc/sampling/noise_lsb) in quadrature"),
            ("enob", "adc/enob", "bits", "mean over instances of the sine-fit ENOB "
             "(IEEE 1241 four-parameter fit, low-resolution bias removed)"),
            ("sinad_db", "adc/sinad_db", "dB", "mean over instances of the sine-fit SINAD"),
            ("energy_j", "adc/energy_j", "J", "energy per conversion, mean over instances: "
             "the sum over part of adc/energy_breakdown_j (comparator, DAC reference, SAR "
             "logic, sampling drive)"),
            ("conversion_time_s", "adc/conversion_time_s", "s", "sampling settling + bits x "
             "(comparator delay at 1 mV, SPICE + DAC settling to 0.5 LSB + logic)")):
        tab(name, _nanmean(sweep_tables[src].data, axis=3), (), units, {}, desc)
    for src, (units, desc) in _SAMPLING_MEASURES.items():
        tab(f"adc/sampling/{src.removeprefix('sampling_')}",
            _nanmean(sweep_tables[src].data, axis=3), (), units, {},
            f"{desc}; SPICE sampler testbench (characterization/adc/sampling.py, nominal "
            f"capacitors); resolutions not simulated are interpolated (attribute "
            f"simulated_bits)")
        out[-1].attrs["simulated_bits"] = np.asarray(
            sorted({min(cfg["bits"]), max(cfg["bits"]),
                    *(b for b in cfg["validate"]["bits"] if b in cfg["bits"])}))
    eb = sweep_tables["energy_breakdown_j"]
    cu["part"] = "1"
    tab("adc/energy_breakdown_j", _nanmean(eb.data, axis=3), ("part",), "J",
        {"part": np.asarray(ENERGY_PARTS)}, "energy per conversion by part, mean over "
        "instances; sums over part to adc/energy_j; the source of each part is the attribute "
        "source_<part>")
    out[-1].attrs.update({f"source_{p}": ENERGY_SOURCES[p] for p in ENERGY_PARTS})
    de = sweep_tables["decision_error"]
    tab("adc/designer/decision_error", _nanmean(de.data, axis=3), ("code",), "1",
        {"code": de.coords["code"]}, "DESIGNER-ONLY figure, not read by the simulator (which "
        "draws the comparator noise adc/noise_lsb itself; using both would count it twice): "
        "P(output code != the instance's noise-free code) from comparator noise, input "
        "uniform over the code's bin, mean over instances")
    # validation per corner: RMS over the validated instances, bits = the validated ones
    vbits = np.asarray(cfg["validate"]["bits"])
    for src, name, desc in (
            ("validation_rms_lsb", "adc/validation_rms_lsb", "RMS of transistor-level SAR "
             "minus behavioural code-transition thresholds of the same die (selected "
             "transitions, successive refinement; RMS over validated instances)"),
            ("validation_floor_lsb", "adc/validation_floor_lsb", "floor of the validation "
             "method: the same refinement run on the behavioural SAR against its exact "
             "thresholds (RMS over validated instances)"),
            ("validation_max_lsb", "adc/validation_max_lsb", "largest |SPICE - behavioural| "
             "threshold over the validated transitions and instances")):
        d = sweep_tables[src].data  # (process, vdd_v, temp_c, mc, bits)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            red = (np.nanmax(d, axis=3) if src.endswith("max_lsb")
                   else np.sqrt(np.nanmean(d**2, axis=3)))
        out.append(Table(name, red, (*lead, "bits"), {**coords, "bits": vbits}, "LSB",
                         {d_: cu[d_] for d_ in (*lead, "bits")},
                         {**attrs, "description": desc, "target_rms_lsb": TARGET_RMS_LSB}))
    # comparator and validation records (not per bits)
    for src, units in _SCALAR_MEASURES.items():
        t = sweep_tables[src]
        out.append(Table(f"adc/records/{src}", t.data, (*lead, "instance"),
                         {**coords, "instance": inst}, units,
                         {"process": "1", "vdd_v": "V", "temp_c": "degC", "instance": "1"},
                         {"description": f"per-instance {src} (NaN: not run / failed)"}))
    for src, units in _VALIDATION_MEASURES.items():
        t = sweep_tables[src]
        out.append(Table(f"adc/records/{src}", t.data, (*lead, "instance", "bits"),
                         {**coords, "instance": inst, "bits": vbits}, units,
                         {"process": "1", "vdd_v": "V", "temp_c": "degC", "instance": "1",
                          "bits": "1"},
                         {"description": f"per-instance {src} (NaN: not validated / failed)"}))
    return out


def validation_summary(sweep_tables: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """Behavioural vs full-SPICE thresholds, over every validated instance."""
    rms = sweep_tables["validation_rms_lsb"].data  # (process, vdd_v, temp_c, mc, bits)
    mx = sweep_tables["validation_max_lsb"].data
    fl = sweep_tables["validation_floor_lsb"].data
    ok = np.isfinite(rms)
    vbits = list(cfg["validate"]["bits"])
    procs = [str(p) for p in sweep_tables["validation_rms_lsb"].coords["process"]]
    vdds = [float(v) for v in sweep_tables["validation_rms_lsb"].coords["vdd_v"]]
    temps = [float(v) for v in sweep_tables["validation_rms_lsb"].coords["temp_c"]]

    def q(a: np.ndarray) -> float:
        a = a[np.isfinite(a)]
        return float(np.sqrt(np.mean(a**2))) if a.size else float("nan")

    per_bits = {str(b): {"rms_lsb": q(rms[..., j]), "floor_rms_lsb": q(fl[..., j]),
                         "max_lsb": float(np.nanmax(mx[..., j])) if np.isfinite(mx[..., j]).any()
                         else float("nan")} for j, b in enumerate(vbits)}
    above = []
    for i, p in enumerate(procs):
        for jv, v in enumerate(vdds):
            for k, t in enumerate(temps):
                for j, b in enumerate(vbits):
                    r = q(rms[i, jv, k, :, j])
                    if np.isfinite(r) and r > TARGET_RMS_LSB:
                        above.append({"process": p, "vdd_v": v, "temp_c": t, "bits": int(b),
                                      "rms_lsb": r})
    rms_all = q(rms)
    return {"bits": vbits, "instances": int(ok.any(axis=-1).sum()),
            "method": "successive refinement of selected code transitions "
                      "(characterization/adc/validation.py)",
            "thresholds": int(cfg["validate"]["thresholds"]),
            "probes": int(cfg["validate"]["probes"]), "rounds": int(cfg["validate"]["rounds"]),
            "rms_lsb": rms_all, "floor_rms_lsb": q(fl),
            "max_lsb": float(np.nanmax(mx)) if ok.any() else float("nan"),
            "per_bits": per_bits, "target_rms_lsb": TARGET_RMS_LSB,
            "above_target": above, "passed": bool(ok.any() and not above)}


def run_characterization(cfg: dict[str, Any], out: str | Path, *, jobs: int = 1,
                         quiet: bool = False, plots_dir: str | Path | None = None,
                         dask: str | None = None) -> dict[str, Any]:
    """Run the ADC characterization and write the lookup file ``out``.

    The raw sweep (dims ``(*axes, mc, ...)``, resumable) goes to ``<out>.sweep.h5``; ``out``
    gets the contract tables, the comparator records, the validation record in its
    provenance and the sweep's failures.

    Returns:
        Summary: path, wall time, failures, validation.
    """
    from characterization.lookup import write_lookup
    from characterization.sweep import run_sweep

    out = Path(out)
    t0 = time.perf_counter()
    spec = make_spec(cfg)
    res = run_sweep(spec, out.with_suffix(".sweep.h5"), jobs=jobs, quiet=quiet, dask=dask)
    tables = contract_tables(res.tables, cfg)
    validation = validation_summary(res.tables, cfg)
    prov = {**res.provenance, "adc": {"config": cfg, "validation": validation,
                                      "threshold_convention": THRESHOLD_CONVENTION,
                                      "ideal_threshold_k_minus": IDEAL_THRESHOLD_K_MINUS}}
    write_lookup(out, tables, prov, res.failures)
    summary = {"path": str(out), "wall_s": time.perf_counter() - t0,
               "n_points": len(spec), "n_failed": len(res.failures), "validation": validation}
    if plots_dir is not None:
        from .plots import write_plots

        summary["plots"] = [str(p) for p in write_plots(out, plots_dir)]
    return summary
