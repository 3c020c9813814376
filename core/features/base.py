"""The FeatureSet record and the input checks every feature set shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.errors import NonFiniteAudioError, TooShortError

#: A feature extractor: mono float32 signal [shape=(n,)], rate in Hz -> [shape=(dim,)] float32.
Extractor = Callable[[np.ndarray, int], np.ndarray]
#: A batch extractor: list of such signals, rate -> [shape=(n, dim)] float32, row i = extract(i).
BatchExtractor = Callable[[list[np.ndarray], int], np.ndarray]


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned, pure and deterministic map from a signal to a feature vector.

    Attributes:
        name, version: identity; a version never changes its numbers once released.
        dim: length of the vector ``extract`` returns.
        sample_rate: the only rate ``extract`` accepts (Hz); resample before calling.
        min_duration_s: shorter signals raise ``TooShortError``.
        extract: ``(y, sr) -> np.ndarray [shape=(dim,)], float32``.
        description: one line for model cards and ``aer`` listings.
        batch: optional ``(signals, sr) -> [shape=(n, dim)]`` giving the same rows as
            ``extract`` on each signal, faster (e.g. one encoder call for many segments).
    """

    name: str
    version: int
    dim: int
    sample_rate: int
    min_duration_s: float
    extract: Extractor = field(repr=False, compare=False)
    description: str = ""
    batch: BatchExtractor | None = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        """``"name@version"``, e.g. ``"seed180@1"``: the key for caches and model metadata."""
        return f"{self.name}@{self.version}"

    def __call__(self, y: np.ndarray, sr: int) -> np.ndarray:
        """Same as ``extract(y, sr)``."""
        return self.extract(y, sr)

    def extract_many(self, signals: list[np.ndarray], sr: int) -> np.ndarray:
        """Rows of ``signals`` [shape=(n, dim)], float32: the batch form when there is one."""
        if not signals:
            return np.empty((0, self.dim), np.float32)
        if self.batch is not None:
            return np.asarray(self.batch(list(signals), sr), dtype=np.float32)
        return np.stack([self.extract(y, sr) for y in signals]).astype(np.float32)


def as_signal(y: np.ndarray, sr: int, *, sample_rate: int, min_duration_s: float) -> np.ndarray:
    """Validate an extractor's input; return it as a contiguous float32 vector.

    Raises:
        ValueError: ``sr`` is not ``sample_rate``, or ``y`` is not one-dimensional.
        TooShortError: fewer than ``min_duration_s`` seconds (and always for an empty signal).
    """
    if sr != sample_rate:
        raise ValueError(f"feature set expects {sample_rate} Hz audio, got {sr} Hz: resample first")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"feature set expects a mono signal of shape (n,), got {y.shape}")
    if y.size == 0 or y.size < min_duration_s * sr:
        raise TooShortError(
            f"audio is {y.size / sr:.3f} s long; at least {min_duration_s} s needed"
        )
    return y


def as_features(x: np.ndarray) -> np.ndarray:
    """Check an extractor's output is finite; a NaN/inf here can only come from the input."""
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise NonFiniteAudioError("audio holds NaN or infinite samples")
    return x
