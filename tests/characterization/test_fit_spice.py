"""SPICE in the loop: parameter recovery within the reported confidence intervals.

Curves are simulated with known parameters, measurement noise is added, and the fit starts
30 % off. Real ngspice, the real RRAM model (netlists/rram/rram.lib) and real sky130 models.
"""

from __future__ import annotations

import numpy as np
import pytest

from characterization.fitting import (
    Curve,
    FitParameter,
    Measurement,
    SpiceFitProblem,
    fit_memristor,
    fit_spice,
    read_fit_provenance,
    read_measurement_csv,
    read_subckt_params,
    simulate_curves,
    simulate_memristor,
    write_fit_report,
    write_fitted_model,
    write_measurement_csv,
)
from characterization.fitting.memristor import default_model_path
from spicebridge.netlist import sky130_include

TRUE = {"ron": 1.2e5, "roff": 8e6, "vset": 0.9, "vreset": -1.1}
OFF = (1.3, 0.7, 1.3, 0.7)  # start 30 % off, both directions


def _loop(n=400, dt_s=1e-7, v_max=1.5):
    q = n // 4
    v = np.concatenate([np.linspace(0, v_max, q, endpoint=False),
                        np.linspace(v_max, 0, q, endpoint=False),
                        np.linspace(0, -v_max, q, endpoint=False), np.linspace(-v_max, 0, q)])
    return np.arange(n) * dt_s, v


@pytest.fixture(scope="module")
def noisy_loop():
    t, v = _loop()
    i = simulate_memristor(t, v, TRUE)
    rng = np.random.default_rng(0)
    i_meas = i * (1 + 0.02 * rng.standard_normal(i.size)) + 5e-11 * rng.standard_normal(i.size)
    return Measurement.from_arrays(t, v, i_meas)


@pytest.mark.ngspice
def test_fit_memristor_recovers_parameters_within_ci(noisy_loop, tmp_path):
    start = {k: v * f for (k, v), f in zip(TRUE.items(), OFF, strict=True)}
    # the bare device with the relative residual of issue 9 (no offsets, no noise weights)
    res = fit_memristor(noisy_loop, params=list(TRUE), start=start, jobs=1, nuisance={},
                        scale="relative", data_start=False)
    assert res.converged, res.message
    assert res.within_ci(TRUE) == dict.fromkeys(TRUE, True), (res.values, res.ci_low,
                                                              res.ci_high)
    for k in TRUE:  # intervals are informative, not [0, inf]
        assert res.ci_high[k] - res.ci_low[k] < 0.05 * abs(TRUE[k])
    assert res.cost < res.start_cost / 10
    (c,) = res.curves
    assert 0.015 < c.rms_scaled < 0.025  # the 2 % measurement noise, not model error

    out = write_fitted_model(res, tmp_path / "fitted.lib")
    header = read_subckt_params(out)
    assert float(header["ron"]) == pytest.approx(res.values["ron"], rel=1e-6)
    assert header["kset"] == read_subckt_params(default_model_path())["kset"]
    prov = read_fit_provenance(out)
    assert prov["converged"] is True
    assert prov["provenance"]["model_sha256"]
    assert prov["provenance"]["data_sha256"] == noisy_loop.sha256
    assert prov["provenance"]["ngspice_version"]
    assert read_fit_provenance(default_model_path()) is None
    files = write_fit_report(res, tmp_path / "report")
    assert files["png"].stat().st_size > 10_000
    # the fitted library is a drop-in include: simulating it reproduces the fitted curve
    t, v = _loop()
    i_lib = simulate_memristor(t, v, {}, model_path=out)
    np.testing.assert_allclose(i_lib, c.y_fit, rtol=1e-3, atol=1e-10)
    # the crossbar netlists accept it in place of rram.lib, and it runs there
    from characterization.crossbar.netlist import ColumnConfig, check_rram_lib, column_deck
    from spicebridge import create_engine

    assert float(check_rram_lib(out)["ron"]) == pytest.approx(res.values["ron"], rel=1e-6)
    deck = column_deck(ColumnConfig(rows=4, access="ideal", tia="ideal", rram_lib=str(out)))
    assert str(out) in deck
    col = create_engine("shared").simulate(deck)
    assert np.isfinite(np.real(col.vector("i(vrd)"))).all()
    # a lookup file made from the fitted model (a TOML sweep including it) carries the fit's
    # provenance
    from characterization.sweep import load_spec, run_sweep

    (tmp_path / "read.cir").write_text("* read the fitted cell\n.include fitted.lib\n"
                                       ".param vr=0.1\nV1 te 0 dc {vr}\nX1 te 0 rram\n"
                                       ".op\n.end\n")
    (tmp_path / "read.toml").write_text('netlist = "read.cir"\nmeasure = ["i(v1)"]\n'
                                        '[axes]\nvr = [0.1]\n')
    sw = run_sweep(load_spec(tmp_path / "read.toml"), tmp_path / "read.h5", quiet=True)
    assert sw.failures == []
    (fp,) = sw.provenance["fitted_models"].values()
    assert fp["provenance"]["data_sha256"] == noisy_loop.sha256
    assert fp["parameters"] == prov["parameters"]


@pytest.mark.ngspice
def test_fit_memristor_not_converged_keeps_best_point(noisy_loop, tmp_path):
    start = {k: v * f for (k, v), f in zip(TRUE.items(), OFF, strict=True)}
    res = fit_memristor(noisy_loop, params=list(TRUE), start=start, max_nfev=2, nuisance={})
    assert not res.converged, res.message
    assert "did not converge" in res.message and "kept the best point" in res.message
    assert res.cost <= res.start_cost
    out = write_fitted_model(res, tmp_path / "f.lib")
    assert "converged: NO" in out.read_text()


@pytest.mark.ngspice
def test_cli_fit_memristor(noisy_loop, tmp_path, capsys):
    from imc.cli import main

    csv = write_measurement_csv(tmp_path / "m.csv", noisy_loop)
    bad = tmp_path / "bad.csv"
    bad.write_text("time_s,v_v\n0,0\n1,1\n")
    assert main(["fit", "memristor", "--data", str(bad), "--out", str(tmp_path / "x.lib")]) == 2
    assert "missing column(s) i_a" in capsys.readouterr().err
    rc = main(["fit", "memristor", "--data", str(csv), "--out", str(tmp_path / "y.lib"),
               "--params", "ron,roff", "--fixed", "vset=0.9,vreset=-1.1", "--max-nfev", "1",
               "--report", str(tmp_path / "rep"), "--quiet"])
    assert rc == 3  # not converged in one evaluation: says so, writes the best point
    err = capsys.readouterr().err
    assert "did not converge" in err
    assert read_measurement_csv(csv).sha256 == read_fit_provenance(
        tmp_path / "y.lib")["provenance"]["data_sha256"]
    assert (tmp_path / "rep" / "fit_overlay.png").is_file()


def _nfet_problem(y_by_temp, start):
    deck = "\n".join([
        "* sky130 nfet_01v8 Id-Vg at two temperatures",
        sky130_include(("nfet_01v8",), "tt"),
        ".param mc_mm_switch=0 mc_pr_switch=0",
        "Vd d 0 0.1", "Vg g 0 0",
        "XM1 d g 0 0 sky130_fd_pr__nfet_01v8 W=1 L=0.15",
        ".end"])
    dev = "m.xm1.msky130_fd_pr__nfet_01v8"
    params = (
        FitParameter("delvto", start["delvto"], -0.2, 0.2, alter=(dev, "delvto"), scale=0.05,
                     units="V"),
        FitParameter("mulu0", start["mulu0"], 0.2, 5.0, alter=(dev, "mulu0")),
    )
    vg = np.arange(0.0, 1.81, 0.05)
    curves = tuple(
        Curve(name=f"idvg_{int(tc)}c", x=vg, y=y, y_vector="i(vd)", y_sign=-1.0,
              analysis="dc vg 0 1.8 0.05", temp_c=tc, alter=(("vd", 0.1),), x_units="V",
              y_units="A", x_label="V_GS (V)", log_y=True)
        for tc, y in y_by_temp.items())
    return SpiceFitProblem(deck=deck, parameters=params, curves=curves, name="nfet")


@pytest.mark.ngspice
def test_fit_spice_transistor_two_temperatures(tmp_path):
    true = {"delvto": 0.03, "mulu0": 0.9}
    vg = np.arange(0.0, 1.81, 0.05)
    probe = _nfet_problem({27.0: np.ones_like(vg), 85.0: np.ones_like(vg)}, true)
    clean = simulate_curves(probe, [true["delvto"], true["mulu0"]])
    rng = np.random.default_rng(1)
    meas = {tc: y * (1 + 0.01 * rng.standard_normal(y.size))
            for tc, y in zip((27.0, 85.0), clean, strict=True)}
    problem = _nfet_problem(meas, {"delvto": 0.039, "mulu0": 1.17})
    res = fit_spice(problem, jobs=2)
    assert res.converged, res.message
    assert res.within_ci(true) == {"delvto": True, "mulu0": True}, (res.values, res.ci_low,
                                                                    res.ci_high)
    assert abs(res.values["delvto"] - 0.03) < 0.005
    assert [c.name for c in res.curves] == ["idvg_27c", "idvg_85c"]
    assert res.jobs == 2 and res.n_sim > res.n_fun
    write_fit_report(res, tmp_path, title="nfet")


@pytest.mark.ngspice
def test_cli_fit_netlist_example_recovers_nfet(tmp_path, capsys):
    import json
    import shutil
    from pathlib import Path

    from imc.cli import main

    src = Path(__file__).resolve().parents[2] / "examples" / "fitting" / "nfet"
    out = tmp_path / "nfet.inc"
    assert main(["fit", "netlist", "--config", str(src / "fit.toml"), "--out", str(out),
                 "--report", str(tmp_path / "rep"), "--quiet"]) == 0
    line = next(x for x in out.read_text().splitlines() if "fit-provenance-json" in x)
    summary = json.loads(line.split(":", 1)[1])
    truth = {"delvto": 0.03, "mulu0": 0.9}  # examples/fitting/make_examples.py NFET_TRUE
    for p in summary["parameters"]:
        assert p["ci_low"] <= truth[p["name"]] <= p["ci_high"], p
    # a config error names the file and the table
    bad = tmp_path / "cfg"
    shutil.copytree(src, bad)
    text = (bad / "fit.toml").read_text().replace('units = "V"', 'unit = "V"')
    (bad / "fit.toml").write_text(text)
    capsys.readouterr()
    assert main(["fit", "netlist", "--config", str(bad / "fit.toml"), "--out",
                 str(tmp_path / "x.inc"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "[[parameters]] #1" in err and "'unit'" in err


@pytest.mark.ngspice
def test_fit_spice_param_fit_and_start_failure():
    from characterization.fitting import FitError

    deck = "* divider\n.param rtop=1k\nV1 a 0 1\nR1 a b {rtop}\nR2 b 0 2k\n.end\n"
    vin = np.linspace(0.1, 1.0, 10)
    meas = vin * 2e3 / (1.5e3 + 2e3)  # rtop = 1.5k
    curve = Curve(name="vout", x=vin, y=meas, y_vector="v(b)", analysis="dc v1 0.1 1.0 0.1")
    res = fit_spice(SpiceFitProblem(deck=deck, parameters=(FitParameter("rtop", 1e3, 10, 1e6),),
                                    curves=(curve,)))
    assert res.converged and res.values["rtop"] == pytest.approx(1.5e3, rel=1e-4)
    wrong = Curve(name="vout", x=vin, y=meas, y_vector="v(nope)", analysis="dc v1 0.1 1.0 0.1")
    with pytest.raises(FitError, match=r"start point .* cannot be simulated.*v\(nope\)"):
        fit_spice(SpiceFitProblem(deck=deck, parameters=(FitParameter("rtop", 1e3, 10, 1e6),),
                                  curves=(wrong,)))


def test_default_bounds_come_from_the_model_not_the_start():
    from characterization.fitting.errors import FitError
    from characterization.fitting.memristor import default_parameter

    p = default_parameter("ron", "100k", start=130e3)
    assert (p.lower, p.upper) == pytest.approx((100.0, 1e8)) and p.is_log
    with pytest.raises(FitError, match=r"'ron': start -5.0 outside its bounds \[100, 1e\+08\]"):
        default_parameter("ron", "100k", start=-5.0)  # was fitted to a negative resistance
    with pytest.raises(FitError, match=r"start 1000000000000.0 outside"):
        default_parameter("ron", "100k", start=1e12)
    p = default_parameter("vreset", "-1", start=-0.7)
    assert (p.lower, p.upper) == pytest.approx((-10.0, -1e-3))
    assert default_parameter("ron", "100k", start=-5.0, bounds=(-10.0, 10.0)).start == -5.0
    with pytest.raises(FitError, match="expression"):
        default_parameter("gnoise", "{d_goff/roff}")
    assert default_parameter("gnoise", "{d_goff/roff}", start=1e-7).upper == pytest.approx(1e-4)
