"""Crossbar characterization: the k fit on synthetic data, reductions, a tiny end-to-end run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from characterization.crossbar.reduce import (
    XFER_GRID,
    estimate_write_noise,
    fit_write_noise_k,
    reduce_margin,
    reduce_transfer,
    reduce_write,
    write_noise_draw,
)
from characterization.crossbar.run import characterize_crossbar, make_plan
from characterization.lookup import read_lookup

G_MIN, G_MAX = 1e-7, 1e-5


@pytest.mark.parametrize("k_true", [0.02, 0.1, 0.3])
def test_k_is_fitted_back_from_synthetic_clipformer_noise(k_true):
    rng = np.random.default_rng(7)
    levels = G_MIN + np.arange(4) / 3 * (G_MAX - G_MIN)
    g = np.repeat(levels, 1500)
    gp = g + k_true * np.sqrt((g - G_MIN) * (G_MAX - G_MIN)) * rng.standard_normal(g.size)
    k, se, r2 = fit_write_noise_k(g, gp, G_MIN, G_MAX)
    assert se == pytest.approx(k / np.sqrt(2 * 4500), rel=1e-9)   # level 0 carries no info
    assert abs(k - k_true) < 4 * se
    assert r2 > 0.995


def test_bias_and_zero_mean_k_are_told_apart():
    """A per-level programming bias is returned as bias, not folded into the zero-mean k; the
    target-centred k carries it (its second moment)."""
    rng = np.random.default_rng(3)
    levels = G_MIN + np.arange(4) / 3 * (G_MAX - G_MIN)
    bias = np.array([0.0, 2e-6, -1e-6, -3e-7])
    g = np.repeat(levels, 4000)
    k_true = 0.05
    gp = write_noise_draw(g, k_true, rng.standard_normal(g.size), G_MIN, G_MAX) \
        + np.repeat(bias, 4000)
    est = estimate_write_noise(g, gp, G_MIN, G_MAX, center="mean")
    np.testing.assert_allclose(est["bias_s"], bias, atol=3e-8)
    assert abs(est["k"] - k_true) < 4 * est["k_stderr"]
    np.testing.assert_allclose(est["k_level"][1:], k_true, rtol=0.05)
    assert np.isnan(est["k_level"][0]) and list(est["n_level"]) == [4000] * 4
    k_t = estimate_write_noise(g, gp, G_MIN, G_MAX)["k"]
    scale2 = (levels[1:] - G_MIN) * (G_MAX - G_MIN)
    assert k_t == pytest.approx(np.sqrt(k_true**2 + np.mean(bias[1:] ** 2 / scale2)), rel=0.02)


def test_k_fit_flags_non_gaussian_deviations_and_too_few_samples():
    g = np.full(2000, G_MIN + 0.5 * (G_MAX - G_MIN))
    rng = np.random.default_rng(1)
    gp = g + 1e-7 * np.sign(rng.standard_normal(g.size))        # two-point deviations
    _, _, r2 = fit_write_noise_k(g, gp, G_MIN, G_MAX)
    assert r2 < 0.9
    assert np.isnan(fit_write_noise_k([G_MIN], [G_MIN], G_MIN, G_MAX)[0])


def test_transfer_binning_and_margin():
    rel = np.array([0.02, 0.11, 0.12, 0.49, 0.93])
    ratio = np.array([1.0, 0.9, 0.8, 0.7, 0.6])
    out, filled = reduce_transfer(rel, ratio)
    assert out.shape == (XFER_GRID.size, 2)
    assert out[1, 0] == pytest.approx(0.85) and out[1, 1] == pytest.approx(np.std([0.9, 0.8],
                                                                                  ddof=1))
    assert filled == XFER_GRID.size - 4 and np.isfinite(out).all()
    i_lvl = np.array([[0.0, 1.0, 2.0, 3.1], [0.0, 1.0, 2.0, 2.9]]) * 1e-6
    m = reduce_margin(i_lvl, np.full_like(i_lvl, 1e-8))
    assert m[0] == pytest.approx(1e-6)
    assert m[2] == pytest.approx(m[0] / m[1])
    st = reduce_write(np.array([[1.0, 2.0, 3.0], [4.0, np.nan, 6.0]]), np.array([2.0, 5.0]))
    assert st[1, :3] == pytest.approx([5.0, 5.0, np.std([4, 6], ddof=1)])


def test_plan_errors_name_the_key(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text('preset = "quick"\nrowz = 3\n')
    with pytest.raises(ValueError, match=r"x.toml.*rowz"):
        make_plan(config=bad)
    with pytest.raises(ValueError, match="unknown preset"):
        make_plan("huge")
    bad.write_text('process = "tt"\n')
    with pytest.raises(ValueError, match=r"x.toml: process must be a non-empty list"):
        make_plan(config=bad)
    for over, msg in (({"process": ["tt", "xx"]}, r"process \['xx'\] unknown"),
                      ({"vdd_v": [18]}, r"vdd_v values \[18.0\] outside"),
                      ({"temp_c": [27, 27]}, "repeated"), ({"mc": 0}, "mc must be"),
                      ({"column": {"rows": 8}}, "column.rows must be 16..256"),
                      ({"column": {"r_on": 1}}, r"unknown column parameters \['r_on'\]")):
        with pytest.raises(ValueError, match=msg):
            make_plan(config=over)


@pytest.fixture(scope="module")
def tiny_lookup(tmp_path_factory):
    """One small real characterization (16 rows, ss/ff x 1.8 V x 27/85 degC, one chip per
    corner with 10 patterns per transfer bin), shared by the tests of this module."""
    tmp = tmp_path_factory.mktemp("xbar")
    plan = make_plan(config={"process": ["ss", "ff"], "vdd_v": [1.8], "temp_c": [27.0, 85.0],
                             "mc": 1, "mc_write": 3, "patterns": 10,
                             "column": {"rows": 16}, "write": {"cells_per_level": 1}})
    summary = characterize_crossbar(plan, tmp / "xbar.h5", jobs=1, quiet=True,
                                    plots=tmp / "plots")
    return plan, summary, tmp


@pytest.mark.ngspice
def test_tiny_characterization_writes_the_contract_tables(tiny_lookup):
    plan, summary, tmp_path = tiny_lookup
    lf = read_lookup(summary["path"])
    assert summary["n_failed"] == 0 and lf.failures == []
    names = {"crossbar/cell_read", "crossbar/read_transfer", "crossbar/read_noise",
             "crossbar/write_noise", "crossbar/write_verify_failure",
             "crossbar/write_noise_samples", "crossbar/write_noise_fit",
             "crossbar/sensing_margin", "crossbar/read_energy_j"}
    assert names <= set(lf.tables)
    for n in names:
        t = lf[n]
        assert t.dims[:3] == ("process", "vdd_v", "temp_c")
        assert t.attrs["rows"] == 16 and t.attrs["g_max_s"] == pytest.approx(1e-5)
        assert np.isfinite(t.data).all(), n
    assert lf["crossbar/write_noise"].dims[3:] == ("mode", "level", "stat")
    fit = lf["crossbar/write_noise_fit"].sel(process="ss", vdd_v=1.8, temp_c=27.0)
    k_single, k_verify = fit.data[0, 0], fit.data[1, 0]
    assert 0 < k_verify < k_single                     # write-verify narrows the distribution
    lv = lf["crossbar/write_noise_levels"]
    assert lv.dims[3:] == ("mode", "level", "stat")
    assert np.isfinite(lv.sel(stat="bias_s").data).all()
    assert np.isnan(lv.sel(stat="k").data[..., 0]).all()        # no k at G_min
    assert np.isfinite(lv.sel(stat="k").data[..., 1:]).all()
    vf = lf["crossbar/write_verify_failure"].data
    assert ((vf >= 0) & (vf <= 1)).all() and (vf[..., 0] == 0).all()
    from nnsim.hardware import HardwareModel

    hw = HardwareModel.from_lookup(summary["path"], "ss", 1.8, 27.0, adc_bits=None)
    fit_ss = lf["crossbar/write_noise_fit"].sel(process="ss", vdd_v=1.8, temp_c=27.0)
    for m in ("single", "verify"):
        k0 = hw.write_noise_k(m, zero_mean=True)
        assert k0 == pytest.approx(float(fit_ss.sel(mode=m, stat="k_zero_mean").data))
        assert k0 <= hw.write_noise_k(m) + 1e-12     # the bias is out of the zero-mean k
    # the write word line (compliance) is recorded: in provenance and on the write tables
    wl = lf.provenance["write_word_line"]
    assert wl["wl_frac"] == plan.write.wl_frac == 0.75 and wl["vdd_v"] == [1.8]
    assert wl["wl_v"] == [pytest.approx(1.35)]
    assert lf["crossbar/write_noise"].attrs["wl_v"] == [pytest.approx(1.35)]  # JSON, decoded
    assert lf["crossbar/write_noise"].attrs["wl_v_levels"] == [[pytest.approx(1.35)] * 3]
    assert lf["crossbar/write_verify_failure"].attrs["wl_frac"] == 0.75
    assumed = lf.provenance["assumptions"]["device_variability"]
    assert assumed["sigma_c2c"] == plan.write.sigma_c2c
    xfer = lf["crossbar/read_transfer"]
    assert xfer.attrs["patterns_per_bin_min"] >= 10 and xfer.attrs["bins_interpolated"] == 0
    assert xfer.sel(process="ss", vdd_v=1.8, temp_c=27.0).data[-1, 0] < \
        xfer.sel(process="ff", vdd_v=1.8, temp_c=27.0).data[-1, 0]        # ss loses more
    noise = lf["crossbar/read_noise"].data
    assert (noise > 0).all() and (noise < 1e-6).all()
    assert lf.provenance["plan"]["column"]["rows"] == 16
    assert lf.provenance["rram_fit"] is None and lf.provenance["rram_lib_default"] is True
    assert len(list((tmp_path / "plots").glob("*.png"))) == 4


def _fitted_lib(tmp_path, **values):
    """A copy of netlists/rram/rram.lib as ``spicebridge fit memristor`` writes it: new
    defaults in the ``.subckt rram`` header and the fit provenance in a comment line."""
    import re

    from characterization.crossbar.netlist import rram_lib_path
    from characterization.fitting.memristor import _PROVENANCE_TAG

    text = rram_lib_path().read_text(encoding="utf-8")
    for k, v in values.items():
        text, n = re.subn(rf"(?<![\w.]){k}=[^\s]+", f"{k}={v}", text, count=1)
        assert n == 1, k
    prov = {"values": values, "provenance": {"data_sha256": "ab" * 32}, "converged": True}
    path = tmp_path / "fitted.lib"
    path.write_text(f"* fitted.lib: rram model fitted\n{_PROVENANCE_TAG}{json.dumps(prov)}\n"
                    + text, encoding="utf-8")
    return path, prov


def test_fitted_model_sets_the_plan_and_its_provenance(tmp_path):
    from characterization.crossbar.netlist import column_deck, rram_lib_path
    from characterization.crossbar.run import rram_provenance

    lib, prov = _fitted_lib(tmp_path, ron="50k", roff="4meg", v0="0.2")
    plan = make_plan("quick", model=lib)
    assert plan.column.r_on_ohm == pytest.approx(50e3) and plan.column.on_off == \
        pytest.approx(80.0)
    assert plan.column.rram_lib == str(lib.resolve()) and plan.name.endswith("fitted.lib")
    assert f'.include "{lib.resolve()}"' in column_deck(plan.column)
    p = rram_provenance(plan.column)
    assert p["rram_fit"] == prov and p["rram_lib_default"] is False
    assert p["rram_lib"] == str(lib.resolve()) and len(p["rram_lib_sha256"]) == 64
    # the plan's own r_on wins; TOML paths are relative to the TOML file
    toml = tmp_path / "plan.toml"
    toml.write_text('[column]\nrram_lib = "fitted.lib"\nr_on_ohm = 200e3\n')
    plan2 = make_plan(config=toml)
    assert plan2.column.rram_lib == str(lib.resolve())
    assert plan2.column.r_on_ohm == 200e3 and plan2.column.on_off == pytest.approx(80.0)
    d = rram_provenance(make_plan("quick").column)
    assert d["rram_fit"] is None and d["rram_lib_default"] is True
    assert d["rram_lib"] == str(rram_lib_path())


def test_unusable_model_library_is_named_with_file_and_line(tmp_path):
    from characterization.crossbar.netlist import rram_lib_path

    with pytest.raises(ValueError, match=r"nope\.lib: memristor library not found"):
        make_plan(model=tmp_path / "nope.lib")
    bad = tmp_path / "bad.lib"
    bad.write_text("* my model\n.subckt rram a b params: ron=1k\n.ends\n")
    with pytest.raises(ValueError, match=r"bad.lib:2: '.subckt rram' must be"):
        make_plan(model=bad)
    text = rram_lib_path().read_text(encoding="utf-8")
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.lower().startswith(".subckt rram"))
    bad.write_text("\n".join(ln for ln in lines if not ln.startswith("Vdk ")) + "\n")
    with pytest.raises(ValueError, match=rf"bad.lib:{start + 1}-\d+: .*\['vdk'\]"):
        make_plan(model=bad)
    bad.write_text(text.replace("ron=100k", "ron={rx}"))
    with pytest.raises(ValueError, match=r"bad.lib: .* ron=\{rx\}.*column.r_on_ohm"):
        make_plan(model=bad)
    assert make_plan(config={"column": {"r_on_ohm": 1e5, "on_off": 100}}, model=bad
                     ).column.r_on_ohm == 1e5


@pytest.mark.ngspice
def test_fitted_model_is_what_the_column_simulates(tmp_path, shared_engine):
    from characterization.crossbar.netlist import column_deck

    lib, _ = _fitted_lib(tmp_path, v0="0.2")
    cols = {"rows": 16, "access": "ideal", "tia": "ideal"}
    i_a = {}
    for name, model in (("default", None), ("fitted", lib)):
        cfg = make_plan(config={"column": cols}, model=model).column
        deck = column_deck(cfg, g_s=[cfg.g_max_s] * cfg.rows)
        i_a[name] = float(shared_engine.simulate(deck).vector("i(vclamp)")[0])
    # sinh read I-V: v0 = 0.2 V reads sinh(1)*0.2 / (0.5*sinh(0.4)) = 1.144x at 0.2 V
    assert 1.10 < i_a["fitted"] / i_a["default"] < 1.15


@pytest.mark.ngspice
def test_a_model_that_does_not_simulate_is_refused_before_the_sweep(tmp_path):
    from characterization.crossbar.run import check_rram_model

    lib, _ = _fitted_lib(tmp_path, ron="50k")
    assert check_rram_model(make_plan(model=lib).column) == pytest.approx(
        1e-6 * (0.1 + 0.5 * (20 - 0.1)) * np.sinh(0.4) / 0.4, rel=1e-3)  # G(w=0.5) v0 sinh
    broken = tmp_path / "broken.lib"
    broken.write_text(lib.read_text().replace("sinh(min", "sinhx(min"))
    with pytest.raises(ValueError, match=r"broken\.lib: the memristor model does not simulate"
                       r".*deck .*\.cir.*sinhx"):
        characterize_crossbar(make_plan(model=broken), tmp_path / "x.h5", quiet=True)
    assert not (tmp_path / "x.h5.raw").exists()
    scaled = tmp_path / "scaled.lib"  # a model whose read current ignores ron/roff's scale
    scaled.write_text(lib.read_text().replace("* {v0}*( sinh", "* 100*{v0}*( sinh"))
    with pytest.raises(ValueError, match=r"scaled\.lib: one cell at w0=0.5 reads G = .* outside"):
        check_rram_model(make_plan(model=scaled).column)


def _nnsim_column_current(hw, levels: np.ndarray, active: np.ndarray) -> float:
    """The column current the simulator computes for one pattern (no noise, no ADC): its own
    readout (``nnsim.analog.readout``) on one column, the chip's transfer spread at 0."""
    import torch

    from nnsim.analog import AnalogConfig, Array, readout

    cfg = AnalogConfig(adc=False, read_noise=False, nonlinearity=True, adc_noise=False)
    s_lv = torch.tensor([[[float(levels[active].sum())]]], dtype=torch.float64)
    n_act = torch.tensor([[[float(active.sum())]]], dtype=torch.float64)
    cells = torch.zeros((1, len(levels), 1), dtype=torch.float64)
    arr = Array(cells, None, None, torch.ones(1), torch.ones(1, 1), 1, len(levels),
                {"spread_z": torch.zeros((1, 1, 1), dtype=torch.float64)})
    out = readout(s_lv, n_act, arr, cfg, hw, None, None)  # level units, G_min offset removed
    g0 = hw.g_min_s * (hw.levels - 1) / (hw.g_max_s - hw.g_min_s)
    return float(out.reshape(-1)[0] + g0 * n_act.reshape(-1)[0]) * hw.unit_a


@pytest.mark.ngspice
def test_simulator_column_current_equals_spice_on_the_same_pattern(tiny_lookup, shared_engine):
    """All-HRS, all-LRS and random patterns at 27 and 85 degC and two corners: the current
    nnsim computes from the lookup file equals SPICE's for that column within 2 %."""
    from characterization.crossbar.netlist import column_deck
    from nnsim.hardware import HardwareModel

    plan, summary, _ = tiny_lookup
    cfg = plan.column
    n = cfg.rows
    rng = np.random.default_rng(11)
    pats = {"all-HRS": (np.zeros(n, int), np.ones(n, bool)),
            "all-LRS": (np.full(n, 3), np.ones(n, bool))}
    for j in range(2):
        pats[f"random{j}"] = (rng.integers(0, 4, n), rng.random(n) < 0.6)
    rows = []
    for corner in ("ss", "ff"):
        for temp in (27.0, 85.0):
            hw = HardwareModel.from_lookup(summary["path"], corner, 1.8, temp, adc_bits=None)
            for name, (lv, act) in pats.items():
                deck = column_deck(cfg, corner, vdd_v=1.8, temp_c=temp,
                                   g_s=list(np.asarray(cfg.level_g_s)[lv]), active=list(act))
                i_spice = -float(shared_engine.simulate(deck).vector("v(out)")[0]) / cfg.r_f_ohm
                i_sim = _nnsim_column_current(hw, lv.astype(float), act)
                rows.append((corner, temp, name, i_spice, i_sim))
    for corner, temp, name, i_spice, i_sim in rows:
        assert i_sim == pytest.approx(i_spice, rel=0.02), (corner, temp, name, i_spice, i_sim)
    # temperature reaches the current (HRS conductance rises ~1.9x from 27 to 85 degC)
    hrs = {(c, t): s for c, t, nm, s, _ in rows if nm == "all-HRS"}
    assert hrs[("ss", 85.0)] > 1.5 * hrs[("ss", 27.0)]


@pytest.mark.ngspice
def test_read_noise_is_above_the_shot_noise_floor(tiny_lookup):
    """sigma >= sqrt(2 q I B) at every current (B = pi/2 f_sense, the single-pole TIA's noise
    bandwidth), and the noise that grows with the current grows at least as shot noise does:
    sigma(I)^2 - sigma(I0)^2 >= 2 q (I - I0) B (a read noise without shot noise, or half of
    it, fails this)."""
    plan, summary, _ = tiny_lookup
    q = 1.602176634e-19
    b_hz = 0.5 * np.pi * plan.column.f_sense_hz
    t = read_lookup(summary["path"])["crossbar/read_noise"]
    i_col = np.asarray(t.coords["i_col_a"], float)
    for corner in ("ss", "ff"):
        for temp in (27.0, 85.0):
            sig = np.asarray(t.sel(process=corner, vdd_v=1.8, temp_c=temp).data, float)
            # i_col_a is the ideal current at tnom, at or above the sensed one: a stricter floor
            assert np.all(sig >= np.sqrt(2 * q * i_col * b_hz)), (corner, temp)
            d_var = sig[1:] ** 2 - sig[0] ** 2
            assert np.all(d_var >= 2 * q * (i_col[1:] - i_col[0]) * b_hz), (corner, temp)


@pytest.mark.ngspice
def test_read_energy_equals_independent_references(tiny_lookup, shared_engine):
    """crossbar/read_energy_j against references computed apart from the energy transient:
    array = v_read * I_col * t_read with I_col from a fresh deck's .op of the same pattern;
    tia = vdd * (tia_iq_a + I_col) * t_read; drivers = active rows * vdd * the gate charge
    of one access transistor (a separate one-device transient). Within 10 % (2x fails;
    ``abs=0``: pytest.approx's default absolute tolerance of 1e-12 would swallow picojoules)."""
    from characterization.crossbar.netlist import NFET, _models, column_deck
    from characterization.crossbar.points import ENERGY_PARTS, energy_pattern

    plan, summary, _ = tiny_lookup
    cfg = plan.column
    t = read_lookup(summary["path"])["crossbar/read_energy_j"]
    assert t.dims == ("process", "vdd_v", "temp_c", "part") and t.units == "J"
    assert list(t.coords["part"]) == list(ENERGY_PARTS) == ["array", "tia", "drivers"]
    assert t.attrs["t_read_s"] == cfg.t_read_s and t.attrs["rows"] == cfg.rows
    g, act = energy_pattern(cfg, 0)  # mc = 1: the table holds chip 0's pattern
    assert t.attrs["pattern_active_rows"] == act.sum()
    vdd, t_rd = 1.8, cfg.t_read_s
    for corner, temp in (("ss", 27.0), ("ff", 85.0)):
        e = t.sel(process=corner, vdd_v=vdd, temp_c=temp).data
        deck = column_deck(cfg, corner, vdd_v=vdd, temp_c=temp, g_s=list(g), active=list(act))
        i_col = -float(shared_engine.simulate(deck).vector("v(out)")[0]) / cfg.r_f_ohm
        assert e[0] == pytest.approx(cfg.v_read_v * i_col * t_rd, rel=0.10, abs=0), (corner, temp)
        assert e[1] == pytest.approx(vdd * (cfg.tia_iq_a + i_col) * t_rd, rel=0.10, abs=0)
        t_end = 2e-9 + t_rd
        gate = "\n".join([
            "* gate charge of one access transistor", *_models(cfg, corner), f".temp {temp}",
            f"Vg g 0 PWL(0 0 1n 0 {1e-9 + cfg.t_wl_edge_s:.6g} {vdd} {t_end:.6g} {vdd})",
            f"Xa 0 g 0 0 {NFET} W={cfg.w_um} L={cfg.l_um}",
            f".tran 0.05n {t_end:.6g} 0 1n", ".end"]) + "\n"
        r = shared_engine.simulate(gate)["tran1"]
        q = -float(np.trapezoid(r["i(vg)"].real, r["time"].real))
        assert 0.2e-15 * vdd < q < 5e-15 * vdd  # ~ Cox W L + overlaps: about a femtofarad
        assert e[2] == pytest.approx(act.sum() * vdd * q, rel=0.10, abs=0), (corner, temp)


@pytest.mark.ngspice
def test_rows_axis_tables_are_each_columns_spice(tmp_path, shared_engine):
    """A plan with a rows axis (16 and 32 rows, one corner, through real ngspice): the column
    tables get a rows dimension; nnsim reads exactly the tile's column, and the all-LRS
    current it computes equals SPICE's for a column of that height within 1 % (reading the
    other height's slice misses by more); other tile heights are refused naming both."""
    from characterization.crossbar.netlist import column_deck
    from nnsim.errors import HardwareModelError
    from nnsim.hardware import HardwareModel

    plan = make_plan(config={"process": ["tt"], "vdd_v": [1.8], "temp_c": [27.0], "mc": 1,
                             "mc_write": 1, "patterns": 10, "rows": [16, 32],
                             "column": {"rows": 16}, "write": {"cells_per_level": 1}})
    s = characterize_crossbar(plan, tmp_path / "xbar.h5", jobs=1, quiet=True)
    lf = read_lookup(s["path"])
    assert s["n_failed"] == 0
    for name in ("crossbar/read_transfer", "crossbar/read_noise", "crossbar/sensing_margin",
                 "crossbar/read_energy_j"):
        assert lf[name].dims[:4] == ("process", "vdd_v", "temp_c", "rows"), name
        assert [int(r) for r in lf[name].coords["rows"]] == [16, 32]
    assert "rows" not in lf["crossbar/write_noise_fit"].dims
    i_spice, i_sim = {}, {}
    hws = {r: HardwareModel.from_lookup(s["path"], "tt", 1.8, 27.0, adc_bits=None, rows=r)
           for r in (16, 32)}
    for r, hw in hws.items():
        assert hw.rows == r and hw.rows_axis == (16, 32)
        hw.check_tile_rows(r)
        cfg = plan.for_rows(r).column
        assert hw.read_i_a.max() <= cfg.i_full_scale_a * (1 + 1e-9)
        deck = column_deck(cfg, "tt", vdd_v=1.8, temp_c=27.0, g_s=[cfg.g_max_s] * r,
                           active=[True] * r)
        i_spice[r] = -float(shared_engine.simulate(deck).vector("v(out)")[0]) / cfg.r_f_ohm
        lv, act = np.full(r, 3.0), np.ones(r, bool)
        i_sim[r] = _nnsim_column_current(hw, lv, act)
        assert i_sim[r] == pytest.approx(i_spice[r], rel=0.01), (r, i_spice[r], i_sim[r])
    # the 32-row column loses more to IR drop than the 16-row one: the slices differ
    ratio = {r: i_spice[r] / (r * hws[r].cell_g_t_s[-1] * hws[r].v_read_v) for r in (16, 32)}
    assert ratio[32] < ratio[16] - 0.02
    with pytest.raises(HardwareModelError, match=r"tile_rows=32 .* 16-row column .*rows=32"):
        hws[16].check_tile_rows(32)
    with pytest.raises(HardwareModelError, match=r"tile rows 64 not characterized.*\[16, 32\]"):
        HardwareModel.from_lookup(s["path"], "tt", 1.8, 27.0, adc_bits=None, rows=64)


@pytest.mark.ngspice
def test_write_compliance_through_the_word_line_follows_vdd():
    """With the write word line at wl_frac * vdd (0.55: the access transistor's saturation
    current is the SET compliance) and pulses tuned once at tt / 1.8 V / 27 degC, a chip at
    1.62 V programs levels 2 and 3 lower than one at 1.98 V (measured 4.96 / 5.74 uS against
    8.28 / 9.63 uS); with the word line at vdd (wl_frac = 1, the default) it is vdd."""
    from characterization.crossbar import points
    from characterization.crossbar.netlist import ColumnConfig, WriteConfig, write_bench_deck
    from characterization.sweep import SweepPoint

    cfg = ColumnConfig(rows=16)
    deck, _ = write_bench_deck(cfg, WriteConfig(cells_per_level=1), "tt",
                               single_widths_s=[0, 1e-8, 2e-8, 3e-8], n_pulses=4, vdd_v=1.62)
    assert "Vwl0 wl0 0 DC 1.62\n" in deck
    wcfg = WriteConfig(cells_per_level=1, calibrate="nominal", wl_frac=0.55)
    ctx = {"column": cfg.to_dict(), "write": wcfg.to_dict(), "vdd_nom_v": 1.8}
    g = {}
    for vdd in (1.62, 1.98):
        pt = SweepPoint(0, {"process": "tt", "vdd_v": vdd, "temp_c": 27.0}, 0, 5, ctx)
        g[vdd] = points.write_point(pt)["g_prog_s"][0, :, 0]  # single-shot, per level
    assert np.all(g[1.62][2:] < 0.85 * g[1.98][2:]), (g[1.62], g[1.98])
    assert np.all(g[1.98][1:] > g[1.98][:-1])  # still four ordered levels at 1.98 V


@pytest.mark.ngspice
def test_preset_word_line_limits_the_set_and_reaches_every_level():
    """The presets' write word line (``run.WL_FRAC`` x vdd) is a compliance: the access
    transistor slows the nominal cell's SET at fs / 1.62 V / 27 degC (time to the top level
    >= 1.3x the one with the word line at vdd; measured 312 vs 193 ns), and at the default
    grid's worst point (fs / 1.62 V / -40 degC) the nominal cell still reaches the top level
    within 3x the unlimited time (measured 2.99 vs 1.65 us), so ``calibrate = "per_corner"``
    calibrates everywhere with a bounded verify budget; 0.05 lower it reaches it only at its
    ceiling (> 5x: 24 us), what makes WL_FRAC the lowest word line with that margin. A word
    line 2x higher (the WL at vdd) limits nothing, 2x lower reaches no level."""
    from characterization.crossbar.compliance import set_trace
    from characterization.crossbar.netlist import ColumnConfig, WriteConfig
    from characterization.crossbar.run import PRESETS, WL_FRAC

    assert all(p["write"]["wl_frac"] == WL_FRAC for p in PRESETS.values())
    cfg = ColumnConfig(rows=64)

    def t_top(wl, corner, temp):
        r = set_trace(cfg, WriteConfig(wl_frac=wl), corner, 1.62, temp, t_max_s=32e-6)
        return r["t_level_s"][-1]

    hot = {wl: t_top(wl, "fs", 27.0) for wl in (WL_FRAC, 1.0)}
    assert hot[WL_FRAC] > 1.3 * hot[1.0], hot
    cold = {wl: t_top(wl, "fs", -40.0) for wl in (WL_FRAC, round(WL_FRAC - 0.05, 2), 1.0)}
    assert cold[WL_FRAC] is not None and cold[WL_FRAC] < 3 * cold[1.0], cold
    lower = cold[round(WL_FRAC - 0.05, 2)]
    assert lower is None or lower > 5 * cold[1.0], cold


@pytest.mark.ngspice
def test_per_level_word_lines_set_the_levels():
    """``write.wl_frac_levels``: each level written with its own word line (compliance as the
    multilevel knob). Near the compliance ceiling (tt / 1.8 V / 27 degC, WL 0.45 x vdd: the
    nominal cell saturates at w = 0.36 over level 1's 1/3) the SET to level 1 takes > 10x the
    time it takes at the common 0.7 x vdd (measured ~1.2 us vs 53 ns); the bench writes each
    level at its word line (a level-1 cell under that 1.2 us pulse at 0.7 x vdd would program
    to ~10 uS, not ~3.4); a word line below the level's ceiling (0.44: w <= 0.29) is refused
    naming the level and the word line."""
    from characterization.crossbar import points
    from characterization.crossbar.netlist import ColumnConfig, WriteConfig, write_bench_deck
    from characterization.sweep import SweepPoint

    cfg = ColumnConfig(rows=64)
    per = WriteConfig(cells_per_level=1, wl_frac=0.7, wl_frac_levels=[0.45, 0.49, 0.7])
    assert per.wl_frac_levels == (0.45, 0.49, 0.7) and per.to_dict()["wl_frac_levels"] == [
        0.45, 0.49, 0.7]
    assert "wl_frac_levels" not in WriteConfig().to_dict()  # older plans keep their hashes
    common = points.calibrate_write(cfg, replace(per, wl_frac_levels=()), 1.8)["single_widths_s"]
    cal = points.calibrate_write(cfg, per, 1.8)
    w = cal["single_widths_s"]
    assert w[1] > 10 * common[1] and w[2] > 5 * common[2], (w, common)
    assert w[3] == pytest.approx(common[3])  # the top level's word line is the common one
    deck, layout = write_bench_deck(cfg, per, "tt", single_widths_s=w, n_pulses=4, vdd_v=1.8)
    for j, (_mode, level, _copy) in enumerate(layout["cells"]):
        assert f"Vwl{j} wl{j} 0 DC {per.wl_frac_of(level) * 1.8:.12g}\n" in deck
    ctx = {"column": cfg.to_dict(), "write": per.to_dict(), "vdd_nom_v": 1.8}
    pt = SweepPoint(0, {"process": "tt", "vdd_v": 1.8, "temp_c": 27.0}, 0, 5, ctx)
    g = points.write_point(pt)["g_prog_s"][0, :, 0]  # single-shot, per level
    assert 2.0e-6 < g[1] < 5.0e-6 < g[2] < 8.5e-6, g  # measured 4.1 / 7.9 uS
    with pytest.raises(RuntimeError, match=r"never reached level 1 .*word line at 0.44 x vdd"):
        points.calibrate_write(cfg, replace(per, wl_frac_levels=(0.44, 0.49, 0.7)), 1.8)


def test_presets_write_samples_and_word_line():
    """quick: >= 32 write samples per level and mode, default >= 200; every preset writes
    with the compliance word line, recorded per vdd (``run.write_wl_v``)."""
    from characterization.crossbar.run import WL_FRAC, write_wl_v

    for name, least in (("quick", 32), ("default", 200), ("full", 200)):
        p = make_plan(name)
        assert p.mc_write * p.write.cells_per_level >= least, name
        assert p.write.wl_frac == WL_FRAC
        assert write_wl_v(p) == pytest.approx([WL_FRAC * v for v in p.vdd_v])
    assert write_wl_v(make_plan("default")) == pytest.approx([1.215, 1.35, 1.485])


_WRITE_POINT = """
import json, sys
import numpy as np
from characterization.crossbar import points
from characterization.crossbar.netlist import ColumnConfig, WriteConfig
from characterization.sweep import SweepPoint
wcfg = WriteConfig(cells_per_level=1, calibrate="nominal", wl_frac=0.75)  # the presets' WL
ctx = {"column": ColumnConfig(rows=16).to_dict(), "write": wcfg.to_dict(), "vdd_nom_v": 1.8}
out = []
for corner, seed in json.loads(sys.argv[1]):
    pt = SweepPoint(0, {"process": corner, "vdd_v": 1.8, "temp_c": 85.0}, 0, seed, ctx)
    out.append(points.write_point(pt)["g_prog_s"].ravel().tolist())
print(json.dumps(out))
"""


@pytest.mark.ngspice
def test_same_seed_same_bits_across_processes_and_point_order():
    """The write bench gives bit-identical conductances for a seed in another process, whatever
    ran before it in the worker (with ngspice's TRRANDOM drawing the cycle-to-cycle factors,
    a tt point before it left 1e-20 S differences, and --jobs 1 / 2 differed by up to 1.2 %);
    another seed differs."""
    import subprocess
    import sys

    def run(seeds):
        r = subprocess.run([sys.executable, "-c", _WRITE_POINT, json.dumps(seeds)],
                           capture_output=True, text=True, timeout=600, check=True)
        return [np.asarray(x) for x in json.loads(r.stdout.strip().splitlines()[-1])]

    _, a5 = run([["tt", 7], ["ss", 5]])  # ss after a tt point of another seed
    b5, b6 = run([["ss", 5], ["ss", 6]])  # ss first in its process
    assert np.array_equal(a5, b5)
    assert np.abs(b5 - b6).max() > 1e-8  # the draws do depend on the seed


def _nominal_write(temp_c: float, **write):
    """One nominal cell per level (no device variation) programmed at tt / 1.8 V / ``temp_c``
    with the presets' word line; returns the write point's result and the column."""
    from characterization.crossbar import points
    from characterization.crossbar.netlist import ColumnConfig, WriteConfig
    from characterization.sweep import SweepPoint

    cfg = ColumnConfig(rows=64)
    wcfg = WriteConfig(cells_per_level=1, wl_frac=0.75, sigma_gon=0.0, sigma_goff=0.0,
                       sigma_vset_v=0.0, sigma_k=0.0, sigma_c2c=0.0, **write)
    ctx = {"column": cfg.to_dict(), "write": wcfg.to_dict(), "vdd_nom_v": 1.8}
    pt = SweepPoint(0, {"process": "tt", "vdd_v": 1.8, "temp_c": temp_c}, 0, 5, ctx)
    return points.write_point(pt), cfg, wcfg


@pytest.mark.ngspice
def test_write_verify_targets_the_level_as_read_at_the_write_temperature(shared_engine):
    """Temperature applied once: a verify read at T is compared with the level's state as read
    at T, G(w_l, T) (the column deck's reference cells at T, i.e. ``crossbar/cell_read``), and
    the cell that passes maps back, through that G(T) (what nnsim does with the samples), to
    its level. At 85 degC the nominal cell's top state reads 0.967 G_max (measured 9.67 uS,
    10.27 at 27 degC), below the 27 degC pass mark G_max - tol (9.70 uS): against the 27
    degC conductances (temperature not applied to the target) the nominal top cell never
    passes; with the target's temperature counted twice (x G(85)/G(27) again) it stops short
    of its level (the top state 2.84); targets 2x: no level passes."""
    from characterization.crossbar.netlist import column_deck
    from characterization.crossbar.points import verify_targets

    r, cfg, wcfg = _nominal_write(85.0, t_step_s=2e-9)  # fine steps: stops near its mark
    op = shared_engine.simulate(column_deck(cfg, "tt", temp_c=85.0))
    g_t = np.array([abs(float(op.vector(f"i(vref{lvl})")[0]))
                    for lvl in range(cfg.levels)]) / cfg.v_read_v
    targets, tol = verify_targets(cfg, wcfg, g_t)
    assert targets == pytest.approx(g_t, rel=1e-6)  # the cell is linear in its state
    assert tol == pytest.approx(wcfg.verify_tol_rel * (g_t[-1] - g_t[0]))
    # the hot top state is below the old (27 degC, tnom) pass mark: never reached that way
    assert g_t[-1] < cfg.g_max_s - wcfg.verify_tol_rel * (cfg.g_max_s - cfg.g_min_s)
    assert np.all(r["verify_failed"][1:] == 0), r["verify_failed"]
    g = r["g_prog_s"][1, :, 0]  # verify mode, per level (read at 85 degC)
    state = (g - g_t[0]) / (g_t[-1] - g_t[0]) * (cfg.levels - 1)  # nnsim's map, level units
    # within the pass band (3 x verify_tol_rel in level units) plus one 2 ns step; measured
    # 0.948 / 2.026 / 2.944 (temperature twice: the top level stops at 2.84)
    assert state[1:] == pytest.approx(np.arange(1, cfg.levels), abs=0.1), state


@pytest.mark.ngspice
def test_verify_pulse_cap_bounds_the_train_and_counts_failures():
    """``write.verify_max_pulses``: the verify train is cut at the cap whatever the calibrated
    budget (tt / 27 degC wants 36 pulses; the nominal cell needs 5 / 10 / 17 for levels 1-3),
    and the cells not at their level by then are verify failures; a cap below 4 is refused."""
    from characterization.crossbar.netlist import WriteConfig
    from characterization.errors import ConfigError

    r, _, _ = _nominal_write(27.0, verify_max_pulses=8)
    assert r["pulse_budget"][0] == 8
    assert r["verify_failed"][:, 0].tolist() == [0, 0, 1, 1], r["verify_failed"]
    assert np.nanmax(r["n_pulses"][1]) == 8
    with pytest.raises(ConfigError, match="verify_max_pulses"):
        WriteConfig(verify_max_pulses=2)


@pytest.mark.ngspice
def test_characterized_write_forms_stop_at_the_devices_full_set(tiny_lookup):
    """A cell cannot exceed full set (the model's state stops at w = 1): nnsim's
    characterized write forms (``levels``, ``fit``, ``samples``) cap a programmed level at the
    largest programmed conductance the SPICE write bench produced at that PVT point
    (``write_ceiling``), where the Gaussian forms' tails would go on (12-16 uS in the quick
    file for cells that stop at ~11 uS); the papers' ``parametric`` and zero-mean forms are
    not. (Mutation checked: the ceiling x2 fails here.)"""
    import torch

    from nnsim.analog import write_ceiling, write_levels
    from nnsim.hardware import HardwareModel

    _, summary, _ = tiny_lookup
    hw = HardwareModel.from_lookup(summary["path"], "ss", 1.8, 85.0, adc_bits=None)
    n_lv = hw.levels - 1
    g_top = max(float(s.max()) for s in hw.write_samples_s.values())  # state domain, S
    ceil = write_ceiling(hw)
    assert ceil == pytest.approx(max((g_top - hw.g_min_s) / (hw.g_max_s - hw.g_min_s) * n_lv,
                                     n_lv))
    assert hw.g_max_s <= g_top < 1.3 * hw.g_max_s or ceil == n_lv, g_top  # full set + spread
    g = torch.Generator().manual_seed(1)
    top = torch.full((20000,), float(n_lv))
    for source in ("levels", "fit"):
        lv = write_levels(top, hw, source, "single", 3.0, None, g, True)
        assert float(lv.max()) <= ceil + 1e-6, source
        assert float((lv >= ceil - 1e-6).float().mean()) > 0.01, source  # the cap binds
    with pytest.warns(UserWarning, match="characterized conductances per level"):
        lv = write_levels(top, hw, "samples", "single", 5.0, None, g, True)
    assert float(lv.max()) <= ceil + 1e-6
    lv = write_levels(top, hw, "parametric", "single", 1.0, 0.3, g, True)
    assert float(lv.max()) > ceil  # the parametric form: the papers' uncapped Gaussian
    lv = write_levels(top, hw, "fit", "single", 3.0, None, g, True, bias=False)
    assert float(lv.max()) > ceil  # the zero-mean TxSim form (ClipFormer protocol): uncapped
