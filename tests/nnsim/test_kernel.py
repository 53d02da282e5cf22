"""The C kernels (issue 17): the loader (compile at first use, cache, fall back), the
counter-based generator, and the fused bit-mode readout against the torch path."""

from __future__ import annotations

import ctypes
import math
import warnings

import pytest
import torch

from nnsim import kernels


@pytest.fixture(scope="module")
def lib():
    lib = kernels.load("readout")
    if lib is None:
        pytest.skip(f"no C kernel here: {kernels.why_unavailable('readout')}")
    return lib


def _normals(lib, key: int, start: int, n: int) -> torch.Tensor:
    out = torch.empty(n, dtype=torch.float32)
    lib.imc_normal_fill(ctypes.c_uint64(key), ctypes.c_uint64(start), ctypes.c_int64(n),
                        ctypes.c_uint32(0), kernels.ptr(out))
    return out


def test_philox_known_answers(lib):
    """Philox4x32-10 against the Random123 known-answer vectors (counter, key -> words)."""
    kat = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
           ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2,
            (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
           ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for c, k, want in kat:
        ca, ka, out = (ctypes.c_uint32 * 4)(*c), (ctypes.c_uint32 * 2)(*k), (ctypes.c_uint32 * 4)()
        lib.imc_philox_raw(ca, ka, out)
        assert tuple(out) == want, [hex(v) for v in out]


def test_normals_by_index_and_their_moments(lib):
    """Element i's Gaussian depends on (key, i) only: a fill split anywhere gives the same
    bits; mean, variance and tail fractions of 400k draws match N(0, 1)."""
    a = _normals(lib, 12345, 7, 1001)
    b = torch.cat([_normals(lib, 12345, 7, 3), _normals(lib, 12345, 10, 998)])
    assert torch.equal(a, b)
    assert not torch.equal(a, _normals(lib, 12346, 7, 1001))
    z = _normals(lib, 99, 0, 400_000).double()
    n = z.numel()
    assert abs(float(z.mean())) < 4 / math.sqrt(n)
    assert abs(float(z.var()) - 1) < 4 * math.sqrt(2 / n)
    assert abs(float((z ** 4).mean()) - 3) < 4 * math.sqrt(96 / n)
    for k in (1.0, 2.0, 3.0):
        p = math.erfc(k / math.sqrt(2))
        frac = float((z.abs() > k).double().mean())
        assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n) + 1e-6, (k, frac, p)


def test_cache_is_reused_and_keyed_by_source(tmp_path, monkeypatch, lib):
    """A fresh cache directory gets one library, named by the sources' hash; loading again
    (the process's memo forgotten) reuses the file, no second compile; no temporary is left."""
    monkeypatch.setenv("IMC_KERNEL_CACHE", str(tmp_path))
    kernels.reset()
    try:
        first = kernels.load("readout", required=True)
        libs = sorted(tmp_path.glob("readout-*.so"))
        assert len(libs) == 1 and first._name == str(libs[0])
        mtime = libs[0].stat().st_mtime_ns
        kernels.reset()
        again = kernels.load("readout", required=True)
        assert again._name == first._name and libs[0].stat().st_mtime_ns == mtime
        assert sorted(tmp_path.glob("readout-*.so")) == libs
        assert not list(tmp_path.glob(".readout-*"))
    finally:
        kernels.reset()


def test_missing_compiler_falls_back_and_says_so(tmp_path, monkeypatch):
    """CC naming a binary that does not exist (and an empty cache): load gives None with one
    warning naming the compiler; ``required=True`` raises; IMC_KERNELS=off says so too."""
    monkeypatch.setenv("IMC_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    kernels.reset()
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            assert kernels.load("readout") is None
            assert kernels.load("readout") is None
        msgs = [str(x.message) for x in w if "nnsim.kernels" in str(x.message)]
        assert len(msgs) == 1 and "no C compiler" in msgs[0] and "torch path" in msgs[0]
        with pytest.raises(kernels.KernelUnavailable):
            kernels.load("readout", required=True)
        monkeypatch.delenv("CC")
        monkeypatch.setenv("IMC_KERNELS", "off")
        assert kernels.load("readout") is None
        assert kernels.why_unavailable("readout") == "IMC_KERNELS=off"
    finally:
        kernels.reset()
