"""The HDF5 lookup format: round trip, selection and interpolation, refusals, atomic writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from characterization.errors import ExtrapolationError, LookupFormatError, LookupVersionError
from characterization.lookup import (
    FORMAT,
    SCHEMA_VERSION,
    Failure,
    Table,
    read_lookup,
    read_lookups,
    write_lookup,
)


def _noise_table() -> Table:
    # sigma = 1e-9 * (1 + vdd_v) * (1 + temp_c / 100), per process offset
    proc = ["tt", "ss", "ff"]
    vdd = np.array([1.62, 1.8, 1.98])
    temp = np.array([-40.0, 27.0, 125.0])
    off = np.array([0.0, 1.0, 2.0])[:, None, None]
    data = 1e-9 * (1 + vdd[None, :, None] + off) * (1 + temp[None, None, :] / 100)
    return Table("crossbar/read_noise", data, ("process", "vdd_v", "temp_c"),
                 {"process": proc, "vdd_v": vdd, "temp_c": temp}, "A",
                 {"vdd_v": "V", "temp_c": "degC"}, {"bandwidth_hz": 1e6, "note": {"a": [1, 2]}})


def test_round_trip_keeps_data_dims_coords_units_attrs_provenance_failures(tmp_path):
    t = _noise_table()
    fails = [Failure("crossbar_read", {"process": "ss", "vdd_v": 1.62, "mc": 3},
                     "ConvergenceError", "timestep too small")]
    path = write_lookup(tmp_path / "x.h5", [t], {"seed": 7, "spec": {"mc": 4}}, fails)
    lf = read_lookup(path)
    got = lf["crossbar/read_noise"]
    np.testing.assert_array_equal(got.data, t.data)
    assert got.dims == t.dims and got.units == "A"
    assert list(got.coords["process"]) == ["tt", "ss", "ff"]
    assert got.coord_units == {"process": "", "vdd_v": "V", "temp_c": "degC"}
    assert got.attrs["bandwidth_hz"] == 1e6 and got.attrs["note"] == {"a": [1, 2]}
    assert lf.provenance == {"seed": 7, "spec": {"mc": 4}}
    assert lf.failures == fails
    d = lf.to_dict()
    assert d["format"] == FORMAT and d["schema_version"] == SCHEMA_VERSION
    json.dumps(d)  # JSON-able as a whole
    with h5py.File(path) as f:  # v2: one group per table, every axis a dimension scale
        ds = f["crossbar/read_noise/read_noise"]
        assert [s[0].name for s in ds.dims] == [f"/crossbar/read_noise/{d}" for d in t.dims]
        assert ds.attrs["units"] == "A"
        assert f["crossbar/read_noise/process"].attrs["CLASS"] == b"DIMENSION_SCALE"


def test_sel_interpolates_linearly_and_picks_categories():
    t = _noise_table()
    v = t.sel(process="ss", vdd_v=1.71, temp_c=27.0)
    assert v.dims == () and v.data == pytest.approx(1e-9 * (1 + 1.71 + 1) * 1.27)
    # order of selection does not matter; other dims stay
    part = t.sel(vdd_v=1.8)
    assert part.dims == ("process", "temp_c")
    np.testing.assert_allclose(part.sel(process="tt").data, t.data[0, 1, :])


def test_sel_refuses_to_extrapolate_and_names_the_range():
    t = _noise_table()
    with pytest.raises(ExtrapolationError, match=r"vdd_v.*1\.62.*1\.98"):
        t.sel(vdd_v=2.5)
    with pytest.raises(KeyError, match="fs"):
        t.sel(process="fs")
    with pytest.raises(KeyError, match="no dimension 'bits'"):
        t.sel(bits=6)


def test_table_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="coordinate 'vdd_v' has shape"):
        Table("x", np.zeros((2, 3)), ("process", "vdd_v"), {"vdd_v": [1.0, 2.0]}, "A")
    with pytest.raises(ValueError, match="data has 2 axes"):
        Table("x", np.zeros((2, 3)), ("process",), {}, "A")


def test_reader_refuses_foreign_newer_and_broken_files(tmp_path):
    with pytest.raises(LookupFormatError, match="no lookup file"):
        read_lookup(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(LookupFormatError, match="not a readable HDF5"):
        read_lookup(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(LookupFormatError, match="format attribute"):
        read_lookup(tmp_path / "other.h5")
    p = write_lookup(tmp_path / "new.h5", [_noise_table()], {})
    with h5py.File(p, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(LookupVersionError, match="Upgrade"):
        read_lookup(p)
    p = write_lookup(tmp_path / "nodims.h5", [_noise_table()], {})
    with h5py.File(p, "r+") as f:
        del f["crossbar/read_noise/read_noise"].attrs["units"]
    with pytest.raises(LookupFormatError, match="lacks its 'units'"):
        read_lookup(p)
    # a truncated file
    good = (tmp_path / "x.h5")
    write_lookup(good, [_noise_table()], {})
    raw = good.read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(LookupFormatError):
        read_lookup(tmp_path / "cut.h5")


def test_merge_of_two_files_and_name_clash(tmp_path):
    a = write_lookup(tmp_path / "a.h5", [_noise_table()], {})
    adc = Table("adc/enob", np.array([[5.8, 4.9]]), ("process", "bits"),
                {"process": ["tt"], "bits": [6, 5]}, "bits")
    b = write_lookup(tmp_path / "b.h5", [adc], {})
    merged = read_lookups([a, b])
    assert set(merged) == {"crossbar/read_noise", "adc/enob"}
    with pytest.raises(LookupFormatError, match="in both"):
        read_lookups([a, a])


def test_refuses_to_overwrite_when_asked(tmp_path):
    p = write_lookup(tmp_path / "a.h5", [_noise_table()], {})
    with pytest.raises(FileExistsError):
        write_lookup(p, [_noise_table()], {}, overwrite=False)


def test_kill_during_write_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "big.h5"
    write_lookup(target, [_noise_table()], {"generation": 1})
    # a child writes a large file over it and is killed with SIGKILL mid-write
    code = textwrap.dedent(f"""
        import sys, numpy as np
        from characterization.lookup import Table, write_lookup
        tables = (Table(f"t{{i}}", np.random.default_rng(i).random((400, 400)), ("a", "b"),
                        {{}}, "1") for i in range(2000))
        def gen():
            for i, t in enumerate(tables):
                if i == 3:
                    print("writing", flush=True)
                yield t
        write_lookup({str(target)!r}, gen(), {{"generation": 2}})
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(signal.SIGKILL)
    p.wait()
    lf = read_lookup(target)
    assert lf.provenance == {"generation": 1}
    np.testing.assert_array_equal(lf["crossbar/read_noise"].data, _noise_table().data)


# ---- schema v2: netCDF-4 / xarray, padding and missing cells, v1 migration, hostile files ----

def _assert_xarray_opens(path, *, coord: tuple[str, str, str] | None = None) -> int:
    """Open ``path`` with xarray's h5netcdf engine; every table node has its data variable
    with the units the reader sees, and every dimension a coordinate. Returns the number of
    tables checked."""
    import xarray as xr

    lf = read_lookup(path)
    tree = xr.open_datatree(path, engine="h5netcdf")
    try:
        for name, t in lf.tables.items():
            node = tree[name]
            da = node.ds[name.rsplit("/", 1)[-1]]
            assert da.dims == t.dims, name
            assert da.attrs["units"] == t.units, name
            for d in t.dims:
                assert d in node.ds.coords, (name, d)
                np.testing.assert_array_equal(node.ds.coords[d].values, t.coords[d])
                assert node.ds.coords[d].attrs.get("units", "") == t.coord_units.get(d, "")
            np.testing.assert_array_equal(da.values, t.data)  # padding/missing: NaN both
        if coord is not None:
            table, dim, units = coord
            assert tree[table].ds.coords[dim].attrs["units"] == units
    finally:
        tree.close()
    return len(lf.tables)


def test_files_of_the_real_writers_open_with_xarray(tmp_path, synthetic_lookups,
                                                    tmp_path_factory):
    from characterization.sweep import SweepSpec, run_sweep

    xbar, adc = synthetic_lookups
    assert _assert_xarray_opens(xbar, coord=("crossbar/read_noise", "i_col_a", "A")) == 5
    assert _assert_xarray_opens(adc, coord=("adc/thresholds", "temp_c", "degC")) == 6

    def point(p):
        if p.coords["x"] == 2.0 and p.mc == 0:
            raise ValueError("deliberate")
        return {"v(out)": p.coords["x"] * 0.1 + p.rng().normal() * 1e-3}

    spec = SweepSpec(name="t", axes={"x": [1.0, 2.0], "corner": ["tt", "ss"]}, mc=2, seed=1,
                     point_fn=point, measures={"v(out)": "V"}, axis_units={"x": "V"})
    res = run_sweep(spec, tmp_path / "sweep.h5", quiet=True)
    assert _assert_xarray_opens(res.path, coord=("v(out)", "x", "V")) == 1
    t = read_lookup(res.path)["v(out)"]
    assert t.counts() == {"valid": 6, "padding": 0, "missing": 2}
    # every other lookup file the test session has written so far opens too
    others = [p for p in tmp_path_factory.getbasetemp().rglob("*.h5") if _is_lookup(p)]
    for p in others:
        _assert_xarray_opens(p)


def _is_lookup(p) -> bool:
    """A v2 file the reader accepts (tests above corrupt some files on purpose)."""
    try:
        return read_lookup(p).schema_version == 2
    except (LookupFormatError, ValueError):
        return False


def test_to_xarray_and_to_datatree(tmp_path):
    t = _noise_table()
    da = t.to_xarray()
    assert da.dims == t.dims and da.attrs["units"] == "A"
    assert da.coords["vdd_v"].attrs["units"] == "V" and "units" not in da.coords["process"].attrs
    # xarray's own interpolation agrees with Table.sel
    ref = float(da.sel(process="ss").interp(vdd_v=1.71, temp_c=27.0))
    assert t.sel(process="ss", vdd_v=1.71, temp_c=27.0).data == pytest.approx(ref, rel=1e-12)
    p = write_lookup(tmp_path / "x.h5", [t], {"seed": 3})
    tree = read_lookup(p).to_datatree()
    assert json.loads(tree.attrs["provenance"]) == {"seed": 3}
    assert tree["crossbar/read_noise"].ds["read_noise"].attrs["units"] == "A"


def test_padding_and_missing_are_explicit_not_nan_counts(tmp_path):
    bits = np.array([2, 3])
    data = np.arange(2 * 7, dtype=float).reshape(2, 7)
    t = Table("adc/thresholds", data, ("bits", "code"), {"bits": bits}, "LSB")
    t = t.with_ragged("code", "bits", {int(b): 2**int(b) - 1 for b in bits})
    assert t.counts() == {"valid": 10, "padding": 4, "missing": 0}
    assert np.isnan(t.data[0, 3:]).all() and np.isfinite(t.data[1]).all()
    lf = read_lookup(write_lookup(tmp_path / "a.h5", [t], {}))
    got = lf["adc/thresholds"]
    np.testing.assert_array_equal(got.status, t.status)
    assert lf.to_dict()["datasets"]["adc/thresholds"]["cells"]["padding"] == 4
    # without a status, the writer infers the ragged code tail as padding, the rest missing
    raw = np.array([[0.5, 1.5, 2.5, np.nan, np.nan, np.nan, np.nan],
                    [0.5, np.nan, 2.5, 3.5, 4.5, 5.5, 6.5]])
    u = Table("adc/dnl", raw, ("bits", "code"), {"bits": bits}, "LSB")
    lf = read_lookup(write_lookup(tmp_path / "b.h5", [u], {}))
    assert lf["adc/dnl"].counts() == {"valid": 9, "padding": 4, "missing": 1}
    assert lf["adc/dnl"].status[1, 1] == 2
    # a non-finite cell that the writer is told is valid is refused
    bad = Table("x", np.array([1.0, np.inf]), ("k",), {}, "1", status=np.zeros(2, np.int8))
    with pytest.raises(ValueError, match="k=1 is marked valid"):
        write_lookup(tmp_path / "c.h5", [bad], {})


def test_archived_v1_file_is_migrated_on_read():
    from characterization.errors import LegacyLookupWarning

    path = Path(__file__).parents[1] / "data" / "lookup_v1.h5"
    with pytest.warns(LegacyLookupWarning, match="v1 -> v2"):
        lf = read_lookup(path)
    assert lf.schema_version == 1
    assert sorted(lf.tables) == ["adc/decision_error", "adc/enob", "adc/records/cmp_offset_v",
                                 "adc/thresholds", "crossbar/read_noise",
                                 "crossbar/write_noise_fit", "v(out)"]
    th = lf["adc/thresholds"]  # bits 3 and 4, codes 1..15: 3-bit codes 8..15 are padding
    assert list(th.coords["bits"]) == [3, 4]
    assert th.counts() == {"valid": 3 * 4 * (7 + 15), "padding": 3 * 4 * 8, "missing": 0}
    assert (th.sel(bits=3).status[..., 7:] == 1).all()
    assert (th.sel(bits=3).status[..., :7] == 0).all()
    v = lf["v(out)"]  # the failed point is missing, and recorded
    assert v.counts()["missing"] == 1 and np.isnan(v.sel(vdd=1.62, mc=1).data)
    assert lf.failures[0].point == {"mc": 1, "seed": 11, "vdd": 1.62}
    assert lf["crossbar/read_noise"].coord_units["temp_c"] == "degC"
    fit = lf["crossbar/write_noise_fit"].sel(process="tt", vdd_v=1.8, temp_c=27.0)
    assert 0.0 < float(fit.sel(mode="single", stat="k").data) < 1.0
    assert lf.provenance["git_commit"].startswith("c35baef")


def test_declared_size_over_the_limit_is_refused_before_reading(tmp_path):
    p = write_lookup(tmp_path / "big.h5", [_noise_table()], {})
    with h5py.File(p, "r+") as f:  # a table declaring 100000 x 100000 doubles, never written
        g = f.create_group("huge")
        g.attrs["imc_variable"] = "huge"
        for d in ("a", "b"):
            c = g.create_dataset(d, shape=(100_000,), dtype="f8", chunks=(10_000,))
            c.make_scale(d)
        ds = g.create_dataset("huge", shape=(100_000, 100_000), dtype="f8",
                              chunks=(1000, 1000), compression="gzip")
        ds.attrs["units"] = "1"
        for i, d in enumerate(("a", "b")):
            ds.dims[i].attach_scale(g[d])
    assert p.stat().st_size < 64 * 1024
    with pytest.raises(LookupFormatError, match=r"huge.*100000, 100000.*74\.5 GiB.*limit"):
        read_lookup(p)


def test_total_size_over_the_limit_is_refused(tmp_path, monkeypatch):
    tables = [Table(f"t{i}", np.zeros((64, 64)), ("a", "b"), {}, "1") for i in range(3)]
    p = write_lookup(tmp_path / "many.h5", tables, {})
    monkeypatch.setenv("IMC_LOOKUP_MAX_TOTAL_BYTES", str(2 * 64 * 64 * 8 + 4096))
    with pytest.raises(LookupFormatError, match=r"in all.*IMC_LOOKUP_MAX_TOTAL_BYTES"):
        read_lookup(p)
    monkeypatch.setenv("IMC_LOOKUP_MAX_TOTAL_BYTES", str(4 * 64 * 64 * 8))
    assert len(read_lookup(p).tables) == 3


def test_non_finite_values_in_valid_cells_are_refused_naming_table_and_corner(tmp_path):
    p = write_lookup(tmp_path / "x.h5", [_noise_table()], {})
    with h5py.File(p, "r+") as f:
        f["crossbar/read_noise/read_noise"][1, 2, 0] = np.nan
    with pytest.raises(LookupFormatError,
                       match=r"'crossbar/read_noise'.*process=ss, vdd_v=1\.98, temp_c=-40"):
        read_lookup(p)


def test_hostile_provenance_and_failures_are_refused(tmp_path):
    p = write_lookup(tmp_path / "x.h5", [_noise_table()], {})
    with h5py.File(p, "r+") as f:
        f.attrs["provenance"] = "[" * 200_000 + "]" * 200_000
    with pytest.raises(LookupFormatError, match=r"provenance.*deeper"):
        read_lookup(p)
    with h5py.File(p, "r+") as f:
        f.attrs["provenance"] = "[1, 2]"
    with pytest.raises(LookupFormatError, match="provenance: expected a JSON object, found a "
                       "list"):
        read_lookup(p)
    fails = [Failure("s", {"x": 1}, "ValueError", "m")]
    p = write_lookup(tmp_path / "y.h5", [_noise_table()], {}, fails)
    with h5py.File(p, "r+") as f:
        f["failures/point"][0] = "[1]"
    with pytest.raises(LookupFormatError, match="failure 0 point: expected a JSON object"):
        read_lookup(p)


def test_cli_inspect_refuses_a_hostile_file_with_exit_2(tmp_path, capsys):
    from imc.cli import main

    p = write_lookup(tmp_path / "x.h5", [_noise_table()], {})
    with h5py.File(p, "r+") as f:
        f.attrs["provenance"] = "{" + '"a":{' * 100 + "}" * 101
    assert main(["inspect", str(p)]) == 2
    assert "deeper than 64" in capsys.readouterr().err


def test_nested_table_names_are_refused():
    t = _noise_table()
    inner = Table("crossbar/read_noise/x", np.zeros(2), ("k",), {}, "1")
    with pytest.raises(ValueError, match="would nest"):
        write_lookup("/tmp/never.h5", [t, inner], {})
    with pytest.raises(ValueError, match="reserved"):
        write_lookup("/tmp/never.h5", [Table("failures/x", np.zeros(2), ("k",), {}, "1")], {})


def test_inspect_counts_padding_and_plots_every_corner(synthetic_lookups, tmp_path, capsys):
    from characterization.sweep.plot import layout, si_scale
    from imc.cli import main

    xbar, adc = synthetic_lookups
    assert main(["inspect", str(adc)]) == 0
    text = capsys.readouterr().out
    # 3 x 3 x 3 corners, 8 instances; bits 4/6/8 use 15/63/255 of the 255 codes
    n = 27 * 8
    assert (f"{n * (15 + 63 + 255)} values, {n * (240 + 192)} padding (code used per bits: "
            "4:15, 6:63, 8:255)") in text
    assert "NaN" not in text
    small = Table("adc/thresholds", np.arange(2 * 2 * 7, dtype=float).reshape(2, 2, 7),
                  ("process", "bits", "code"), {"process": ["tt", "ss"], "bits": [2, 3]}, "LSB")
    small = small.with_ragged("code", "bits", {2: 3, 3: 7})
    p = write_lookup(tmp_path / "small.h5", [small, _noise_table()], {})
    out = tmp_path / "summary.json"
    assert main(["inspect", str(p), "--json", str(out), "--plot", str(tmp_path / "png")]) == 0
    assert "8 padding (code used per bits: 2:3, 3:7)" in capsys.readouterr().out  # human too
    d = json.loads(out.read_text())
    assert d["datasets"]["adc/thresholds"]["cells"]["padding"] == 8
    assert len(d["plots"]) == 2
    assert all(Path(q).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for q in d["plots"])
    t = read_lookup(xbar)["crossbar/read_noise"]
    lay = layout(t)
    assert (lay["x"], lay["rows"], lay["cols"], lay["panels"]) == \
        ("i_col_a", "process", ["vdd_v", "temp_c"], 27)  # every corner a panel
    th = layout(read_lookup(adc)["adc/thresholds"])
    assert (th["x"], th["lines"], th["reduced"]) == ("code", ["bits"], ["instance"])
    assert si_scale(np.array([2e-6, 5e-6]), "A") == (1e6, "µA")
    assert si_scale(np.array([3e-13]), "J") == (1e15, "fJ")
    assert si_scale(np.array([2e-12, 9e-12]), "J") == (1e12, "pJ")
    assert si_scale(np.array([27.0]), "degC") == (1.0, "°C")
    assert si_scale(np.array([3.0]), "LSB") == (1.0, "LSB")
