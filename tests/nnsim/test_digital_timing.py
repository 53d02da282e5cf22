"""``timing["digital_s"]``: the fastest of a few timed digital forwards over the test images,
all of them recorded (``timing["digital_repeats_s"]``); counted forwards, never timed asserts."""

from __future__ import annotations

from nnsim.analog import AnalogConfig
from nnsim.data import load_dataset
from nnsim.evaluate import (
    DIGITAL_REPEATS,
    accuracy_on,
    digital_reference,
    evaluate_chips,
)


def _counting(model):
    calls = []
    return calls, model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))


def test_digital_reference_repeats_and_the_fastest_is_recorded(tiny_digits_model):
    model, _ = tiny_digits_model
    ds = load_dataset("digits", "test").subset(48)
    calls, hook = _counting(model)
    try:
        acc, times = digital_reference(model, ds, batch_size=16)
        assert DIGITAL_REPEATS == 3 and len(times) == 3
        assert calls == [16] * 9  # three full passes over the 48 images, 3 batches each
        assert acc == accuracy_on(model, ds, 16)
        assert all(t > 0 for t in times)
        calls.clear()
        # the budget: no repeat once the first forward has taken it
        _, one = digital_reference(model, ds, batch_size=16, budget_s=0.0)
        assert len(one) == 1 and calls == [16] * 3
    finally:
        hook.remove()


def test_evaluate_chips_records_the_minimum_over_its_repeats(tiny_digits_model, hw_tt):
    model, _ = tiny_digits_model
    ds = load_dataset("digits", "test").subset(8)
    calib = load_dataset("digits", "calib").subset(8)
    cfg = AnalogConfig(fidelity="moment")
    # measured here: three forwards, the fastest recorded
    r = evaluate_chips(model, hw_tt, cfg, ds, chips=3, seed=0, calib_ds=calib,
                       moment_calib_images=8)
    t = r.timing
    assert len(t["digital_repeats_s"]) == DIGITAL_REPEATS
    assert t["digital_s"] == min(t["digital_repeats_s"]) > 0
    # measured by the caller (the CLI): its repeats, their minimum
    r = evaluate_chips(model, hw_tt, cfg, ds, chips=3, seed=0, calib_ds=calib,
                       moment_calib_images=8, digital_accuracy=0.5,
                       digital_repeats_s=[0.3, 0.1, 0.2])
    assert r.timing["digital_s"] == 0.1 and r.timing["digital_repeats_s"] == [0.3, 0.1, 0.2]
    assert r.digital_accuracy == 0.5
    # one measured time given (older callers): it is the one repeat
    r = evaluate_chips(model, hw_tt, cfg, ds, chips=3, seed=0, calib_ds=calib,
                       moment_calib_images=8, digital_accuracy=0.5, digital_s=0.25)
    assert r.timing["digital_s"] == 0.25 and r.timing["digital_repeats_s"] == [0.25]
