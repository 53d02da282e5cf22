"""Issue 16 for sweeps: spec fields are data, the store holds no pickle, every bad input is
exit 2 naming file/key/value, alterations and timeouts fail points with their reason, a
Dask worker that dies is a failure record."""

from __future__ import annotations

import argparse
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest

from characterization.errors import SweepError, SweepSpecError
from characterization.lookup import read_lookup
from characterization.sweep import SweepPoint, SweepSpec, load_spec, run_sweep
from imc.cli.sweep import register

DECK = "* t\n.param r1=1k\nV1 a 0 1\nR1 a b {r1}\nR2 b 0 1k\n.op\n.end\n"


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _spec(tmp_path: Path, toml: str, deck: str = DECK) -> Path:
    (tmp_path / "d.cir").write_text(deck)
    p = tmp_path / "s.toml"
    p.write_text('netlist = "d.cir"\nanalysis = "op"\nmeasure = ["v(b)"]\n' + toml)
    return p


@pytest.mark.parametrize(("toml", "pattern"), [
    ('[axes]\nvdd_v = [1.0, 1.8]\n[supply]\nsource = "v1\\nshell touch /tmp/x"\n',
     r"s\.toml:7: key 'supply\.source': .*not an element name"),
    ('[axes]\nvdd_v = [1.0, 1.8]\n[supply]\nsource = "vdd"\n',
     r"s\.toml:7: key 'supply\.source': 'vdd' names no element of d\.cir.*\['v1'\]"),
    ('[axes]\nvdd_v = [1.0, 1.8]\n[supply]\nsource = "R1"\n',
     r"key 'supply\.source': 'R1' is not a voltage or current source"),
    ('[axes]\nvdd_v = [1.0]\n[supply]\nsourse = "v1"\n',
     r"s\.toml:7: key 'supply\.sourse': unknown key in \[supply\]"),
    ('[axes]\nr1 = [1.0, nan]\n', r"s\.toml:5: key 'axes\.r1': values must be finite"),
    ('[axes]\nr1 = [1.0, inf]\n', r"key 'axes\.r1': values must be finite"),
    ('supply = ["v1"]\n', r"s\.toml:4: key 'supply': must be a table"),
    ('[monte_carlo]\nn = 2\nmismatch = [1]\n', r"key 'monte_carlo\.mismatch': must be a table"),
    ('[monte_carlo]\nn = 2\n[monte_carlo.mismatch]\nr1 = nan\n', r"sigma must be a finite"),
    ('[process]\nlibs = "x.lib"\n', r"key 'process\.libs': unknown key in \[process\]"),
    ('timeout_s = inf\n', r"key 'timeout_s': must be a positive number"),
    ('name = ["a"]\n', r"key 'name': must be a string"),
])
def test_bad_spec_fields_name_file_line_key(tmp_path, toml, pattern):
    with pytest.raises(SweepSpecError, match=pattern):
        load_spec(_spec(tmp_path, toml))


def test_analysis_is_one_command(tmp_path):
    p = _spec(tmp_path, "")
    p.write_text('netlist = "d.cir"\nanalysis = "op\\nshell touch x"\nmeasure = ["v(b)"]\n')
    with pytest.raises(SweepSpecError, match=r"s\.toml:2: key 'analysis'"):
        load_spec(p)


def test_non_utf8_toml_names_file_and_line(tmp_path):
    p = _spec(tmp_path, "")
    p.write_bytes(b'netlist = "d.cir"\n# caf\xe9\nmeasure = ["v(b)"]\n')
    with pytest.raises(SweepSpecError, match=r"s\.toml:2: not UTF-8"):
        load_spec(p)


def test_control_in_the_netlist_or_an_included_file_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    (tmp_path / "m.lib").write_text(f"* lib\n.control\nshell touch {marker}\n.endc\n")
    p = _spec(tmp_path, "", deck=DECK.replace("* t\n", '* t\n.include "m.lib"\n'))
    with pytest.raises(SweepSpecError, match=r"key 'netlist'.*m\.lib:2.*allow-control"):
        load_spec(p)
    p = _spec(tmp_path, "", deck=DECK.replace(".end", f".control\nshell touch {marker}\n.endc"
                                                      "\n.end"))
    with pytest.raises(SweepSpecError, match=r"d\.cir:7: a \.control block"):
        load_spec(p)
    assert load_spec(p, allow_control=True).context["allow_control"] is True
    assert not marker.exists()


class _Bomb:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_old_pickle_store_is_refused_and_never_unpickled(tmp_path):
    spec = SweepSpec(name="p", axes={"x": [1.0, 2.0]}, point_fn=_double, measures={"y": "1"})
    out = tmp_path / "p.h5"
    run_sweep(spec, out, quiet=True)
    store = tmp_path / "p.h5.points"
    marker = tmp_path / "PWNED"
    (store / "chunk-0000000000-1-000001.pkl").write_bytes(pickle.dumps(_Bomb(str(marker))))
    with pytest.raises(SweepError, match=r"pickled chunks.*never loaded"):
        run_sweep(spec, out, quiet=True)
    assert not marker.exists()
    # what the store holds now: npz without objects, JSON in a byte array
    for p in store.glob("chunk-*.npz"):
        with np.load(p, allow_pickle=False) as z:
            assert {"indices", "doc", "m0"} <= set(z.files)


def _double(p: SweepPoint) -> dict:
    return {"y": 2.0 * p.coords["x"]}


def test_store_and_lookup_files_are_readable_by_the_group(tmp_path):
    old = os.umask(0o022)
    try:
        spec = SweepSpec(name="m", axes={"x": [1.0, 2.0]}, point_fn=_double,
                         measures={"y": "1"})
        res = run_sweep(spec, tmp_path / "m.h5", quiet=True)
    finally:
        os.umask(old)
    files = [res.path, *sorted((tmp_path / "m.h5.points").glob("*.npz")),
             tmp_path / "m.h5.points" / "manifest.json"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in files), \
        [(f.name, oct(f.stat().st_mode)) for f in files]


@pytest.mark.parametrize(("extra", "pattern"), [
    (["--chunk-size", "0"], "--chunk-size 0: must be a positive"),
    (["--jobs", "0"], "at least 1 worker"),
])
def test_cli_bad_flags_exit_2(tmp_path, capsys, extra, pattern):
    p = _spec(tmp_path, "")
    assert _main(["sweep", str(p), "--out", str(tmp_path / "o.h5"), "--quiet", *extra]) == 2
    assert pattern in capsys.readouterr().err


def test_cli_out_dir_exit_2(tmp_path, capsys):
    p = _spec(tmp_path, "")
    assert _main(["sweep", str(p), "--out", str(tmp_path), "--quiet"]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_cli_billion_points_needs_yes_and_large_sweeps_warn(tmp_path, capsys, monkeypatch):
    vals = ", ".join(str(float(v)) for v in range(1, 1001))
    p = _spec(tmp_path, f"[axes]\nr1 = [{vals}]\n[monte_carlo]\nn = 1000000\n"
              "[monte_carlo.mismatch]\nr1 = \"1%\"\n")
    assert _main(["sweep", str(p), "--out", str(tmp_path / "o.h5"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "1e+09 points" in err and "--yes" in err
    assert not (tmp_path / "o.h5.points").exists()  # refused before anything is written
    from characterization.sweep import run as run_mod

    monkeypatch.setattr(run_mod, "WARN_POINTS", 3)
    spec = SweepSpec(name="w", axes={"x": [1.0, 2.0, 3.0, 4.0]}, point_fn=_double,
                     measures={"y": "1"})
    with pytest.warns(UserWarning, match="4 points"):
        run_sweep(spec, tmp_path / "w.h5", quiet=True)


@pytest.mark.ngspice
def test_supply_source_is_applied_each_vdd_gives_its_own_data(tmp_path):
    p = _spec(tmp_path, '[axes]\nvdd_v = [1.0, 1.8]\n[supply]\nsource = "V1"\n')
    res = run_sweep(load_spec(p), tmp_path / "s.h5", quiet=True)
    np.testing.assert_allclose(res.tables["v(b)"].data.ravel(), [0.5, 0.9], rtol=1e-9)


@pytest.mark.ngspice
def test_timeout_in_a_toml_sweep_is_a_failed_point_with_its_reason(tmp_path):
    deck = "* long\n.param r1=1k\nV1 a 0 SIN(0 1 1meg)\nR1 a b {r1}\nC1 b 0 1n\n.end\n"
    p = _spec(tmp_path, "timeout_s = 0.3\n[axes]\nr1 = [1000.0]\n", deck=deck)
    p.write_text(p.read_text().replace('analysis = "op"', 'analysis = "tran 1n 100m"')
                 .replace('"v(b)"', '"max(v(b))"'))
    with pytest.raises(SweepError, match="every point failed"):
        run_sweep(load_spec(p), tmp_path / "t.h5", quiet=True)
    f = read_lookup(tmp_path / "t.h5").failures[0]
    assert f.error_type == "SimulationTimeoutError" and "timeout of 0.3 s" in f.message


def dask_crashing_point(p: SweepPoint) -> dict:
    if p.index == 2:
        import ctypes

        ctypes.string_at(0)  # SIGSEGV, as a crash of libngspice
    return {"y": float(p.index)}


def test_dask_killed_worker_is_a_failure_record_not_a_hang(tmp_path):
    spec = SweepSpec(name="dk", axes={"x": list(range(4))}, point_fn=dask_crashing_point,
                     measures={"y": "1"})
    res = run_sweep(spec, tmp_path / "dk.h5", dask_local=1, quiet=True, chunk_size=1)
    assert [(f.point["index"], f.error_type) for f in res.failures] == [(2, "WorkerCrashed")]
    assert "KilledWorker" in res.failures[0].message
    y = res.tables["y"].data.ravel()
    np.testing.assert_array_equal(np.delete(y, 2), [0.0, 1.0, 3.0])


@pytest.mark.ngspice
def test_characterize_crossbar_model_with_control_is_refused_exit_2(tmp_path, capsys):
    from imc.cli import main
    from spicebridge.netlist import netlist_dir

    marker = tmp_path / "PWNED"
    lib = tmp_path / "fitted.lib"
    lib.write_text((netlist_dir() / "rram" / "rram.lib").read_text()
                   + f".control\nshell touch {marker}\n.endc\n")
    code = main(["characterize", "crossbar", "--model", str(lib), "--out",
                 str(tmp_path / "x.h5"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "fitted.lib" in err and "allow-control" in err
    assert not marker.exists() and not (tmp_path / "x.h5").exists()
