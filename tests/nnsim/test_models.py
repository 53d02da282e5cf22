"""DeiT-S from a local weights file: timm's module and ours load it strictly, same outputs."""

from __future__ import annotations

import pytest
import torch

from nnsim.models import create_model, load_deit_s


@pytest.fixture(scope="module")
def deit_s_weights(tmp_path_factory):
    """A random-weight DeiT-S state_dict saved as FB's checkpoint layout ({'model': sd})."""
    torch.manual_seed(0)
    sd = create_model("deit-s").state_dict()
    path = tmp_path_factory.mktemp("deit") / "deit_s.pth"
    torch.save({"model": sd}, path)
    return path, sd


def test_deit_s_weights_load_into_ours_and_timms_alike(deit_s_weights):
    path, sd = deit_s_weights
    ours, theirs = load_deit_s(path), load_deit_s(path, use_timm=True)
    assert list(ours.state_dict()) == list(sd) == list(theirs.state_dict())
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert a.shape == (1, 1000)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_deit_s_weights_errors_name_the_file(deit_s_weights, tmp_path):
    _, sd = deit_s_weights
    with pytest.raises(FileNotFoundError, match=r"no_such\.pth does not exist"):
        load_deit_s(tmp_path / "no_such.pth")
    bad = tmp_path / "bad.pth"
    torch.save({k: v for k, v in sd.items() if k != "head.weight"}, bad)
    with pytest.raises(ValueError, match=r"(?s)bad\.pth does not match.*head\.weight"):
        load_deit_s(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pth could not be read"):
        load_deit_s(junk)


def test_imagenet_calibration_never_falls_back_to_test_images(tmp_path, tiny_digits_model):
    """Without DIR/calib (or --calib-data) anything that calibrates exits 2 naming the split."""
    from PIL import Image

    from imc.cli import main
    from nnsim.data import load_dataset
    from nnsim.errors import MissingSplitError, NnsimError

    for split in ("val", "other"):
        (tmp_path / split / "c0").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / split / "c0" / "a.png")
    assert len(load_dataset("imagenet", "test", root=tmp_path)) == 1  # DIR/val
    with pytest.raises(MissingSplitError) as e:
        load_dataset("imagenet", "calib", root=tmp_path)
    assert isinstance(e.value, NnsimError) and e.value.split == "calib"
    assert str(tmp_path / "calib") in str(e.value)
    from pathlib import Path

    cache = str(Path(tiny_digits_model[1]["path"]).parent)
    args = ["evaluate", "--dataset", "imagenet", "--model", "digits-tiny", "--data",
            str(tmp_path), "--ideal", "--kv-range", "calibrated", "--quiet", "--cache-dir",
            cache]
    assert main(args) == 2
