"""Speed paths that must not change results: Dask evaluation, timing keys."""

from __future__ import annotations

import pytest
import torch

from nnsim.analog import AnalogConfig
from nnsim.convert import calibrate_moment, convert_to_analog, program_chip
from nnsim.data import load_dataset
from nnsim.distributed import run_chips
from nnsim.evaluate import accuracy_on, chip_seeds, evaluate_chips


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.parametrize("fidelity,n", [("bit", 8), ("moment", 48)])
def test_dask_chips_equal_the_local_loop_bit_for_bit(tiny_digits_model, hw_tt, dask_client,
                                                     fidelity, n):
    """Each chip as a task on a cluster gives the local loop's logits exactly (with the
    setting's calibration done once on the driver, as ``evaluate_chips`` does)."""
    model, _ = tiny_digits_model
    test = load_dataset("digits", "test").subset(n)
    probe = test.images[:4]
    cfg = AnalogConfig(fidelity=fidelity, gamma=3.0)
    seeds = chip_seeds(11, 3)
    analog = convert_to_analog(model, hw_tt, cfg, seed=None)
    if fidelity == "moment":
        program_chip(analog, seeds[0])
        calib = load_dataset("digits", "calib").subset(16)
        calibrate_moment(analog, [calib.images], seed=11)
    runs = run_chips(dask_client, model, hw_tt, cfg, analog, test, seeds, batch_size=16,
                     device="cpu", probe=probe)
    local = []
    for s in seeds:  # the loop of evaluate_chips
        program_chip(analog, s)
        acc = accuracy_on(analog, test, 16)
        with torch.no_grad():
            local.append((acc, analog(probe)))
    assert len(runs) == 3
    for (acc, logits), r in zip(local, runs, strict=True):
        assert r["accuracy"] == acc and r["correct"].mean() == acc
        torch.testing.assert_close(r["probe"], logits, rtol=0, atol=0)
    # the chips differ (the comparison is not vacuous)
    assert not torch.equal(runs[0]["probe"], runs[1]["probe"])


def test_evaluate_with_a_client_records_timing_and_equals_local(tiny_digits_model, hw_tt,
                                                               dask_client):
    model, _ = tiny_digits_model
    test = load_dataset("digits", "test").subset(48)
    calib = load_dataset("digits", "calib").subset(16)
    cfg = AnalogConfig(fidelity="moment", gamma=3.0)
    local = evaluate_chips(model, hw_tt, cfg, test, chips=2, seed=5, batch_size=16,
                           calib_ds=calib)
    remote = evaluate_chips(model, hw_tt, cfg, test, chips=2, seed=5, batch_size=16,
                            client=dask_client, calib_ds=calib)
    assert remote.chip_seeds == local.chip_seeds
    assert remote.accuracies == local.accuracies
    assert remote.conversions_per_inference == local.conversions_per_inference > 0
    assert remote.accuracy_ci95 == local.accuracy_ci95  # per-image results came back too
    for r in (local, remote):
        t = r.timing
        assert t["digital_s"] > 0 and t["per_chip_s"] > 0 and len(t["chips_s"]) == 2
    assert remote.timing["distributed"] and not local.timing["distributed"]


def test_short_matrix_without_padding_reads_as_the_zero_padded_array(hw_tt):
    """A 17-row V (17 tokens) laid out with its own rows gives the bit-level readout of the
    same matrix zero-padded to the 64-row array (same ADC full scale, same draws)."""
    from nnsim.analog import Mapped, build_array, map_matrix, mvm, write_levels

    cfg = AnalogConfig(gamma=3.0)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(17, 24, generator=g)
    x = torch.rand(2, 5, 17, generator=g)
    mapped = map_matrix(w, w.abs().amax(), cfg, hw_tt)
    prog = write_levels(mapped.targets, hw_tt, cfg.write_noise, "single", 3.0, None,
                        torch.Generator().manual_seed(1), mapped.integer)
    arr = build_array(mapped, prog, cfg, hw_tt, None)
    assert arr.cells_mm.shape[-2] == 17                      # no padding rows
    pad = (0, 0, 0, 64 - 17)
    mp = Mapped(torch.nn.functional.pad(mapped.targets, pad), mapped.scale, mapped.slice_w,
                mapped.integer)
    arr_p = build_array(mp, torch.nn.functional.pad(prog, pad), cfg, hw_tt, None)
    assert arr_p.cells_mm.shape[-2] == 64
    torch.testing.assert_close(arr.i_fs_a, arr_p.i_fs_a, rtol=0, atol=0)
    adc = hw_tt.adc()
    y = mvm(x, arr, cfg, hw_tt, adc, torch.Generator().manual_seed(2), signed=False)
    y_p = mvm(torch.nn.functional.pad(x, (0, 64 - 17)), arr_p, cfg, hw_tt, adc,
              torch.Generator().manual_seed(2), signed=False)
    assert (y == y_p).float().mean() > 0.99
    torch.testing.assert_close(y, y_p, rtol=1e-4, atol=1e-4 * float(y_p.abs().max()))
