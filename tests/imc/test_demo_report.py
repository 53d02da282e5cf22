"""The demo's fits and report, on lookup files in the real format and a real evaluation run.

The full ``spicebridge demo`` takes minutes (characterizations, training); here its last steps
run on small inputs: the statistical fits and ``write_report`` read lookup files written by
the real writer, and evaluation JSON written by a real ``spicebridge evaluate`` run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory):
    from nnsim.synthetic import write_synthetic_adc, write_synthetic_crossbar

    d = tmp_path_factory.mktemp("demo")
    xbar = write_synthetic_crossbar(d / "crossbar.h5", seed=1)
    adc = write_synthetic_adc(d / "adc.h5", seed=2, bits=(4, 6))
    evals = d / "eval"
    evals.mkdir()
    common = [sys.executable, "-m", "imc.cli", "evaluate", "--model", "digits-tiny",
              "--lookup", str(xbar), str(adc), "--vdd-v", "1.8", "--temp-c", "27",
              "--limit", "40", "--chips", "2", "--fidelity", "moment", "--quiet",
              "--cache-dir", str(d / "models")]
    runs = {"corners": ["--process", "tt,ss", "--bits", "6", "--gamma", "1", "--clipformer",
                        "both", "--alpha", "2", "--beta", "0.5"],
            "temperature": ["--process", "tt", "--temp-c", "27,85", "--bits", "6",
                            "--gamma", "1"],
            # RAP on fewer images than the analog runs, as in the demo (RAP_IMAGES)
            "rap_bits": ["--process", "tt", "--bits", "4", "--rap", "--rap-no-dense",
                         "--limit", "20"]}
    for name, extra in runs.items():
        p = subprocess.run([*common, *extra, "--json", str(evals / f"{name}.json")],
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
    return d, xbar, adc, evals


def test_statistical_fits_per_corner(demo_inputs):
    from imc.demo.pipeline import statistical_fits

    _, xbar, adc, _ = demo_inputs
    fits = statistical_fits(xbar, adc)
    assert set(fits["write_noise"]) == {"tt", "ss", "ff"}
    k = fits["write_noise"]["tt"]["single"]["params"]["k"]
    assert 0 < k < 1
    assert fits["adc_threshold_spread"]["tt"]["params"]["offset_sigma_lsb"] >= 0


def test_report_has_the_promised_keys_tables_and_plots(demo_inputs):
    from imc.demo.pipeline import statistical_fits
    from imc.demo.report import write_report

    d, xbar, adc, evals = demo_inputs
    (d / "fits.json").write_text(json.dumps(statistical_fits(xbar, adc), default=str))
    md = write_report(d, xbar=xbar, adc=adc, fits_path=d / "fits.json",
                      fit_dir=d / "no_memristor_fit", evals=evals,
                      steps=[{"step": "test", "status": "ran", "seconds": 0.0,
                              "command": None}],
                      settings=dict(jobs=1, chips=2, seed=0, vdd_v=1.8, temp_c=27.0,
                                    clip_alpha=2.0, clip_beta=0.5, demo_bits=6,
                                    machine="test"), wall_s=1.0)
    r = json.loads((d / "report.json").read_text())
    assert set(r["crossbar"]["write_noise_k"]) == {"tt", "ss", "ff"}
    assert set(r["adc"]["enob"]["tt"]) == {"4", "6"}
    assert r["adc"]["energy_j"]["6"] > r["adc"]["energy_j"]["4"] > 0
    acc = r["accuracy"]
    assert 0.5 < acc["digital"] <= 1
    for key in ("analog/gamma=1/corner=tt/bits=6", "analog+clipformer/gamma=1/corner=ss/bits=6",
                "rap/gamma=0/corner=tt/bits=4"):
        assert 0 <= acc[key]["accuracy_mean"] <= 1
        assert "accuracy_ci95" in acc[key]
    text = md.read_text()
    for img in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (d / img).is_file(), img
    assert "analog+clipformer/gamma=1/corner=ss/bits=6" in text
    # the 85 degC point is its own setting, and the decision table pairs it with 27 degC
    hot = acc["analog/gamma=1/corner=tt/bits=6/temp=85"]
    assert hot["temp_c"] == 85.0 and 0 <= hot["accuracy_mean"] <= 1
    assert acc["analog/gamma=1/corner=tt/bits=6"]["temp_c"] == 27.0
    table = text.split("### Which circuit decision moved accuracy", 1)[1]
    assert "| temperature | 85.0 vs 27.0 |" in table and "| process corner |" in table
    # each setting's own cost, as its evaluate JSON recorded it (RAP: its sparse path)
    pts = json.loads((evals / "corners.json").read_text())["points"]
    ss = next(p for p in pts if p["setting"]["process"] == "ss" and p["setting"]["clipformer"])
    t = acc["analog+clipformer/gamma=1/corner=ss/bits=6"]["timing"]
    assert t["per_chip_s"] == ss["timing"]["per_chip_s"] > 0
    assert t["digital_s"] == ss["timing"]["digital_s"] > 0
    rap = json.loads((evals / "rap_bits.json").read_text())["rap"][0]["timing"]
    assert acc["rap/gamma=0/corner=tt/bits=4"]["timing"]["per_chip_s"] == rap["per_chip_s"] > 0
    cost = text.split("What each evaluated setting cost", 1)[1]
    row = next(x for x in cost.splitlines()
               if x.startswith("| analog+clipformer/gamma=1/corner=ss/bits=6"))
    assert f"| 40 x 2 | {t['per_chip_s']:.3f} | {t['digital_s']:.3f} |" in row


def test_report_says_what_each_step_and_each_rap_number_was_scored_on(demo_inputs,
                                                                       tmp_path):
    """The demo's RAP steps score fewer images (and chips) than its analog steps: every
    place the report shows RAP numbers says on how many (steps table, accuracy text, plot
    legends' source, comparisons, decisions, energy); the analog images come from the
    results, not a constant."""
    from imc.demo.pipeline import _eval_counts, statistical_fits
    from imc.demo.report import write_report

    _, xbar, adc, evals = demo_inputs
    (tmp_path / "fits.json").write_text(json.dumps(statistical_fits(xbar, adc), default=str))
    steps = [dict(step=f"evaluate {n}", status="ran", seconds=1.0, cpu_s=1.0, lane=0,
                  command=f"spicebridge evaluate {n}",
                  **_eval_counts(evals / f"{n}.json", 0, 1, ran=True))
             for n in ("corners", "rap_bits")]
    md = write_report(tmp_path, xbar=xbar, adc=adc, fits_path=tmp_path / "fits.json",
                      fit_dir=tmp_path / "no_memristor_fit", evals=evals, steps=steps,
                      settings=dict(jobs=1, chips=2, seed=0, vdd_v=1.8, temp_c=27.0,
                                    clip_alpha=2.0, clip_beta=0.5, demo_bits=6,
                                    machine="test"), wall_s=1.0)
    text = md.read_text()
    lines = text.splitlines()
    n_corners = len(json.loads((evals / "corners.json").read_text())["points"])
    row = next(x for x in lines if x.startswith("| evaluate corners |"))
    assert f"| 40 x 2 ({n_corners} settings) |" in row
    row = next(x for x in lines if x.startswith("| evaluate rap_bits |"))
    assert "| 20 x 2 (1 setting); RAP 20 x 2 (1 setting) |" in row  # --rap: analog too
    assert "noise) on the 40 test images; K and V" in text  # not a hard-coded 450
    assert "scored on 20 images x 2 chips, fewer than the analog settings' 40 x 2" in text
    cost = text.split("What each evaluated setting cost", 1)[1]
    assert "the fastest of up to 3 timed forwards" in cost.split("\n\n", 1)[0]
    assert "| rap/gamma=0/corner=tt/bits=4 | 20 x 2 |" in cost
    decisions = text.split("### Which circuit decision moved accuracy", 1)[1].split("\n\n")[2]
    rows = [x for x in decisions.splitlines() if x.startswith("| ") and "---" not in x][1:]
    assert rows and all(x.endswith("| 40 x 2 |") for x in rows)
    assert "| RAP sparse, tt, 4 bits, ADC trim none (20 images x 2 chips) |" in text


def test_demo_help_states_the_rap_images_and_chips(capsys):
    from imc.cli import main
    from imc.demo.pipeline import RAP_CHIPS, RAP_IMAGES

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert (f"every RAP setting on the first {RAP_IMAGES} test images and {RAP_CHIPS} chips, "
            "whatever --chips") in out
    assert f"the RAP settings always run on {RAP_CHIPS} chips x {RAP_IMAGES} images" in out


# ---- issue 13/14 report tables: ADC validation per corner, write bias, verify failure, energy

XB_PARTS = ("array", "tia", "drivers")


@pytest.fixture(scope="module")
def report_lookups(tmp_path_factory):
    """Synthetic files plus the issue-13/14 tables in their real format, with planted values:
    the ADC validation error is above its 0.1 LSB target only at ss/85 degC/8 bits; level 2
    single-shot writes at ff/85 degC are biased +1.23 uS; 3 of 8 verify cells fail level 3 at
    tt/-40 degC; the read energy is 1.5 / 0.4 / 0.1 pJ per column read (array / TIA / drivers)
    x a per-corner factor."""
    import numpy as np

    from characterization.adc.characterize import ENERGY_PARTS, ENERGY_SOURCES
    from characterization.lookup import Table, read_lookup, write_lookup
    from nnsim.synthetic import write_synthetic_adc, write_synthetic_crossbar

    d = tmp_path_factory.mktemp("report_tables")
    xf = read_lookup(write_synthetic_crossbar(d / "xb0.h5", seed=1))
    af = read_lookup(write_synthetic_adc(d / "adc0.h5", seed=2, bits=(4, 6)))
    ref = xf["crossbar/read_transfer"]
    pvt = ref.dims[:3]
    base = {k: ref.coords[k] for k in pvt}
    cu = {k: ref.coord_units[k] for k in pvt}
    shape = tuple(len(base[k]) for k in pvt)
    procs = [str(p) for p in base["process"]]
    temps = [float(t) for t in base["temp_c"]]
    p, v, t = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    f = 1.0 + 0.1 * p + 0.05 * v + 0.02 * t
    energy = Table("crossbar/read_energy_j", f[..., None] * np.array([1.5e-12, 0.4e-12, 0.1e-12]),
                   (*pvt, "part"), {**base, "part": np.asarray(XB_PARTS)}, "J",
                   {**cu, "part": "1"}, {"t_read_s": 10e-9, "rows": 64, "pattern": "random"})
    lv = np.arange(4)
    stats = np.zeros((*shape, 2, 4, 4))  # stat: bias_s, k, std_s, n
    stats[..., 2] = 0.2e-6
    stats[..., 3] = 8
    stats[procs.index("ff"), :, temps.index(85.0), 0, 2, 0] = 1.23e-6
    levels = Table("crossbar/write_noise_levels", stats, (*pvt, "mode", "level", "stat"),
                   {**base, "mode": np.asarray(["single", "verify"]), "level": lv,
                    "stat": np.asarray(["bias_s", "k", "std_s", "n"])}, "S", cu,
                   {"calibrate": "per_corner"})
    fail = np.zeros((*shape, 4))
    fail[procs.index("tt"), :, temps.index(-40.0), 3] = 3 / 8
    verify = Table("crossbar/write_verify_failure", fail, (*pvt, "level"), {**base, "level": lv},
                   "1", cu)
    xbar = write_lookup(d / "crossbar.h5", [*xf.tables.values(), energy, levels, verify],
                        xf.provenance)
    e = af["adc/energy_j"]
    frac = np.array([0.4, 0.3, 0.2, 0.1])
    eb = Table("adc/energy_breakdown_j", e.data[..., None] * frac, (*e.dims, "part"),
               {**e.coords, "part": np.asarray(ENERGY_PARTS)}, "J", {**e.coord_units, "part": "1"},
               {**e.attrs, **{f"source_{q}": ENERGY_SOURCES[q] for q in ENERGY_PARTS}})
    rms = np.full((*shape, 2), 0.05)
    rms[procs.index("ss"), :, temps.index(85.0), 1] = 0.15
    val = [Table(name, data, (*pvt, "bits"), {**base, "bits": np.array([6, 8])}, "LSB",
                 {**cu, "bits": "1"}, {"target_rms_lsb": 0.1})
           for name, data in (("adc/validation_rms_lsb", rms),
                              ("adc/validation_floor_lsb", np.full((*shape, 2), 0.004)),
                              ("adc/validation_max_lsb", rms * 1.3))]
    adc = write_lookup(d / "adc.h5", [*af.tables.values(), eb, *val], af.provenance)
    return d, xbar, adc


def test_report_marks_validation_above_target_and_shows_write_and_energy_tables(
        report_lookups, tiny_digits_model, capsys):
    from pathlib import Path

    import numpy as np

    from characterization.lookup import read_lookup
    from imc.cli import main
    from imc.demo.report import write_report

    d, xbar, adc = report_lookups
    _, meta = tiny_digits_model
    evals = d / "eval"
    evals.mkdir(exist_ok=True)
    assert main(["evaluate", "--model", "digits-tiny", "--cache-dir",
                 str(Path(meta["path"]).parent), "--lookup", str(xbar), "--lookup", str(adc),
                 "--process", "tt", "--vdd-v", "1.8", "--temp-c", "27", "--bits", "6",
                 "--chips", "1", "--limit", "10", "--quiet",
                 "--json", str(evals / "corners.json")]) == 0
    printed = [ln for ln in capsys.readouterr().out.splitlines() if "energy per inference" in ln]
    md = write_report(d, xbar=xbar, adc=adc, fits_path=d / "none.json", fit_dir=d / "none",
                      evals=evals, steps=[], wall_s=1.0,
                      settings=dict(jobs=1, chips=1, seed=0, vdd_v=1.8, temp_c=27.0,
                                    clip_alpha=2.0, clip_beta=0.5, demo_bits=6,
                                    machine="test"))
    r = json.loads((d / "report.json").read_text())
    text = md.read_text()
    # ADC validation: every (corner, temperature, bits) row; only the planted one above target
    vt = r["adc"]["validation_table"]
    assert len(vt["rows"]) == 3 * 3 * 2
    assert [(a["corner"], a["temp_c"], a["bits"]) for a in vt["above_target"]] == \
        [("ss", 85.0, 8)]
    assert text.count("**above target**") == 1
    assert "| ss | 85 | 8 | 0.150 | 0.195 | 0.0040 | **above target** |" in text
    assert "above target at 1 of 18 points" in text
    # write bias (uS) and verify failure (fraction, with the count of cells)
    assert "| ff | 85 | single | +0.00 ± 0.20 | +0.00 ± 0.20 | +1.23 ± 0.20 |" in text
    assert "| tt | -40 | 0.0 % (0/8) | 0.0 % (0/8) | 0.0 % (0/8) | 37.5 % (3/8) |" in text
    # energy per inference: the evaluated point's parts, crossbar read included, and its total
    # is the simulator's count x the raw tables at tt/1.8 V/27 degC (index arithmetic)
    pt = r["accuracy"]["analog/gamma=1/corner=tt/bits=6"]
    ep = pt["energy_per_inference"]
    xe = read_lookup(xbar)["crossbar/read_energy_j"]
    ae = read_lookup(adc)["adc/energy_j"]

    def ix(t, **at):
        return tuple([list(map(lambda c: c.item() if hasattr(c, "item") else c,
                               t.coords[k])).index(at[k]) if k in at else slice(None)
                      for k in t.dims])

    e_read = float(xe.data[ix(xe, process="tt", vdd_v=1.8, temp_c=27.0)].sum())
    e_conv = float(np.nanmean(ae.data[ix(ae, process="tt", vdd_v=1.8, temp_c=27.0, bits=6)]))
    n = pt["conversions_per_inference"]
    assert ep["total_j"] == pytest.approx(n * (e_read + e_conv), rel=1e-9, abs=0)
    assert ep["complete"] and [p["part"] for p in ep["parts"]][-3:] == \
        [f"crossbar/{q}" for q in XB_PARTS]
    sec = text.split("## Energy per inference", 1)[1]
    assert "crossbar/array" in sec and "not characterized" not in sec
    assert f"**{1e6 * ep['total_j']:.3g} µJ per image**" in sec
    # the CLI's text output: the total and every part on one line per point
    assert ep["total_j"] > 1e-6  # (uJ: the line's unit puts the total between 1 and 1000)
    assert len(printed) == 1 and f"{1e6 * ep['total_j']:.4g} uJ" in printed[0]
    assert all(p["part"] in printed[0] for p in ep["parts"])


def test_report_reads_the_energy_breakdown_of_older_runs():
    from imc.demo.report import energy_parts

    old = {"total_j": 3e-6, "conversions_per_inference": 1e6,
           "parts": {"adc_comparator": {"j": 1e-6, "j_per_conversion": 1e-12, "source": "SPICE"},
                     "adc_sar_logic": {"j": 2e-6, "j_per_conversion": 2e-12, "source": "x"}},
           "not_included": ["crossbar read (array + TIA + drivers): no table"]}
    e = energy_parts(old)
    assert [p["part"] for p in e["parts"]] == ["adc/comparator", "adc/sar_logic"]
    assert e["parts"][1]["j_per_inference"] == 2e-6 and not e["complete"]
    assert e["not_characterized"] == old["not_included"]
