"""Variation-aware training (VAT) from circuit data: fine-tune a trained ViT with the
characterized crossbar and ADC non-idealities in its forward pass.

The forward of a VAT step is the forward that evaluation uses: the model is converted with
``convert_to_analog`` and the same ``AnalogConfig`` (default ``fidelity="moment"``), so every
step sees

* K/V write noise (the lookup's write-noise model, scaled by ``gamma``), redrawn on every
  write, i.e. every step;
* static-weight programming noise and the column ADCs' Monte-Carlo instances: the chip is
  re-programmed from the current weights every ``reprogram_every`` steps (default every
  step), from a new chip seed;
* read noise, column transfer, ADC noise and ADC quantization of every MVM.

Gradients use a straight-through estimator at each crossbar MVM: the value is the simulated
crossbar's, the gradient that of the exact product with the current (unquantized, unwritten)
matrix, ``y = x W + stop_grad(y_crossbar - x W)``. For additive noise this is the exact
gradient of the loss at the noisy operating point; quantization, clipping and the
write-noise amplitude's dependence on the weights are treated as identity (not learned).
Everything else (LayerNorm, softmax, GELU, residuals, the digital head) is ordinary autograd.

``robust_pvt`` samples one characterized (process, vdd, temp) point per re-programming,
uniformly over the points both lookup files hold, instead of training at one corner.

Checkpoints are cached next to ``load_or_train``'s (same folder) under a name that hashes the
base checkpoint, the VAT settings and the lookup files' table content
(``lookup_content_sha256``: the tables the simulator reads, not the file's ``created``
timestamp or provenance, so a re-characterized identical file finds the same checkpoint); the
metadata holds all of them, each file's byte sha256 and the hardware point(s). They are
plain ``{"state_dict", "meta"}`` files read with ``torch.load(weights_only=True)``
(``nnsim.models.load_checkpoint``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from characterization.lookup import read_lookup, sha256_file

from .analog import AnalogConfig, Array
from .convert import (
    AnalogAttention,
    AnalogLinear,
    analog_modules,
    calibrate_moment,
    convert_to_analog,
    kv_ranges_digital,
    program_chip,
    set_kv_ranges,
)
from .data import load_dataset, make_loader
from .hardware import HardwareModel, available_points
from .models import (
    PRESETS,
    _param_groups,
    _shift,
    accuracy,
    canonical_model_name,
    checkpoint_path,
    create_model,
    load_checkpoint,
    load_or_train,
    save_checkpoint,
)

VAT_FORMAT = 1
"""Version of the VAT checkpoint metadata (part of the cache key)."""

# Fine-tuning recipe per preset: epochs over the train split, peak lr (warm-up 5 %, cosine to
# 0), AdamW weight decay, batch size. Chosen so that VAT costs at most 2x the preset's
# standard training on one CPU thread (bench/vat_cost.py measures it).
VAT_RECIPES: dict[str, dict[str, Any]] = {
    "digits": dict(epochs=8, lr=5e-4, weight_decay=0.05, batch_size=64),
    "digits-tiny": dict(epochs=1, lr=1e-3, weight_decay=0.05, batch_size=256),  # tests: 5 steps
    # 60 steps of 128 (14 % of an epoch): 0.3x the standard training's CPU time
    "fashion_mnist": dict(epochs=1, lr=3e-4, weight_decay=0.05, batch_size=128, max_steps=60),
}


@dataclasses.dataclass(frozen=True)
class VatSettings:
    """The hardware point and recipe of a VAT fine-tuning run.

    Attributes:
        process, vdd_v, temp_c, bits: The hardware point (None: the nominal characterized
            supply/temperature, as ``HardwareModel.from_lookup``).
        gamma: K/V write-noise factor during training (1 = as characterized).
        robust_pvt: Sample the (process, vdd, temp) point per re-programming over the grid
            both lookup files characterize (``bits`` stays fixed).
        epochs, lr, weight_decay, batch_size: Recipe (None: ``VAT_RECIPES`` of the preset).
        reprogram_every: Steps between re-programming the chip (new programming noise and
            ADC instances, from the current weights).
        max_steps: Stop after this many steps (the schedule spans them); None: all epochs.
        moment_calib_images: Calib images of ``calibrate_moment``, run once per hardware
            point at its first use (the factors depend on the configuration, hardly on the
            chip or the weights; the bit-level calibration is the slow part).
        analog: ``AnalogConfig`` fields of the forward, as evaluation builds them (None:
            ``AnalogConfig(fidelity="moment")``); ``gamma`` and ClipFormer are set here.
    """

    process: str = "tt"
    vdd_v: float | None = None
    temp_c: float | None = None
    bits: int = 6
    gamma: float = 1.0
    robust_pvt: bool = False
    epochs: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    reprogram_every: int = 1
    max_steps: int | None = None
    moment_calib_images: int = 16
    analog: dict[str, Any] | None = None

    def config(self) -> AnalogConfig:
        """The ``AnalogConfig`` of the training forward: ``analog`` (the evaluation's
        settings, e.g. ``AnalogConfig(...).to_dict()``; default ``AnalogConfig`` with
        ``fidelity="moment"``) at ``gamma``, without ClipFormer (an inference-time
        transformation)."""
        if self.analog is None:
            base = AnalogConfig(fidelity="moment")
        else:
            known = {f.name for f in dataclasses.fields(AnalogConfig)}
            bad = sorted(set(self.analog) - known)
            if bad:
                raise ValueError(f"VAT analog settings: unknown AnalogConfig fields {bad}")
            d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.analog.items()}
            base = AnalogConfig(**d)
        return dataclasses.replace(base, gamma=float(self.gamma), clipformer=None)

    def recipe(self, name: str) -> dict[str, Any]:
        """The recipe with the preset's defaults filled in."""
        r = dict(VAT_RECIPES.get(canonical_model_name(name), VAT_RECIPES["digits"]))
        for k in ("epochs", "lr", "weight_decay", "batch_size"):
            if getattr(self, k) is not None:
                r[k] = type(r[k])(getattr(self, k))
        r["reprogram_every"] = int(self.reprogram_every)
        r["max_steps"] = int(self.max_steps) if self.max_steps is not None else r.get("max_steps")
        if r["epochs"] < 1 or r["reprogram_every"] < 1 or r["batch_size"] < 1 or r["lr"] <= 0:
            raise ValueError(f"VAT recipe needs epochs, batch_size, reprogram_every >= 1 and "
                             f"lr > 0; got {r}")
        return r

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings, ``analog`` resolved to the full ``AnalogConfig`` used."""
        d = dataclasses.asdict(self)
        d["analog"] = self.config().to_dict()
        return d


# ------------------------------------------------------------------ straight-through layers


def _ste(exact: torch.Tensor, simulated: torch.Tensor) -> torch.Tensor:
    """Value of ``simulated`` (bit for bit), gradient of ``exact``."""
    return simulated.detach() + (exact - exact.detach())


class VatLinear(AnalogLinear):
    """``AnalogLinear`` whose crossbar MVM is straight-through when gradients are on."""

    def _mvm(self, x: torch.Tensor, arr: Array, key: int, signed: bool = True
             ) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return super()._mvm(x, arr, key, signed)
        with torch.no_grad():
            y = super()._mvm(x.detach(), arr, key, signed)
        return _ste(x @ self.weight.t(), y)


class VatAttention(AnalogAttention):
    """``AnalogAttention`` whose Q K^T and S V are straight-through when gradients are on.

    K and V are written exactly as in evaluation (``_write``: mapping, ClipFormer, write
    noise); the exact matrix rides along in the array's cache for the gradient.
    """

    def _write(self, w_rc: torch.Tensor, salt: int) -> Array:
        with torch.no_grad():
            arr = super()._write(w_rc.detach(), salt)
        if torch.is_grad_enabled() and w_rc.requires_grad:
            if arr.cache is None:
                arr.cache = {}
            arr.cache["ste_w"] = w_rc
        return arr

    def _mvm(self, x: torch.Tensor, arr: Array, key: int, signed: bool = True
             ) -> torch.Tensor:
        w = arr.cache.get("ste_w") if arr.cache else None
        if w is None or not torch.is_grad_enabled():
            return super()._mvm(x, arr, key, signed)
        with torch.no_grad():
            y = super()._mvm(x.detach(), arr, key, signed)
        return _ste(x @ w, y)


def make_trainable(analog: nn.Module) -> nn.Module:
    """Switch a ``convert_to_analog`` model's layers to their straight-through versions (in
    place; no state changes, only the MVM's gradient). Returns ``analog``."""
    for m in analog.modules():
        if type(m) is AnalogLinear:
            m.__class__ = VatLinear
        elif type(m) is AnalogAttention:
            m.__class__ = VatAttention
    return analog


# ------------------------------------------------------------------------ hashes and cache


KEY_SKIPPED_TABLES = ("adc/records/", "adc/designer/")
"""Table-name prefixes left out of ``lookup_content_sha256``: the ADC characterization's
per-instance run records (wall-clock stage times among them) and designer-only figures,
which the simulator never reads (``nnsim.hardware``)."""


def lookup_content_sha256(path: str | Path) -> str:
    """sha256 of a lookup file's table content: for every table (in name order, except
    ``KEY_SKIPPED_TABLES``) its name, dims, coordinates and their units, units, attributes,
    cell status, dtype, shape and data. Not the file's ``created`` timestamp, provenance or
    failure records, which do not change a number the simulator reads: two characterizations
    that produce the same tables give the same digest."""
    lf = read_lookup(path)
    h = hashlib.sha256(f"lookup schema {lf.schema_version}\n".encode())
    for name in sorted(lf.tables):
        if name.startswith(KEY_SKIPPED_TABLES):
            continue
        t = lf.tables[name]
        head = dict(t.to_dict(), name=name)
        h.update(json.dumps(head, sort_keys=True, default=str).encode())
        data = np.asarray(t.data)
        if data.dtype.kind in "OUS":  # strings: their text, not object pointers
            h.update(json.dumps(data.astype(str).tolist()).encode())
        else:
            h.update(np.ascontiguousarray(data).tobytes())
        if t.status is not None:
            h.update(np.ascontiguousarray(t.status).tobytes())
    return h.hexdigest()


def lookup_hashes(paths: Sequence[str | Path]) -> list[dict[str, str]]:
    """``[{"path", "sha256", "content_sha256"}]`` of the lookup files, in the order given:
    the file's bytes (provenance: which file it was) and its table content (the cache
    key, ``lookup_content_sha256``)."""
    return [{"path": str(p), "sha256": sha256_file(p), "content_sha256": lookup_content_sha256(p)}
            for p in paths]


def vat_key(base_meta: dict[str, Any], settings: VatSettings, hashes: list[dict[str, str]],
            seed: int) -> str:
    """The cache key: sha256 of the base checkpoint's identity, the settings, the recipe,
    the lookup files' table content (``content_sha256``: not their paths, timestamps or
    provenance) and the VAT seed."""
    ident = dict(format=VAT_FORMAT, base=dict(name=base_meta["name"], seed=base_meta["seed"],
                                              epochs=base_meta["recipe"]["epochs"]),
                 settings=settings.to_dict(), recipe=settings.recipe(base_meta["name"]),
                 lookups=[h["content_sha256"] for h in hashes], seed=int(seed))
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def vat_checkpoint_path(base_path: str | Path, key: str) -> Path:
    """``{base name}-vat-{key}.pt`` in the base checkpoint's folder."""
    base_path = Path(base_path)
    return base_path.with_name(f"{base_path.stem}-vat-{key}.pt")


# ---------------------------------------------------------------------------- PVT sampling


def pvt_grid(lookups: Sequence[str | Path], bits: int) -> list[tuple[str, float, float]]:
    """The (process, vdd_v, temp_c) points characterized in both the crossbar and the ADC
    tables (the ADC at ``bits``), sorted.

    Raises:
        ValueError: No common point.
    """
    pts = available_points(list(lookups))
    xb, ad = pts.get("crossbar/read_transfer"), pts.get("adc/thresholds")
    if xb is None:
        raise ValueError(f"{', '.join(map(str, lookups))}: no crossbar/read_transfer table")

    def grid(d: dict[str, list[Any]]) -> set[tuple[str, float, float]]:
        return {(str(p), float(v), float(t)) for p in d["process"] for v in d["vdd_v"]
                for t in d["temp_c"]}

    g = grid(xb)
    if ad is not None:
        if int(bits) not in [int(b) for b in ad.get("bits", [])]:
            raise ValueError(f"{', '.join(map(str, lookups))}: ADC resolution {bits} bits was "
                             f"not characterized; available: {ad.get('bits')}")
        g &= grid(ad)
    if not g:
        raise ValueError(f"{', '.join(map(str, lookups))}: the crossbar and ADC tables share "
                         "no (process, vdd_v, temp_c) point")
    return sorted(g)


class _HardwareSwitch:
    """One converted model, several hardware points: swap each layer's ``hw``/ADC and keep a
    per-point copy of the moment-fidelity variance calibration (``calibrate_moment``)."""

    def __init__(self, analog: nn.Module, hws: list[HardwareModel | None],
                 load: Any) -> None:
        self.mods = analog_modules(analog)
        self.hws, self.load = hws, load  # loaded on first use: load(i) -> HardwareModel
        self.scales: list[list[dict[int, float]] | None] = [None] * len(hws)
        self.current = -1

    def use(self, i: int) -> bool:
        """Switch to point ``i``; True if it still needs ``calibrate_moment``."""
        if i != self.current:
            if self.hws[i] is None:
                self.hws[i] = self.load(i)
            hw = self.hws[i]
            for j, m in enumerate(self.mods):
                m.hw = hw
                m.adc_model = hw.adc() if m.config.adc and hw.adc_bits else None
                m.moment_scale = {} if self.scales[i] is None else self.scales[i][j]
                if isinstance(m, AnalogAttention):
                    m._inst_cache = {}
            self.current = i
        return self.scales[i] is None

    def calibrated(self) -> None:
        """Keep the current point's calibration (``calibrate_moment`` replaces the dicts)."""
        self.scales[self.current] = [m.moment_scale for m in self.mods]


# -------------------------------------------------------------------------------- training


def finetune(model: nn.Module, lookups: Sequence[str | Path], settings: VatSettings, *,
             name: str, seed: int = 0, quiet: bool = True,
             device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune ``model`` (not changed) with the hardware's non-idealities in the forward.

    Args:
        model: A trained digital ViT of preset ``name``.
        lookups: Crossbar and ADC lookup files.
        settings: Hardware point and recipe.
        name: Model preset (for the dataset and the recipe defaults).
        seed: VAT seed: batch order, augmentation, chip seeds and the PVT points drawn.
        quiet: No progress bar.
        device: ``cpu`` or ``cuda``.

    Returns:
        (digital model with the fine-tuned weights, in eval mode on CPU; meta).
    """
    name = canonical_model_name(name)
    preset = PRESETS[name]
    recipe = settings.recipe(name)
    cfg = settings.config()
    lookups = [Path(p) for p in lookups]
    if settings.robust_pvt:
        points = pvt_grid(lookups, settings.bits)
    else:
        points = [(settings.process, settings.vdd_v, settings.temp_c)]

    def load(i: int) -> HardwareModel:
        p, v, t = points[i]
        return HardwareModel.from_lookup(lookups, process=p, vdd_v=v, temp_c=t,
                                         adc_bits=settings.bits, rows=cfg.tile_rows)

    hws: list[HardwareModel | None] = [None] * len(points)
    hws[0] = load(0)  # bad input fails here, before any work
    train = load_dataset(preset["dataset"], "train")
    calib = load_dataset(preset["dataset"], "calib")
    shift = int(preset["train"]["shift"]) if preset["train"] else 0
    ss = np.random.SeedSequence([int(seed), 0x5A7])
    s_data, s_chip, s_pvt = ss.spawn(3)
    g = torch.Generator().manual_seed(int(s_data.generate_state(1)[0]))
    chip_rng = np.random.default_rng(s_chip)
    pvt_rng = np.random.default_rng(s_pvt)

    t0, c0 = time.perf_counter(), time.process_time()
    analog = convert_to_analog(model.to(device), hws[0], cfg, seed=None).to(device)
    make_trainable(analog)
    switch = _HardwareSwitch(analog, hws, load)
    opt = torch.optim.AdamW(_param_groups(analog, recipe["weight_decay"]), lr=recipe["lr"])
    bs = recipe["batch_size"]
    steps_per_epoch = math.ceil(len(train) / bs)
    total = recipe["epochs"] * steps_per_epoch
    if recipe["max_steps"] is not None:
        total = min(total, recipe["max_steps"])
    warm = max(1, int(0.05 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm
        else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    x_all, y_all = train.images, train.labels
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"VAT {name} gamma {settings.gamma:g}", unit="step")
    step, losses, used = 0, [], [0] * len(hws)
    moment = cfg.fidelity == "moment" and cfg.nonideal_readout
    calib_x = calib.images[:settings.moment_calib_images].to(device)
    for epoch in range(math.ceil(total / steps_per_epoch)):
        with torch.no_grad():
            if cfg.kv_range == "calibrated":
                # as evaluation: per-layer K/V ranges of the digital model (current weights)
                # on the calib split
                dig = create_model(name).to(device)
                dig.load_state_dict(analog.state_dict(), strict=True)
                set_kv_ranges(analog, kv_ranges_digital(
                    dig, (x.to(device) for x, _ in make_loader(calib, 256))))
        analog.train()
        perm = torch.randperm(len(train), generator=g)
        for i in range(0, len(train), bs):
            if step >= total:
                break
            if step % recipe["reprogram_every"] == 0:
                k = int(pvt_rng.integers(len(hws))) if len(hws) > 1 else 0
                need = switch.use(k)
                used[k] += 1
                program_chip(analog, int(chip_rng.integers(2 ** 63)))
                if moment and need:  # once per point, as evaluation does per setting
                    with torch.no_grad():
                        calibrate_moment(analog, [calib_x], seed=int(seed) + epoch)
                    switch.calibrated()
            idx = perm[i:i + bs]
            x = _shift(x_all[idx], shift, g)
            loss = F.cross_entropy(analog(x.to(device)), y_all[idx].to(device),
                                   label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
    if bar is not None:
        bar.close()
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    out = create_model(name)
    out.load_state_dict({k: v.detach().cpu() for k, v in analog.state_dict().items()},
                        strict=True)
    out.eval()
    meta = dict(
        name=name, dataset=preset["dataset"], kind="vat", format=VAT_FORMAT, seed=int(seed),
        settings=settings.to_dict(), recipe=recipe, config=cfg.to_dict(),
        hardware=[hw.summary() for hw, n in zip(hws, used, strict=True) if n],
        pvt_points=[dict(process=p, vdd_v=v, temp_c=t, steps=n)
                    for (p, v, t), n in zip(points, used, strict=True)],
        steps=step, loss_first=losses[0] if losses else None,
        loss_last=float(np.mean(losses[-steps_per_epoch:])) if losses else None,
        train_time_s=train_s, train_cpu_s=train_cpu_s,
        test_accuracy=accuracy(out, load_dataset(preset["dataset"], "test")),
        torch_version=str(torch.__version__), threads=torch.get_num_threads(),
        gradient="straight-through at every crossbar MVM (value: simulated crossbar; "
                 "gradient: exact product with the unwritten matrix)")
    return out, meta


def load_or_finetune(name: str, lookups: Sequence[str | Path], settings: VatSettings, *,
                     cache_dir: str | Path | None = None, train_seed: int = 0, seed: int = 0,
                     base_epochs: int | None = None, quiet: bool = True, force: bool = False,
                     device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The VAT checkpoint of a preset for these lookup files and settings: from the cache, or
    fine-tuned now from the (cached or trained) standard checkpoint and cached.

    Args:
        name: Model preset (``digits``, ``fashion_mnist``, ``digits-tiny``).
        lookups: Crossbar and ADC lookup files (their table content is part of the cache
            key, ``lookup_content_sha256``).
        settings: Hardware point and recipe.
        cache_dir: The checkpoint folder of ``load_or_train``.
        train_seed: Seed of the standard checkpoint that is fine-tuned.
        seed: VAT seed.
        base_epochs: Epochs of the standard checkpoint (default: the preset's).
        quiet: No progress bars.
        force: Fine-tune again even if cached.
        device: Where to fine-tune.

    Returns:
        (model in eval mode on CPU, meta incl. ``path``, ``cached``, ``base``, ``lookups``).
    """
    name = canonical_model_name(name)
    lookups = [Path(p) for p in lookups]
    for p in lookups:
        if not p.is_file():
            raise FileNotFoundError(f"lookup file {p} does not exist")
    base, base_meta = load_or_train(name, cache_dir, train_seed, base_epochs, quiet=quiet)
    hashes = lookup_hashes(lookups)
    key = vat_key(base_meta, settings, hashes, seed)
    path = vat_checkpoint_path(checkpoint_path(name, cache_dir, train_seed, base_epochs), key)
    if path.is_file() and not force:
        state, meta = load_checkpoint(path)
        if meta.get("key") != key:
            raise ValueError(f"VAT checkpoint {path} holds key {meta.get('key')!r}, "
                             f"expected {key!r}")
        model = create_model(meta["name"])
        model.load_state_dict(state, strict=True)
        return model.eval(), dict(meta, path=str(path), cached=True)
    model, meta = finetune(base, lookups, settings, name=name, seed=seed, quiet=quiet,
                           device=device)
    meta.update(key=key, lookups=hashes,
                base=dict(name=base_meta["name"], seed=base_meta["seed"],
                          epochs=base_meta["recipe"]["epochs"], path=base_meta.get("path"),
                          test_accuracy=base_meta.get("test_accuracy"),
                          train_time_s=base_meta.get("train_time_s"),
                          train_cpu_s=base_meta.get("train_cpu_s")))
    save_checkpoint(path, model.state_dict(), meta)
    return model, dict(meta, path=str(path), cached=False)


# -------------------------------------------------------------------- the Table II analogue


FOUR_WAY_PAIRS: dict[str, tuple[str, str]] = {
    "vat vs standard": ("vat", "standard"),
    "vat vs standard, with clipformer": ("vat+clipformer", "standard+clipformer"),
    "clipformer vs none, standard": ("standard+clipformer", "standard"),
    "clipformer vs none, vat": ("vat+clipformer", "vat"),
    "vat + clipformer vs standard": ("vat+clipformer", "standard"),
}
"""The paired gains of a Table II point: name -> (a, b), the gain ``a - b``."""


def four_way(cells: dict[str, Any], *, seed: int = 0) -> dict[str, Any]:
    """Paired gains of a Table II point from its evaluated cells.

    Args:
        cells: ``{"standard", "standard+clipformer", "vat", "vat+clipformer"}`` ->
            ``EvalPoint`` on the same chip seeds and images (the ClipFormer pair may be
            missing).
        seed: Bootstrap seed.

    Returns:
        ``{name: Comparison}`` for the ``FOUR_WAY_PAIRS`` whose cells are present (paired
        bootstrap over chips and images, ``nnsim.evaluate.compare``).

    Raises:
        ValueError: Cells on other chips or images.
    """
    from .evaluate import compare

    return {k: compare(cells[a], cells[b], k, seed=seed)
            for k, (a, b) in FOUR_WAY_PAIRS.items() if a in cells and b in cells}


def evaluate_four_way(standard: nn.Module, vat: nn.Module, hw: HardwareModel,
                      config: AnalogConfig, test_ds: Any, *,
                      clipformer: tuple[float, float] | None = None, chips: int = 5,
                      seed: int = 0, calib_ds: Any = None, batch_size: int = 256,
                      device: str | torch.device = "cpu", quiet: bool = True,
                      moment_calib_images: int = 64) -> dict[str, Any]:
    """Standard and VAT weights, each without and with ClipFormer, on the same chips and
    images (the Table II analogue). Each model's K/V ranges (``kv_range="calibrated"``) are
    its own, from the calib split; ``moment_calib_images`` goes to ``evaluate_chips``.

    Returns:
        ``{"cells": {name: EvalPoint}, "gains": four_way(cells)}``.
    """
    from .evaluate import evaluate_chips

    clips: list[tuple[float, float] | None] = [None] if clipformer is None else \
        [None, tuple(clipformer)]
    cells = {}
    for label, m in (("standard", standard), ("vat", vat)):
        for clip in clips:
            cfg = dataclasses.replace(config, clipformer=clip)
            setting = dict(process=hw.process, vdd_v=hw.vdd_v, temp_c=hw.temp_c,
                           bits=hw.adc_bits, gamma=config.gamma,
                           clipformer=list(clip) if clip else None,
                           method="vat" if label == "vat" else "analog")
            cells[label + ("+clipformer" if clip else "")] = evaluate_chips(
                m, hw, cfg, test_ds, chips=chips, seed=seed, batch_size=batch_size,
                device=device, quiet=quiet, calib_ds=calib_ds, setting=setting,
                moment_calib_images=moment_calib_images)
            if label == "vat":
                cells[label + ("+clipformer" if clip else "")].method = "vat"
    return dict(cells=cells, gains=four_way(cells, seed=seed))
