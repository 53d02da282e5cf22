"""Evaluation on a Dask cluster: the simulated chips of a setting as independent tasks.

``evaluate_chips(..., client=client)`` (and ``spicebridge evaluate --dask ADDRESS`` or
``--dask-local N``) runs each chip of a setting as one task on a ``distributed`` cluster, with
results identical to the local loop for the same root seed:

* a task converts the digital model itself (``convert_to_analog(seed=None)``, deterministic),
  takes over the per-setting state the driver established (the K/V ranges of
  ``kv_range="calibrated"``, the moment mode's per-layer variance factors), programs its chip
  from the chip's recorded seed and scores it, image by image;
* every task runs torch with the driver's thread count (matmul reductions can depend on it).

Objects travel to the workers through Dask's in-memory serialization (nothing is unpickled
from disk); the workers need this package installed (``pip install -e .`` on the cluster's
image). Nothing here is needed, or imported, without ``distributed``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .analog import AnalogConfig
from .hardware import HardwareModel


def module_state(analog: nn.Module) -> dict[str, dict[str, Any]]:
    """Per-setting state of a converted model that a fresh conversion lacks:
    ``{module path: {"kv_max": {...}, "moment_scale": {...}}}`` of its analog layers."""
    from .convert import analog_modules

    mods = set(map(id, analog_modules(analog)))
    out = {}
    for name, m in analog.named_modules():
        if id(m) in mods:
            out[name] = {"kv_max": dict(getattr(m, "kv_max", {}) or {}),
                         "moment_scale": dict(getattr(m, "moment_scale", {}) or {})}
    return out


def load_module_state(analog: nn.Module, state: dict[str, dict[str, Any]]) -> None:
    """Put ``module_state`` back on a fresh conversion of the same model and config."""
    mods = dict(analog.named_modules())
    for name, st in state.items():
        m = mods[name]
        if hasattr(m, "kv_max"):
            m.kv_max = dict(st["kv_max"])
        m.moment_scale = dict(st["moment_scale"])


def chip_task(model: nn.Module, hw: HardwareModel, config: AnalogConfig, test_ds: Any,
              chip_seed: int, state: dict[str, dict[str, Any]], *, batch_size: int,
              device: str, threads: int, probe: torch.Tensor | None = None) -> dict[str, Any]:
    """One simulated chip: convert, restore the setting's state, program ``chip_seed``, score.

    Args:
        probe: Images run through the chip after scoring; their logits are returned (tests
            compare them with the local loop's, bit for bit).

    Returns:
        ``{"accuracy", "correct" (per image, bool), "conversions", "seconds", "state"}``
        (+ ``"probe"``).
    """
    from .convert import conversions, convert_to_analog, program_chip
    from .data import make_loader

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    analog = convert_to_analog(model.to(device).eval(), hw, config, seed=None).to(device)
    load_module_state(analog, state)
    conversions(analog, reset=True)
    program_chip(analog, chip_seed)
    rows = []
    with torch.no_grad():
        for x, y in make_loader(test_ds, batch_size):
            rows.append((analog(x.to(device)).argmax(-1).cpu() == y).numpy())
    correct = np.concatenate(rows) if rows else np.zeros(0, bool)
    out = {"accuracy": float(correct.mean()) if correct.size else float("nan"),
           "correct": correct, "conversions": conversions(analog),
           "seconds": time.perf_counter() - t0, "state": module_state(analog)}
    if probe is not None:
        with torch.no_grad():
            out["probe"] = analog(probe.to(device)).cpu()
    return out


def run_chips(client: Any, model: nn.Module, hw: HardwareModel, config: AnalogConfig,
              analog: nn.Module, test_ds: Any, seeds: Sequence[int], *, batch_size: int,
              device: str, probe: torch.Tensor | None = None) -> list[dict[str, Any]]:
    """The chips of one setting as Dask tasks (see the module docstring), ``analog`` being
    the driver's converted model with the setting's calibrations; per-chip results in seed
    order."""
    state = module_state(analog)
    m_f, hw_f, ds_f = client.scatter([model, hw, test_ds], broadcast=False, hash=False)
    kw = dict(batch_size=batch_size, device=str(device), threads=torch.get_num_threads(),
              probe=probe, pure=False)
    return client.gather([client.submit(chip_task, m_f, hw_f, config, ds_f, int(s), state,
                                        **kw) for s in seeds])


def make_client(address: str | None = None, local_workers: int | None = None) -> Any:
    """A ``distributed.Client`` on ``address`` (``tcp://host:port``) or on a new local
    cluster of ``local_workers`` one-thread worker processes."""
    from distributed import Client, LocalCluster

    if address:
        return Client(address)
    if not local_workers or local_workers < 1:
        raise ValueError("--dask-local needs at least 1 worker")
    import signal
    import threading

    # The local cluster's processes ignore Ctrl-C (they inherit SIGINT ignored, and asyncio
    # then installs no handler of its own): the terminal sends it to them too, and each
    # printed a KeyboardInterrupt traceback; this process takes it and closes the cluster.
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        cluster = LocalCluster(n_workers=int(local_workers), threads_per_worker=1,
                               processes=True, dashboard_address=None)
    finally:
        if main:
            signal.signal(signal.SIGINT, old)
    return Client(cluster)
