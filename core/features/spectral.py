"""Shared spectral building blocks: one STFT, cached filter banks, librosa-exact tuning.

Layout convention: spectrograms here are laid out as librosa lays them out, shape
``(n_bins, n_frames)``, float32. Computed block by block, so every buffer stays in cache.
The cached builders return read-only arrays: never modify them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import librosa
import numba
import numpy as np
import scipy.fft
import scipy.sparse

N_FFT = 2048
HOP = 512


@lru_cache(maxsize=8)
def hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window, as ``librosa.stft`` uses, float32 [shape=(n_fft,)]."""
    return _frozen(librosa.filters.get_window("hann", n_fft, fftbins=True).astype(np.float32))


def stft_complex(y: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Centred, zero-padded STFT, as ``librosa.stft(y)`` defaults, but in float32.

    Args:
        y: float32 signal [shape=(n,)].
    Returns:
        complex64 [shape=(1 + n_fft // 2, 1 + n // hop)].
    """
    return np.concatenate(list(stft_blocks(y, n_fft, hop, block=1 << 30)), axis=1)


def stft_blocks(
    y: np.ndarray, n_fft: int = N_FFT, hop: int = HOP, block: int = 32
) -> Iterator[np.ndarray]:
    """``stft_complex(y)`` in consecutive blocks of ``block`` frames (the last may be shorter).

    Working block by block keeps every buffer small: they stay in cache and are recycled by
    the allocator instead of being mapped fresh (page faults cost as much as the FFT). The
    windowed frames of every block go through one buffer, for the same reason.
    """
    half = n_fft // 2
    padded = np.zeros(y.size + 2 * half, np.float32)
    padded[half : half + y.size] = y
    # frame k is padded[k * hop : k * hop + n_fft]: a strided view, built directly because
    # np.pad and sliding_window_view spend about 15 us per clip in Python
    n_frames, size = 1 + y.size // hop, padded.itemsize
    frames = np.ndarray((n_frames, n_fft), np.float32, padded, strides=(hop * size, size))
    window = hann(n_fft)
    buffer = np.empty((min(block, n_frames), n_fft), np.float32)
    for start in range(0, n_frames, block):
        rows = frames[start : start + block]
        windowed = np.multiply(rows, window, out=buffer[: len(rows)])
        # along axis 0 of the transposed view: pocketfft then transforms several frames at
        # once with SIMD, and the result is (bins, frames) without a transpose
        yield scipy.fft.rfft(windowed.T, axis=0, workers=1)


@lru_cache(maxsize=8)
def mel_filterbank(sr: int, n_fft: int = N_FFT, n_mels: int = 128) -> scipy.sparse.csr_matrix:
    """``librosa.filters.mel`` (Slaney), sparse [shape=(n_mels, 1 + n_fft // 2)]."""
    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, dtype=np.float32)
    return scipy.sparse.csr_matrix(basis)


def power_to_db(power: np.ndarray, top_db: float = 80.0) -> np.ndarray:
    """``librosa.power_to_db(power)`` with ref=1, amin=1e-10: dB, floored at max - top_db."""
    log_spec = np.log10(np.maximum(power, np.float32(1e-10)))
    log_spec *= np.float32(10.0)
    return np.maximum(log_spec, log_spec.max() - np.float32(top_db), out=log_spec)


@lru_cache(maxsize=8)
def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II matrix [shape=(n_out, n_in)]: ``dct(x, norm='ortho')[:n_out]``."""
    basis = scipy.fft.dct(np.eye(n_in), type=2, norm="ortho", axis=0)[:n_out]
    return _frozen(basis.astype(np.float32))


@lru_cache(maxsize=128)
def chroma_filterbank(sr: int, n_fft: int, tuning: float) -> np.ndarray:
    """``librosa.filters.chroma`` for ``tuning`` [shape=(12, 1 + n_fft // 2)]."""
    basis = librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=tuning, dtype=np.float32)
    return _frozen(basis)


@dataclass(frozen=True)
class SpectrogramPass:
    """What ``spectrogram_pass`` computes from one STFT (float32, librosa's layout)."""

    mag: np.ndarray  # [shape=(1 + N_FFT // 2, n_frames)]
    mel: np.ndarray  # [shape=(n_mels, n_frames)]
    tuning: float  # fractions of a chroma bin, in [-0.5, 0.5)


def spectrogram_pass(y: np.ndarray, sr: int, n_mels: int = 128) -> SpectrogramPass:
    """Magnitude, mel power and tuning of ``y`` from one STFT: everything ``seed180`` needs.

    Equivalent to ``abs(librosa.stft(y))`` and ``librosa.feature.melspectrogram(y=y, sr=sr)``
    (to float32 rounding), and to ``librosa.estimate_tuning(S=mag, sr=sr)`` on that magnitude
    value for value: same peaks, same float32/float64 arithmetic as librosa's numba stencil,
    same histogram. One compiled loop per STFT block fills all three.

    Args:
        y: float32 signal [shape=(n,)] of at least one sample.
    """
    n_frames, n_bins = 1 + y.size // HOP, 1 + N_FFT // 2
    lo, hi = _tuning_band(sr, n_bins)
    fb = mel_filterbank(sr, N_FFT, n_mels)
    mag = np.empty((n_bins, n_frames), np.float32)
    mel = np.empty((n_mels, n_frames), np.float32)
    capacity = n_frames * ((hi - lo) // 2 + 1)  # local maxima are at least 2 bins apart
    pitch, strength = np.empty(capacity, np.float32), np.empty(capacity, np.float32)
    scratch = _scratch(n_bins, _BLOCK, hi - lo)
    n_peaks, start = 0, 0
    for block in stft_blocks(y, block=_BLOCK):
        n_peaks = _block_pass(
            block, start, fb.indptr, fb.indices, fb.data, lo, hi, float(sr), float(N_FFT),
            mag, mel, pitch, strength, n_peaks, *scratch,
        )  # fmt: skip
        start += block.shape[1]
    return SpectrogramPass(mag, mel, _tuning(pitch[:n_peaks], strength[:n_peaks]))


_BLOCK = 32  # STFT frames per block: the block's buffers (~400 kB) stay in L2


def _scratch(n_bins: int, block: int, band: int) -> tuple[np.ndarray, ...]:
    """Work buffers of ``_block_pass``, reused across the blocks of one call: the power block,
    one mel row, one row of peak flags, and the (bin, frame) positions of a block's peaks."""
    return (
        np.empty((n_bins, block), np.float32),
        np.empty(block, np.float32),
        np.empty(block, np.bool_),
        np.empty((2, band * block + 1), np.int32),
    )


@numba.njit(cache=True, nogil=True)
def _block_pass(spec, start, mel_indptr, mel_indices, mel_weights, lo, hi, sr, n_fft, mag, mel,
                pitch, strength, n_peaks, power, mel_acc, is_peak, candidates):  # fmt: skip
    """Fill frames ``start:start + t`` of ``mag`` and ``mel`` from the STFT block ``spec``
    [shape=(bins, t)]; append the block's peaks to ``pitch``/``strength``; return their count.

    Peaks follow ``librosa.piptrack`` with its defaults: bin ``b`` in [lo, hi) is a peak when
    its magnitude exceeds 0.1 x the frame's maximum and it is a local maximum of the
    thresholded spectrum (``x[b] > x[b-1]`` and ``x[b] >= x[b+1]``, sub-threshold bins count as
    0). Its pitch and magnitude are refined by parabolic interpolation, in librosa's arithmetic.
    Every loop runs along frames, the contiguous axis, over rows sliced to 1-D first: then the
    compiler sees contiguous vectors and vectorises the loops.
    """
    n_bins, t = spec.shape
    stop = start + t
    ref = np.zeros(t, np.float32)
    for j in range(n_bins):  # power, magnitude, and each frame's maximum
        row, power_j, mag_j = spec[j], power[j], mag[j, start:stop]
        for i in range(t):
            c = row[i]
            p = c.real * c.real + c.imag * c.imag
            power_j[i] = p
            m = np.sqrt(p)
            mag_j[i] = m
            ref[i] = max(ref[i], m)
    for band in range(mel.shape[0]):  # mel power: sparse filter rows times the power block
        for i in range(t):
            mel_acc[i] = 0.0
        for k in range(mel_indptr[band], mel_indptr[band + 1]):
            w, power_j = mel_weights[k], power[mel_indices[k]]
            for i in range(t):
                mel_acc[i] += w * power_j[i]
        mel_band = mel[band, start:stop]
        for i in range(t):
            mel_band[i] = mel_acc[i]
    ref *= np.float32(0.1)
    # Peaks, with vectorised comparisons along contiguous rows. Thresholding the neighbours
    # first (as librosa does) changes nothing: once centre > thr >= 0, "centre > left" holds
    # whether or not left was zeroed, and so does "centre >= right".
    n = 0
    for b in range(lo, hi):
        row, below, above = mag[b, start:stop], mag[b - 1, start:stop], mag[b + 1, start:stop]
        found = 0
        for i in range(t):
            centre = row[i]
            peak = (centre > ref[i]) & (centre > below[i]) & (centre >= above[i])
            is_peak[i] = peak
            found += peak
        if found:  # list the block's peaks without a branch: write always, advance on a peak
            for i in range(t):
                candidates[0, n], candidates[1, n] = b, start + i
                n += is_peak[i]
    for q in range(n):
        b, i = candidates[0, q], candidates[1, q]
        centre, left, right = mag[b, i], mag[b - 1, i], mag[b + 1, i]
        diff = right - left
        a = np.float64(right + left) - 2.0 * np.float64(centre)
        half = np.float64(diff) / 2.0
        shift = np.float32(0.0 if abs(half) >= abs(a) else -half / a)
        strength[n_peaks + q] = centre + np.float32(0.5) * (diff / np.float32(2.0)) * shift
        pitch[n_peaks + q] = np.float32((b + np.float64(shift)) * sr / n_fft)
    return n_peaks + n


def _tuning(pitch: np.ndarray, strength: np.ndarray) -> float:
    """``librosa.estimate_tuning``'s last step (``pitch_tuning``, 12 bins per octave, 0.01
    resolution) on the pitches of the stronger half of the peaks."""
    if strength.size == 0:
        return 0.0
    frequencies = pitch[(strength >= _median(strength)) & (pitch > 0)]
    if frequencies.size == 0:
        return 0.0
    octaves = np.float32(12.0) * np.log2(frequencies / np.float32(440.0 / 16))
    # == np.mod(octaves, 1.0) for these positive values (both exact), without np.mod's cost
    residual = octaves - np.floor(octaves)
    residual[residual >= 0.5] -= 1.0
    return float(_TUNING_EDGES[_histogram_argmax(residual, _TUNING_EDGES)])


def _median(values: np.ndarray) -> np.floating:
    """``np.median(values)`` to the bit (the two middle values are added in the input's dtype,
    then halved), through numpy's vectorised sort: several times faster than its partition."""
    ordered = np.sort(values)
    half = ordered.size // 2
    if ordered.size % 2:
        return ordered[half]
    return (ordered[half - 1] + ordered[half]) / ordered.dtype.type(2)


_TUNING_EDGES = np.linspace(-0.5, 0.5, 101)


@numba.njit(cache=True, nogil=True)
def _histogram_argmax(values, edges):
    """``np.argmax(np.histogram(values, edges)[0])`` for increasing, nearly uniform ``edges``:
    the same bins (``edges[k] <= x < edges[k + 1]``, the last one closed), without a sort."""
    n_bins = edges.size - 1
    counts = np.zeros(n_bins, np.int64)
    lo, width = edges[0], (edges[-1] - edges[0]) / n_bins
    for v in values:
        x = np.float64(v)
        if not edges[0] <= x <= edges[-1]:
            continue
        k = min(max(int((x - lo) / width), 0), n_bins - 1)  # a guess, then exact comparisons
        while k > 0 and x < edges[k]:
            k -= 1
        while k < n_bins - 1 and x >= edges[k + 1]:
            k += 1
        counts[k] += 1
    return np.argmax(counts)


@lru_cache(maxsize=8)
def _tuning_band(sr: int, n_bins: int) -> tuple[int, int]:
    """First and one-past-last FFT bin in [150, min(4000, sr/2)) Hz."""
    freqs = np.linspace(0, sr / 2, n_bins)
    in_band = np.flatnonzero((freqs >= 150.0) & (freqs < min(4000.0, sr / 2)))
    lo, hi = int(in_band[0]), int(in_band[-1]) + 1
    if lo < 1 or hi > n_bins - 1:
        raise ValueError(f"sample rate {sr} too low for tuning estimation")
    return lo, hi


def chroma_mean(mag: np.ndarray, sr: int, tuning: float) -> np.ndarray:
    """Mean over frames of ``librosa.feature.chroma_stft(S=mag, tuning=tuning)`` [shape=(12,)].

    Args:
        mag: magnitude spectrogram, float32 [shape=(1 + n_fft // 2, t)].
    """
    n_fft = 2 * (mag.shape[0] - 1)
    raw = chroma_filterbank(sr, n_fft, tuning) @ mag
    peak = raw.max(axis=0)
    peak[peak < np.finfo(np.float32).tiny] = 1.0  # silent frames stay zero, as in librosa
    raw /= peak
    return raw.mean(axis=1)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a
