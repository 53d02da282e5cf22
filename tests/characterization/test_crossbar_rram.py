"""The memristor compact model netlists/rram/rram.lib in ngspice (both engines)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from characterization.crossbar.netlist import rram_lib_path

pytestmark = pytest.mark.ngspice

G_MAX, G_MIN = 1e-5, 1e-7


def _pulse_deck() -> str:
    return f"""* rram SET then RESET
.include "{rram_lib_path()}"
Vp te 0 PWL(0 0 100n 0 110n 1.5 300n 1.5 310n 0 400n 0 410n -1.5 600n -1.5 610n 0 700n 0)
X1 te 0 rram params: w0=0
.tran 1n 700n
.end
"""


@pytest.mark.parametrize("engine", ["shared_engine", "batch_engine"])
def test_set_and_reset_pulses_switch_the_state(engine, request):
    eng = request.getfixturevalue(engine)
    tr = eng.simulate(_pulse_deck())["tran1"]
    t, w = tr["time"].real, tr["v(x1.w)"].real
    assert abs(np.interp(90e-9, t, w)) < 1e-6          # below threshold: no drift
    assert np.interp(350e-9, t, w) > 0.9                # SET drove it to the ON state
    assert np.interp(690e-9, t, w) < 0.05               # RESET brought it back
    assert np.all((w > -1e-3) & (w < 1 + 1e-3))         # the window keeps w in [0, 1]


def _read_deck(w0: float, v: float = 0.2, extra: str = "") -> str:
    return f"""* rram read
.include "{rram_lib_path()}"
Vr te 0 DC {v}
X1 te 0 rram params: w0={w0} {extra}
.op
.end
"""


def test_read_iv_is_sinh_of_the_state_conductance(shared_engine):
    for w0 in (0.0, 0.5, 1.0):
        g = G_MIN + w0 * (G_MAX - G_MIN)
        for v in (0.05, 0.2, -0.2):
            i = -shared_engine.simulate(_read_deck(w0, v))["op1"]["i(vr)"][0]
            assert i == pytest.approx(g * 0.5 * math.sinh(v / 0.5), rel=1e-6)


def test_temperature_moves_lrs_down_and_hrs_up(shared_engine):
    lrs = shared_engine.load(_read_deck(1.0))
    hrs_i = {}
    lrs_i = {}
    for t in (-40.0, 27.0, 125.0):
        lrs.set_temp(t)
        lrs_i[t] = -lrs.run("op")["op1"]["i(vr)"][0]
    hrs = shared_engine.load(_read_deck(0.0))
    for t in (-40.0, 27.0, 125.0):
        hrs.set_temp(t)
        hrs_i[t] = -hrs.run("op")["op1"]["i(vr)"][0]
    assert lrs_i[-40.0] > lrs_i[27.0] > lrs_i[125.0]      # metallic filament
    assert hrs_i[-40.0] < hrs_i[27.0] < hrs_i[125.0]      # activated gap conduction
    assert lrs_i[125.0] / lrs_i[27.0] == pytest.approx(1 - 1e-3 * 98, rel=1e-6)


def test_device_variation_sources_alter_without_reparse(shared_engine):
    c = shared_engine.load(_read_deck(1.0))
    i0 = -c.run("op")["op1"]["i(vr)"][0]
    c.alter("v.x1.vdgon", 1.2)
    i1 = -c.run("op")["op1"]["i(vr)"][0]
    assert i1 / i0 == pytest.approx((1.2 * G_MAX) / G_MAX, rel=1e-3)
    c.alter("v.x1.vw0", 0.0)
    assert -c.run("op")["op1"]["i(vr)"][0] == pytest.approx(G_MIN * 0.5 * math.sinh(0.4),
                                                           rel=1e-6)


def test_switching_is_faster_when_hot_and_with_higher_threshold_slower(shared_engine):
    deck = f"""* partial SET
.include "{rram_lib_path()}"
Vp te 0 PWL(0 0 10n 0 11n 1.4 40n 1.4 41n 0 60n 0)
X1 te 0 rram params: w0=0
.tran 0.5n 60n
.end
"""
    c = shared_engine.load(deck)
    w = {}
    for t in (27.0, 85.0):
        c.set_temp(t)
        w[t] = c.run()["tran1"]["v(x1.w)"].real[-1]
    c.set_temp(27.0)
    c.alter("v.x1.vdvset", 0.1)
    w_hi_vt = c.run()["tran1"]["v(x1.w)"].real[-1]
    assert 0.01 < w[27.0] < w[85.0] < 1.0
    assert w_hi_vt < w[27.0]
