"""The hardware model: crossbar and ADC behaviour at one PVT point, read from lookup files.

``HardwareModel.from_lookup`` selects the process corner exactly, interpolates ``vdd_v`` and
``temp_c`` linearly between characterized points (``Table.sel``) and refuses to extrapolate.
Distributions (write-noise samples) are interpolated quantile by quantile: samples are sorted
before interpolation, so the result is the distribution between the two neighbours, not a mix
of unrelated draws. ADC resolution must be one that was characterized.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from characterization.adc.convention import ideal_threshold_k_minus
from characterization.errors import ExtrapolationError, LookupFormatError
from characterization.lookup import Table, read_lookups
from characterization.lookup.names import (
    ADC_CONVERSION_TIME_S,
    ADC_ENERGY_BREAKDOWN_J,
    ADC_ENERGY_J,
    ADC_NOISE_LSB,
    ADC_OFFSET_LSB,
    ADC_SAMPLING_PEDESTAL_LSB,
    ADC_THRESHOLDS,
    CROSSBAR_CELL_READ,
    CROSSBAR_READ_ENERGY,
    CROSSBAR_READ_NOISE,
    CROSSBAR_READ_TRANSFER,
    CROSSBAR_WRITE_NOISE_FIT,
    CROSSBAR_WRITE_NOISE_SAMPLES,
)

from .energy import CrossbarReadEnergy
from .errors import HardwareModelError, NotCharacterizedError

_PVT = ("process", "vdd_v", "temp_c")
ADC_TRIMS = ("none", "pedestal", "offset")
"""ADC offset trims (``HardwareModel.from_lookup(adc_trim=)``), a design decision, not a circuit
result: ``none`` the thresholds as characterized (the default); ``pedestal`` the corner's
sampling-switch pedestal (``adc/sampling/pedestal_lsb``) subtracted from every instance's
thresholds (a dummy-switch / differential cancellation of the charge injection; each
instance keeps its comparator offset and mismatch); ``offset`` each instance's measured offset
(``adc/offset_lsb``: comparator + pedestal) trimmed by a foreground calibration through a trim
DAC of step ``ADC_TRIM_STEP_LSB`` (residual within half a step)."""
ADC_TRIM_STEP_LSB = 0.25
"""Assumption (not characterized): the step of the per-instance offset-trim DAC of
``adc_trim="offset"``, in LSB of the ADC at each resolution; the trim removes
``round(offset / step) * step``, leaving a residual of at most half a step."""


def _plain(v: Any) -> Any:
    """A coordinate value as a plain Python str/int/float (for messages)."""
    return v.item() if hasattr(v, "item") else v


def interp1d(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``fp(xp)`` at ``x`` (torch, clamped to the table's ends)."""
    xc = x.clamp(float(xp[0]), float(xp[-1]))
    i = torch.searchsorted(xp, xc.contiguous()).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    return f0 + (xc - x0) / (x1 - x0) * (f1 - f0)


@dataclass
class AdcModel:
    """A characterized column ADC at one PVT point and resolution.

    Attributes:
        bits: Resolution.
        thresholds_lsb: (instances, 2^bits - 1) transition levels, in LSB of the ideal ADC:
            the output code is the number of thresholds at or below the input.
        noise_lsb: Input-referred noise sigma, LSB.
        energy_j: Energy per conversion (NaN if not characterized).
        conversion_time_s: Time per conversion (NaN if not characterized).
        code_offset: Centre of code k is ``k + code_offset`` LSB (0 for the ``k - 0.5``
            threshold convention, 0.5 for ``k``): the digital side reconstructs with it.
        energy_parts_j: Energy per conversion by part (``adc/energy_breakdown_j``: comparator,
            DAC reference, SAR logic, sampling drive); empty for files without the table.
            The parts sum to ``energy_j``.
        energy_sources: Where each part comes from (SPICE / formula / estimate + assumption),
            the table's ``source_<part>`` attributes.
        trim: The offset trim applied to the characterized thresholds (``ADC_TRIMS``:
            ``none``, ``pedestal``, ``offset``; ``HardwareModel.from_lookup(adc_trim=)``).
        trim_lsb: Per instance, the LSB subtracted from every threshold (None: no trim).

    ``adc/designer/decision_error`` (the comparator-noise code-error rate) is deliberately not
    carried: ``quantize`` draws the comparator noise ``noise_lsb`` itself, and applying the
    error rate as well would count the same noise twice.
    """

    bits: int
    thresholds_lsb: np.ndarray
    noise_lsb: float
    energy_j: float = float("nan")
    conversion_time_s: float = float("nan")
    code_offset: float = 0.0
    energy_parts_j: dict[str, float] = field(default_factory=dict)
    energy_sources: dict[str, str] = field(default_factory=dict)
    trim: str = "none"
    trim_lsb: np.ndarray | None = None
    _cache: dict[Any, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def instances(self) -> int:
        """Number of Monte-Carlo instances."""
        return int(self.thresholds_lsb.shape[0])

    @property
    def max_code(self) -> int:
        """Largest output code."""
        return 2 ** self.bits - 1

    @classmethod
    def ideal(cls, bits: int) -> AdcModel:
        """A perfect ADC (thresholds at k - 0.5, no noise)."""
        th = np.arange(1, 2 ** bits, dtype=np.float64)[None] - 0.5
        return cls(bits, th, 0.0, code_offset=0.0)

    def _flat(self, device: torch.device) -> tuple[torch.Tensor, float]:
        key = ("flat", str(device))
        if key not in self._cache:
            span = self.max_code + 4.0
            th = torch.as_tensor(self.thresholds_lsb, dtype=torch.float64)
            th = th + span * torch.arange(self.instances, dtype=torch.float64)[:, None]
            self._cache[key] = th.reshape(-1).to(device)
        return self._cache[key], self.max_code + 4.0

    LUT_STEPS = 32
    """Grid steps per LSB of the per-instance code tables (``quantize_lut``, ``quantize_fast``,
    ``quantize_near``); refined (doubled) where two distinct thresholds of an instance would
    share a cell."""

    def _steps(self) -> int:
        key = "steps"
        if key not in self._cache:
            r = self.LUT_STEPS
            gaps = np.diff(self.thresholds_lsb, axis=1)
            gaps = gaps[gaps > 0]
            while gaps.size and r < 1 << 16 and 1.0 / r >= gaps.min():
                r *= 2
            self._cache[key] = r
        return self._cache[key]

    def _lut(self, device: torch.device) -> torch.Tensor:
        key = ("lut", str(device))
        if key not in self._cache:
            r = self._steps()
            grid = -2.0 + (np.arange((self.max_code + 4) * r) + 0.5) / r
            lut = np.stack([np.searchsorted(t, grid, side="right") for t in self.thresholds_lsb])
            self._cache[key] = torch.as_tensor(lut.reshape(-1), dtype=torch.float32,
                                               device=device)
        return self._cache[key]

    NEAR_CAP = 0.99
    """Largest distance the ``quantize_near`` table stores (LSB): a conversion whose
    ``SIGMAS`` x sigma reaches it is drawn."""

    def _tables(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Per instance and cell ``[lo, lo + 1/r)`` of the 1/r-LSB grid (float32, flat):

        * ``low``: the code at ``lo``; ``th``: the threshold inside the cell (+inf if none;
          ``_steps`` makes it at most one distinct value) and ``jump``: how many thresholds
          share it, so the exact code of ``x`` in the cell is ``low + jump (x >= th)``;
        * ``near``: ``low + d``, ``d`` the smallest distance (LSB, capped at ``NEAR_CAP``)
          from the cell to a threshold, 0 for a cell that holds one.
        """
        key = ("tables", str(device))
        if key not in self._cache:
            r = self._steps()
            lo = -2.0 + np.arange((self.max_code + 4) * r) / r
            hi = lo + 1.0 / r
            out: dict[str, list[np.ndarray]] = {"low": [], "th": [], "jump": [], "near": []}
            for t in self.thresholds_lsb:
                low = np.searchsorted(t, lo, side="right")  # thresholds <= lo
                nxt = t[np.minimum(low, t.size - 1)]
                inside = (low < t.size) & (nxt < hi)
                jump = np.searchsorted(t, hi, side="left") - low  # thresholds in (lo, hi)
                below = np.where(low > 0, lo - t[np.maximum(low - 1, 0)], np.inf)
                above = np.where(low < t.size, nxt - hi, np.inf)
                d = np.where(inside, 0.0, np.minimum(below, above))
                out["low"].append(low)
                # float32 rounded up: x32 >= th32 exactly when x32 >= th (float64)
                th32 = nxt.astype(np.float32)
                th32 = np.where(th32 < nxt, np.nextafter(th32, np.float32(np.inf)), th32)
                out["th"].append(np.where(inside, th32, np.inf))
                out["jump"].append(np.where(inside, jump, 0))
                out["near"].append(low + np.clip(d, 0.0, self.NEAR_CAP))
            tb: dict[str, Any] = {k: torch.as_tensor(np.concatenate(v), dtype=torch.float32,
                                                     device=device) for k, v in out.items()}
            tb["unit_jumps"] = bool(np.all(np.concatenate(out["jump"]) <= 1))
            self._cache[key] = tb
        return self._cache[key]

    def _lut_index(self, x_lsb: torch.Tensor, instance: torch.Tensor | int,
                   inplace: bool = False) -> torch.Tensor:
        """Flat int32 index of each input's cell in the per-instance tables (``inplace``:
        ``x_lsb`` is clamped to the tables' range in place; the clamp keeps every code)."""
        r = self._steps()
        g = (self.max_code + 4) * r
        lo, hi = -2.0, self.max_code + 2.0 - 0.5 / r
        x = x_lsb.clamp_(lo, hi) if inplace else x_lsb.clamp(lo, hi)
        if isinstance(instance, torch.Tensor):
            off = instance.to(x.dtype) * float(g) + float(2 * r)
            idx = torch.add(off, x, alpha=float(r))
            if idx.shape != x.shape:
                idx = idx.expand(x.shape)
        else:
            idx = x.mul(float(r)).add_(float(2 * r + int(instance) * g))
        return idx.to(torch.int32).reshape(-1)

    def quantize_lut(self, x_lsb: torch.Tensor, instance: torch.Tensor | int) -> torch.Tensor:
        """Noiseless codes through the cell-centre table alone (thresholds resolved to
        1/``LUT_STEPS`` LSB); ``quantize_fast`` is exact at the same cost plus one gather."""
        idx = self._lut_index(x_lsb, instance)
        return self._lut(x_lsb.device).index_select(0, idx).view(x_lsb.shape)

    def quantize_fast(self, x_lsb: torch.Tensor, instance: torch.Tensor | int, *,
                      inplace: bool = False) -> torch.Tensor:
        """Noiseless codes, exact (as ``quantize(noise=False)``), without a search: the cell's
        code plus one comparison with the threshold inside the cell (``_tables``).

        Args:
            inplace: ``x_lsb`` may be overwritten.

        Returns:
            Codes (float32, the shape of ``x_lsb``).
        """
        tb = self._tables(x_lsb.device)
        if not inplace:
            x_lsb = x_lsb.clone()
        idx = self._lut_index(x_lsb, instance, inplace=True)  # clamped: same codes
        up = torch.ge(x_lsb, tb["th"].index_select(0, idx).view(x_lsb.shape))
        low = tb["low"].index_select(0, idx).view(x_lsb.shape)
        if not tb["unit_jumps"]:
            return low.addcmul_(up.to(low.dtype), tb["jump"].index_select(0, idx).view(
                x_lsb.shape))
        return low.add_(up)

    SIGMAS = 6.0
    """``quantize_near``'s cutoff: a conversion whose noiseless input lies farther than
    ``SIGMAS`` sigma from every threshold gets its noiseless code; the noise would have changed
    it with probability below Phi(-6) = 9.9e-10 per conversion (one side)."""

    DENSE_AT = 0.1
    """``quantize_near`` draws every conversion (no selection) when the noise floor alone puts
    the ``SIGMAS`` band over this fraction of each LSB (``2 SIGMAS sigma_floor >= 0.1``), or
    when that fraction of a block's conversions turns out to be near a threshold: on a CPU
    the selection (mask, nonzero, gather, scatter) costs about as much per conversion as
    torch's Gaussian draw, so it pays only where few conversions are uncertain."""

    def quantize_near(self, x_lsb: torch.Tensor, var_lsb: torch.Tensor | float,
                      instance: torch.Tensor | int, generator: torch.Generator | None, *,
                      var_floor: float = 0.0) -> torch.Tensor:
        """``quantize(x + sqrt(var) N(0,1))`` drawing the Gaussian only where it can matter.

        Args:
            x_lsb: Noiseless inputs (LSB of the ideal ADC), any shape; not modified.
            var_lsb: Noise variance per input (LSB^2), broadcastable to ``x_lsb``, or a number.
            instance: As ``quantize``.
            generator: For the draws.
            var_floor: A lower bound of ``var_lsb`` (the ADC's own input noise).

        Returns:
            Codes (float32, the shape of ``x_lsb``). Where ``x`` lies within ``SIGMAS`` sigma of
            a threshold of its instance (or in a table cell holding one) a Gaussian is drawn and
            the code is that of ``x + sigma z``; elsewhere the code is the noiseless one. When
            more than ``DENSE_AT`` of the inputs are that close, or the noise floor says they
            will be, one Gaussian is drawn per input, so the cost never exceeds full sampling
            by much.
        """
        dev = x_lsb.device
        tensor_var = isinstance(var_lsb, torch.Tensor)
        sd = var_lsb.sqrt() if tensor_var else float(var_lsb) ** 0.5

        def dense() -> torch.Tensor:
            z = torch.randn(x_lsb.shape, generator=generator, device=dev, dtype=x_lsb.dtype)
            return self.quantize_fast(z.mul_(sd).add_(x_lsb), instance, inplace=True)

        if 2.0 * self.SIGMAS * var_floor ** 0.5 >= self.DENSE_AT:
            self.last_near_fraction = 1.0
            return dense()
        idx = self._lut_index(x_lsb, instance)
        v = self._tables(dev)["near"].index_select(0, idx).view(x_lsb.shape)
        code = v.floor()
        thr = var_lsb * self.SIGMAS ** 2
        unc = v.sub_(code).square_() <= thr  # d = 0 (a cell holding a threshold): always
        n_unc = int(unc.sum())
        self.last_near_fraction = n_unc / max(1, unc.numel())
        if n_unc == 0:
            return code
        if n_unc > self.DENSE_AT * unc.numel():
            return torch.where(unc, dense(), code)
        flat = unc.reshape(-1).nonzero().squeeze(1)
        xs = x_lsb.reshape(-1).index_select(0, flat)
        z = torch.randn(xs.shape, generator=generator, device=dev, dtype=x_lsb.dtype)
        z = z.mul_(sd.expand(x_lsb.shape).reshape(-1).index_select(0, flat)) if tensor_var \
            else z.mul_(sd)
        g = (self.max_code + 4) * self._steps()
        inst = (torch.div(idx.index_select(0, flat), g, rounding_mode="floor")
                if isinstance(instance, torch.Tensor) else instance)
        code.view(-1).index_copy_(0, flat, self.quantize_fast(xs.add_(z), inst, inplace=True))
        return code

    def quantize(self, x_lsb: torch.Tensor, instance: int | torch.Tensor,
                 generator: torch.Generator | None = None, *, noise: bool = True
                 ) -> torch.Tensor:
        """Convert inputs (in LSB of the ideal ADC) to codes with an instance's thresholds.

        Args:
            x_lsb: Any shape.
            instance: One instance index, or an int64 tensor broadcastable to ``x_lsb`` (one
                instance per column, as a chip's column ADCs).
            generator: For the comparator noise.
            noise: Add the input-referred noise.

        Returns:
            Codes (same shape, float dtype of ``x_lsb``), in ``0 .. 2^bits - 1``.
        """
        if noise and self.noise_lsb > 0:
            x_lsb = x_lsb + self.noise_lsb * torch.randn(
                x_lsb.shape, generator=generator, device=x_lsb.device, dtype=x_lsb.dtype)
        flat, span = self._flat(x_lsb.device)
        n = self.max_code
        inst = torch.as_tensor(instance, device=x_lsb.device)
        # One binary search over all instances' thresholds, each instance shifted by `span`:
        # the count of thresholds <= x within the instance's block is the code.
        xs = x_lsb.to(torch.float64).clamp(-1.5, n + 1.5) + inst.to(torch.float64) * span
        codes = torch.bucketize(xs, flat, right=True) - inst * n
        return codes.to(x_lsb.dtype)


@dataclass
class HardwareModel:
    """Crossbar + ADC behaviour at one PVT point (what ``convert_to_analog`` simulates).

    Attributes:
        process, vdd_v, temp_c, adc_bits: The point.
        g_min_s, g_max_s: Cell conductance range; ``levels`` per cell (4 = 2 bits).
        v_read_v: Read voltage; ``rows``: rows of the characterized column.
        transfer_i_rel, transfer_mean, transfer_std: Column transfer (actual / ideal current
            ratio and its spread) vs ideal current / full scale. With ``cell_g_t_s`` the ideal
            current is the one at T (the cells' G(T)) and the full scale is at T; without it
            (older files) both are at the nominal conductances.
        cell_g_t_s: Per level, the cell's read conductance at this point's temperature
            (``crossbar/cell_read``), or None (older files: the nominal levels). The readout
            maps programmed levels (states) to currents through it: the one place the cell's
            G(T) enters.
        read_i_a, read_sigma_a: Read-noise sigma of the column current vs the current.
        write_k: Fitted write-noise factor per mode (``single``, ``verify``).
        write_samples_s: Per mode, (levels, samples) programmed conductances (sorted), or
            absent when the file has no samples.
        adcs: ADC models per characterized resolution.
        read_energy: ``crossbar/read_energy_j`` at this point (energy per column read by
            part: array, TIA, drivers), or None when the crossbar lookup has no such table
            (``nnsim.energy`` then reports the crossbar read as not characterized).
        sources: The files read.
        rows_axis: The column heights of the crossbar file's ``rows`` axis (``rows`` is the
            one read), or empty (a file of one column height).
    """

    process: str
    vdd_v: float
    temp_c: float
    adc_bits: int | None
    g_min_s: float
    g_max_s: float
    levels: int = 4
    v_read_v: float = 0.2
    rows: int = 64
    transfer_i_rel: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0]))
    transfer_mean: np.ndarray = field(default_factory=lambda: np.array([1.0, 1.0]))
    transfer_std: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0]))
    cell_g_t_s: np.ndarray | None = None
    read_i_a: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0]))
    read_sigma_a: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0]))
    write_k: dict[str, float] = field(default_factory=lambda: {"single": 0.0, "verify": 0.0})
    write_k_zero_mean: dict[str, float] = field(default_factory=dict)
    write_samples_s: dict[str, np.ndarray] = field(default_factory=dict)
    adcs: dict[int, AdcModel] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    read_energy: CrossbarReadEnergy | None = None
    rows_axis: tuple[int, ...] = ()
    adc_trim: str = "none"
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def ideal(cls, *, g_min_s: float = 1e-7, g_max_s: float = 1e-5, adc_bits: int | None = None,
              v_read_v: float = 0.2) -> HardwareModel:
        """A noiseless, linear crossbar and a perfect ADC (or none): for checks, no files."""
        adcs = {adc_bits: AdcModel.ideal(adc_bits)} if adc_bits else {}
        return cls("ideal", float("nan"), float("nan"), adc_bits, g_min_s, g_max_s,
                   v_read_v=v_read_v, adcs=adcs)

    @classmethod
    def from_lookup(cls, paths: str | Path | Iterable[str | Path], process: str = "tt",
                    vdd_v: float | None = None, temp_c: float | None = None,
                    adc_bits: int | None = 6, rows: int | None = None,
                    adc_trim: str = "none") -> HardwareModel:
        """Read crossbar and ADC tables (one or several files) at one PVT point.

        Args:
            paths: Lookup file(s): a crossbar file and an ADC file, or one holding both.
            process: Process corner (exact match).
            vdd_v: Supply; default the nominal characterized point (1.8 V if characterized,
                else the middle of the range). Interpolated between characterized values.
            temp_c: Temperature; default 27 degC if characterized, else the middle.
            adc_bits: ADC resolution (must be characterized); None for no ADC tables.
            rows: The tile's rows, for a crossbar file with a ``rows`` axis (the column
                heights characterized): that column's tables are read, exactly (a height
                that was not characterized is refused, naming both); default 64 if
                characterized, else the file's ``default_rows``. Ignored for a file of one
                column height (``check_tile_rows`` refuses a taller tile).
            adc_trim: Offset trim of the ADC thresholds, ``ADC_TRIMS`` (default ``none``:
                the circuit as characterized; ``pedestal`` / ``offset`` are design options
                the user turns on; ``ADC_TRIM_STEP_LSB`` is an assumption).

        Raises:
            HardwareModelError: A needed table is missing or holds only failed points.
            ExtrapolationError: ``vdd_v``/``temp_c`` outside the characterized range.
            NotCharacterizedError: ``process`` not characterized (also a KeyError).
            LookupFormatError: A file is not a lookup file.
        """
        if adc_trim not in ADC_TRIMS:
            raise HardwareModelError(f"adc_trim={adc_trim!r}: expected one of {ADC_TRIMS}")
        if isinstance(paths, (str, Path)):
            paths = [paths]
        paths = [Path(p) for p in paths]
        tables = read_lookups(paths)
        src = ", ".join(str(p) for p in paths)

        def need(name: str) -> Table:
            if name not in tables:
                raise HardwareModelError(f"table {name!r} not found in {src}; tables there: "
                                         f"{sorted(tables)}")
            return tables[name]

        ref = need(CROSSBAR_READ_TRANSFER)
        vdd_v = _nominal(ref, "vdd_v", 1.8) if vdd_v is None else float(vdd_v)
        temp_c = _nominal(ref, "temp_c", 27.0) if temp_c is None else float(temp_c)
        where: dict[str, Any] = {"process": process, "vdd_v": vdd_v, "temp_c": temp_c}
        rows_axis: tuple[int, ...] = ()
        if "rows" in ref.dims:  # a rows axis: the tables of exactly the tile's column
            rows_axis = tuple(int(r) for r in ref.coords["rows"])
            want = int(rows) if rows is not None else (
                64 if 64 in rows_axis else int(ref.attrs.get("default_rows", rows_axis[-1])))
            if want not in rows_axis:
                raise HardwareModelError(
                    f"{src}: tile rows {want} not characterized; the crossbar file's rows axis "
                    f"holds columns of {list(rows_axis)} rows (pick one of them as the tile "
                    "rows, or characterize that height)", table=CROSSBAR_READ_TRANSFER)
            where["rows"] = want

        def at(t: Table, **more: Any) -> Table:
            sel = {k: v for k, v in where.items() if k in t.dims}
            try:
                out = t.sel(**sel, **more)
            except ExtrapolationError as e:
                raise ExtrapolationError(f"{src}: {e}") from None
            except KeyError as e:
                bad = [f"{d}={v!r} (characterized: {[_plain(c) for c in t.coords[d]]})"
                       for d, v in {**sel, **more}.items()
                       if d in t.dims and isinstance(v, str)
                       and v not in [str(_plain(c)) for c in t.coords[d]]]
                what = "; ".join(bad) if bad else (e.args[0] if e.args else repr(e))
                raise NotCharacterizedError(
                    f"{src}: table {t.name!r}: not characterized at {what}") from None
            if rows_axis and "rows" in t.dims:
                out = _rows_slice_attrs(out, rows_axis.index(where["rows"]))
            if "mc" in out.dims:  # a sweep's Monte-Carlo axis left in a per-point table
                out = Table(out.name, np.nanmean(out.data, axis=out.axis("mc")),
                            tuple(d for d in out.dims if d != "mc"),
                            {d: out.coords[d] for d in out.dims if d != "mc"}, out.units,
                            out.coord_units, out.attrs)
            if np.isnan(np.asarray(out.data, dtype=float)).all():
                raise HardwareModelError(f"{src}: table {t.name!r} has no valid value at "
                                         f"{where} (all points failed)")
            return out

        attrs = ref.attrs
        try:
            g_min, g_max = float(attrs["g_min_s"]), float(attrs["g_max_s"])
        except KeyError:
            raise HardwareModelError(f"{src}: table 'crossbar/read_transfer' lacks the "
                                     "g_min_s/g_max_s attributes") from None
        tr = at(ref)
        i_rel = np.asarray(tr.coords["i_ideal_rel"], float)
        mean = _clean(tr.sel(stat="mean_ratio").data, 1.0)
        std = _clean(tr.sel(stat="std_ratio").data, 0.0)
        rn = at(need(CROSSBAR_READ_NOISE))
        read_i = np.asarray(rn.coords["i_col_a"], float)
        read_sigma = np.asarray(rn.data, float)
        if rows_axis:  # currents above this column's full scale were not measured (missing)
            ok = np.isfinite(read_sigma)
            read_i, read_sigma = read_i[ok], read_sigma[ok]
        read_sigma = _clean(read_sigma, 0.0)
        cell_g_t = None
        if CROSSBAR_CELL_READ in tables:
            cell_g_t = np.asarray(at(tables[CROSSBAR_CELL_READ]).data, float)
            if not (np.isfinite(cell_g_t).all() and np.all(np.diff(cell_g_t) > 0)):
                raise HardwareModelError(f"{src}: table 'crossbar/cell_read' at {where} is not "
                                         f"finite and increasing over the levels: {cell_g_t}")
        fit = at(need(CROSSBAR_WRITE_NOISE_FIT))
        write_k = {str(m): float(fit.sel(mode=m, stat="k").data) for m in fit.coords["mode"]}
        write_k0 = ({str(m): float(fit.sel(mode=m, stat="k_zero_mean").data)
                     for m in fit.coords["mode"]}
                    if "k_zero_mean" in [str(x) for x in fit.coords["stat"]] else {})
        samples: dict[str, np.ndarray] = {}
        if CROSSBAR_WRITE_NOISE_SAMPLES in tables:
            t = tables[CROSSBAR_WRITE_NOISE_SAMPLES]
            ax = t.axis("sample")
            srt = Table(t.name, np.sort(t.data, axis=ax), t.dims, t.coords, t.units,
                        t.coord_units, t.attrs)  # NaN sorts last
            s = at(srt)
            for m in s.coords["mode"]:
                arr = np.asarray(s.sel(mode=m).data, float)  # (level, sample)
                ok = np.isfinite(arr).all(axis=0)
                if ok.sum() >= 2:
                    if cell_g_t is not None:  # read at T -> the state's tnom conductance
                        arr = g_min + (arr - cell_g_t[0]) / (cell_g_t[-1] - cell_g_t[0]) \
                            * (g_max - g_min)
                    samples[str(m)] = np.sort(arr[:, ok], axis=1)
        hw = cls(process, vdd_v, temp_c, adc_bits, g_min, g_max,
                 levels=int(attrs.get("levels", 4)), v_read_v=float(attrs.get("v_read_v", 0.2)),
                 rows=int(where["rows"]) if rows_axis else int(attrs.get("rows", 64)),
                 transfer_i_rel=i_rel, transfer_mean=mean,
                 transfer_std=std, cell_g_t_s=cell_g_t, read_i_a=read_i,
                 read_sigma_a=read_sigma, write_k=write_k, write_k_zero_mean=write_k0,
                 write_samples_s=samples, sources=tuple(str(p) for p in paths),
                 rows_axis=rows_axis)
        if CROSSBAR_READ_ENERGY in tables:  # energy per column read (nnsim.energy)
            re_t = at(tables[CROSSBAR_READ_ENERGY])
            if "rows" in re_t.dims:
                re_t = re_t.sel(rows=hw.rows)
            try:
                hw.read_energy = CrossbarReadEnergy.from_table(
                    re_t, f"{process}/{vdd_v:g} V/{temp_c:g} degC", src, vdd_v=vdd_v)
            except ValueError as e:
                raise HardwareModelError(str(e), table=CROSSBAR_READ_ENERGY) from None
        if adc_bits is not None:
            th_t = need(ADC_THRESHOLDS)
            check_same_grid(ref, th_t)
            avail = sorted(int(b) for b in th_t.coords["bits"])
            for b in avail:
                hw.adcs[b] = _read_adc(tables, at, b, src, adc_trim)
            hw.adc_trim = adc_trim
            if int(adc_bits) not in hw.adcs:
                raise HardwareModelError(f"{src}: ADC resolution {adc_bits} bits was not "
                                         f"characterized; available: {avail}")
        return hw

    def check_tile_rows(self, tile_rows: int) -> None:
        """Refuse tiles taller than the characterized column (the transfer and read-noise
        tables do not reach their currents); with a ``rows`` axis, any tile other than the
        column read (``from_lookup(..., rows=tile_rows)``).

        Raises:
            HardwareModelError: ``tile_rows`` > ``rows`` (or != ``rows`` with a rows axis),
                naming both and the files.
        """
        if self.sources and self.rows_axis and int(tile_rows) != self.rows:
            how = (f"read it with HardwareModel.from_lookup(..., rows={int(tile_rows)})"
                   if int(tile_rows) in self.rows_axis else
                   f"{int(tile_rows)} rows were not characterized")
            raise HardwareModelError(
                f"tile_rows={int(tile_rows)} but the tables read are those of the {self.rows}-"
                f"row column of the rows axis {list(self.rows_axis)} "
                f"({', '.join(self.sources)}): {how}", file=", ".join(self.sources),
                table="crossbar/read_transfer")
        if self.sources and int(tile_rows) > self.rows:
            raise HardwareModelError(
                f"tile_rows={int(tile_rows)} but the characterized column has {self.rows} rows "
                f"({', '.join(self.sources)}): its read transfer and read noise do not cover a "
                f"taller tile; characterize column.rows >= {int(tile_rows)} or use "
                f"tile_rows <= {self.rows}", file=", ".join(self.sources),
                table="crossbar/read_transfer")

    def adc(self, bits: int | None = None) -> AdcModel:
        """The ADC model at ``bits`` (default: the model's ``adc_bits``).

        Raises:
            HardwareModelError: That resolution was not characterized.
        """
        b = self.adc_bits if bits is None else int(bits)
        if b not in self.adcs:
            raise HardwareModelError(f"ADC resolution {b} bits not characterized; available: "
                                     f"{sorted(self.adcs)}")
        return self.adcs[b]

    def write_noise_k(self, mode: str = "single", *, zero_mean: bool = False) -> float:
        """Fitted ``k`` of ``G' = G + k sqrt((G-Gmin)(Gmax-Gmin)) N(0,1)`` for a write mode.

        ``zero_mean=False``: about the target (the ClipFormer/TxSim k; a programming bias is in
        its second moment). ``zero_mean=True``: about each level's mean
        (``write_noise_fit`` stat ``k_zero_mean``), the k to use when the per-level bias is
        added separately; files without it (before issue 13) raise.
        """
        if mode not in self.write_k:
            raise HardwareModelError(f"write mode {mode!r} not characterized; available: "
                                     f"{sorted(self.write_k)}")
        if zero_mean:
            if mode not in self.write_k_zero_mean:
                raise HardwareModelError(
                    f"{', '.join(self.sources) or 'the model'}: crossbar/write_noise_fit has no "
                    "k_zero_mean (a file from before issue 13); use the target-centred k")
            return self.write_k_zero_mean[mode]
        return self.write_k[mode]

    @property
    def i_full_a(self) -> float:
        """Full-scale column current of the characterized column (all rows at G_max)."""
        return self.rows * self.g_max_s * self.v_read_v

    def tensors(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The tables as tensors on ``device`` (cached)."""
        key = str(device)
        if key not in self._cache:
            def t(a: np.ndarray) -> torch.Tensor:
                return torch.as_tensor(np.asarray(a, np.float32), device=device)
            d = {"tr_x": t(self.transfer_i_rel), "tr_mean": t(self.transfer_mean),
                 "tr_std": t(self.transfer_std), "rn_x": t(self.read_i_a),
                 "rn_sigma": t(self.read_sigma_a)}
            for m, s in self.write_samples_s.items():
                d[f"samples_{m}"] = t(s)
            self._cache[key] = d
        return self._cache[key]

    @property
    def unit_a(self) -> float:
        """Current of one level unit: ``V_read (G_max - G_min) / (levels - 1)``."""
        return self.v_read_v * (self.g_max_s - self.g_min_s) / (self.levels - 1)

    def cell_map(self) -> tuple[float, float]:
        """``(a, b)``: the ideal column current at T in level units is
        ``a * S + b * n_active`` for level sum ``S`` of ``n_active`` active cells (the cells'
        G(T), linear in the state; ``(1, G_min/unit)`` without ``crossbar/cell_read``)."""
        n_lv = self.levels - 1
        dg = self.g_max_s - self.g_min_s
        if self.cell_g_t_s is None:
            return 1.0, self.g_min_s * n_lv / dg
        g = self.cell_g_t_s
        return float((g[-1] - g[0]) / dg), float(g[0] * n_lv / dg)

    @property
    def i_full_t_a(self) -> float:
        """Full scale of the transfer table's axis: all rows at the top level, at T."""
        g_top = self.g_max_s if self.cell_g_t_s is None else float(self.cell_g_t_s[-1])
        return self.rows * g_top * self.v_read_v

    READOUT_STEPS = 400
    """Uniform grid steps over the tables' ranges of ``readout_tables``: the tables' knots lie
    on it (``i_ideal_rel`` in 0.1 steps, read-noise currents at multiples of 1/400 of full
    scale), so the piecewise-linear interpolation there is the table's own."""

    def readout_tables(self, device: torch.device | str) -> dict[str, Any]:
        """Column transfer and read noise on uniform grids, for ``readout_terms`` (cached):
        the tables' piecewise-linear interpolants, no fit."""
        key = ("readout", str(device))
        if key not in self._cache:
            n = self.READOUT_STEPS
            x = np.linspace(0.0, 1.0, n + 1)
            mean = np.interp(x, self.transfer_i_rel, self.transfer_mean)
            std = np.interp(x, self.transfer_i_rel, self.transfer_std)
            i_hi = max(float(np.max(self.read_i_a)), self.i_full_t_a, self.i_full_a)
            xi = np.linspace(0.0, i_hi, n + 1)
            sig = np.interp(xi, self.read_i_a, self.read_sigma_a)
            a, b = self.cell_map()

            def t(v: np.ndarray) -> torch.Tensor:
                return torch.as_tensor(np.asarray(v, np.float32), device=device)

            self._cache[key] = dict(
                a=a, b=b, n=n, mean=t(mean), std=t(std), sigma=t(sig / self.unit_a),
                rel_per_u=self.unit_a / self.i_full_t_a * n,  # grid index per level unit
                noise_per_u=self.unit_a / i_hi * n, u_max=self.i_full_t_a / self.unit_a)
        return self._cache[key]

    def readout_terms(self, u_t: torch.Tensor, *, gain: bool = True, read: bool = True,
                      spread: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None,
                                                    torch.Tensor | None]:
        """Transfer gain, read-noise sigma and transfer-spread sigma at column currents.

        Args:
            u_t: Ideal column currents at T in level units (``cell_map``).

        Returns:
            ``(gain, sigma_read, sigma_spread)`` (None where not asked): the mean ratio
            actual / ideal (piecewise linear in ``crossbar/read_transfer``), the read-noise
            sigma at the sensed current and the transfer spread (``std_ratio`` x sensed
            current), both in level units.
        """
        if not (gain or read or spread):
            return None, None, None
        tb = self.readout_tables(u_t.device)

        def segment(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            i = idx.floor().clamp_(max=tb["n"] - 1)
            f = idx - i
            i = i.long()
            return i, i + 1, f

        def pwl(v: torch.Tensor, seg: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
                ) -> torch.Tensor:
            i, i1, f = seg
            v0 = v.take(i)
            return v0 + f * (v.take(i1) - v0)

        # the transfer mean and its spread share one segment search (same abscissa)
        seg = segment((u_t * tb["rel_per_u"]).clamp_(0.0, float(tb["n"])))
        g = pwl(tb["mean"], seg)
        u_s = u_t * g
        s_read = pwl(tb["sigma"], segment((u_s * tb["noise_per_u"]).clamp_(
            0.0, float(tb["n"])))) if read else None
        s_spread = pwl(tb["std"], seg) * u_s if spread else None
        return (g if gain else None), s_read, s_spread

    FUSED_STEPS = 8192
    """Uniform grid steps of ``fused_readout`` over the column currents its tables reach."""

    def fused_readout(self, device: torch.device | str, *, gain: bool = True,
                      read: bool = True, spread: bool = True) -> dict[str, Any]:
        """The read transfer as one table per term on a fine uniform grid of the ideal
        current at T (level units), for ``fused_terms`` (cached per device and flags).

        Per grid current ``u`` (float64, then float32): the sensed mean ``u g(u)`` (``g`` the
        piecewise-linear ``crossbar/read_transfer`` mean ratio, 1 with ``gain=False``), the
        spread sigma ``std_ratio(u) u g(u)`` and the read-noise sigma at the sensed current
        ``u g(u)`` (piecewise linear in ``crossbar/read_noise``), the same functions
        ``readout_terms`` evaluates, resampled; each is stored as intercept and slope per grid
        cell (``value = a[i] + idx b[i]``, ``idx = u / step``), so a lookup is one multiply, one
        truncation and two gathers per term, no segment search. The grid ends where every term
        is linear in ``u`` (the tables clamp beyond their last knot), so the last cell
        extrapolates exactly; with uniformly spaced transfer knots (the presets' tables) every
        knot is a grid point, so the transfer comes back exactly there.
        """
        key = ("fused", str(device), bool(gain), bool(read), bool(spread))
        if key in self._cache:
            return self._cache[key]
        n = self.FUSED_STEPS
        u_full_t = self.i_full_t_a / self.unit_a
        tr_x = np.asarray(self.transfer_i_rel, float)
        g_min = float(np.min(self.transfer_mean))  # the read noise sees u g(u) always
        u_hi = max(float(tr_x[-1]) * u_full_t, float(np.max(self.read_i_a)) / self.unit_a
                   / max(g_min, 1e-3), self.i_full_a / self.unit_a, 1.0) * 1.01
        d_tr = np.diff(tr_x) * u_full_t
        if tr_x.size > 2 and abs(tr_x[0]) < 1e-12 and np.allclose(d_tr, d_tr[0], rtol=1e-9):
            # uniform knots from 0 (the quick/full presets): put every knot on the grid
            k = int(np.ceil(u_hi / d_tr[0] - 1e-9))
            u_hi = k * float(d_tr[0])
            n = k * max(1, int(np.ceil(n / k)))
        u = np.linspace(0.0, u_hi, n + 1)
        rel = u / u_full_t
        g_all = np.interp(rel, tr_x, self.transfer_mean)
        g = g_all if gain else np.ones_like(u)
        u_s = u * g_all  # read noise at the sensed current (the transfer's mean), as before
        terms = {"mean": u * g}
        if spread:
            terms["spread"] = np.interp(rel, tr_x, self.transfer_std) * u * g_all
        if read:
            terms["read"] = np.interp(u_s * self.unit_a, self.read_i_a,
                                      self.read_sigma_a) / self.unit_a
        out: dict[str, Any] = {"n": n, "per_u": n / u_hi, "u_hi": u_hi,
                               "names": tuple(terms)}
        i = np.arange(n + 1, dtype=float)
        a_cols, b_cols = [], []
        for v in terms.values():
            b = np.append(np.diff(v), v[-1] - v[-2])
            a_cols.append((v - i * b)[:n])
            b_cols.append(b[:n])
        out["a"] = [torch.as_tensor(c.astype(np.float32), device=device) for c in a_cols]
        out["b"] = [torch.as_tensor(c.astype(np.float32), device=device) for c in b_cols]
        self._cache[key] = out
        return out

    @staticmethod
    def fused_terms(u_t: torch.Tensor, tb: dict[str, Any]) -> list[torch.Tensor]:
        """The ``fused_readout`` terms at ideal currents ``u_t`` (level units at T), in the
        order of ``tb["names"]``: ``a[i] + idx b[i]`` with ``idx = u_t / step``, ``i`` its
        cell (one truncation; two 1-D gathers per term)."""
        idx = (u_t * tb["per_u"]).clamp_(min=0.0)
        i = idx.to(torch.int32).clamp_(max=tb["n"] - 1).reshape(-1)
        return [torch.addcmul(a.index_select(0, i).view(idx.shape), idx,
                              b.index_select(0, i).view(idx.shape))
                for a, b in zip(tb["a"], tb["b"], strict=True)]

    def summary(self) -> dict[str, Any]:
        """JSON-able description of the point and the derived numbers."""
        out: dict[str, Any] = dict(
            process=self.process, vdd_v=self.vdd_v, temp_c=self.temp_c, adc_bits=self.adc_bits,
            g_min_s=self.g_min_s, g_max_s=self.g_max_s, levels=self.levels, rows=self.rows,
            v_read_v=self.v_read_v, write_noise_k=dict(self.write_k),
            cell_g_t_s=None if self.cell_g_t_s is None else [float(g) for g in self.cell_g_t_s],
            write_noise_samples=sorted(self.write_samples_s), sources=list(self.sources),
            transfer_mean_ratio_range=[float(np.min(self.transfer_mean)),
                                       float(np.max(self.transfer_mean))],
            read_noise_sigma_max_a=float(np.max(self.read_sigma_a)),
            crossbar_read_energy_j=None if self.read_energy is None
            else dict(self.read_energy.parts_j), adc_trim=self.adc_trim)
        if self.adc_bits in self.adcs:
            a = self.adcs[self.adc_bits]
            out["adc"] = dict(bits=a.bits, instances=a.instances, noise_lsb=a.noise_lsb,
                              energy_j=_num(a.energy_j),
                              conversion_time_s=_num(a.conversion_time_s),
                              code_offset=a.code_offset,
                              energy_parts_j=dict(a.energy_parts_j),
                              energy_sources=dict(a.energy_sources), trim=a.trim,
                              trim_lsb=None if a.trim_lsb is None
                              else [float(v) for v in a.trim_lsb])
        return out


def _rows_slice_attrs(t: Table, i: int) -> Table:
    """A table sliced at the ``i``-th height of a rows axis, with its per-height attributes
    (``per_rows_attrs``: JSON lists along rows) replaced by that height's values."""
    import json

    def plain(v: Any) -> Any:  # a JSON text, or what the reader decoded it to
        if isinstance(v, str):
            try:
                return json.loads(v)
            except ValueError:
                return v
        return v.tolist() if isinstance(v, np.ndarray) else v

    attrs = dict(t.attrs)
    for a in plain(t.attrs.get("per_rows_attrs", "[]")):
        v = plain(attrs.get(a))
        if isinstance(v, list):
            x = v[i]
            attrs[a] = json.dumps(x) if isinstance(x, (list, dict)) else x
    return Table(t.name, t.data, t.dims, t.coords, t.units, t.coord_units, attrs, t.status)


def pvt_grid(t: Table) -> dict[str, list[Any]]:
    """A table's PVT grid: ``process``, ``vdd_v``, ``temp_c`` coordinates (plain values)."""
    return {d: [_plain(c) for c in t.coords[d]] for d in _PVT if d in t.dims}


def check_same_grid(xbar: Table, adc: Table) -> None:
    """The crossbar and ADC characterizations must share one PVT grid (each preset has one):
    a point characterized in one file and not in the other cannot be evaluated.

    Raises:
        HardwareModelError: The grids differ, naming both.
    """
    gx, ga = pvt_grid(xbar), pvt_grid(adc)
    norm = {d: sorted(str(v) if d == "process" else round(float(v), 9) for v in vals)
            for d, vals in gx.items()}
    norm_a = {d: sorted(str(v) if d == "process" else round(float(v), 9) for v in vals)
              for d, vals in ga.items()}
    if norm != norm_a:
        raise HardwareModelError(
            f"the crossbar and ADC lookups were characterized on different PVT grids: "
            f"{xbar.name} {gx} vs {adc.name} {ga}; characterize both with the same preset "
            "(one PVT grid per preset) or the same process/vdd_v/temp_c in their plans",
            table=f"{xbar.name}, {adc.name}")


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def _nominal(t: Table, dim: str, preferred: float) -> float:
    c = np.asarray(t.coords[dim], float)
    if c.min() <= preferred <= c.max():
        return preferred
    return float(np.sort(c)[c.size // 2])


def _clean(a: Any, fill: float) -> np.ndarray:
    a = np.asarray(a, float)
    if np.isnan(a).any():
        ok = np.isfinite(a)
        if not ok.any():
            return np.full_like(a, fill)
        idx = np.arange(a.size)
        a = np.interp(idx, idx[ok], a[ok])
    return a


def _scalar(tables: dict[str, Table], at: Any, name: str, bits: int) -> float:
    if name not in tables:
        return float("nan")
    return float(np.nanmean(np.asarray(at(tables[name], bits=bits).data, float)))


def _read_adc(tables: dict[str, Table], at: Any, bits: int, src: str,
              trim: str = "none") -> AdcModel:
    th = at(tables[ADC_THRESHOLDS], bits=bits)
    inst_dim = "instance" if "instance" in th.dims else "mc"
    data = np.asarray(th.data, float)
    if th.dims.index(inst_dim) != 0:
        data = data.T
    n = 2 ** bits - 1
    data = data[:, :n]
    ok = np.isfinite(data).all(axis=1)
    if not ok.any():
        raise HardwareModelError(f"{src}: adc/thresholds at {bits} bits has no instance with "
                                 f"all {n} thresholds (all failed?)")
    if not ok.all():
        warnings.warn(f"{src}: adc/thresholds at {bits} bits: {int((~ok).sum())} of "
                      f"{ok.size} instances have NaN thresholds and are left out", stacklevel=3)
    data = np.maximum.accumulate(data[ok], axis=1)  # monotone, as a SAR transfer is
    trim_lsb = None
    if trim != "none":  # ADC_TRIMS: a design option, subtracted from every threshold
        name = ADC_SAMPLING_PEDESTAL_LSB if trim == "pedestal" else ADC_OFFSET_LSB
        if name not in tables:
            raise HardwareModelError(f"{src}: adc_trim={trim!r} needs table {name!r}, which "
                                     "the ADC file does not hold", table=name)
        v = np.asarray(at(tables[name], bits=bits).data, float)
        if trim == "pedestal":
            trim_lsb = np.full(int(ok.sum()), float(np.mean(v)))
        else:  # per instance, through the trim DAC (ADC_TRIM_STEP_LSB, an assumption)
            v = v.reshape(-1)
            if v.size != ok.size:
                raise HardwareModelError(f"{src}: {name} at {bits} bits has {v.size} "
                                         f"instances, adc/thresholds {ok.size}", table=name)
            trim_lsb = np.round(v[ok] / ADC_TRIM_STEP_LSB) * ADC_TRIM_STEP_LSB
        if not np.isfinite(trim_lsb).all():
            raise HardwareModelError(f"{src}: {name} at {bits} bits is not finite: {v}",
                                     table=name)
        data = data - trim_lsb[:, None]
    # Threshold convention (ideal transition at k - 0.5 or at k): one reader for every
    # consumer, characterization.adc.convention (the attribute the writer stores; files
    # without it are judged from the data, with a warning).
    try:
        k_minus = ideal_threshold_k_minus(th.attrs, data, source=f"{src}: adc/thresholds")
    except ValueError as e:
        raise HardwareModelError(str(e)) from e
    code_offset = 0.5 - k_minus
    noise = _scalar(tables, at, ADC_NOISE_LSB, bits)
    parts: dict[str, float] = {}
    sources: dict[str, str] = {}
    if ADC_ENERGY_BREAKDOWN_J in tables:
        eb = at(tables[ADC_ENERGY_BREAKDOWN_J], bits=bits)  # (part,)
        for p, e in zip(eb.coords["part"], np.asarray(eb.data, float).reshape(-1), strict=True):
            parts[str(p)] = float(e)
            sources[str(p)] = str(eb.attrs.get(f"source_{p}", "not stated in the file"))
    return AdcModel(bits, data, 0.0 if not math.isfinite(noise) else noise,
                    _scalar(tables, at, ADC_ENERGY_J, bits),
                    _scalar(tables, at, ADC_CONVERSION_TIME_S, bits), code_offset,
                    parts, sources, trim, trim_lsb)


def available_points(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The characterized corners, supplies, temperatures and ADC resolutions in files."""
    try:
        tables = read_lookups(paths)
    except LookupFormatError:
        raise
    out: dict[str, Any] = {}
    for name in (CROSSBAR_READ_TRANSFER, ADC_THRESHOLDS):
        if name in tables:
            t = tables[name]
            out[name] = {d: [x.item() if hasattr(x, "item") else x for x in t.coords[d]]
                         for d in (*_PVT, "bits") if d in t.dims}
    return out
