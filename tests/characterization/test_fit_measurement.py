"""Measurement CSV: valid files read back in SI units; every error names line and column."""

from __future__ import annotations

import numpy as np
import pytest

from characterization.fitting import (
    Measurement,
    MeasurementFormatError,
    read_measurement_csv,
    write_measurement_csv,
)


def _write(tmp_path, text, name="m.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_read_measurement_scaled_units_and_markers(tmp_path):
    p = _write(tmp_path, "# device A\ntime_us,v_mv,i_ua,pulse,curve,note\n"
                         "0,0,0,0,loop,x\n1,100,2.5,1,loop,y\n2,200,5,0,read,z\n")
    m = read_measurement_csv(p)
    np.testing.assert_allclose(m.time_s, [0, 1e-6, 2e-6])
    np.testing.assert_allclose(m.v_v, [0, 0.1, 0.2])
    np.testing.assert_allclose(m.i_a, [0, 2.5e-6, 5e-6])
    assert m.pulse.tolist() == [False, True, False]
    assert m.curves == ["loop", "read"]
    assert m.comments == ("device A",)
    assert len(m.sha256) == 64


def test_write_then_read_roundtrip(tmp_path):
    m = Measurement.from_arrays([0, 1e-7, 2e-7], [0, 0.5, 1.0], [0, 1e-6, 3e-6],
                                pulse=[0, 1, 0], curve=["a", "a", "b"])
    back = read_measurement_csv(write_measurement_csv(tmp_path / "x.csv", m, comments=("hi",)))
    np.testing.assert_allclose(back.i_a, m.i_a)
    assert back.pulse.tolist() == [False, True, False]


def test_index_column_needs_sample_period(tmp_path):
    p = _write(tmp_path, "index,v_v,i_a\n0,0,0\n1,0.1,1e-6\n2,0.2,2e-6\n")
    with pytest.raises(MeasurementFormatError, match="sample period") as ei:
        read_measurement_csv(p)
    assert ei.value.column == "index"
    m = read_measurement_csv(p, sample_period_s=1e-3)
    np.testing.assert_allclose(m.time_s, [0, 1e-3, 2e-3])
    assert m.time_from_index


@pytest.mark.parametrize(("text", "line", "column", "words"), [
    ("time_s,i_a\n0,0\n1,1\n", 1, None, "missing column"),
    ("time_s,v_a,i_a\n0,0,0\n1,1,1\n", 1, "v_a", "unknown unit"),
    ("time_s,v_v,i_ohm\n0,0,0\n1,1,1\n", 1, "i_ohm", "unknown unit"),
    ("time_s,v_v,i_a,i_ua\n0,0,0,0\n1,1,1,1\n", 1, "i_ua", "duplicate"),
    ("time_s,v_v,i_a\n0,0,0\n2e-6,1,1\n1e-6,0,0\n", 4, "time_s", "increase strictly"),
    ("time_s,v_v,i_a\n0,0,0\n1e-6,1,1\n1e-6,0,0\n", 4, "time_s", "increase strictly"),
    ("time_s,v_v,i_a\n0,0,0\n1e-6,nan,1\n", 3, "v_v", "NaN"),
    ("time_s,v_v,i_a\n# c\n0,0,0\n1e-6,1,\n", 4, "i_a", "empty"),
    ("time_s,v_v,i_a\n0,0,0\n1e-6,1,1mA\n", 3, "i_a", "not a number"),
    ("time_s,v_v,i_a,pulse\n0,0,0,0\n1e-6,1,1,0.5\n", 3, "pulse", "integers"),
])
def test_read_measurement_errors_name_line_and_column(tmp_path, text, line, column, words):
    p = _write(tmp_path, text)
    with pytest.raises(MeasurementFormatError, match=words) as ei:
        read_measurement_csv(p)
    e = ei.value
    assert e.row == line
    assert e.column == column
    assert str(p) in str(e)
    assert f"line {line}" in str(e)
    if column:
        assert repr(column) in str(e)
