"""Energy per inference (nnsim.energy): a sum of named parts, each from its table at the
evaluated corner, times the counted conversions / column reads.

The references are independent of the code under test: the per-event energies are read from
the raw arrays of the tables written here (index arithmetic, no ``Table.sel``), and the
conversion count of ``digits-tiny`` is counted by hand from its shapes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from characterization.adc.characterize import ENERGY_PARTS, ENERGY_SOURCES
from characterization.lookup import Table, read_lookup, write_lookup
from characterization.lookup.names import CROSSBAR_READ_ENERGY
from nnsim.energy import (
    CROSSBAR_NOT_CHARACTERIZED,
    CrossbarReadEnergy,
    energy_per_inference,
    format_breakdown,
)
from nnsim.hardware import AdcModel, HardwareModel

XBAR_PARTS = ("array", "tia", "drivers")
#: The crossbar writer's ``scaling`` attribute (characterization.crossbar.run).
SCALING = {"array": "proportional to the column current: v_read * I_col * t_read",
           "tia": "vdd * (tia_iq_a + |I_col|) * t_read: the quiescent part is fixed, the output "
                  "part proportional to the column current",
           "drivers": "proportional to the active rows: vdd * Q_gate(vdd) per active row"}
ADC_FRAC = np.array([0.4, 0.3, 0.2, 0.1])


def _xbar_energy(shape: tuple[int, ...]) -> np.ndarray:
    """Distinct energies per corner and part: array 1.5 pJ, TIA 0.4 pJ, drivers 0.1 pJ at
    tt/1.8 V/27 degC, each corner index moving them (so a wrong corner is seen)."""
    base = np.array([1.5e-12, 0.4e-12, 0.1e-12])
    p, v, t = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    f = 1.0 + 0.1 * p + 0.05 * v + 0.02 * t
    return f[..., None] * base


@pytest.fixture(scope="module")
def energy_lookups(synthetic_lookups, tmp_path_factory):
    """(crossbar.h5, adc.h5): the synthetic files plus ``crossbar/read_energy_j`` and
    ``adc/energy_breakdown_j`` in the contract's format (PVT axes + ``part``)."""
    d = tmp_path_factory.mktemp("energy")
    xf = read_lookup(synthetic_lookups[0])
    ref = xf["crossbar/read_transfer"]
    pvt = ref.dims[:3]
    shape = tuple(len(ref.coords[k]) for k in pvt)
    xe = Table(CROSSBAR_READ_ENERGY, _xbar_energy(shape), (*pvt, "part"),
               {**{k: ref.coords[k] for k in pvt}, "part": np.asarray(XBAR_PARTS)}, "J",
               {**{k: ref.coord_units[k] for k in pvt}, "part": "1"},
               {"t_read_s": 100e-9, "rows": 64, "pattern": "random (test)",
                "pattern_i_ideal_a": 20e-6, "pattern_active_rows": 32.0, "tia_iq_a": 2e-6,
                "scaling": SCALING, "source_array": "test: array supply"})
    xbar = write_lookup(d / "crossbar.h5", [*xf.tables.values(), xe], xf.provenance)
    af = read_lookup(synthetic_lookups[1])
    e = af["adc/energy_j"]
    eb = Table("adc/energy_breakdown_j", e.data[..., None] * ADC_FRAC, (*e.dims, "part"),
               {**e.coords, "part": np.asarray(ENERGY_PARTS)}, "J",
               {**e.coord_units, "part": "1"},
               {**e.attrs, **{f"source_{p}": ENERGY_SOURCES[p] for p in ENERGY_PARTS}})
    adc = write_lookup(d / "adc.h5", [*af.tables.values(), eb], af.provenance)
    return xbar, adc


def _raw(path, name: str, **idx: object) -> np.ndarray:
    """A table's raw values at coordinates found by index (no interpolation code)."""
    t = read_lookup(path)[name]
    sl = []
    for dim in t.dims:
        if dim in idx:
            c = [x.item() if hasattr(x, "item") else x for x in t.coords[dim]]
            sl.append(c.index(idx[dim]))
        else:
            sl.append(slice(None))
    return np.asarray(t.data)[tuple(sl)]


def test_total_is_the_sum_of_named_parts_and_each_names_its_source():
    adc = AdcModel(6, np.arange(1, 64, dtype=float)[None] - 0.5, 0.1, energy_j=1e-12,
                   energy_parts_j={"comparator": 4e-13, "dac_reference": 3e-13,
                                   "sar_logic": 2e-13, "sampling_drive": 1e-13},
                   energy_sources=dict(ENERGY_SOURCES))
    xb = CrossbarReadEnergy({"array": 1.5e-12, "tia": 4e-13, "drivers": 1e-13},
                            {"array": "a", "tia": "t", "drivers": "d"}, pattern="random",
                            scaling=SCALING)
    b = energy_per_inference(1000.0, adc, xb)
    assert b["complete"] and not b["not_characterized"]
    assert [p["part"] for p in b["parts"]] == [
        "adc/comparator", "adc/dac_reference", "adc/sar_logic", "adc/sampling_drive",
        "crossbar/array", "crossbar/tia", "crossbar/drivers"]
    # hand: 1000 conversions x (1.0 pJ ADC + 2.0 pJ read) = 3 nJ
    assert b["total_j"] == pytest.approx(3.0e-9, rel=1e-12, abs=0)
    assert sum(p["j_per_inference"] for p in b["parts"]) == pytest.approx(
        b["total_j"], rel=1e-12, abs=0)
    assert all(p["source"] for p in b["parts"])
    assert "comparator" in b["parts"][0]["source"] and "SPICE" in b["parts"][0]["source"]
    # column reads counted apart from conversions (RAP): only the crossbar parts move
    b2 = energy_per_inference(1000.0, adc, xb, column_reads_per_inference=500.0)
    assert b2["total_j"] == pytest.approx(1.0e-9 + 1.0e-9, rel=1e-12, abs=0)
    # no crossbar table: listed as not characterized, never a silent 0
    b3 = energy_per_inference(1000.0, adc, None)
    assert not b3["complete"] and b3["not_characterized"] == [CROSSBAR_NOT_CHARACTERIZED]
    assert not any(p["part"].startswith("crossbar/") for p in b3["parts"])
    assert b3["total_j"] == pytest.approx(1.0e-9, rel=1e-12, abs=0)
    assert any("not characterized" in line for line in format_breakdown(b3))
    # an ideal ADC and no crossbar table: nothing characterized
    assert energy_per_inference(10.0, AdcModel.ideal(4), None) is None
    # an ideal ADC with a characterized read: the read alone, the ADC named as missing
    b4 = energy_per_inference(10.0, AdcModel.ideal(4), xb)
    assert b4["total_j"] == pytest.approx(2.0e-11, rel=1e-12, abs=0) and not b4["complete"]


def test_parts_scale_to_the_simulated_read_only_where_the_table_says_how():
    # tia: fixed vdd * iq * t_read = 1.8 V * 2 uA * 100 ns = 0.36 pJ, the rest ~ current
    xb = CrossbarReadEnergy({"array": 2e-12, "tia": 1e-12, "drivers": 0.4e-12}, {},
                            t_read_s=100e-9, scaling=SCALING, i_ref_a=10e-6,
                            active_rows_ref=32.0, tia_iq_a=2e-6, vdd_v=1.8)
    b = energy_per_inference(1.0, None, xb, mean_column_current_a=2.5e-6, mean_active_rows=8.0)
    got = {p["part"]: p["j_per_inference"] for p in b["parts"]}
    assert got["crossbar/array"] == pytest.approx(0.5e-12, rel=1e-12, abs=0)  # 2 pJ x 1/4
    assert got["crossbar/tia"] == pytest.approx(0.36e-12 + 0.64e-12 / 4, rel=1e-12, abs=0)
    assert got["crossbar/drivers"] == pytest.approx(0.1e-12, rel=1e-12, abs=0)  # x 8/32
    assert all("simulated" in p["scaling"] for p in b["parts"])
    # no simulated current / rows: per read at the pattern, and said so
    b0 = energy_per_inference(1.0, None, xb)
    assert b0["total_j"] == pytest.approx(3.4e-12, rel=1e-12, abs=0)
    assert all("per read at the characterized pattern" in p["scaling"] for p in b0["parts"])
    # a table that does not say how (no scaling attribute): per read even with a current
    per_read = CrossbarReadEnergy({"array": 2e-12}, {}, i_ref_a=10e-6)
    b2 = energy_per_inference(1.0, None, per_read, mean_column_current_a=2.5e-6)
    assert b2["parts"][0]["j_per_inference"] == pytest.approx(2e-12, rel=1e-12, abs=0)


def test_from_lookup_reads_the_read_energy_at_the_evaluated_corner(energy_lookups):
    xbar, adc = energy_lookups
    for corner in (("tt", 1.8, 27.0), ("ss", 1.62, 85.0)):
        hw = HardwareModel.from_lookup([xbar, adc], *corner, adc_bits=6)
        raw = _raw(xbar, CROSSBAR_READ_ENERGY, process=corner[0], vdd_v=corner[1],
                   temp_c=corner[2])
        assert hw.read_energy is not None
        for i, p in enumerate(XBAR_PARTS):
            assert hw.read_energy.parts_j[p] == pytest.approx(raw[i], rel=1e-12, abs=0)
        assert hw.read_energy.t_read_s == pytest.approx(100e-9) and hw.read_energy.rows == 64
        assert hw.read_energy.i_ref_a == pytest.approx(20e-6)
        assert hw.read_energy.vdd_v == pytest.approx(corner[1])
        assert hw.read_energy.rule("tia") == "quiescent+current"
        assert "test: array supply" in hw.read_energy.sources["array"]
        # no source attribute: the TIA's quiescent current is named as an assumption
        assert "assumption" in hw.read_energy.sources["tia"]
        assert corner[0] in hw.read_energy.sources["tia"]
    # a file without the table: None (reported as not characterized downstream)
    # (the plain synthetic crossbar file has no crossbar/read_energy_j)


def test_evaluate_energy_is_the_hand_count_times_the_tables(energy_lookups, tiny_digits_model,
                                                             synthetic_lookups):
    from nnsim.analog import AnalogConfig
    from nnsim.data import load_dataset
    from nnsim.evaluate import evaluate_chips
    from nnsim.results import to_json

    xbar, adc = energy_lookups
    model, _ = tiny_digits_model
    from torch.utils.data import Subset

    test = Subset(load_dataset("digits", "test"), range(4))
    # digits-tiny: 17 tokens, D 32, 2 blocks, 2 heads (d 16), MLP 64; 8 input planes,
    # 4 weight slices x 2 (differential), tiles of 64 rows (each K <= 64 -> 1 tile).
    # linears qkv 96 + proj 32 + fc1 64 + fc2 32 output columns, each read for every token;
    # attention Q K^T (17 columns) and S V (16 columns) per head.
    per_col = 8 * 4 * 2
    linears = 17 * per_col * (96 + 32 + 64 + 32)
    attn = 2 * (17 * per_col * 17 + 17 * per_col * 16)
    n_conv = 2 * (linears + attn)
    assert n_conv == 631040
    e_adc = _raw(adc, "adc/energy_j", process="tt", vdd_v=1.8, temp_c=27.0, bits=6)
    e_adc = float(np.nanmean(e_adc))
    e_xb = _raw(xbar, CROSSBAR_READ_ENERGY, process="tt", vdd_v=1.8, temp_c=27.0)

    hw = HardwareModel.from_lookup([xbar, adc], "tt", 1.8, 27.0, adc_bits=6)
    r = evaluate_chips(model, hw, AnalogConfig(), test, chips=1, seed=0, quiet=True)
    ep = to_json(r)["energy_per_inference"]
    assert r.conversions_per_inference == n_conv
    # bit mode records the simulated reads (tests/nnsim/test_kernel.py checks the current
    # against a recomputation); the crossbar parts scale by the table's stated rules:
    # array ~ I / pattern_i_ideal_a (20 uA), TIA = vdd tia_iq_a t_read + rest ~ I, drivers ~
    # active rows / pattern_active_rows (32)
    sim = ep["simulated_read"]
    i_col, n_rows = sim["mean_column_current_a"], sim["mean_active_rows"]
    assert sim["column_reads"] == n_conv * len(test) and 0 < i_col < 64 * hw.g_max_s * hw.v_read_v
    assert 0 < n_rows < 64
    fixed = min(e_xb[1], 1.8 * 2e-6 * 100e-9)
    xb_hand = [e_xb[0] * i_col / 20e-6, fixed + (e_xb[1] - fixed) * i_col / 20e-6,
               e_xb[2] * n_rows / 32.0]
    hand = n_conv * (e_adc + float(np.sum(xb_hand)))
    assert ep["total_j"] == pytest.approx(hand, rel=1e-9, abs=0)
    assert sum(p["j_per_inference"] for p in ep["parts"]) == pytest.approx(
        ep["total_j"], rel=1e-12, abs=0)
    xb_parts = {p["part"]: p for p in ep["parts"] if p["part"].startswith("crossbar/")}
    assert xb_parts["crossbar/array"]["j_per_inference"] == pytest.approx(
        n_conv * xb_hand[0], rel=1e-9, abs=0)
    assert "simulated mean column current" in xb_parts["crossbar/array"]["scaling"]
    assert ep["complete"] and all(p["source"] for p in ep["parts"])

    # the plain synthetic crossbar file (no read-energy table): ADC only, said so
    hw0 = HardwareModel.from_lookup([synthetic_lookups[0], adc], "tt", 1.8, 27.0, adc_bits=6)
    assert hw0.read_energy is None
    r0 = evaluate_chips(model, hw0, AnalogConfig(), test, chips=1, seed=0, quiet=True)
    ep0 = r0.energy_per_inference
    assert not ep0["complete"] and ep0["not_characterized"] == [CROSSBAR_NOT_CHARACTERIZED]
    assert ep0["total_j"] == pytest.approx(n_conv * e_adc, rel=1e-9, abs=0)
    assert math.isclose(ep0["total_j"], r0.adc_energy_j_per_inference, rel_tol=1e-9)
