"""``seed180``: the seed project's 180 features (40 MFCC, 12 chroma, 128 mel means), one STFT.

The seed ran three STFTs through librosa; this computes the same numbers (to float32 rounding)
from one: mel power = mel(|X|^2), MFCC = DCT(power_to_db(mel)), chroma = chroma_stft(S=|X|).
Means over frames commute with the DCT, so the MFCC means are a 40x128 matrix-vector product.
"""

from __future__ import annotations

import numpy as np

from core.features import spectral
from core.features.base import FeatureSet, as_features, as_signal

SAMPLE_RATE = 16_000
MIN_DURATION_S = 0.1
N_MFCC = 40
N_MELS = 128


def extract_seed180(y: np.ndarray, sr: int) -> np.ndarray:
    """Seed features of a 16 kHz mono signal.

    Args:
        y: float32 [shape=(n,)], 16 kHz.
        sr: must be 16000.
    Returns:
        float32 [shape=(180,)]: 40 MFCC means, 12 chroma means, 128 mel-power means.
    Raises:
        ValueError: wrong rate or shape. TooShortError: under 0.1 s. NonFiniteAudioError.
    """
    y = as_signal(y, sr, sample_rate=SAMPLE_RATE, min_duration_s=MIN_DURATION_S)
    n_frames = 1 + y.size // spectral.HOP
    mel = np.empty((n_frames, N_MELS), np.float32)
    mags, peaks = [], []
    start = 0
    for block in spectral.stft_blocks(y):
        mag = np.abs(block)
        peaks.append(spectral.find_peaks(mag, sr))
        mags.append(mag)
        mel[start : start + len(mag)] = spectral.mel_power(mag * mag, sr, N_MELS)
        start += len(mag)

    tuning = spectral.estimate_tuning(spectral.Peaks.join(peaks), sr)
    chroma = sum(spectral.chroma_sum(mag, sr, tuning) for mag in mags) / n_frames
    mfcc = spectral.dct_matrix(N_MELS, N_MFCC) @ spectral.power_to_db(mel).mean(axis=0)
    return as_features(np.concatenate([mfcc, chroma, mel.mean(axis=0)]))


SEED180 = FeatureSet(
    name="seed180",
    version=1,
    dim=N_MFCC + 12 + N_MELS,
    sample_rate=SAMPLE_RATE,
    min_duration_s=MIN_DURATION_S,
    extract=extract_seed180,
    description="seed recipe: means of 40 MFCC, 12 chroma, 128 mel power bands (one STFT)",
)
