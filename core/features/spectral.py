"""Shared spectral building blocks: one STFT, cached filter banks, librosa-exact tuning.

Layout convention: spectrograms here are frame-major, shape ``(n_frames, n_bins)``, float32,
so that per-frame reductions and filter-bank products run over contiguous rows.
The cached builders return read-only arrays: never modify them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import librosa
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
        complex64 [shape=(1 + n // hop, 1 + n_fft // 2)], frame-major.
    """
    return np.concatenate(list(stft_blocks(y, n_fft, hop, block=1 << 30)))


def stft_blocks(
    y: np.ndarray, n_fft: int = N_FFT, hop: int = HOP, block: int = 32
) -> Iterator[np.ndarray]:
    """``stft_complex(y)`` in consecutive blocks of ``block`` frames (the last may be shorter).

    Working block by block keeps every buffer small: they stay in cache and are recycled by
    the allocator instead of being mapped fresh (page faults cost as much as the FFT).
    """
    padded = np.pad(y, n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    window = hann(n_fft)
    for start in range(0, len(frames), block):
        windowed = frames[start : start + block] * window  # fresh contiguous float32
        yield scipy.fft.rfft(windowed, axis=1, overwrite_x=True, workers=1)


@lru_cache(maxsize=8)
def mel_filterbank_t(sr: int, n_fft: int = N_FFT, n_mels: int = 128) -> scipy.sparse.csr_matrix:
    """``librosa.filters.mel`` (Slaney), transposed and sparse [shape=(1 + n_fft // 2, n_mels)]."""
    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, dtype=np.float32)
    return scipy.sparse.csr_matrix(basis.T)


def mel_power(power: np.ndarray, sr: int, n_mels: int = 128) -> np.ndarray:
    """Mel power spectrogram from a power spectrogram [shape=(t, f)] -> [shape=(t, n_mels)]."""
    n_fft = 2 * (power.shape[1] - 1)
    # dense @ sparse: scipy computes it as a sparse product, ~20x faster than a dense matmul
    return np.asarray(power @ mel_filterbank_t(sr, n_fft, n_mels), dtype=np.float32)


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
def chroma_filterbank_t(sr: int, n_fft: int, tuning: float) -> np.ndarray:
    """``librosa.filters.chroma`` for ``tuning``, transposed [shape=(1 + n_fft // 2, 12)]."""
    basis = librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=tuning, dtype=np.float32)
    return _frozen(np.ascontiguousarray(basis.T))


@dataclass(frozen=True)
class Peaks:
    """Thresholded spectral peaks in 150-4000 Hz, as ``librosa.piptrack`` finds them.

    ``bins``: FFT bin of each peak; ``left``, ``centre``, ``right``: magnitudes at bin-1, bin,
    bin+1 (float32). Concatenate the ``Peaks`` of consecutive STFT blocks with ``Peaks.join``.
    """

    bins: np.ndarray
    left: np.ndarray
    centre: np.ndarray
    right: np.ndarray

    @staticmethod
    def join(parts: list[Peaks]) -> Peaks:
        """The peaks of several blocks as one."""
        return Peaks(*(np.concatenate([getattr(p, k) for p in parts]) for k in _PEAK_FIELDS))


_PEAK_FIELDS = ("bins", "left", "centre", "right")


def find_peaks(mag: np.ndarray, sr: int) -> Peaks:
    """Peaks of a magnitude spectrogram block [shape=(t, f)], with piptrack's defaults.

    A bin is a peak when it exceeds 0.1 x its frame's maximum and is a local maximum
    (``x[i] > x[i-1]`` and ``x[i] >= x[i+1]``) of the thresholded spectrum.
    """
    n_bins = mag.shape[1]
    lo, hi = _tuning_band(sr, n_bins)
    band = mag[:, lo - 1 : hi + 1]
    ref = mag.max(axis=1, keepdims=True)
    ref *= np.float32(0.1)
    thr = band * (band > ref)
    rising = thr[:, 1:] > thr[:, :-1]  # bin j+1 > bin j, for band bins lo-1 .. hi
    k = np.flatnonzero(rising[:, :-1] > rising[:, 1:])  # rising in, not rising out
    frame, offset = np.divmod(k, hi - lo)
    bins = offset + lo
    flat = frame * n_bins + bins
    values = mag.ravel()
    return Peaks(bins, values.take(flat - 1), values.take(flat), values.take(flat + 1))


def estimate_tuning(peaks: Peaks, sr: int, n_fft: int = N_FFT) -> float:
    """``librosa.estimate_tuning(S=mag.T, sr=sr)`` from the ``find_peaks(mag)``, value for value.

    librosa interpolates every bin of the spectrogram; only the peaks matter, so this runs the
    same float32/float64 arithmetic (that of librosa's numba stencil) on the peaks alone.

    Returns:
        tuning deviation in fractions of a chroma bin, in [-0.5, 0.5).
    """
    if peaks.bins.size == 0:
        return 0.0
    left, centre, right = peaks.left, peaks.centre, peaks.right
    diff = right - left
    a = (right + left).astype(np.float64)
    a -= 2 * centre.astype(np.float64)
    b = diff.astype(np.float64)
    b /= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a).astype(np.float32)
    mags = centre + np.float32(0.5) * (diff / np.float32(2.0)) * shift
    pitch = ((peaks.bins + shift) * float(sr) / n_fft).astype(np.float32)
    return _pitch_tuning(pitch[mags >= np.median(mags)])


@lru_cache(maxsize=8)
def _tuning_band(sr: int, n_bins: int) -> tuple[int, int]:
    """First and one-past-last FFT bin in [150, min(4000, sr/2)) Hz."""
    freqs = np.linspace(0, sr / 2, n_bins)
    in_band = np.flatnonzero((freqs >= 150.0) & (freqs < min(4000.0, sr / 2)))
    lo, hi = int(in_band[0]), int(in_band[-1]) + 1
    if lo < 1 or hi > n_bins - 1:
        raise ValueError(f"sample rate {sr} too low for tuning estimation")
    return lo, hi


def _pitch_tuning(frequencies: np.ndarray, resolution: float = 0.01) -> float:
    """``librosa.pitch_tuning`` with 12 bins per octave, without its empty-input warning."""
    frequencies = frequencies[frequencies > 0]
    if frequencies.size == 0:
        return 0.0
    residual = np.mod(12 * np.log2(frequencies / (440.0 / 16)), 1.0)
    residual[residual >= 0.5] -= 1.0
    bins = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / resolution)) + 1)
    counts, edges = np.histogram(residual, bins)
    return float(edges[np.argmax(counts)])


def chroma_sum(mag: np.ndarray, sr: int, tuning: float) -> np.ndarray:
    """Sum over frames of ``librosa.feature.chroma_stft(S=mag.T, tuning=tuning)`` [shape=(12,)].

    Args:
        mag: magnitude spectrogram (block), float32 [shape=(t, 1 + n_fft // 2)].
    """
    n_fft = 2 * (mag.shape[1] - 1)
    raw = mag @ chroma_filterbank_t(sr, n_fft, tuning)
    peak = raw.max(axis=1, keepdims=True)
    peak[peak < np.finfo(np.float32).tiny] = 1.0  # silent frames stay zero, as in librosa
    raw /= peak
    return raw.sum(axis=0)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a
