"""TOML sweeps of real netlists in ngspice: parity across executors, failures, specs, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from characterization.errors import SweepSpecError
from characterization.lookup import read_lookup
from characterization.sweep import load_spec, run_sweep
from characterization.sweep.toml_spec import netlist_point
from imc.cli.sweep import register

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sweeps"

_FAILING_DECK = """* ln() of a negative number fails at k < 0
.param k=1
V1 in 0 1
B1 out 0 V = ln(v(in)*{k})
R1 out 0 1k
.op
.end
"""

_TEMPLATE_DECK = """* RC low-pass, the capacitor is a template placeholder
.param r1=1k
V1 in 0 dc 0 pulse(0 1 0 1p 1p 1 2)
R1 in out {r1}
C1 out 0 ${c_f}
.end
"""


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def divider(tmp_path) -> Path:
    for name in ("divider.cir", "divider.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    return tmp_path / "divider.toml"


@pytest.mark.ngspice
def test_sweep_divider_serial_loky_dask_identical(divider, tmp_path):
    spec = load_spec(divider)
    a = run_sweep(spec, tmp_path / "a.h5", quiet=True)
    b = run_sweep(spec, tmp_path / "b.h5", jobs=2, quiet=True, chunk_size=5)
    d = run_sweep(spec, tmp_path / "d.h5", dask_local=2, quiet=True, chunk_size=7)
    t = a.tables["v(out)"]
    assert t.dims == ("r1", "temp_c", "mc") and t.shape == (3, 3, 4)
    assert np.isfinite(t.data).all()
    assert t.data.std(axis=-1).min() > 0  # mismatch on r2 moves v(out)
    for m in spec.measures:
        np.testing.assert_array_equal(a.tables[m].data, b.tables[m].data)
        np.testing.assert_array_equal(a.tables[m].data, d.tables[m].data)
    assert d.summary["backend"] == "dask" and b.summary["backend"] == "loky"
    lf = read_lookup(a.path)
    assert lf.provenance["netlist_sha256"] and lf.provenance["ngspice_version"]
    assert lf["v(out)"].coord_units["temp_c"] == "degC"
    # one point, re-run alone from its seed, gives the same numbers
    i = 17
    alone = netlist_point(spec.point(i))
    assert alone["v(out)"] == t.data[np.unravel_index(i, spec.shape)]


@pytest.mark.ngspice
def test_sweep_failing_points_recorded_and_strict_exit(tmp_path):
    (tmp_path / "ln.cir").write_text(_FAILING_DECK)
    (tmp_path / "ln.toml").write_text(
        'netlist = "ln.cir"\nmeasure = ["v(out)"]\n[axes]\nk = [1.0, -1.0, 2.0]\n')
    out = tmp_path / "ln.h5"
    assert _main(["sweep", str(tmp_path / "ln.toml"), "--out", str(out), "--quiet"]) == 0
    lf = read_lookup(out)
    v = lf["v(out)"].data[:, 0]
    np.testing.assert_allclose(v[[0, 2]], [0.0, np.log(2.0)], atol=1e-9)
    assert np.isnan(v[1])
    (f,) = lf.failures
    assert f.point["k"] == -1.0 and f.point["index"] == 1
    assert f.error_type == "ConvergenceError" and "ln" in f.message
    assert _main(["sweep", str(tmp_path / "ln.toml"), "--out", str(out), "--quiet",
                  "--strict"]) == 1


@pytest.mark.ngspice
def test_sweep_template_tran_measures(tmp_path):
    (tmp_path / "rc.cir").write_text(_TEMPLATE_DECK)
    (tmp_path / "rc.toml").write_text(
        'netlist = "rc.cir"\nanalysis = "tran 10n 5u"\n'
        '[measures]\nv_tau = "at(v(out), 1u)"\nv_end = "v(out)"\nv_max = "max(v(out))"\n'
        '[axes]\nc_f = [1e-9, 2e-9]\nr1 = [1e3]\n')
    res = run_sweep(load_spec(tmp_path / "rc.toml"), tmp_path / "rc.h5", quiet=True)
    v_tau = res.tables["v_tau"].data[:, 0, 0]
    np.testing.assert_allclose(v_tau, 1 - np.exp(-1e-6 / np.array([1e-6, 2e-6])), rtol=2e-2)
    assert res.tables["v_end"].data[0, 0, 0] == pytest.approx(1 - np.exp(-5), rel=2e-2)
    assert res.tables["v_tau"].units == "V"


@pytest.mark.ngspice
def test_sweep_inspect_json(divider, tmp_path, capsys):
    out = tmp_path / "x.h5"
    assert _main(["sweep", str(divider), "--out", str(out), "--quiet", "--jobs", "1"]) == 0
    capsys.readouterr()
    assert _main(["inspect", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"format", "schema_version", "provenance", "datasets"} <= set(d)
    assert d["datasets"]["v(out)"]["dims"] == ["r1", "temp_c", "mc"]
    assert d["failures_count"] == 0
    assert _main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "v(out) [V] shape (3, 3, 4)" in text and "temp_c: -40, 27, 125 degC" in text
    # one point alone from the CLI (index 5 = r1 1k, temp 27, mc 1) gives the stored numbers
    capsys.readouterr()
    assert _main(["sweep", str(divider), "--point", "5"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert (one["coords"], one["mc"]) == ({"r1": 1000.0, "temp_c": 27.0}, 1)
    assert one["measures"]["v(out)"] == read_lookup(out)["v(out)"].data[0, 1, 1]
    assert _main(["sweep", str(divider), "--point", "36"]) == 2
    assert "outside 0..35" in capsys.readouterr().err
    assert _main(["sweep", str(divider)]) == 2  # no --out
    assert _main(["inspect", str(out), "--plot", str(tmp_path / "png")]) == 0
    pngs = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert pngs == ["i_v1.png", "v_out.png"]
    assert all((tmp_path / "png" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_load_spec_errors_name_file_line_and_key(tmp_path):
    (tmp_path / "d.cir").write_text("* t\n.param r1=1k\nR1 a 0 {r1}\nV1 a 0 1\n.end\n")
    p = tmp_path / "s.toml"
    p.write_text('netlist = "d.cir"\nanalysis = "op"\nmeasure = ["v(a)"]\n[axes]\n'
                 'r1 = [1, 2]\nr9 = [3]\n')
    with pytest.raises(SweepSpecError, match=r"s\.toml:6: key 'axes\.r9': names no \.param"):
        load_spec(p)
    p.write_text('netlist = "d.cir"\nanalysis = "op"\nmeasures_typo = ["v(a)"]\n')
    with pytest.raises(SweepSpecError, match=r"s\.toml:3: key 'measures_typo': unknown key"):
        load_spec(p)
    p.write_text('netlist = "d.cir"\nanalysis = "op"\nmeasure = ["v(a)"]\n[axes]\n'
                 'vdd_v = [1.8]\n')
    with pytest.raises(SweepSpecError, match=r"\[supply\]"):
        load_spec(p)
    p.write_text('netlist = "nope.cir"\n')
    with pytest.raises(SweepSpecError, match="cannot read"):
        load_spec(p)
    p.write_text('netlist = "d.cir"\nanalysis = "op"\nmeasure = ["max(v(a)"]\n')
    with pytest.raises(SweepSpecError, match=r"s\.toml:3: key 'measure': unbalanced paren"):
        load_spec(p)
    p.write_text('netlist = "d.cir"\nseed = [\n')
    with pytest.raises(SweepSpecError, match="TOML syntax error"):
        load_spec(p)


@pytest.mark.ngspice
def test_sweep_process_vdd_temp_first_class_sky130(tmp_path):
    shutil.copy(EXAMPLES / "cs_stage.cir", tmp_path / "cs.cir")
    (tmp_path / "cs.toml").write_text(
        'netlist = "cs.cir"\nanalysis = "op"\nseed = 3\n'
        '[measures]\nidd_a = { expr = "i(vdd)", units = "A" }\n'
        '[axes]\nprocess = ["tt", "ss", "ff"]\nvdd_v = [1.6, 1.8]\ntemp_c = [27]\n'
        '[process]\ndevices = ["nfet_01v8"]\n[supply]\nsource = "Vdd"\n')
    res = run_sweep(load_spec(tmp_path / "cs.toml"), tmp_path / "cs.h5", quiet=True)
    assert not res.failures
    t = res.tables["idd_a"]
    assert t.dims == ("process", "vdd_v", "temp_c", "mc")
    i = -t.data[:, :, 0, 0]  # current drawn from the supply
    tt, ss, ff = i
    assert (ss < tt).all() and (tt < ff).all()  # slow NMOS draws less, fast more
    assert (i[:, 1] > i[:, 0]).all()  # more supply, more current through the load
    assert t.sel(process="ss", vdd_v=1.7, temp_c=27.0, mc=0).data.shape == ()


@pytest.mark.ngspice
def test_sweep_batch_engine_matches_shared(divider, tmp_path):
    text = divider.read_text().replace("n = 4", "n = 2")
    divider.write_text(text)
    (tmp_path / "b.toml").write_text(text.replace('seed = 7', 'seed = 7\nengine = "batch"'))
    a = run_sweep(load_spec(divider), tmp_path / "a.h5", quiet=True)
    b = run_sweep(load_spec(tmp_path / "b.toml"), tmp_path / "b.h5", quiet=True)
    np.testing.assert_allclose(b.tables["v(out)"].data, a.tables["v(out)"].data, rtol=1e-9)


def test_measure_vectors_names_the_vectors_a_measure_reads():
    from characterization.sweep.toml_spec import measure_vectors

    assert measure_vectors("V(Out)") == {"v(out)"}
    assert measure_vectors("max(abs(i(v1)))") == {"i(v1)"}
    assert measure_vectors("at(v(out), 50n)") == {"v(out)"}
    assert measure_vectors("v(onoise_total)") == {"v(onoise_total)"}


@pytest.mark.ngspice
def test_netlist_point_reads_only_measured_vectors_same_numbers(tmp_path):
    """run(vectors=...) gives the numbers of a full read; a missing vector's error lists all."""
    from characterization.sweep.toml_spec import _circuit, evaluate_measure, render_deck

    (tmp_path / "rc.cir").write_text(_TEMPLATE_DECK)
    (tmp_path / "rc.toml").write_text(
        'netlist = "rc.cir"\nanalysis = "tran 10n 3u"\n'
        '[measures]\nv_tau = "at(v(out), 1u)"\nv_max = "max(v(out))"\ni_in = "i(v1)"\n'
        '[axes]\nc_f = [1e-9]\nr1 = [1e3, 3e3]\n')
    spec = load_spec(tmp_path / "rc.toml")
    for i in range(len(spec)):
        point = spec.point(i)
        got = netlist_point(point)
        circ = _circuit(render_deck(spec.context, point.coords), "shared")
        full = circ.run(spec.context["analysis"])  # same circuit state, every vector read
        assert len(full.last.vectors) > 3  # v(in), v(out), i(v1), time: more than asked for
        for k, e in spec.context["exprs"].items():
            assert got[k] == evaluate_measure(full, e)
    (tmp_path / "bad.toml").write_text(
        'netlist = "rc.cir"\nanalysis = "op"\nmeasure = ["v(nowhere)"]\n'
        '[axes]\nc_f = [1e-9]\n')
    with pytest.raises(KeyError, match=r"v\(in\)"):  # the message lists the deck's vectors
        netlist_point(load_spec(tmp_path / "bad.toml").point(0))


@pytest.mark.ngspice
def test_sweep_relative_include_is_relative_to_the_netlist(tmp_path, monkeypatch):
    net = tmp_path / "net"
    (net / "models").mkdir(parents=True)
    (net / "models" / "load.inc").write_text("* load\nRL out 0 1k\n")
    (net / "d.cir").write_text("* include next to the netlist\n.include models/load.inc\n"
                               ".param r1=1k\nV1 in 0 dc 1\nR1 in out {r1}\n.op\n.end\n")
    spec = net / "d.toml"
    spec.write_text('netlist = "d.cir"\nmeasure = ["v(out)"]\n[axes]\nr1 = [1e3, 3e3]\n')
    monkeypatch.chdir(tmp_path)  # ngspice alone would look for models/load.inc here
    res = run_sweep(load_spec(spec), tmp_path / "d.h5", jobs=1, quiet=True)
    assert res.failures == []
    np.testing.assert_allclose(res.tables["v(out)"].data[:, 0], [0.5, 0.25], rtol=1e-9)
    (inc,) = res.provenance["included_files"]
    assert inc == str((net / "models" / "load.inc").resolve())
    assert "fitted_models" not in res.provenance
    (net / "d.cir").write_text("* t\n.param r1=1k\n.include nope.inc\nR1 a 0 {r1}\n.end\n")
    with pytest.raises(SweepSpecError, match=r"d\.cir:3: \.include file 'nope\.inc' not found"):
        load_spec(spec)
