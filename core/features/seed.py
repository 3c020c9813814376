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
    spec = spectral.spectrogram_pass(y, sr, N_MELS)
    chroma = spectral.chroma_mean(spec.mag, sr, spec.tuning)
    mfcc = spectral.dct_matrix(N_MELS, N_MFCC) @ spectral.power_to_db(spec.mel).mean(axis=1)
    return as_features(np.concatenate([mfcc, chroma, spec.mel.mean(axis=1)]))


SEED180 = FeatureSet(
    name="seed180",
    version=1,
    dim=N_MFCC + 12 + N_MELS,
    sample_rate=SAMPLE_RATE,
    min_duration_s=MIN_DURATION_S,
    extract=extract_seed180,
    description="seed recipe: means of 40 MFCC, 12 chroma, 128 mel power bands (one STFT)",
)
