"""The demo's evaluation steps in parallel lanes (spawned processes) give the results of the
serial run; RAP runs once per hardware point of a gamma sweep; every result records its cost.

Small: digits-tiny, 16 test images, as the demo runs its steps (moment fidelity, calibrated
K/V range, one torch thread)."""

from __future__ import annotations

import json
from pathlib import Path

from imc.demo.pipeline import _Steps, run_evaluations

_CLIP = ["--clipformer", "both", "--alpha", "2", "--beta", "0.5"]
SPECS = {  # "b" shares its gamma-1 point without ClipFormer with "a"
    "a": ("analog, gamma 1/3", ["--process", "tt", "--bits", "6", "--gamma", "1,3"]),
    "b": ("analog +- ClipFormer", ["--process", "tt", "--bits", "6", "--gamma", "1", *_CLIP]),
    "r": ("RAP, gamma 1/3", ["--process", "tt", "--bits", "4", "--gamma", "1,3", "--rap-only",
                             "--rap-no-dense", "--chips", "1"]),
}
LANES = (("a", "b"), ("r",))
_SAME = ("accuracies", "accuracy_mean", "accuracy_ci95", "chip_seeds",
         "conversions_per_inference", "calibration", "n_images", "adc_energy_j_per_inference")


def _common(meta, lookups, seed: int = 3) -> list[str]:
    return ["evaluate", "--model", "digits-tiny", "--cache-dir", str(Path(meta["path"]).parent),
            "--lookup", *map(str, lookups), "--vdd-v", "1.8", "--temp-c", "27", "--chips", "2",
            "--seed", str(seed), "--limit", "16", "--fidelity", "moment", "--kv-range",
            "calibrated", "--threads", "1", "--quiet"]


def _results(d: Path) -> dict[str, dict]:
    out = {}
    for name in SPECS:
        r = json.loads((d / f"{name}.json").read_text())
        out[name] = {
            "points": {json.dumps(p["setting"], sort_keys=True): {f: p[f] for f in _SAME}
                       for p in r["points"]},
            "rap": [{f: x["rap"][f] for f in ("accuracies", "accuracy_mean", "chip_seeds",
                                              "conversions_per_inference")} for x in r["rap"]],
            "comparisons": [(c["name"], c["difference_mean"], c["difference_ci95"])
                            for c in r["comparisons"]]}
    return out


def test_parallel_lanes_give_the_serial_results(tiny_digits_model, synthetic_lookups,
                                                tmp_path):
    _, meta = tiny_digits_model
    common = _common(meta, synthetic_lookups)
    runs = {}
    for workers in (1, 2):
        d = tmp_path / f"w{workers}"
        d.mkdir()
        steps = _Steps(total=len(SPECS))
        ev = run_evaluations(d, common, chips=2, seed=3, workers=workers,
                             steps=steps, specs=SPECS, lanes=LANES)
        runs[workers] = (d, ev, steps.log)
    (d1, ev1, log1), (d2, ev2, log2) = runs[1], runs[2]
    assert ev1["workers"] == 1 and ev2["workers"] == 2
    assert _results(d1) == _results(d2)
    # the cache is shared inside a lane either way: b took a's gamma-1 point
    for log in (log1, log2):
        assert [s["step"] for s in log] == [t for t, _ in SPECS.values()]
        assert log[1]["settings_simulated"] == 1 and log[1]["settings_reused"] == 1
        assert all(s["status"] == "ran" and s["seconds"] > 0 and s["cpu_s"] > 0 for s in log)
    assert [s["lane"] for s in log2] == [0, 0, 1]
    assert ev2["steps_s"] == sum(s["seconds"] for s in log2) and ev2["cpu_s"] > 0
    for ev in (ev1, ev2):  # the processes' CPU holds the steps' CPU and their start-up
        assert ev["process_cpu_s"] >= 0.99 * ev["cpu_s"]
    # RAP has no write noise: one RAP run for the two gammas; --rap-only: no analog points
    r = json.loads((d2 / "r.json").read_text())
    assert len(r["rap"]) == 1 and r["points"] == []
    # every result records its own cost, RAP too
    for name in SPECS:
        r = json.loads((d2 / f"{name}.json").read_text())
        for t in [p["timing"] for p in r["points"]] + [x["timing"] for x in r["rap"]]:
            assert t["digital_s"] > 0 and t["per_chip_s"] > 0
    # a second run finds every step done and reruns nothing
    steps = _Steps(total=len(SPECS))
    ev = run_evaluations(d2, common, chips=2, seed=3, workers=2, steps=steps, specs=SPECS,
                         lanes=LANES)
    assert ev["workers"] == 0 and [s["status"] for s in steps.log] == ["reused"] * 3


def test_a_failing_step_names_its_command(tiny_digits_model, synthetic_lookups, tmp_path):
    import pytest

    from imc.demo.pipeline import DemoError

    _, meta = tiny_digits_model
    bad = {"x": ("bad corner", ["--process", "nope", "--bits", "6"])}
    with pytest.raises(DemoError, match=r"bad corner.*exit 2.*--process nope"):
        run_evaluations(tmp_path, _common(meta, synthetic_lookups), chips=2, seed=3,
                        workers=2, specs=bad, lanes=(("x",),))


def test_demo_refuses_nonpositive_jobs_and_chips_before_any_step(tmp_path, capsys):
    from imc.cli import main

    for flag in ("--jobs", "--chips"):
        assert main(["demo", "--out", str(tmp_path / "d"), flag, "0"]) == 2
        assert f"{flag} must be a positive integer, got 0" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before the first step made anything
