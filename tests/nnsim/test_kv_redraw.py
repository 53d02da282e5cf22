"""Dynamic and static writes of one simulated chip (issue 15, item 7): K and V are written
again on every inference (new write noise each time, of the characterized size), the static
weights are programmed once per chip (the same cells across inferences, other cells on
another chip), and a chip seed reproduces every bit.

The programmed levels are read where the simulator makes them (a spy around the real
``nnsim.convert.write_levels``, which returns what the real function returns); the
reference sigma per level is computed here with numpy from the lookup's programmed
conductances (``HardwareModel.write_samples_s``). (Mutation checked once each, then
restored: the write noise x2, K/V written once per chip, static weights reprogrammed per
inference all fail here.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nnsim.convert as convert
from nnsim.analog import AnalogConfig
from nnsim.convert import AnalogLinear, convert_to_analog, program_chip
from nnsim.data import load_dataset

GAMMA = 3.0


def _sigma_levels(hw, mode, gamma=None):
    """Per target level, the sigma of the characterized programmed conductances in level
    units (independent of ``nnsim.analog.level_moments``); with ``gamma``, the sigma / gamma
    of the gamma-scaled Gaussian stopped at the device's full set (the largest characterized
    conductance, at least G_max) and at 0 S (numpy draws)."""
    n_lv, dg = hw.levels - 1, hw.g_max_s - hw.g_min_s
    s = np.asarray(hw.write_samples_s[mode], float)
    lv = (s - hw.g_min_s) / dg * n_lv
    sd = lv.std(axis=1, ddof=1)
    if gamma is None:
        return sd
    top = max((max(float(np.max(x)) for x in hw.write_samples_s.values()) - hw.g_min_s)
              / dg * n_lv, n_lv)
    z = np.random.default_rng(0).standard_normal(400000)
    return np.array([np.clip(m + gamma * v * z, -n_lv * hw.g_min_s / dg, top).std() / gamma
                     for m, v in zip(lv.mean(axis=1), sd, strict=True)])


@pytest.fixture
def spy(monkeypatch):
    """Every write the converted model makes: (mode, targets, programmed levels)."""
    calls = []
    real = convert.write_levels

    def recording(targets, hw, source, mode, *args, **kw):
        out = real(targets, hw, source, mode, *args, **kw)
        calls.append((mode, targets.clone(), out.clone()))
        return out

    monkeypatch.setattr(convert, "write_levels", recording)
    return calls


def _ratio_per_level(diff, targets, sigma, scale):
    """Measured var(diff) / predicted ``scale * sigma_l^2`` for each level with enough cells."""
    out = {}
    for lv in range(1, len(sigma)):
        sel = targets == lv
        if int(sel.sum()) >= 200:
            out[lv] = float(diff[sel].double().var()) / (scale * sigma[lv] ** 2)
    return out


def test_kv_redrawn_every_inference_static_fixed_within_a_chip(tiny_digits_model, hw_tt, spy):
    """One chip, the same 4 images twice, gamma 3, exact readout (so only writes differ):
    the static arrays are the same cells (no static write during an inference); block 0's
    K and V have the same targets both times and programmed levels that differ by
    ``sqrt(2) gamma sigma_l`` (the characterized single-shot sigma of level l, within 20 %);
    the outputs differ; re-programming the chip from its seed gives the same K/V bits and
    the same logits bit for bit; another chip's static cells differ by ``sqrt(2) sigma_l``
    of the verify-mode writes."""
    model, _ = tiny_digits_model
    x = load_dataset("digits", "test").images[:4]
    cfg = AnalogConfig(gamma=GAMMA, adc=False, read_noise=False, nonlinearity=False)
    with torch.no_grad():
        analog = convert_to_analog(model, hw_tt, cfg, seed=7)
        static = {n: m.array.cells_mm.clone() for n, m in analog.named_modules()
                  if isinstance(m, AnalogLinear)}
        static_writes = [c for c in spy if c[0] == cfg.static_write_mode]
        assert len(static_writes) == len(static) > 0
        spy.clear()
        y1 = analog(x)
        first = list(spy)
        spy.clear()
        y2 = analog(x)
        second = list(spy)
        spy.clear()
        # static weights: written once per chip, untouched by inferences
        assert all(c[0] == cfg.dynamic_write_mode for c in first + second)
        for n, m in analog.named_modules():
            if isinstance(m, AnalogLinear):
                assert torch.equal(m.array.cells_mm, static[n]), n
        # K and V: two writes per block and inference, new noise each time
        depth = len(analog.blocks)
        assert len(first) == len(second) == 2 * depth
        sig = _sigma_levels(hw_tt, cfg.dynamic_write_mode, GAMMA)
        for (_, t1, p1), (_, t2, p2) in zip(first[:2], second[:2], strict=True):  # block 0
            assert torch.equal(t1, t2)  # same image, same static cells: same K/V targets
            ratios = _ratio_per_level(p1 - p2, t1, sig, 2 * GAMMA ** 2)
            assert ratios and all(0.8 < r < 1.25 for r in ratios.values()), ratios
        assert float((y1 - y2).abs().max()) > 1e-4
        # the chip's seed reproduces both the K/V bits and the logits
        program_chip(analog, 7)
        reprog = list(spy)
        spy.clear()
        assert len(reprog) == len(static_writes)
        for (_, _, p), (_, _, q) in zip(static_writes, reprog, strict=True):
            assert torch.equal(p, q)
        y1b = analog(x)
        again = list(spy)
        spy.clear()
        assert torch.equal(y1b, y1)
        for (_, _, p), (_, _, q) in zip(first, again, strict=True):
            assert torch.equal(p, q)
        for n, m in analog.named_modules():
            if isinstance(m, AnalogLinear):
                assert torch.equal(m.array.cells_mm, static[n]), n
        # another chip: other static cells, by the verify-mode sigma
        spy.clear()
        convert_to_analog(model, hw_tt, cfg, seed=8)
        other = [c for c in spy if c[0] == cfg.static_write_mode]
        sig_v = _sigma_levels(hw_tt, cfg.static_write_mode, cfg.static_gamma)
        for (_, t7, p7), (_, t8, p8) in zip(static_writes, other, strict=True):
            assert torch.equal(t7, t8) and not torch.equal(p7, p8)
        t = torch.cat([c[1].reshape(-1) for c in static_writes])
        d = torch.cat([(a[2] - b[2]).reshape(-1) for a, b in zip(static_writes, other,
                                                                 strict=True)])
        ratios = _ratio_per_level(d, t, sig_v, 2 * cfg.static_gamma ** 2)
        assert ratios and all(0.8 < r < 1.25 for r in ratios.values()), ratios
