"""How tests/data/lookup_v1.h5 was made (kept for the record; it ran once, at commit c35baef,
with the schema-v1 writer, which no longer exists: do not re-run it against a newer writer).

Slices of the real quick-preset lookup files (crossbar_quick.h5, adc_quick.h5 made by
``spicebridge characterize crossbar|adc --preset quick`` at c35baef) plus one user-sweep
table with a failed point, written with ``characterization.lookup.write_lookup`` (v1).
"""

from __future__ import annotations

import sys

import numpy as np

from characterization.lookup import SCHEMA_VERSION, Failure, Table, read_lookup, write_lookup

assert SCHEMA_VERSION == 1, "this script documents the v1 file; it needs the v1 writer"
xb = read_lookup("/work/lookups/crossbar_quick.h5")
ad = read_lookup("/work/lookups/adc_quick.h5")


def _cut(t: Table, **idx: slice) -> Table:
    sl = tuple(idx.get(d, slice(None)) for d in t.dims)
    return Table(t.name, t.data[sl], t.dims, {d: t.coords[d][s] for d, s in zip(t.dims, sl,
                 strict=True)}, t.units, t.coord_units, t.attrs)


tables = [
    xb["crossbar/write_noise_fit"],
    xb["crossbar/read_noise"],
    _cut(ad["adc/thresholds"], bits=slice(0, 2), code=slice(0, 15)),  # bits 3, 4: padded
    _cut(ad["adc/decision_error"], bits=slice(0, 2), code=slice(0, 16)),
    ad["adc/enob"],
    ad["adc/records/cmp_offset_v"],
    Table("v(out)", np.array([[0.61, np.nan], [0.72, 0.83]]), ("vdd", "mc"),
          {"vdd": [1.62, 1.98], "mc": [0, 1]}, "V", {"vdd": "V", "mc": "1"}),
]
prov = {k: ad.provenance[k] for k in ("kind", "git_commit", "package_version", "root_seed",
                                      "ngspice_version")}
prov["note"] = "archived schema-v1 file for the migration test (tests/data/make_v1_lookup.py)"
write_lookup(sys.argv[1], tables, prov,
             [Failure("sweep", {"vdd": 1.62, "mc": 1, "seed": 11}, "ConvergenceError",
                      "timestep too small")])
