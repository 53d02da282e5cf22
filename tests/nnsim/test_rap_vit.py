"""RAP integer ViT: integer-only proof, accuracy at 8 bits, evaluate_rap."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nnsim.data import load_dataset, make_loader
from nnsim.hardware import HardwareModel
from nnsim.rap import MVMConfig, RapConfig, convert_to_rap, evaluate_rap
from nnsim.rap.evaluate import accuracy


class FloatOpDetector(TorchDispatchMode):
    """Records every dispatched aten op and any that touches a floating-point tensor."""

    def __init__(self):
        super().__init__()
        self.ops, self.float_ops = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops.append(str(func))
        flat = [*torch.utils._pytree.tree_leaves((args, kwargs)),
                *torch.utils._pytree.tree_leaves(out)]
        if any(isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())
               for t in flat):
            self.float_ops.append(str(func))
        return out


@pytest.fixture(scope="module")
def loaders():
    return (make_loader(load_dataset("digits", "calib"), 128),
            make_loader(load_dataset("digits", "test"), 150))


@pytest.fixture(scope="module")
def rap_tiny(tiny_digits_model, loaders):
    return convert_to_rap(tiny_digits_model[0], loaders[0])


@pytest.mark.parametrize("mode", ["digital", "sparse_circuit"])
def test_forward_is_integer_only(rap_tiny, loaders, synthetic_lookups, mode):
    if mode == "digital":
        rap_tiny.set_mvm(MVMConfig(mode="digital"))
    else:
        hw = HardwareModel.from_lookup(synthetic_lookups, process="ss", adc_bits=4)
        rap_tiny.set_mvm(MVMConfig(mode="sparse", adc_bits=4), hw, seed=0)
        assert rap_tiny.adc_source == "circuit"
    x = next(iter(loaders[1]))[0][:4]
    xm = rap_tiny.quantize_input(x)                 # the input quantizer: the only float step
    with FloatOpDetector() as det:
        m, e = rap_tiny.forward_int(xm)
    assert len(det.ops) > 200                       # the mode really saw the forward
    assert any("matmul" in o or "mm" in o for o in det.ops)
    assert det.float_ops == [], sorted(set(det.float_ops))
    assert m.dtype == torch.int64 and e.dtype == torch.int64 and m.shape == (4, 10)
    # and the detector does fire on a float op
    with FloatOpDetector() as det:
        torch.ones(2) * 2
    assert det.float_ops


def test_rap_8bit_within_1p5_points_of_fp32(tiny_digits_model, rap_tiny, loaders):
    model = tiny_digits_model[0]
    fp32, n = accuracy(model, loaders[1])
    rap_tiny.set_mvm(MVMConfig(mode="sparse", adc_bits=8))      # K = 64: every row at once
    acc, _ = accuracy(rap_tiny, loaders[1])
    assert n == 450
    assert acc >= fp32 - 0.015, (acc, fp32)
    assert rap_tiny.counters().conversions > 0


def test_weight_exponent_calibration_changes_scales(tiny_digits_model, loaders):
    cover = convert_to_rap(tiny_digits_model[0], loaders[0], RapConfig(weight_exp_candidates=1))
    calib = convert_to_rap(tiny_digits_model[0], loaders[0])
    a = torch.cat([b.fc1.w_shift + b.fc1.w_e_min for b in cover.blocks])
    b = torch.cat([b.fc1.w_shift + b.fc1.w_e_min for b in calib.blocks])
    assert (b <= a).all() and (b < a).any()          # some channels trade clipping for step


def test_evaluate_rap_reports_all_baselines(tiny_digits_model, loaders, synthetic_lookups):
    hw = HardwareModel.from_lookup(synthetic_lookups, process="tt", adc_bits=4)
    one_batch = [next(iter(loaders[1]))]
    one_batch = [(one_batch[0][0][:24], one_batch[0][1][:24])]
    r = evaluate_rap(tiny_digits_model[0], loaders[0], one_batch, hw, bits=4, seed=0)
    assert r["k"] == r["k_default"] == 5 and r["n_images"] == 24
    for key in ("fp32", "ptq_float", "rap_integer", "rap", "dense"):
        assert 0.0 <= r[key]["accuracy"] <= 1.0
    assert r["rap"]["adc_bits_exact"] == 4 and r["dense"]["lsb_unit_currents"] == 16
    assert r["rap"]["adc_energy_j_per_inference"] == pytest.approx(
        r["rap"]["conversions_per_inference"] * hw.adc(4).energy_j)
    assert r["rap"]["adc_source"] == "circuit" and r["corner"]["process"] == "tt"
    assert r["rap"]["accuracy"] > r["dense"]["accuracy"]
    t = r["timing"]  # the FP32 forward and the sparse path per chip, over the same images
    assert t["digital_s"] > 0 and t["per_chip_s"] > 0 and t["dense_per_chip_s"] > 0
