"""`evaluate --tile-rows` reads the tile's own column from a crossbar file with a rows axis
(issue 13: tile size is a circuit decision that reaches accuracy)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from characterization.lookup import read_lookup, write_lookup
from characterization.lookup.names import CROSSBAR_READ_NOISE, CROSSBAR_READ_TRANSFER


def _with_rows_axis(src, dst, heights=(16, 64)):
    """The synthetic file's column tables stacked along a ``rows`` axis (after the PVT axes),
    the 16-row slice's transfer set to a visibly different ratio (0.5), as a characterization
    with a rows axis writes them."""
    lf = read_lookup(src)
    tables = []
    for name in lf.tables:
        t = lf[name]
        if name in (CROSSBAR_READ_TRANSFER, CROSSBAR_READ_NOISE):
            data = np.stack([t.data] * len(heights), axis=3).copy()
            if name == CROSSBAR_READ_TRANSFER:
                stat = list(t.coords["stat"]).index("mean_ratio")
                data[:, :, :, 0, :, stat] = 0.5
            coords = {**t.coords, "rows": np.array(heights)}
            cu = {**t.coord_units, "rows": "1"}
            status = None if t.status is None else np.stack([t.status] * len(heights), axis=3)
            t = dataclasses.replace(t, data=data, dims=(*t.dims[:3], "rows", *t.dims[3:]),
                                    coords=coords, coord_units=cu, status=status,
                                    attrs={**t.attrs, "default_rows": 64})
        tables.append(t)
    write_lookup(dst, tables, {**lf.provenance, "derived": "rows axis stacked by the test"})
    return dst


def test_evaluate_tile_rows_reads_that_columns_tables(tmp_path):
    from imc.cli import main
    from nnsim.hardware import HardwareModel
    from nnsim.synthetic import write_synthetic_adc, write_synthetic_crossbar

    xbar = _with_rows_axis(write_synthetic_crossbar(tmp_path / "x1.h5", seed=1),
                           tmp_path / "xbar_rows.h5")
    adc = write_synthetic_adc(tmp_path / "adc.h5", seed=2, bits=(6,))
    hw16 = HardwareModel.from_lookup([xbar, adc], "tt", 1.8, 27.0, rows=16)
    hw64 = HardwareModel.from_lookup([xbar, adc], "tt", 1.8, 27.0, rows=64)
    assert (hw16.rows, hw64.rows) == (16, 64)
    assert hw16.rows_axis == (16, 64)
    assert np.allclose(hw16.transfer_mean, 0.5)  # the 16-row slice, not the 64-row one
    assert not np.allclose(hw64.transfer_mean, 0.5)

    runs = {}
    for rows in (16, 64):
        out = tmp_path / f"r{rows}.json"
        rc = main(["evaluate", "--model", "digits-tiny", "--lookup", str(xbar), str(adc),
                   "--vdd-v", "1.8", "--temp-c", "27", "--limit", "16", "--chips", "1",
                   "--fidelity", "moment", "--tile-rows", str(rows), "--quiet",
                   "--cache-dir", str(tmp_path / "models"), "--json", str(out)])
        assert rc == 0, rows
        runs[rows] = json.loads(out.read_text())
    # the 16-row tile sees its column's 0.5 transfer: the analog output is not the 64-row one's
    assert runs[16] != runs[64]
    # a tile height that is not on the axis is refused, naming the axis
    rc = main(["evaluate", "--model", "digits-tiny", "--lookup", str(xbar), str(adc),
               "--vdd-v", "1.8", "--temp-c", "27", "--limit", "16", "--chips", "1",
               "--fidelity", "moment", "--tile-rows", "32", "--quiet",
               "--cache-dir", str(tmp_path / "models")])
    assert rc == 2
