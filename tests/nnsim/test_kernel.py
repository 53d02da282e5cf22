"""The C kernels (issue 17): the loader (compile at first use, cache, fall back), the
counter-based generator, and the fused bit-mode readout against the torch path."""

from __future__ import annotations

import ctypes
import dataclasses
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from nnsim import kernels
from nnsim.analog import AnalogConfig


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


def test_dense_row_generator_gives_the_scalar_generators_bits(lib):
    """The readout's row generator (AVX-512 blocks of 16 counters where built, the
    compiler-vectorized loop for the rest) gives ``imc_normal4``'s Gaussians bit for bit: odd
    starts and lengths, a counter whose low word wraps, a key with both halves set."""
    for key, start, n in ((12345, 7, 100_001), (2 ** 64 - 5, 2 ** 34 - 1000, 5000),
                          (99, (2 ** 32 - 10) * 4 + 3, 4001), (0, 0, 64 * 16 + 5)):
        want = _normals(lib, key, start, n)
        got = torch.empty(n, dtype=torch.float32)
        lib.imc_normal_fill_dense(ctypes.c_uint64(key), ctypes.c_uint64(start),
                                  ctypes.c_int64(n), kernels.ptr(got))
        assert torch.equal(got, want), (key, start, int((got != want).sum()))


def test_simd_row_gives_the_general_rows_bits(lib, hw_tt):
    """The default configuration (transfer with per-chip spread, read noise, the file's ADC
    noise: every conversion drawn) through the kernel's AVX-512 dense row and through its
    general row: the same outputs bit for bit, for column counts that leave a partial block of
    16, 1 and 2 tiles, and several calls of one generator."""
    from nnsim import analog
    from nnsim.analog import mvm

    if not lib.imc_simd():
        pytest.skip("kernel built without AVX-512: only the general row exists")
    cfg = AnalogConfig(readout_kernel="c")
    adc = hw_tt.adc()
    assert 2.0 * adc.SIGMAS * adc.noise_lsb >= adc.DENSE_AT  # mode 1: the row it replaces
    for rows, cols in ((64, 12), (100, 37)):
        arr = _small_array(hw_tt, cfg, cols=cols, rows=rows)
        x = torch.randn(3, 9, rows, generator=torch.Generator().manual_seed(5))
        outs = []
        for simd in (True, False):
            arr.cache.pop("spread_z", None)
            g = torch.Generator().manual_seed(11)
            analog.KERNEL_SIMD = simd
            try:
                outs.append(torch.cat([mvm(x, arr, cfg, hw_tt, adc, g) for _ in range(2)]))
            finally:
                analog.KERNEL_SIMD = True
        assert torch.equal(outs[0], outs[1]), float((outs[0] - outs[1]).abs().max())
        assert float(outs[0].std()) > 0


_GAMMA = 0x9E3779B97F4A7C15
_M64 = 2 ** 64 - 1


def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def test_kernel_variates_are_the_exact_normal_quantiles(lib):
    """A drawn conversion's variate is Phi^-1(U) of its own 48 bits (inverse-transform
    sampling). Recomputed here: the top 16 bits from SplitMix64 word e >> 2 of the call's key
    (its (e & 3)-th 16 bits), the low 32 from the second stream, U = (k + 1/2) 2^-48, scipy's
    ndtri in float64: the kernel's variate agrees to 1e-12 for 4000 elements of two keys, and
    the quantile table's cell of U brackets it; 40k variates have N(0, 1)'s moments."""
    from scipy.special import ndtri

    from nnsim.analog import kernel_quantiles

    q = kernel_quantiles()
    assert q.shape == (4096, 2) and torch.all(q[:, 0] < q[:, 1])
    lib.imc_variate.restype = ctypes.c_double
    rng = np.random.default_rng(0)
    for key in (12345, 2 ** 64 - 77):
        k2 = _mix64(key ^ 0xD1B54A32D192ED03)
        es = [0, 1, 2, 3, 4, 5, 2 ** 40 + 3, *rng.integers(0, 2 ** 50, 3993).tolist()]
        for e in es:
            h = (_mix64((key + ((e >> 2) + 1) * _GAMMA) & _M64) >> (16 * (e & 3))) & 0xFFFF
            lo = _mix64((k2 + (e + 1) * _GAMMA) & _M64) & 0xFFFFFFFF
            want = float(ndtri(((h << 32 | lo) + 0.5) / 2.0 ** 48))
            got = lib.imc_variate(ctypes.c_uint64(key), ctypes.c_uint64(e), kernels.ptr(q))
            assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (key, e, got, want)
            c = h >> 4
            assert float(q[c, 0]) <= want <= float(q[c, 1])
    z = np.array([lib.imc_variate(ctypes.c_uint64(7), ctypes.c_uint64(e), kernels.ptr(q))
                  for e in range(40_000)])
    n = z.size
    assert abs(z.mean()) < 4 / math.sqrt(n) and abs(z.var() - 1) < 4 * math.sqrt(2 / n)


@pytest.mark.parametrize("noise_lsb", [None, 0.004])
def test_quantile_shortcut_gives_the_evaluated_variates_bits(lib, hw_tt, noise_lsb):
    """Deciding a drawn code from its quantile cell (both ends give one code: most draws)
    gives the same outputs bit for bit as evaluating Phi^-1 for every draw
    (``KERNEL_SLOW_DRAWS``), through the AVX-512 row (where built) and the general row; the
    file's ADC noise (every conversion drawn) and a small one (threshold-near selection:
    sparse and dense rows); 1 and 2 tiles."""
    from nnsim import analog
    from nnsim.analog import mvm

    adc = hw_tt.adc()
    if noise_lsb is not None:
        adc = dataclasses.replace(adc, noise_lsb=noise_lsb, _cache={})
    cfg = AnalogConfig(readout_kernel="c")
    for rows, cols in ((64, 12), (100, 37)):
        arr = _small_array(hw_tt, cfg, cols=cols, rows=rows)
        x = torch.randn(3, 9, rows, generator=torch.Generator().manual_seed(5))
        outs = {}
        for simd in (True, False):
            for slow in (False, True):
                arr.cache.pop("spread_z", None)
                g = torch.Generator().manual_seed(11)
                analog.KERNEL_SIMD, analog.KERNEL_SLOW_DRAWS = simd, slow
                try:
                    outs[simd, slow] = torch.cat([mvm(x, arr, cfg, hw_tt, adc, g)
                                                  for _ in range(2)])
                finally:
                    analog.KERNEL_SIMD, analog.KERNEL_SLOW_DRAWS = True, False
        ref = outs[False, True]
        for k, v in outs.items():
            assert torch.equal(v, ref), (k, float((v - ref).abs().max()))
        assert float(ref.std()) > 0


def test_cache_is_reused_and_keyed_by_source(tmp_path, monkeypatch):
    """A fresh cache directory gets one library, named by the sources' hash; loading again
    (the process's memo forgotten) reuses the file, no second compile; another source text
    is another library; no temporary is left behind. (A one-function source in a scratch
    folder: the loader's logic, without compiling the readout kernel again.)"""
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny.c").write_text("int imc_tiny(int x) { return 3 * x; }\n")
    cache = tmp_path / "cache"
    monkeypatch.setattr(kernels, "HERE", src)
    monkeypatch.setenv("IMC_KERNEL_CACHE", str(cache))
    kernels.reset()
    try:
        first = kernels.load("tiny", required=True)
        assert first.imc_tiny(14) == 42
        libs = sorted(cache.glob("tiny-*.so"))
        assert len(libs) == 1 and first._name == str(libs[0])
        mtime = libs[0].stat().st_mtime_ns
        kernels.reset()
        again = kernels.load("tiny", required=True)
        assert again._name == first._name and libs[0].stat().st_mtime_ns == mtime
        (src / "tiny.c").write_text("int imc_tiny(int x) { return 4 * x; }\n")
        kernels.reset()
        other = kernels.load("tiny", required=True)
        assert other._name != first._name and other.imc_tiny(14) == 56
        assert len(list(cache.glob("tiny-*.so"))) == 2
        assert not list(cache.glob(".tiny-*"))
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


# --- the fused readout ------------------------------------------------------------------

def _small_array(hw, cfg, seed=0, cols=12, rows=64):
    from nnsim.analog import build_array, map_matrix, write_levels

    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    mapped = map_matrix(w, w.abs().amax(0, keepdim=True), cfg, hw)
    prog = write_levels(mapped.targets, hw, "fit", "verify", 1.0, None, g, mapped.integer)
    t = -(-rows // cfg.tile_rows)
    inst = torch.randint(0, hw.adc().instances, (t, 1, prog.shape[-4] * 2 * cols), generator=g)
    return build_array(mapped, prog, cfg, hw, inst)


def _adc_variants(hw):
    """The file's ADC, and one whose thresholds crowd (up to 3 in one LSB: the kernel's
    4-wide layout) and one with 6 in one LSB (its general loop)."""
    adc = hw.adc()
    out = [adc]
    th = adc.thresholds_lsb.copy()
    tight = th.copy()
    tight[:, 10:13] = tight[:, 10:11] + np.array([0.0, 0.3, 0.6])
    out.append(dataclasses.replace(adc, thresholds_lsb=np.maximum.accumulate(tight, axis=1),
                                   _cache={}))
    crowd = th.copy()
    crowd[:, 20:26] = crowd[:, 20:21] + np.linspace(0.0, 0.9, 6)
    out.append(dataclasses.replace(adc, thresholds_lsb=np.maximum.accumulate(crowd, axis=1),
                                   _cache={}))
    return out


def test_kernel_adc_codes_equal_the_binary_search_at_every_threshold(lib, hw_tt):
    """The kernel's table ADC gives the exact count of thresholds at or below the input
    (``AdcModel.quantize``, a float64 binary search, and the torch path's ``quantize_fast``)
    at, one float32 step below and above every threshold of every instance, and on a dense
    grid beyond both ends; with per-value instances; the three threshold layouts."""
    from nnsim.analog import kernel_adc_tables

    for adc in _adc_variants(hw_tt):
        kt = kernel_adc_tables(adc)
        th = torch.as_tensor(adc.thresholds_lsb, dtype=torch.float32)
        n_i, n_t = th.shape
        at = th.reshape(-1)
        xs = torch.cat([at, torch.nextafter(at, torch.tensor(-np.inf)),
                        torch.nextafter(at, torch.tensor(np.inf))])
        inst = torch.arange(n_i).repeat_interleave(n_t).repeat(3)
        grid = torch.linspace(-4.0, adc.max_code + 4.0, 20011)
        xs = torch.cat([xs, grid.repeat(n_i)]).contiguous()
        inst = torch.cat([inst, torch.arange(n_i).repeat_interleave(grid.numel())])
        inst32 = inst.to(torch.int32).contiguous()
        got = torch.empty_like(xs)
        lib.imc_adc_codes(kernels.ptr(xs), kernels.ptr(inst32), ctypes.c_int64(xs.numel()),
                          kernels.ptr(kt["bins"]), ctypes.c_int64(kt["nbins"]),
                          ctypes.c_int64(kt["J"]), ctypes.c_double(kt["xlo"]),
                          ctypes.c_double(kt["xhi"]), kernels.ptr(got))
        want = adc.quantize(xs, inst, noise=False)
        assert torch.equal(got, want), int((got != want).sum())
        assert torch.equal(got, adc.quantize_fast(xs, inst))
    assert [kernel_adc_tables(a)["J"] for a in _adc_variants(hw_tt)][1:] == [4, 6]


def _paths(cfg):
    return (dataclasses.replace(cfg, readout_kernel="torch"),
            dataclasses.replace(cfg, readout_kernel="c"))


def test_kernel_mvm_equals_the_torch_path_without_per_conversion_noise(lib, hw_tt):
    """Read noise and ADC noise off (the transfer, its per-chip spread, the programmed cells,
    the per-column ADC instances on): the kernel's readout and shift-and-add give the torch
    path's outputs (the same codes; the sums differ only in float32 rounding order), for
    signed and unsigned inputs, 1 and 2 tiles, and the ADC off."""
    from nnsim.analog import mvm, readout_paths

    for rows, signed, adc_on in ((64, True, True), (100, True, True), (64, False, True),
                                 (64, True, False)):
        cfg = AnalogConfig(read_noise=False, adc_noise=False, adc=adc_on)
        arr = _small_array(hw_tt, cfg, rows=rows)
        x = torch.randn(2, 7, rows, generator=torch.Generator().manual_seed(3))
        if not signed:
            x = torch.softmax(x * 3, -1)
        outs = []
        readout_paths(reset=True)
        for c in _paths(cfg):
            arr.cache.pop("spread_z", None)
            g = torch.Generator().manual_seed(9)
            outs.append(mvm(x, arr, c, hw_tt, hw_tt.adc() if adc_on else None, g,
                            signed=signed))
        paths = readout_paths()
        assert paths["c"] == paths["torch"] > 0
        scale = float(outs[0].abs().max())
        torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=2e-6 * scale)
        assert scale > 0


def _codes_through_kernel(hw, adc, cfg, x_target, reps, seed=0):
    """Drive the kernel with partial sums chosen so each column's noiseless ADC input is
    ``x_target`` (LSB), ``reps`` rows of them (independent draws), one plane and slice: the
    output is each conversion's (code + offset) x LSB. Returns codes (reps, K), the noiseless
    inputs and the per-conversion sigma (LSB) computed independently with the fused table."""
    from nnsim.analog import Array, _readout_kernel

    k = x_target.numel()
    inst = (torch.arange(k) % adc.instances).reshape(1, 1, k)
    n = 40.0
    i_fs = torch.full((1, 1, k), 8.0 * hw.unit_a * adc.max_code)  # 1 LSB = 8 level units
    arr = Array(torch.zeros(1, 1, k), i_fs, inst, torch.ones(1), torch.ones(1, k), k, 64, {})
    lsb_u = 8.0
    ca, cb = hw.cell_map()
    u = x_target.double() * lsb_u  # nonlinearity off: u is the ADC's input in level units
    s = ((u - cb * n) / ca).float()
    s = s.reshape(1, 1, k).expand(1, reps, k).contiguous()
    n_act = torch.full((1, reps, 1), n)
    g = torch.Generator().manual_seed(seed)
    out = _readout_kernel(s, n_act, arr, cfg, hw, adc, g, torch.ones(1, 1), 1, reps)
    codes = out / lsb_u - adc.code_offset
    u32 = (s[0, 0] * ca + float(n * cb)) if ca != 1.0 else s[0, 0] + float(n * cb)
    tb = hw.fused_readout("cpu", gain=False, read=True, spread=False)
    read = hw.fused_terms(u32.clone(), tb)[-1].double() / lsb_u
    an2 = adc.noise_lsb ** 2 if cfg.adc_noise else 0.0
    sd = torch.sqrt(read ** 2 * cfg.read_noise + an2)
    return codes.double(), (u32.double() / lsb_u), sd


@pytest.mark.parametrize(("noise_lsb", "sampling", "pattern"), [
    (None, "threshold", "mixed"), (None, "full", "mixed"), (0.004, "threshold", "mixed"),
    (0.004, "threshold", "sparse"), (0.004, "full", "sparse")])
def test_kernel_code_mean_and_variance_are_the_exact_gaussian_ones(lib, hw_tt, noise_lsb,
                                                                    sampling, pattern):
    """Per conversion (inputs at, near and far from thresholds of their instances): the
    kernel's codes over 4000 independent draws have the mean and variance of the exact code
    distribution of x + sigma N(0, 1) through the instance's thresholds (Gaussian CDF),
    sigma = read noise (fused table, at the conversion's current) and ADC noise in
    quadrature; the file's ADC noise (every conversion drawn) and a small one (threshold-near
    sampling's selection path)."""
    adc = hw_tt.adc()
    if noise_lsb is not None:
        adc = dataclasses.replace(adc, noise_lsb=noise_lsb, _cache={})
    cfg = AnalogConfig(nonlinearity=False, sampling=sampling)
    th = adc.thresholds_lsb
    k = 48
    inst = np.arange(k) % adc.instances
    j = 5 + np.arange(k) // 2
    if pattern == "mixed":  # half of a row near a threshold: the row draws densely
        off = np.tile([0.0, 0.01, -0.02, 0.05, 0.5, -0.3, 0.1, -0.07], k // 8)
    else:  # few near: the selection draws only those
        off = np.tile([0.0] + [0.5] * 11 + [0.01] + [-0.45] * 11, k // 24)
    x_t = torch.tensor(th[inst, j] + off, dtype=torch.float32)
    reps = 4000
    from nnsim.analog import readout_paths

    readout_paths(reset=True)
    codes, x, sd = _codes_through_kernel(hw_tt, adc, cfg, x_t, reps)
    drawn = readout_paths()["c_drawn"] / (reps * k)
    if sampling == "full" or noise_lsb is None:  # the file's ADC noise: every one drawn
        assert drawn == 1.0
    else:  # only the conversions near a threshold (1 in 12 in "sparse")
        assert drawn < (0.9 if pattern == "mixed" else 0.15), drawn
    from scipy.stats import norm

    mean = np.zeros(k)
    ex2 = np.zeros(k)
    for q in range(k):
        pk = norm.cdf((x[q].item() - th[inst[q]]) / sd[q].item())  # P(code >= i + 1)
        mean[q] = pk.sum()
        ex2[q] = ((2 * np.arange(pk.size) + 1) * pk).sum()
    var = ex2 - mean ** 2
    got_m = codes.mean(0).numpy()
    got_v = codes.var(0).numpy()
    se = np.sqrt(np.maximum(var, 1e-12) / reps)
    assert np.all(np.abs(got_m - mean) < 5 * se + 1e-9), np.max(np.abs(got_m - mean) / se)
    inform = var > 0.02
    assert inform.sum() >= (k // 3 if pattern == "mixed" else 2)
    ratio = got_v[inform] / var[inform]
    assert np.all((ratio > 0.8) & (ratio < 1.25)), ratio
    assert float(sd.min()) > 0


def test_tiny_digits_kernel_and_torch_path_score_alike(tiny_digits_model, hw_tt, lib):
    """The tiny digits ViT through the kernel and through the torch path, paired over the
    same 3 chips and 40 images (different random bits, same model): the difference's 95 %
    interval holds 0 and is narrow; each run records the path it took."""
    from nnsim.data import load_dataset
    from nnsim.evaluate import compare, evaluate_chips

    model, _ = tiny_digits_model
    ds = load_dataset("digits", "test").subset(40)
    pts = {k: evaluate_chips(model, hw_tt, AnalogConfig(readout_kernel=k), ds, chips=3,
                             seed=4, batch_size=40, cache=None) for k in ("c", "torch")}
    c = compare(pts["c"], pts["torch"], "c - torch")
    lo, hi = c.difference_ci95
    assert lo <= 0.0 <= hi, (c.difference_mean, c.difference_ci95)
    assert hi - lo < 0.15
    assert pts["c"].accuracy_mean > 0.6
    assert pts["c"].timing["readout_kernel"] == "c"
    assert pts["torch"].timing["readout_kernel"] == "torch"


_THREADS_CHILD = """
import sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads({threads})
from tests.nnsim.test_kernel import _digest
assert torch.get_num_threads() == {threads}
print(_digest({paths!r}))
"""


def _digest(paths) -> str:
    import hashlib

    from nnsim.analog import mvm
    from nnsim.hardware import HardwareModel

    hw = HardwareModel.from_lookup(paths, process="tt", vdd_v=1.8, temp_c=27.0, adc_bits=6)
    cfg = AnalogConfig(readout_kernel="c")
    arr = _small_array(hw, cfg, cols=40, rows=100)
    x = torch.randn(3, 37, 100, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(7)
    y = torch.cat([mvm(x, arr, cfg, hw, hw.adc(), g).reshape(-1) for _ in range(3)])
    return hashlib.sha256(y.numpy().tobytes()).hexdigest()


def test_same_seed_same_bits_with_one_and_two_threads(synthetic_lookups, lib):
    """The kernel's draws depend on the seed and the element only: a fresh process with 2
    threads gives this (1-thread) process's outputs, bit for bit."""
    from pathlib import Path

    assert torch.get_num_threads() == 1
    paths = [str(p) for p in synthetic_lookups]
    root = str(Path(__file__).resolve().parents[2])
    code = _THREADS_CHILD.format(root=root, paths=paths, threads=2)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == _digest(paths)


def test_avx512_build_gives_the_portable_builds_bits(synthetic_lookups, lib, tmp_path):
    """The kernel built for AVX-512 (this process, -march=native) and built for AVX2 only
    (-march=x86-64-v3, a fresh process and cache: the compiler-vectorized generator and the
    general rows) give the same ``mvm`` outputs bit for bit on the default configuration."""
    import os
    from pathlib import Path

    if not lib.imc_simd():
        pytest.skip("this kernel has no AVX-512 paths to compare")
    paths = [str(p) for p in synthetic_lookups]
    root = str(Path(__file__).resolve().parents[2])
    code = _THREADS_CHILD.format(root=root, paths=paths, threads=1)
    flags = [f for f in kernels.DEFAULT_CFLAGS if not f.startswith("-march")]
    env = dict(os.environ, IMC_KERNEL_CACHE=str(tmp_path),
               IMC_KERNEL_CFLAGS=" ".join(["-march=x86-64-v3", *flags]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, cwd=root, env=env)
    if r.returncode != 0 and "KernelUnavailable" in r.stderr:
        pytest.skip(f"no AVX2-only build here: {r.stderr[-300:]}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == _digest(paths)


def test_mvm_falls_back_to_the_torch_path_without_a_compiler(tmp_path, monkeypatch, hw_tt):
    """No compiler (CC pointing at nothing, empty cache): ``mvm`` runs the torch path, says
    so once, counts it; ``readout_kernel="c"`` raises instead; back with the compiler."""
    from nnsim.analog import mvm, readout_paths

    cfg = AnalogConfig()
    arr = _small_array(hw_tt, cfg)
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    monkeypatch.setenv("IMC_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    kernels.reset()
    try:
        readout_paths(reset=True)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            y = mvm(x, arr, cfg, hw_tt, hw_tt.adc(), torch.Generator().manual_seed(0))
            mvm(x, arr, cfg, hw_tt, hw_tt.adc(), torch.Generator().manual_seed(0))
        msgs = [str(m.message) for m in w if "nnsim.kernels" in str(m.message)]
        assert len(msgs) == 1 and "no C compiler" in msgs[0]
        paths = readout_paths()
        assert (paths["c"], paths["torch"], paths["c_drawn"]) == (
            0, 2 * 5 * 8 * arr.cells_mm.shape[-1], 0)
        assert torch.isfinite(y).all()
        with pytest.raises(kernels.KernelUnavailable):
            mvm(x, arr, dataclasses.replace(cfg, readout_kernel="c"), hw_tt, hw_tt.adc(),
                torch.Generator().manual_seed(0))
    finally:
        kernels.reset()


def test_mvm_records_the_simulated_column_currents_and_active_rows(lib, hw_tt):
    """Both paths add, per conversion, the ideal column current at T ((a S + b n) x unit, the
    cells' G(T)) and the active rows: equal to a float64 recomputation from the input bits
    and the programmed levels (numpy, not the simulator's readout), for 2 tiles."""
    from nnsim.analog import input_planes, mvm, readout_paths

    cfg = AnalogConfig()
    rows = 100
    arr = _small_array(hw_tt, cfg, rows=rows)
    x = torch.randn(6, rows, generator=torch.Generator().manual_seed(4))
    planes, _, _ = input_planes(x, cfg.input_bits, True)
    b = np.zeros((planes.shape[0], 6, 128))
    b[..., :rows] = planes.double().numpy()
    cells = arr.cells_mm.double().numpy()  # (T, 64, K)
    t = cells.shape[0]
    b = b.reshape(planes.shape[0], 6, t, 64)
    s = np.einsum("pmtr,trk->ptmk", b, cells)
    n = b.sum(-1)  # (P, M, T)
    ca, cb = hw_tt.cell_map()
    k = cells.shape[-1]
    want_i = float((ca * s).sum() + cb * n.sum() * k) * hw_tt.unit_a
    want_rows = float(n.sum() * k)
    for c in _paths(cfg):
        readout_paths(reset=True)
        mvm(x, arr, c, hw_tt, hw_tt.adc(), torch.Generator().manual_seed(0))
        p = readout_paths()
        assert p["c"] + p["torch"] == s.size
        assert p["current_a"] == pytest.approx(want_i, rel=1e-6, abs=0)
        assert p["active_rows"] == pytest.approx(want_rows, rel=1e-9, abs=0)
    # a mean column current between the G_min floor and all rows at the top level
    mean = want_i / s.size
    assert 0 < mean < 64 * hw_tt.g_max_s * hw_tt.v_read_v
