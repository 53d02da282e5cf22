"""What ``evaluate`` and RAP return: dataclasses with one key vocabulary, one JSON writer.

Vocabulary (the same key means the same thing everywhere):

* ``accuracy_mean``: top-1 accuracy (fraction) averaged over chips and images;
* ``accuracy_ci95``: ``[low, high]``, the 95 % interval of ``accuracy_mean`` (``ci_method``
  says how: a bootstrap over chips *and* images, see ``nnsim.stats``);
* ``accuracies``: per chip; ``chip_seeds``: the chips (the same seeds in every setting of a
  sweep, so settings are paired); ``n_images``: images scored per chip;
* ``conversions_per_inference``: ADC conversions per image; ``adc_energy_j_per_inference``:
  those times the characterized energy per conversion (None where not characterized);
  ``energy_per_inference``: the whole read as a sum of parts (``nnsim.energy``: ADC
  comparator, DAC reference, SAR logic, sampling drive per conversion; crossbar array, TIA,
  drivers per column read), each with its source; what is not characterized is listed under
  ``not_characterized`` (``complete`` false), never counted as 0;
* ``digital``: which parts of the computation were not on crossbars (e.g. RAP's attention
  products), so no output reads as "all analog" when it is not.

``to_json(obj)`` turns any of them (or lists/dicts of them) into plain JSON-able data; the
per-image correctness matrices used for paired statistics stay in memory (``correct``) and are
not written.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _plain(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {f.name: _plain(getattr(o, f.name)) for f in dataclasses.fields(o)
                if f.metadata.get("json", True)}
    if isinstance(o, dict):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_plain(v) for v in o]
    if isinstance(o, np.ndarray):
        return _plain(o.tolist())
    if isinstance(o, np.generic):
        return _plain(o.item())
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def to_json(obj: Any) -> Any:
    """Plain JSON-able data (dicts, lists, numbers, strings; NaN -> None) of a result."""
    return _plain(obj)


class _Mapping:
    """Read access by key (``r["accuracy_mean"]``) for callers written against the old dicts."""

    def __getitem__(self, key: str) -> Any:
        if key in {f.name for f in dataclasses.fields(self)}:  # type: ignore[arg-type]
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``r[key]`` or ``default``."""
        try:
            return self[key]
        except KeyError:
            return default

    def to_dict(self) -> dict[str, Any]:
        """``to_json(self)``."""
        return to_json(self)


@dataclass
class EvalPoint(_Mapping):
    """One setting of ``evaluate`` on ``chips`` simulated chips (``nnsim.evaluate``)."""

    accuracy_mean: float
    accuracy_ci95: list[float | None]
    ci_method: str
    accuracies: list[float]
    chips: int
    chip_seeds: list[int]
    seed: int
    n_images: int
    digital_accuracy: float
    conversions_per_inference: float
    adc_energy_j_per_inference: float | None
    config: dict[str, Any]
    hardware: dict[str, Any]
    setting: dict[str, Any] = field(default_factory=dict)
    method: str = "analog"
    digital: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    time_s: float = 0.0
    timing: dict[str, Any] = field(default_factory=dict)
    energy_per_inference: dict[str, Any] | None = None
    """Energy per image as a sum of parts, each naming its source
    (``nnsim.energy.energy_per_inference``); None where nothing is characterized."""
    correct: np.ndarray | None = field(default=None, repr=False, metadata={"json": False})
    """(chips, images) bool: image i right on chip c (for paired statistics; not written)."""

    @property
    def label(self) -> str:
        """A short name of the setting, e.g. ``tt 1.8V 27C 6b gamma=3 clip(2,0.25)``."""
        s = self.setting
        clip = s.get("clipformer")
        c = f" clip({clip[0]:g},{clip[1]:g})" if clip else ""
        parts = [str(s.get("process", "")), _num(s.get("vdd_v"), "V"),
                 _num(s.get("temp_c"), "C"), f"{s.get('bits', '')}b",
                 f"gamma={s.get('gamma', '')}"]
        return (" ".join(p for p in parts if p) + c + ("" if self.method == "analog"
                                                       else f" [{self.method}]")).strip()


@dataclass
class Comparison(_Mapping):
    """A paired difference ``a - b`` of accuracy (same chips, same images)."""

    name: str
    a: str
    b: str
    difference_mean: float
    difference_ci95: list[float | None]
    ci_method: str
    chips: int
    n_images: int
    chip_seeds: list[int]
    warnings: list[str] = field(default_factory=list)


@dataclass
class RapMvmResult(_Mapping):
    """RAP's integer ViT with one MVM mapping (sparse or dense) on ``chips`` chips."""

    mode: str
    adc_bits: int
    k: int
    accuracy_mean: float
    accuracy_ci95: list[float | None]
    ci_method: str
    accuracies: list[float]
    chips: int
    chip_seeds: list[int]
    n_images: int
    conversions_per_inference: float
    cycles_per_inference: float
    active_rows_per_inference: float
    adc_energy_j_per_inference: float | None
    adc_energy_rel_per_inference: float
    array_time_s_per_inference: float | None
    lsb_unit_currents: int
    adc_bits_exact: int
    adc_range: dict[str, Any]
    adc_source: str
    crossbar: str
    digital: list[str]
    rows: int
    cell_bits: int
    warnings: list[str] = field(default_factory=list)
    time_s: float = 0.0
    energy_per_inference: dict[str, Any] | None = None
    """As ``EvalPoint.energy_per_inference`` (parts with sources; None for an ideal ADC)."""
    correct: np.ndarray | None = field(default=None, repr=False, metadata={"json": False})


@dataclass
class RapResult(_Mapping):
    """``evaluate_rap``: FP32, float-scale PTQ, RAP integer (exact products), RAP sparse MVM
    and the dense MVM with a calibrated ADC range, on the same images and chips."""

    n_images: int
    seed: int
    bits: int
    k: int
    k_default: int
    corner: dict[str, Any] | None
    fp32_accuracy: float
    ptq_float_accuracy: float
    rap_integer_accuracy: float
    rap: RapMvmResult
    dense: RapMvmResult | None
    comparisons: list[Comparison]
    rap_config: dict[str, Any]
    method: str = "rap"
    timing: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sweep(_Mapping):
    """Every point of one ``evaluate`` command, the paired comparisons between them, and the
    run's facts. No top-level accuracy: read it from ``points``."""

    points: list[EvalPoint]
    comparisons: list[Comparison]
    rap: list[RapResult]
    meta: dict[str, Any]


#: The axes along which a sweep's RAP results are compared (gamma does not reach RAP).
RAP_PAIR_KEYS = ("process", "vdd_v", "temp_c", "bits")


def _rap_point(r: RapResult) -> dict[str, Any]:
    c = r.corner or {}
    return {"process": c.get("process"), "vdd_v": c.get("vdd_v"), "temp_c": c.get("temp_c"),
            "bits": r.bits}


def _rap_label(m: RapMvmResult, pt: dict[str, Any]) -> str:
    return (f"rap {m.mode} k={m.k} {pt['process']} {_num(pt['vdd_v'], 'V')} "
            f"{_num(pt['temp_c'], 'C')} {pt['bits']}b")


def rap_sweep_comparisons(results: list[RapResult], *, seed: int = 0) -> list[Comparison]:
    """Paired comparisons across a sweep's RAP results, as ``sweep_comparisons`` does for the
    analog points: for each axis of ``RAP_PAIR_KEYS`` (corner, supply, temperature, bits),
    each value against the first one with everything else equal, for RAP sparse and for its
    dense baseline ("rap sparse: corner ss vs tt"), on the same chip seeds and images (paired
    bootstrap, ``nnsim.stats.paired_difference``). A point evaluated twice (a gamma sweep
    runs RAP once per gamma; RAP has no gamma) is compared once.

    Raises:
        ValueError: Two results to compare are not on the same chips and images.
    """
    from .stats import N_BOOT, paired_difference

    seen: dict[tuple, RapResult] = {}
    for r in results:
        seen.setdefault((*(str(v) for v in _rap_point(r).values()), str(r.k)), r)
    uniq = list(seen.values())
    out: list[Comparison] = []
    for axis in RAP_PAIR_KEYS:
        groups: dict[tuple, list[RapResult]] = {}
        for r in uniq:
            pt = _rap_point(r)
            groups.setdefault(tuple(str(pt[k]) for k in RAP_PAIR_KEYS if k != axis), []
                              ).append(r)
        for grp in groups.values():
            ref = grp[0]
            for r in grp[1:]:
                for which in ("rap", "dense"):
                    a, b = getattr(r, which), getattr(ref, which)
                    if a is None or b is None or a.correct is None or b.correct is None:
                        continue
                    if a.chip_seeds != b.chip_seeds or a.n_images != b.n_images:
                        raise ValueError(f"rap {which}: {axis} comparison not paired (chip "
                                         f"seeds {a.chip_seeds} vs {b.chip_seeds}, images "
                                         f"{a.n_images} vs {b.n_images})")
                    d, ci, msgs = paired_difference(a.correct, b.correct, seed=seed,
                                                    warn=False)
                    nm = {"process": "corner"}.get(axis, axis)
                    pa, pb = _rap_point(r), _rap_point(ref)
                    out.append(Comparison(
                        name=f"rap {a.mode}: {nm} {pa[axis]} vs {pb[axis]}",
                        a=_rap_label(a, pa), b=_rap_label(b, pb), difference_mean=d,
                        difference_ci95=ci,
                        ci_method=f"paired bootstrap over chips and images ({N_BOOT} "
                                  "resamples)",
                        chips=a.chips, n_images=a.n_images, chip_seeds=list(a.chip_seeds),
                        warnings=msgs))
    return out


def _num(v: Any, unit: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return f"{float(v):g}{unit}"
