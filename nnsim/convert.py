"""``convert_to_analog``: put a ViT's linear layers and attention on simulated crossbars.

Parameter names do not change (``weight``/``bias`` stay on the same paths; chip state lives in
non-persistent buffers), so the converted model's ``state_dict`` keys equal the digital
model's, and timm checkpoints load into either. Works on ``timm`` ViTs and on
``nnsim.models.VisionTransformer`` alike: an attention module is anything with ``qkv`` and
``proj`` linears and ``num_heads``.

A simulated chip: ``program_chip(model, seed)`` programs every static weight once (write
noise of the programming), assigns a Monte-Carlo ADC instance to every column, and seeds the
per-inference noise (read noise, ADC noise, K/V write noise). Everything is drawn from
``numpy.random.SeedSequence(seed)``, spawned per layer in module order.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from typing import Any

import numpy as np
import torch
from torch import nn

from .analog import (
    AnalogConfig,
    Array,
    MomentWrite,
    _moment_lib,
    _moment_terms,
    build_array,
    map_matrix,
    matrix_absmax,
    moment_exact,
    moment_fit_terms,
    moment_write,
    mvm,
    mvm_moment,
    write_levels,
)
from .errors import CalibrationError, ModuleConversionError
from .hardware import AdcModel, HardwareModel

MOMENT_GAIN_KEY = 100
"""``moment_scale[MOMENT_GAIN_KEY + k]`` is the moment mode's calibrated mean gain of product
``k`` (0 linear, 1 Q K^T, 2 S V) beside its variance factor ``moment_scale[k]``: one dict of
numbers per layer, carried as before by the evaluation, Dask and VAT code."""


def _seeds(n: int, seq: np.random.SeedSequence) -> list[int]:
    return [int(s) for s in seq.generate_state(n, dtype=np.uint64) % (2 ** 63)]


class _AnalogBase(nn.Module):
    hw: HardwareModel
    config: AnalogConfig

    def _setup(self, hw: HardwareModel, config: AnalogConfig) -> None:
        self.hw, self.config = hw, config
        self.adc_model: AdcModel | None = hw.adc() if config.adc and hw.adc_bits else None
        self.generator: torch.Generator | None = None
        self.conversions = [0]
        self._inst_seed = 0
        self.moment_scale: dict[int, float] = {}
        self.moment_acc: dict[str, Any] | None = None
        self.chips: int | None = None  # a chip batch (program_chips): chips in one forward
        self.chip_gens: list[torch.Generator] = []

    def _chip_state(self) -> dict[str, Any]:
        """What one programmed chip holds (``program_chips`` keeps one per chip)."""
        return {"generator": self.generator}

    def _set_chips(self, states: list[dict[str, Any]]) -> None:
        """Hold ``len(states)`` programmed chips at once: a forward's leading batch
        dimension is then ``chips x images``, chip-major (``program_chips``)."""
        self.chips = len(states)
        self.chip_gens = [st["generator"] for st in states]
        self.generator = None

    def _gens(self) -> Any:
        """The generator(s) of a call: this chip's, or one per chip of a chip batch."""
        return self.chip_gens if self.chips else self.generator

    def _mvm(self, x: torch.Tensor, arr: Array, key: int, signed: bool = True
             ) -> torch.Tensor:
        cfg = self.config
        if cfg.fidelity == "moment" and cfg.nonideal_readout:
            acc = self.moment_acc
            if acc is not None:  # calibrate_moment: sum bit-level error and prediction
                m_rows = x.shape[-2]
                n_sel = min(acc["rows"], m_rows)
                if x.dim() > 2:  # attention (B, H, N, d): about `rows` rows per head in all
                    n_sel = min(m_rows, max(1, acc["rows"] // x.shape[0]))
                idx = torch.linspace(0, m_rows - 1, n_sel, device=x.device).round().long()
                rows = x.index_select(-2, idx)  # spread over the images of the batch
                terms = moment_fit_terms(rows, arr, cfg, self.hw, self.adc_model, acc["gen"],
                                         signed=signed)
                old = acc["sums"].get(key, {})
                acc["sums"][key] = {k: old.get(k, 0.0) + v for k, v in terms.items()}
                scale, gain = 1.0, 1.0
            elif key in self.moment_scale:
                scale = self.moment_scale[key]
                gain = self.moment_scale.get(MOMENT_GAIN_KEY + key, 1.0)
            else:
                raise CalibrationError(
                    "fidelity='moment' needs calibrate_moment(model, calibration batches) "
                    "first (per layer, on a held-out split; set_config resets it)")
            return mvm_moment(x, arr, cfg, self.hw, self.adc_model, self._gens(),
                              signed=signed, counter=self.conversions, var_scale=scale,
                              mean_gain=gain)
        return mvm(x, arr, cfg, self.hw, self.adc_model, self.generator, signed=signed,
                   counter=self.conversions)

    def _gen(self, device: torch.device, seed: int) -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed(seed)
        return g

    def _instances(self, shape: tuple[int, ...], device: torch.device, salt: int
                   ) -> torch.Tensor | None:
        if self.adc_model is None or self.adc_model.instances <= 1:
            return None
        g = self._gen(torch.device("cpu"), (self._inst_seed + 7919 * salt) % (2 ** 63))
        return torch.randint(0, self.adc_model.instances, shape, generator=g).to(device)


class AnalogLinear(nn.Linear, _AnalogBase):
    """``nn.Linear`` on crossbar tiles; ``weight``/``bias`` keep their names.

    The bias is added digitally after shift-and-add.
    """

    @classmethod
    def from_digital(cls, lin: nn.Linear, hw: HardwareModel, config: AnalogConfig
                     ) -> AnalogLinear:
        """A copy of ``lin`` (same parameters) simulated on ``hw``."""
        w = lin.weight
        new = cls(lin.in_features, lin.out_features, lin.bias is not None,
                  device=w.device, dtype=w.dtype)
        new.load_state_dict(lin.state_dict())
        new._setup(hw, config)
        new.array: Array | None = None
        return new

    @torch.no_grad()
    def program(self, seed: int) -> None:
        """Write the weights once (one chip): programming noise, ADC instances."""
        seq = np.random.SeedSequence(seed)
        s_prog, s_inf, s_inst = _seeds(3, seq)
        cfg, hw = self.config, self.hw
        w_rc = self.weight.detach().t()
        mapped = map_matrix(w_rc, w_rc.abs().amax(0, keepdim=True), cfg, hw)
        prog = write_levels(mapped.targets, hw,
                            cfg.write_noise if cfg.static_write_noise else "none",
                            cfg.static_write_mode, cfg.static_gamma, cfg.write_noise_sigma,
                            self._gen(w_rc.device, s_prog), mapped.integer, cfg.write_bias)
        self._inst_seed = s_inst
        t = -(-self.in_features // cfg.tile_rows)
        ns = mapped.targets.shape[-4]
        inst = self._instances((t, 1, ns * 2 * self.out_features), w_rc.device, 0)
        self.array = build_array(mapped, prog, cfg, hw, inst)
        self.generator = self._gen(w_rc.device, s_inf)
        self.chips, self.chip_gens, self.chip_arrays = None, [], []

    def _chip_state(self) -> dict[str, Any]:
        return {"generator": self.generator, "array": self.array}

    def _set_chips(self, states: list[dict[str, Any]]) -> None:
        super()._set_chips(states)
        self.chip_arrays = [st["array"] for st in states]
        self._chip_stack: dict[Any, MomentWrite] = {}

    def _stacked(self) -> MomentWrite:
        """The chips' arrays in the moment mode's form, stacked (chips, R, C): each chip's
        effective matrix and variance computed from its own array as a single chip's are."""
        cfg = self.config
        key = (cfg, self.adc_model is None)
        if key not in self._chip_stack:
            w2 = 1.0 if cfg.input_bits is None else float(sum(4.0 ** j
                                                               for j in range(cfg.input_bits)))
            terms = [_moment_terms(a, cfg, self.hw, self.adc_model, w2)
                     for a in self.chip_arrays]
            a0 = self.chip_arrays[0]
            t, _, k = a0.cells_mm.shape[-3:]
            var = None if terms[0][1] is None else torch.stack([v for _, v in terms])
            self._chip_stack = {key: MomentWrite(
                torch.stack([w for w, _ in terms]), var,
                torch.stack([a.scale for a in self.chip_arrays]), t, k)}
        return self._chip_stack[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Crossbar MVM of ``x`` (..., in_features)."""
        if self.array is None and not self.chips:
            self.program(0)
        lead = x.shape[:-1]
        if self.chips:  # chips x rows, each chip's rows chunked as a single chip's
            x2 = x.reshape(self.chips, -1, self.in_features)
            step = max(1, self.config.chunk_elems // max(1, self.out_features))
            arr = self._stacked()
            outs = [self._mvm(x2[:, i:i + step], arr, 0) for i in range(0, x2.shape[1], step)]
            y = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
            if self.bias is not None:
                y = y.add_(self.bias) if not torch.is_grad_enabled() else y + self.bias
            return y.reshape(*lead, self.out_features)
        x2 = x.reshape(-1, self.in_features)
        k = self.array.cells_mm.shape[-1] * self.array.cells_mm.shape[-3]
        p = self.config.input_bits or 1
        if self.config.fidelity == "moment":  # one matmul: only the outputs are held
            k, p = self.out_features, 1
        step = max(1, self.config.chunk_elems // max(1, k * p))
        outs = [self._mvm(x2[i:i + step], self.array, 0) for i in range(0, x2.shape[0], step)]
        y = outs[0] if len(outs) == 1 else torch.cat(outs, 0)  # one chunk: no copy
        if self.bias is not None:
            y = y.add_(self.bias) if not torch.is_grad_enabled() else y + self.bias
        return y.reshape(*lead, self.out_features)


def is_attention(m: nn.Module) -> bool:
    """timm's ``Attention`` or ours: ``qkv``/``proj`` linears and ``num_heads``."""
    return (isinstance(getattr(m, "qkv", None), nn.Linear)
            and isinstance(getattr(m, "proj", None), nn.Linear)
            and hasattr(m, "num_heads"))


MOMENT_EXACT_CHUNK = 64
"""Elements per attention-score element of a K/V chunk in the moment mode's exact low-count
path (``analog.moment_exact``: per-cell K/V arrays, 4 slices x 2 cells per element plus the
write's temporaries): a chunk of ``chunk_elems / (heads n max(n, head_dim) this)`` images
(56 digits images; it was sized for ``bit``'s partial sums, 7). Other chunks draw the K/V
write noise in other blocks (other draws, the same distribution)."""


class AnalogAttention(_AnalogBase):
    """Self-attention with Q K^T and S V on crossbars whose K and V are written per inference.

    Submodule names mirror ``timm.layers.Attention`` (``qkv``, ``q_norm``, ``k_norm``,
    ``norm``, ``proj``), so state_dicts load unchanged. Q and the softmax output S are row
    inputs; K^T (rows = head_dim) and V (rows = tokens) are quantized per written matrix,
    ClipFormer-clipped if set, bit-sliced and written with write noise every forward.
    Softmax is digital.
    """

    def __init__(self, attn: nn.Module, hw: HardwareModel, config: AnalogConfig,
                 static: bool) -> None:
        super().__init__()
        if getattr(attn, "gate", None) is not None:
            raise ModuleConversionError("gated attention is not supported")
        self._setup(hw, config)
        self.num_heads = int(attn.num_heads)
        self.head_dim = int(getattr(attn, "head_dim", attn.qkv.out_features // 3 //
                                    self.num_heads))
        self.attn_dim = self.num_heads * self.head_dim
        self.scale = float(getattr(attn, "scale", self.head_dim ** -0.5))
        conv = (lambda lin: AnalogLinear.from_digital(lin, hw, config)) if static \
            else copy.deepcopy
        self.qkv = conv(attn.qkv)
        self.q_norm = getattr(attn, "q_norm", nn.Identity())
        self.k_norm = getattr(attn, "k_norm", nn.Identity())
        self.attn_drop = getattr(attn, "attn_drop", nn.Identity())
        self.norm = getattr(attn, "norm", nn.Identity())
        self.proj = conv(attn.proj)
        self.proj_drop = getattr(attn, "proj_drop", nn.Identity())
        self.kv_stats: dict[str, float] = {}
        self.kv_max: dict[int, float] = {}
        self.recording = False

    @torch.no_grad()
    def program(self, seed: int) -> None:
        """Seed the per-inference K/V writes and read noise; fix the column ADC instances."""
        s_inf, s_inst = _seeds(2, np.random.SeedSequence(seed))
        self._inst_seed = s_inst
        self._inst_cache: dict[Any, torch.Tensor | None] = {}
        self.generator = self._gen(self.qkv.weight.device, s_inf)
        self.chips, self.chip_gens = None, []

    def _moment_fast(self) -> bool:
        """K/V written in the moment mode's form (``moment_write``: no per-cell tensors);
        the calibration (``calibrate_moment``) needs the programmed cells for the bit path,
        and so does ``analog.moment_low_counts`` at coarse ADCs (``moment_exact``)."""
        cfg = self.config
        return (cfg.fidelity == "moment" and cfg.weight_bits is not None
                and self.moment_acc is None and not moment_exact(cfg, self.adc_model))

    def _write(self, w_rc: torch.Tensor, salt: int) -> Array | MomentWrite:
        cfg, hw = self.config, self.hw
        lib = _moment_lib(cfg, w_rc) if self._moment_fast() else None
        if lib is not None:  # the kernel's layout (per column its rows) once, maxima in one pass
            wt = w_rc.transpose(-2, -1).contiguous()
            scale_max = matrix_absmax(lib, wt)
            w_rc = wt.transpose(-2, -1)
        else:
            scale_max = w_rc.abs().amax((-2, -1), keepdim=True)
        if self.recording:
            self.kv_max[salt] = max(self.kv_max.get(salt, 0.0), float(scale_max.max()))
        if cfg.kv_range == "calibrated":
            if salt not in self.kv_max:
                raise CalibrationError("kv_range='calibrated' needs calibrate_kv_range(model, "
                                       "loader) or set_kv_ranges first")
            scale_max = torch.full_like(scale_max, self.kv_max[salt])
            w_rc = w_rc.clamp(-self.kv_max[salt], self.kv_max[salt])
        if self._moment_fast():
            return moment_write(w_rc, scale_max, cfg, hw, self.adc_model, self._gens(),
                                clip=cfg.clipformer)
        mapped = map_matrix(w_rc, scale_max, cfg, hw, cfg.clipformer)
        prog = write_levels(mapped.targets, hw, cfg.write_noise, cfg.dynamic_write_mode,
                            cfg.gamma, cfg.write_noise_sigma, self.generator, mapped.integer,
                            cfg.write_bias)
        r, c = w_rc.shape[-2:]
        t = -(-r // cfg.tile_rows)
        ns = mapped.targets.shape[-4]
        key = (salt, t, ns, c)
        if key not in self._inst_cache:
            self._inst_cache[key] = self._instances((1, self.num_heads, t, 1, ns * 2 * c),
                                                    w_rc.device, salt)
        return build_array(mapped, prog, cfg, hw, self._inst_cache[key])

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        """Same contract as ``timm.layers.Attention.forward``; masks are not modelled."""
        if attn_mask is not None or is_causal:
            raise NotImplementedError("masked attention is not modelled")
        if self.generator is None and not self.chips:
            self.program(0)
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        q = q * self.scale
        cfg = self.config
        if not cfg.attention:
            attn = (q @ k.transpose(-2, -1)).softmax(-1)
            out = attn @ v
        else:
            if self._moment_fast():  # moment_write: codes, bins, table reads per element
                per = self.num_heads * n * max(n, self.head_dim) * 16
            elif cfg.fidelity == "moment":  # per-cell K/V (moment_exact): 8 cells per element
                # and the write's temporaries; moment_low_counts' lists are smaller
                per = self.num_heads * n * max(n, self.head_dim) * MOMENT_EXACT_CHUNK
            else:  # bit: planes x slices x cells partial sums per score
                per = self.num_heads * n * n * 8 * 8 * 8
            step = max(1, cfg.chunk_elems // max(1, per))
            nc = self.chips or 0
            if nc:  # (chips, images, ...): each chip's images chunked as a single chip's
                q, k, v = (t.reshape(nc, b // nc, *t.shape[1:]) for t in (q, k, v))
            outs = []
            for i in range(0, q.shape[1 if nc else 0], step):
                sl = (slice(None), slice(i, i + step)) if nc else (slice(i, i + step),)
                qi, ki, vi = q[sl], k[sl], v[sl]
                arr_k = self._write(ki.transpose(-2, -1), 1)  # rows = head_dim, cols = tokens
                scores = self._mvm(qi, arr_k, 1, signed=True)
                s = self.attn_drop(scores.softmax(-1))
                del scores, arr_k  # peak memory: the scores are not held through S V
                arr_v = self._write(vi, 2)  # rows = tokens, cols = head_dim
                outs.append(self._mvm(s, arr_v, 2, signed=False))
            out = torch.cat(outs, 1 if nc else 0)
            if nc:
                out = out.reshape(b, *out.shape[2:])
        out = out.transpose(1, 2).reshape(b, n, self.attn_dim)
        return self.proj_drop(self.proj(self.norm(out)))


def convert_to_analog(model: nn.Module, hardware: HardwareModel,
                      config: AnalogConfig | None = None, *, seed: int | None = 0,
                      skip: Collection[str] = ()) -> nn.Module:
    """A copy of ``model`` whose attention and linear layers run on simulated crossbars.

    Args:
        model: A timm ``VisionTransformer`` or ``nnsim.models.VisionTransformer``.
        hardware: The hardware model (``HardwareModel.from_lookup`` or ``.ideal()``).
        config: Simulation settings (default ``AnalogConfig()``).
        seed: Program chip ``seed`` right away (None: leave unprogrammed).
        skip: Module paths left digital (``head`` is skipped unless
            ``config.convert_head``).

    Raises:
        ModuleConversionError: No attention module found (never a silent no-op).
    """
    config = config or AnalogConfig()
    if config.nonlinearity or config.read_noise:
        hardware.check_tile_rows(config.tile_rows)
    model = copy.deepcopy(model)
    skip = set(skip)
    if not config.convert_head:
        skip.add("head")
    found = [0]
    _convert_children(model, hardware, config, "", frozenset(skip), found)
    if not found[0]:
        raise ModuleConversionError("no attention module (with qkv, proj, num_heads) found "
                                    "in the model")
    if seed is not None:
        program_chip(model, seed)
    return model.eval()


def _convert_children(module: nn.Module, hw: HardwareModel, config: AnalogConfig, prefix: str,
                      skip: frozenset[str], found: list[int]) -> None:
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if path in skip:
            continue
        if is_attention(child):
            setattr(module, name, AnalogAttention(child, hw, config, config.static))
            found[0] += 1
        elif isinstance(child, nn.Linear) and config.static:
            setattr(module, name, AnalogLinear.from_digital(child, hw, config))
        else:
            _convert_children(child, hw, config, f"{path}.", skip, found)


def analog_modules(model: nn.Module) -> list[nn.Module]:
    """The analog layers of a converted model, in module order."""
    return [m for m in model.modules() if isinstance(m, (AnalogLinear, AnalogAttention))]


def program_chip(model: nn.Module, seed: int) -> None:
    """Simulate a new chip: program every static weight, draw ADC instances, seed noise."""
    mods = analog_modules(model)
    for m, child in zip(mods, np.random.SeedSequence(seed).spawn(len(mods)), strict=True):
        m.program(int(child.generate_state(1, dtype=np.uint64)[0] % (2 ** 63)))


def chip_batch_supported(config: AnalogConfig, hardware: HardwareModel) -> bool:
    """Whether ``program_chips`` can hold several chips in one forward for ``config``: the
    ``moment`` fidelity with K/V written in its form (not the exact low-count path of coarse
    ADCs, ``analog.moment_exact``, which needs per-cell arrays; not ``bit``)."""
    adc = hardware.adc() if config.adc and hardware.adc_bits else None
    return (config.fidelity == "moment" and config.nonideal_readout
            and config.weight_bits is not None and not moment_exact(config, adc))


def program_chips(model: nn.Module, seeds: list[int]) -> None:
    """Simulate ``len(seeds)`` chips in one forward (a chip batch): each chip programmed as
    ``program_chip(model, seed)`` programs it (its own arrays, ADC instances and generators),
    then all held at once. A forward then takes ``chips x images`` inputs, chip-major (chip
    ``c``'s images are rows ``c B .. (c + 1) B - 1``), and each chip's outputs are those of
    ``program_chip(model, seed)`` and a forward of its images alone, up to float rounding
    (each chip draws from its own generators, in the same order). ``program_chip`` returns
    the model to one chip.

    Raises:
        ValueError: The configuration has no chip-batched path (``chip_batch_supported``).
    """
    mods = analog_modules(model)
    for m in mods:
        if not chip_batch_supported(m.config, m.hw):
            raise ValueError("program_chips: chips as a batch dimension run the moment "
                             "fidelity with ADCs above analog.MOMENT_EXACT_BITS bits only; "
                             f"got fidelity={m.config.fidelity!r}, "
                             f"adc bits {m.hw.adc_bits if m.config.adc else None}")
    states: list[list[dict[str, Any]]] = [[] for _ in mods]
    for s in seeds:
        program_chip(model, s)
        for st, m in zip(states, mods, strict=True):
            st.append(m._chip_state())
    for st, m in zip(states, mods, strict=True):
        m._set_chips(st)


def set_config(model: nn.Module, config: AnalogConfig) -> None:
    """Change settings that act per inference (gamma, ClipFormer, noise switches) in place.

    Settings that change how static weights are programmed take effect at the next
    ``program_chip``.
    """
    for m in analog_modules(model):
        m.config = config
        m.moment_scale = {}
        m.adc_model = m.hw.adc() if config.adc and m.hw.adc_bits else None


@torch.no_grad()
def calibrate_kv_range(model: nn.Module, batches: Any) -> dict[str, list[float]]:
    """Record, per attention layer, the largest |K| and |V| over ``batches`` (images or
    (images, labels)); ``kv_range="calibrated"`` maps those to G_max. Use a held-out split.

    Returns:
        ``{module path: [k_max, v_max]}``.
    """
    atts = {n: m for n, m in model.named_modules() if isinstance(m, AnalogAttention)}
    for m in atts.values():
        m.recording, m.kv_max = True, {}
    try:
        for b in batches:
            model(b[0] if isinstance(b, (tuple, list)) else b)
    finally:
        for m in atts.values():
            m.recording = False
    return {n: [m.kv_max.get(1, 0.0), m.kv_max.get(2, 0.0)] for n, m in atts.items()}


@torch.no_grad()
def calibrate_moment(model: nn.Module, batches: Any, *, rows: int = 64, seed: int = 0
                     ) -> dict[str, dict[str, float]]:
    """Calibrate the ``moment`` mode's readout per layer on a held-out split.

    For every analog layer (and, in attention, each of Q K^T and S V), the bit-level readout
    ``y_bit`` of the calibration inputs (the first ``rows`` rows of each input, all images of
    ``batches``) is compared with the moment mode's noiseless mean ``y0`` on the same
    written array: the mean gain ``a = sum y_bit y0 / sum y0^2`` (least squares; below 1
    where the ADC loses small column sums, e.g. S V at 3 bits) and the variance factor
    ``sum (y_bit - a y0)^2 / sum predicted variance``, which corrects the LSB^2/12 and
    mean-INL assumptions of the prediction. Call it after ``set_config`` and on a programmed
    chip; the factors depend on the configuration, hardly on the chip.

    Returns:
        ``{module path: {"0" | "1" | "2": variance factor, "100" | "101" | "102": mean
        gain}}`` (0: a linear layer; 1: Q K^T; 2: S V; ``MOMENT_GAIN_KEY`` + k: the gains).
    """
    mods = {n: m for n, m in model.named_modules() if isinstance(m, (AnalogLinear,
                                                                     AnalogAttention))}
    ss = np.random.SeedSequence(seed).spawn(max(1, len(mods)))
    for (_, m), child in zip(mods.items(), ss, strict=False):
        g = torch.Generator(device=next(m.parameters()).device)
        g.manual_seed(int(child.generate_state(1, dtype=np.uint64)[0] % (2 ** 63)))
        m.moment_acc = {"rows": int(rows), "gen": g, "sums": {}}
    try:
        for b in batches:
            model(b[0] if isinstance(b, (tuple, list)) else b)
    finally:
        out: dict[str, dict[str, float]] = {}
        for n, m in mods.items():
            sums = m.moment_acc["sums"] if m.moment_acc else {}
            m.moment_acc = None
            m.moment_scale = {}
            for k, t in sums.items():
                a = t["xy"] / t["yy"] if t["yy"] > 0 else 1.0
                resid = max(t["bb"] - 2 * a * t["xy"] + a * a * t["yy"], 0.0)
                m.moment_scale[k] = resid / t["pred"] if t["pred"] > 0 else 1.0
                m.moment_scale[MOMENT_GAIN_KEY + k] = a
            out[n] = {str(k): v for k, v in m.moment_scale.items()}
    return out


@torch.no_grad()
def kv_ranges_digital(model: nn.Module, batches: Any) -> dict[str, list[float]]:
    """Per attention layer, the largest |K| and |V| of the *digital* ``model`` over
    ``batches`` (a held-out split): the ranges do not depend on any chip or noise setting, so
    every configuration of a sweep maps K/V with the same ranges (paired comparisons)."""
    from .analog import ideal

    probe = convert_to_analog(model, HardwareModel.ideal(), ideal(), seed=0)
    dev = next(model.parameters()).device
    return calibrate_kv_range(probe.to(dev), batches)


def set_kv_ranges(model: nn.Module, ranges: dict[str, list[float]]) -> None:
    """Give each attention layer of a converted model its K/V range (``{path: [k, v]}``).

    Raises:
        CalibrationError: A layer of ``model`` has no range in ``ranges``.
    """
    for n, m in model.named_modules():
        if isinstance(m, AnalogAttention):
            if n not in ranges:
                raise CalibrationError(f"no K/V range for attention layer {n!r}; ranges hold "
                                       f"{sorted(ranges)}")
            m.kv_max = {1: float(ranges[n][0]), 2: float(ranges[n][1])}


def conversions(model: nn.Module, reset: bool = False) -> int:
    """ADC conversions counted since the last reset."""
    total = 0
    for m in analog_modules(model):
        total += m.conversions[0]
        if reset:
            m.conversions[0] = 0
    return total
