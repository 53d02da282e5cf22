"""A tiny ADC characterization through the CLI writes a valid lookup file."""

from __future__ import annotations

import numpy as np
import pytest

from characterization.adc import build_config
from characterization.lookup import read_lookup
from imc.cli import main

CONTRACT = ("adc/thresholds", "adc/offset_lsb", "adc/noise_lsb", "adc/dnl", "adc/inl",
            "adc/enob", "adc/sinad_db", "adc/energy_j", "adc/conversion_time_s",
            "adc/designer/decision_error", "adc/energy_breakdown_j", "adc/validation_rms_lsb",
            "adc/validation_floor_lsb")


def test_build_config_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown preset"):
        build_config("huge")
    bad = tmp_path / "bad.toml"
    bad.write_text("[adc]\nbitz = [3]\n")
    with pytest.raises(ValueError, match=r"bad\.toml: unknown key .bitz."):
        build_config(None, bad)
    bad.write_text("[adc]\nbits = [2, 3]\n")
    with pytest.raises(ValueError, match=r"3\.\.8"):
        build_config(None, bad)
    # every error names the file and the offending key
    for body, key in (('process = ["xx"]', "process"), ("vdd_v = [-1.0]", "vdd_v"),
                      ("mc = 0", "mc"), ("sine_cycles = 64", "sine_cycles"),
                      ("vref_v = 2.0", "vref_v"), ("[adc.sizing]\nw_inn = 2.0", "w_inn"),
                      ("[adc.sizing]\nw_in = -1.0", "w_in"),
                      ("[adc.switches]\ntop_nn = 1.0", "top_nn"),
                      ("bits = [3, 4]\n[adc.validate]\nbits = 6", "validate.bits"),
                      ("[adc.validate]\nprobes = 1", "validate.probes"),
                      ("[adc.validate]\nconversions_per_code = 4", "validate")):
        bad.write_text(f"[adc]\n{body}\n")
        with pytest.raises(ValueError, match=rf"bad\.toml: .*{key}"):
            build_config(None, bad)


def test_cli_bad_config_exits_2_naming_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[adc]\nprocess = ["tx"]\n')
    rc = main(["characterize", "adc", "--config", str(bad), "--out", str(tmp_path / "a.h5")])
    assert rc == 2
    assert "bad.toml: process" in capsys.readouterr().err
    assert not (tmp_path / "a.h5").exists()


@pytest.mark.ngspice
def test_tiny_characterization_writes_contract_tables(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('[adc]\nprocess = ["ss", "ff"]\nvdd_v = [1.8]\ntemp_c = [27.0]\n'
                   'bits = [3, 5]\nmc = 2\nseed = 5\n'
                   '[adc.validate]\ninstances = 1\nbits = [5]\nthresholds = 2\nprobes = 3\n'
                   'rounds = 2\n')
    out = tmp_path / "adc.h5"
    rc = main(["characterize", "adc", "--config", str(cfg), "--out", str(out), "--quiet",
               "--jobs", "2", "--plots", str(tmp_path / "plots")])
    assert rc == 0
    lf = read_lookup(out)
    for name in CONTRACT:
        t = lf[name]
        assert t.dims[:4] == ("process", "vdd_v", "temp_c", "bits"), name
        assert t.attrs["vref_v"] == 1.0 and "threshold_convention" in t.attrs
        assert t.attrs["ideal_threshold_k_minus"] == 0.0
    th = lf["adc/thresholds"]
    assert th.dims == ("process", "vdd_v", "temp_c", "bits", "instance", "code")
    assert th.shape == (2, 1, 1, 2, 2, 31)
    t3 = th.sel(process="ss", vdd_v=1.8, temp_c=27.0, bits=3).data
    assert np.all(np.isnan(t3[:, 7:])) and np.all(np.isfinite(t3[:, :7]))
    assert np.all(np.abs(t3 - np.arange(1, 32)[None, :])[:, :7] < 3)  # a few LSB of offset
    e = lf["adc/energy_j"].sel(process="ff", vdd_v=1.8, temp_c=27.0).data
    assert e[1] > e[0] > 0  # energy grows with bits
    ct = lf["adc/conversion_time_s"]
    assert np.all(ct.sel(process="ss", vdd_v=1.8, temp_c=27.0).data >
                  ct.sel(process="ff", vdd_v=1.8, temp_c=27.0).data)
    enob = lf["adc/enob"].sel(process="ff", vdd_v=1.8, temp_c=27.0).data
    assert np.all(enob > np.array([3, 5]) - 1) and np.all(enob < np.array([3, 5]) + 0.1)
    # energy: the parts sum to the total, each part names its source
    eb = lf["adc/energy_breakdown_j"]
    assert eb.dims[-1] == "part" and list(eb.coords["part"]) == [
        "comparator", "dac_reference", "sar_logic", "sampling_drive"]
    assert np.allclose(eb.data.sum(axis=-1), lf["adc/energy_j"].data, rtol=1e-12)
    assert np.all(eb.data > 0)
    for p in eb.coords["part"]:
        src = eb.attrs[f"source_{p}"]
        assert src.split(":")[0] in ("SPICE", "formula", "estimate"), src
    assert "assumption" in eb.attrs["source_dac_reference"]
    # validation stored per corner with the method's floor
    vr, vf = lf["adc/validation_rms_lsb"], lf["adc/validation_floor_lsb"]
    assert vr.dims == vf.dims == ("process", "vdd_v", "temp_c", "bits")
    assert list(vr.coords["bits"]) == [5] and vr.shape == (2, 1, 1, 1)
    assert np.all(vf.data < 0.1) and np.all(vr.data < 0.3)
    # coarse settings here (3 probes, 2 rounds): SPICE and model may share a final bracket,
    # then the error is at the floor (not resolved), never below it
    assert np.all(vf.data > 0) and np.all(vr.data >= vf.data - 1e-9)
    assert "adc/decision_error" not in lf  # designer-only figure, renamed
    val = lf.provenance["adc"]["validation"]
    assert val["instances"] == 2 and val["bits"] == [5]
    assert val["rms_lsb"] == pytest.approx(float(np.sqrt(np.mean(vr.data ** 2))))
    assert not lf.failures
    assert len(list((tmp_path / "plots").glob("*.png"))) == 3
