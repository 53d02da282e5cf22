"""Low-ENOB sparse MVM: bit-serial inputs, bit-planes re-packed to at most K active rows.

Mapping (settings in :class:`MVMConfig`, defaults from the project's physics defaults):

* weights: signed ``weight_bits`` integers as sign-magnitude, a positive and a negative array
  (differential columns), each magnitude bit-sliced into ``cell_bits`` cells: physical column
  ``(sign, slice, out)``; ``n_slices = ceil((weight_bits - 1) / cell_bits)``;
* rows: ``rows`` per crossbar array; longer inputs use several arrays (tiles), each with its
  own ADCs, summed digitally;
* inputs: signed ``input_bits`` integers, sign-magnitude, streamed one magnitude bit-plane at a
  time, the positive and the negative entries in two phases (``2 * (input_bits - 1)`` planes);
* one conversion reads one column once; one cycle activates one group of rows of one array
  (all its columns convert in parallel);
* sparse (RAP): in each plane the active rows (bit = 1) of each array are taken in row order
  and packed into groups of at most ``k``; each group is a cycle. A column sum is then at most
  ``k (2**cell_bits - 1)``, exact with ``ceil(log2(k (2**cell_bits - 1) + 1))`` ADC bits.
  Planes without active rows cost nothing;
* dense (baseline): every plane of every array is one cycle with all rows driven; the ADC's
  LSB is ``2**shift`` unit currents with the smallest ``shift`` that covers
  ``rows (2**cell_bits - 1)``.

Cells: ideal integer levels (``ideal_cells``), or programmed once per chip and read through
the crossbar's transfer, spread and read noise (:meth:`SparseMVM.program`,
:mod:`nnsim.rap.crossbar`). With ideal cells all run-time arithmetic is on integer tensors
(see :mod:`nnsim.rap.adc`); with programmed cells the column sums are integer (fixed-point
cell currents) and only the simulation of an uncertain conversion's noise is float.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import kernels
from .adc import ColumnADC
from .crossbar import CellSettings, ColumnReadout, program_cells
from .intops import int_matmul

_I64 = torch.int64
KERNEL = "rap_mvm"
"""The fused C kernel of the programmed-cell MVM (``nnsim/kernels/rap_mvm.c``)."""


def _kernel() -> ctypes.CDLL | None:
    lib = kernels.load(KERNEL)
    if lib is not None and not getattr(lib, "_rap_typed", False):
        lib.rap_mvm.restype = ctypes.c_int64
        i64, vp = ctypes.c_int64, ctypes.c_void_p
        lib.rap_mvm.argtypes = [vp, i64, i64, i64, i64, i64, i64, ctypes.c_int32, vp, vp, vp,
                                vp, vp, vp, vp, i64, ctypes.c_uint64, ctypes.c_int32,
                                ctypes.c_int32, ctypes.c_int32, vp, vp, ctypes.c_int32]
        lib.rap_init.restype = None
        lib.rap_init.argtypes = []
        lib.rap_init()      # the quantile table, once per process
        lib.rap_normal_of_bits.restype = ctypes.c_double
        lib.rap_normal_of_bits.argtypes = [ctypes.c_uint64]
        lib._rap_typed = True
    return lib


def kernel_path() -> str:
    """Which path the programmed-cell MVM runs on a CPU: ``"c"`` (the fused kernel) or
    ``"torch"`` (no compiler, ``IMC_KERNELS=off``, or the build failed)."""
    return "c" if _kernel() is not None else "torch"


def adc_bits_needed(k: int, cell_bits: int) -> int:
    """``ceil(log2(k (2**cell_bits - 1) + 1))``: bits that resolve ``k`` active rows exactly."""
    return max(1, math.ceil(math.log2(k * ((1 << cell_bits) - 1) + 1)))


def k_exact(bits: int, cell_bits: int, rows: int | None = None) -> int:
    """Most active rows a ``bits``-bit ADC resolves exactly (capped at ``rows``)."""
    k = ((1 << bits) - 1) // ((1 << cell_bits) - 1)
    if k < 1:
        raise ValueError(f"a {bits}-bit ADC cannot resolve one {cell_bits}-bit cell")
    return min(k, rows) if rows else k


@dataclass(frozen=True)
class MVMConfig:
    """How one layer's MVM is mapped and converted."""

    mode: str = "sparse"
    """``"sparse"`` (RAP: at most ``k`` rows per conversion), ``"dense"`` (all rows) or
    ``"digital"`` (exact integer product, no ADC)."""
    adc_bits: int = 8
    """Column ADC resolution."""
    k: int | None = None
    """Most active rows per conversion (sparse); ``None``: :func:`k_exact` of ``adc_bits``."""
    rows: int = 64
    """Rows per crossbar array."""
    cell_bits: int = 2
    """Bits per cell (``2**cell_bits`` conductance levels)."""
    weight_bits: int = 8
    """Signed weight width."""
    input_bits: int = 8
    """Signed input width (the activation window)."""
    adc_shift: int | None = None
    """The ADC's LSB as ``2**adc_shift`` unit currents when set (a range calibrated on
    calibration column sums, ``nnsim.rap.evaluate.calibrate_adc_range``); sums above the
    ADC's full scale saturate. ``None``: the smallest shift covering ``s_max``."""

    def __post_init__(self) -> None:
        if self.mode not in ("sparse", "dense", "digital"):
            raise ValueError(f"MVMConfig.mode={self.mode!r}: expected sparse, dense or digital")
        if self.k is not None and not 1 <= self.k <= self.rows:
            raise ValueError(f"MVMConfig.k={self.k!r} must be in 1..rows={self.rows}")
        if not 1 <= self.adc_bits <= 16:
            raise ValueError(f"MVMConfig.adc_bits={self.adc_bits!r} must be in 1..16")

    @property
    def k_active(self) -> int:
        """Rows driven per conversion."""
        if self.mode != "sparse":
            return self.rows
        return self.k if self.k is not None else k_exact(self.adc_bits, self.cell_bits, self.rows)

    @property
    def n_slices(self) -> int:
        """Cells per weight magnitude."""
        return math.ceil((self.weight_bits - 1) / self.cell_bits)

    @property
    def s_max(self) -> int:
        """Largest column sum of one conversion."""
        return self.k_active * ((1 << self.cell_bits) - 1)

    @property
    def shift(self) -> int:
        """The ADC's LSB is ``2**shift`` unit currents."""
        if self.adc_shift is not None:
            return int(self.adc_shift)
        return max(0, adc_bits_needed(self.k_active, self.cell_bits) - self.adc_bits)


@dataclass
class MVMCounters:
    """Work of the analog MVMs since the last reset."""

    conversions: int = 0
    cycles: int = 0
    active_rows: int = 0
    calls: int = 0
    current_q: int = 0
    """Programmed cells only: the sum over the conversions of the column's programmed
    fixed-point sum (``nnsim.rap.crossbar.program_cells``: the ideal column current at T in
    level units times ``2**frac_bits``, G_min included; before the transfer and the noise).
    Divided by ``conversions`` and ``2**frac_bits``, times ``HardwareModel.unit_a``: the mean
    column current ``energy_per_inference`` scales the crossbar read parts by."""

    def add(self, other: MVMCounters) -> None:
        """Accumulate ``other`` into this."""
        self.conversions += other.conversions
        self.cycles += other.cycles
        self.active_rows += other.active_rows
        self.calls += other.calls
        self.current_q += other.current_q


class SparseMVM:
    """``y = x @ w.T`` on bit-sliced crossbar arrays with a column ADC (see module doc).

    Args:
        w_m: integer weights (out, in), ``|w| <= 2**(weight_bits-1) - 1``.
        config: mapping and conversion settings.
        adc: the column ADC (its ``s_max``/``shift`` must match ``config``).
        generator: draws the ADC instance of each physical column (one chip).
        exact_shortcut: with an ADC that resolves every sum exactly and makes no errors (the
            ideal ADC, or a circuit ADC whose instances on this layer's columns convert every
            sum to its ideal code with probability 1 in Q30), use the exact integer product
            (identical result, tested) and count work analytically.
        fused: the circuit ADC draws a code only where a sum can be mis-converted
            (:meth:`ColumnADC.convert`); False draws every conversion.
        use_kernel: with programmed cells on a CPU, run the fused C kernel
            (``nnsim/kernels/rap_mvm.c``, :func:`kernel_path`) where it can be built; the
            torch path otherwise (same distribution; the noise streams differ).
    """

    def __init__(self, w_m: Tensor, config: MVMConfig, adc: ColumnADC | None,
                 generator: torch.Generator | None = None, *, exact_shortcut: bool = True,
                 fused: bool = True, use_kernel: bool = True) -> None:
        self.config = config
        self.w_m = w_m.to(_I64)
        self.out_features, self.in_features = w_m.shape
        top = (1 << (config.weight_bits - 1)) - 1
        if int(self.w_m.abs().amax()) > top:
            raise ValueError(f"weights exceed {config.weight_bits} bits (|w| <= {top})")
        r = config.rows
        self.n_tiles = math.ceil(self.in_features / r)
        pad = self.n_tiles * r - self.in_features
        levels = (1 << config.cell_bits) - 1
        mags = torch.stack([self.w_m.clamp(min=0), (-self.w_m).clamp(min=0)])   # (2, out, in)
        sl = [(mags >> (config.cell_bits * j)) & levels for j in range(config.n_slices)]
        cells = torch.stack(sl, 1)                                             # (2, S, out, in)
        cells = torch.nn.functional.pad(cells, (0, pad)) if pad else cells
        self.cols = 2 * config.n_slices * self.out_features
        self.cells = cells.reshape(self.cols, self.n_tiles * r).T.contiguous()  # (in_pad, cols)
        self.slice_shift = torch.arange(config.n_slices, dtype=_I64) * config.cell_bits
        self.adc = adc
        if config.mode != "digital":
            if adc is None:
                raise ValueError("an analog MVM needs a ColumnADC")
            if adc.s_max != config.s_max or adc.shift != config.shift:
                raise ValueError(f"ColumnADC(s_max={adc.s_max}, shift={adc.shift}) does not "
                                 f"match MVMConfig(s_max={config.s_max}, shift={config.shift})")
            n_inst = adc.n_instances
            self.instance = torch.randint(0, n_inst, (self.n_tiles, self.cols),
                                          generator=generator, dtype=_I64)
        self.fused = fused
        self.exact = (config.mode == "digital" or (
            exact_shortcut and adc is not None and config.shift == 0
            and config.s_max <= (1 << config.adc_bits) - 1 and (
                adc.cdf is None or bool(adc.exact_instances()[self.instance.unique()].all()))))
        self.counters = MVMCounters()
        self.use_kernel = use_kernel
        self.kernel_draws = 0
        self.kernel_slow = False
        """Kernel: compute every drawn conversion's normal variate (no shortcut; the same
        bits, for tests)."""
        self.kernel_stay_in_pass: bool | None = None
        """Kernel: test the uncertain conversions' stay cells inside the vectorized group
        pass (fast where many conversions are uncertain) rather than after listing them
        (fast where few are); the same bits either way. ``None``: per group, in the pass
        where the previous group had more than 15 % uncertain conversions."""
        self.kernel_threads: int | None = None
        """Kernel: OpenMP threads (the same bits at any count); ``None``: torch's thread count
        at the call (``RapViT.forward_int`` sets it while its torch operations run on one)."""
        self._kernel_bufs: tuple[Tensor, Tensor, Tensor] | None = None
        self.readout: ColumnReadout | None = None
        self.z: Tensor | None = None
        self.inst_off: Tensor | None = None

    # ------------------------------------------------------------------ programmed cells
    def program(self, hw: object, settings: CellSettings, generator: torch.Generator | None
                ) -> SparseMVM:
        """Write this layer's cells once (this chip): ``self.cells`` become the programmed
        cell currents in fixed point (:func:`nnsim.rap.crossbar.program_cells`) and each
        physical column of each array draws its transfer spread ``z ~ N(0, 1)``. Attach the
        chip's :class:`ColumnReadout` with :meth:`attach_readout` before the first call."""
        if self.config.mode == "digital":
            raise ValueError("a digital MVM has no cells to program")
        self.cells = program_cells(self.cells, hw, settings, generator)
        self._kernel_bufs = None
        self.z = torch.randn((self.n_tiles, self.cols), generator=generator,
                             dtype=torch.float64) if settings.transfer else \
            torch.zeros((self.n_tiles, self.cols), dtype=torch.float64)
        self.exact = False
        return self

    def max_sum_q(self) -> int:
        """Largest fixed-point column sum one conversion can present (programmed cells)."""
        cfg = self.config
        c = self.cells.reshape(self.n_tiles, cfg.rows, self.cols)
        bound = int(c.sum(1).amax())
        if cfg.mode == "sparse":
            bound = min(bound, cfg.k_active * int(c.amax()))
        return bound

    def attach_readout(self, readout: ColumnReadout) -> SparseMVM:
        """Use ``readout`` (the chip's transfer, noise and ADC tables) for the conversions."""
        if self.z is None:
            raise ValueError("attach_readout needs programmed cells (call program first)")
        self.readout = readout
        self.inst_off = readout.offsets(self.instance.to(self.z.device), self.z).to(
            self.cells.device)
        self._kernel_bufs = None
        return self

    def to(self, device: torch.device) -> SparseMVM:
        """Move the tables to ``device``."""
        self.w_m, self.cells = self.w_m.to(device), self.cells.to(device)
        self.slice_shift = self.slice_shift.to(device)
        if self.config.mode != "digital":
            self.instance = self.instance.to(device)
            self.adc = self.adc.to(device)
        for name in ("z", "inst_off"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        if self.readout is not None:
            self.readout = self.readout.to(device)
        return self

    # ------------------------------------------------------------------ run
    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x`` (T, in) signed integers -> (T, out) int64."""
        cfg = self.config
        if self.z is not None and self.readout is None:
            raise ValueError("programmed cells need a ColumnReadout (attach_readout)")
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features).to(_I64)
        top = (1 << (cfg.input_bits - 1)) - 1
        if int(x.abs().amax()) > top:
            raise ValueError(f"inputs exceed {cfg.input_bits} bits (|x| <= {top})")
        if cfg.mode == "digital":
            return int_matmul(x, self.w_m.T).reshape(*lead, self.out_features)
        if self.readout is not None and self.use_kernel and x.device.type == "cpu":
            lib = _kernel()
            if lib is not None:
                out = self._call_kernel(lib, x, generator)
                self.counters.calls += 1
                return out.reshape(*lead, self.out_features)
        r = cfg.rows
        pad = self.n_tiles * r - self.in_features
        xp = torch.nn.functional.pad(x, (0, pad)) if pad else x
        out = torch.zeros(x.shape[0], self.out_features, dtype=_I64, device=x.device)
        for sign in (1, -1):
            mag = (xp * sign).clamp(min=0).reshape(-1, self.n_tiles, r)
            for k in range(cfg.input_bits - 1):
                bits = (mag >> k) & 1                                    # (T, tiles, R)
                if self.exact:
                    self._count(bits)
                    continue
                plane = self._plane(bits, generator)
                out = out + sign * (plane << k)
        if self.exact:
            out = int_matmul(x, self.w_m.T)
        self.counters.calls += 1
        return out.reshape(*lead, self.out_features)

    def _call_kernel(self, lib: ctypes.CDLL, x: Tensor, generator: torch.Generator | None
                     ) -> Tensor:
        """The programmed-cell MVM in one pass of the fused C kernel
        (``nnsim/kernels/rap_mvm.c``): the same mapping, tables and conversion as the torch
        path (:meth:`_plane`, ``ColumnReadout.convert``), with counter-based noise."""
        cfg = self.config
        acc = self.kernel_column_codes(x, generator, lib)
        t_count = x.shape[0]
        vals = (acc << cfg.shift).reshape(t_count, 2, cfg.n_slices, self.out_features)
        vals = (vals << self.slice_shift.cpu()[None, None, :, None]).sum(2)
        return vals[:, 0] - vals[:, 1]

    def kernel_column_codes(self, x: Tensor, generator: torch.Generator | None,
                            lib: ctypes.CDLL | None = None) -> Tensor:
        """The fused C kernel's per-token sums of the physical columns' codes, each shifted
        by its input plane and signed by its phase (T, cols) int64, before the LSB, slice
        and differential recombination (with one active input bit per token, the codes of
        single conversions). ``x``: (T, in) signed integers on the CPU; counters updated."""
        from ..kernels import ptr, threads

        lib = lib or _kernel()
        if lib is None or self.readout is None:
            raise ValueError("kernel_column_codes needs the C kernel and programmed cells")
        x = x.reshape(-1, self.in_features).to(_I64)
        cfg = self.config
        rd = self.readout
        kt = rd.kernel_tables()
        if self._kernel_bufs is None:
            if int(self.inst_off.amax()) + int(self.cells.amax()) * cfg.rows >= 2 ** 31 - 1:
                raise OverflowError("RAP kernel: table index exceeds int32")
            self._kernel_bufs = (self.cells.cpu().to(torch.int32).contiguous(),
                                 self.inst_off.cpu().to(torch.int32).contiguous(),
                                 self.instance.cpu().to(torch.int32).contiguous(),
                                 self.z.cpu().to(torch.float64).contiguous())
        cells, inst_off, col_inst, z = self._kernel_bufs
        t_count = x.shape[0]
        pad = self.n_tiles * cfg.rows - self.in_features
        xp = (torch.nn.functional.pad(x, (0, pad)) if pad else x).contiguous()
        acc = torch.zeros(t_count, self.cols, dtype=_I64)
        stats = torch.zeros(4, dtype=_I64)
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, dtype=_I64))
        rc = lib.rap_mvm(
            ptr(xp, _I64), t_count, self.n_tiles, cfg.rows, self.cols, cfg.input_bits - 1,
            cfg.k_active, int(cfg.mode == "dense"), ptr(cells), ptr(inst_off), ptr(col_inst),
            ptr(z), ptr(kt["entry_stay"]), ptr(kt["xss"]), ptr(kt["thr"]),
            int(kt["thr"].shape[1]),
            ctypes.c_uint64(seed), int(self.fused), int(self.kernel_slow),
            int(self._stay_in_pass()), ptr(acc), ptr(stats),
            max(1, int(self.kernel_threads or threads())))
        if rc != 0:
            raise MemoryError("RAP kernel: scratch allocation failed" if rc == -1 else
                              f"RAP kernel: not initialised (rc {rc})")
        cyc, act, draws, cur = (int(v) for v in stats)
        self.counters.current_q += cur
        self.counters.cycles += cyc
        self.counters.conversions += cyc * self.cols
        self.counters.active_rows += act
        self.kernel_draws += draws
        return acc

    def _stay_in_pass(self) -> int:
        """The kernel's ``stay_in_pass``: 0 listed, 1 in the pass, 2 per group (auto)."""
        return 2 if self.kernel_stay_in_pass is None else int(bool(self.kernel_stay_in_pass))

    def _count(self, bits: Tensor) -> Tensor:
        """Count the cycles/conversions of one plane; returns groups per (T, tile)."""
        pop = bits.sum(-1)
        if self.config.mode == "dense":
            groups = torch.ones_like(pop)
        else:
            k = self.config.k_active
            groups = (pop + (k - 1)) // k
        n = int(groups.sum())
        self.counters.cycles += n
        self.counters.conversions += n * self.cols
        self.counters.active_rows += int(pop.sum())
        return groups

    def _plane(self, bits: Tensor, generator: torch.Generator | None) -> Tensor:
        """Analog read of one bit-plane: (T, tiles, R) bits -> (T, out) column results."""
        cfg = self.config
        t_count, n_tiles, r = bits.shape
        groups = self._count(bits)                                       # (T, tiles)
        if self.readout is not None:
            # every active row is in exactly one group: the conversions' programmed column
            # sums add up to the active rows' cell currents (MVMCounters.current_q)
            cells = self.cells.reshape(n_tiles, r, self.cols).sum(-1)  # (tiles, R)
            self.counters.current_q += int((bits * cells[None]).sum())
        if cfg.mode == "dense":
            sums = self._dense_tiles(bits)                               # (T * tiles, cols)
            if self.readout is not None:
                row_tile = None if n_tiles == 1 else torch.arange(
                    n_tiles, device=bits.device).repeat(t_count)
                codes = self.readout.convert(sums, row_tile, self.inst_off, self.z, generator,
                                             fused=self.fused)
            else:
                inst = self.instance.repeat(t_count, 1)
                codes = self.adc.convert(sums, inst, generator, fused=self.fused)
            owner = torch.arange(t_count, device=bits.device).repeat_interleave(n_tiles)
        else:
            k = cfg.k_active
            rank = bits.cumsum(-1) - 1
            gid = rank // k                                              # valid where bit = 1
            flat_groups = groups.reshape(-1)
            offset = flat_groups.cumsum(0) - flat_groups                 # first group id
            t_idx, tile_idx, r_idx = bits.nonzero(as_tuple=True)
            g = offset[t_idx * n_tiles + tile_idx] + gid[t_idx, tile_idx, r_idx]
            n_groups = int(flat_groups.sum())
            if n_groups == 0:
                return torch.zeros(t_count, self.out_features, dtype=_I64, device=bits.device)
            pair = torch.arange(t_count * n_tiles, device=bits.device).repeat_interleave(
                flat_groups)
            if self.readout is not None:
                # each group's column sums on top of its columns' table offsets (one pass)
                row_tile = None if n_tiles == 1 else pair % n_tiles
                sums = (self.inst_off.expand(n_groups, -1).clone() if row_tile is None
                        else self.inst_off[row_tile])
                sums.index_add_(0, g, self.cells[tile_idx * r + r_idx])   # (G, cols)
                codes = self.readout.convert(sums, row_tile, self.inst_off, self.z, generator,
                                             fused=self.fused, offset_added=True)
            else:
                # each group's column sums: its (at most k) active rows added, no matmul
                sums = torch.zeros(n_groups, self.cols, dtype=_I64, device=bits.device)
                sums.index_add_(0, g, self.cells[tile_idx * r + r_idx])     # (G, cols)
                inst = self.instance[pair % n_tiles]
                codes = self.adc.convert(sums, inst, generator, fused=self.fused)
            owner = pair // n_tiles
        # the digital recombination is linear: codes summed per token first (one pass over
        # the conversions), then shifted by slice and LSB and the differential pair subtracted
        tok = torch.zeros(t_count, self.cols, dtype=_I64, device=bits.device)
        tok.index_add_(0, owner, codes)
        vals = (tok << cfg.shift).reshape(t_count, 2, cfg.n_slices, self.out_features)
        vals = (vals << self.slice_shift[None, None, :, None]).sum(2)
        return vals[:, 0] - vals[:, 1]

    def _dense_tiles(self, bits: Tensor) -> Tensor:
        t_count, n_tiles, r = bits.shape
        cells = self.cells.reshape(n_tiles, r, self.cols)
        sums = [int_matmul(bits[:, i, :], cells[i]) for i in range(n_tiles)]
        return torch.stack(sums, 1).reshape(t_count * n_tiles, self.cols)
