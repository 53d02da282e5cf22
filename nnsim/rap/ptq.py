"""Standard float-scale post-training quantization (the baseline RAP is compared with).

W8A8 fake quantization with float scales and dequantize-quantize (DQ-Q) around every linear
layer (and the patch-embedding convolution): weights per output channel with scale
``max|w_c| / 127``, activations per tensor with a static scale ``max|x| / 127`` from the
calibration split. Softmax, LayerNorm and GELU stay in float, as in a typical PTQ flow that
runs them on an FPU.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn


def _fake_quant(x: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    top = (1 << (bits - 1)) - 1
    return torch.round(x / scale).clamp(-top, top) * scale


@torch.no_grad()
def float_ptq(model: nn.Module, calib_loader: Iterable, bits: int = 8,
              max_batches: int | None = None) -> nn.Module:
    """A copy of ``model`` with W``bits``A``bits`` float-scale fake quantization.

    Args:
        model: float ViT (any module with ``nn.Linear``/``nn.Conv2d`` layers).
        calib_loader: yields ``(images, labels)``; sets the static activation scales.
        bits: weight and activation width.
        max_batches: calibration batches to use (all when ``None``).
    """
    q = copy.deepcopy(model).eval()
    layers = {n: m for n, m in q.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)}
    amax: dict[str, float] = dict.fromkeys(layers, 0.0)
    hooks = []
    for name, mod in layers.items():
        def observe(_m: nn.Module, args: tuple, name: str = name) -> None:
            amax[name] = max(amax[name], float(args[0].detach().abs().max()))
        hooks.append(mod.register_forward_pre_hook(observe))
    try:
        for i, batch in enumerate(calib_loader):
            if max_batches is not None and i >= max_batches:
                break
            q(batch[0] if isinstance(batch, list | tuple) else batch)
    finally:
        for h in hooks:
            h.remove()
    top = (1 << (bits - 1)) - 1
    for name, mod in layers.items():
        w = mod.weight.data
        w_scale = w.reshape(w.shape[0], -1).abs().amax(1).clamp(min=1e-12) / top
        mod.weight.data = _fake_quant(w, w_scale.reshape(-1, *([1] * (w.dim() - 1))), bits)
        a_scale = torch.tensor(max(amax[name], 1e-12) / top)

        def quant_input(_m: nn.Module, args: tuple, s: torch.Tensor = a_scale) -> tuple:
            return (_fake_quant(args[0], s.to(args[0]), bits), *args[1:])
        mod.register_forward_pre_hook(quant_input)
    return q
