"""Accuracy over simulated chips (mean and 95 % interval), paired comparisons, ClipFormer
calibration.

A chip is one ``program_chip(model, seed)``: its static weights are programmed once (write
noise), its column ADCs get Monte-Carlo instances, and its per-inference noise is seeded. The
chip seeds are spawned from one root seed with ``numpy.random.SeedSequence`` and recorded;
every setting of a sweep uses the same seeds and the same images, so settings are paired
(``compare``, ``sweep_comparisons``). Intervals resample chips and images (``nnsim.stats``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .analog import AnalogConfig, readout_paths
from .convert import (
    calibrate_moment,
    chip_batch_supported,
    conversions,
    convert_to_analog,
    kv_ranges_digital,
    program_chip,
    program_chips,
    set_config,
    set_kv_ranges,
)
from .data import make_loader
from .energy import energy_per_inference
from .errors import CalibrationError
from .hardware import HardwareModel
from .models import accuracy
from .results import Comparison, EvalPoint
from .stats import N_BOOT, bootstrap_ci, chip_warning, paired_difference


def ci95(values: Sequence[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student t); NaN for n < 2."""
    v = np.asarray(values, float)
    if v.size < 2:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


def chip_seeds(seed: int, chips: int) -> list[int]:
    """The chips' seeds, spawned from ``seed``."""
    return [int(s.generate_state(1, dtype=np.uint64)[0] % (2 ** 63))
            for s in np.random.SeedSequence(seed).spawn(chips)]


def accuracy_on(model: nn.Module, ds: Any, batch_size: int = 256,
                device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy (fraction)."""
    return accuracy(model, ds, batch_size, device)


#: Digital forwards over the test images timed for ``timing["digital_s"]``, which records
#: the fastest: one forward is noisy (a busy core, first-call allocations, page faults).
DIGITAL_REPEATS = 3
#: A further timed digital forward runs only while all of them together (the next one
#: estimated by the fastest so far) stay within this many seconds: a large model's one
#: slow forward is not repeated.
DIGITAL_TIMING_BUDGET_S = 5.0


def digital_reference(model: nn.Module, ds: Any, batch_size: int = 256,
                      device: str | torch.device = "cpu", *, repeats: int = DIGITAL_REPEATS,
                      budget_s: float = DIGITAL_TIMING_BUDGET_S) -> tuple[float, list[float]]:
    """(top-1 accuracy, seconds of each timed digital forward over ``ds``).

    The first forward gives the accuracy (the model is deterministic: a repeat gives the same);
    up to ``repeats`` forwards are timed, a further one only while the forwards so far plus
    one more (the fastest so far) fit ``budget_s``. ``min`` of the times is the recorded
    ``timing["digital_s"]``.
    """
    t = time.perf_counter()
    acc = accuracy_on(model, ds, batch_size, device)
    times = [time.perf_counter() - t]
    while len(times) < repeats and sum(times) + min(times) <= budget_s:
        t = time.perf_counter()
        accuracy_on(model, ds, batch_size, device)
        times.append(time.perf_counter() - t)
    return acc, times


def evaluate_chips(model: nn.Module, hw: HardwareModel, config: AnalogConfig, test_ds: Any, *,
                   chips: int = 5, seed: int = 0, batch_size: int = 256,
                   device: str | torch.device = "cpu", quiet: bool = True,
                   analog: nn.Module | None = None, digital_accuracy: float | None = None,
                   calib_ds: Any = None, digital_s: float | None = None,
                   client: Any = None, kv_ranges: dict[str, list[float]] | None = None,
                   moment_calib_images: int = 64, setting: dict[str, Any] | None = None,
                   cache: EvalCache | None = None, chip_batch: int = 1,
                   digital_repeats_s: Sequence[float] | None = None) -> EvalPoint:
    """Accuracy of ``model`` on ``chips`` simulated chips.

    Args:
        model: Digital model (converted here unless ``analog`` is given).
        hw: Hardware model.
        config: Simulation settings.
        test_ds: Dataset to score.
        chips: Number of chips.
        seed: Root seed of the chips.
        batch_size: Images per forward.
        device: ``cpu`` or ``cuda``.
        quiet: No progress bar.
        analog: An already converted model to reuse (its config is replaced by ``config``).
        digital_accuracy: Skip scoring the digital model when known.
        calib_ds: Held-out split for ``kv_range="calibrated"`` (K/V ranges recorded once).
        digital_s: Seconds of the digital forward over ``test_ds`` when already measured
            (otherwise measured here, ``digital_reference``: the fastest of up to
            ``DIGITAL_REPEATS`` forwards).
        digital_repeats_s: The timed digital forwards (``digital_reference``) when already
            measured: ``digital_s`` is their minimum.
        client: A ``distributed.Client``: each chip is one task on its cluster
            (``nnsim.distributed``), results identical to the local loop.
        kv_ranges: ``kv_range="calibrated"``: per-layer K/V ranges to use (from
            ``convert.kv_ranges_digital``; computed here from ``calib_ds`` when absent), so
            every setting of a sweep maps K/V with the same ranges.
        moment_calib_images: ``fidelity="moment"``: calibration images that set each
            layer's readout variance (``convert.calibrate_moment``, on the first chip).
        setting: The swept point (process, vdd_v, temp_c, bits, gamma, clipformer, method),
            recorded and used to pair settings in ``sweep_comparisons``.
        cache: An ``EvalCache`` (default: the one ``shared_evaluations()`` holds open, if
            any): a setting evaluated before with everything that determines its result equal
            (model, hardware, configuration, images, chips, seed, batch size, device, K/V
            ranges) is returned from it, identical, with ``timing["reused"]`` true. Not used
            with ``analog`` or ``client``.
        chip_batch: Chips simulated in one forward (``convert.program_chips``: the images of
            ``chip_batch`` chips as one batch, each chip with its own programmed arrays and
            generators), where the configuration has such a path
            (``convert.chip_batch_supported``: ``moment`` above ``MOMENT_EXACT_BITS`` ADC
            bits); elsewhere the chips run one after another. Same accuracies per chip as
            the loop (up to float rounding of the batched matmuls); not part of the cache
            key. ``timing["chip_batch"]`` records the batch used.

    Returns:
        An ``EvalPoint`` (``nnsim.results``): ``accuracy_mean``, ``accuracy_ci95``
        (``[low, high]``, bootstrap over chips and images), ``accuracies``, ``chips``,
        ``chip_seeds``, ``digital_accuracy``, ``conversions_per_inference``,
        ``adc_energy_j_per_inference``, ``warnings`` (fewer than 3 chips), ``timing``
        (``digital_s``: the fastest digital forward over ``test_ds`` of those in
        ``digital_repeats_s``; ``per_chip_s``: mean seconds per simulated chip, programming
        and scoring), and the per-image ``correct`` matrix.

    Raises:
        CalibrationError: ``kv_range="calibrated"`` or ``fidelity="moment"`` without
            ``calib_ds``.
    """
    cache = cache if cache is not None else _ACTIVE_CACHE
    key = None
    if cache is not None and analog is None and client is None:
        key = cache.key("point", model, hw, config, test_ds, calib_ds, chips, seed, batch_size,
                        str(device), kv_ranges, moment_calib_images)
        hit = cache.point(key, setting)
        if hit is not None:
            return hit
    t0 = time.perf_counter()
    model = model.to(device).eval()
    if digital_repeats_s is not None:
        digital_repeats_s = [float(x) for x in digital_repeats_s]
        digital_s = min(digital_repeats_s)
    if digital_accuracy is None or digital_s is None:
        digital_accuracy, digital_repeats_s = digital_reference(model, test_ds, batch_size,
                                                                device)
        digital_s = min(digital_repeats_s)
    elif digital_repeats_s is None:
        digital_repeats_s = [float(digital_s)]
    if analog is None:
        analog = convert_to_analog(model, hw, config, seed=None).to(device)
    else:
        set_config(analog, config)
    seeds = chip_seeds(seed, chips)
    calibration: dict[str, Any] = {}
    if config.kv_range == "calibrated":
        if kv_ranges is None and not _has_kv_ranges(analog):
            kv_ranges = kv_ranges_digital(model, _images(calib_ds, batch_size, device,
                                                         "kv_range='calibrated'"))
        if kv_ranges is not None:
            set_kv_ranges(analog, kv_ranges)
        calibration["kv_ranges"] = kv_ranges
    if config.fidelity == "moment" and config.nonideal_readout:
        def calibrate() -> dict[str, dict[str, float]]:
            program_chip(analog, seeds[0])
            return calibrate_moment(
                analog, _images(calib_ds, batch_size, device, "fidelity='moment'",
                                limit=moment_calib_images), seed=seed)

        # the factors depend on the model, hardware, config, calibration images, K/V ranges
        # and the root seed (first chip, draws), not on the chip count or the test images:
        # a setting evaluated on other chips or images reuses them (identical values)
        mkey = cache.key("moment", model, hw, config, calib_ds, seed, batch_size, str(device),
                         calibration.get("kv_ranges"), moment_calib_images) \
            if cache is not None and key is not None else None
        scales = cache.memo(mkey, calibrate) if mkey is not None else calibrate()
        _set_moment_scales(analog, scales)
        calibration["moment_var_scale"] = scales
    it = seeds
    if not quiet:
        from tqdm import tqdm

        it = tqdm(seeds, desc=_label(config, hw), unit="chip", leave=False)
    chip_s: list[float] = []
    correct: np.ndarray | None
    if client is not None:
        from .distributed import run_chips

        runs = run_chips(client, model, hw, config, analog, test_ds, seeds,
                         batch_size=batch_size, device=str(device))
        accs = [r["accuracy"] for r in runs]
        chip_s = [r["seconds"] for r in runs]
        n_conv = sum(r["conversions"] for r in runs) / max(1, chips * len(test_ds))
        rows = [r.get("correct") for r in runs]
        correct = np.stack([np.asarray(c, bool) for c in rows]) if all(
            c is not None for c in rows) else None
    else:
        conversions(analog, reset=True)
        readout_paths(reset=True)
        per_chip = []
        nb = max(1, int(chip_batch)) if chip_batch_supported(config, hw) else 1
        if nb > 1:
            for i in range(0, len(seeds), nb):
                tc = time.perf_counter()
                grp = seeds[i:i + nb]
                program_chips(analog, grp)
                per_chip += list(correct_on_chips(analog, test_ds, len(grp), batch_size,
                                                  device))
                chip_s += [(time.perf_counter() - tc) / len(grp)] * len(grp)
            program_chip(analog, seeds[-1])  # back to one chip (the last, as the loop)
        else:
            for s in it:
                tc = time.perf_counter()
                program_chip(analog, s)
                per_chip.append(correct_on(analog, test_ds, batch_size, device))
                chip_s.append(time.perf_counter() - tc)
        correct = np.stack(per_chip)
        accs = [float(c.mean()) for c in per_chip]
        n_conv = conversions(analog) / max(1, chips * len(test_ds))
    if correct is not None:
        mean, ci, msgs = bootstrap_ci(correct, seed=seed)
        method = f"bootstrap over chips and images ({N_BOOT} resamples)"
    else:  # per-image results not returned: chips only
        mean, half = float(np.mean(accs)), ci95(accs)
        ci = [mean - half, mean + half] if math.isfinite(half) else [None, None]
        method, msgs = "Student t over chips (images not resampled)", chip_warning(chips)
    adc = hw.adcs.get(hw.adc_bits) if config.adc else None
    energy = n_conv * adc.energy_j if adc is not None and math.isfinite(adc.energy_j) else None
    # ADC parts x conversions + crossbar read parts x column reads (one per conversion here)
    # the crossbar parts scaled by the simulated reads where the table allows it (bit mode,
    # local: mean ideal column current and active rows of the conversions simulated here)
    rp = readout_paths() if client is None else {}
    n_read = rp.get("c", 0) + rp.get("torch", 0)
    breakdown = energy_per_inference(
        n_conv, adc, hw.read_energy,
        mean_column_current_a=rp["current_a"] / n_read if n_read else None,
        mean_active_rows=rp["active_rows"] / n_read if n_read else None)
    if breakdown is not None:
        breakdown["simulated_read"] = {
            "mean_column_current_a": rp["current_a"] / n_read if n_read else None,
            "mean_active_rows": rp["active_rows"] / n_read if n_read else None,
            "column_reads": n_read}
    point = EvalPoint(
        accuracy_mean=mean, accuracy_ci95=ci, ci_method=method,
        accuracies=[float(a) for a in accs], chips=chips, chip_seeds=seeds, seed=seed,
        n_images=len(test_ds), digital_accuracy=float(digital_accuracy),
        conversions_per_inference=n_conv, adc_energy_j_per_inference=energy,
        config=config.to_dict(), hardware=hw.summary(), setting=dict(setting or {}),
        digital=_digital_parts(config), warnings=msgs, calibration=calibration,
        time_s=time.perf_counter() - t0,
        timing={"digital_s": digital_s, "digital_repeats_s": digital_repeats_s,
                "per_chip_s": float(np.mean(chip_s)) if chip_s
                else None, "chips_s": chip_s, "distributed": client is not None,
                "readout_kernel": _readout_path(client),
                "chip_batch": nb if client is None else 1},
        energy_per_inference=breakdown, correct=correct)
    if key is not None:
        cache.store(key, point)
    return point


def _readout_path(client: Any) -> str | None:
    """Which readout the bit-mode conversions of this evaluation took: ``"c"`` (the fused C
    kernel), ``"torch"``, ``"c+torch"``; None where none ran here (moment mode, Dask)."""
    if client is not None:
        return None
    p = readout_paths()
    return "+".join(k for k in ("c", "torch") if p[k]) or None


def correct_on(model: nn.Module, ds: Any, batch_size: int = 256,
               device: str | torch.device = "cpu") -> np.ndarray:
    """Per image of ``ds`` (in order), whether ``model``'s top-1 class is right (bool)."""
    model.eval()
    out = []
    with torch.no_grad():
        for x, y in make_loader(ds, batch_size):
            out.append((model(x.to(device)).argmax(-1).cpu() == y).numpy())
    return np.concatenate(out) if out else np.zeros(0, bool)


def correct_on_chips(model: nn.Module, ds: Any, chips: int, batch_size: int = 256,
                     device: str | torch.device = "cpu") -> np.ndarray:
    """``correct_on`` for a chip batch (``convert.program_chips`` with ``chips`` chips): each
    batch of images is repeated once per chip and run in one forward; (chips, images)."""
    model.eval()
    out = []
    with torch.no_grad():
        for x, y in make_loader(ds, batch_size):
            xr = x.to(device).repeat(chips, *([1] * (x.dim() - 1)))
            pred = model(xr).argmax(-1).cpu().reshape(chips, -1)
            out.append((pred == y[None]).numpy())
    return np.concatenate(out, 1) if out else np.zeros((chips, 0), bool)


def compare(a: EvalPoint, b: EvalPoint, name: str, *, seed: int = 0) -> Comparison:
    """Paired difference ``a - b`` (same chip seeds, same images): bootstrap over chips and
    images with the same resamples for both.

    Raises:
        ValueError: Not the same chips or images, or per-image results missing.
    """
    if a.chip_seeds != b.chip_seeds or a.n_images != b.n_images:
        raise ValueError(f"{name}: not paired (chip seeds {a.chip_seeds} vs {b.chip_seeds}, "
                         f"images {a.n_images} vs {b.n_images})")
    if a.correct is None or b.correct is None:
        raise ValueError(f"{name}: per-image results missing")
    d, ci, msgs = paired_difference(a.correct, b.correct, seed=seed)
    return Comparison(name=name, a=a.label, b=b.label, difference_mean=d, difference_ci95=ci,
                      ci_method=f"paired bootstrap over chips and images ({N_BOOT} resamples)",
                      chips=a.chips, n_images=a.n_images, chip_seeds=list(a.chip_seeds),
                      warnings=msgs)


_PAIR_KEYS = ("process", "vdd_v", "temp_c", "bits", "gamma", "clipformer", "method")


def sweep_comparisons(points: Sequence[EvalPoint], *, seed: int = 0) -> list[Comparison]:
    """The paired comparisons a sweep supports: "clipformer vs none" (same point otherwise),
    and for each other swept axis (corner, supply, temperature, bits, gamma) each value
    against the first one, everything else equal."""
    out = []
    pts = [p for p in points if p.correct is not None]

    def key(p: EvalPoint, drop: str) -> tuple:
        return tuple(str(p.setting.get(k)) for k in _PAIR_KEYS if k != drop)

    for axis in _PAIR_KEYS:
        groups: dict[tuple, list[EvalPoint]] = {}
        for p in pts:
            groups.setdefault(key(p, axis), []).append(p)
        for grp in groups.values():
            if len(grp) < 2:
                continue
            if axis == "clipformer":
                base = [p for p in grp if not p.setting.get("clipformer")]
                for p in grp:
                    if p.setting.get("clipformer") and base:
                        out.append(compare(p, base[0], "clipformer vs none", seed=seed))
                continue
            ref = grp[0]
            for p in grp[1:]:
                nm = {"process": "corner"}.get(axis, axis)
                out.append(compare(p, ref, f"{nm} {p.setting.get(axis)} vs "
                                   f"{ref.setting.get(axis)}", seed=seed))
    return out


def _digital_parts(config: AnalogConfig) -> list[str]:
    parts = ["softmax", "layernorm", "gelu", "residual adds", "patch embedding"]
    if not config.static:
        parts.append("static linears (qkv, proj, fc1, fc2)")
    if not config.attention:
        parts.append("attention products (Q K^T, S V)")
    if not config.convert_head:
        parts.append("classifier head")
    return parts


def _set_moment_scales(analog: nn.Module, scales: dict[str, dict[str, float]]) -> None:
    """Give each analog layer the variance factors ``calibrate_moment`` returned."""
    for n, m in analog.named_modules():
        if n in scales and hasattr(m, "moment_scale"):
            m.moment_scale = {int(k): float(v) for k, v in scales[n].items()}


def _has_kv_ranges(analog: nn.Module) -> bool:
    return any(getattr(m, "kv_max", None) for m in analog.modules())


def _images(ds: Any, batch_size: int, device: str | torch.device, what: str,
            limit: int | None = None) -> Any:
    if ds is None:
        raise CalibrationError(f"{what} needs a calibration split (calib_ds); the test "
                               "images are never used to calibrate")
    if limit is not None and len(ds) > limit:
        ds = ds.subset(limit) if hasattr(ds, "subset") else \
            torch.utils.data.Subset(ds, range(limit))
    return (x.to(device) for x, _ in make_loader(ds, batch_size))


def _label(config: AnalogConfig, hw: HardwareModel) -> str:
    c = f" clip{config.clipformer}" if config.clipformer else ""
    return f"{hw.process} {hw.vdd_v:g}V {hw.temp_c:g}C {hw.adc_bits}b g{config.gamma:g}{c}"


def _nan_none(x: float) -> float | None:
    return None if not math.isfinite(x) else x


CALIB_SEED_OFFSET = 1_000_003
"""Root seed offset of the chips used to choose ClipFormer's alpha/beta."""


def calibrate_clipformer(model: nn.Module, hw: HardwareModel, config: AnalogConfig,
                         calib_ds: Any, *, alphas: Sequence[float] = (1.0, 2.0, 4.0),
                         betas: Sequence[float] = (0.25, 0.35, 0.5, 0.75, 1.0),
                         chips: int = 2, seed: int = 0, batch_size: int = 256,
                         device: str | torch.device = "cpu", quiet: bool = True
                         ) -> dict[str, Any]:
    """Pick ClipFormer's (alpha, beta) by accuracy on a held-out split (never the test split).

    The chips of the search are not those of the test evaluation (root seed
    ``seed + CALIB_SEED_OFFSET``): alpha and beta are a design choice, not fitted per chip.

    Returns:
        ``{"alpha", "beta", "accuracy", "grid": [{"alpha", "beta", "accuracy_mean"}...]}``,
        the best point first by mean accuracy (ties: the milder clip, larger beta).
    """
    analog = convert_to_analog(model.to(device), hw, config, seed=None).to(device)
    kv = None
    if config.kv_range == "calibrated":
        kv = kv_ranges_digital(model, _images(calib_ds, batch_size, device, "kv_range"))
    grid = []
    dig = accuracy_on(model, calib_ds, batch_size, device)
    cseed = seed + CALIB_SEED_OFFSET
    for a in alphas:
        for b in betas:
            cfg = dataclasses.replace(config, clipformer=(float(a), float(b)))
            r = evaluate_chips(model, hw, cfg, calib_ds, chips=chips, seed=cseed,
                               batch_size=batch_size, device=device, quiet=quiet,
                               analog=analog, digital_accuracy=dig, digital_s=0.0,
                               calib_ds=calib_ds, kv_ranges=kv)
            grid.append(dict(alpha=float(a), beta=float(b), accuracy_mean=r["accuracy_mean"]))
    best = max(grid, key=lambda g: (g["accuracy_mean"], g["beta"], -g["alpha"]))
    return dict(alpha=best["alpha"], beta=best["beta"], accuracy=best["accuracy_mean"],
                grid=grid, chips=chips, seed=cseed, n_images=len(calib_ds))


# ------------------------------------------------------------ results shared within a process


class Uncacheable(TypeError):
    """An argument whose content cannot be digested (e.g. an image-folder dataset)."""


def _digest_into(h: Any, obj: Any) -> None:
    """Feed ``obj``'s content (not its identity) into the hash ``h``."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise Uncacheable("object array")
        h.update(f"A{obj.dtype.str}{obj.shape};".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, np.generic):
        _digest_into(h, obj.item())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for k in sorted(obj, key=repr):
            _digest_into(h, k)
            _digest_into(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)};".encode())
        for v in obj:
            _digest_into(h, v)
    elif isinstance(obj, nn.Module):
        h.update(f"M{type(obj).__qualname__};".encode())
        _digest_into(h, dict(obj.state_dict()))
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"C{type(obj).__qualname__};".encode())
        for f in dataclasses.fields(obj):
            if not f.name.startswith("_"):  # private fields are lazily built caches
                _digest_into(h, f.name)
                _digest_into(h, getattr(obj, f.name))
    elif hasattr(obj, "images") and hasattr(obj, "labels"):  # data.ArrayDataset
        h.update(f"S{type(obj).__qualname__}:{getattr(obj, 'name', '')};".encode())
        _digest_into(h, obj.images)
        _digest_into(h, obj.labels)
    else:
        raise Uncacheable(f"cannot digest a {type(obj).__qualname__}")


def fingerprint(*objs: Any) -> str:
    """sha256 of the objects' content: tensors and arrays by dtype, shape and bytes, modules
    by their ``state_dict``, dataclasses field by field (private, ``_``-named caches
    skipped), in-memory datasets by images and labels.

    Raises:
        Uncacheable: An object of another kind (nothing is guessed from identity).
    """
    import hashlib

    h = hashlib.sha256()
    for o in objs:
        _digest_into(h, o)
    return h.hexdigest()


class EvalCache:
    """``evaluate_chips`` results (and other deterministic products, ``memo``) kept in memory
    for one process, keyed by the content of everything that determines them.

    The demo's evaluation steps share one (``shared_evaluations``): a setting that two steps
    both evaluate (the tt 6-bit gamma-1 point is in five of them) is simulated once and the
    second step gets the identical ``EvalPoint`` back (its own ``setting`` label, the first
    run's timing, ``timing["reused"] = True``). The key holds the model's parameters, the
    hardware model's tables, the configuration, the test and calibration images, chips, seed,
    batch size, device, K/V ranges and the moment-calibration image count: with any of them
    different the setting runs again.

    Attributes:
        hits, misses: Points returned from the cache / evaluated and stored.
        memo_hits: Other products (moment calibration, K/V ranges) taken from the cache.
    """

    def __init__(self) -> None:
        self._points: dict[str, EvalPoint] = {}
        self._memo: dict[str, Any] = {}
        self.hits = 0
        self.misses = 0
        self.memo_hits = 0

    def key(self, kind: str, *objs: Any) -> str | None:
        """The content key of ``objs``, or None when one cannot be digested (not cached)."""
        try:
            return fingerprint(kind, *objs)
        except Uncacheable:
            return None

    def point(self, key: str | None, setting: dict[str, Any] | None) -> EvalPoint | None:
        """A copy of the stored point for ``key`` labelled with ``setting``, or None."""
        if key is None or key not in self._points:
            return None
        self.hits += 1
        p = self._points[key]
        return dataclasses.replace(
            p, setting=dict(setting or {}), accuracies=list(p.accuracies),
            chip_seeds=list(p.chip_seeds), warnings=list(p.warnings),
            calibration=dict(p.calibration), timing={**p.timing, "reused": True},
            correct=None if p.correct is None else p.correct.copy())

    def store(self, key: str | None, point: EvalPoint) -> None:
        """Keep ``point`` under ``key`` (None: nothing kept)."""
        if key is not None:
            self.misses += 1
            self._points[key] = point

    def memo(self, key: str | None, fn: Any) -> Any:
        """``fn()``'s value, computed once per ``key`` (None: always computed)."""
        if key is None:
            return fn()
        if key in self._memo:
            self.memo_hits += 1
        else:
            self._memo[key] = fn()
        return self._memo[key]


_ACTIVE_CACHE: EvalCache | None = None


@contextlib.contextmanager
def shared_evaluations(cache: EvalCache | None = None) -> Iterator[EvalCache]:
    """Within the block, every ``evaluate_chips`` call (and ``evaluate``'s K/V range
    calibration) shares ``cache`` (a new one by default): identical settings run once."""
    global _ACTIVE_CACHE
    prev, _ACTIVE_CACHE = _ACTIVE_CACHE, cache if cache is not None else EvalCache()
    try:
        yield _ACTIVE_CACHE
    finally:
        _ACTIVE_CACHE = prev


def active_cache() -> EvalCache | None:
    """The cache ``shared_evaluations`` holds open, or None."""
    return _ACTIVE_CACHE
