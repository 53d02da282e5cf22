"""Both engines against analytic circuits, against each other, and on every error path."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from spicebridge.errors import (
    ConvergenceError,
    EngineCrashedError,
    NetlistError,
    ParseError,
    SimulationTimeoutError,
)
from spicebridge.netlist import sky130_corner_lib

pytestmark = pytest.mark.ngspice

DIVIDER = "* divider\nV1 in 0 DC 1\nR1 in out 1k\nR2 out 0 3k\n.op\n.end\n"
RC = """* rc step
V1 in 0 PULSE(0 1 0 1p 1p 1 2)
R1 in out 1k
C1 out 0 1n
.tran 5n 5u 0 5n
.end
"""
RC_AC = """* rc lowpass
V1 in 0 DC 0 AC 1
R1 in out 1k
C1 out 0 1n
.op
.ac dec 10 1k 10meg
.noise v(out) V1 dec 10 1k 10meg
.end
"""
BAD_MODEL = "* bad\nV1 in 0 1.0\nM1 in in 0 0 nomodel w=1u l=1u\n.op\n.end\n"
NO_CONVERGENCE = "* no solution\nV1 in 0 1\nR1 in out 1k\nB1 out 0 V = v(out) + 1\n.op\n.end\n"
LONG_TRAN = "* long\nV1 a 0 SIN(0 1 1meg)\nR1 a b 1k\nC1 b 0 1n\n.tran 1n 100m\n.end\n"

SPICEBRIDGE = [sys.executable, "-m", "imc.cli"]


@pytest.fixture(params=["shared", "batch"])
def engine(request, shared_engine, batch_engine):
    return shared_engine if request.param == "shared" else batch_engine


def test_divider_matches_ohms_law(engine):
    op = engine.simulate(DIVIDER)["op"]
    assert op["v(out)"][0] == pytest.approx(0.75, rel=1e-12)
    assert op["i(v1)"][0] == pytest.approx(-1.0 / 4e3, rel=1e-12)


def test_rc_step_has_time_constant_rc(engine):
    tran = engine.simulate(RC)["tran1"]
    t, v = tran.real("time"), tran.real("v(out)")
    tau = 1e3 * 1e-9
    for k in (0.5, 1.0, 2.0):
        assert np.interp(k * tau, t, v) == pytest.approx(1 - math.exp(-k), abs=2e-3)
    t63 = np.interp(1 - math.exp(-1), v, t)
    assert t63 == pytest.approx(tau, rel=0.01)


def test_ac_and_noise_plots_are_read(engine):
    res = engine.simulate(RC_AC)
    assert list(res.plots) == ["op1", "ac1", "noise1", "noise2"]
    ac = res["ac1"]
    f = ac["frequency"]
    assert f.dtype == np.float64
    h = np.abs(ac["v(out)"])
    expected = 1 / np.sqrt(1 + (2 * np.pi * f * 1e-6) ** 2)
    np.testing.assert_allclose(h, expected, rtol=1e-6)
    assert res["noise2"].title == "Integrated Noise"
    # kT/C noise of an RC, integrated only up to 10 MHz (the pole is at 159 kHz): close to kT/C
    vn = res["noise2"].real("v(onoise_total)")[0]
    assert vn == pytest.approx(math.sqrt(1.380649e-23 * 300.15 / 1e-9), rel=0.05)


def test_engines_agree_to_1e9(shared_engine, batch_engine):
    for deck in (DIVIDER, RC, RC_AC):
        a, b = shared_engine.simulate(deck), batch_engine.simulate(deck)
        assert list(a.plots) == list(b.plots)
        for key in a.plots:
            assert set(a[key].vectors) == set(b[key].vectors), key
            for name, va in a[key].vectors.items():
                np.testing.assert_allclose(va, b[key].vectors[name], rtol=1e-9, atol=1e-30,
                                           err_msg=f"{key}/{name}")


@pytest.mark.parametrize("vg_v", [1.8, 0.5])
def test_sky130_nmos_moves_the_right_way_with_corner_and_temperature(shared_engine, vg_v):
    lib = sky130_corner_lib(("nfet_01v8",))
    ids = {}
    for corner in ("ss", "ff"):
        deck = f"""* sky130 nmos
.lib "{lib}" {corner}
Vd d 0 1.8
Vg g 0 {vg_v}
X1 d g 0 0 sky130_fd_pr__nfet_01v8 W=1 L=0.15
.op
.end
"""
        circ = shared_engine.load(deck)
        for temp_c in (-40.0, 125.0):
            circ.set_temp(temp_c)
            ids[corner, temp_c] = -circ.run()["op"]["i(vd)"][0]
    for t in (-40.0, 125.0):
        assert ids["ff", t] > 1.2 * ids["ss", t]  # fast corner conducts more
    for c in ("ss", "ff"):
        if vg_v > 1.0:  # strong inversion: mobility falls with temperature
            assert ids[c, 125.0] < ids[c, -40.0]
        else:  # subthreshold: threshold falls, current rises with temperature
            assert ids[c, 125.0] > 2 * ids[c, -40.0]


def test_loaded_circuit_rerun_equals_fresh_simulation(engine):
    circ = engine.load(DIVIDER + "")
    circ.alter("r2", 1e3)
    assert circ.run()["op"]["v(out)"][0] == pytest.approx(0.5, rel=1e-12)
    deck = "* p\n.param rb=3k\nV1 in 0 DC 1\nR1 in out 1k\nR2 out 0 {rb}\n.op\n.end\n"
    circ = engine.load(deck)
    circ.alterparam("rb", 9e3)
    assert circ.run()["op"]["v(out)"][0] == pytest.approx(0.9, rel=1e-12)
    ntc = "* t\nV1 in 0 DC 1\nR1 in out 1k tc1=0.01\nR2 out 0 1k\n.op\n.end\n"
    circ = engine.load(ntc)
    circ.set_temp(127.0)
    r1 = 1e3 * (1 + 0.01 * 100.0)
    assert circ.run()["op"]["v(out)"][0] == pytest.approx(1e3 / (1e3 + r1), rel=1e-9)


def test_parse_error_quotes_line_and_ngspice_words(engine):
    with pytest.raises(ParseError) as ei:
        engine.simulate(BAD_MODEL, corner_key="tt_1p800v_27c")
    e = ei.value
    assert e.offending_line == "m1 in in 0 0 nomodel w=1u l=1u"
    assert "could not find a valid modelname" in str(e)
    assert "tt_1p800v_27c" in str(e)
    assert e.deck_path is not None and e.deck_path.read_text().startswith("* bad")


def test_non_convergence_tries_remedies_then_reports(engine):
    with pytest.raises(ConvergenceError) as ei:
        engine.simulate(NO_CONVERGENCE)
    assert "timestep too small" in str(ei.value).lower()
    assert any("remedies" in n for n in ei.value.__notes__)


def test_hanging_run_is_stopped_after_timeout(engine):
    with pytest.raises(SimulationTimeoutError):
        engine.simulate(LONG_TRAN, timeout_s=0.5)
    # the engine is usable afterwards
    assert engine.simulate(DIVIDER)["op"]["v(out)"][0] == pytest.approx(0.75)


def test_library_giving_up_is_reported_and_reloaded(shared_engine):
    lib = sky130_corner_lib(("nfet_01v8",))
    # sky130 expressions need mc_mm_switch: referencing the file without its .lib section
    # makes ngspice 39 give up ("cannot recover and awaits to be detached")
    deck = (f'* broken\n.include "{lib}"\nVd d 0 1\n'
            "X1 d d 0 0 sky130_fd_pr__nfet_01v8 W=1 L=0.15\n.op\n.end\n")
    with pytest.raises((EngineCrashedError, ParseError)):
        shared_engine.simulate(deck)
    assert shared_engine.simulate(DIVIDER)["op"]["v(out)"][0] == pytest.approx(0.75)


def test_batch_rejects_control_blocks(batch_engine):
    with pytest.raises(NetlistError, match="control"):
        batch_engine.simulate("* c\nR1 a 0 1\n.control\nop\n.endc\n.end\n")


def test_cli_simulate_json_both_engines(tmp_path):
    import json

    deck = tmp_path / "div.cir"
    deck.write_text(DIVIDER)
    outs = []
    for eng in ("shared", "batch"):
        p = subprocess.run([*SPICEBRIDGE, "simulate", str(deck), "--engine", eng, "--format",
                            "json"], capture_output=True, text=True, check=True)
        outs.append(json.loads(p.stdout))
    assert outs[0] == outs[1]
    assert outs[0]["op1"]["v(out)"] == pytest.approx(0.75)


def test_cli_simulate_rejected_deck_exits_nonzero_with_line(tmp_path):
    deck = tmp_path / "bad.cir"
    deck.write_text(BAD_MODEL)
    p = subprocess.run([*SPICEBRIDGE, "simulate", str(deck)], capture_output=True, text=True)
    assert p.returncode == 1
    assert "m1 in in 0 0 nomodel" in p.stderr
    assert "could not find a valid modelname" in p.stderr
    assert p.stdout == ""


def test_run_can_read_only_named_vectors(engine):
    circ = engine.load(RC)
    full = circ.run()
    some = circ.run(vectors=["v(out)"])
    tran = some["tran1"]
    assert set(tran.vectors) == {"time", "v(out)"}
    np.testing.assert_array_equal(tran["v(out)"], full["tran1"]["v(out)"])


def test_loading_through_a_second_shared_engine_invalidates_the_first_circuit():
    from spicebridge.engines import SharedEngine
    from spicebridge.errors import SimulationError

    a, b = SharedEngine(), SharedEngine()
    first = a.load(DIVIDER)
    b.load(DIVIDER.replace("1k", "2k"))
    with pytest.raises(SimulationError, match="replaced by a later load"):
        first.run()


def test_dc_sweep_of_a_resistor_has_its_sweep_as_scale(engine):
    deck = "* dc r\nV1 in 0 1\nR1 in out 1k\nR2 out 0 1k\n.dc R1 1k 2k 500\n.end\n"
    dc = engine.simulate(deck)["dc1"]
    assert dc.scale == "res-sweep"
    np.testing.assert_allclose(dc["res-sweep"], [1e3, 1.5e3, 2e3])
    np.testing.assert_allclose(dc["v(out)"], 1e3 / (dc["res-sweep"] + 1e3), rtol=1e-9)
