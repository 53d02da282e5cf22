"""Fused C kernels, compiled with the system C compiler at first use and loaded with ctypes.

``load(name)`` compiles ``nnsim/kernels/<name>.c`` (which may include this folder's ``*.h``)
into a shared library in a cache directory, keyed by the sha256 of the sources, the compiler
(its path and ``--version``), the flags and, for ``-march=native``, the CPU's flags, and loads
it with ``ctypes``. The library is written to a temporary file in the cache directory and
renamed into place (atomic: concurrent processes, pytest-xdist workers, may compile the same
kernel at once; each loads a complete file). Only this package's own sources are compiled;
nothing read from data is executed.

Where no kernel can be had (no compiler, the compile fails, ``IMC_KERNELS=off``), ``load``
returns None and warns once per kernel naming why; callers then run their torch path and
record which path ran (``nnsim.analog`` records ``readout_kernel``: ``"c"`` or ``"torch"``).

Environment:
    CC: The C compiler (default: ``cc``, else ``gcc``, else ``clang`` on the PATH).
    IMC_KERNELS: ``off`` (or ``0``, ``torch``) disables every kernel: the torch paths run.
    IMC_KERNEL_CACHE: Cache directory (default ``$XDG_CACHE_HOME/imc-kernels``, else
        ``~/.cache/imc-kernels``; a per-user temporary directory if neither is writable).
    IMC_KERNEL_CFLAGS: Replaces the optimization flags (default
        ``DEFAULT_CFLAGS``); ``-fopenmp`` is added when it compiles.

Buffers are passed as pointers of contiguous CPU tensors (``ptr``): no copies.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_CFLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno",
                  "-fno-trapping-math")
"""Optimization flags. ``-ffp-contract=off``: no fused multiply-adds the source does not
write, so the float arithmetic is the one the source (and the torch path it mirrors) says;
``-fno-math-errno -fno-trapping-math`` (no errno, no FP-exception semantics; every result
IEEE as written) let loops over sqrtf/floorf vectorize. No ``-ffast-math``."""

_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}
_why: dict[str, str] = {}
_warned: set[str] = set()


class KernelUnavailable(RuntimeError):
    """A kernel was required (``load(..., required=True)``) but could not be built."""


def disabled() -> bool:
    """Whether ``IMC_KERNELS`` turns the kernels off."""
    return os.environ.get("IMC_KERNELS", "").strip().lower() in ("0", "off", "torch", "no")


def compiler() -> str | None:
    """Path of the C compiler (``$CC`` if set, even when it does not exist: then None)."""
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc)
    for c in ("cc", "gcc", "clang"):
        p = shutil.which(c)
        if p:
            return p
    return None


def cache_dir() -> Path:
    """Where compiled kernels are kept (created)."""
    env = os.environ.get("IMC_KERNEL_CACHE")
    if env:
        cands = [Path(env)]
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cands = [Path(base) / "imc-kernels"]
    cands.append(Path(tempfile.gettempdir()) / f"imc-kernels-{os.getuid()}")
    for d in cands:
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            continue
    raise KernelUnavailable(f"no writable kernel cache directory (tried {cands})")


def _cpu_flags() -> str:
    """The CPU's feature flags (``-march=native`` code is keyed by them), or where
    ``/proc/cpuinfo`` is not readable the processor and machine names."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith(("flags", "Features")):
            return line
    return platform.processor() + platform.machine()


def _version(cc: str) -> str:
    r = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60)
    return (r.stdout or r.stderr).splitlines()[0] if (r.stdout or r.stderr) else ""


def _sources(name: str) -> tuple[Path, bytes]:
    src = HERE / f"{name}.c"
    if not src.is_file():
        raise KernelUnavailable(f"no kernel source {src}")
    blob = src.read_bytes()
    for h in sorted(HERE.glob("*.h")):
        blob += b"\0" + h.name.encode() + b"\0" + h.read_bytes()
    return src, blob


def _build(name: str) -> Path:
    """Compile (or find in the cache) the library of kernel ``name``; its path."""
    cc = compiler()
    if cc is None:
        raise KernelUnavailable(f"no C compiler (CC={os.environ.get('CC', '')!r}; "
                                "looked for cc, gcc, clang)")
    src, blob = _sources(name)
    env_flags = os.environ.get("IMC_KERNEL_CFLAGS")
    flags = env_flags.split() if env_flags else list(DEFAULT_CFLAGS)
    version = _version(cc)
    out_dir = cache_dir()
    last_err = ""
    for omp in (["-fopenmp"], []):
        fl = [*flags, *omp, "-fPIC", "-shared"]
        h = hashlib.sha256(blob)
        h.update("\0".join([cc, version, *fl]).encode())
        if "-march=native" in fl:
            h.update(_cpu_flags().encode())
        lib = out_dir / f"{name}-{h.hexdigest()[:20]}.so"
        if lib.is_file():
            return lib
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}-", suffix=".so")
        os.close(fd)
        try:
            r = subprocess.run([cc, *fl, f"-I{HERE}", "-o", tmp, str(src), "-lm"],
                               capture_output=True, text=True, timeout=300)
            if r.returncode == 0:
                os.replace(tmp, lib)  # atomic: a reader sees no file or a whole one
                return lib
            last_err = (r.stderr or r.stdout).strip()[-800:]
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise KernelUnavailable(f"compiling {src.name} with {cc} failed: {last_err}")


def load(name: str, *, required: bool = False) -> ctypes.CDLL | None:
    """The compiled kernel library ``nnsim/kernels/<name>.c`` (cached per process).

    Returns None (warning once, naming why) when kernels are disabled or cannot be built;
    with ``required=True`` raises ``KernelUnavailable`` instead.
    """
    with _lock:
        if disabled():
            why = "IMC_KERNELS=off"
            lib = None
        elif name in _loaded:
            lib = _loaded[name]
            why = _why.get(name, "")
        else:
            try:
                lib = ctypes.CDLL(str(_build(name)))
                why = ""
            except (KernelUnavailable, OSError, subprocess.SubprocessError) as exc:
                lib, why = None, str(exc)
            _loaded[name], _why[name] = lib, why
        if lib is None:
            if required:
                raise KernelUnavailable(f"kernel {name!r}: {why}")
            if name not in _warned:
                _warned.add(name)
                warnings.warn(f"nnsim.kernels: C kernel {name!r} unavailable ({why}); "
                              "using the torch path", RuntimeWarning, stacklevel=2)
        return lib


def why_unavailable(name: str) -> str | None:
    """Why ``load(name)`` gave None (None if it loaded or was not tried)."""
    if disabled():
        return "IMC_KERNELS=off"
    return _why.get(name) or None


def reset() -> None:
    """Forget loaded kernels and warnings (tests: re-evaluate the environment)."""
    with _lock:
        _loaded.clear()
        _why.clear()
        _warned.clear()


def ptr(t: torch.Tensor, dtype: torch.dtype | None = None) -> ctypes.c_void_p:
    """The data pointer of a contiguous CPU tensor (of ``dtype`` if given), for ctypes; no
    copy. Raises ValueError otherwise (the caller keeps the tensor alive during the call)."""
    if t.device.type != "cpu" or not t.is_contiguous():
        raise ValueError(f"kernel buffers must be contiguous CPU tensors, got {t.device} "
                         f"contiguous={t.is_contiguous()}")
    if dtype is not None and t.dtype != dtype:
        raise ValueError(f"kernel buffer dtype {t.dtype}, expected {dtype}")
    return ctypes.c_void_p(t.data_ptr())


def threads() -> int:
    """Threads a kernel should use: torch's intra-op thread count."""
    return max(1, int(torch.get_num_threads()))


def info() -> dict[str, Any]:
    """What the loader would use (for logs and provenance)."""
    cc = compiler()
    return {"cc": cc, "disabled": disabled(), "cache": str(cache_dir()),
            "cflags": os.environ.get("IMC_KERNEL_CFLAGS") or " ".join(DEFAULT_CFLAGS)}
