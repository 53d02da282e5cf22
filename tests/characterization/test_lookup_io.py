"""The HDF5 lookup format: round trip, selection and interpolation, refusals, atomic writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

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
    with h5py.File(path) as f:  # numeric axes are real HDF5 dimension scales
        assert f["crossbar/read_noise"].dims[1].label == "vdd_v"
        assert len(f["crossbar/read_noise"].dims[1]) == 1


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
        del f["crossbar/read_noise"].attrs["dims"]
    with pytest.raises(LookupFormatError, match="lacks its 'dims'"):
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
