"""Make the example measurement CSVs from the models with known parameters plus noise.

Run: ``.venv/bin/python examples/fitting/make_examples.py`` (writes next to this script).
The true parameters and the noise seed are written into each CSV's ``#`` header. The RRAM
records come from netlists/rram/rram.lib; the transistor curves (``nfet/``) from sky130
nfet_01v8 with a threshold shift and a mobility multiplier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from characterization.fitting.measurement import Measurement, write_measurement_csv
from characterization.fitting.memristor import simulate_memristor
from characterization.fitting.netlist_fit import load_fit_config
from characterization.fitting.spice_fit import simulate_curves

TRUE = {"ron": 1.2e5, "roff": 8e6, "vset": 0.9, "vreset": -1.1}
"""The 'device' the examples were measured on (rram.lib defaults: 1e5, 1e7, 1.0, -1.0)."""
SEED = 20261123
NOISE_REL = 0.02      # 2 % of reading
NOISE_ABS_A = 5e-11   # plus 50 pA
NFET_TRUE = {"delvto": 0.03, "mulu0": 0.9}
"""The example transistor: +30 mV threshold, 90 % mobility against sky130 tt."""


def iv_loop(n: int = 400, dt_s: float = 1e-7, v_max: float = 1.5) -> tuple[np.ndarray, ...]:
    """A triangular double sweep 0 -> +v_max -> 0 -> -v_max -> 0."""
    q = n // 4
    v = np.concatenate([np.linspace(0, v_max, q, endpoint=False),
                        np.linspace(v_max, 0, q, endpoint=False),
                        np.linspace(0, -v_max, q, endpoint=False),
                        np.linspace(-v_max, 0, n - 3 * q)])
    return np.arange(n) * dt_s, v


def pulse_train(n_pulses: int = 8, v_set: float = 1.1, v_reset: float = -1.3,
                v_read: float = 0.2) -> tuple[np.ndarray, ...]:
    """SET pulses then RESET pulses (100 ns each), each followed by a 0.2 V read."""
    t, v, p, c = [], [], [], []
    now = 0.0

    def seg(value: float, dur: float, pulse: int, label: str, k: int) -> None:
        nonlocal now
        for tt in np.linspace(now, now + dur, k, endpoint=False):
            t.append(tt)
            v.append(value)
            p.append(pulse)
            c.append(label)
        now += dur

    # start with a read: the record must start below the switching thresholds, because the
    # operating point at t = 0 sets the model's state
    for label, vp in (("set", v_set), ("reset", v_reset)):
        for _ in range(n_pulses):
            seg(v_read, 200e-9, 0, label, 4)
            seg(vp, 100e-9, 1, label, 5)
    seg(v_read, 200e-9, 0, "reset", 4)
    return np.asarray(t), np.asarray(v), np.asarray(p, bool), np.asarray(c)


def noisy(i_a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Measurement noise: ``NOISE_REL`` of reading plus ``NOISE_ABS_A``."""
    return (i_a * (1 + NOISE_REL * rng.standard_normal(i_a.size))
            + NOISE_ABS_A * rng.standard_normal(i_a.size))


def main() -> None:
    """Write ``iv_loop.csv`` and ``pulse_train.csv``."""
    here = Path(__file__).parent
    rng = np.random.default_rng(SEED)
    head = (f"synthetic record from netlists/rram/rram.lib with {TRUE}",
            f"noise: {NOISE_REL:.0%} of reading + {NOISE_ABS_A:g} A, seed {SEED}")
    t, v = iv_loop()
    i = noisy(simulate_memristor(t, v, TRUE), rng)
    write_measurement_csv(here / "iv_loop.csv", Measurement.from_arrays(t, v, i),
                          comments=(*head, "quasi-static I-V loop, 400 points"))
    t, v, p, c = pulse_train()
    i = noisy(simulate_memristor(t, v, TRUE | {"w0": 0.0}), rng)
    write_measurement_csv(here / "pulse_train.csv",
                          Measurement.from_arrays(t, v, i, pulse=p, curve=c),
                          comments=(*head, "SET then RESET pulses with reads between them"))
    nfet_curves(here / "nfet", rng)
    measured_like_loop(here / "measured_loop.csv")


MEASURED = {"ron": 2e3, "roff": 19e3, "vset": 0.2, "vreset": -0.18, "kset": 1e5,
            "kreset": 1e5, "aset": 3.0, "areset": 3.0, "iv": 1.0, "w0": 0.0}
"""The 'device' of measured_loop.csv: VTEAM with R exponential in the state (paper eq. 4)."""
MEASURED_SETUP = {"v_offset": 3e-3, "i_offset": 0.4e-6, "r_series": 1e3}
MEASURED_NOISE = {"i_a": 0.25e-6, "v_v": 0.3e-3}
MEASURED_SEED = 20261201


def measured_like_loop(path: Path, samples: int = 500) -> None:
    """A loop like a measured oscilloscope record (see README): 1 kHz triangle of 0.42 V on
    the device in series with a 1 kOhm sense resistor, device 2-19 kOhm, up to 130 uA,
    3 mV / 0.4 uA instrument offsets, noise on both channels. Made with the VTEAM equations
    integrated in Python (``characterization.fitting.published``), not with any SPICE model
    the fitter uses."""
    from characterization.fitting.published import triangle, vteam_record

    rng = np.random.default_rng(MEASURED_SEED)
    t, v = triangle(1e3, 0.42, samples_per_period=samples)
    i, _ = vteam_record(t, v, MEASURED, **MEASURED_SETUP)
    i = i + MEASURED_NOISE["i_a"] * rng.standard_normal(i.size)
    v_log = v + MEASURED_NOISE["v_v"] * rng.standard_normal(v.size)
    write_measurement_csv(path, Measurement.from_arrays(t, v_log, i), comments=(
        "measured-like loop: VTEAM (Kvatinsky 2015, eq. 4 exponential R) integrated in Python "
        "by characterization/fitting/published.py",
        f"device {MEASURED}",
        f"setup: {MEASURED_SETUP} (v_v logs the source, before the sense resistor)",
        f"noise: Gaussian, sigma {MEASURED_NOISE}, seed {MEASURED_SEED}",
        f"1 kHz triangle, 0.42 V, one period, {samples} samples"))


def nfet_curves(folder: Path, rng: np.random.Generator) -> None:
    """I_D-V_GS at 27 and 85 degC (V_DS = 0.1 V) with 1 % noise, for ``fit netlist``."""
    problem = load_fit_config(folder / "fit.toml")  # reads the curves' V_GS columns
    names = [p.name for p in problem.parameters]
    clean = simulate_curves(problem, [NFET_TRUE[n] for n in names])
    for curve, i in zip(problem.curves, clean, strict=True):
        meas = i * (1 + 0.01 * rng.standard_normal(i.size))
        rows = [f"# sky130 nfet_01v8 W=1 L=0.15 with {NFET_TRUE}, 1 % noise, seed {SEED}",
                f"# {curve.name}: V_DS = 0.1 V, {curve.temp_c:g} degC", "v_v,i_a"]
        rows += [f"{x:.6g},{y:.9g}" for x, y in zip(curve.x, meas, strict=True)]
        (folder / f"{curve.name}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["measured"]:  # only the measured-like loop
        measured_like_loop(Path(__file__).parent / "measured_loop.csv")
    else:
        main()
