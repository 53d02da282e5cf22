"""Integer-only ViT forward (RAP/FLARE) built from a float timm-style ViT.

:func:`convert_to_rap` reads a float ViT with timm's module names (``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
mlp.fc2}``, ``norm``, ``head``) and a calibration loader, and returns a :class:`RapViT`:

* :meth:`RapViT.quantize_input` is the only float step: images -> int8 mantissas with a
  power-of-two exponent set by calibration;
* :meth:`RapViT.forward_int` runs from those mantissas to integer logits ``(m, e)`` with
  integer tensor operations only (a test checks every dispatched op);
* weights are int8 with one power-of-two exponent per output channel; the calibration split
  picks, per channel, the exponent (among the one that covers ``max|w|`` and the next
  ``weight_exp_candidates - 1`` finer ones, which clip) that minimises the output error on
  the calibration activations;
* activations feeding a matrix product are 8-bit windows below each token's effective MSB
  (per token; K and V per head over all tokens so the scores of a row share one exponent);
  the residual stream keeps a ``residual_bits`` window per token; every requantization is an
  arithmetic shift.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from .adc import ColumnADC
from .crossbar import CellSettings, ColumnReadout
from .intops import (
    align,
    int_matmul,
    pow2_exponent,
    quantize_pow2,
    shift_round,
    window,
)
from .nonlinear import int_gelu, int_layernorm, int_softmax
from .sparse_mvm import MVMConfig, MVMCounters, SparseMVM

_I64 = torch.int64
ANALOG_LAYERS = ("qkv", "proj", "fc1", "fc2")


@dataclass(frozen=True)
class RapConfig:
    """Settings of the RAP integer path (each a choice where the paper is silent)."""

    weight_bits: int = 8
    """Signed weight width (W8)."""
    act_bits: int = 8
    """Signed activation window feeding matrix products (A8)."""
    residual_bits: int = 20
    """Window kept per token on the residual stream (and at the LayerNorm input)."""
    softmax_out_bits: int = 8
    """Unsigned window of the attention probabilities (per row)."""
    softmax_lut_bits: int = 4
    """``2**f`` table of the softmax has ``2**softmax_lut_bits + 1`` entries."""
    softmax_normalize: str = "newton"
    """``"newton"`` (power of two of the sum's MSB + reciprocal of its mantissa) or ``"pow2"``."""
    softmax_newton_steps: int = 2
    """Newton steps of the softmax reciprocal."""
    layernorm_newton_steps: int = 2
    """Newton steps of the LayerNorm inverse square root."""
    weight_exp_candidates: int = 3
    """Per-channel weight exponents tried by calibration (1: always cover max|w|)."""
    calib_tokens: int = 4096
    """Calibration activation rows kept per layer for the weight-exponent choice."""

    def __post_init__(self) -> None:
        for name in ("weight_bits", "act_bits", "softmax_out_bits"):
            v = getattr(self, name)
            if not 2 <= v <= 16:
                raise ValueError(f"RapConfig.{name}={v!r} must be in 2..16")
        if not 8 <= self.residual_bits <= 24:
            raise ValueError(f"RapConfig.residual_bits={self.residual_bits!r} must be 8..24")
        if self.weight_exp_candidates < 1:
            raise ValueError("RapConfig.weight_exp_candidates must be >= 1")


class IntLinear(nn.Module):
    """``y = x W^T + b`` on integers: per-channel power-of-two weight exponents, aligned by
    left shifts; the bias added at the accumulator's (per-token) exponent by one shift."""

    def __init__(self, name: str, w_m: Tensor, w_e: Tensor, b_m: Tensor, b_e: int) -> None:
        super().__init__()
        self.name = name
        self.register_buffer("w_m", w_m.to(_I64))
        e_min = int(w_e.min())
        self.w_e_min = e_min
        self.register_buffer("w_shift", (w_e - e_min).to(_I64))
        self.register_buffer("b_m", b_m.to(_I64))
        self.b_e = int(b_e)
        self.mvm: SparseMVM | None = None

    @classmethod
    def from_float(cls, name: str, weight: Tensor, bias: Tensor | None, bits: int,
                   calib_x: Tensor | None, candidates: int) -> IntLinear:
        """Quantize offline; ``calib_x`` (rows, in) picks each channel's exponent."""
        w = weight.detach().double().reshape(weight.shape[0], -1)
        e0 = torch.tensor([pow2_exponent(float(v), bits) for v in w.abs().amax(1)],
                          dtype=_I64)
        best_e = e0.clone()
        if calib_x is not None and candidates > 1:
            x = calib_x.double()
            errs = []
            for c in range(candidates):
                wq = quantize_pow2(w, (e0 - c)[:, None], bits).double() * torch.exp2(
                    (e0 - c)[:, None].double())
                errs.append(((x @ (w - wq).T) ** 2).sum(0))
            best_e = e0 - torch.stack(errs).argmin(0)
        w_m = quantize_pow2(w, best_e[:, None], bits)
        b = torch.zeros(w.shape[0], dtype=torch.float64) if bias is None else \
            bias.detach().double()
        b_e = pow2_exponent(float(b.abs().max()), 24)
        return cls(name, w_m, best_e, quantize_pow2(b, b_e, 24), b_e)

    def forward(self, x: Tensor, e: Tensor, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor]:
        """``x`` (..., in) windowed integers with exponent ``e`` (..., 1) -> ``(acc, e_acc)``."""
        acc = self.mvm(x, generator) if self.mvm is not None else int_matmul(x, self.w_m.T)
        acc = acc << self.w_shift
        e_acc = e + self.w_e_min
        return acc + shift_round(self.b_m.expand_as(acc), e_acc - self.b_e), e_acc


class IntLayerNorm(nn.Module):
    """Integer LayerNorm with power-of-two-scaled gamma/beta (16-bit mantissas)."""

    def __init__(self, ln: nn.LayerNorm, cfg: RapConfig) -> None:
        super().__init__()
        g, b = ln.weight.detach().double(), ln.bias.detach().double()
        self.g_e = pow2_exponent(float(g.abs().max()), 16)
        self.b_e = pow2_exponent(float(b.abs().max()), 16)
        self.register_buffer("g_m", quantize_pow2(g, self.g_e, 16))
        self.register_buffer("b_m", quantize_pow2(b, self.b_e, 16))
        self.eps_e = pow2_exponent(float(ln.eps), 24)
        self.eps_m = int(quantize_pow2(torch.tensor(float(ln.eps), dtype=torch.float64),
                                       self.eps_e, 24))
        self.cfg = cfg

    def forward(self, x: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        """Normalise the last dim; output an ``act_bits`` window per token."""
        return int_layernorm(x, e, self.g_m, self.g_e, self.b_m, self.b_e, self.eps_m,
                             self.eps_e, in_bits=self.cfg.residual_bits,
                             out_bits=self.cfg.act_bits,
                             newton_steps=self.cfg.layernorm_newton_steps)


class IntBlock(nn.Module):
    """One pre-LN transformer block on integers."""

    def __init__(self, blk: nn.Module, idx: int, cfg: RapConfig, calib: dict[str, Tensor]
                 ) -> None:
        super().__init__()
        attn = blk.attn
        for name in ("q_norm", "k_norm", "norm"):
            mod = getattr(attn, name, None)
            if mod is not None and not isinstance(mod, nn.Identity):
                raise NotImplementedError(f"blocks.{idx}.attn.{name} is not supported by RAP")
        for name in ("ls1", "ls2", "drop_path1", "drop_path2"):
            mod = getattr(blk, name, None)
            if mod is not None and not isinstance(mod, nn.Identity):
                raise NotImplementedError(f"blocks.{idx}.{name} is not supported by RAP")
        act = getattr(blk.mlp, "act", None)
        if not isinstance(act, nn.GELU) or getattr(act, "approximate", "none") != "none":
            raise NotImplementedError(f"blocks.{idx}.mlp.act must be exact nn.GELU")
        self.cfg = cfg
        self.num_heads = attn.num_heads
        self.head_dim = attn.qkv.out_features // (3 * attn.num_heads)
        scale = float(attn.scale)
        log2s = math.log2(scale)
        if abs(log2s - round(log2s)) < 1e-12:
            self.scale_m, self.scale_e = 1, round(log2s)
        else:
            self.scale_e = math.floor(log2s) - 14
            self.scale_m = round(scale / 2.0 ** self.scale_e)
        c = cfg.weight_exp_candidates
        p = f"blocks.{idx}."
        self.norm1 = IntLayerNorm(blk.norm1, cfg)
        self.qkv = IntLinear.from_float("qkv", attn.qkv.weight, attn.qkv.bias, cfg.weight_bits,
                                        calib.get(p + "attn.qkv"), c)
        self.proj = IntLinear.from_float("proj", attn.proj.weight, attn.proj.bias,
                                         cfg.weight_bits, calib.get(p + "attn.proj"), c)
        self.norm2 = IntLayerNorm(blk.norm2, cfg)
        self.fc1 = IntLinear.from_float("fc1", blk.mlp.fc1.weight, blk.mlp.fc1.bias,
                                        cfg.weight_bits, calib.get(p + "mlp.fc1"), c)
        self.fc2 = IntLinear.from_float("fc2", blk.mlp.fc2.weight, blk.mlp.fc2.bias,
                                        cfg.weight_bits, calib.get(p + "mlp.fc2"), c)

    def _residual(self, x: Tensor, xe: Tensor, y: Tensor, ye: Tensor) -> tuple[Tensor, Tensor]:
        a, b, e = align(x, xe, y, ye)
        return window(a + b, e, self.cfg.residual_bits, -1)

    def forward(self, x: Tensor, xe: Tensor, gen: torch.Generator | None
                ) -> tuple[Tensor, Tensor]:
        """``x`` (B, N, D) residual mantissas, ``xe`` (B, N, 1)."""
        cfg = self.cfg
        bsz, n, d = x.shape
        h, he = self.norm1(x, xe)
        acc, ae = self.qkv(h, he, gen)
        acc = acc.reshape(bsz, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        ae = ae.reshape(bsz, 1, n, 1)
        q, qe = window(acc[0], ae, cfg.act_bits, -1)                     # per token, head
        e_kv = ae.amin(dim=2, keepdim=True)                              # (B, 1, 1, 1)
        k, ke = window(acc[1] << (ae - e_kv), e_kv, cfg.act_bits, (-2, -1))  # per head
        v, ve = window(acc[2] << (ae - e_kv), e_kv, cfg.act_bits, (-2, -1))
        scores = int_matmul(q, k.transpose(-2, -1))
        if self.scale_m != 1:
            scores = scores * self.scale_m
        se = qe + ke + self.scale_e
        p, pe = int_softmax(scores, se, out_bits=cfg.softmax_out_bits,
                            lut_bits=cfg.softmax_lut_bits, normalize=cfg.softmax_normalize,
                            newton_steps=cfg.softmax_newton_steps)
        o = int_matmul(p, v)                                             # (B, H, N, hd)
        oe = pe + ve                                                     # (B, H, N, 1)
        e_min = oe.amin(dim=1, keepdim=True)
        o = (o << (oe - e_min)).permute(0, 2, 1, 3).reshape(bsz, n, d)
        o, oe = window(o, e_min.reshape(bsz, n, 1), cfg.act_bits, -1)
        y, ye = self.proj(o, oe, gen)
        x, xe = self._residual(x, xe, y, ye)
        h, he = self.norm2(x, xe)
        f, fe = self.fc1(h, he, gen)
        f, fe = int_gelu(f, fe, out_bits=cfg.act_bits)
        y, ye = self.fc2(f, fe, gen)
        return self._residual(x, xe, y, ye)


class RapViT(nn.Module):
    """Integer ViT (see the module docstring). Build it with :func:`convert_to_rap`."""

    def __init__(self, model: nn.Module, cfg: RapConfig, calib: dict[str, Tensor],
                 input_exp: int) -> None:
        super().__init__()
        for name in ("fc_norm", "head_drop"):
            mod = getattr(model, name, None)
            if mod is not None and not isinstance(mod, nn.Identity | nn.Dropout):
                raise NotImplementedError(f"model.{name} is not supported by RAP")
        if getattr(model, "global_pool", "token") not in ("token", None):
            raise NotImplementedError("RAP supports class-token pooling only")
        if getattr(model, "num_reg_tokens", 0):
            raise NotImplementedError("register tokens are not supported by RAP")
        self.cfg = cfg
        conv = model.patch_embed.proj
        self.patch = int(conv.kernel_size[0])
        if tuple(conv.kernel_size) != tuple(conv.stride):
            raise NotImplementedError("patch_embed.proj must have kernel == stride")
        self.input_exp = int(input_exp)
        self.patch_embed = IntLinear.from_float(
            "patch_embed", conv.weight, conv.bias, cfg.weight_bits,
            calib.get("patch_embed.proj"), cfg.weight_exp_candidates)
        cls_tok = model.cls_token.detach().double()
        pos = model.pos_embed.detach().double()
        self.tok_e = pow2_exponent(float(torch.cat([cls_tok.abs().flatten(),
                                                    pos.abs().flatten()]).max()), 16)
        self.register_buffer("cls_m", quantize_pow2(cls_tok, self.tok_e, 16))
        self.register_buffer("pos_m", quantize_pow2(pos, self.tok_e, 16))
        self.blocks = nn.ModuleList([IntBlock(b, i, cfg, calib)
                                     for i, b in enumerate(model.blocks)])
        self.norm = IntLayerNorm(model.norm, cfg)
        self.head = IntLinear.from_float("head", model.head.weight, model.head.bias,
                                         cfg.weight_bits, calib.get("head"),
                                         cfg.weight_exp_candidates)
        self.mvm_config: MVMConfig = MVMConfig(mode="digital")
        self.generator: torch.Generator | None = None
        self.adc_source = "none"

    # ------------------------------------------------------------------ analog mapping
    def analog_layers(self) -> list[IntLinear]:
        """The linear layers mapped to crossbars (qkv, proj, fc1, fc2 of every block)."""
        return [getattr(b, n) for b in self.blocks for n in ANALOG_LAYERS]

    def set_mvm(self, mvm: MVMConfig, hw: object | None = None, seed: int = 0, *,
                exact_shortcut: bool = True, adc_sampler: str = "table",
                ideal_cells: bool = False, cells: CellSettings | None = None,
                fused: bool = True, use_kernel: bool = True) -> RapViT:
        """Map the analog layers with ``mvm``; the ADC is ``hw.adc(bits)``, or ideal when
        ``hw`` is ``None`` or holds no ADC tables (``HardwareModel.ideal()``).

        With ``hw`` and its ADC the cells are **programmed** once per chip and read through
        the crossbar's transfer, spread and read noise (``cells``, default
        :class:`CellSettings`: the analog simulator's defaults; :mod:`nnsim.rap.crossbar`),
        the same for the sparse and the dense mapping. ``ideal_cells=True`` (or no ``hw``)
        keeps exact integer cell levels with the ADC alone (the pre-issue-15 model; its
        conversions are tabulated in integers, :class:`ColumnADC`).

        ``seed`` draws the chip (ADC instance of every physical column, the programmed
        conductances, the columns' transfer spread) and seeds the conversion-noise stream
        (``torch.Generator`` from ``numpy.random.SeedSequence``). ``adc_sampler`` is
        :meth:`ColumnADC.from_adc_model`'s ``sampler`` (ideal cells); ``fused`` draws a
        conversion only where its code is uncertain (False: every conversion);
        ``use_kernel`` runs programmed cells through the fused C kernel where it can be built
        (``nnsim.rap.sparse_mvm.kernel_path``; False: the torch path).
        """
        import numpy as np

        self.mvm_config = mvm
        ss = np.random.SeedSequence(seed)
        chip_seed, noise_seed = (int(s.generate_state(1)[0]) for s in ss.spawn(2))
        chip = torch.Generator().manual_seed(chip_seed)
        self.generator = torch.Generator(device=self.cls_m.device).manual_seed(noise_seed)
        adc = None
        if mvm.mode != "digital":
            if hw is None or getattr(hw, "adcs", None) == {}:   # no ADC tables: ideal ADC
                adc = ColumnADC.ideal(mvm.adc_bits, mvm.shift, mvm.s_max)
            else:
                adc = ColumnADC.from_adc_model(hw.adc(mvm.adc_bits), mvm.shift, mvm.s_max,
                                               sampler=adc_sampler)
                if float(adc.error_probability().max()) == 0.0:   # an error-free model
                    adc = ColumnADC(adc.bits, adc.shift, adc.s_max, adc.n_instances,
                                    adc.energy_j, adc.conversion_time_s, "circuit-error-free")
            adc = adc.to(self.cls_m.device)
        programmed = (mvm.mode != "digital" and not ideal_cells and hw is not None
                      and getattr(hw, "adcs", None) != {})
        self.cell_settings = (cells or CellSettings()) if programmed else None
        self.adc_source = "none" if adc is None else adc.source
        self.column_adc = adc
        self.readout = None
        for lin in self.analog_layers():
            if mvm.mode == "digital":
                lin.mvm = None
            else:
                lin.mvm = SparseMVM(lin.w_m.cpu(), replace(mvm, weight_bits=self.cfg.weight_bits,
                                                          input_bits=self.cfg.act_bits),
                                    adc, chip, exact_shortcut=exact_shortcut, fused=fused,
                                    use_kernel=use_kernel)
                if programmed:
                    lin.mvm.program(hw, self.cell_settings, chip)
        if programmed:
            layers = [lin.mvm for lin in self.analog_layers()]
            self.readout = ColumnReadout(
                hw, hw.adc(mvm.adc_bits), mvm.shift, max(m.max_sum_q() for m in layers),
                max(float(m.z.abs().amax()) for m in layers), self.cell_settings)
            for m in layers:
                m.attach_readout(self.readout)
        for lin in self.analog_layers():
            if lin.mvm is not None:
                lin.mvm.to(self.cls_m.device)
        return self

    @property
    def cells_model(self) -> str:
        """``"programmed"`` (write noise, transfer, read noise), ``"ideal"`` or ``"none"``."""
        if self.mvm_config.mode == "digital":
            return "none"
        return "programmed" if getattr(self, "readout", None) is not None else "ideal"

    def counters(self) -> MVMCounters:
        """Summed work of the analog layers since :meth:`reset_counters`."""
        total = MVMCounters()
        for lin in self.analog_layers():
            if lin.mvm is not None:
                total.add(lin.mvm.counters)
        return total

    def reset_counters(self) -> None:
        """Zero the work counters."""
        for lin in self.analog_layers():
            if lin.mvm is not None:
                lin.mvm.counters = MVMCounters()

    # ------------------------------------------------------------------ forward
    def quantize_input(self, x: Tensor) -> Tensor:
        """The input quantizer (the only float step): images -> int8 mantissas at
        exponent :attr:`input_exp`."""
        return quantize_pow2(x, self.input_exp, self.cfg.act_bits)

    def forward_int(self, xm: Tensor) -> tuple[Tensor, Tensor]:
        """Integer mantissas of the images (B, C, H, W) -> logits ``(m, e)`` (B, classes),
        ``(B, 1)``. Integer tensor operations only.

        On a CPU with torch set to several threads, the fused C kernel of the programmed-cell
        MVMs (``nnsim/kernels/rap_mvm.c``) runs on that many threads and the torch
        operations around it on one: they act on a few tokens per image, and their OpenMP
        regions, a barrier each, made the whole forward 2.5-3.4x slower on two threads than
        on one on a shared 2-core machine (docs/rap.md, section 8). Integer arithmetic and a
        kernel whose bits do not depend on its thread count: the same result either way."""
        n = torch.get_num_threads()
        mvms = [lin.mvm for lin in self.analog_layers() if lin.mvm is not None]
        if n == 1 or xm.device.type != "cpu" or not mvms:
            return self._forward_int(xm)
        for m in mvms:
            m.kernel_threads = n
        torch.set_num_threads(1)
        try:
            return self._forward_int(xm)
        finally:
            torch.set_num_threads(n)
            for m in mvms:
                m.kernel_threads = None

    def _forward_int(self, xm: Tensor) -> tuple[Tensor, Tensor]:
        bsz, ch, hh, ww = xm.shape
        p = self.patch
        patches = xm.reshape(bsz, ch, hh // p, p, ww // p, p).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(bsz, (hh // p) * (ww // p), ch * p * p)
        e_in = torch.full((bsz, patches.shape[1], 1), self.input_exp, dtype=_I64,
                          device=xm.device)
        t, te = self.patch_embed(patches, e_in)
        tok_e = torch.full_like(te, self.tok_e)
        body, pos, e = align(t, te, self.pos_m[:, 1:].expand_as(t), tok_e)
        cls = (self.cls_m + self.pos_m[:, :1]).expand(bsz, -1, -1)
        x = torch.cat([cls, body + pos], 1)                              # per-token exponents
        xe = torch.cat([tok_e[:, :1], e], 1)
        x, xe = window(x, xe, self.cfg.residual_bits, -1)
        for blk in self.blocks:
            x, xe = blk(x, xe, self.generator)
        h, he = self.norm(x[:, :1], xe[:, :1])
        logits, le = self.head(h[:, 0], he[:, 0])
        return logits, le

    def forward(self, x: Tensor) -> Tensor:
        """Float images -> float logits (``m * 2**e``, for evaluation and comparison)."""
        m, e = self.forward_int(self.quantize_input(x))
        return m.double() * torch.exp2(e.double())


@torch.no_grad()
def collect_calibration(model: nn.Module, loader: Iterable, max_rows: int = 4096,
                        max_batches: int | None = None) -> tuple[dict[str, Tensor], float]:
    """Inputs of every linear layer (rows subsampled) and ``max|x|`` of the images."""
    store: dict[str, list[Tensor]] = {}
    hooks = []
    p = model.patch_embed.proj.kernel_size[0]

    def hook(name: str):
        def fn(_mod: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            if name == "patch_embed.proj":
                b, c, h, w = x.shape
                x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(
                    -1, c * p * p)
            store.setdefault(name, []).append(x.reshape(-1, x.shape[-1]).float())
        return fn

    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear | nn.Conv2d):
            hooks.append(mod.register_forward_pre_hook(hook(name)))
    in_max = 0.0
    was_training = model.training
    model.eval()
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x = batch[0] if isinstance(batch, list | tuple) else batch
            in_max = max(in_max, float(x.abs().max()))
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    out = {}
    g = torch.Generator().manual_seed(0)
    for name, xs in store.items():
        x = torch.cat(xs)
        if x.shape[0] > max_rows:
            x = x[torch.randperm(x.shape[0], generator=g)[:max_rows]]
        out[name] = x
    return out, in_max


def convert_to_rap(model: nn.Module, calib_loader: Iterable, config: RapConfig | None = None,
                   *, max_calib_batches: int | None = None) -> RapViT:
    """Build the integer :class:`RapViT` from a float ViT and a calibration loader.

    The calibration split sets the input exponent (power of two covering ``max|x|``) and the
    per-channel weight exponents (see :class:`IntLinear`). The result is digital (exact
    integer products) until :meth:`RapViT.set_mvm` maps the analog layers.
    """
    cfg = config or RapConfig()
    calib, in_max = collect_calibration(model, calib_loader, cfg.calib_tokens,
                                        max_calib_batches)
    rap = RapViT(model, cfg, calib, pow2_exponent(in_max, cfg.act_bits))
    return rap.eval()
