"""Offline datasets for the simulator: digits, Fashion-MNIST, and an ImageNet-style folder.

Splits are deterministic (fixed seeds, stratified), so a model's test accuracy and RAP's
calibration split never overlap and never change between runs.

- ``digits``: scikit-learn ``load_digits`` (bundled, 1,797 images 8x8), upsampled
  bilinearly to 1x16x16; train / calib / test = 1,197 / 150 / 450 (stratified).
- ``fashion_mnist``: Debian ``dataset-fashion-mnist`` IDX files, 1x28x28;
  55,000 / 5,000 / 10,000 (calib = 5,000 of the official train set, fixed permutation).
- ``imagenet``: an image folder (``root/<split>/<class>/*.JPEG``), timm's DeiT eval
  transform, 3x224x224.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .errors import MissingSplitError

SPLITS = ("train", "calib", "test")
DATASETS = ("digits", "fashion_mnist", "imagenet")
FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
"""Where Debian's ``dataset-fashion-mnist`` puts the IDX files (``$FASHION_MNIST_DIR`` first)."""
_ALIASES = {"fashion": "fashion_mnist", "fmnist": "fashion_mnist", "fashion-mnist": "fashion_mnist"}
DIGITS_SIZE = 16
"""Side of the upsampled digits images (8x8 -> 16x16)."""


class ArrayDataset(Dataset):
    """Images and labels held in memory.

    Attributes:
        images: Float tensor (N, C, H, W), standardized with the train split's mean and std.
        labels: Int64 tensor (N,).
        name: Dataset name.
        split: ``train``, ``calib`` or ``test``.
        num_classes: Number of classes.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, name: str, split: str,
                 num_classes: int) -> None:
        self.images, self.labels = images, labels
        self.name, self.split, self.num_classes = name, split, num_classes

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def subset(self, n: int) -> ArrayDataset:
        """The first ``n`` samples (the splits are already shuffled and stratified)."""
        return ArrayDataset(self.images[:n], self.labels[:n], self.name, self.split,
                            self.num_classes)


def canonical_name(name: str) -> str:
    """Dataset name with aliases (``fashion``, ``fmnist``) resolved.

    Raises:
        ValueError: Unknown dataset.
    """
    n = _ALIASES.get(name.lower(), name.lower())
    if n not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return n


def load_dataset(name: str, split: str, *, root: str | Path | None = None) -> Dataset:
    """Load one split of a dataset.

    Args:
        name: ``digits``, ``fashion_mnist`` (alias ``fashion``) or ``imagenet``.
        split: ``train``, ``calib`` (held out for calibration, e.g. RAP or ClipFormer's
            alpha/beta) or ``test``.
        root: For ``imagenet``, the image folder: ``root/<split>`` with one sub-folder per
            class; for ``test`` also ``root/val`` or ``root`` itself. ``train`` and
            ``calib`` must exist as ``root/train``, ``root/calib`` (no fallback to test
            images). For ``fashion_mnist``, a folder
            holding the IDX ``.gz`` files (default: ``$FASHION_MNIST_DIR`` or Debian's path).

    Returns:
        An ``ArrayDataset`` (digits, fashion_mnist) or a torchvision ``ImageFolder``.

    Raises:
        ValueError: Unknown dataset or split.
        FileNotFoundError: The files are missing (the message says where it looked).
        MissingSplitError: ``imagenet`` without ``root/<split>`` for train/calib (also a
            FileNotFoundError; exit status 2 in the CLI).
    """
    name = canonical_name(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if name == "digits":
        x, y = _digits()[split]
        return ArrayDataset(x, y, name, split, 10)
    if name == "fashion_mnist":
        x, y = _fashion(str(root) if root else None)[split]
        return ArrayDataset(x, y, name, split, 10)
    return _image_folder(root, split)


def make_loader(ds: Dataset, batch_size: int = 256, *, shuffle: bool = False,
                seed: int = 0) -> DataLoader:
    """A ``DataLoader`` in the main process; shuffling from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=g, num_workers=0)


def _standardize(splits: dict[str, tuple[np.ndarray, np.ndarray]]
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    mean = float(splits["train"][0].mean())
    std = float(splits["train"][0].std())
    return {k: (torch.from_numpy(((x - mean) / std).astype(np.float32)),
                torch.from_numpy(y.astype(np.int64))) for k, (x, y) in splits.items()}


@functools.cache
def _digits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    y = d.target
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=450, stratify=y,
                                                      random_state=0)
    x_train, x_cal, y_train, y_cal = train_test_split(x_rest, y_rest, test_size=150,
                                                      stratify=y_rest, random_state=1)
    out = {}
    for k, (xi, yi) in {"train": (x_train, y_train), "calib": (x_cal, y_cal),
                        "test": (x_test, y_test)}.items():
        t = torch.from_numpy(xi)[:, None]
        t = torch.nn.functional.interpolate(t, size=(DIGITS_SIZE, DIGITS_SIZE),
                                            mode="bilinear", align_corners=False)
        out[k] = (t.numpy(), yi)
    return _standardize(out)


def _fashion_dir(root: str | None) -> Path:
    cands = [Path(root)] if root else []
    if not root and os.environ.get("FASHION_MNIST_DIR"):
        cands.append(Path(os.environ["FASHION_MNIST_DIR"]))
    if not root:
        cands.extend(FASHION_MNIST_DIRS)
    for c in cands:
        if (c / "train-images-idx3-ubyte.gz").is_file():
            return c
    raise FileNotFoundError(
        "Fashion-MNIST IDX files (train-images-idx3-ubyte.gz ...) not found in "
        f"{', '.join(str(c) for c in cands)}; install Debian's dataset-fashion-mnist "
        "(apt-get install dataset-fashion-mnist) or set FASHION_MNIST_DIR")


def _idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


@functools.cache
def _fashion(root: str | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    d = _fashion_dir(root)
    xtr = _idx(d / "train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    ytr = _idx(d / "train-labels-idx1-ubyte.gz", 8)
    xte = _idx(d / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    yte = _idx(d / "t10k-labels-idx1-ubyte.gz", 8)
    perm = np.random.default_rng(0).permutation(len(ytr))
    tr, cal = perm[:55000], perm[55000:]
    f = np.float32(1 / 255)
    return _standardize({"train": (xtr[tr] * f, ytr[tr]), "calib": (xtr[cal] * f, ytr[cal]),
                         "test": (xte * f, yte)})


def imagenet_transform() -> Any:
    """timm's eval transform of ``deit_small_patch16_224``: bicubic resize of the short side
    to 248 (crop_pct 0.9), centre crop 224, ImageNet mean/std."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(248, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])


def image_folder(folder: str | Path) -> Dataset:
    """An ImageNet-style folder (``folder/<class>/*.JPEG``) with timm's DeiT eval transform
    (the CLI's ``--calib-data DIR``)."""
    from torchvision.datasets import ImageFolder

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return ImageFolder(str(folder), transform=imagenet_transform())


def _image_folder(root: str | Path | None, split: str) -> Dataset:
    if root is None:
        raise FileNotFoundError("imagenet needs an image folder: pass root= (CLI: --data DIR)")
    root = Path(root)
    if split == "test":
        folder = root / "test" if (root / "test").is_dir() else \
            (root / "val" if (root / "val").is_dir() else root)
        return image_folder(folder)
    if not (root / split).is_dir():
        # never fall back to the test images: K/V ranges, ClipFormer's alpha/beta, the moment
        # mode's variance and RAP's exponents would be fitted on what is then scored
        raise MissingSplitError(
            f"imagenet: the {split!r} split is missing: {root / split} does not exist "
            f"(put held-out images there, one folder per class, or pass --calib-data DIR); "
            "the test images are never used to calibrate", split=split, file=str(root / split))
    return image_folder(root / split)
