"""The demo's evaluations run ``fidelity="moment"`` (issue 17: the fast mode); the CLI's
default is ``bit``, which draws every conversion. On settings of the demo's sweeps (the
circuit protocol, calibrated K/V ranges, the moment mode calibrated on the calib split) both
modes score the tiny digits ViT alike: paired over the same 3 chips and 120 images, moment -
bit is within 4 points and its 95 % interval within 8 points of 0. (An equivalence margin,
not "the interval holds 0": with a fixed seed that would fail on 5 % of the random streams
by construction. On 60 images the 4-bit point read +6.7 [+1.1, +13.3] points after the
low-count kernel changed the stream; on 240 images +2.2 [-0.6, +5.1]; on the demo's model
and circuit files, 450 images, -0.15 [-1.33, +1.11]: bench/results/modes_demo.json.)

(Mutation checked: the moment mode's per-output readout sigma x3 in ``mvm_moment`` fails the
4-bit setting, -28.9 points; at ss / 85 degC and gamma 5 this model's margin absorbs it. Not
resolvable here either: the K/V write sigma x2 at gamma 5; this model loses about one point to
write noise even at gamma 15, so the write moments are checked element by element in
``test_moment.py``. The demo's own model and circuit files: ``bench/modes_demo.py``.)"""

from __future__ import annotations

import dataclasses

import pytest

from nnsim.analog import AnalogConfig


@pytest.fixture(scope="module")
def digits_splits():
    from nnsim.data import load_dataset

    return load_dataset("digits", "test").subset(120), load_dataset("digits", "calib")


@pytest.mark.parametrize("corner,temp_c,bits,gamma", [
    ("tt", 27.0, 6, 5.0),  # the demo's gamma sweep, its strongest point
    ("ss", 85.0, 6, 1.0),  # the demo's temperature step, its slow corner
    ("tt", 27.0, 4, 1.0),  # the demo's ADC-bits sweep, through the exact low counts
])
def test_moment_scores_like_bit_on_demo_settings(tiny_digits_model, synthetic_lookups,
                                                 digits_splits, corner, temp_c, bits, gamma):
    from nnsim.evaluate import compare, evaluate_chips
    from nnsim.hardware import HardwareModel

    model, _ = tiny_digits_model
    test, calib = digits_splits
    hw = HardwareModel.from_lookup(synthetic_lookups, process=corner, vdd_v=1.8,
                                   temp_c=temp_c, adc_bits=bits)
    base = AnalogConfig(gamma=gamma, kv_range="calibrated")
    pts = {f: evaluate_chips(model, hw, dataclasses.replace(base, fidelity=f), test, chips=3,
                             seed=11, batch_size=120, calib_ds=calib, moment_calib_images=32,
                             cache=None) for f in ("moment", "bit")}
    c = compare(pts["moment"], pts["bit"], "moment - bit")
    lo, hi = c.difference_ci95
    assert abs(c.difference_mean) <= 0.04, (c.difference_mean, c.difference_ci95)
    assert lo >= -0.08 and hi <= 0.08, (c.difference_mean, c.difference_ci95)
    assert pts["bit"].accuracy_mean > 0.8, pts["bit"]
