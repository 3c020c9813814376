from dataclasses import FrozenInstanceError

import librosa
import numpy as np
import pytest
import soundfile as sf

from core.samples import demo_folder
from core.segments import (
    Segment,
    SpeechStream,
    WindowStream,
    detect_speech,
    detect_speech_blocks,
    fixed_windows,
)

SR = 16_000
FIXTURES = demo_folder()


def voice(seconds: float, sr: int = SR, f0: float = 140.0) -> np.ndarray:
    """Speech-like sound: a harmonic tone with vibrato, amplitude-modulated at a syllable rate."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))) / sr
    tone = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = 0.3 + 0.35 * (1 - np.cos(2 * np.pi * 4 * t))
    return (0.1 * tone * envelope).astype(np.float32)


def build(parts: list[tuple[str, float]], sr: int = SR) -> tuple[np.ndarray, list[tuple]]:
    """Concatenate ("voice"|"pause", seconds) parts over a -60 dBFS noise floor."""
    out, truth, t = [], [], 0
    for kind, seconds in parts:
        y = voice(seconds, sr) if kind == "voice" else np.zeros(int(seconds * sr), np.float32)
        if kind == "voice":
            truth.append((t / sr, (t + y.size) / sr))
        out.append(y)
        t += y.size
    y = np.concatenate(out)
    y += 1e-3 * np.random.default_rng(0).standard_normal(y.size).astype(np.float32)
    return y, truth


def near(value: float, targets, tol: float = 0.3) -> bool:
    return bool(np.min(np.abs(np.asarray(targets) - value)) <= tol)


def test_segment_is_frozen_with_duration():
    seg = Segment(1.0, 3.5)
    assert seg.duration_s == 2.5
    with pytest.raises(FrozenInstanceError):
        seg.start_s = 0.0


@pytest.mark.parametrize("sr", [8_000, 16_000, 48_000])
def test_detect_speech_finds_voiced_bursts(sr):
    y, truth = build([("pause", 1), ("voice", 2), ("pause", 1.5), ("voice", 3), ("pause", 1)], sr)
    segs = detect_speech(y, sr)
    assert len(segs) == 2
    for seg, (start, end) in zip(segs, truth, strict=True):
        assert abs(seg.start_s - start) <= 0.3 and abs(seg.end_s - end) <= 0.3


def test_short_pauses_are_bridged_and_long_ones_split():
    y, _ = build([("pause", 1), ("voice", 1.5), ("pause", 0.15), ("voice", 1.5), ("pause", 0.8)])
    assert len(detect_speech(y, SR)) == 1
    y, _ = build([("pause", 1), ("voice", 1.5), ("pause", 0.8), ("voice", 1.5), ("pause", 0.8)])
    assert len(detect_speech(y, SR)) == 2


def test_short_speech_is_dropped_and_short_segments_widened():
    y, _ = build([("pause", 1), ("voice", 0.25), ("pause", 1), ("voice", 2), ("pause", 1)])
    segs = detect_speech(y, SR)
    assert len(segs) == 1 and segs[0].start_s > 2
    short, _ = detect_speech(y, SR, min_speech_s=0.1, min_segment_s=1.2)
    assert short.duration_s == pytest.approx(1.2)
    assert short.start_s < 1.0 and short.end_s > 1.25  # widened around the burst


def test_silence_gives_no_segments():
    assert detect_speech(np.zeros(5 * SR, np.float32), SR) == []
    assert detect_speech(np.zeros(0, np.float32), SR) == []


def test_long_speech_is_split_into_equal_pieces():
    y, truth = build([("pause", 1), ("voice", 13), ("pause", 1)])
    segs = detect_speech(y, SR, max_segment_s=5.0)
    assert len(segs) == 3
    assert all(a.end_s == b.start_s for a, b in zip(segs, segs[1:], strict=False))
    assert max(s.duration_s for s in segs) - min(s.duration_s for s in segs) < 0.01
    assert abs(segs[0].start_s - truth[0][0]) <= 0.3 and abs(segs[-1].end_s - truth[0][1]) <= 0.3


def test_endless_speech_gives_bounded_pieces_covering_it():
    y, truth = build([("pause", 0.5), ("voice", 60), ("pause", 0.5)])
    segs = detect_speech(y, SR, max_segment_s=4.0)
    assert all(2.0 <= s.duration_s <= 4.0 + 1e-9 for s in segs)
    assert all(a.end_s == b.start_s for a, b in zip(segs, segs[1:], strict=False))
    assert abs(segs[0].start_s - truth[0][0]) <= 0.3 and abs(segs[-1].end_s - truth[0][1]) <= 0.3


def test_padding_never_overlaps_the_previous_segment():
    y, _ = build([("pause", 1), ("voice", 1.5), ("pause", 0.35), ("voice", 1.5), ("pause", 1)])
    segs = detect_speech(y, SR, pad_s=0.3)
    assert all(a.end_s <= b.start_s for a, b in zip(segs, segs[1:], strict=False))
    assert segs[0].start_s >= 0 and segs[-1].end_s <= y.size / SR


@pytest.mark.parametrize("block", [37, 4_801, 7 * SR])
def test_streaming_gives_the_same_segments_whatever_the_blocks(block):
    y, _ = build([("pause", 1), ("voice", 2), ("pause", 0.7), ("voice", 20), ("pause", 2)])
    blocks = (y[i : i + block] for i in range(0, y.size, block))
    assert list(detect_speech_blocks(blocks, SR, max_segment_s=6.0)) == detect_speech(
        y, SR, max_segment_s=6.0
    )


def test_stream_settles_during_silence_so_callers_can_drop_audio():
    stream = SpeechStream(SR)
    y, _ = build([("voice", 2), ("pause", 10)])
    stream.push(y[: 2 * SR])
    assert stream.settled_s < 1.0  # a segment may still start early
    out = stream.push(y[2 * SR :])
    assert len(out) == 1 and stream.settled_s > 11.0
    assert stream.flush() == []
    with pytest.raises(RuntimeError):
        stream.push(y)


@pytest.mark.parametrize(
    "kw",
    [
        {"sr": 22_050},
        {"frame_ms": 25},
        {"aggressiveness": 4},
        {"min_segment_s": 9.0},
        {"max_segment_s": 0.0},
        {"pad_s": -0.1},
    ],
)
def test_bad_parameters_raise(kw):
    sr = kw.pop("sr", SR)
    with pytest.raises(ValueError):
        SpeechStream(sr, **kw)


def ravdess_conversation() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Fixture clips, trimmed to their speech, joined by 0.5-2 s pauses over a noise floor."""
    rng = np.random.default_rng(5)
    out, truth, t = [], [], 0
    for path in sorted(FIXTURES.glob("*.flac")):
        clip, sr = sf.read(path, dtype="float32")
        assert sr == SR
        speech, _ = librosa.effects.trim(clip, top_db=40, frame_length=512, hop_length=128)
        pause = np.zeros(int(rng.uniform(0.5, 2.0) * SR), np.float32)
        out += [pause, speech]
        truth.append(((t + pause.size) / SR, (t + pause.size + speech.size) / SR))
        t += pause.size + speech.size
    out.append(np.zeros(SR, np.float32))
    y = np.concatenate(out)
    return y + 1e-3 * rng.standard_normal(y.size).astype(np.float32), truth


@pytest.mark.skipif(not any(FIXTURES.glob("*.flac")), reason="fixture clips missing")
def test_boundaries_of_real_speech_within_300_ms():
    y, truth = ravdess_conversation()
    segs = detect_speech(y, SR)
    starts, ends = [s.start_s for s in segs], [s.end_s for s in segs]
    found = [near(a, starts) for a, _ in truth] + [near(b, ends) for _, b in truth]
    assert np.mean(found) >= 0.9
    # Every segment lies on one clip's speech: none bridges a pause between clips.
    for seg in segs:
        assert any(a - 0.5 <= seg.start_s and seg.end_s <= b + 0.5 for a, b in truth)


def test_fixed_windows():
    assert fixed_windows(10.0) == [Segment(0, 4), Segment(4, 8), Segment(8, 10)]
    assert fixed_windows(10.0, min_window_s=3.0) == [Segment(0, 4), Segment(4, 8)]
    assert fixed_windows(8.0) == [Segment(0, 4), Segment(4, 8)]
    assert fixed_windows(2.5, min_window_s=3.0) == [Segment(0, 2.5)]
    assert fixed_windows(6.0, window_s=4.0, hop_s=2.0) == [Segment(0, 4), Segment(2, 6)]
    assert fixed_windows(0.0) == []
    with pytest.raises(ValueError):
        fixed_windows(10.0, hop_s=0)


@pytest.mark.parametrize("seconds", [0.5, 8.0, 10.0, 13.7])
@pytest.mark.parametrize("window_s, hop_s, min_s", [(4.0, 4.0, 0.0), (4.0, 1.5, 1.0), (3, 4, 2)])
def test_window_stream_matches_fixed_windows(seconds, window_s, hop_s, min_s):
    sr = 1000
    stream = WindowStream(sr, window_s=window_s, hop_s=hop_s, min_window_s=min_s)
    got, n = [], int(seconds * sr)
    for i in range(0, n, 777):
        got += stream.push(np.zeros(min(777, n - i)))
        assert all(s.start_s >= stream.settled_s - hop_s for s in got[-1:])
    got += stream.flush()
    assert got == fixed_windows(seconds, window_s=window_s, hop_s=hop_s, min_window_s=min_s)
