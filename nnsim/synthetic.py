"""Small parametric lookup files in the real format, for tests, demos and benchmarks.

These are NOT circuit data: every number comes from a closed-form stand-in (documented per
table below) drawn from a recorded seed. They follow the crossbar and ADC table contracts of
issues 4 and 5 exactly and are written with the real writer
(``characterization.lookup.write_lookup``), so ``HardwareModel.from_lookup`` reads them the
way it reads characterized files. Use real characterization files for results.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from characterization.lookup import Table, write_lookup
from characterization.lookup.names import (
    ADC_CONVERSION_TIME_S,
    ADC_ENERGY_J,
    ADC_ENOB,
    ADC_NOISE_LSB,
    ADC_OFFSET_LSB,
    ADC_THRESHOLDS,
    CROSSBAR_READ_NOISE,
    CROSSBAR_READ_TRANSFER,
    CROSSBAR_WRITE_NOISE,
    CROSSBAR_WRITE_NOISE_FIT,
    CROSSBAR_WRITE_NOISE_SAMPLES,
    DIM_BITS,
    DIM_CODE,
    PVT,
    PVT_UNITS,
)

PROCESSES = ("tt", "ss", "ff")
VDD_V = (1.62, 1.8, 1.98)
TEMP_C = (-40.0, 27.0, 85.0)
G_MIN_S, G_MAX_S, V_READ_V, ROWS, LEVELS = 1e-7, 1e-5, 0.2, 64, 4
_PVT = PVT
_PVT_UNITS = PVT_UNITS


def _corner_factor(process: str, vdd_v: float, temp_c: float) -> float:
    """A >= 1 factor that worsens noise at slow corners, low supply and high temperature."""
    p = {"tt": 1.0, "ss": 1.3, "ff": 0.9, "fs": 1.1, "sf": 1.1}[process]
    return p * (1.8 / vdd_v) * (1.0 + 0.002 * (temp_c - 27.0))


def write_synthetic_crossbar(path: str | Path, *, seed: int = 0, write_k: float = 0.02,
                             n_samples: int = 400) -> Path:
    """Crossbar tables (read transfer, read noise, write noise stats/samples/fit).

    Stand-ins: transfer ratio ``1 - 0.03 f i_rel`` (IR drop), spread ``0.002 f``; read noise
    ``sigma = 2e-3 f I + 1 nA``; programmed conductances
    ``G + k_mode f sqrt((G-Gmin)(Gmax-Gmin)) N(0,1)`` with ``k_single = write_k``,
    ``k_verify = write_k / 4`` (f = corner factor).
    """
    rng = np.random.default_rng(seed)
    shape = (len(PROCESSES), len(VDD_V), len(TEMP_C))
    i_rel = np.linspace(0.0, 1.0, 11)
    i_full_a = ROWS * G_MAX_S * V_READ_V
    i_col = np.linspace(0.0, i_full_a, 9)
    levels = np.arange(LEVELS)
    modes = np.asarray(["single", "verify"])
    transfer = np.zeros((*shape, i_rel.size, 2))
    noise = np.zeros((*shape, i_col.size))
    samples = np.zeros((*shape, 2, LEVELS, n_samples))
    stats = np.zeros((*shape, 2, LEVELS, 6))
    fit = np.zeros((*shape, 2, 3))
    dg = G_MAX_S - G_MIN_S
    targets = G_MIN_S + levels * dg / (LEVELS - 1)
    for idx in np.ndindex(shape):
        f = _corner_factor(PROCESSES[idx[0]], VDD_V[idx[1]], TEMP_C[idx[2]])
        transfer[(*idx, slice(None), 0)] = 1.0 - 0.03 * f * i_rel
        transfer[(*idx, slice(None), 1)] = 0.002 * f
        noise[idx] = 2e-3 * f * i_col + 1e-9
        for m, k in enumerate((write_k, write_k / 4)):
            ks = k * f
            g = targets[:, None] + ks * np.sqrt((targets[:, None] - G_MIN_S) * dg) \
                * rng.standard_normal((LEVELS, n_samples))
            g = np.maximum(g, 0.0)
            samples[(*idx, m)] = g
            stats[(*idx, m)] = np.stack(
                [targets, g.mean(1), g.std(1), *np.quantile(g, [0.01, 0.5, 0.99], axis=1)], 1)
            fit[(*idx, m)] = (ks, ks * 0.02, 0.99)
    base = {d: np.asarray(v) for d, v in zip(_PVT, (PROCESSES, VDD_V, TEMP_C), strict=True)}
    attrs = dict(g_min_s=G_MIN_S, g_max_s=G_MAX_S, levels=LEVELS, rows=ROWS,
                 v_read_v=V_READ_V, description="synthetic stand-in, not circuit data")
    stat_w = np.asarray(["target_s", "mean_s", "std_s", "q01_s", "q50_s", "q99_s"])
    tables = [
        Table(CROSSBAR_READ_TRANSFER, transfer, (*_PVT, "i_ideal_rel", "stat"),
              dict(base, i_ideal_rel=i_rel, stat=np.asarray(["mean_ratio", "std_ratio"])), "1",
              dict(_PVT_UNITS, i_ideal_rel="1"), attrs),
        Table(CROSSBAR_READ_NOISE, noise, (*_PVT, "i_col_a"), dict(base, i_col_a=i_col), "A",
              dict(_PVT_UNITS, i_col_a="A"), attrs),
        Table(CROSSBAR_WRITE_NOISE, stats, (*_PVT, "mode", "level", "stat"),
              dict(base, mode=modes, level=levels, stat=stat_w), "S", dict(_PVT_UNITS), attrs),
        Table(CROSSBAR_WRITE_NOISE_SAMPLES, samples, (*_PVT, "mode", "level", "sample"),
              dict(base, mode=modes, level=levels), "S", dict(_PVT_UNITS), attrs),
        Table(CROSSBAR_WRITE_NOISE_FIT, fit, (*_PVT, "mode", "stat"),
              dict(base, mode=modes, stat=np.asarray(["k", "k_stderr", "r2"])), "1",
              dict(_PVT_UNITS), attrs),
    ]
    return write_lookup(path, tables, {"generator": "nnsim.synthetic", "seed": seed,
                                       "write_k": write_k})


def write_synthetic_adc(path: str | Path, *, seed: int = 0, bits: tuple[int, ...] = (4, 6, 8),
                        instances: int = 8, dnl_lsb: float = 0.15, offset_lsb: float = 0.3,
                        noise_lsb: float = 0.2) -> Path:
    """ADC tables: thresholds per Monte-Carlo instance (ideal convention ``k - 0.5``), offset,
    noise, energy, conversion time, ENOB.

    Stand-ins: threshold ``k - 0.5 + offset_i + cumulative DNL`` (DNL ~ N(0, dnl_lsb) per
    code, re-centred), input-referred noise ``noise_lsb f``, energy ``50 fJ * 2^bits``.
    """
    rng = np.random.default_rng(seed)
    max_code = 2 ** max(bits) - 1
    shape = (len(PROCESSES), len(VDD_V), len(TEMP_C), len(bits))
    th = np.full((*shape, instances, max_code), np.nan)
    off = np.zeros((*shape, instances))
    noise = np.zeros(shape)
    energy = np.zeros(shape)
    tconv = np.zeros(shape)
    enob = np.zeros(shape)
    for idx in np.ndindex(shape):
        f = _corner_factor(PROCESSES[idx[0]], VDD_V[idx[1]], TEMP_C[idx[2]])
        b = bits[idx[3]]
        n = 2 ** b - 1
        o = offset_lsb * f * rng.standard_normal(instances)
        dnl = dnl_lsb * f * rng.standard_normal((instances, n))
        steps = np.maximum(1.0 + dnl - dnl.mean(1, keepdims=True), 0.05)
        t = np.cumsum(steps, 1) - steps[:, :1] + 0.5 + o[:, None]
        th[(*idx, slice(None), slice(0, n))] = t
        off[idx] = o
        noise[idx] = noise_lsb * f
        energy[idx] = 50e-15 * 2 ** b * (VDD_V[idx[1]] / 1.8) ** 2
        tconv[idx] = 2e-9 * (b + 1) * f
        enob[idx] = b - 0.3 * f
    dims = (*_PVT, "bits")
    base = {d: np.asarray(v) for d, v in zip(_PVT, (PROCESSES, VDD_V, TEMP_C), strict=True)}
    base["bits"] = np.asarray(bits)
    cu = dict(_PVT_UNITS, bits="bit")
    attrs = dict(vref_v=0.9, full_scale_v=0.9, threshold_convention="ideal transition k-0.5",
                 ideal_threshold_k_minus=0.5,
                 description="synthetic stand-in, not circuit data")
    tables = [
        Table(ADC_THRESHOLDS, th, (*dims, "instance", "code"),
              dict(base, code=np.arange(1, max_code + 1)), "LSB", cu, attrs)
        .with_ragged(DIM_CODE, DIM_BITS, {b: 2**b - 1 for b in bits}),  # padding, not NaN
        Table(ADC_OFFSET_LSB, off, (*dims, "instance"), base, "LSB", cu, attrs),
        Table(ADC_NOISE_LSB, noise, dims, base, "LSB", cu, attrs),
        Table(ADC_ENERGY_J, energy, dims, base, "J", cu, attrs),
        Table(ADC_CONVERSION_TIME_S, tconv, dims, base, "s", cu, attrs),
        Table(ADC_ENOB, enob, dims, base, "bits", cu, attrs),
    ]
    return write_lookup(path, tables, {"generator": "nnsim.synthetic", "seed": seed})
