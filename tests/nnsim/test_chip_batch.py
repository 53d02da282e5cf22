"""Chips as a batch dimension (issue 17 item 3): several simulated chips in one forward give
each chip what the chip loop gives it (same seed, same outputs and accuracies), and the CUDA
path, run where a GPU is present (skipped otherwise), agrees with the CPU."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nnsim import analog as analog_mod
from nnsim.analog import AnalogConfig, moment_write, mvm_moment
from nnsim.convert import (
    calibrate_moment,
    chip_batch_supported,
    convert_to_analog,
    program_chip,
    program_chips,
)
from nnsim.data import load_dataset
from nnsim.evaluate import evaluate_chips

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SEEDS = [101, 202, 303]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _calibrated(model, hw, cfg, device="cpu"):
    an = convert_to_analog(model.to(device), hw, cfg, seed=None).to(device)
    program_chip(an, 7)
    calib = load_dataset("digits", "calib").images[:16].to(device)
    calibrate_moment(an, [calib], seed=0)
    return an


def _loop_and_batch(an, x):
    """Per chip: the logits of the chip loop and of one chip-batched forward (two image
    batches each, so the generators' sequences over batches are exercised)."""
    n = len(SEEDS)
    with torch.no_grad():
        loop = []
        for s in SEEDS:
            program_chip(an, s)
            loop.append(torch.cat([an(x[:10]), an(x[10:])]))
        program_chips(an, SEEDS)
        bat = torch.cat([an(x[:10].repeat(n, 1, 1, 1)).reshape(n, 10, -1),
                         an(x[10:].repeat(n, 1, 1, 1)).reshape(n, -1, 10)], 1)
    return loop, bat


@pytest.mark.parametrize("kernel", ["auto", "torch"])
def test_chip_batch_equals_the_chip_loop(tiny_digits_model, hw_tt, kernel):
    """Same seeds: each chip of the batch gets the chip loop's logits (bit for bit here: each
    chip draws from its own generators in the same order, the C kernel and the torch path
    alike), and the chips differ from one another."""
    model, _ = tiny_digits_model
    cfg = AnalogConfig(fidelity="moment", gamma=2.0, readout_kernel=kernel)
    an = _calibrated(model, hw_tt, cfg)
    x = load_dataset("digits", "test").images[:24]
    loop, bat = _loop_and_batch(an, x)
    for c in range(len(SEEDS)):
        torch.testing.assert_close(bat[c], loop[c], rtol=0, atol=1e-5)
    assert float((loop[0] - loop[1]).abs().max()) > 1e-2  # the chips are not one chip


def test_one_chips_draws_are_its_own(tiny_digits_model, hw_tt, monkeypatch):
    """Perturbing the key chip 1 draws (its generator's stream) changes chip 1's logits and
    no other chip's: the batch keeps every chip's random streams apart."""
    model, _ = tiny_digits_model
    cfg = AnalogConfig(fidelity="moment", gamma=2.0)
    an = _calibrated(model, hw_tt, cfg)
    x = load_dataset("digits", "test").images[:24]
    loop, _ = _loop_and_batch(an, x)
    orig = analog_mod._chip_keys

    def mutated(gens):
        k = orig(gens)
        if len(gens) > 1:
            k[1] ^= 1
        return k

    monkeypatch.setattr(analog_mod, "_chip_keys", mutated)
    if analog_mod._moment_lib(cfg, x) is None:
        pytest.skip("no C kernel: the torch path draws no keys")
    _, bat = _loop_and_batch(an, x)
    torch.testing.assert_close(bat[0], loop[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(bat[2], loop[2], rtol=0, atol=1e-5)
    assert float((bat[1] - loop[1]).abs().max()) > 1e-3


def test_evaluate_chips_batched_equals_the_loop(tiny_digits_model, hw_tt):
    """``evaluate_chips(chip_batch=3)``: the same per-chip accuracies and per-image results
    as the loop, recorded in timing; a configuration without a batched path (bit) runs the
    loop (chip_batch 1 in timing)."""
    model, _ = tiny_digits_model
    test = load_dataset("digits", "test").subset(40)
    calib = load_dataset("digits", "calib").subset(16)
    cfg = AnalogConfig(fidelity="moment", gamma=2.0)
    kw = dict(chips=3, seed=5, batch_size=16, calib_ds=calib, moment_calib_images=16)
    a = evaluate_chips(model, hw_tt, cfg, test, **kw)
    b = evaluate_chips(model, hw_tt, cfg, test, chip_batch=3, **kw)
    assert a.accuracies == b.accuracies
    assert np.array_equal(a.correct, b.correct)
    assert a.timing["chip_batch"] == 1 and b.timing["chip_batch"] == 3
    assert a.conversions_per_inference == b.conversions_per_inference
    assert not chip_batch_supported(AnalogConfig(), hw_tt)
    with pytest.raises(ValueError, match="moment"):
        program_chips(convert_to_analog(model, hw_tt, AnalogConfig(), seed=None), [1, 2])


@CUDA
def test_cuda_moment_terms_equal_the_cpu(hw_tt):
    """On CUDA the moment write and product (torch path) equal the CPU's noiseless results
    to float rounding."""
    hw = hw_tt
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 2, 16, 17, generator=g)
    x = torch.randn(3, 2, 30, 16, generator=g)
    sm = w.abs().amax((-2, -1), keepdim=True)
    cfg = AnalogConfig(fidelity="moment", readout_kernel="torch")
    a = moment_write(w, sm, cfg, hw, hw.adc(), None, noise=False)
    b = moment_write(w.cuda(), sm.cuda(), cfg, hw, hw.adc(), None, noise=False)
    torch.testing.assert_close(b.w_eff.cpu(), a.w_eff, rtol=1e-5, atol=1e-4)
    ya = mvm_moment(x, a, cfg, hw, hw.adc(), None, noise=False)
    yb = mvm_moment(x.cuda(), b, cfg, hw, hw.adc(), None, noise=False)
    torch.testing.assert_close(yb.cpu(), ya, rtol=1e-4, atol=1e-4)


@CUDA
@pytest.mark.parametrize("cfg,batch", [
    (AnalogConfig(fidelity="moment", gamma=2.0), 3),
    (AnalogConfig(readout_kernel="torch"), 1)])
def test_cuda_evaluation_agrees_with_the_cpu(tiny_digits_model, hw_tt, cfg, batch):
    """The moment evaluation (chip-batched) and the bit evaluation's torch readout on CUDA
    score the CPU's accuracy within what different random draws allow (60 images x 3
    chips: within 8 points per chip mean)."""
    model, _ = tiny_digits_model
    test = load_dataset("digits", "test").subset(60)
    calib = load_dataset("digits", "calib").subset(16)
    kw = dict(chips=3, seed=5, batch_size=30, calib_ds=calib, moment_calib_images=16,
              chip_batch=batch)
    cpu = evaluate_chips(model, hw_tt, cfg, test, device="cpu", **kw)
    gpu = evaluate_chips(model, hw_tt, dataclasses.replace(cfg), test, device="cuda", **kw)
    model.to("cpu")
    assert abs(cpu.accuracy_mean - gpu.accuracy_mean) <= 0.08, (cpu.accuracies,
                                                                gpu.accuracies)
