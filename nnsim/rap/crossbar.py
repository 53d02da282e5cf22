"""RAP's columns through the crossbar's non-idealities: programmed cells, transfer, read noise.

The same physics as the analog simulator (``nnsim.analog``), through the same functions:

* **programming** (once per chip): the static weights' cell levels are written with
  ``nnsim.analog.write_levels`` (default ``"levels"``: the characterized per-level mean
  programming error and sigma of ``crossbar/write_noise_samples``, ``verify`` writes,
  gamma 1); the cell's read conductance at the corner's temperature enters through
  ``HardwareModel.cell_map`` (``a l + b`` level units per active cell, the G_min current
  included), as in ``nnsim.analog.readout``;
* **column transfer** (IR drop, access device, TIA): the mean ratio of
  ``crossbar/read_transfer`` at the column current, and its spread drawn **once per chip and
  physical column** (``N(0, 1)`` times the table's ``std_ratio`` times the sensed current,
  as ``nnsim.analog.spread_z``);
* **read noise** per conversion: ``crossbar/read_noise`` sigma at the sensed current, added to
  the ADC's input-referred noise as one Gaussian (as ``nnsim.analog.readout``); both tables
  through ``HardwareModel.readout_terms`` (their piecewise-linear interpolants);
* **the characterized ADC**: thresholds of the column's Monte-Carlo instance,
  ``AdcModel.quantize`` (exact threshold comparison).

Integer column sums. The programmed current of every cell is held as a fixed-point integer,
``round((a l' + b) 2**frac_bits)`` level units (``frac_bits = 10``: 1/1024 of a level, 3.2 nS
on the 10 uS range, far below the write-noise sigma of about 0.1 level), so a conversion's
column current is an exact integer sum ``u_q`` of its active cells, and everything that
depends only on the current is tabulated once per (chip, ADC) over ``u_q``:
``x0(u) = u g(u) / 2**shift + code_offset`` (the ideal sum at the centre of its code bin, as
``nnsim.rap.adc``), the total noise ``sigma(u)`` in LSB and the spread's LSB per unit ``z``.

Fused sampling. A conversion can be mis-converted only when a threshold of its instance lies
within reach of the noise and the spread: the table ``certain[class, instance, u_q]`` holds
the code where every threshold is farther than ``CUTOFF_SIGMA sigma(u) + |spread(u)| z_c``
from ``x0(u)``, else -1; columns are put in classes by their spread ``|z|`` (``Z_CLASSES``
edges, the last one the chip's largest ``|z|``) and ``z_c`` is the upper edge of the column's
class. Where the table is certain the code is deterministic with probability at least
``1 - 2 Q(CUTOFF_SIGMA) = 1 - 5.6e-10`` (``MISS_PROBABILITY``); elsewhere one Gaussian is
drawn with the column's own ``z`` and compared with the thresholds (``AdcModel.quantize``).

The G_min current of the active cells reaches both columns of a differential pair and cancels
in their digital difference, as ``nnsim.analog.readout``'s subtraction of ``g0 n`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import ndtr
from torch import Tensor

from ..analog import write_levels

_I64 = torch.int64
CUTOFF_SIGMA = 6.2
"""Noise sigmas beyond which a threshold is out of reach (see ``MISS_PROBABILITY``)."""
MISS_PROBABILITY = float(2.0 * ndtr(-CUTOFF_SIGMA))
"""Upper bound on the probability that a conversion the fused sampler treats as certain
would have been converted otherwise (two thresholds, one Gaussian tail each): 5.6e-10."""
Z_CLASSES = (1.0, 2.0, 3.0)
"""Upper ``|z|`` edges of the spread classes of the certainty table (then the chip's max)."""


def z_class(z: Tensor) -> Tensor:
    """Spread class of each column (int64): the first ``Z_CLASSES`` edge at or above ``|z|``,
    ``len(Z_CLASSES)`` above the last."""
    edges = torch.tensor(Z_CLASSES, dtype=z.dtype, device=z.device)
    return torch.bucketize(z.abs(), edges)


@dataclass(frozen=True)
class CellSettings:
    """How RAP's static weights are programmed and read (the analog simulator's defaults).

    Attributes:
        write_noise: ``nnsim.analog.write_levels`` source (``levels``, ``samples``, ``fit``,
            ``none``); ``levels`` falls back to ``fit`` when the files hold no samples.
        write_mode: Write mode of the static weights (``verify``).
        gamma: Write-noise factor on the stochastic part (the bias is applied once).
        read_noise: Read noise of the column current per conversion.
        transfer: Column transfer (mean ratio, and its spread once per chip and column).
        adc_noise: The ADC's input-referred noise per conversion.
        frac_bits: Fixed-point bits of the programmed cell currents.
    """

    write_noise: str = "levels"
    write_mode: str = "verify"
    gamma: float = 1.0
    read_noise: bool = True
    transfer: bool = True
    adc_noise: bool = True
    frac_bits: int = 10

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings."""
        return dict(self.__dict__)


def program_cells(cells: Tensor, hw: Any, settings: CellSettings,
                  generator: torch.Generator | None) -> Tensor:
    """Write target levels ``cells`` (rows, cols; integers ``0..levels-1``) once and return
    each cell's read current at the corner's temperature in fixed point (int64, level units
    times ``2**frac_bits``, the G_min current included: ``a l' + b`` of ``hw.cell_map``)."""
    source = settings.write_noise
    if source in ("levels", "samples") and settings.write_mode not in hw.write_samples_s:
        source = "fit"
    lv = write_levels(cells.to(torch.float64), hw, source, settings.write_mode,
                      settings.gamma, None, generator, True, bias=True)
    a, b = hw.cell_map()
    q = torch.round((a * lv + b) * float(1 << settings.frac_bits))
    return q.clamp_(min=0).to(_I64)


class ColumnReadout:
    """Column current (fixed-point integer sum) -> code, for one chip, ADC and LSB.

    Args:
        hw: ``HardwareModel`` (transfer, read noise).
        adc: ``AdcModel`` (thresholds per instance, noise, ``code_offset``).
        shift: The ADC's LSB is ``2**shift`` unit cell currents.
        u_max_q: Largest fixed-point column sum presented.
        z_max: Largest ``|z|`` of the chip's column spreads.
        settings: Which effects are on.

    Index of an entry: ``(class * n_instances + instance) * size + u_q`` (``offsets``).
    """

    def __init__(self, hw: Any, adc: Any, shift: int, u_max_q: int, z_max: float,
                 settings: CellSettings) -> None:
        self.adc, self.settings, self.shift = adc, settings, int(shift)
        self.bits = int(adc.bits)
        self.n_instances = int(adc.instances)
        self.frac_bits = settings.frac_bits
        self.size = int(u_max_q) + 1
        u = torch.arange(self.size, dtype=torch.float64) / float(1 << self.frac_bits)
        gain, s_read, s_spread = hw.readout_terms(
            u.float(), gain=settings.transfer, read=settings.read_noise,
            spread=settings.transfer)
        m = u if gain is None else u * gain.double()
        lsb = float(1 << self.shift)
        self.x0 = m / lsb + float(adc.code_offset)                        # (U,)
        var = torch.zeros_like(u) if s_read is None else (s_read.double() / lsb) ** 2
        if settings.adc_noise:
            var = var + float(adc.noise_lsb) ** 2
        self.sigma = var.sqrt()
        self.spread = (torch.zeros_like(u) if s_spread is None
                       else s_spread.double() / lsb)                     # LSB per unit z
        self.z_max = float(z_max)
        th = torch.as_tensor(np.asarray(adc.thresholds_lsb, np.float64))    # (I, C-1)
        self.thresholds = th
        code = torch.stack([torch.searchsorted(t.contiguous(), self.x0, right=True)
                            for t in th])                                 # (I, U)
        inf = torch.full((th.shape[0], 1), math.inf, dtype=torch.float64)
        ext = torch.cat([-inf, th, inf], 1)                               # (I, C+1)
        below = ext.gather(1, code)                                       # t[code-1]
        above = ext.gather(1, code + 1)                                   # t[code]
        dist = torch.minimum(self.x0[None] - below, above - self.x0[None])
        edges = [e for e in Z_CLASSES if e < self.z_max] + [self.z_max]
        edges += [self.z_max] * (len(Z_CLASSES) + 1 - len(edges))
        tables = []
        for z_c in edges:
            margin = CUTOFF_SIGMA * self.sigma + self.spread.abs() * z_c
            tables.append(torch.where(dist > margin[None], code, torch.full_like(code, -1)))
        certain = torch.stack(tables)                                     # (Z, I, U)
        self.z_edges = edges
        self.code0 = code.reshape(-1).contiguous()                       # (I*U,) at x0
        self.t_below = below.reshape(-1).contiguous()                    # its bin's edges
        self.t_above = above.reshape(-1).contiguous()
        self.certain = certain.reshape(-1).contiguous()
        self.uncertain_fraction = float((certain[-1] < 0).double().mean())

    def kernel_tables(self) -> dict[str, Tensor]:
        """The tables in the dtypes of the fused C kernel (``nnsim/kernels/rap_mvm.c``),
        contiguous CPU tensors (cached)."""
        kt = getattr(self, "_kernel_tables", None)
        if kt is None:
            # entry: the certain code, or -1 - code0 where uncertain (one gather gives both;
            # a certain code is x0's code, code0); stay: _stay_table; xss: (x0, spread,
            # sigma, 0) per u, packed
            n_z = self.certain.numel() // self.code0.numel()
            code0 = self.code0.cpu().repeat(n_z)
            cert = self.certain.cpu()
            entry = torch.where(cert >= 0, cert, -1 - code0).to(torch.int32)
            xss = torch.stack([self.x0.cpu(), self.spread.cpu(), self.sigma.cpu(),
                               torch.zeros_like(self.x0.cpu())], 1).to(torch.float64)
            # entry_stay: the kernel's table, (entry, stay) pairs interleaved (an uncertain
            # conversion's stay cells share its entry's cache line); entry and stay are
            # views of its columns
            es = torch.stack([entry, self._stay_table()], 1).contiguous()
            kt = {"entry_stay": es, "entry": es[:, 0], "stay": es[:, 1],
                  "xss": xss.contiguous(), "thr": self.thresholds.to(torch.float64).contiguous()}
            self._kernel_tables = kt
        return kt

    def _stay_table(self) -> Tensor:
        """Per entry ``(class, instance, u)``: the top-16-bit cells of the kernel's uniform U
        (its variate is ``n = Phi^-1(U)``) for which the conversion stays in ``x0``'s bin for
        every ``|z|`` of the class: ``klo | khi << 16`` (int32), the stay cells
        ``klo <= floor(U 2**16) < khi``. From ``n`` in ``[lo, hi]``, ``lo = (t_below - x0 +
        |spread| z_c) / sigma``, ``hi = (t_above - x0 - |spread| z_c) / sigma``, shrunk by
        ``1e-9 (1 + |n|)`` for rounding, and ``U`` in ``[Phi(lo) + 1e-12, Phi(hi) - 1e-12]``
        (the quantile function's error); ``klo = khi = 0`` where no cell qualifies. A cell the
        table calls "stay" converts to ``code0`` for every ``U`` in it (the kernel's slow
        path gives the same code; tested)."""
        n_i, n_u = self.n_instances, self.size
        x0 = self.x0.cpu().double()[None].expand(n_i, n_u)
        sp = self.spread.cpu().double().abs()[None].expand(n_i, n_u)
        sig = self.sigma.cpu().double()[None].expand(n_i, n_u)
        tb = self.t_below.cpu().double().reshape(n_i, n_u)
        ta = self.t_above.cpu().double().reshape(n_i, n_u)
        out = []
        for z_c in self.z_edges:
            with np.errstate(divide="ignore", invalid="ignore"):
                lo = ((tb - x0 + sp * z_c) / sig).numpy()
                hi = ((ta - x0 - sp * z_c) / sig).numpy()
            with np.errstate(invalid="ignore"):
                lo = np.where(np.isfinite(lo), lo + 1e-9 * (1 + np.abs(lo)), lo)
                hi = np.where(np.isfinite(hi), hi - 1e-9 * (1 + np.abs(hi)), hi)
            p_lo = ndtr(lo) + 1e-12
            p_hi = ndtr(hi) - 1e-12
            klo = np.clip(np.ceil(p_lo * 65536.0), 0, 65535)
            khi = np.clip(np.floor(p_hi * 65536.0), 0, 65535)
            bad = ~(sig.numpy() > 0) | np.isnan(lo) | np.isnan(hi) | ~(khi > klo)
            klo = np.where(bad, 0, klo).astype(np.int64)
            khi = np.where(bad, 0, khi).astype(np.int64)
            out.append(torch.from_numpy(klo | (khi << 16)))
        return torch.stack(out).reshape(-1).to(torch.int32).contiguous()

    def offsets(self, instance: Tensor, z: Tensor) -> Tensor:
        """Per column ``(class(z) * n_instances + instance) * size`` (index base of its
        entries)."""
        return (z_class(z).clamp_(max=len(Z_CLASSES)) * self.n_instances + instance) \
            * self.size

    def to(self, device: torch.device) -> ColumnReadout:
        """Move the tables to ``device``."""
        for name in ("x0", "sigma", "spread", "certain", "code0", "t_below", "t_above"):
            setattr(self, name, getattr(self, name).to(device))
        self._kernel_tables = None
        return self

    def convert(self, u_q: Tensor, row_tile: Tensor | None, inst_off: Tensor, z: Tensor,
                generator: torch.Generator | None, *, fused: bool = True,
                offset_added: bool = False) -> Tensor:
        """Codes for fixed-point column sums ``u_q`` (rows, cols).

        Args:
            u_q: int64 sums, ``0 <= u_q < size``.
            row_tile: the array (tile) of each row of ``u_q`` (rows,), or None for one array.
            inst_off: per array and column ``instance * size`` (tiles, cols).
            z: per array and column spread ``N(0, 1)`` (tiles, cols).
            generator: per-conversion noise.
            fused: draw only where the code is uncertain (see the module docstring);
                False draws every conversion.
            offset_added: ``u_q`` already holds ``inst_off`` (the sparse MVM starts its sums
                there).

        The sums must lie below ``size`` (``SparseMVM.max_sum_q`` sets it; not re-checked
        here, in the hot path).
        """
        if offset_added:
            flat = u_q
        else:
            flat = u_q + (inst_off[:1] if row_tile is None else inst_off[row_tile])
        if not fused:
            zz = z[:1].expand_as(u_q) if row_tile is None else z[row_tile]
            return self._draw(flat.reshape(-1), zz.reshape(-1), generator).reshape(u_q.shape)
        code = self.certain.take(flat)
        idx = (code < 0).view(-1).nonzero().squeeze(1)
        if idx.numel():
            cols = u_q.shape[-1]
            c = idx % cols
            zz = z[0].take(c) if row_tile is None else z[row_tile[idx // cols], c]
            code.view(-1)[idx] = self._draw(flat.view(-1)[idx], zz, generator)
        return code

    def _draw(self, flat: Tensor, z: Tensor, generator: torch.Generator | None) -> Tensor:
        """One conversion per entry: ``x0 + spread z + sigma N(0, 1)`` against the thresholds
        of the entry's instance (``AdcModel.quantize``)."""
        iu = flat % (self.n_instances * self.size)                       # inst * size + u
        u = iu % self.size
        x = self.x0.take(u) + self.spread.take(u) * z.double()
        n = torch.randn(flat.shape, generator=generator, dtype=torch.float64,
                        device=flat.device)
        x = x + self.sigma.take(u) * n
        # the code of x0's bin unless x left it; those few go through the thresholds
        code = self.code0.take(iu)
        moved = ((x < self.t_below.take(iu)) | (x >= self.t_above.take(iu))).nonzero()
        if moved.numel():
            m = moved.squeeze(1)
            code[m] = self.adc.quantize(x[m], iu[m] // self.size, noise=False).to(_I64)
        return code

    def code_distribution(self, u_q: int, instance: int, z: float = 0.0) -> np.ndarray:
        """Exact ``P(code | u_q, instance, z)`` (float64, for tests and error rates)."""
        x = float(self.x0[u_q]) + float(self.spread[u_q]) * z
        s = float(self.sigma[u_q])
        th = self.thresholds[instance].numpy()
        p_le = ndtr((th - x) / s) if s > 0 else (th > x).astype(np.float64)
        return np.diff(np.concatenate([[0.0], p_le, [1.0]]))
