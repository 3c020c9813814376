"""F0 tracking of ``emo@3`` (core.features.pitch): candidates, the path, and telephone audio."""

from __future__ import annotations

import numpy as np
import pytest

from core.degrade import telephone
from core.features import emo, pitch

SR = 16_000
LAG_LO, LAG_HI = 26, 267  # emo's lag range: 600 Hz down to 60 Hz


def voice(f0: float, seconds: float = 1.0, formant_hz: float = 500.0) -> np.ndarray:
    """A vowel-like tone: harmonics of ``f0`` (5 Hz vibrato of +-3 %) shaped by one sharp
    resonance at ``formant_hz`` (50 Hz wide), so the harmonic nearest it dominates."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / SR
    y = np.zeros_like(t)
    for k in range(1, int(3800 // f0)):
        gain = 1.0 / (1.0 + ((k * f0 - formant_hz) / 50.0) ** 2) + 0.02
        y += gain * np.sin(k * phase + 0.3 * k)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def frame_f0(y: np.ndarray, tracked: bool) -> np.ndarray:
    """Per-frame F0 of the voiced frames of ``y``, as emo computes it."""
    d = emo._frame_descriptors(y / np.abs(y).max(), tracked=tracked)
    voiced = d["voicing"] >= emo.VOICING_THRESHOLD
    assert voiced.mean() > 0.8
    return d["f0"][voiced]


def reference_candidates(ac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: every local maximum, scored and refined, sorted best first."""
    lags, scores = [], []
    for row in ac:
        found = []
        for lag in range(LAG_LO, LAG_HI + 1):
            c, left, right = row[lag], row[lag - 1], row[lag + 1]
            if c > left and c >= right:
                score = c - pitch.OCTAVE_COST * np.log2(lag / LAG_LO)
                shift = np.clip(0.5 * (left - right) / (left - 2 * c + right), -0.5, 0.5)
                found.append((score, lag + shift))
        found.sort(key=lambda item: -item[0])
        found = (found + [(-10.0, LAG_HI)] * pitch.N_CANDIDATES)[: pitch.N_CANDIDATES]
        scores.append([s for s, _ in found])
        lags.append([lag for _, lag in found])
    return np.array(lags), np.array(scores)


def test_candidates_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    ac = np.cumsum(rng.standard_normal((40, LAG_HI + 2)), axis=1).astype(np.float32) / 20
    ac[5] = 0.0  # flat: no local maximum at all
    lags, scores = pitch.lag_candidates(ac, LAG_LO, LAG_HI)
    ref_lags, ref_scores = reference_candidates(ac)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lags, ref_lags, rtol=1e-5)
    assert (scores[5] == -10.0).all() and (lags[5] == LAG_HI).all()
    assert (np.diff(scores, axis=1) <= 0).all()


def test_track_ignores_a_one_frame_octave_jump_but_follows_a_pause() -> None:
    n = 30
    lags = np.tile(np.array([[100.0, 50.0]], np.float32), (n, 1))
    scores = np.tile(np.array([[0.9, 0.8]], np.float32), (n, 1))
    scores[10] = [0.8, 0.9]  # one frame where half the period scores best
    voiced = np.ones(n, bool)
    assert (pitch.track(lags, scores, voiced) == 100.0).all()
    # after a pause the pitch may restart an octave up at no cost
    scores[20:] = [0.5, 0.9]
    voiced[19] = False
    path = pitch.track(lags, scores, voiced)
    assert (path[:19] == 100.0).all() and (path[20:] == 50.0).all()


def test_track_of_nothing() -> None:
    empty = np.empty((0, pitch.N_CANDIDATES), np.float32)
    assert pitch.track(empty, empty, np.empty(0, bool)).shape == (0,)


@pytest.mark.parametrize("f0", [100.0, 125.0])
def test_tracked_f0_keeps_its_octave_on_a_phone_line(f0: float) -> None:
    """A low voice over the phone: its fundamental is cut and the harmonic at the formant
    dominates; the per-frame pick of emo@2 lands on it, the tracker stays on F0."""
    y = telephone(voice(f0), SR)
    tracked = frame_f0(y, tracked=True)
    assert np.median(tracked) == pytest.approx(f0, rel=0.02)
    assert np.mean(np.abs(12 * np.log2(tracked / f0)) > 2) < 0.05  # vibrato moves it 0.5
    picked = frame_f0(y, tracked=False)
    assert np.mean(np.abs(12 * np.log2(picked / f0)) > 2) > 0.5


@pytest.mark.parametrize("f0", [90.0, 150.0, 240.0, 420.0])
def test_tracked_f0_on_clean_voices(f0: float) -> None:
    tracked = frame_f0(voice(f0, formant_hz=700.0), tracked=True)
    assert np.median(tracked) == pytest.approx(f0, rel=0.02)
    assert np.mean(np.abs(12 * np.log2(tracked / f0)) > 2) < 0.05
