"""ADC energy by part: closed forms against first principles, parts summing to the total."""

from __future__ import annotations

import numpy as np
import pytest

from characterization.adc import SarInstance
from characterization.adc.characterize import ENERGY_PARTS, ENERGY_SOURCES
from characterization.adc.logic import sar_logic_energy_j, sar_logic_events


def _ideal(bits: int) -> SarInstance:
    caps = 10e-15 * 2.0 ** np.arange(bits)
    return SarInstance(bits, caps, 10e-15, 0.0, 1.0)


def test_sampling_energy_matches_charge_balance():
    # previous input 0 -> final code 0, residual 0: sampling vin charges C_s from 0 to vin
    inst = _ideal(4)
    vin = np.array([0.25, 0.5, 0.9])
    e = inst.sampling_energy_j(vin, np.zeros(3), 1.8)
    assert np.allclose(e, 1.8 * inst.c_s * vin, rtol=1e-12)
    # previous full-scale input: the bottom plates come down from vref, charge flows back
    # into the driver (sinking costs nothing): zero from vdd for a small new input
    e2 = inst.sampling_energy_j(np.array([0.01]), np.array([0.99]), 1.8)
    assert e2[0] == 0.0


def test_sar_logic_counts_events_per_conversion():
    # (bits + 2) cycles x (bits + 2 ring + bits register) flip-flops; toggles 2(N+2) + 2N
    assert sar_logic_events(6) == (8 * 14, 16 + 12)
    assert sar_logic_energy_j(6, 40e-15, 30e-15) == pytest.approx(
        112 * 40e-15 + 28 * 30e-15, rel=1e-12, abs=0)


@pytest.mark.ngspice
def test_flip_flop_toggle_energy_grows_by_half_cv2_of_added_load():
    # independent reference: a toggling output charges its load from vdd once per two
    # toggles, so 20 fF more load costs 0.5 * 20 fF * vdd^2 more per toggle
    from characterization.adc._netlists import dff_tb_deck, read_dff_energy
    from characterization.adc.comparator import shared_engine

    vdd = 1.8
    e = []
    for c in (2e-15, 22e-15):
        plot = shared_engine().simulate(dff_tb_deck("tt", vdd, 27.0, cycles=6,
                                                    c_load_f=c))["tran1"]
        e_clk, e_tog, toggles = read_dff_energy(plot, vdd, 4e-9)
        assert toggles == 4
        e.append((e_clk, e_tog))
    # (abs=0: pytest's default absolute tolerance, 1e-12, would swallow femtojoules)
    assert e[1][1] - e[0][1] == pytest.approx(0.5 * 20e-15 * vdd**2, rel=0.15, abs=0)
    assert e[1][0] == pytest.approx(e[0][0], rel=0.05, abs=0)  # clock events: q's load unseen
    assert 5e-15 < e[0][0] < 200e-15  # tens of fF of clocked gates x vdd^2


def test_every_part_names_its_source():
    assert set(ENERGY_SOURCES) == set(ENERGY_PARTS)
    for p, src in ENERGY_SOURCES.items():
        assert src.split(":")[0] in ("SPICE", "formula", "estimate"), p
    assert "XSPICE" in ENERGY_SOURCES["sar_logic"]  # says why the SAR deck cannot give it


def test_evaluate_json_reports_energy_per_inference_by_named_part(
        tiny_digits_model, synthetic_lookups, tmp_path, capsys):
    import json
    from pathlib import Path

    from characterization.lookup import Table, read_lookup, write_lookup
    from imc.cli import main

    # the synthetic ADC file + an energy breakdown table in the real format (the writer API)
    lf = read_lookup(synthetic_lookups[1])
    e = lf["adc/energy_j"]
    frac = np.array([0.4, 0.3, 0.2, 0.1])
    eb = Table("adc/energy_breakdown_j", e.data[..., None] * frac, (*e.dims, "part"),
               {**e.coords, "part": np.asarray(ENERGY_PARTS)}, "J",
               {**e.coord_units, "part": "1"},
               {**e.attrs, **{f"source_{p}": ENERGY_SOURCES[p] for p in ENERGY_PARTS}})
    adc = write_lookup(tmp_path / "adc.h5", [*lf.tables.values(), eb], lf.provenance)
    _, meta = tiny_digits_model
    assert main(["evaluate", "--model", "digits-tiny", "--cache-dir",
                 str(Path(meta["path"]).parent), "--lookup", str(synthetic_lookups[0]),
                 "--lookup", str(adc), "--process", "tt", "--vdd-v", "1.8", "--temp-c", "27",
                 "--bits", "6", "--chips", "1", "--limit", "20", "--quiet", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    # nnsim.energy's breakdown (tests/nnsim/test_energy.py checks it against hand counts)
    from nnsim.energy import CROSSBAR_NOT_CHARACTERIZED

    ep = r["energy_per_inference"]
    parts = {p["part"]: p for p in ep["parts"]}
    assert set(parts) == {f"adc/{p}" for p in ENERGY_PARTS}
    assert ep["total_j"] == pytest.approx(r["adc_energy_j_per_inference"], rel=1e-9, abs=0)
    assert sum(p["j_per_inference"] for p in parts.values()) == pytest.approx(
        ep["total_j"], rel=1e-12, abs=0)
    assert parts["adc/comparator"]["j_per_inference"] == pytest.approx(
        0.4 * ep["total_j"], rel=1e-9, abs=0)
    assert all(p["source"].endswith(ENERGY_SOURCES[k[4:]]) for k, p in parts.items())
    assert ep["not_characterized"] == [CROSSBAR_NOT_CHARACTERIZED] and not ep["complete"]
