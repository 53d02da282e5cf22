"""IEEE 1241 ADC metrics on codes: four-parameter sine fit (ENOB, SINAD), code-density DNL/INL.

These functions take plain integer codes, so they work on codes measured on silicon as well
as on simulated ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from characterization.errors import ConfigError


@dataclass(frozen=True)
class SineFitResult:
    """Result of ``sine_fit_enob``.

    Attributes:
        enob: Effective number of bits, corrected for the low-resolution bias (see
            ``sine_fit_enob``).
        enob_uncorrected: ``bits - log2(rms_residual / (1/sqrt(12)))``, the textbook value.
        sinad_db: Signal to noise-and-distortion ratio, dB (amplitude / sqrt 2 over the rms
            residual).
        amplitude_lsb: Fitted amplitude, LSB (codes).
        offset_lsb: Fitted DC level, LSB.
        freq_cycles: Fitted frequency in cycles per record.
        phase_rad: Fitted phase.
        rms_residual_lsb: RMS of codes minus the fitted sine, LSB.
        rms_ideal_lsb: RMS residual of an ideal quantizer of the fitted sine, LSB.
    """

    enob: float
    enob_uncorrected: float
    sinad_db: float
    amplitude_lsb: float
    offset_lsb: float
    freq_cycles: float
    phase_rad: float
    rms_residual_lsb: float
    rms_ideal_lsb: float


def _three_param(y: np.ndarray, w: float, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.column_stack([np.cos(w * n), np.sin(w * n), np.ones_like(n)])
    x, *_ = np.linalg.lstsq(d, y, rcond=None)
    return x, d @ x


def fit_sine_4param(y: np.ndarray, *, freq_cycles: float | None = None,
                    iterations: int = 30) -> tuple[float, float, float, float]:
    """IEEE 1241 four-parameter least-squares sine fit ``A cos(w n) + B sin(w n) + C``.

    The start frequency comes from the largest FFT bin (refined by parabolic interpolation),
    then a three-parameter fit, then Gauss-Newton steps on (A, B, C, w).

    Args:
        y: Samples (codes).
        freq_cycles: Start frequency in cycles per record, if known.
        iterations: Maximum Gauss-Newton steps.

    Returns:
        (amplitude, offset, frequency in cycles per record, phase) with
        ``y ~ amplitude * cos(2 pi f n / M + phase) + offset``.
    """
    y = np.asarray(y, dtype=float)
    m = y.size
    if m < 8:
        raise ConfigError(f"sine fit needs at least 8 samples, got {m}")
    n = np.arange(m, dtype=float)
    if freq_cycles is None:
        spec = np.abs(np.fft.rfft(y - y.mean()))
        k = int(np.argmax(spec[1:]) + 1)
        if 1 <= k < spec.size - 1:
            a, b, c = spec[k - 1], spec[k], spec[k + 1]
            den = a - 2 * b + c
            k = k + (0.5 * (a - c) / den if den != 0 else 0.0)
        freq_cycles = float(k)
    w = 2 * np.pi * freq_cycles / m
    (a, b, c), _ = _three_param(y, w, n)
    for _ in range(iterations):
        d = np.column_stack([np.cos(w * n), np.sin(w * n), np.ones_like(n),
                             -a * n * np.sin(w * n) + b * n * np.cos(w * n)])
        r = y - (a * np.cos(w * n) + b * np.sin(w * n) + c)
        dx, *_ = np.linalg.lstsq(d, r, rcond=None)
        a, b, c, w = a + dx[0], b + dx[1], c + dx[2], w + dx[3]
        if abs(dx[3]) < 1e-12 * max(w, 1e-12):
            break
    amp = float(np.hypot(a, b))
    phase = float(np.arctan2(-b, a))
    return amp, float(c), float(w * m / (2 * np.pi)), phase


def sine_fit_enob(codes: np.ndarray, bits: int, *, freq_cycles: float | None = None
                  ) -> SineFitResult:
    """ENOB and SINAD of ``codes`` by the IEEE 1241 four-parameter sine fit.

    Low-resolution bias: for fewer than about 20 levels the quantization error of a sine is
    neither uniform nor white, so the ideal quantizer's residual differs from 1/sqrt(12) LSB
    and the textbook ``ENOB = bits - log2(rms / (1/sqrt 12))`` is biased (for 3 bits by up to
    a few tenths of a bit, depending on amplitude and phase). We remove that bias the way
    IEEE 1241 suggests comparing against an ideal converter: quantize the *fitted* sine with an
    ideal ``bits``-bit quantizer (``floor``, clipped to the code range), fit that the same way,
    and use its residual as the reference: ``ENOB = bits - log2(rms / rms_ideal)``. An ideal
    quantizer then gives ENOB = bits for any amplitude, and added noise lowers it as theory
    says. The textbook value is also returned (``enob_uncorrected``).

    Args:
        codes: Output codes (integers 0 .. 2^bits - 1) of a coherently sampled sine.
        bits: Resolution.
        freq_cycles: Input frequency in cycles per record, if known (coherent sampling).

    Returns:
        SineFitResult.
    """
    y = np.asarray(codes, dtype=float)
    if bits < 1:
        raise ConfigError(f"bits must be >= 1, got {bits!r}")
    amp, off, f, ph = fit_sine_4param(y, freq_cycles=freq_cycles)
    n = np.arange(y.size)
    fit = amp * np.cos(2 * np.pi * f * n / y.size + ph) + off
    rms = float(np.sqrt(np.mean((y - fit) ** 2)))
    rms_ideal = _ideal_residual(amp, off, f, ph, y.size, bits)
    rms_eff = max(rms, 1e-12)
    enob = bits - float(np.log2(rms_eff / max(rms_ideal, 1e-12)))
    enob_u = bits - float(np.log2(rms_eff * np.sqrt(12.0)))
    sinad = 20 * float(np.log10((amp / np.sqrt(2)) / rms_eff))
    return SineFitResult(enob, enob_u, sinad, amp, off, f, ph, rms, rms_ideal)


def _ideal_residual(amp: float, off: float, f: float, ph: float, m: int, bits: int,
                    iterations: int = 6) -> float:
    """RMS fit residual of an ideal quantizer driven by the stimulus that explains a fit.

    The fit of quantized data is itself biased (amplitude and offset by up to tenths of an
    LSB at 3 bits), so the fitted sine is not the stimulus. We invert that bias by a fixed
    point iteration: find the stimulus (A, C) whose ideal quantization fits to the observed
    (amp, off); its residual is the reference.
    """
    n = np.arange(m)
    top = 2**bits - 1
    a_s, c_s = amp, off + 0.5  # code = floor(x): stimulus sits half an LSB above the codes
    rms_ideal = float("nan")
    for _ in range(iterations):
        x = a_s * np.cos(2 * np.pi * f * n / m + ph) + c_s
        ideal = np.clip(np.floor(x), 0, top)
        a2, o2, f2, p2 = fit_sine_4param(ideal, freq_cycles=f)
        fit2 = a2 * np.cos(2 * np.pi * f2 * n / m + p2) + o2
        rms_ideal = float(np.sqrt(np.mean((ideal - fit2) ** 2)))
        da, dc = amp - a2, off - o2
        a_s, c_s = a_s + da, c_s + dc
        if abs(da) < 1e-4 and abs(dc) < 1e-4:
            break
    return rms_ideal


def coherent_sine_input(n_samples: int, cycles: int, amplitude: float, offset: float,
                        phase_rad: float = 0.1) -> np.ndarray:
    """A coherently sampled sine: ``cycles`` (coprime with ``n_samples``) periods per record."""
    if np.gcd(n_samples, cycles) != 1:
        raise ConfigError(f"cycles={cycles} and n_samples={n_samples} must be coprime")
    n = np.arange(n_samples)
    return offset + amplitude * np.sin(2 * np.pi * cycles * n / n_samples + phase_rad)


@dataclass(frozen=True)
class DensityResult:
    """Result of ``histogram_dnl_inl``.

    Attributes:
        dnl_lsb: DNL of codes 1 .. 2^bits - 2 (index 0 is code 1), LSB.
        inl_lsb: INL at transitions 1 .. 2^bits - 1 (index 0 is the 0->1 transition),
            endpoint fit, LSB.
        thresholds: Estimated transition levels 1 .. 2^bits - 1 in units of the input
            (ramp: fraction of the record range; sine: fitted amplitude/offset units).
        missing_codes: Codes 1 .. 2^bits - 2 that never occurred.
    """

    dnl_lsb: np.ndarray
    inl_lsb: np.ndarray
    thresholds: np.ndarray
    missing_codes: np.ndarray


def histogram_dnl_inl(codes: np.ndarray, bits: int, *, stimulus: str = "sine") -> DensityResult:
    """DNL and INL by the code-density (histogram) method of IEEE 1241.

    For a ramp (``stimulus="ramp"``), transition ``k`` lies at the cumulative fraction of
    samples below code ``k``. For a sine (default), that fraction is mapped through the
    arcsine distribution, ``T_k = -cos(pi * CH_k)`` (IEEE 1241, 6.4.3.3), in units of the
    sine amplitude; the sine must overdrive both ends of the range so codes 0 and 2^bits-1
    occur. DNL and INL use the endpoint (terminal) line through the first and last inner
    transitions: the average code width is ``(T_last - T_first) / (2^bits - 2)``.

    Args:
        codes: Output codes, 0 .. 2^bits - 1.
        bits: Resolution.
        stimulus: ``"sine"`` or ``"ramp"``.
    """
    codes = np.asarray(codes).astype(np.int64).ravel()
    levels = 2**bits
    if codes.size == 0:
        raise ConfigError("no codes given")
    if codes.min() < 0 or codes.max() >= levels:
        raise ConfigError(f"codes must lie in 0..{levels - 1} for {bits} bits; got "
                         f"{codes.min()}..{codes.max()}")
    hist = np.bincount(codes, minlength=levels).astype(float)
    ch = np.cumsum(hist)[:-1] / codes.size  # fraction below code k, k = 1..levels-1
    if stimulus == "sine":
        t = -np.cos(np.pi * ch)
    elif stimulus == "ramp":
        t = ch.copy()
    else:
        raise ConfigError(f"stimulus must be 'sine' or 'ramp', got {stimulus!r}")
    dnl, inl = dnl_inl_from_thresholds(t)
    missing = np.flatnonzero(hist[1:-1] == 0) + 1
    return DensityResult(dnl, inl, t, missing)


def dnl_inl_from_thresholds(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Endpoint DNL (codes 1..L-2) and INL (transitions 1..L-1) from transition levels.

    Args:
        t: Transition levels ``T_1 .. T_{L-1}`` (any units), last axis.
    """
    t = np.asarray(t, dtype=float)
    nt = t.shape[-1]
    if nt < 2:
        raise ConfigError("need at least two transitions")
    lsb = (t[..., -1] - t[..., 0]) / (nt - 1)
    lsb = np.asarray(lsb)[..., None]
    dnl = np.diff(t, axis=-1) / lsb - 1.0
    inl = (t - t[..., :1]) / lsb - np.arange(nt)
    return dnl, inl
