"""ADC offset trim (issue 15 item 4): one ADC model for the dense analog path and RAP,
``HardwareModel.from_lookup(adc_trim=none|pedestal|offset)``, checked on files with a
sampling-switch pedestal written into the thresholds (the transistor-level front end's
charge injection) and RAP at 8 bits on it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from characterization.lookup import Table, read_lookups, write_lookup
from characterization.lookup.names import (
    ADC_OFFSET_LSB,
    ADC_SAMPLING_PEDESTAL_LSB,
    ADC_THRESHOLDS,
)
from nnsim.data import load_dataset, make_loader
from nnsim.hardware import ADC_TRIM_STEP_LSB, HardwareModel
from nnsim.rap import MVMConfig, convert_to_rap
from nnsim.rap.evaluate import accuracy

PEDESTAL = {4: 0.2, 6: 0.8, 8: 3.3}
"""LSB per resolution: the quick preset's tt pedestals (0.21, 0.83, 3.30 LSB)."""


def with_pedestal(src, dst, scale: float = 1.0):
    """A copy of the ADC file ``src`` whose front end adds ``scale x PEDESTAL`` (LSB) to every
    instance's thresholds and offset, with the ``adc/sampling/pedestal_lsb`` table."""
    tables = read_lookups([src])
    th = tables[ADC_THRESHOLDS]
    bits = [int(b) for b in th.coords["bits"]]
    p = np.array([scale * PEDESTAL[b] for b in bits])
    ax = th.dims.index("bits")
    shape = [1] * th.data.ndim
    shape[ax] = len(bits)
    out = dict(tables)
    out[ADC_THRESHOLDS] = dataclasses.replace(th, data=th.data + p.reshape(shape))
    off = tables[ADC_OFFSET_LSB]
    shape = [1] * off.data.ndim
    shape[off.dims.index("bits")] = len(bits)
    out[ADC_OFFSET_LSB] = dataclasses.replace(off, data=off.data + p.reshape(shape))
    dims = tuple(d for d in off.dims if d != "instance")
    data = np.broadcast_to(p.reshape([len(bits) if d == "bits" else 1 for d in dims]),
                           tuple(off.data.shape[off.dims.index(d)] for d in dims)).copy()
    out[ADC_SAMPLING_PEDESTAL_LSB] = Table(
        ADC_SAMPLING_PEDESTAL_LSB, data, dims, {d: off.coords[d] for d in dims}, "LSB",
        dict(off.coord_units), {"description": "test pedestal"})
    return write_lookup(dst, list(out.values()), {"test": "with_pedestal", "scale": scale})


@pytest.fixture(scope="module")
def pedestal_files(synthetic_lookups, tmp_path_factory):
    d = tmp_path_factory.mktemp("trim")
    xbar, adc = synthetic_lookups
    return xbar, adc, with_pedestal(adc, d / "adc_p1.h5"), with_pedestal(adc, d / "adc_p2.h5",
                                                                          2.0)


def _th(files, trim, bits=8, process="tt"):
    hw = HardwareModel.from_lookup(files, process=process, vdd_v=1.8, temp_c=27.0,
                                   adc_bits=bits, adc_trim=trim)
    return hw, hw.adc(bits).thresholds_lsb


@pytest.mark.parametrize("bits", [6, 8])
def test_pedestal_trim_removes_the_pedestal_and_none_keeps_it(pedestal_files, bits):
    """Pedestal doubled in the file: the pedestal-trimmed thresholds do not move, the
    untrimmed ones move by the pedestal (fails with the trim x2 or x0.5); offset trim: each
    instance's measured offset, through the trim DAC, is gone."""
    xbar, adc0, adc1, adc2 = pedestal_files
    _, base = _th([xbar, adc0], "none", bits)
    hw1, none1 = _th([xbar, adc1], "none", bits)
    _, none2 = _th([xbar, adc2], "none", bits)
    _, ped1 = _th([xbar, adc1], "pedestal", bits)
    _, ped2 = _th([xbar, adc2], "pedestal", bits)
    p = PEDESTAL[bits]
    np.testing.assert_allclose(none2 - none1, p, atol=1e-9)          # untrimmed: + pedestal
    np.testing.assert_allclose(ped2, ped1, atol=1e-9)                # trimmed: unchanged
    np.testing.assert_allclose(ped1, base, atol=1e-9)                # = the front end without
    assert hw1.adc_trim == "none" and hw1.adc(bits).trim == "none"
    # offset trim: the instance's offset from the raw table, rounded to the trim-DAC step
    hw_o, off1 = _th([xbar, adc1], "offset", bits)
    raw = read_lookups([adc1])[ADC_OFFSET_LSB].sel(process="tt", vdd_v=1.8, temp_c=27.0,
                                                   bits=bits).data.reshape(-1)
    step = np.round(raw / ADC_TRIM_STEP_LSB) * ADC_TRIM_STEP_LSB
    np.testing.assert_allclose(none1 - off1, step[:, None] + 0 * none1, atol=1e-9)
    assert np.abs(raw - step).max() <= ADC_TRIM_STEP_LSB / 2 + 1e-12
    assert hw_o.adc(bits).trim == "offset" and hw_o.summary()["adc_trim"] == "offset"
    first = off1[:, 0] - (1.0 - 0.5)   # k - 0.5 convention: the first ideal threshold 0.5
    assert np.abs(first).max() < 0.6   # the synthetic DNL leaves the first step ~0.2 LSB


def test_trim_refuses_a_file_without_the_table_and_an_unknown_trim(synthetic_lookups):
    with pytest.raises(ValueError, match="pedestal_lsb"):
        HardwareModel.from_lookup(synthetic_lookups, process="tt", adc_bits=8,
                                  adc_trim="pedestal")
    with pytest.raises(ValueError, match="adc_trim"):
        HardwareModel.from_lookup(synthetic_lookups, process="tt", adc_bits=8, adc_trim="x")


def test_rap_8bit_collapses_on_the_pedestal_and_recovers_with_trim(tiny_digits_model,
                                                                      pedestal_files):
    """RAP at 8 bits (1 unit cell per LSB, small column sums) on the file with the pedestal:
    untrimmed it loses most images (the dead zone eats the sums), with the pedestal trim it
    is within a few points of its integer path (fails with the trim halved)."""
    xbar, _, adc1, _ = pedestal_files
    model = tiny_digits_model[0]
    calib = make_loader(load_dataset("digits", "calib"), 128)
    test = DataLoader(Subset(load_dataset("digits", "test"), range(24)), batch_size=24)
    rap = convert_to_rap(model, calib)
    integer, _ = accuracy(rap, test)
    acc = {}
    for trim in ("none", "pedestal"):
        hw = HardwareModel.from_lookup([xbar, adc1], process="tt", vdd_v=1.8, temp_c=27.0,
                                       adc_bits=8, adc_trim=trim)
        rap.set_mvm(MVMConfig(mode="sparse", adc_bits=8), hw, seed=0, ideal_cells=True)
        torch.manual_seed(0)
        acc[trim], _ = accuracy(rap, test)
    assert acc["pedestal"] >= integer - 0.1, (acc, integer)
    assert acc["none"] < integer - 0.3, (acc, integer)


def test_cli_adc_trim_default_in_help_and_named_in_json_and_text(tiny_digits_model,
                                                                 pedestal_files, tmp_path,
                                                                 capsys):
    """``evaluate --adc-trim``: ``--help`` states the default (none); a run names the trim in
    its JSON (meta and setting) and text line; a file without the pedestal
    table exits 2 naming it."""
    import json
    from pathlib import Path

    from imc.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--adc-trim {none,pedestal,offset}" in out and "default none" in out
    xbar, adc0, adc1, _ = pedestal_files
    cache = str(Path(tiny_digits_model[1]["path"]).parent)
    js = tmp_path / "r.json"
    args = ["evaluate", "--model", "digits-tiny", "--lookup", str(xbar), str(adc1), "--bits",
            "8", "--chips", "1", "--limit", "8", "--quiet", "--cache-dir", cache,
            "--adc-trim", "pedestal", "--json", str(js)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "8-bit ADC (trim pedestal)" in text, text
    d = json.loads(js.read_text())
    assert d["meta"]["adc_trim"] == "pedestal" and d["setting"]["adc_trim"] == "pedestal"
    args[args.index(str(adc1))] = str(adc0)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "pedestal_lsb" in err and "Traceback" not in err
