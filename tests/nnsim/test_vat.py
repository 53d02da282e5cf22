"""Variation-aware training: the training forward is the evaluation forward (noise and ADC
in it), the straight-through gradient is exact on ideal hardware, runs are seeded, and the
cached checkpoint records the lookup files' sha256 and the hardware point."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from nnsim.analog import AnalogConfig, ideal
from nnsim.convert import calibrate_moment, convert_to_analog, program_chip
from nnsim.data import load_dataset
from nnsim.hardware import HardwareModel
from nnsim.models import load_checkpoint
from nnsim.vat import (
    VatSettings,
    finetune,
    four_way,
    load_or_finetune,
    lookup_content_sha256,
    make_trainable,
    pvt_grid,
)

# a few VAT steps of a few images, a small moment calibration
FAST = dict(epochs=1, batch_size=24, max_steps=3, moment_calib_images=8)


@pytest.fixture(scope="module")
def images():
    return load_dataset("digits", "test").images[:24]


def _pair(model, hw, cfg, chip=7):
    """(evaluation model, VAT training model) converted alike and programmed as chip ``chip``."""
    ev = convert_to_analog(model, hw, cfg, seed=None)
    tr = make_trainable(convert_to_analog(model, hw, cfg, seed=None))
    calib = load_dataset("digits", "calib").images[:16]
    for m in (ev, tr):
        program_chip(m, chip)
        if cfg.fidelity == "moment" and cfg.nonideal_readout:
            with torch.no_grad():
                calibrate_moment(m, [calib], seed=0)
        program_chip(m, chip)  # the same per-inference noise from here on
    return ev, tr


def test_training_forward_is_the_evaluation_forward(tiny_digits_model, hw_tt, images):
    model, _ = tiny_digits_model
    cfg = AnalogConfig(gamma=5.0, fidelity="moment")
    ev, tr = _pair(model, hw_tt, cfg)
    with torch.no_grad():
        y_ev = ev(images)
        y_dig = model(images)
    y_tr = tr.train()(images)  # gradients on: the straight-through path
    assert y_tr.requires_grad
    # the same simulated chip and the same per-inference draws: identical values
    torch.testing.assert_close(y_tr.detach(), y_ev, rtol=0, atol=0)
    # ... which carry the non-idealities: far from the digital logits
    assert (y_tr.detach() - y_dig).abs().mean() > 0.05 * y_dig.abs().mean()
    # K/V write noise and read noise are redrawn on every forward (every step)
    assert not torch.equal(tr(images).detach(), y_tr.detach())
    # gradients reach the crossbar layers' weights
    y_tr.logsumexp(-1).sum().backward()
    g = tr.blocks[0].attn.qkv.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_bit_fidelity_forward_is_the_evaluation_forward(tiny_digits_model, hw_tt, images):
    model, _ = tiny_digits_model
    ev, tr = _pair(model, hw_tt, AnalogConfig(gamma=5.0, fidelity="bit"), chip=3)
    with torch.no_grad():
        y_ev = ev(images[:4])
    torch.testing.assert_close(tr.train()(images[:4]).detach(), y_ev, rtol=0, atol=0)


def test_straight_through_gradient_is_exact_on_ideal_hardware(tiny_digits_model, images):
    model, _ = tiny_digits_model
    hw = HardwareModel.ideal()
    _, tr = _pair(model, hw, ideal())
    dig = model  # digital; convert_to_analog worked on a copy
    loss_t = tr.train()(images).logsumexp(-1).sum()
    loss_t.backward()
    dig.zero_grad(set_to_none=True)
    loss_d = dig(images).logsumexp(-1).sum()
    loss_d.backward()
    torch.testing.assert_close(loss_t.detach(), loss_d.detach(), rtol=1e-5, atol=1e-5)
    for (n, p_t), (_, p_d) in zip(tr.named_parameters(), dig.named_parameters(), strict=True):
        torch.testing.assert_close(p_t.grad, p_d.grad, rtol=1e-4, atol=1e-4, msg=n)
    dig.zero_grad(set_to_none=True)


def test_finetune_is_seeded(tiny_digits_model, synthetic_lookups):
    model, _ = tiny_digits_model
    s = VatSettings(gamma=5.0, **FAST)
    a, ma = finetune(model, synthetic_lookups, s, name="digits-tiny", seed=1)
    b, _ = finetune(model, synthetic_lookups, s, name="digits-tiny", seed=1)
    c, _ = finetune(model, synthetic_lookups, s, name="digits-tiny", seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert ma["steps"] == 3
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    # it did change the weights of the standard model
    s0 = model.state_dict()
    assert any(not torch.equal(sa[k], s0[k]) for k in sa)


def test_checkpoint_metadata_and_cache(tiny_digits_model, synthetic_lookups, tmp_path):
    _, base_meta = tiny_digits_model
    cache = Path(base_meta["path"]).parent  # the standard checkpoint is found there, cached
    s = VatSettings(process="ss", temp_c=85.0, gamma=5.0, **FAST)
    _model, meta = load_or_finetune("digits-tiny", synthetic_lookups, s, cache_dir=cache)
    assert not meta["cached"] and Path(meta["path"]).parent == cache
    state, on_disk = load_checkpoint(meta["path"])  # weights_only=True: plain data
    assert [{k: h[k] for k in ("path", "sha256")} for h in on_disk["lookups"]] == [
        {"path": str(p), "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest()}
        for p in synthetic_lookups]
    assert [h["content_sha256"] for h in on_disk["lookups"]] == [
        lookup_content_sha256(p) for p in synthetic_lookups]
    hw = on_disk["hardware"][0]
    assert (hw["process"], hw["vdd_v"], hw["temp_c"], hw["adc_bits"]) == ("ss", 1.8, 85.0, 6)
    assert on_disk["settings"]["gamma"] == 5.0 and on_disk["config"]["gamma"] == 5.0
    assert on_disk["base"]["path"] == base_meta["path"] and on_disk["seed"] == 0
    # same contents under another path: the same checkpoint (the key hashes contents)
    copies = []
    for p in synthetic_lookups:
        copies.append(tmp_path / Path(p).name)
        shutil.copy(p, copies[-1])
    again, meta2 = load_or_finetune("digits-tiny", copies, s, cache_dir=cache)
    assert meta2["cached"] and meta2["path"] == meta["path"]
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in state.items())
    # another hardware point or gamma: another checkpoint
    from nnsim.vat import lookup_hashes, vat_key

    h = lookup_hashes(synthetic_lookups)
    keys = {vat_key(base_meta, x, h, 0) for x in
            (s, dataclasses.replace(s, gamma=3.0), dataclasses.replace(s, process="tt"))}
    assert len(keys) == 3
    assert vat_key(base_meta, s, [dict(x, content_sha256="0" * 64) for x in h], 0) \
        != meta["key"]


def _restamp(src, dst, **attrs):
    """A byte copy of lookup file ``src`` with root attributes replaced (h5py, in place)."""
    import h5py

    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        for k, v in attrs.items():
            f.attrs[k] = v
    return dst


def test_key_is_the_table_content_not_the_timestamp(tiny_digits_model, synthetic_lookups,
                                                    tmp_path):
    """Re-characterized identical tables (another ``created``, other provenance) keep the
    VAT key; one write-noise value changed gives another key."""
    import h5py

    from nnsim.vat import lookup_hashes, vat_key

    _, base_meta = tiny_digits_model
    xb, adc = synthetic_lookups
    s = VatSettings(gamma=5.0, **FAST)
    key = vat_key(base_meta, s, lookup_hashes([xb, adc]), 0)
    again = _restamp(xb, tmp_path / "again.h5", created="2031-01-01T00:00:00+00:00",
                     provenance='{"host": "another", "git_commit": "0000000"}')
    h2 = lookup_hashes([again, adc])
    assert h2[0]["sha256"] != lookup_hashes([xb])[0]["sha256"]  # the bytes do differ
    assert vat_key(base_meta, s, h2, 0) == key
    # one write-noise value (tt/1.8 V/27 degC single-shot k, read by the fine-tune) changed
    moved = _restamp(xb, tmp_path / "moved.h5")
    with h5py.File(moved, "r+") as f:
        d = f["crossbar/write_noise_fit/write_noise_fit"]
        proc = [x.decode() for x in f["crossbar/write_noise_fit/process"][:]]
        i = (proc.index("tt"), list(f["crossbar/write_noise_fit/vdd_v"][:]).index(1.8),
             list(f["crossbar/write_noise_fit/temp_c"][:]).index(27.0), 0, 0)
        d[i] = 2 * d[i]
    k_old = HardwareModel.from_lookup([xb, adc], adc_bits=6).write_noise_k("single")
    k_new = HardwareModel.from_lookup([moved, adc], adc_bits=6).write_noise_k("single")
    assert k_new == pytest.approx(2 * k_old)  # the hardware the fine-tune builds differs
    assert lookup_content_sha256(moved) != lookup_content_sha256(xb)
    assert vat_key(base_meta, s, lookup_hashes([moved, adc]), 0) != key


def test_robust_pvt_samples_the_common_grid(tiny_digits_model, synthetic_lookups):
    model, _ = tiny_digits_model
    grid = pvt_grid(synthetic_lookups, 6)
    assert len(grid) == 27 and ("ff", 1.98, -40.0) in grid
    s = VatSettings(gamma=5.0, robust_pvt=True, **FAST)
    _, meta = finetune(model, synthetic_lookups, s, name="digits-tiny", seed=0)
    assert len(meta["pvt_points"]) == 27
    used = [p for p in meta["pvt_points"] if p["steps"]]
    assert sum(p["steps"] for p in used) == meta["steps"] == 3
    # the points drawn were loaded and recorded, the others not
    assert sorted((h["process"], h["vdd_v"], h["temp_c"]) for h in meta["hardware"]) == \
        sorted((p["process"], p["vdd_v"], p["temp_c"]) for p in used)
    with pytest.raises(ValueError, match="9 bits was not characterized"):
        pvt_grid(synthetic_lookups, 9)


def _point(correct, seeds=(1, 2, 3), method="analog"):
    import numpy as np

    from nnsim.results import EvalPoint

    c = np.asarray(correct, bool)
    return EvalPoint(accuracy_mean=float(c.mean()), accuracy_ci95=[None, None], ci_method="",
                     accuracies=c.mean(1).tolist(), chips=c.shape[0], chip_seeds=list(seeds),
                     seed=0, n_images=c.shape[1], digital_accuracy=1.0,
                     conversions_per_inference=0.0, adc_energy_j_per_inference=None,
                     config={}, hardware={}, setting=dict(method=method), correct=c)


def test_four_way_gains_are_paired():
    import numpy as np

    rng = np.random.default_rng(0)
    std = rng.random((3, 200)) < 0.80
    vat = std | (rng.random((3, 200)) < 0.5)  # right wherever standard is, and more
    g = four_way({"standard": _point(std), "vat": _point(vat, method="vat")})
    assert set(g) == {"vat vs standard"}
    d = g["vat vs standard"]
    assert d.difference_mean == pytest.approx(vat.mean() - std.mean())
    lo, hi = d.difference_ci95
    assert 0 < lo < d.difference_mean < hi
    with pytest.raises(ValueError, match="not paired"):
        four_way({"standard": _point(std), "vat": _point(vat, seeds=(4, 5, 6))})


class _Code:
    """Any object beyond plain data: ``weights_only`` loading refuses to rebuild it."""


def test_checkpoints_never_unpickle_objects(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": {}, "meta": {"x": _Code()}}, bad)
    with pytest.raises(ValueError, match=r"bad\.pt could not be read"):
        load_checkpoint(bad)
    odd = tmp_path / "odd.pt"
    torch.save({"weights": {}}, odd)
    with pytest.raises(ValueError, match=r"odd\.pt is not a"):
        load_checkpoint(odd)


def test_checkpoint_file_mode_honours_the_umask(tmp_path):
    """Checkpoints are shared data: 0644 under umask 022 (mkstemp alone gives 0600)."""
    import os

    from nnsim.models import save_checkpoint

    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "m.pt", {"w": torch.zeros(2)}, {"seed": 0})
    finally:
        os.umask(old)
    assert (tmp_path / "m.pt").stat().st_mode & 0o777 == 0o644
