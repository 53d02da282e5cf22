"""PVT corners and netlist templates."""

from __future__ import annotations

import pytest

from spicebridge.corners import ProcessCorner, PVTCorner
from spicebridge.errors import NetlistError
from spicebridge.netlist import NetlistTemplate, param_names, split_analyses


def test_corner_key_is_stable_and_validated():
    c = PVTCorner("SS", 1.62, -40)
    assert c.process is ProcessCorner.SS
    assert c.key == "ss_1p620v_m40c"
    with pytest.raises(ValueError, match="process corner"):
        PVTCorner("xx", 1.8, 27)
    with pytest.raises(ValueError, match="vdd_v"):
        PVTCorner("tt", 0.0, 27)
    with pytest.raises(ValueError, match="temp_c"):
        PVTCorner("tt", 1.8, 300)


def test_template_rejects_missing_and_unknown(tmp_path):
    p = tmp_path / "t.cir"
    p.write_text("* t\n.param w={${w_um}*2}\nR1 a 0 ${r_ohm}\n.op\n.end\n")
    t = NetlistTemplate.load(p)
    assert t.parameters == {"w_um", "r_ohm"}
    assert "R1 a 0 1000" in t.render(w_um=1, r_ohm=1e3)
    assert ".param w={1*2}" in t.render(w_um=1, r_ohm=1e3)
    with pytest.raises(NetlistError, match=r"missing.*r_ohm.*unknown.*zz"):
        t.render(w_um=1, zz=2)
    bad = tmp_path / "bad.cir"
    bad.write_text("* t\nR1 a 0 ${r ohm}\n")
    with pytest.raises(NetlistError, match="line 2"):
        NetlistTemplate.load(bad)
    with pytest.raises(NetlistError, match="no netlist"):
        NetlistTemplate.load(tmp_path / "missing.cir")


def test_split_analyses_keeps_options():
    body, an = split_analyses("* x\n.options reltol=1e-4\n.op\n.tran 1n 10n\nR1 a 0 1\n")
    assert an == ["op", "tran 1n 10n"]
    assert ".options reltol=1e-4" in body
    assert param_names(".param a=1 b = 2\n.PARAM c=3\n") == {"a", "b", "c"}
