"""``emo``: prosodic and spectral descriptors for speech emotion, gain-invariant, one STFT.

Frames: 40 ms Hann windows every 10 ms, zero-padded to a 1024-point FFT. From each frame's
power spectrum come 40 log-mel bands, MFCC 1-19, spectral shape (centroid, spread, roll-off,
flatness, flux, slope, alpha ratio, Hammarberg index), and, through the inverse FFT of the same
spectrum, a normalised autocorrelation (Boersma 1993) giving F0 and voicing strength. Per
utterance these are summarised over active frames (within 35 dB of the loudest) or voiced
frames: means, standard deviations, percentiles, slopes, and jitter/shimmer-like proxies.
The signal is peak-normalised and a -70 dB white floor is added to every power spectrum, so
levels are relative (recording gain does not change the vector) and log features stay bounded
on band-limited audio such as telephone speech.

Versions: ``emo@1`` as above; ``emo@2`` first removes everything below 80 Hz (4th-order
Butterworth high-pass), where speech has almost no energy but rumble, hum and much background
noise have most of theirs: ``emo@1`` models collapsed to near chance on 1/f^2 (brown) noise at
20 dB SNR, a kind they never saw in training.
"""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np
import scipy.fft
import scipy.signal
import scipy.sparse

from core.errors import NonFiniteAudioError
from core.features.base import FeatureSet, as_features, as_signal
from core.features.spectral import dct_matrix

SAMPLE_RATE = 16_000
MIN_DURATION_S = 0.25
WIN = 640  # 40 ms
HOP = 160  # 10 ms
N_FFT = 1024  # >= WIN + max lag: the autocorrelation from |X|^2 does not wrap
N_MELS = 40
N_MFCC = 20  # c0 dropped: it is the level
F0_MIN, F0_MAX = 60.0, 600.0
VOICING_THRESHOLD = 0.45  # Praat's default
ACTIVE_RANGE_DB = 35.0
FLOOR_DB = -70.0  # noise floor added after peak normalisation, dB re full scale (mean square)
BLOCK = 64  # frames per STFT block: small buffers stay in cache
HIGHPASS_HZ = 80.0  # emo@2
PCTS = (10.0, 50.0, 90.0)
N_THIRDS_MFCC = 12


@lru_cache(maxsize=1)
def _tables() -> dict[str, np.ndarray | scipy.sparse.csr_matrix]:
    """Window, filter banks and lookup tables (read-only)."""
    window = librosa.filters.get_window("hann", WIN, fftbins=True).astype(np.float32)
    freqs = np.fft.rfftfreq(N_FFT, 1 / SAMPLE_RATE).astype(np.float32)
    mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=50.0, fmax=7600.0)
    win_ac = np.fft.irfft(np.abs(np.fft.rfft(window, N_FFT)) ** 2, N_FFT)[: WIN // 2 + 2]
    lag_lo, lag_hi = int(SAMPLE_RATE / F0_MAX), int(np.ceil(SAMPLE_RATE / F0_MIN))
    slope_band = freqs <= 4000.0
    slope_x = np.where(slope_band, freqs - freqs[slope_band].mean(), 0.0)
    tables = {
        "window": window,
        "freqs": freqs,
        "mel_t": scipy.sparse.csr_matrix(mel.T.astype(np.float32)),
        "win_ac": (win_ac / win_ac[0]).astype(np.float32),
        "lags": np.array([lag_lo, lag_hi]),
        "low_1k": freqs < 1000.0,
        "band_1k_5k": (freqs >= 1000.0) & (freqs < 5000.0),
        "low_2k": freqs < 2000.0,
        "band_2k_5k": (freqs >= 2000.0) & (freqs < 5000.0),
        "slope_x": (slope_x / (slope_x**2).sum()).astype(np.float32),
        "floor": np.float32(10 ** (FLOOR_DB / 10) * (window.astype(np.float64) ** 2).sum()),
        "floor_ms": np.float32(10 ** (FLOOR_DB / 10)),
    }
    for value in tables.values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return tables


def _frame_descriptors(y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame descriptors, each [shape=(t,)] or [shape=(t, k)], float32."""
    tb = _tables()
    padded = np.pad(y, WIN // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, WIN)[::HOP]
    n = len(frames)
    lag_lo, lag_hi = (int(v) for v in tb["lags"])
    out = {
        k: np.empty((n, d), np.float32) if d > 1 else np.empty(n, np.float32)
        for k, d in _FRAME_DIMS.items()
    }
    prev_norm = None
    for s in range(0, n, BLOCK):
        raw = frames[s : s + BLOCK]
        e = s + len(raw)
        spec = scipy.fft.rfft(raw * tb["window"], n=N_FFT, axis=1, workers=1)
        power = spec.real**2
        power += spec.imag**2
        power += tb["floor"]  # white noise at FLOOR_DB: bounds every log below
        total = power.sum(axis=1) + np.float32(1e-12)

        out["energy_db"][s:e] = 10 * np.log10(np.mean(raw * raw, axis=1) + tb["floor_ms"])
        out["zcr"][s:e] = np.mean(np.signbit(raw[:, 1:]) != np.signbit(raw[:, :-1]), axis=1)
        out["logmel"][s:e] = 10 * np.log10(np.asarray(power @ tb["mel_t"]) + np.float32(1e-10))

        for name, values in _spectral_shape(power, total, tb).items():
            out[name][s:e] = values
        norm = np.sqrt(power / total[:, None])
        prev = np.vstack([norm[:1] if prev_norm is None else prev_norm, norm[:-1]])
        out["flux"][s:e] = np.sqrt(((norm - prev) ** 2).sum(axis=1))
        prev_norm = norm[-1:]

        ac = scipy.fft.irfft(power, n=N_FFT, axis=1, workers=1)[:, : lag_hi + 2]
        ac /= ac[:, :1] + np.float32(1e-12)
        ac /= tb["win_ac"][: lag_hi + 2]
        f0, strength = _pick_pitch(ac, lag_lo, lag_hi)
        out["f0"][s:e] = f0
        out["voicing"][s:e] = strength
    return out


def _spectral_shape(power: np.ndarray, total: np.ndarray, tb: dict) -> dict[str, np.ndarray]:
    """Centroid, spread, roll-off (Hz), flatness, slope (dB), alpha ratio, Hammarberg index (dB)
    per frame of a power spectrogram block [shape=(t, f)]."""
    eps = np.float32(1e-12)
    freqs = tb["freqs"]
    centroid = (power @ freqs) / total
    spread = np.sqrt(np.maximum((power @ (freqs * freqs)) / total - centroid * centroid, 0))
    cum = np.cumsum(power, axis=1)
    log_p = np.log(power + eps)
    db = 10 / np.log(10)
    low = power[:, tb["low_1k"]].sum(axis=1) + eps
    mid = power[:, tb["band_1k_5k"]].sum(axis=1) + eps
    hb = power[:, tb["low_2k"]].max(axis=1) + eps
    hb_hi = power[:, tb["band_2k_5k"]].max(axis=1) + eps
    return {
        "centroid": centroid,
        "spread": spread,
        "rolloff": freqs[np.argmax(cum >= 0.85 * cum[:, -1:], axis=1)],
        "flatness": db * (log_p.mean(axis=1) - np.log(total / len(freqs))),
        "slope": db * (log_p @ tb["slope_x"]),
        "alpha": 10 * np.log10(mid / low),
        "hammarberg": 10 * np.log10(hb / hb_hi),
    }


_FRAME_DIMS = {
    "energy_db": 1, "zcr": 1, "logmel": N_MELS, "centroid": 1, "spread": 1, "rolloff": 1,
    "flatness": 1, "slope": 1, "alpha": 1, "hammarberg": 1, "flux": 1, "f0": 1, "voicing": 1,
}  # fmt: skip


def _pick_pitch(ac: np.ndarray, lag_lo: int, lag_hi: int) -> tuple[np.ndarray, np.ndarray]:
    """F0 (Hz) and voicing strength per frame from normalised autocorrelations [shape=(t, L)].

    Takes the shortest-lag local maximum within 10% of the best one (guards against picking a
    sub-harmonic), refined by parabolic interpolation.
    """
    seg = ac[:, lag_lo - 1 : lag_hi + 2]
    mid = seg[:, 1:-1]
    is_peak = (mid > seg[:, :-2]) & (mid >= seg[:, 2:])
    peaks = np.where(is_peak, mid, -np.inf)
    best = peaks.max(axis=1, keepdims=True)
    pick = np.argmax(is_peak & (peaks >= 0.9 * best), axis=1)
    rows = np.arange(len(ac))
    left, centre, right = seg[rows, pick], seg[rows, pick + 1], seg[rows, pick + 2]
    denom = left - 2 * centre + right
    shift = np.where(denom < 0, 0.5 * (left - right) / np.where(denom < 0, denom, 1), 0.0)
    lag = lag_lo + pick + np.clip(shift, -0.5, 0.5)
    strength = np.where(np.isfinite(best[:, 0]), np.minimum(centre, 1.0), 0.0)
    return (SAMPLE_RATE / lag).astype(np.float32), strength.astype(np.float32)


def _stats(x: np.ndarray) -> np.ndarray:
    """Mean, std, 10th/50th/90th percentiles along axis 0 [shape=(5 * k,)] for x [shape=(n, k)]."""
    if len(x) == 0:
        return np.zeros(5 * x.shape[1], np.float32)
    pct = np.percentile(x, PCTS, axis=0)
    return np.concatenate([x.mean(axis=0), x.std(axis=0), *pct])


def _slope(v: np.ndarray, t: np.ndarray) -> float:
    """Least-squares slope of v over t (per second); 0 with fewer than 3 points."""
    if len(v) < 3:
        return 0.0
    tc = t - t.mean()
    return float((tc * (v - v.mean())).sum() / max((tc * tc).sum(), 1e-9))


def extract_emo(y: np.ndarray, sr: int) -> np.ndarray:
    """``emo@1`` features of a 16 kHz mono signal.

    Args:
        y: float32 [shape=(n,)], 16 kHz; at least 0.25 s.
        sr: must be 16000.
    Returns:
        float32 [shape=(EMO_DIM,)].
    Raises:
        ValueError: wrong rate or shape. TooShortError. NonFiniteAudioError.
    """
    return _extract(as_signal(y, sr, sample_rate=SAMPLE_RATE, min_duration_s=MIN_DURATION_S))


def extract_emo_highpass(y: np.ndarray, sr: int) -> np.ndarray:
    """``emo@2`` features: ``emo@1`` of ``y`` after an 80 Hz high-pass. Same arguments."""
    y = as_signal(y, sr, sample_rate=SAMPLE_RATE, min_duration_s=MIN_DURATION_S)
    # a NaN or infinite sample carries through the filter: _extract refuses it
    return _extract(scipy.signal.sosfilt(_highpass(), y).astype(np.float32))


@lru_cache(maxsize=1)
def _highpass() -> np.ndarray:
    return scipy.signal.butter(4, HIGHPASS_HZ, btype="highpass", fs=SAMPLE_RATE, output="sos")


def _extract(y: np.ndarray) -> np.ndarray:
    peak = np.abs(y).max()
    if not np.isfinite(peak):
        raise NonFiniteAudioError("audio holds NaN or infinite samples")
    # peak-normalise: every level below is relative, and the numeric floors are too
    d = _frame_descriptors(y / peak if peak > 0 else y)
    n = len(d["energy_db"])
    t = np.arange(n, dtype=np.float32) * (HOP / SAMPLE_RATE)

    energy = d["energy_db"]
    active = energy > energy.max() - ACTIVE_RANGE_DB
    if active.sum() < 3:
        active[:] = True
    voiced = active & (d["voicing"] >= VOICING_THRESHOLD)
    level = d["logmel"][active].mean()

    logmel = d["logmel"] - level
    mfcc = logmel @ dct_matrix(N_MELS, N_MFCC)[1:].T
    delta = np.gradient(mfcc, axis=0) if n > 1 else np.zeros_like(mfcc)
    shape = np.stack(
        [
            np.log2(d["centroid"] + 1),
            np.log2(d["spread"] + 1),
            np.log2(d["rolloff"] + 1),
            d["flatness"],
            d["slope"],
            d["alpha"],
            d["hammarberg"],
            d["flux"],
            d["zcr"],
        ],
        axis=1,
    )
    act = np.flatnonzero(active)
    rel_energy = energy - energy[act].max()
    feats = [
        logmel[act].mean(axis=0),
        logmel[act].std(axis=0),
        mfcc[act].mean(axis=0),
        mfcc[act].std(axis=0),
        delta[act].std(axis=0),
        _stats(shape[act]),
        _stats(rel_energy[act, None]),
        [
            _slope(rel_energy[act], t[act]),
            _mean_abs_step(rel_energy, active),
            active.mean(),
            _burst_rate(active, n),
        ],
        _voice_features(d, voiced, active, t),
        _thirds(mfcc[:, :N_THIRDS_MFCC], rel_energy, d["f0"], active, voiced),
    ]
    return as_features(np.concatenate([np.ravel(np.asarray(f, dtype=np.float32)) for f in feats]))


def _thirds(
    mfcc: np.ndarray, energy: np.ndarray, f0: np.ndarray, active: np.ndarray, voiced: np.ndarray
) -> np.ndarray:
    """Means over the first, middle and last third of the active span: the utterance's contour.

    Per third: MFCC 1..k, relative energy (dB), F0 (semitones re the utterance's median F0).
    """
    act = np.flatnonzero(active)
    edges = np.linspace(act[0], act[-1] + 1, 4).astype(int)
    vst = 12 * np.log2(np.maximum(f0, 1.0) / 55.0)
    med = np.median(vst[voiced]) if voiced.any() else 0.0
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        a = active[lo:hi]
        v = voiced[lo:hi]
        out.append(mfcc[lo:hi][a].mean(axis=0) if a.any() else np.zeros(mfcc.shape[1]))
        out.append([energy[lo:hi][a].mean() if a.any() else -ACTIVE_RANGE_DB])
        out.append([vst[lo:hi][v].mean() - med if v.any() else 0.0])
    return np.concatenate(out)


def _mean_abs_step(v: np.ndarray, mask: np.ndarray) -> float:
    """Mean |v[i+1] - v[i]| over pairs of consecutive frames that are both in ``mask``."""
    both = mask[1:] & mask[:-1]
    return float(np.abs(np.diff(v))[both].mean()) if both.any() else 0.0


def _burst_rate(active: np.ndarray, n: int) -> float:
    """Active-segment onsets per second: a crude syllable/phrase rate."""
    onsets = np.count_nonzero(active[1:] & ~active[:-1]) + int(active[0])
    return onsets / (n * HOP / SAMPLE_RATE)


def _voice_features(
    d: dict[str, np.ndarray], voiced: np.ndarray, active: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """F0 (semitones re 55 Hz) statistics, voicing, jitter/shimmer/HNR proxies [shape=(16,)]."""
    idx = np.flatnonzero(voiced)
    frac = len(idx) / max(active.sum(), 1)
    if len(idx) < 3:
        return np.concatenate([np.zeros(5, np.float32), [0, 0, 0, frac, 0, 0, 0, 0, 0, 0, 0]])
    st = 12 * np.log2(d["f0"][idx] / 55.0)
    # fold octave jumps (halving/doubling errors) back towards the utterance's median
    med = np.median(st)
    st = np.where(st - med > 9, st - 12, np.where(st - med < -9, st + 12, st))
    stats = _stats(st[:, None])
    consecutive = np.diff(idx) == 1
    dst = np.diff(st)[consecutive]
    de = np.diff(d["energy_db"][idx])[consecutive]
    r = np.clip(d["voicing"][idx], 1e-3, 1 - 1e-3)
    hnr = 10 * np.log10(r / (1 - r))
    return np.concatenate(
        [
            stats,
            [
                _slope(st, t[idx]),
                stats[4] - stats[2],  # 90th - 10th percentile range
                np.abs(dst).mean() if len(dst) else 0.0,  # jitter proxy (semitones/frame)
                frac,
                np.abs(de).mean() if len(de) else 0.0,  # shimmer proxy (dB/frame)
                hnr.mean(),
                hnr.std(),
                np.abs(dst).std() if len(dst) else 0.0,
                float(np.mean(np.abs(dst) > 1.0)) if len(dst) else 0.0,  # pitch-jump rate
                np.mean(d["voicing"][active]),
                _slope(d["energy_db"][idx], t[idx]),
            ],
        ]
    )


# --- bandwidth, read off an emo vector ----------------------------------------------------------
# Columns 0..39 are the per-band means and 40..79 the per-band standard deviations (over active
# frames) of the level-normalised log-mel spectrum.
_TOP_BANDS = slice(33, 40)  # bands wholly above 4.23 kHz
_PHONE_BANDS = slice(4, 28)  # 344-3141 Hz: inside the telephone band
_TOP_BAND_STDS = slice(N_MELS + 34, N_MELS + 40)  # bands 34..39, above 4.56 kHz
NARROWBAND_STD_DB = 2.0
NARROWBAND_TOP_DB = -20.0


def narrowband_rows(X: np.ndarray) -> np.ndarray:
    """Which ``emo`` vectors come from narrowband (telephone, 8 kHz) audio: bool [shape=(n,)].

    A phone line carries nothing above 4 kHz, so every frame of the top mel bands sits at the
    -70 dB spectral floor: they do not move (mean std over active frames under 2 dB; wideband
    speech modulates them by 6 dB or more) and they lie far below the speech bands (under
    -20 dB relative; noise can make wideband top bands steady, but then they are loud). Both
    thresholds are round numbers inside the gaps between the two kinds of audio over every
    RAVDESS clip under every test condition
    (``benchmarks/research/explore_router.py --route-only``).
    """
    X = np.atleast_2d(X)
    return (top_band_std_db(X) < NARROWBAND_STD_DB) & (top_band_level_db(X) < NARROWBAND_TOP_DB)


def top_band_std_db(X: np.ndarray) -> np.ndarray:
    """How much the mel bands above 4.56 kHz move over active frames: mean std (dB) per row."""
    return np.atleast_2d(X)[:, _TOP_BAND_STDS].mean(axis=1)


def top_band_level_db(X: np.ndarray) -> np.ndarray:
    """Level of the mel bands above 4.23 kHz relative to the 344-3141 Hz bands (dB) per row."""
    X = np.atleast_2d(X)
    return X[:, _TOP_BANDS].mean(axis=1) - X[:, _PHONE_BANDS].mean(axis=1)


EMO_DIM = 2 * N_MELS + 3 * (N_MFCC - 1) + 5 * 9 + 5 + 4 + 16 + 3 * (N_THIRDS_MFCC + 2)

EMO = FeatureSet(
    name="emo",
    version=1,
    dim=EMO_DIM,
    sample_rate=SAMPLE_RATE,
    min_duration_s=MIN_DURATION_S,
    extract=extract_emo,
    description="log-mel/MFCC/spectral-shape/energy/F0/voicing statistics, gain-invariant",
)

EMO_HIGHPASS = FeatureSet(
    name="emo",
    version=2,
    dim=EMO_DIM,
    sample_rate=SAMPLE_RATE,
    min_duration_s=MIN_DURATION_S,
    extract=extract_emo_highpass,
    description="emo@1 after an 80 Hz high-pass: low-frequency noise stays out of every statistic",
)
