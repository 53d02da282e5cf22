"""Vision Transformers: a hand-written DeiT with timm's parameter names, presets, training.

The module tree and ``state_dict`` keys are those of ``timm``'s ``VisionTransformer``
(``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N.{norm1,attn.qkv,attn.proj,
norm2,mlp.fc1,mlp.fc2}``, ``norm``, ``head``), so timm's DeiT-S weights load strictly and
``convert_to_analog`` treats timm's modules and these alike.

Presets (``PRESETS``): ``digits`` (the offline default, about 97 % on the digits test split),
``fashion_mnist`` (about 88 %), ``digits-tiny`` (a few seconds of training, for tests) and
``deit-s`` (DeiT-S shape; weights from a local file only).
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import load_dataset, make_loader

DEFAULT_CACHE = Path("~/.cache/spicebridge/models")


class PatchEmbed(nn.Module):
    """Conv patch embedding (timm name ``patch_embed.proj``)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, D)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` linear, written out (no fused SDPA)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.attn_dim = self.num_heads * self.head_dim
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm, self.k_norm, self.norm = nn.Identity(), nn.Identity(), nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim) \
            .permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.attn_dim))


class Mlp(nn.Module):
    """``fc1`` -> GELU -> ``fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN transformer block (LayerNorm eps 1e-6, as timm's ViT)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual attention then residual MLP."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """DeiT-style ViT with timm's parameter names; output ``head(norm(x)[:, 0])``."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 num_classes: int = 1000, embed_dim: int = 384, depth: int = 12,
                 num_heads: int = 6, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.config = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                           num_classes=num_classes, embed_dim=embed_dim, depth=depth,
                           num_heads=num_heads, mlp_ratio=mlp_ratio)
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> logits (B, num_classes)."""
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


# name -> (dataset, model config, training recipe)
PRESETS: dict[str, dict[str, Any]] = {
    "digits": dict(
        dataset="digits",
        model=dict(img_size=16, patch_size=4, in_chans=1, num_classes=10, embed_dim=64,
                   depth=6, num_heads=4, mlp_ratio=2.0),
        train=dict(epochs=150, batch_size=64, lr=2e-3, weight_decay=0.05, shift=2, flip=False),
    ),
    "digits-tiny": dict(
        dataset="digits",
        model=dict(img_size=16, patch_size=4, in_chans=1, num_classes=10, embed_dim=32,
                   depth=2, num_heads=2, mlp_ratio=2.0),
        train=dict(epochs=30, batch_size=64, lr=4e-3, weight_decay=0.05, shift=0, flip=False),
    ),
    "fashion_mnist": dict(
        dataset="fashion_mnist",
        model=dict(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=64,
                   depth=4, num_heads=4, mlp_ratio=2.0),
        train=dict(epochs=8, batch_size=128, lr=2e-3, weight_decay=0.05, shift=0, flip=False),
    ),
    "deit-s": dict(
        dataset="imagenet",
        model=dict(img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=384,
                   depth=12, num_heads=6, mlp_ratio=4.0),
        train=None,
    ),
}
_ALIASES = {"fashion": "fashion_mnist", "fmnist": "fashion_mnist", "deit_s": "deit-s",
            "deit_small_patch16_224": "deit-s"}


def canonical_model_name(name: str) -> str:
    """Preset name with aliases resolved.

    Raises:
        ValueError: Unknown preset.
    """
    n = _ALIASES.get(name.lower(), name.lower())
    if n not in PRESETS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(PRESETS)}")
    return n


def create_model(name: str) -> VisionTransformer:
    """An untrained model of a preset's shape."""
    return VisionTransformer(**PRESETS[canonical_model_name(name)]["model"])


def load_deit_s(weights: str | Path, *, use_timm: bool = False) -> nn.Module:
    """DeiT-S (``deit_small_patch16_224``) with weights from a local file; never downloads.

    Args:
        weights: A ``.pth``/``.pt`` (plain state_dict, or FB's checkpoint with the keys under
            ``'model'``) or a ``.safetensors`` file.
        use_timm: Build timm's own module (``timm.create_model(..., pretrained=False)``)
            instead of the hand-written one; both load the same keys strictly.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file cannot be read or does not hold DeiT-S's parameters.
    """
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"DeiT-S weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
                sd = sd["model"]
    except Exception as e:  # unpickling, truncated file, not a checkpoint at all
        raise ValueError(f"DeiT-S weights file {path} could not be read: "
                         f"{type(e).__name__}: {e}") from e
    if not isinstance(sd, dict):
        raise ValueError(f"DeiT-S weights file {path} holds a {type(sd).__name__}, "
                         "not a state_dict")
    if use_timm:
        import timm

        model = timm.create_model("deit_small_patch16_224", pretrained=False)
    else:
        model = create_model("deit-s")
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ValueError(f"DeiT-S weights file {path} does not match deit_small_patch16_224 "
                         f"(timm parameter names, strict load): {str(e)[:600]}") from e
    return model.eval()


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or n in ("cls_token", "pos_embed") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _shift(x: torch.Tensor, shift: int, g: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``shift`` px (zero-pad and crop), one offset per batch row."""
    if shift <= 0:
        return x
    b, _, h, w = x.shape
    pad = F.pad(x, (shift, shift, shift, shift))
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=g)
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :]
    bi = torch.arange(b)[:, None, None, None]
    ci = torch.arange(x.shape[1])[None, :, None, None]
    return pad[bi, ci, rows, cols]


@torch.no_grad()
def accuracy(model: nn.Module, ds: Any, batch_size: int = 500,
             device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy (fraction) of ``model`` on a dataset."""
    model.eval()
    correct = total = 0
    for x, y in make_loader(ds, batch_size):
        correct += int((model(x.to(device)).argmax(-1).cpu() == y).sum())
        total += int(y.numel())
    return correct / max(total, 1)


def train_model(name: str, *, seed: int = 0, epochs: int | None = None, quiet: bool = True,
                device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Train a preset from scratch (AdamW, warm-up + cosine, label smoothing 0.1).

    Returns:
        (model in eval mode, meta) where meta holds the seed, recipe, accuracies and time.
    """
    name = canonical_model_name(name)
    preset = PRESETS[name]
    if preset["train"] is None:
        raise ValueError(f"model {name!r} is not trained here; load its weights from a file")
    recipe = dict(preset["train"])
    if epochs is not None:
        recipe["epochs"] = int(epochs)
    seeds = np.random.SeedSequence(seed).generate_state(2)
    torch.manual_seed(int(seeds[0]))
    g = torch.Generator().manual_seed(int(seeds[1]))
    model = create_model(name).to(device)
    train = load_dataset(preset["dataset"], "train")
    opt = torch.optim.AdamW(_param_groups(model, recipe["weight_decay"]), lr=recipe["lr"])
    steps_per_epoch = math.ceil(len(train) / recipe["batch_size"])
    total = recipe["epochs"] * steps_per_epoch
    warm = max(1, int(0.05 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm
        else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    x_all, y_all = train.images, train.labels
    t0, c0 = time.perf_counter(), time.process_time()
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(total=recipe["epochs"], desc=f"train {name}", unit="epoch")
    for _ in range(recipe["epochs"]):
        model.train()
        perm = torch.randperm(len(train), generator=g)
        for i in range(0, len(train), recipe["batch_size"]):
            idx = perm[i:i + recipe["batch_size"]]
            x = _shift(x_all[idx], recipe["shift"], g)
            if recipe["flip"]:
                flip = torch.rand(len(idx), generator=g) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(model(x.to(device)), y_all[idx].to(device),
                                   label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    if bar is not None:
        bar.close()
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    model.eval()
    meta = dict(name=name, dataset=preset["dataset"], seed=int(seed), recipe=recipe,
                model=dict(preset["model"]), train_time_s=train_s, train_cpu_s=train_cpu_s,
                test_accuracy=accuracy(model, load_dataset(preset["dataset"], "test"),
                                       device=device),
                torch_version=str(torch.__version__), threads=torch.get_num_threads())
    return model.cpu(), meta


def checkpoint_path(name: str, cache_dir: str | Path | None = None, seed: int = 0,
                    epochs: int | None = None) -> Path:
    """Where ``load_or_train`` keeps a preset's checkpoint."""
    name = canonical_model_name(name)
    ep = PRESETS[name]["train"]["epochs"] if epochs is None else int(epochs)
    d = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE.expanduser()
    return d / f"{name}-seed{seed}-e{ep}.pt"


def load_or_train(name: str, cache_dir: str | Path | None = None, seed: int = 0,
                  epochs: int | None = None, *, quiet: bool = True
                  ) -> tuple[nn.Module, dict[str, Any]]:
    """A trained preset: from its cached checkpoint, or trained now and cached.

    Args:
        name: ``digits``, ``fashion_mnist`` or ``digits-tiny``.
        cache_dir: Checkpoint folder (default ``~/.cache/spicebridge/models``).
        seed: Training seed (recorded in the checkpoint and part of its file name).
        epochs: Override the preset's epoch count.
        quiet: No progress bar while training.

    Returns:
        (model in eval mode on CPU, meta dict incl. ``seed``, ``test_accuracy``, ``path``).
    """
    path = checkpoint_path(name, cache_dir, seed, epochs)
    if path.is_file():
        state, meta = load_checkpoint(path)
        model = create_model(meta["name"])
        model.load_state_dict(state, strict=True)
        return model.eval(), dict(meta, path=str(path), cached=True)
    model, meta = train_model(name, seed=seed, epochs=epochs, quiet=quiet)
    save_checkpoint(path, model.state_dict(), meta)
    return model, dict(meta, path=str(path), cached=False)


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor],
                    meta: dict[str, Any]) -> None:
    """Write ``{"state_dict", "meta"}`` atomically (temporary file, then rename).

    ``meta`` must hold plain data only (str, numbers, bool, None, lists, dicts) so that
    ``load_checkpoint`` can read it back without unpickling code.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"state_dict": state_dict, "meta": meta}, tmp)
        # mkstemp makes the file 0600; a checkpoint is shared data: honour the umask instead
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, meta) of a checkpoint, read with ``torch.load(weights_only=True)``: tensors
    and plain containers only, never arbitrary pickled objects.

    Raises:
        ValueError: The file cannot be read or is not one of our checkpoints.
    """
    path = Path(path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, foreign pickle refused by weights_only
        raise ValueError(f"checkpoint {path} could not be read: {type(e).__name__}: "
                         f"{str(e)[:300]}") from e
    if not (isinstance(ck, dict) and isinstance(ck.get("state_dict"), dict)
            and isinstance(ck.get("meta"), dict)):
        raise ValueError(f"checkpoint {path} is not a {{'state_dict', 'meta'}} checkpoint")
    return ck["state_dict"], ck["meta"]


def clone(model: nn.Module) -> nn.Module:
    """A deep copy (conversion never changes the caller's model)."""
    return copy.deepcopy(model)
