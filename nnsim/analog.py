"""The crossbar arithmetic: bit slicing, bit-serial inputs, column currents, ADC, shift-and-add.

Conventions (documented in docs/nnsim.md):

* A matrix is stored with its **rows = inputs** and **columns = outputs**. Each magnitude is
  quantized to ``weight_bits`` (8) and cut into ``weight_bits / cell_bits`` slices of
  ``cell_bits`` (2) each; a slice digit ``d`` in ``0..3`` is the conductance level
  ``G = G_min + d (G_max - G_min) / 3``. The sign selects the cell of a differential pair
  (``G+`` / ``G-``), the other cell stays at ``G_min``. Each column of the pair has its own
  ADC; the two codes are subtracted digitally.
* Conductances are carried in **level units** ``l = (G - G_min) / (G_max - G_min) * 3``.
* Inputs are quantized to ``input_bits`` (8): signed ones in two's complement (the MSB plane
  weighs ``-2^7``), softmax outputs unsigned. Each bit plane drives the rows for one cycle.
* Per tile (``tile_rows`` rows), plane, slice and sign, the column current
  ``I = V_read (G_min n_active + dG/3 sum_r b_r l_r)`` passes the read transfer (mean ratio),
  a Gaussian of the read noise, the transfer spread and the ADC's input noise (one combined
  draw), then the ADC thresholds of the column's Monte-Carlo instance. The digital side turns
  the code back into level units (it knows ``n_active``) and shift-adds
  ``sum 2^j 4^s (+-1) S``.
* ``tile`` ADC full scale: the largest column current that tile/slice/sign can produce (all
  inputs on), i.e. a per-array reference set from the programmed values; a number ``f`` sets
  ``f * tile_rows * G_max * V_read`` for every array.
"""

from __future__ import annotations

import ctypes
import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from . import kernels
from .errors import HardwareModelError
from .hardware import AdcModel, HardwareModel

WRITE_NOISE_MODELS = ("levels", "samples", "fit", "parametric", "none")
SAMPLING_MODES = ("threshold", "full")
READOUT_KERNELS = ("auto", "c", "torch")


@dataclass(frozen=True)
class AnalogConfig:
    """What ``convert_to_analog`` simulates; vary it with ``dataclasses.replace``.

    Attributes:
        tile_rows: Rows per crossbar array (inputs summed on one column).
        tile_cols: Columns per array (only groups ADC instances; 64).
        weight_bits: Magnitude bits of weights and of K/V; None keeps them real-valued (one
            "slice" holding the exact value: the ideal preset).
        cell_bits: Bits per cell (2 -> 4 levels).
        input_bits: Input bits applied bit-serially; None applies the real value in one cycle.
        adc: Digitize each column with the lookup ADC (``hw.adc_bits``); False: exact.
        adc_full_scale: ``"tile"`` or a fraction of ``tile_rows * G_max * V_read``.
        static: Simulate the static linear layers (qkv, proj, fc1, fc2) on crossbars.
        attention: Simulate Q K^T and S V on crossbars written per inference.
        convert_head: Also put the classifier head on crossbars.
        write_noise: ``"levels"`` (per level: the characterized mean programming error and
            sigma, a Gaussian; the default), ``"samples"`` (the characterized programmed
            conductances' zero-mean residuals, drawn), ``"fit"`` (TxSim form with the fitted
            k), ``"parametric"`` (TxSim, k = ``write_noise_sigma``: an assumption) or
            ``"none"``. See ``write_levels``.
        gamma: Write-noise factor on the K/V writes: it scales the stochastic part only
            (1 = as characterized, 0 = no stochastic part; the bias stays).
        write_noise_sigma: Parametric sigma; sets ``write_noise="parametric"`` when given.
        write_bias: Add the characterized mean programming error per level once, unscaled
            (``levels``/``samples``/``fit``); False: the zero-mean TxSim form of the papers.
        static_write_noise: Program the static weights with write noise (once per chip);
            False: exactly at their targets (ClipFormer's setting).
        static_gamma: Write-noise factor on the static weights' programming (once per chip).
        static_write_mode: Write mode of static weights (``verify`` or ``single``).
        dynamic_write_mode: Write mode of K and V (``single``: no time to verify).
        read_noise: Read noise of the column current, per inference.
        nonlinearity: Column transfer (mean ratio and its spread), per inference.
        adc_noise: ADC input-referred noise.
        clipformer: ``(alpha, beta)`` applied to K/V conductances before writing, or None.
        kv_range: Magnitude of K/V mapped to G_max: ``"matrix"`` (the max of each written
            matrix) or ``"calibrated"`` (a fixed per-layer range, the max seen by
            ``calibrate_kv_range`` on a held-out split; larger values saturate).
        prob_scale: Scale of the softmax probabilities driving the rows of S V:
            ``"row_pow2"`` (per row, the power of two at or above its largest probability;
            undone by a shift) or ``"fixed"`` (1/255 for every row). See ``input_scale``.
        fidelity: ``"bit"``: every bit plane x slice x cell column sum through the ADC
            (exact, one conversion per multiply-accumulate). ``"moment"``: the programmed
            (noisy) cells recombined into one effective matrix and one matmul per layer; the
            transfer ratio folded in at the expected column current (input bit density 1/2);
            ADC quantization (LSB^2/12), ADC noise, threshold INL, read noise and spread added
            as one Gaussian per output with the summed variance of all its conversions.
            Much faster, approximate (no ADC clipping, no code-dependent DNL).
        sampling: How ``bit`` draws the per-conversion noise (read noise + ADC input noise,
            one Gaussian): ``"threshold"`` (the default) draws it only for conversions whose
            noiseless input lies within ``AdcModel.SIGMAS`` (6) sigma of an ADC threshold of
            their instance; elsewhere the code is the noiseless one (the draw would change it
            with probability < 1e-9); where most conversions are that close (or the ADC noise
            alone spans half an LSB) it draws every one, as ``"full"``, which draws one per
            conversion. Same distribution of codes; both reproducible from the seed.
        chunk_elems: Bound on the partial-sum tensor's size (memory), elements.
        readout_kernel: How ``bit`` runs the readout of its partial sums: ``"auto"`` (the
            default: the fused C kernel ``nnsim/kernels/readout.c`` on CPU float32 tensors
            where a C compiler is present, else the torch path, warning once), ``"c"``
            (the kernel or an error) or ``"torch"`` (the eager torch path). Same model, same
            distribution of codes; the two paths draw different random bits for one seed
            (the kernel's from a counter-based generator keyed per call from the chip's
            generator). ``readout_paths`` counts which path ran; evaluate records it.
            ``moment`` follows the same setting for its own kernel
            (``nnsim/kernels/moment.c``: the K/V writes of ``moment_write`` and the input
            quantization, output noise and scales of ``mvm_moment``; ``"torch"``: the eager
            torch path, e.g. on CUDA).
    """

    tile_rows: int = 64
    tile_cols: int = 64
    weight_bits: int | None = 8
    cell_bits: int = 2
    input_bits: int | None = 8
    adc: bool = True
    adc_full_scale: str | float = "tile"
    static: bool = True
    attention: bool = True
    convert_head: bool = False
    write_noise: str = "levels"
    gamma: float = 1.0
    write_noise_sigma: float | None = None
    write_bias: bool = True
    static_write_noise: bool = True
    static_gamma: float = 1.0
    static_write_mode: str = "verify"
    dynamic_write_mode: str = "single"
    read_noise: bool = True
    nonlinearity: bool = True
    adc_noise: bool = True
    clipformer: tuple[float, float] | None = None
    kv_range: str = "matrix"
    prob_scale: str = "row_pow2"
    fidelity: str = "bit"
    sampling: str = "threshold"
    chunk_elems: int = 1 << 22
    readout_kernel: str = "auto"

    def __post_init__(self) -> None:
        if self.write_noise_sigma is not None and self.write_noise != "parametric":
            object.__setattr__(self, "write_noise", "parametric")
        if self.prob_scale not in ("row_pow2", "fixed"):
            raise ValueError(f"prob_scale={self.prob_scale!r}; use row_pow2 or fixed")
        if self.fidelity not in ("bit", "moment"):
            raise ValueError(f"fidelity={self.fidelity!r}; use bit or moment")
        if self.readout_kernel not in READOUT_KERNELS:
            raise ValueError(f"readout_kernel={self.readout_kernel!r}; use "
                             f"{', '.join(READOUT_KERNELS)}")
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling={self.sampling!r}; use {' or '.join(SAMPLING_MODES)}")
        if self.write_noise not in WRITE_NOISE_MODELS:
            raise ValueError(f"write_noise={self.write_noise!r}; use "
                             f"{', '.join(WRITE_NOISE_MODELS)}")
        if self.weight_bits is not None and self.weight_bits % self.cell_bits:
            raise ValueError(f"weight_bits={self.weight_bits} is not a multiple of "
                             f"cell_bits={self.cell_bits}")

    @property
    def nonideal_readout(self) -> bool:
        """Whether column currents go through the read/ADC model at all."""
        return self.adc or self.read_noise or self.nonlinearity

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def clipformer_protocol(config: AnalogConfig | None = None) -> AnalogConfig:
    """ClipFormer's evaluation protocol exactly: static weights programmed without write
    noise, K/V written with the zero-mean TxSim form
    ``G' = G + gamma k sqrt((G-Gmin)(Gmax-Gmin)) N(0,1)`` (k fitted from the circuit's
    programmed conductances, single-shot writes), no programming bias."""
    return replace(config or AnalogConfig(), static_write_noise=False, write_noise="fit",
                   write_noise_sigma=None, write_bias=False)


def ideal() -> AnalogConfig:
    """Real-valued weights and inputs, exact readout, no noise: equals the digital model."""
    return AnalogConfig(weight_bits=None, input_bits=None, adc=False, write_noise="none",
                        read_noise=False, nonlinearity=False, adc_noise=False)


def quantized_ideal() -> AnalogConfig:
    """8-bit bit-sliced weights, 8-bit bit-serial inputs, exact readout, no noise."""
    return replace(ideal(), weight_bits=8, input_bits=8)


def clipformer_conductance(g_s: torch.Tensor, g_min_s: float, g_max_s: float, alpha: float,
                           beta: float) -> torch.Tensor:
    """ClipFormer: ``G <- min(max(G - alpha G_min, G_min), beta G_max)``."""
    return torch.clamp(torch.clamp(g_s - alpha * g_min_s, min=g_min_s), max=beta * g_max_s)


@dataclass
class Mapped:
    """A matrix mapped on crossbars: target levels and the digital scale.

    Attributes:
        targets: (..., slices, 2, R, C) target levels (integers when sliced).
        scale: Value of one level-unit step of slice weight 1, broadcastable to (..., 1, C).
        slice_w: (slices,) digital weight of each slice (4^s).
        integer: Whether targets are integer levels.
    """

    targets: torch.Tensor
    scale: torch.Tensor
    slice_w: torch.Tensor
    integer: bool


def map_matrix(w_rc: torch.Tensor, scale_max: torch.Tensor, cfg: AnalogConfig, hw: HardwareModel,
               clip: tuple[float, float] | None = None) -> Mapped:
    """Quantize and bit-slice ``w_rc`` (rows = inputs, cols = outputs) to cell levels.

    Args:
        w_rc: (..., R, C) values.
        scale_max: Magnitude mapped to full scale (G_max), broadcastable to ``w_rc``.
        cfg: Settings (weight_bits, cell_bits).
        hw: Conductance range (for ClipFormer).
        clip: ClipFormer ``(alpha, beta)`` on the linear value-to-conductance mapping, before
            quantization and slicing; the quantization scale stays that of ``scale_max``.
    """
    n_lv = hw.levels - 1
    scale_max = torch.clamp(scale_max, min=torch.finfo(w_rc.dtype).tiny)
    mag = w_rc.abs() / scale_max  # 0..1
    if clip is not None:
        dg = hw.g_max_s - hw.g_min_s
        g = hw.g_min_s + dg * mag
        g = clipformer_conductance(g, hw.g_min_s, hw.g_max_s, clip[0], clip[1])
        mag = (g - hw.g_min_s) / dg
    pos = (w_rc > 0).to(w_rc.dtype)
    neg = (w_rc < 0).to(w_rc.dtype)
    if cfg.weight_bits is None:
        lv = mag * n_lv
        targets = torch.stack([lv * pos, lv * neg], dim=-3)[..., None, :, :, :]
        return Mapped(targets, scale_max / n_lv, torch.ones(1, device=w_rc.device), False)
    qmax = 2 ** cfg.weight_bits - 1
    q = torch.round(mag * qmax).to(torch.int32)
    base = 2 ** cfg.cell_bits
    ns = cfg.weight_bits // cfg.cell_bits
    shifts = torch.arange(ns, device=w_rc.device, dtype=torch.int32) * cfg.cell_bits
    digits = ((q[..., None, :, :] >> shifts[:, None, None]) & (base - 1)).to(w_rc.dtype)
    targets = torch.stack([digits * pos[..., None, :, :], digits * neg[..., None, :, :]], dim=-3)
    slice_w = (float(base) ** torch.arange(ns, device=w_rc.device)).to(w_rc.dtype)
    # one step of digit 1 in slice 0 is one LSB of the magnitude: scale_max / qmax
    return Mapped(targets, scale_max / qmax, slice_w, True)


MIN_SAMPLES_PER_LEVEL = 200
"""Fewest characterized programmed conductances per level that ``write_noise="samples"``
draws from without a warning (with fewer, the residuals' empirical distribution is a handful
of points; ``"levels"`` uses their mean and sigma instead)."""


def level_moments(hw: HardwareModel, mode: str, device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per target level, the mean programming error (bias) and the sigma, in level units,
    of the characterized programmed conductances (``crossbar/write_noise_samples``).

    Raises:
        HardwareModelError: The files hold no programmed-conductance samples for ``mode``.
    """
    if mode not in hw.write_samples_s:
        raise HardwareModelError(
            f"write mode {mode!r}: no programmed-conductance samples "
            f"(table 'crossbar/write_noise_samples') in {', '.join(hw.sources) or 'the model'}; "
            f"available modes: {sorted(hw.write_samples_s)}; use write_noise='fit' or "
            "'parametric'", table="crossbar/write_noise_samples", file=", ".join(hw.sources))
    key = ("level_moments", mode, str(device))
    if key not in hw._cache:
        n_lv = hw.levels - 1
        lv = (torch.as_tensor(hw.write_samples_s[mode], dtype=torch.float64) - hw.g_min_s) \
            / (hw.g_max_s - hw.g_min_s) * n_lv  # (levels, n)
        bias = lv.mean(1) - torch.arange(hw.levels, dtype=torch.float64)
        sigma = lv.std(1, unbiased=True) if lv.shape[1] > 1 else torch.zeros(hw.levels)
        hw._cache[key] = (bias.float().to(device), sigma.float().to(device))
    return hw._cache[key]


def _per_level(table: torch.Tensor, targets: torch.Tensor, integer: bool) -> torch.Tensor:
    """``table[level]`` at each target (linear between levels for real-valued targets)."""
    n_lv = table.numel() - 1
    if integer:
        return table.take(targets.long().clamp_(0, n_lv))
    t = targets.clamp(0, n_lv)
    i0 = t.floor().long().clamp(max=n_lv - 1)
    f = t - i0
    return table[i0] * (1 - f) + table[i0 + 1] * f



CEILING_SOURCES = ("levels", "samples", "fit")
"""Write-noise forms of the characterized device, whose programmed levels are capped at the
device's full set (``write_ceiling``) when written with their bias (the device's truth);
``parametric``, ``none`` and the zero-mean forms (``bias=False``: the papers' TxSim form of
the ClipFormer protocol) are not."""


def write_ceiling(hw: HardwareModel) -> float:
    """Highest programmed level (level units) a write reaches: the largest characterized
    programmed conductance at this PVT point (all modes and levels, state domain), i.e. the
    fully set cell with its device-to-device spread (a cell cannot exceed full set: the
    model's state stops at w = 1); ``levels - 1`` (G_max, the nominal full set) for files
    without samples. An estimate from the samples (their maximum), so the forms' Gaussian
    tails stop where the characterized cells did (docs/crossbar.md)."""
    key = ("write_ceiling",)
    if key not in hw._cache:
        n_lv = hw.levels - 1
        tops = [float(np.max(s)) for s in hw.write_samples_s.values() if np.size(s)]
        g = max(tops) if tops else hw.g_max_s
        hw._cache[key] = max((g - hw.g_min_s) / (hw.g_max_s - hw.g_min_s) * n_lv, float(n_lv))
    return hw._cache[key]


def _relative_k(hw: HardwareModel, source: str, mode: str, gamma: float,
                sigma: float | None) -> float:
    """gamma x the relative write-noise k of the ``parametric`` (``sigma``) or fitted
    (``hw.write_noise_k``) form (the TxSim form, docs/nnsim.md)."""
    if source == "parametric":
        if sigma is None:
            raise ValueError("write_noise='parametric' needs write_noise_sigma")
        return gamma * sigma
    return gamma * hw.write_noise_k(mode)

def write_levels(targets: torch.Tensor, hw: HardwareModel, source: str, mode: str, gamma: float,
                 sigma: float | None, generator: torch.Generator | None,
                 integer: bool, bias: bool = True) -> torch.Tensor:
    """Programmed levels for target levels: one write of every cell.

    Gamma scales the stochastic (zero-mean) part only; the mean programming error of each
    level (``bias``, from the characterized samples) is added once, unscaled, whatever gamma:

    * ``levels`` (the fitted per-level form): ``l' = l + b_l + gamma s_l N(0,1)`` with
      ``b_l``, ``s_l`` the mean error and sigma of the characterized programmed conductances
      of level ``l``;
    * ``samples``: ``l' = l + b_l + gamma (l_s - m_l)``, ``l_s`` drawn uniformly from the
      characterized conductances of the level, ``m_l`` their mean (a warning below
      ``MIN_SAMPLES_PER_LEVEL`` samples per level);
    * ``fit``: the TxSim form ``l' = l + b_l + k sqrt(3 l) N(0,1)``, i.e.
      ``G' = G + k sqrt((G-Gmin)(Gmax-Gmin)) N`` with ``k = gamma * fitted k``;
      ``bias=False`` gives the paper's zero-mean form;
    * ``parametric``: TxSim with ``k = gamma * sigma`` (an assumption; never a bias);
    * ``none``: the targets.

    A cell at G_min (level 0) gets no noise in the TxSim forms; in ``levels``/``samples`` it
    gets what was measured at level 0. Programmed conductances are floored at 0 S and, in the
    characterized forms (``levels``, ``samples``, ``fit``) with their bias, capped at the
    device's full set (``write_ceiling``: the Gaussian forms' tails otherwise reach 12-16 uS
    where the cells stop at ~11 uS; ``bias=False``, the papers' zero-mean form, is not).
    """
    if source == "none":
        return targets
    n_lv = hw.levels - 1
    floor = -n_lv * hw.g_min_s / (hw.g_max_s - hw.g_min_s)  # G' >= 0
    ceil = write_ceiling(hw) if bias and source in CEILING_SOURCES else None  # <= full set
    out = targets
    if bias and source in ("levels", "samples", "fit") and (
            source != "fit" or mode in hw.write_samples_s):
        b, _ = level_moments(hw, mode, targets.device)
        out = targets + _per_level(b.to(targets.dtype), targets, integer)
    if gamma == 0.0:
        return out if out is targets else torch.clamp(out, min=floor, max=ceil)
    if source == "samples" and integer:
        if mode not in hw.write_samples_s:
            level_moments(hw, mode)  # raises, naming the table
        samples = hw.tensors(targets.device)[f"samples_{mode}"]  # (levels, n) in S
        lv_s = (samples - hw.g_min_s) / (hw.g_max_s - hw.g_min_s) * n_lv
        n = lv_s.shape[1]
        if n < MIN_SAMPLES_PER_LEVEL:
            warnings.warn(f"write_noise='samples' draws from {n} characterized conductances "
                          f"per level (< {MIN_SAMPLES_PER_LEVEL}); write_noise='levels' uses "
                          "their mean and sigma", stacklevel=3)
        resid = (lv_s - lv_s.mean(1, keepdim=True)).reshape(-1)
        idx = torch.randint(0, n, targets.shape, generator=generator, device=targets.device)
        drawn = resid[targets.long().clamp(0, n_lv) * n + idx]
        return torch.clamp(out + gamma * drawn.to(targets.dtype), min=floor, max=ceil)
    noise = torch.randn(targets.shape, generator=generator, device=targets.device,
                        dtype=targets.dtype)
    if source in ("levels", "samples"):
        _, s = level_moments(hw, mode, targets.device)
        return torch.clamp(out + gamma * _per_level(s.to(targets.dtype), targets, integer)
                           * noise, min=floor, max=ceil)
    k = _relative_k(hw, source, mode, gamma, sigma)
    if k == 0.0:
        return out
    return torch.clamp(out + k * torch.sqrt(n_lv * targets.clamp(min=0)) * noise, min=floor,
                       max=ceil)


def input_scale(x: torch.Tensor, bits: int, signed: bool, prob_scale: str = "row_pow2"
                ) -> torch.Tensor:
    """Per-vector input scale (..., M, 1): one LSB of the quantized input.

    Signed inputs: ``max|x| / (2^(bits-1) - 1)`` per vector. Unsigned inputs in [0, 1]
    (softmax probabilities): ``prob_scale="row_pow2"`` (default) uses the power of two at or
    above each row's largest probability, ``2^ceil(log2 max p) / (2^bits - 1)``: the row's
    exponent, found digitally from the probabilities' leading one, and undone by a shift after
    the column sums (as RAP/FLARE's per-token exponents); small probabilities of long rows
    keep their resolution. ``"fixed"``: ``1 / (2^bits - 1)`` for every row.
    """
    tiny = torch.finfo(x.dtype).tiny
    if signed:
        return x.abs().amax(-1, keepdim=True).clamp(min=tiny) / (2 ** (bits - 1) - 1)
    qmax = 2 ** bits - 1
    if prob_scale == "fixed":
        return torch.full_like(x[..., :1], 1.0 / qmax)
    m = x.clamp(0, 1).amax(-1, keepdim=True).clamp(min=2.0 ** -126)
    return torch.exp2(torch.ceil(torch.log2(m))).clamp(max=1.0) / qmax


def quantize_inputs(x: torch.Tensor, bits: int, signed: bool, prob_scale: str = "row_pow2"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer input codes (in ``x``'s dtype: signed -qmax..qmax, unsigned 0..qmax) and the
    per-vector scale (``input_scale``) with ``x ~ codes * scale``."""
    sx = input_scale(x, bits, signed, prob_scale)
    if signed:
        qmax = 2 ** (bits - 1) - 1
        return torch.round(x / sx).clamp(-qmax, qmax), sx
    return torch.round(x.clamp(0, 1) / sx).clamp(0, 2 ** bits - 1), sx


def input_planes(x: torch.Tensor, bits: int | None, signed: bool,
                 prob_scale: str = "row_pow2"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize inputs per vector (last dim) and split them into bit planes.

    Args:
        x: (..., M, R) inputs.
        bits: Input bits, or None for one real-valued plane.
        signed: Two's complement (MSB plane weighs -2^(bits-1)); unsigned inputs must be
            in [0, 1] (softmax), scaled as ``input_scale`` says.
        prob_scale: Scale of unsigned inputs (``input_scale``).

    Returns:
        planes (P, ..., M, R) in {0, 1} (or the real values), plane weights (P,), and the
        per-vector scale (..., M, 1).
    """
    if bits is None:
        return x[None], torch.ones(1, device=x.device, dtype=x.dtype), \
            torch.ones_like(x[..., :1])
    xq, sx = quantize_inputs(x, bits, signed, prob_scale)
    q = xq.to(torch.int32)
    if signed:
        q = torch.where(q < 0, q + 2 ** bits, q)
    shifts = torch.arange(bits, device=x.device, dtype=torch.int32)
    planes = ((q[None] >> shifts.view(-1, *([1] * q.ndim))) & 1).to(x.dtype)
    w = (2.0 ** torch.arange(bits, device=x.device)).to(x.dtype)
    if signed:
        w[-1] = -w[-1]
    return planes, w, sx


@dataclass
class Array:
    """A matrix written on crossbars, ready for MVMs (levels as programmed).

    Attributes:
        cells_mm: (..., T, rows, S*2*C) programmed levels, laid out for matmul.
        i_fs_a: (..., T, 1, S*2*C) ADC full-scale current per column (None: exact readout).
        inst: (..., T, 1, S*2*C) ADC instance per column (int64), or None.
        slice_w: (S,) slice weights; scale: (..., 1, C) output scale; cols: C.
    """

    cells_mm: torch.Tensor
    i_fs_a: torch.Tensor | None
    inst: torch.Tensor | None
    slice_w: torch.Tensor
    scale: torch.Tensor
    cols: int
    rows_total: int = 0
    cache: dict[str, Any] | None = None


def build_array(mapped: Mapped, programmed: torch.Tensor, cfg: AnalogConfig, hw: HardwareModel,
                inst: torch.Tensor | None) -> Array:
    """Lay programmed levels out in tiles and compute each column's ADC full scale.

    Args:
        mapped: Targets and scale from ``map_matrix``.
        programmed: Levels after the write (same shape as ``mapped.targets``).
        cfg: Settings.
        hw: Hardware model.
        inst: ADC instance per column, broadcastable to (..., T, 1, S*2*C), or None.
    """
    *lead, ns, two, r, c = programmed.shape
    rows = cfg.tile_rows
    t = -(-r // rows)
    # a matrix shorter than one array (K^T of a small head, V of few tokens) is laid out with
    # its own rows, not zero-padded to tile_rows: the rows it does not use carry no input, so
    # the sums are the same; the ADC full scale below still counts the array's tile_rows
    lay_rows = r if t == 1 else rows
    pad = t * lay_rows - r

    def lay(a: torch.Tensor) -> torch.Tensor:
        if pad:
            a = torch.nn.functional.pad(a, (0, 0, 0, pad))
        a = a.reshape(*lead, ns, two, t, lay_rows, c)
        nl = len(lead)
        perm = (*range(nl), nl + 2, nl + 3, nl, nl + 1, nl + 4)
        return a.permute(perm).reshape(*lead, t, lay_rows, ns * two * c)

    cells_mm = lay(programmed).contiguous()
    i_fs = None
    if cfg.nonideal_readout:
        n_lv = hw.levels - 1
        dg3 = (hw.g_max_s - hw.g_min_s) / n_lv
        if cfg.adc_full_scale == "tile":
            colsum = lay(mapped.targets).sum(-2)  # (..., T, S*2*C)
            grp = colsum.reshape(*lead, t, ns * two, c).amax(-1, keepdim=True).clamp(min=1.0)
            grp = grp.expand(*lead, t, ns * two, c).reshape(*lead, t, 1, ns * two * c)
            i_fs = hw.v_read_v * (hw.g_min_s * rows + dg3 * grp)
        else:
            f = float(cfg.adc_full_scale)
            i_fs = torch.full((*lead, t, 1, ns * two * c), f * rows * hw.g_max_s * hw.v_read_v,
                              device=programmed.device, dtype=programmed.dtype)
    return Array(cells_mm, i_fs, inst, mapped.slice_w, mapped.scale, c, r, {})


def spread_z(arr: Array, generator: torch.Generator | None) -> torch.Tensor:
    """One N(0,1) per column of the written array (``(..., T, 1, S*2*C)``), drawn at the
    first readout and kept with the array: the transfer spread (IR drop's pattern dependence,
    access mismatch) is a property of the chip, so it is drawn once per programmed chip, not
    per conversion."""
    z = arr.cache.get("spread_z") if arr.cache is not None else None
    if z is None:
        k = arr.cells_mm.shape[-1]
        z = torch.randn((*arr.cells_mm.shape[:-2], 1, k), generator=generator,
                        device=arr.cells_mm.device, dtype=arr.cells_mm.dtype)
        if arr.cache is not None:
            arr.cache["spread_z"] = z
    return z


def readout(s_lv: torch.Tensor, n_active: torch.Tensor, arr: Array, cfg: AnalogConfig,
            hw: HardwareModel, adc: AdcModel | None, generator: torch.Generator | None, *,
            inplace: bool = False, level_offset: bool = True) -> torch.Tensor:
    """Column sums (level units) -> currents -> transfer, noise, ADC -> level units again.

    Currents are carried in level units ``u = I / (V_read dG / 3)``. The cells' G(T)
    (``crossbar/cell_read``) gives the ideal current at T, ``u = a S + b n``
    (``HardwareModel.cell_map``; ``a = 1, b = G_min/(dG/3)`` for older files); the transfer
    ratio, its spread and the read noise are the tables' piecewise-linear interpolants, read
    from one fused table per term (``HardwareModel.fused_readout``: sensed mean, spread sigma
    and read-noise sigma on a fine uniform grid, no segment search). The transfer spread is
    drawn once per programmed array (``spread_z``); the read noise and the ADC input noise are
    one Gaussian per conversion, drawn as ``cfg.sampling`` says (``AdcModel.quantize_near``:
    only near a threshold; or every conversion).

    Args:
        inplace: ``s_lv`` may be overwritten (``mvm``'s partial sums).
        level_offset: Subtract the G_min current of the active rows (``g0 n``) to return the
            level sum; ``mvm`` skips it (the two cells of a pair carry the same, and their
            results are subtracted).
    """
    n_lv = hw.levels - 1
    g0 = hw.g_min_s * n_lv / (hw.g_max_s - hw.g_min_s)
    z = spread_z(arr, generator) if cfg.nonlinearity else None
    lsb = _lsb(arr, hw, adc) if cfg.adc and adc is not None else None
    m = s_lv.shape[-2]
    step = max(1, READOUT_BLOCK // max(1, s_lv[..., :1, :].numel()))
    if not inplace or step >= m:
        u = _readout_block(s_lv if inplace else s_lv.clone(), n_active, z, lsb, cfg, hw, adc,
                           arr.inst, generator)
        return u.sub_(g0 * n_active) if level_offset else u
    # blocks of rows small enough for the cache: the temporaries are reused, not faulted in
    for r0 in range(0, m, step):
        blk = s_lv[..., r0:r0 + step, :]
        nb = n_active[..., r0:r0 + step, :]
        u = _readout_block(blk.contiguous(), nb, z, lsb, cfg, hw, adc, arr.inst, generator)
        blk.copy_(u.sub_(g0 * nb) if level_offset else u)
    return s_lv


READOUT_BLOCK = 1 << 18
"""Conversions per block of ``readout`` (``mvm``'s partial sums are read out in blocks of
rows of about this many elements)."""


def _readout_block(s: torch.Tensor, n_active: torch.Tensor, z: torch.Tensor | None,
                   lsb: tuple[torch.Tensor, torch.Tensor] | None, cfg: AnalogConfig,
                   hw: HardwareModel, adc: AdcModel | None, inst: torch.Tensor | None,
                   generator: torch.Generator | None) -> torch.Tensor:
    """``readout`` of one block, overwriting ``s``; returns currents incl. the G_min part."""
    ca, cb = hw.cell_map()
    nb = n_active * cb
    u = s.add_(nb) if ca == 1.0 else s.mul_(ca).add_(nb)
    sigma = None
    if cfg.nonlinearity or cfg.read_noise:
        tb = hw.fused_readout(u.device, gain=cfg.nonlinearity, read=cfg.read_noise,
                              spread=cfg.nonlinearity)
        vals = hw.fused_terms(u, tb)  # mean, spread, read (those asked)
        if cfg.nonlinearity:
            u = vals[0].addcmul_(vals[1], z)
        if cfg.read_noise:
            sigma = vals[-1]
    if lsb is not None:
        inv, lsb_u = lsb
        x = u.mul_(inv)
        an2 = adc.noise_lsb ** 2 if cfg.adc_noise and adc.noise_lsb > 0 else 0.0
        var: torch.Tensor | float = an2
        if sigma is not None:
            var = sigma.mul_(inv).square_()
            if an2:
                var = var.add_(an2)
        ins = inst if inst is not None else 0
        if isinstance(var, float) and var == 0.0:
            codes = adc.quantize_fast(x, ins, inplace=True)
        elif cfg.sampling == "full":
            zz = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x.addcmul_(var.sqrt_(), zz) if isinstance(var, torch.Tensor) else \
                x.add_(zz.mul_(var ** 0.5))
            codes = adc.quantize_fast(x, ins, inplace=True)
        else:
            codes = adc.quantize_near(x, var, ins, generator, var_floor=an2)
        u = codes.add_(adc.code_offset).mul_(lsb_u)
    elif sigma is not None:
        u = u.addcmul_(sigma, torch.randn(u.shape, generator=generator, device=u.device,
                                          dtype=u.dtype))
    return u


def _lsb(arr: Array, hw: HardwareModel, adc: AdcModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Per column of ``arr``: 1 / LSB and the LSB of its ADC, in level units (cached)."""
    key = ("lsb", adc.max_code)
    hit = arr.cache.get(key) if arr.cache is not None else None
    if hit is None:
        lsb = arr.i_fs_a / (hw.unit_a * adc.max_code)
        hit = (1.0 / lsb, lsb)
        if arr.cache is not None:
            arr.cache[key] = hit
    return hit


def _readout_var(u_bar: torch.Tensor, lsb: torch.Tensor | None, cfg: AnalogConfig,
                 hw: HardwareModel, adc: AdcModel | None
                 ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Transfer gain (None when off) and the variance of one conversion, in level units, at
    the expected column currents ``u_bar``: read noise, transfer spread (as a variance: the
    moment mode's approximation), and for the ADC its LSB^2/12, input noise and mean INL.
    The read terms come from ``HardwareModel.fused_readout``'s tables (the same
    piecewise-linear functions as ``readout_terms``, one index and two gathers per term)."""
    v = torch.zeros_like(u_bar)
    gain = None
    if cfg.nonlinearity or cfg.read_noise:
        tb = hw.fused_readout(u_bar.device, gain=cfg.nonlinearity, read=cfg.read_noise,
                              spread=cfg.nonlinearity)
        vals = dict(zip(tb["names"], hw.fused_terms(u_bar.clone(), tb), strict=True))
        if cfg.nonlinearity:
            tiny = torch.finfo(u_bar.dtype).tiny
            gain = torch.where(u_bar > 0, vals["mean"] / u_bar.clamp(min=tiny),
                               torch.ones_like(u_bar))
        for nm in ("read", "spread"):
            if nm in vals:
                v = v.addcmul_(vals[nm], vals[nm])
    if lsb is not None and cfg.adc and adc is not None:
        v = v + lsb ** 2 * _adc_var_coef(cfg, adc, u_bar.dtype)
    return gain, v


def _moment_terms(arr: Array, cfg: AnalogConfig, hw: HardwareModel, adc: AdcModel | None,
                  plane_w2: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Effective matrix (..., R, C) and output variance (..., 1, C) of the moment mode."""
    if isinstance(arr, MomentWrite):
        return arr.w_eff, arr.var
    key = f"moment{plane_w2}"
    if arr.cache is not None and key in arr.cache:
        return arr.cache[key]
    *lead, t, rows, _ = arr.cells_mm.shape
    ns = arr.slice_w.numel()
    c = arr.cols
    cells = arr.cells_mm.reshape(*lead, t, rows, ns, 2, c)
    sign = torch.tensor([1.0, -1.0], device=cells.device, dtype=cells.dtype)
    coef = arr.slice_w[:, None] * sign[None, :]  # (S, 2)
    n_lv = hw.levels - 1
    g0 = hw.g_min_s * n_lv / (hw.g_max_s - hw.g_min_s)
    var = None
    gain = None
    if cfg.nonideal_readout:
        ca, cb = hw.cell_map()
        if (ca, cb) != (1.0, g0):  # the cells' G(T): level l reads a l + (b - g0) above G_min
            cells = ca * cells + (cb - g0)
        u_bar = 0.5 * (cells.sum(-4) + g0 * rows)  # (..., T, S, 2, C) expected current
        lsb = None
        if cfg.adc and adc is not None:
            lsb = (arr.i_fs_a / (hw.unit_a * adc.max_code)).reshape(*lead, t, ns, 2, c)
        gain, v = _readout_var(u_bar, lsb, cfg, hw, adc)
        # one conversion per plane: the plane weights add their squares
        var = (plane_w2 * coef[:, :, None] ** 2 * v).sum((-4, -3, -2))[..., None, :]
    w = cells if gain is None else cells * gain[..., None, :, :, :]
    w_eff = torch.einsum("...trspc,sp->...trc", w, coef).reshape(*lead, t * rows, c)
    w_eff = w_eff[..., :arr.rows_total, :]
    out = (w_eff, var)
    if arr.cache is not None:
        arr.cache[key] = out
    return out


def _censored_normal(mu: torch.Tensor, sd: torch.Tensor, floor: float,
                     ceil: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``min(max(X, floor), ceil)``, ``X ~ N(mu, sd^2)`` (sd = 0: a
    point; ``ceil`` None: no ceiling)."""
    pos = sd > 0
    s = torch.where(pos, sd, torch.ones_like(sd))
    a = (floor - mu) / s
    nd = torch.distributions.Normal(torch.zeros_like(a), torch.ones_like(a))
    pa, fa = nd.cdf(a), nd.log_prob(a).exp()
    if ceil is None:  # the upper tail is not cut: P(X > ceil) = 0, no density there
        pb, fb, hi1, hi2, bfb = 1.0, 0.0, 0.0, 0.0, 0.0
    else:
        b = (ceil - mu) / s
        pb, fb = nd.cdf(b), nd.log_prob(b).exp()
        hi1, hi2, bfb = ceil * (1 - pb), ceil ** 2 * (1 - pb), b * fb
    mid = pb - pa
    m1 = floor * pa + hi1 + mu * mid + s * (fa - fb)
    m2 = (floor ** 2 * pa + hi2 + (mu ** 2 + s ** 2) * mid + 2 * mu * s * (fa - fb)
          + s ** 2 * (a * fa - bfb))
    mean = torch.where(pos, m1, mu.clamp(min=floor, max=ceil))
    var = torch.where(pos, (m2 - m1 ** 2).clamp(min=0), torch.zeros_like(mu))
    return mean, var


def write_moments(hw: HardwareModel, source: str, mode: str, gamma: float,
                  sigma: float | None, bias: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and variance (level units, float64, per target level) of one cell written
    by ``write_levels`` with the same arguments (integer targets): the bias, gamma-scaled
    zero-mean part, the floor at 0 S and the characterized forms' ceiling (``write_ceiling``)
    (a censored Gaussian for the Gaussian forms; the characterized residuals themselves for
    ``samples``)."""
    key = ("write_moments", source, mode, float(gamma), sigma, bool(bias))
    if key in hw._cache:
        return hw._cache[key]
    n_lv = hw.levels - 1
    lv = torch.arange(hw.levels, dtype=torch.float64)
    floor = -n_lv * hw.g_min_s / (hw.g_max_s - hw.g_min_s)
    ceil = write_ceiling(hw) if bias and source in CEILING_SOURCES else None
    zero = torch.zeros_like(lv)
    if source == "none":
        out = (lv, zero)
    else:
        mu = lv
        biased = bias and source in ("levels", "samples", "fit") and (
            source != "fit" or mode in hw.write_samples_s)
        if biased:
            b, _ = level_moments(hw, mode)
            mu = lv + b.double()
        if gamma == 0.0:
            out = (mu.clamp(min=floor, max=ceil) if biased else mu, zero)
        elif source == "samples":
            level_moments(hw, mode)  # raises, naming the table, if there are none
            lv_s = (torch.as_tensor(hw.write_samples_s[mode], dtype=torch.float64)
                    - hw.g_min_s) / (hw.g_max_s - hw.g_min_s) * n_lv
            y = (mu[:, None] + gamma * (lv_s - lv_s.mean(1, keepdim=True))).clamp(min=floor,
                                                                                  max=ceil)
            out = (y.mean(1), y.var(1, unbiased=False))  # uniform draws over the samples
        elif source == "levels":
            _, s = level_moments(hw, mode)
            out = _censored_normal(mu, gamma * s.double(), floor, ceil)
        else:
            k = _relative_k(hw, source, mode, gamma, sigma)
            out = (mu, zero) if k == 0.0 else _censored_normal(
                mu, k * torch.sqrt(n_lv * lv), floor, ceil)
    hw._cache[key] = out
    return out


@dataclass
class MomentWrite:
    """A matrix written per inference, in the moment mode's form: the effective matrix with
    its write noise drawn (one Gaussian per element, the slices' summed variance) and the
    readout variance per output column (before ``var_scale``).

    Attributes:
        w_eff: (..., R, C); var: (..., 1, C) or None; scale: (..., 1, C) output scale;
        tiles, conv_cols: conversions per input row and plane are ``tiles x conv_cols``;
        cache: what a caller keeps with the written matrix (as ``Array.cache``).
    """

    w_eff: torch.Tensor
    var: torch.Tensor | None
    scale: torch.Tensor
    tiles: int
    conv_cols: int
    cache: dict[str, Any] | None = None


def _kv_digit_tables(hw: HardwareModel, cfg: AnalogConfig, m_l: torch.Tensor,
                     v_l: torch.Tensor, device: torch.device, dtype: torch.dtype
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group of two slices and group code ``h`` (the group's two digits): for each slice
    of the group, the cell's mean level above a level-0 cell's, its target digit and its
    variance above a level-0 cell's: ``(G, E, 2, 3)``; and the slices' digital weights
    ``(G, 2)`` (0 for a padding slice)."""
    key = ("kv_digits", cfg.weight_bits, cfg.cell_bits, tuple(m_l.tolist()),
           tuple(v_l.tolist()), str(device), str(dtype))
    if key not in hw._cache:
        base = 2 ** cfg.cell_bits
        ns = cfg.weight_bits // cfg.cell_bits
        n_g = -(-ns // 2)
        h = torch.arange(base * base)
        dig = torch.stack([h % base, h // base], -1)  # (E, 2): low and high slice digit
        tab = torch.stack([(m_l - m_l[0])[dig], dig.double(), (v_l - v_l[0])[dig]], -1)
        tab = tab[None].expand(n_g, -1, -1, -1).clone()
        sw = torch.tensor([[float(base) ** (2 * g + i) if 2 * g + i < ns else 0.0
                            for i in range(2)] for g in range(n_g)], dtype=torch.float64)
        hw._cache[key] = (tab.to(device=device, dtype=dtype), sw.to(device=device, dtype=dtype))
    return hw._cache[key]


def moment_write(w_rc: torch.Tensor, scale_max: torch.Tensor, cfg: AnalogConfig,
                 hw: HardwareModel, adc: AdcModel | None, generator: torch.Generator | None,
                 *, clip: tuple[float, float] | None = None, source: str | None = None,
                 mode: str | None = None, gamma: float | None = None, noise: bool = True
                 ) -> MomentWrite:
    """Write ``w_rc`` (rows = inputs) as ``map_matrix`` + ``write_levels`` + ``build_array``
    would, in the moment mode's form, without slicing it into per-cell tensors.

    Each cell's programmed level has the exact mean and variance of ``write_moments`` (bias,
    gamma, the floor at 0 S); an element's effective value is the slice-weighted sum of its
    cells times each column's transfer gain at its expected current, and its write noise
    one Gaussian with the cells' summed variance (exact in mean and variance: the cells are
    independent). Per column, tile and sign, two slices at a time: a table of the 16 values
    of a pair of digits (gain folded in) is read at each element's code, and the column sums
    of the cells (expected currents, ADC full scale) come from the counts of the codes. The
    transfer gain and the readout variance use each column's expected current from the mean
    cells (``_moment_terms`` uses the programmed ones: they differ by the write noise's
    column sum). Needs integer slices (``weight_bits``).
    """
    source = cfg.write_noise if source is None else source
    mode = cfg.dynamic_write_mode if mode is None else mode
    gamma = cfg.gamma if gamma is None else gamma
    n_lv = hw.levels - 1
    dt, dev = w_rc.dtype, w_rc.device
    scale_max = torch.clamp(scale_max, min=torch.finfo(dt).tiny)
    wt = w_rc.transpose(-2, -1)  # (..., C, R): per column, its rows
    *lead, c, r = wt.shape
    gens = _chip_gens(generator)
    qmax = 2 ** cfg.weight_bits - 1
    mean_l, var_l = write_moments(hw, source, mode, gamma, cfg.write_noise_sigma,
                                  cfg.write_bias)
    ca, cb, g0 = 1.0, 0.0, 0.0
    if cfg.nonideal_readout:
        g0 = hw.g_min_s * n_lv / (hw.g_max_s - hw.g_min_s)
        ca, cb = hw.cell_map()
        m_l = ca * mean_l + (cb - g0)
    else:
        m_l = mean_l
    v_l = ca ** 2 * var_l
    m0, v0 = float(m_l[0]), float(v_l[0])
    dtab, sw = _kv_digit_tables(hw, cfg, m_l, v_l, dev, dt)  # (G, E, 2, 3), (G, 2)
    n_g, e = dtab.shape[:2]
    rows = cfg.tile_rows
    t = -(-r // rows)
    nb = t * n_g * 2 * e
    lib = _moment_lib(cfg, w_rc) if scale_max.shape[-2:] == (1, 1) and cfg.cell_bits <= 4 \
        else None  # the kernel: one scale per matrix, up to 16 levels per cell
    idx: list[torch.Tensor] = []
    drawn = noise and float(var_l.max()) > 0
    if lib is not None:  # nnsim/kernels/moment.c: codes, column sums and values per element
        ka, keep = _mw_args(wt, scale_max, lead, cfg, hw, clip, n_g, m_l - m0,
                            v_l - v0 if drawn else None)
    else:
        mag = wt.abs() / scale_max.transpose(-2, -1)
        if clip is not None:
            dg = hw.g_max_s - hw.g_min_s
            g = clipformer_conductance(hw.g_min_s + dg * mag, hw.g_min_s, hw.g_max_s,
                                       clip[0], clip[1])
            mag = (g - hw.g_min_s) / dg
        q = torch.round(mag * qmax).to(torch.int64)
        # bin of (tile, group, sign, code) per element and group; same layout as the tables
        tile = torch.arange(r, device=dev) // rows
        base_idx = (tile * (n_g * 2 * e)) + (wt < 0).to(torch.int64) * e
        idx = [base_idx + g * 2 * e + ((q >> (2 * cfg.cell_bits * g)) & (e - 1))
               for g in range(n_g)]
        del q, base_idx, mag
    gain = None
    var = None
    if cfg.nonideal_readout:
        # column sums per (tile, group, sign, slice of group) of mean level and target digit
        if lib is not None:
            sums = torch.empty(*lead, c, t, n_g, 2, 2, 2, device=dev, dtype=dt)
            lib.imc_moment_colsums(ctypes.byref(ka), kernels.ptr(sums, torch.float32))
        else:
            counts = torch.zeros(*lead, c, nb, device=dev, dtype=dt)
            one = torch.ones((), device=dev, dtype=dt).expand(idx[0].shape)
            for ig in idx:
                counts.scatter_add_(-1, ig, one)
            counts = counts.reshape(*lead, c, t, n_g, 2, e)
            sums = torch.einsum("...tgpe,geik->...tgpik", counts, dtab[..., :2])
        n_r = torch.bincount(torch.arange(r, device=dev) // rows, minlength=t).to(dt)[
            :, None, None, None]
        if lib is not None:  # the per-column terms in one kernel pass (the torch path's ops)
            gain, v = _colterms_kernel(lib, sums, n_r, m0 + g0, cfg, hw, adc, rows, n_lv)
        else:
            u_bar = 0.5 * (sums[..., 0] + (m0 + g0) * n_r)  # (..., C, T, G, 2, 2)
            lsb = None
            if cfg.adc and adc is not None:
                if cfg.adc_full_scale == "tile":
                    grp = sums[..., 1].amax(-5, keepdim=True).clamp(min=1.0)
                    i_fs = hw.v_read_v * (hw.g_min_s * rows + (hw.g_max_s - hw.g_min_s)
                                          / n_lv * grp)
                else:
                    i_fs = torch.full_like(u_bar[..., :1, :, :, :, :],
                                           float(cfg.adc_full_scale) * rows * hw.g_max_s
                                           * hw.v_read_v)
                lsb = i_fs / (hw.unit_a * adc.max_code)
            gain, v = _readout_var(u_bar, lsb, cfg, hw, adc)
        coef2 = (sw[:, None, :] ** 2)  # (G, 2 signs, 2 slices)
        b = cfg.input_bits
        plane_w2 = 1.0 if b is None else float(sum(4.0 ** j for j in range(b)))
        var = (plane_w2 * (coef2 * v).sum((-4, -3, -2, -1)))[..., None, :]
    sign = torch.tensor([1.0, -1.0], device=dev, dtype=dt)
    coef = sw[:, None, :] * sign[None, :, None]  # (G, 2 signs, 2 slices)
    gc = coef.expand(t, n_g, 2, 2) if gain is None else coef * gain  # (..., C,) T, G, 2, 2

    def table(col: torch.Tensor, which: int, cell0: float) -> torch.Tensor:
        """Per (column,) tile, group, sign, code: the summed cell values (level-0 cells of
        all slices and signs in group 0's entries), flattened to the bins of ``idx``
        ((nb,) without a gain: one table for every column)."""
        tb = torch.einsum("...gpi,gei->...gpe", col, dtab[..., which])
        tb[..., 0, :, :] += cell0 * col.sum((-3, -2, -1))[..., None, None]
        return tb.reshape(*tb.shape[:-4], -1)

    ns = cfg.weight_bits // cfg.cell_bits
    if lib is not None:  # per element from the column's gains (the tables' sums, unrolled)
        out = torch.empty(*lead, r, c, device=dev, dtype=dt)
        shared = gain is None
        gcc = gc.contiguous()
        keys = _chip_keys(gens) if drawn else None
        keep += [gcc, keys, out]
        per_c = t * n_g * 4
        lib.imc_moment_elems(
            ctypes.byref(ka), kernels.ptr(gcc, torch.float32), 0 if shared else c * per_c,
            0 if shared else per_c, m0, v0,
            None if keys is None else kernels.ptr(keys, torch.int64),
            max(1, ka.n_mat // len(gens)), kernels.ptr(out, torch.float32))
        del keep
        return MomentWrite(out, var, scale_max / qmax, t, ns * 2 * c)
    tab_m = table(gc, 0, m0)
    tab_v = table(gc ** 2, 2, v0) if drawn else None
    if gain is None:
        tab_m = tab_m.expand(*lead, c, -1)
        tab_v = tab_v.expand(*lead, c, -1) if tab_v is not None else None
    w_t = tab_m.gather(-1, idx[0])
    for ig in idx[1:]:
        w_t += tab_m.gather(-1, ig)
    if tab_v is not None:
        wv = tab_v.gather(-1, idx[0])
        for ig in idx[1:]:
            wv += tab_v.gather(-1, ig)
        w_t += wv.clamp_(min=0).sqrt_().mul_(_chip_randn(w_t.shape, gens, dev, dt))
    return MomentWrite(w_t.transpose(-2, -1), var, scale_max / qmax, t, ns * 2 * c)


def _adc_var_coef(cfg: AnalogConfig, adc: AdcModel, dtype: torch.dtype) -> float:
    """The ADC's variance per LSB^2 in ``_readout_var``: 1/12, input noise, mean INL^2."""
    th = torch.as_tensor(adc.thresholds_lsb, dtype=dtype)
    ideal = torch.arange(1, adc.max_code + 1, dtype=dtype) - 0.5 + adc.code_offset
    inl2 = float(((th - ideal) ** 2).mean())
    an = adc.noise_lsb ** 2 if cfg.adc_noise else 0.0
    return 1.0 / 12.0 + an + inl2


def _colterms_kernel(lib: ctypes.CDLL, sums: torch.Tensor, n_r: torch.Tensor, a_mg: float,
                     cfg: AnalogConfig, hw: HardwareModel, adc: AdcModel | None, rows: int,
                     n_lv: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``moment_write``'s transfer gain and conversion variance per column and slot from the
    column sums (``imc_moment_colterms``: ``_readout_var`` at the expected currents and the
    ADC's LSB, the torch path's float32 operations in its order, in one pass)."""
    shape = sums.shape[:-1]  # (..., C, T, G, 2, 2)
    c, t = shape[-5], shape[-4]
    slots = math.prod(shape[-3:])
    n_mat = math.prod(shape[:-5])
    sums = sums.contiguous()
    nr = n_r.reshape(-1).contiguous()
    tab, names = None, ()
    per_u, n = 0.0, 1
    if cfg.nonlinearity or cfg.read_noise:
        tb = hw.fused_readout(sums.device, gain=cfg.nonlinearity, read=cfg.read_noise,
                              spread=cfg.nonlinearity)
        key = "moment_kernel_tab"
        if key not in tb:  # per term its a then b, one float32 block
            tb[key] = torch.stack([torch.stack([a, b]) for a, b in
                                   zip(tb["a"], tb["b"], strict=True)]).contiguous()
        tab, names, per_u, n = tb[key], tb["names"], tb["per_u"], tb["n"]
    pos = {nm: (names.index(nm) if nm in names else -1) for nm in ("mean", "read", "spread")}
    adc_mode, ifs, c_adc, k_div = 0, 0.0, 0.0, 1.0
    if cfg.adc and adc is not None:
        adc_mode = 1 if cfg.adc_full_scale == "tile" else 2
        if adc_mode == 2:
            ifs = float(cfg.adc_full_scale) * rows * hw.g_max_s * hw.v_read_v
        c_adc, k_div = _adc_var_coef(cfg, adc, sums.dtype), hw.unit_a * adc.max_code
    gain = torch.empty(shape, dtype=sums.dtype) if cfg.nonlinearity else None
    v = torch.empty(shape, dtype=sums.dtype)
    lib.imc_moment_colterms(
        kernels.ptr(sums, torch.float32), n_mat, c, t, slots, kernels.ptr(nr, torch.float32), a_mg,
        None if tab is None else kernels.ptr(tab, torch.float32), n, per_u, pos["mean"],
        pos["read"], pos["spread"], adc_mode, (hw.g_max_s - hw.g_min_s) / n_lv,
        hw.g_min_s * rows, hw.v_read_v, ifs, k_div, c_adc,
        None if gain is None else kernels.ptr(gain, torch.float32), kernels.ptr(v, torch.float32))
    return gain, v


class _MwArgs(ctypes.Structure):
    """``imc_mw_args`` of nnsim/kernels/moment.c."""

    _fields_ = [("wt", ctypes.c_void_p), ("smax", ctypes.c_void_p), ("n_mat", ctypes.c_int64),
                ("C", ctypes.c_int64), ("R", ctypes.c_int64), ("rows", ctypes.c_int64),
                ("ns", ctypes.c_int64), ("n_g", ctypes.c_int64), ("cell_bits", ctypes.c_int64),
                ("qmax", ctypes.c_float), ("clip", ctypes.c_int), ("gmin", ctypes.c_float),
                ("dg", ctypes.c_float), ("clip_lo", ctypes.c_float), ("clip_hi", ctypes.c_float),
                ("m_rel", ctypes.c_void_p), ("v_rel", ctypes.c_void_p), ("scalar", ctypes.c_int)]


MOMENT_KERNEL_SIMD = True
"""The moment kernel's AVX-512 element pass of the K/V writes where built (False: its scalar
loop, the same bits; tests compare the two)."""


def _mw_args(wt: torch.Tensor, scale_max: torch.Tensor, lead: list[int], cfg: AnalogConfig,
             hw: HardwareModel, clip: tuple[float, float] | None, n_g: int,
             m_rel: torch.Tensor, v_rel: torch.Tensor | None) -> tuple[_MwArgs, list[Any]]:
    """The kernel's arguments for ``moment_write`` (and the tensors to keep alive)."""
    *_, c, r = wt.shape
    w = wt.contiguous()
    s = scale_max.expand(*lead, 1, 1).reshape(-1).contiguous()
    a = _MwArgs()
    a.wt, a.smax = kernels.ptr(w, torch.float32), kernels.ptr(s, torch.float32)
    a.n_mat, a.C, a.R, a.rows = math.prod(lead), c, r, cfg.tile_rows
    a.ns, a.n_g, a.cell_bits = cfg.weight_bits // cfg.cell_bits, n_g, cfg.cell_bits
    a.qmax = float(2 ** cfg.weight_bits - 1)
    mr = m_rel.to(torch.float32).contiguous()
    vr = v_rel.to(torch.float32).contiguous() if v_rel is not None else None
    a.m_rel = kernels.ptr(mr, torch.float32)
    a.v_rel = kernels.ptr(vr, torch.float32) if vr is not None else None
    a.scalar = int(not MOMENT_KERNEL_SIMD)
    a.clip = int(clip is not None)
    if clip is not None:  # clipformer_conductance's float32 operations, in its order
        a.gmin, a.dg = hw.g_min_s, hw.g_max_s - hw.g_min_s
        a.clip_lo, a.clip_hi = clip[0] * hw.g_min_s, clip[1] * hw.g_max_s
    return a, [w, s, mr, vr]


def _kernel_tensors(cfg: AnalogConfig, t: torch.Tensor, *, warn: bool) -> bool:
    """Whether the C kernels can take ``t`` (CPU float32); else ``readout_kernel="c"`` is an
    error and ``"auto"`` falls back to the torch path (with a warning where ``warn``)."""
    if t.device.type == "cpu" and t.dtype == torch.float32:
        return True
    if cfg.readout_kernel == "c":
        raise ValueError(f"readout_kernel='c' needs CPU float32 tensors, got {t.device} "
                         f"{t.dtype}")
    if warn:
        _kernel_warn(f"the C kernel runs on CPU float32 tensors, not {t.device} {t.dtype}")
    return False


def _moment_lib(cfg: AnalogConfig, t: torch.Tensor) -> ctypes.CDLL | None:
    """The moment mode's C kernel (``nnsim/kernels/moment.c``) for tensors like ``t``, or None
    for the torch path: ``cfg.readout_kernel`` says which (``"torch"``: always the torch
    path; ``"c"``: the kernel or an error); the kernel runs on CPU float32 tensors."""
    if cfg.readout_kernel == "torch" or not _kernel_tensors(cfg, t, warn=False):
        return None
    lib = kernels.load("moment", required=cfg.readout_kernel == "c")
    if lib is not None and not hasattr(lib, "_imc_typed"):
        vp, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.imc_moment_colsums.argtypes = [vp, vp]
        lib.imc_moment_elems.argtypes = [vp, vp, i64, i64, ctypes.c_float, ctypes.c_float, vp,
                                         i64, vp]
        f32, i32 = ctypes.c_float, ctypes.c_int
        lib.imc_moment_epilogue.argtypes = [vp, i64, i64, i64, i64, i32, f32, vp, i64, vp, vp,
                                            vp]
        lib.imc_moment_normal.argtypes = [ctypes.c_uint64, i64, vp]
        lib.imc_moment_normal_scalar.argtypes = [ctypes.c_uint64, i64, vp]
        lib.imc_rows_absmax.argtypes = [vp, i64, i64, i32, vp]
        lib.imc_rows_codes.argtypes = [vp, i64, i64, vp, f32, f32, i32, vp]
        lib.imc_moment_colterms.argtypes = [vp, i64, i64, i64, i64, vp, f32, vp, i64, f32, i64, i64,
                                            i64, i32, f32, f32, f32, f32, f32, f32, vp, vp]
        for f in (lib.imc_moment_colsums, lib.imc_moment_elems, lib.imc_moment_epilogue,
                  lib.imc_moment_colterms,
                  lib.imc_moment_normal, lib.imc_moment_normal_scalar, lib.imc_rows_absmax,
                  lib.imc_rows_codes):
            f.restype = None
        lib._imc_typed = True
    return lib


def _chip_gens(generator: Any) -> list[torch.Generator | None]:
    """The generators of a call: one chip's, or a list, one per chip of a chip batch (the
    leading dimension of the call's tensors is then the chips)."""
    return list(generator) if isinstance(generator, (list, tuple)) else [generator]


def _chip_keys(gens: list[torch.Generator | None]) -> torch.Tensor:
    """One 64-bit kernel key per chip, drawn from each chip's generator (as the C readout)."""
    return torch.stack([torch.randint(-2 ** 63, 2 ** 63 - 1, (), dtype=torch.int64,
                                      generator=g) for g in gens])


def _chip_randn(shape: Any, gens: list[torch.Generator | None], device: torch.device,
                dtype: torch.dtype) -> torch.Tensor:
    """``torch.randn(shape)`` from one chip's generator, or per chip of a chip batch (the
    first dimension): each chip's block is what its own generator gives for that block's
    shape, as in a loop over the chips."""
    if len(gens) == 1:
        return torch.randn(shape, generator=gens[0], device=device, dtype=dtype)
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device, dtype=dtype)
                        for g in gens])


MOMENT_EXACT_BITS = 4
"""At ADC resolutions up to this many bits the moment mode computes the conversions of bit
planes with few active rows (``MOMENT_EXACT_ROWS``) in expectation through the column's ADC
thresholds (``moment_low_counts``): there the column sums are a few LSB wide and the
staircase is not linear (docs/nnsim.md, Fidelity). Above it (6 bits and more) the linear
readout model alone is used (the calibrated gain absorbs the rest)."""
MOMENT_EXACT_ROWS = 4
"""Active-row counts per plane and tile (1 .. this) whose conversions ``moment_low_counts``
computes in expectation; planes with no active row are exact too (one value per column)."""

_SQRT2 = 2.0 ** 0.5


def moment_exact(cfg: AnalogConfig, adc: AdcModel | None) -> bool:
    """Whether the moment mode computes the low-count conversions in expectation
    (``moment_low_counts``): ADC on, bit-serial inputs, sliced weights, at most
    ``MOMENT_EXACT_BITS`` bits. Then K/V are written as per-cell arrays (the cells are
    needed)."""
    return (cfg.adc and adc is not None and cfg.input_bits is not None
            and cfg.weight_bits is not None and adc.bits <= MOMENT_EXACT_BITS)


def _code_moments(x: torch.Tensor, sd: torch.Tensor, inst: torch.Tensor | None,
                  adc: AdcModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the code of ``x + sd N(0,1)`` (LSB) through the thresholds of
    ADC instance ``inst`` (x's shape; None: instance 0): ``E = sum_k P_k``,
    ``E[code^2] = sum_k (2k - 1) P_k``, ``P_k = Phi((x - t_k) / sd)`` (the code is the
    number of thresholds crossed). Where no threshold lies within ``_CODE_SIGMAS`` sd of
    ``x`` (the exact table ADC gives one code at ``x - 8 sd`` and ``x + 8 sd``), the code is
    certain (missed probability < 1e-15): the Gaussian CDF is evaluated only elsewhere."""
    xs, sds = x.reshape(-1), sd.reshape(-1)
    ins: torch.Tensor | int = 0 if inst is None else inst.reshape(-1)
    cut = sds * _CODE_SIGMAS
    e1 = adc.quantize_fast(xs, ins)
    near = adc.quantize_fast(xs - cut, ins) != adc.quantize_fast(xs + cut, ins)
    e2 = e1 * e1
    sel = near.nonzero().squeeze(1)
    if sel.numel():
        th_all = torch.as_tensor(adc.thresholds_lsb, dtype=xs.dtype, device=xs.device)
        xn = xs.index_select(0, sel)
        sn = sds.index_select(0, sel)
        inv = 1.0 / (sn * _SQRT2)
        ii = 0 if inst is None else ins.index_select(0, sel)
        if bool((th_all[:, 1:] >= th_all[:, :-1]).all()):
            # sorted thresholds: those below x - 8 sd are crossed (P = 1 to 1e-15), those
            # above x + 8 sd are not; the CDF only for the few between, lo <= k < hi
            lo = adc.quantize_fast(xn - sn * _CODE_SIGMAS, ii)
            hi = adc.quantize_fast(xn + sn * _CODE_SIGMAS, ii)
            f1 = lo.clone()
            f2 = lo * lo  # sum_{k < lo} (2k + 1)
            flat = th_all.reshape(-1)
            row = (ii * th_all.shape[1]) if inst is not None else 0
            top = th_all.shape[1] - 1
            for j in range(int((hi - lo).max())):
                k = lo + j
                on = k < hi
                kk = k.long().clamp_(max=top)
                tk = flat.index_select(0, (row + kk).reshape(-1))
                pk = torch.erfc((tk - xn) * inv).mul_(0.5).mul_(on)
                f1 += pk
                f2 += (2 * k + 1) * pk
        else:
            tn = th_all[0].expand(sel.numel(), -1) if inst is None else \
                th_all.index_select(0, ii)
            f1 = torch.zeros_like(xn)
            f2 = torch.zeros_like(xn)
            for k in range(tn.shape[-1]):
                pk = torch.erfc((tn[:, k] - xn) * inv).mul_(0.5)
                f1 += pk
                f2 += (2 * k + 1) * pk
        e1.index_copy_(0, sel, f1)
        e2.index_copy_(0, sel, f2)
    return e1.view(x.shape), (e2 - e1 * e1).clamp_(min=0).view(x.shape)


_CODE_SIGMAS = 8.0


def _low_count_columns(arr: Array, cfg: AnalogConfig, hw: HardwareModel, adc: AdcModel
                       ) -> tuple[torch.Tensor, ...]:
    """Per (lead, tile, conversion column): the moment mode's transfer gain (at the expected
    current), the LSB (level units), the moment mode's variance of one conversion and the
    column's ADC instance (None without instances: instance 0, as ``readout``)."""
    key = "low_count_columns"
    if arr.cache is not None and key in arr.cache:
        return arr.cache[key]
    *lead, t, rows, k = arr.cells_mm.shape
    ns, c = arr.slice_w.numel(), arr.cols
    ca, cb = hw.cell_map()
    g0 = hw.g_min_s * (hw.levels - 1) / (hw.g_max_s - hw.g_min_s)
    cells = ca * arr.cells_mm.reshape(*lead, t, rows, ns, 2, c) + (cb - g0)
    u_bar = 0.5 * (cells.sum(-4) + g0 * rows)  # as _moment_terms
    lsb = (arr.i_fs_a / (hw.unit_a * adc.max_code)).reshape(*lead, t, ns, 2, c)
    gain, v = _readout_var(u_bar, lsb, cfg, hw, adc)
    if gain is None:
        gain = torch.ones_like(u_bar)
    inst = None
    if arr.inst is not None:
        inst = arr.inst.reshape(*arr.inst.shape[:-2], arr.inst.shape[-1]).expand(
            *lead, t, k).long()
    out = (gain.reshape(*lead, t, k), lsb.reshape(*lead, t, k), v.reshape(*lead, t, k), inst)
    if arr.cache is not None:
        arr.cache[key] = out
    return out


def _lowcount_lib(cfg: AnalogConfig, t: torch.Tensor) -> ctypes.CDLL | None:
    """The low-count conversions' C kernel (``nnsim/kernels/lowcount.c``) for tensors like
    ``t``, or None for the torch path (``cfg.readout_kernel`` as for ``_moment_lib``)."""
    if cfg.readout_kernel == "torch" or not _kernel_tensors(cfg, t, warn=False):
        return None
    lib = kernels.load("lowcount", required=cfg.readout_kernel == "c")
    if lib is not None and not hasattr(lib, "_imc_typed"):
        vp, i64, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
        lib.imc_lowcount_conv.argtypes = [i64, i64, i64, i64, i64, vp, vp, vp, vp, vp, vp, vp,
                                          vp, vp, vp, i64, ctypes.c_int, vp, vp, vp, f32, f32,
                                          f32, f32, f32, f32, f32, f32, f32, vp, i64, vp, vp,
                                          vp, f32, i64, vp, vp]
        lib.imc_lowcount_conv.restype = None
        lib.imc_lowcount_select.argtypes = [i64, i64, i64, i64, i64, i64, vp, vp, vp, vp, vp,
                                            vp, vp, vp, vp, vp]
        lib.imc_lowcount_select.restype = i64
        lib.imc_lowcount_accumulate.argtypes = [i64, i64, vp, vp, vp, vp, vp, vp, vp, vp]
        lib.imc_lowcount_accumulate.restype = None
        lib.imc_lowcount_cdf.argtypes = [i64, vp, vp]
        lib.imc_lowcount_cdf.restype = None
        lib.imc_lowcount_init.argtypes = []
        lib.imc_lowcount_init.restype = None
        lib.imc_lowcount_init()  # the CDF table, once per process
        lib._imc_typed = True
    return lib


def _lowcount_thresholds(adc: AdcModel) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The kernel's thresholds (instances, 2^bits - 1), float32 rounded to nearest (the
    torch path's copy, for the CDF) and rounded up (``x >= th_up`` exactly when ``x`` is at
    or above the float64 threshold, as ``AdcModel._tables``: the window's codes), and
    whether every instance's are sorted."""
    key = ("lowcount_thresholds",)
    if key not in adc._cache:
        t64 = np.asarray(adc.thresholds_lsb, dtype=np.float64)
        t32 = t64.astype(np.float32)
        up = np.where(t32 < t64, np.nextafter(t32, np.float32(np.inf)), t32)
        adc._cache[key] = (torch.from_numpy(np.ascontiguousarray(t32)),
                           torch.from_numpy(np.ascontiguousarray(up.astype(np.float32))),
                           bool((t32[:, 1:] >= t32[:, :-1]).all()))  # as _code_moments
    return adc._cache[key]


_TERM_KIND = {"mean": 0, "spread": 1, "read": 2}


def _stacked(tb: dict[str, Any], part: str) -> torch.Tensor:
    """``fused_readout``'s per-term tables ``part`` ("a" or "b") as one contiguous (terms, n)
    tensor, kept with the (cached) tables."""
    key = f"_stacked_{part}"
    if key not in tb:
        tb[key] = torch.stack(list(tb[part])).contiguous()
    return tb[key]


def _lowcount_kernel_args(arr: Array, gf: torch.Tensor, lf: torch.Tensor, vf: torch.Tensor,
                          instf: torch.Tensor | None, tb: dict[str, Any] | None,
                          adc: AdcModel, coef: torch.Tensor, dev: torch.device
                          ) -> dict[str, Any]:
    """What ``imc_lowcount_conv`` reads besides the conversions: the cells and the per-column
    terms as contiguous float32 / int64, the thresholds and the fused readout tables."""
    th, th_up, srt = _lowcount_thresholds(adc)
    names = tuple(tb["names"]) if tb is not None else ()
    one = torch.zeros(1, dtype=torch.float32)
    lut = adc._tables(dev)  # quantize_fast's tables and index arithmetic (_lut_index)
    r = adc._steps()
    if not srt:
        lut = {"low": one, "th": one, "jump": one}
    return {"lut_low": lut["low"], "lut_th": lut["th"], "lut_jump": lut["jump"],
            "lut_r": float(r), "lut_g": float((adc.max_code + 4) * r),
            "lut_hi": adc.max_code + 2.0 - 0.5 / r,
            "cells": arr.cells_mm.contiguous(), "gain": gf.contiguous(),
            "lsb": lf.contiguous(), "vmom": vf.contiguous(),
            "inst": None if instf is None else instf.to(torch.int64).contiguous(),
            "th": th, "th_up": th_up, "nth": th.shape[1], "sorted": srt,
            "coef": coef.reshape(-1).to(torch.float32).contiguous(),
            "n_terms": len(names),
            "kind": torch.tensor([_TERM_KIND[nm] for nm in names] or [0], dtype=torch.int64),
            "ta": _stacked(tb, "a") if names else one, "tb": _stacked(tb, "b") if names else one,
            "per_u": float(tb["per_u"]) if names else 0.0,
            "tn": int(tb["n"]) if names else 1}


def _low_counts_c(lib: ctypes.CDLL, kc: dict[str, Any], q: torch.Tensor, w: torch.Tensor,
                  n_l: int, m: int, t: int, rows: int, ns: int, c: int,
                  consts: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``moment_low_counts`` after its setup, in nnsim/kernels/lowcount.c: the conversions
    of 1 .. ``MOMENT_EXACT_ROWS`` active rows listed in the torch path's order (with their
    keys), the distinct ones (``torch.unique``) converted once, the planes without an active
    row once per (lead, tile), accumulated in the torch path's order -> (corr, dvar) (L M, C).
    """
    ca, cb, g0, an2, code_offset = consts
    nr = MOMENT_EXACT_ROWS
    bits = w.numel()
    cap = bits * n_l * m * t
    f32, i64 = torch.float32, torch.int64
    a0, a02 = torch.empty(n_l, m, t, dtype=f32), torch.empty(n_l, m, t, dtype=f32)
    key, ct, row, plane = (torch.empty(cap, dtype=i64) for _ in range(4))
    cnt = torch.empty(cap, dtype=f32)
    idx = torch.empty(cap, nr, dtype=i64)
    wc = w.to(f32).contiguous()
    p = kernels.ptr
    nq = int(lib.imc_lowcount_select(n_l, m, t, rows, bits, nr, p(q, torch.int32), p(wc, f32),
                                     p(a0, f32), p(a02, f32), p(key, i64), p(ct, i64),
                                     p(row, i64), p(plane, i64), p(cnt, f32), p(idx, i64)))

    def conv(ix: torch.Tensor | None, cn: torch.Tensor, cti: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        qn = cti.numel()
        ix_c = torch.empty(0, dtype=i64) if ix is None else ix.contiguous()
        cti, cn = cti.contiguous(), cn.contiguous()
        d, dv = torch.empty(qn, c, dtype=f32), torch.empty(qn, c, dtype=f32)
        lib.imc_lowcount_conv(
            qn, 0 if ix is None else nr, rows, ns, c, p(kc["cells"], f32), p(cti, i64),
            p(ix_c, i64), p(cn, f32), p(kc["gain"], f32), p(kc["lsb"], f32),
            p(kc["vmom"], f32), None if kc["inst"] is None else p(kc["inst"], i64),
            p(kc["th"], f32), p(kc["th_up"], f32), kc["nth"], int(kc["sorted"]),
            p(kc["lut_low"], f32), p(kc["lut_th"], f32), p(kc["lut_jump"], f32), kc["lut_r"],
            kc["lut_g"], kc["lut_hi"], ca, cb, g0, an2, code_offset, _CODE_SIGMAS,
            p(kc["coef"], f32), kc["n_terms"],
            p(kc["kind"], i64), p(kc["ta"], f32), p(kc["tb"], f32), kc["per_u"], kc["tn"],
            p(d, f32), p(dv, f32))
        return d, dv

    # planes without an active row: one value per (lead, tile, column)
    d0, dv0 = conv(None, torch.zeros(n_l * t, dtype=f32), torch.arange(n_l * t))
    corr = torch.bmm(a0, d0.reshape(n_l, t, c)).reshape(n_l * m, c)
    dvar = torch.bmm(a02, dv0.reshape(n_l, t, c)).reshape(n_l * m, c)
    if nq:
        key, ct, row, plane = key[:nq], ct[:nq], row[:nq], plane[:nq]
        uk, inv = torch.unique(key, return_inverse=True)
        rep = torch.empty_like(uk).scatter_(0, inv, torch.arange(nq))
        d, dv = conv(idx[:nq].index_select(0, rep), cnt[:nq].index_select(0, rep),
                     ct.index_select(0, rep))
        inv = inv.contiguous()
        lib.imc_lowcount_accumulate(nq, c, p(row, i64), p(plane, i64), p(inv, i64), p(wc, f32),
                                    p(d, f32), p(dv, f32), p(corr, f32), p(dvar, f32))
    return corr, dvar


@torch.no_grad()
def moment_low_counts(xq: torch.Tensor, signed: bool, arr: Array, cfg: AnalogConfig,
                      hw: HardwareModel, adc: AdcModel) -> tuple[torch.Tensor, torch.Tensor]:
    """The moment mode's correction for conversions whose bit plane has few active rows.

    A conversion of plane ``j`` of input row ``m`` on tile ``t`` sums the cells of the
    ``n`` active rows. Where ``n = 0`` or ``1 <= n <= MOMENT_EXACT_ROWS`` its column sum
    ``S`` (per slice, sign and column, from the programmed cells) is formed exactly, and its
    decoded value in expectation over the per-conversion noise, ``lsb (E[code] +
    code_offset)`` with ``E[code] = sum_k Phi((T(u)/lsb - t_k) / sd)`` (``T`` the read
    transfer's mean at the ideal current ``u = a S + b n``, ``sd`` the spread, read noise and
    ADC noise together, ``t_k`` the thresholds of the column's ADC instance), replaces the
    moment mode's linear value ``gain (a S + (b - g0) n)``; the code's variance replaces the
    conversion's predicted variance. Conversions of more active rows keep the linear model
    (their sums spread over several LSB).

    Args:
        xq: (..., M, R) quantized inputs (integers; signed: -qmax..qmax).

    Returns:
        ``(corr, dvar)`` (..., M, C): to add to ``xq @ w_eff`` and to its variance, before
        the input and output scales.
    """
    *lead, t, rows, k = arr.cells_mm.shape
    ns, c = arr.slice_w.numel(), arr.cols
    bits = cfg.input_bits
    dev, dt = xq.device, xq.dtype
    gain, lsb, vmom, inst = _low_count_columns(arr, cfg, hw, adc)
    ca, cb = hw.cell_map()
    g0 = hw.g_min_s * (hw.levels - 1) / (hw.g_max_s - hw.g_min_s)
    n_l = 1
    for d in lead:
        n_l *= d
    q = xq.to(torch.int32)
    if signed:
        q = torch.where(q < 0, q + (1 << bits), q)
    r = q.shape[-1]
    q = q.expand(*lead, *q.shape[len(lead):]) if lead else q
    q = q.reshape(n_l, -1, r)
    m = q.shape[1]
    if t * rows != r:
        q = torch.nn.functional.pad(q, (0, t * rows - r))
    q = q.reshape(n_l, m, t, rows)
    w = (2.0 ** torch.arange(bits, device=dev)).to(dt)
    if signed:
        w[-1] = -w[-1]
    sign = torch.tensor([1.0, -1.0], device=dev, dtype=dt)
    coef = (arr.slice_w[:, None] * sign[None, :])[:, :, None]  # (S, 2, 1)
    gf, lf = gain.reshape(n_l * t, k), lsb.reshape(n_l * t, k)
    vf = vmom.reshape(n_l * t, k)
    instf = None if inst is None else inst.reshape(n_l * t, k)
    an2 = adc.noise_lsb ** 2 if cfg.adc_noise else 0.0
    tb = None
    if cfg.nonlinearity or cfg.read_noise:
        tb = hw.fused_readout(dev, gain=cfg.nonlinearity, read=cfg.read_noise,
                              spread=cfg.nonlinearity)
    shp = (*xq.shape[:-1], c) if not lead else (*lead, m, c)
    lib = _lowcount_lib(cfg, xq)
    if lib is not None:  # nnsim/kernels/lowcount.c: selection, conversions, accumulation
        kc = _lowcount_kernel_args(arr, gf, lf, vf, instf, tb, adc, coef, dev)
        corr, dvar = _low_counts_c(lib, kc, q.contiguous(), w, n_l, m, t, rows, ns, c,
                                   (ca, cb, g0, an2, adc.code_offset))
        return corr.reshape(shp), dvar.reshape(shp)
    sh = torch.arange(bits, device=dev, dtype=torch.int32).view(bits, 1, 1, 1, 1)
    b = ((q[None] >> sh) & 1).to(torch.uint8)  # (P, L, M, T, rows)
    n = b.sum(-1, dtype=torch.int32)  # (P, L, M, T)

    def conv(s: torch.Tensor, cnt: torch.Tensor, ct: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per conversion row (sums ``s`` (Q, K), active rows ``cnt`` (Q, 1), column-table
        row ``ct`` (Q,)): decoded minus linear, and code variance minus the predicted one,
        recombined over slices and signs -> (Q, C) each."""
        u = ca * s + cb * cnt
        sensed, var_u = u, torch.zeros_like(u)
        if tb is not None:
            vals = dict(zip(tb["names"], hw.fused_terms(u.clone(), tb), strict=True))
            sensed = vals.get("mean", u)
            for nm in ("spread", "read"):
                if nm in vals:
                    var_u = var_u + vals[nm] ** 2
        lq = lf[ct]
        sd = (var_u / lq ** 2 + an2).clamp_(min=1e-12).sqrt_()
        e1, vc = _code_moments(sensed / lq, sd, None if instf is None else instf[ct], adc)
        d = lq * (e1 + adc.code_offset) - gf[ct] * (ca * s + (cb - g0) * cnt)
        dv = lq ** 2 * vc - vf[ct]
        d = (d.reshape(-1, ns, 2, c) * coef).sum((1, 2))
        dv = (dv.reshape(-1, ns, 2, c) * coef ** 2).sum((1, 2))
        return d, dv

    # planes without an active row: one value per (lead, tile, column)
    zc = torch.arange(n_l * t, device=dev)
    d0, dv0 = conv(torch.zeros(n_l * t, k, device=dev, dtype=dt),
                   torch.zeros(n_l * t, 1, device=dev, dtype=dt), zc)
    empty = (n == 0).to(dt)
    a0 = torch.einsum("plmt,p->lmt", empty, w)
    a02 = torch.einsum("plmt,p->lmt", empty, w * w)
    corr = torch.bmm(a0, d0.reshape(n_l, t, c)).reshape(n_l * m, c)
    dvar = torch.bmm(a02, dv0.reshape(n_l, t, c)).reshape(n_l * m, c)
    nr = MOMENT_EXACT_ROWS
    sel = ((n >= 1) & (n <= nr)).reshape(-1).nonzero().squeeze(1)
    if sel.numel():
        bsel = b.reshape(-1, rows).index_select(0, sel)  # (Q, rows)
        cnt = n.reshape(-1).index_select(0, sel)
        pj, rem = sel // (n_l * m * t), sel % (n_l * m * t)
        li, mi, ti = rem // (m * t), (rem // t) % m, rem % t
        # the active rows' indices in nr slots (unused slots: the zero row `rows`)
        slot = torch.where(bsel > 0, bsel.to(torch.int64).cumsum(-1) - 1,
                           torch.full_like(bsel, nr, dtype=torch.int64))
        idx = torch.full((sel.numel(), nr + 1), rows, device=dev, dtype=torch.int64)
        idx.scatter_(1, slot, torch.arange(rows, device=dev).expand(sel.numel(), rows))
        ct = li * t + ti
        # conversions of the same tile and active rows (other planes, other input rows) have
        # the same column sums: each distinct one is converted once
        key = ct.clone()
        for j in range(nr):
            key = key * (rows + 1) + idx[:, j]
        uk, inv = torch.unique(key, return_inverse=True)
        rep = torch.empty_like(uk).scatter_(0, inv, torch.arange(inv.numel(), device=dev))
        ct_u = ct.index_select(0, rep)
        cells = torch.nn.functional.pad(arr.cells_mm.reshape(n_l, t, rows, k), (0, 0, 0, 1))
        flat = (ct_u[:, None] * (rows + 1) + idx.index_select(0, rep)[:, :nr]).reshape(-1)
        s = cells.reshape(-1, k).index_select(0, flat).reshape(-1, nr, k).sum(1)
        d, dv = conv(s, cnt.index_select(0, rep)[:, None].to(dt), ct_u)
        row = li * m + mi
        wj = w[pj][:, None]
        corr.index_add_(0, row, d.index_select(0, inv).mul_(wj))
        dvar.index_add_(0, row, dv.index_select(0, inv).mul_(wj * wj))
    return corr.reshape(shp), dvar.reshape(shp)


def _moment_mean_var(x: torch.Tensor, arr: Array, cfg: AnalogConfig, hw: HardwareModel,
                     adc: AdcModel | None, signed: bool
                     ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """The moment mode's noiseless mean ``xq @ w_eff`` (+ the low-count correction) and its
    predicted variance, both before the input and output scales, with the input codes and
    their scale: ``(y, var, xq, sx)``."""
    planes_w2 = 1.0
    if cfg.input_bits is None:
        xq, sx = x, torch.ones_like(x[..., :1])
    else:
        lib = None if torch.is_grad_enabled() and x.requires_grad else _moment_lib(cfg, x)
        if lib is not None:  # no autograd through the kernel (the scale's gradient)
            xq, sx = _quantize_kernel(lib, x, cfg.input_bits, signed, cfg.prob_scale)
        else:
            xq, sx = quantize_inputs(x, cfg.input_bits, signed, cfg.prob_scale)
        planes_w2 = float(sum(4.0 ** j for j in range(cfg.input_bits)))
    w_eff, var = _moment_terms(arr, cfg, hw, adc, planes_w2)
    y = torch.matmul(xq, w_eff)
    if not isinstance(arr, MomentWrite) and moment_exact(cfg, adc):
        corr, dvar = moment_low_counts(xq, signed, arr, cfg, hw, adc)
        y = y + corr
        if var is not None:
            var = (var + dvar).clamp_(min=0)
    return y, var, xq, sx


def matrix_absmax(lib: ctypes.CDLL, w: torch.Tensor) -> torch.Tensor:
    """``w.abs().amax((-2, -1), keepdim=True)`` of a contiguous CPU float32 ``w`` in one
    pass of the moment kernel (``imc_rows_absmax``; a maximum is exact: the same value)."""
    *lead, r, c = w.shape
    m = torch.empty(*lead, 1, 1, dtype=w.dtype)
    lib.imc_rows_absmax(kernels.ptr(w, torch.float32), math.prod(lead), r * c, 0,
                        kernels.ptr(m, torch.float32))
    return m


def _quantize_kernel(lib: ctypes.CDLL, x: torch.Tensor, bits: int, signed: bool,
                     prob_scale: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``quantize_inputs`` through the moment kernel (``imc_rows_absmax``, ``imc_rows_codes``:
    one pass for the row maxima, one for the codes, instead of torch's five or six): the
    same float32 operations, so the same codes and scales bit for bit (tested)."""
    xc = x.contiguous()
    k = xc.shape[-1]
    rows = xc.numel() // max(1, k)
    if signed or prob_scale != "fixed":
        m = torch.empty(*xc.shape[:-1], 1, dtype=xc.dtype)
        lib.imc_rows_absmax(kernels.ptr(xc, torch.float32), rows, k, int(not signed),
                            kernels.ptr(m, torch.float32))
    if signed:  # input_scale's operations on the row maxima
        qmax = 2 ** (bits - 1) - 1
        sx = m.clamp_(min=torch.finfo(xc.dtype).tiny).div_(qmax)
        lo = -qmax
    else:
        qmax = 2 ** bits - 1
        if prob_scale == "fixed":
            sx = torch.full_like(xc[..., :1], 1.0 / qmax)
        else:
            sx = torch.exp2(torch.ceil(torch.log2(m.clamp_(min=2.0 ** -126)))).clamp_(
                max=1.0) / qmax
        lo = 0
    sx = sx.contiguous()
    xq = torch.empty_like(xc)
    lib.imc_rows_codes(kernels.ptr(xc, torch.float32), rows, k, kernels.ptr(sx, torch.float32),
                       float(lo), float(qmax), int(not signed), kernels.ptr(xq, torch.float32))
    return xq, sx


def mvm_moment(x: torch.Tensor, arr: Array, cfg: AnalogConfig, hw: HardwareModel,
               adc: AdcModel | None, generator: torch.Generator | None, *, signed: bool = True,
               counter: list[int] | None = None, var_scale: float = 1.0,
               noise: bool = True, mean_gain: float = 1.0) -> torch.Tensor:
    """``mvm`` with ``fidelity="moment"``: one matmul, the readout errors as one Gaussian.

    ``var_scale`` multiplies the predicted variance and ``mean_gain`` the mean
    (``convert.calibrate_moment`` fits both per layer against the bit-level path);
    ``noise=False`` returns the noiseless mean (before ``mean_gain``). At coarse ADCs
    (``moment_exact``) the conversions of planes with few active rows are computed in
    expectation through the thresholds (``moment_low_counts``), in mean and variance.
    """
    y, var, xq, sx = _moment_mean_var(x, arr, cfg, hw, adc, signed)
    if counter is not None:
        if isinstance(arr, MomentWrite):
            t, k = arr.tiles, arr.conv_cols
        else:
            t, _, k = arr.cells_mm.shape[-3:]
        counter[0] += int(xq[..., 0].numel() * t * k * (cfg.input_bits or 1))
    inplace = not (torch.is_grad_enabled() and y.requires_grad)  # one output-sized buffer
    lib = _moment_lib(cfg, y) if inplace and y.is_contiguous() else None
    if lib is not None:  # one pass: gain, y + z sd (the kernel's generator), scales
        return _epilogue_kernel(lib, y, var if noise else None, sx, arr.scale, var_scale,
                                mean_gain if noise else 1.0, _chip_gens(generator))
    if mean_gain != 1.0 and noise:
        y = y.mul_(mean_gain) if inplace else y * mean_gain
    if var is not None and noise:
        sd = (var * var_scale).sqrt()
        z = _chip_randn(y.shape, _chip_gens(generator), y.device, y.dtype).mul_(sd)
        y = y.add_(z) if inplace else y + z
        del z
    return y.mul_(sx).mul_(arr.scale) if inplace else y * sx * arr.scale


def _epilogue_kernel(lib: ctypes.CDLL, y: torch.Tensor, var: torch.Tensor | None,
                     sx: torch.Tensor, scale: torch.Tensor, var_scale: float, mean_gain: float,
                     gens: list[torch.Generator | None]) -> torch.Tensor:
    """``mvm_moment``'s ``((y mean_gain + z sd) sx) scale`` in place, in one pass of the moment
    kernel (``imc_moment_epilogue``), the torch path's float32 operations in its order; z
    from the kernel's counter-based generator (one key per call and chip; element index =
    flat index within the chip's block), as the separate noise pass drew it before."""
    *lead, m, c = y.shape
    n_l = y.numel() // max(1, m * c)
    so = scale.expand(*lead, 1, c).reshape(n_l, c).contiguous()
    sxr = sx.expand(*lead, m, 1).reshape(n_l * m).contiguous()
    keys, sdl, sd_rows = None, None, 1
    if var is not None:
        sd = (var * var_scale).sqrt()
        sd_rows = m if sd.shape[-2] != 1 else 1  # a variance per row: the low-count correction
        sdl = sd.expand(*lead, sd_rows, c).reshape(n_l * sd_rows, c).contiguous()
        keys = _chip_keys(gens)
    n_key = len(gens) if keys is not None else 1
    lib.imc_moment_epilogue(None if keys is None else kernels.ptr(keys, torch.int64), n_key,
                            n_l // n_key, m, c, int(mean_gain != 1.0), mean_gain,
                            None if sdl is None else kernels.ptr(sdl, torch.float32), sd_rows,
                            kernels.ptr(sxr, torch.float32), kernels.ptr(so, torch.float32),
                            kernels.ptr(y, torch.float32))
    return y


def moment_var_scale(x: torch.Tensor, arr: Array, cfg: AnalogConfig, hw: HardwareModel,
                     adc: AdcModel | None, generator: torch.Generator | None, *,
                     signed: bool = True) -> float:
    """Ratio of the bit-level readout error variance to the moment mode's prediction, on
    inputs ``x``: it corrects the LSB^2/12 and mean-INL assumptions, which overestimate the
    error of small column sums. ``convert.calibrate_moment`` sums ``moment_var_terms`` over
    a calibration split instead (per layer)."""
    meas, pred = moment_var_terms(x, arr, cfg, hw, adc, generator, signed=signed)
    return meas / pred if pred > 0 else 1.0


def moment_var_terms(x: torch.Tensor, arr: Array, cfg: AnalogConfig, hw: HardwareModel,
                     adc: AdcModel | None, generator: torch.Generator | None, *,
                     signed: bool = True) -> tuple[float, float]:
    """Summed squared bit-level readout error and the moment mode's summed predicted
    variance over the outputs of ``x @ W`` (their ratio is the moment mode's correction)."""
    t = moment_fit_terms(x, arr, cfg, hw, adc, generator, signed=signed)
    return t["meas"], t["pred"]


def moment_fit_terms(x: torch.Tensor, arr: Array, cfg: AnalogConfig, hw: HardwareModel,
                     adc: AdcModel | None, generator: torch.Generator | None, *,
                     signed: bool = True) -> dict[str, float]:
    """Sums over the outputs of ``x @ W`` that calibrate the moment mode against the bit-level
    readout ``y_bit`` of the same written array: ``meas`` sum (y_bit - y0)^2 around the
    moment mode's noiseless mean ``y0``, ``pred`` its summed predicted variance, and ``xy``
    sum y_bit y0, ``yy`` sum y0^2, ``bb`` sum y_bit^2 (the least-squares gain of y_bit on
    y0 is ``xy / yy``: the ADC's shrinkage of small column sums, which the linear moment
    mean does not have)."""
    bit = replace(cfg, fidelity="bit")
    y_bit = mvm(x, arr, bit, hw, adc, generator, signed=signed).double()
    y, var, _, sx = _moment_mean_var(x, arr, cfg, hw, adc, signed)
    if var is None:
        return dict(meas=0.0, pred=0.0, xy=0.0, yy=0.0, bb=0.0)
    y0 = (y * sx * arr.scale).double()  # mvm_moment's noiseless mean
    pred = float((var * (sx * arr.scale) ** 2).expand_as(y0).double().sum())
    return dict(meas=float(((y_bit - y0) ** 2).sum()), pred=pred,
                xy=float((y_bit * y0).sum()), yy=float((y0 * y0).sum()),
                bb=float((y_bit * y_bit).sum()))


_PATHS: dict[str, Any] = {"c": 0, "torch": 0, "c_drawn": 0, "current_a": 0.0,
                          "active_rows": 0.0}
_KERNEL_WARNED: set[str] = set()


def readout_paths(reset: bool = False) -> dict[str, int]:
    """Conversions read out by each path of ``mvm`` (``bit``) since the last reset:
    ``{"c": n, "torch": n, "c_drawn": n, "current_a": A, "active_rows": n}`` (the fused C
    kernel, the torch path, the Gaussians the kernel drew: threshold-near sampling draws
    fewer than ``c``; and, summed over those conversions, the simulated ideal column current
    at T, ``(a S + b n) x unit`` (``HardwareModel.cell_map``, before the transfer), and the
    active rows: divided by the conversions, the means ``energy_per_inference`` scales the
    crossbar read parts by)."""
    out = dict(_PATHS)
    if reset:
        _PATHS.update(c=0, torch=0, c_drawn=0, current_a=0.0, active_rows=0.0)
    return out


def _count_reads(s_sum: float, n_active: torch.Tensor, k: int, hw: HardwareModel) -> None:
    """Add one ``mvm``'s column currents and active rows to ``readout_paths``."""
    ca, cb = hw.cell_map()
    n_sum = float(n_active.sum(dtype=torch.float64)) * k
    _PATHS["current_a"] += (ca * s_sum + cb * n_sum) * hw.unit_a
    _PATHS["active_rows"] += n_sum


class _KernelArgs(ctypes.Structure):
    """``imc_readout_args`` of ``nnsim/kernels/readout.c`` (every field 8 bytes)."""

    _fields_ = [(n, t) for n, t in (
        ("s", ctypes.c_void_p), ("n_act", ctypes.c_void_p),
        *((k, ctypes.c_int64) for k in ("L", "T", "P", "M", "K", "C", "NS2")),
        ("z", ctypes.c_void_p), ("z_ls", ctypes.c_int64),
        ("inv", ctypes.c_void_p), ("inv_ls", ctypes.c_int64),
        ("lsb", ctypes.c_void_p), ("lsb_ls", ctypes.c_int64),
        ("inst", ctypes.c_void_p), ("inst_ls", ctypes.c_int64),
        ("ca", ctypes.c_double), ("cb", ctypes.c_double), ("ca_is_one", ctypes.c_int64),
        ("tab", ctypes.c_void_p), ("tab_n", ctypes.c_int64), ("tab_w", ctypes.c_int64),
        ("per_u", ctypes.c_double), ("nonlin", ctypes.c_int64), ("read_col", ctypes.c_int64),
        ("adc_bins", ctypes.c_void_p), ("adc_nbins", ctypes.c_int64),
        ("adc_J", ctypes.c_int64), ("adc_thr", ctypes.c_void_p), ("max_code", ctypes.c_int64),
        ("xlo", ctypes.c_double), ("xhi", ctypes.c_double), ("an2", ctypes.c_double),
        ("code_offset", ctypes.c_double), ("cut2", ctypes.c_double),
        ("mode", ctypes.c_int64), ("has_adc", ctypes.c_int64), ("coef", ctypes.c_void_p),
        ("key", ctypes.c_uint64), ("out", ctypes.c_void_p), ("nthreads", ctypes.c_int64),
        ("draws", ctypes.c_int64), ("sum_s", ctypes.c_double), ("simd", ctypes.c_int64),
        ("qtab", ctypes.c_void_p), ("adc_thu", ctypes.c_void_p), ("slow", ctypes.c_int64))]


KERNEL_SIMD = True
"""Let the kernel take its AVX-512 row for the usual dense configuration where it is built
(``imc_simd``): the same bits as its general row; tests switch it off to compare them."""

KERNEL_SLOW_DRAWS = False
"""Make the kernel evaluate Phi^-1 for every drawn conversion instead of deciding the code
from the quantile table's cell where it can: the same bits; tests compare the two."""

_QTAB: torch.Tensor | None = None


def kernel_quantiles() -> torch.Tensor:
    """The kernel's quantile table (4096, 2) float32: per cell ``[c/4096, (c+1)/4096)`` of a
    uniform, the N(0, 1) quantiles of its ends (scipy's ``ndtri`` in float64), rounded
    outward to float32 and one float32 step further (``-inf`` / ``+inf`` at the ends), so each
    cell's pair brackets the exact quantile of every uniform inside it."""
    global _QTAB
    if _QTAB is None:
        from scipy.special import ndtri

        c = np.arange(4096, dtype=np.float64)
        lo, hi = ndtri(c / 4096.0), ndtri((c + 1.0) / 4096.0)
        ninf, pinf = np.float32(-np.inf), np.float32(np.inf)
        lo32 = lo.astype(np.float32)
        lo32 = np.nextafter(np.where(lo32 > lo, np.nextafter(lo32, ninf), lo32), ninf)
        hi32 = hi.astype(np.float32)
        hi32 = np.nextafter(np.where(hi32 < hi, np.nextafter(hi32, pinf), hi32), pinf)
        _QTAB = torch.from_numpy(np.ascontiguousarray(np.stack([lo32, hi32], 1), np.float32))
    return _QTAB


def kernel_adc_tables(adc: AdcModel) -> dict[str, Any]:
    """The C kernel's ADC tables of ``adc`` (cached on it): per instance and one-LSB bin
    ``[b-2, b-1)`` the number of thresholds below the bin and the ``J`` thresholds inside it
    (float32 rounded up, so ``x >= th32`` exactly when ``x >= th`` for float32 ``x``; +inf
    padded), i.e. the exact count ``quantize`` takes; and per instance the thresholds between
    -inf and +inf (the distance test of threshold-near sampling)."""
    key = "kernel_bins"
    if key not in adc._cache:
        th = np.asarray(adc.thresholds_lsb, np.float64)
        nb = adc.max_code + 4
        lo = np.arange(nb, dtype=np.float64) - 2.0
        low = np.stack([np.searchsorted(t, lo, side="left") for t in th])
        up = np.stack([np.searchsorted(t, lo + 1.0, side="left") for t in th])
        j = int((up - low).max())
        j = 2 if j <= 2 else (4 if j <= 4 else j)  # the kernel's unrolled layouts
        th32 = th.astype(np.float32)
        th32 = np.where(th32 < th, np.nextafter(th32, np.float32(np.inf)), th32)
        bins = np.full((th.shape[0], nb, 1 + j), np.inf, np.float32)
        bins[..., 0] = low
        for q in range(j):
            idx = low + q
            ok = idx < up
            vals = np.take_along_axis(th32, np.minimum(idx, th.shape[1] - 1), axis=1)
            bins[..., 1 + q] = np.where(ok, vals, np.inf)
        inf = np.full((th.shape[0], 1), np.inf, np.float32)
        thr = np.concatenate([-inf, th.astype(np.float32), inf], axis=1)
        thu = np.concatenate([-inf, th32, inf], axis=1)  # rounded up, as the bins
        r = adc._steps()
        adc._cache[key] = dict(bins=torch.from_numpy(np.ascontiguousarray(bins)),
                               thr=torch.from_numpy(np.ascontiguousarray(thr)),
                               thu=torch.from_numpy(np.ascontiguousarray(thu)), nbins=nb, J=j,
                               xlo=-2.0, xhi=adc.max_code + 2.0 - 0.5 / r)
    return adc._cache[key]


def _kernel_table(tb: dict[str, Any]) -> torch.Tensor:
    """``fused_readout``'s intercepts and slopes interleaved per grid cell (n, 2 terms)."""
    if "kernel_tab" not in tb:
        cols = [c for a, b in zip(tb["a"], tb["b"], strict=True) for c in (a, b)]
        tb["kernel_tab"] = torch.stack([c.float().cpu() for c in cols], 1).contiguous()
    return tb["kernel_tab"]


def _kernel_cols(arr: Array, name: str, t: torch.Tensor, lead: tuple[int, ...],
                 dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """A per-column tensor ``(..., T, 1, K)`` of ``arr`` as a contiguous ``(L or 1, T, K)``
    buffer for the kernel and its lead stride (0: one for every lead index); cached."""
    ck = ("kernel_cols", name, lead)
    hit = arr.cache.get(ck) if arr.cache is not None else None
    if hit is None or hit[2] is not t:
        tk = t.shape[-3] * t.shape[-1]
        if t.numel() == tk:
            buf, ls = t.reshape(tk).to(dtype).contiguous(), 0
        else:
            buf = t.expand(*lead, *t.shape[-3:]).to(dtype).contiguous()
            ls = tk
        hit = (buf, ls, t)
        if arr.cache is not None:
            arr.cache[ck] = hit
    return hit[0], hit[1]


def _kernel_warn(why: str) -> None:
    if why not in _KERNEL_WARNED:
        _KERNEL_WARNED.add(why)
        warnings.warn(f"bit readout: {why}; using the torch path", RuntimeWarning, stacklevel=3)


def _readout_kernel(s: torch.Tensor, n_active: torch.Tensor, arr: Array, cfg: AnalogConfig,
                    hw: HardwareModel, adc: AdcModel | None, generator: torch.Generator | None,
                    coef: torch.Tensor, p: int, m: int) -> torch.Tensor | None:
    """``readout`` and the shift-and-add of ``mvm`` in one pass of the C kernel
    (``nnsim/kernels/readout.c``): reads the partial sums ``s`` (..., T, P*M, S*2*C) once and
    returns the recombined (..., M, C) (before the input and output scales); None where the
    kernel does not apply (``cfg.readout_kernel="torch"``, not CPU float32, no compiler)."""
    if cfg.readout_kernel == "torch" or not _kernel_tensors(cfg, s, warn=True):
        return None
    lib = kernels.load("readout", required=cfg.readout_kernel == "c")
    if lib is None:
        return None
    *lead, t, pm, k = s.shape
    lead = tuple(lead)
    c = arr.cols
    a = _KernelArgs()
    s = s.contiguous()
    n_act = n_active.reshape(*lead, t, pm).to(torch.float32).contiguous()
    keep = [s, n_act]
    a.s, a.n_act = kernels.ptr(s), kernels.ptr(n_act)
    a.L, a.T, a.P, a.M, a.K, a.C = math.prod(lead), t, p, m, k, c
    a.NS2 = k // c
    if cfg.nonlinearity:
        zb, a.z_ls = _kernel_cols(arr, "z", spread_z(arr, generator), lead, torch.float32)
        keep.append(zb)
        a.z = kernels.ptr(zb)
    ca, cb = hw.cell_map()
    a.ca, a.cb, a.ca_is_one = ca, cb, int(ca == 1.0)
    a.read_col = -1
    if cfg.nonlinearity or cfg.read_noise:
        tb = hw.fused_readout(s.device, gain=cfg.nonlinearity, read=cfg.read_noise,
                              spread=cfg.nonlinearity)
        tab = _kernel_table(tb)
        keep.append(tab)
        a.tab, a.tab_n, a.tab_w, a.per_u = kernels.ptr(tab), tb["n"], tab.shape[1], tb["per_u"]
        a.nonlin = int(cfg.nonlinearity)
        if cfg.read_noise:
            a.read_col = 2 * tb["names"].index("read")
    an2 = 0.0
    if cfg.adc and adc is not None:
        inv, lsb_u = _lsb(arr, hw, adc)
        ib, a.inv_ls = _kernel_cols(arr, "inv", inv, lead, torch.float32)
        lb, a.lsb_ls = _kernel_cols(arr, "lsb", lsb_u, lead, torch.float32)
        keep += [ib, lb]
        a.inv, a.lsb = kernels.ptr(ib), kernels.ptr(lb)
        inst = arr.inst if arr.inst is not None else torch.zeros(
            (t, 1, k), dtype=torch.int32)
        nb, a.inst_ls = _kernel_cols(arr, "inst", inst, lead, torch.int32)
        keep.append(nb)
        a.inst = kernels.ptr(nb)
        kt = kernel_adc_tables(adc)
        a.adc_bins, a.adc_thr = kernels.ptr(kt["bins"]), kernels.ptr(kt["thr"])
        a.adc_thu, a.qtab = kernels.ptr(kt["thu"]), kernels.ptr(kernel_quantiles())
        a.adc_nbins, a.adc_J, a.max_code = kt["nbins"], kt["J"], adc.max_code
        a.xlo, a.xhi, a.code_offset = kt["xlo"], kt["xhi"], adc.code_offset
        an2 = adc.noise_lsb ** 2 if cfg.adc_noise and adc.noise_lsb > 0 else 0.0
        a.an2, a.cut2, a.has_adc = an2, adc.SIGMAS ** 2, 1
        # as AdcModel.quantize_near: where the ADC noise alone puts most conversions near a
        # threshold, threshold-near sampling draws every conversion (same distribution)
        dense = 2.0 * adc.SIGMAS * an2 ** 0.5 >= adc.DENSE_AT
        a.mode = 0 if (not cfg.read_noise and an2 == 0.0) else (
            1 if cfg.sampling == "full" or dense else 2)
    coef = coef.to(torch.float32).contiguous()
    out = torch.empty((*lead, m, c), dtype=torch.float32)
    keep += [coef, out]
    a.coef, a.out = kernels.ptr(coef), kernels.ptr(out)
    if a.read_col >= 0 or a.mode:  # one 64-bit key per call from the chip's generator
        a.key = int(torch.randint(-2 ** 63, 2 ** 63 - 1, (), dtype=torch.int64,
                                  generator=generator)) & (2 ** 64 - 1)
    a.nthreads = kernels.threads()
    a.simd = int(KERNEL_SIMD)
    a.slow = int(KERNEL_SLOW_DRAWS)
    lib.imc_readout_mvm(ctypes.byref(a))
    _PATHS["c_drawn"] += int(a.draws)
    _count_reads(float(a.sum_s), n_act, k, hw)
    del keep
    return out


def _sum_of_sums(planes: torch.Tensor, arr: Array) -> float:
    """The sum of all partial sums ``planes @ cells_mm`` without a pass over them:
    ``sum_{t,r} (active planes of row r) x (row r's cells summed over the columns)``, in
    float64 (the torch path's ``readout_paths`` current; the C kernel sums its own)."""
    hit = arr.cache.get("row_sums") if arr.cache is not None else None
    if hit is None or hit[0] is not arr.cells_mm:
        hit = (arr.cells_mm, arr.cells_mm.sum(-1, dtype=torch.float64))
        if arr.cache is not None:
            arr.cache["row_sums"] = hit
    return float((planes.sum(-2, dtype=torch.float64) * hit[1]).sum())


def mvm(x: torch.Tensor, arr: Array, cfg: AnalogConfig, hw: HardwareModel,
        adc: AdcModel | None, generator: torch.Generator | None, *, signed: bool = True,
        counter: list[int] | None = None) -> torch.Tensor:
    """``x @ W`` on the crossbars of ``arr``: bit-serial planes x bit slices, tensor ops only.

    Args:
        x: (..., M, R) inputs; leading dims broadcast with the array's.
        arr: The written matrix.
        cfg: Settings.
        hw: Hardware model.
        adc: Column ADC (None: exact readout).
        generator: Per-inference noise.
        signed: Inputs signed (two's complement) or unsigned in [0, 1].
        counter: If given, ``counter[0]`` is increased by the number of ADC conversions.

    Returns:
        (..., M, C) outputs.
    """
    if cfg.fidelity == "moment":
        return mvm_moment(x, arr, cfg, hw, adc, generator, signed=signed, counter=counter)
    planes, plane_w, sx = input_planes(x, cfg.input_bits, signed, cfg.prob_scale)
    p = planes.shape[0]
    *lead, m, r = x.shape
    t, rows, _k = arr.cells_mm.shape[-3:]
    ns = arr.slice_w.numel()
    c = arr.cols
    if t * rows != r:
        planes = torch.nn.functional.pad(planes, (0, t * rows - r))
    nl = len(lead)
    # (P, ..., M, T, rows) -> (..., T, P*M, rows)
    planes = planes.reshape(p, *lead, m, t, rows)
    planes = planes.permute(*range(1, nl + 1), nl + 2, 0, nl + 1, nl + 3)
    planes = planes.reshape(*lead, t, p * m, rows)
    s = torch.matmul(planes, arr.cells_mm)  # (..., T, P*M, S*2*C)
    if counter is not None:
        counter[0] += s.numel()
    sign = torch.tensor([1.0, -1.0], device=x.device, dtype=x.dtype)
    coef = (plane_w[:, None, None] * arr.slice_w[None, :, None] * sign[None, None, :])
    if cfg.nonideal_readout:
        n_active = planes.sum(-1, keepdim=True)
        out = _readout_kernel(s, n_active, arr, cfg, hw, adc, generator,
                              coef.reshape(p, ns * 2), p, m)
        if out is not None:  # read out and shift-added in one pass
            _PATHS["c"] += s.numel()
            return out * sx * arr.scale
        _PATHS["torch"] += s.numel()
        _count_reads(_sum_of_sums(planes, arr), n_active, s.shape[-1], hw)
        s = readout(s, n_active, arr, cfg, hw, adc, generator, inplace=True, level_offset=False)
    s = s.reshape(*lead, t, p, m, ns * 2, c)
    out = torch.einsum("...tpmkc,pk->...mc", s, coef.reshape(p, ns * 2))
    return out * sx * arr.scale
