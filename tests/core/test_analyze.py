import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.analyze import WHOLE_CLIP_MAX_S, _Channel, analyze_file
from core.datasets import EMOTIONS, parse_ravdess_name
from core.features import get_feature_set
from core.model import EmotionModel
from core.samples import demo_folder
from core.segments import SpeechStream, WindowStream
from tests.core.test_segments import voice

FIXTURES = demo_folder()
CLIPS = sorted(FIXTURES.glob("*.flac"))
SR = 8_000  # telephone rate: the analysis resamples to the model's 16 kHz

pytestmark = pytest.mark.skipif(len(CLIPS) < 6, reason="fixture clips missing")


@pytest.fixture(scope="module")
def model() -> EmotionModel:
    """A real (tiny) model trained on the fixture clips."""
    fs = get_feature_set("seed180")
    X = np.stack([fs(sf.read(p, dtype="float32")[0], fs.sample_rate) for p in CLIPS])
    y = [parse_ravdess_name(p).emotion for p in CLIPS]
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    return EmotionModel(pipeline=pipe, labels=EMOTIONS, feature_set=fs, name="t", version="0")


@pytest.fixture(scope="module")
def call(tmp_path_factory) -> tuple[Path, list[tuple[int, float, float, str]]]:
    """An 8 kHz stereo 'call': six clips' speech alternating between channels 0 and 1."""
    rng = np.random.default_rng(2)
    stereo, truth, t = [], [], 0
    for i, path in enumerate(CLIPS[:6]):
        clip, sr = sf.read(path, dtype="float32")
        speech = librosa.effects.trim(clip, top_db=40, frame_length=512, hop_length=128)[0]
        speech = librosa.resample(speech, orig_sr=sr, target_sr=SR)
        pause = int(rng.uniform(0.6, 1.5) * SR)
        block = np.zeros((2, pause + speech.size), np.float32)
        block[i % 2, pause:] = speech
        truth.append((i % 2, (t + pause) / SR, (t + block.shape[1]) / SR, parse_ravdess_name(path)))
        stereo.append(block)
        t += block.shape[1]
    stereo.append(np.zeros((2, SR), np.float32))
    y = np.concatenate(stereo, axis=1)
    y += 1e-3 * rng.standard_normal(y.shape).astype(np.float32)
    path = tmp_path_factory.mktemp("calls") / "call.wav"
    sf.write(path, y.T, SR, subtype="PCM_16")
    return path, [(ch, a, b, name.emotion) for ch, a, b, name in truth]


def test_split_channels_find_each_clip_on_its_channel(model, call):
    path, truth = call
    result = analyze_file(model, path, channels="split")
    assert result.ok and result.channels == 2 and result.sample_rate == SR
    found = []
    for ch, start, end, _ in truth:
        mine = [s for s in result.segments if s.channel == ch]
        assert any(s.start_s < end and s.end_s > start for s in mine)  # every clip is heard
        found.append(min(abs(s.start_s - start) for s in mine) <= 0.3)
        found.append(min(abs(s.end_s - end) for s in mine) <= 0.3)
    assert np.mean(found) >= 0.8  # (the energy-trimmed truth includes a breath VAD ignores)
    for s in result.segments:  # no segment lies on the other channel's speech
        assert any(
            ch == s.channel and a - 0.5 <= s.start_s < s.end_s <= b + 0.5 for ch, a, b, _ in truth
        )
        assert set(s.probabilities) == set(EMOTIONS)
        assert s.label == max(s.probabilities, key=s.probabilities.get)
    per_channel = result.summary["channels"]
    assert [c["channel"] for c in per_channel] == [0, 1]
    assert sum(c["n_segments"] for c in per_channel) == len(result.segments)
    json.dumps(result.to_dict())


def test_file_label_is_the_speech_weighted_mean(model, call):
    result = analyze_file(model, call[0], channels="split")
    w = np.array([s.end_s - s.start_s for s in result.segments])
    rows = np.array([[s.probabilities[lab] for lab in EMOTIONS] for s in result.segments])
    expected = w @ rows / w.sum()
    assert [result.probabilities[lab] for lab in EMOTIONS] == pytest.approx(expected)
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert result.label == EMOTIONS[int(expected.argmax())]
    assert result.confidence == pytest.approx(expected.max())


def test_mix_puts_every_clip_on_channel_0(model, call):
    path, truth = call
    result = analyze_file(model, path, channels="mix")
    assert {s.channel for s in result.segments} == {0}
    for _, start, end, _ in truth:
        assert any(s.start_s < end and s.end_s > start for s in result.segments)
    assert "channels" not in result.summary
    assert result.summary["speech_s"] < result.summary["duration_s"]


def test_result_does_not_depend_on_the_block_size(model, call):
    a = analyze_file(model, call[0], channels="split", block_s=30.0)
    b = analyze_file(model, call[0], channels="split", block_s=0.7)
    assert [(s.channel, s.start_s, s.end_s) for s in a.segments] == [
        (s.channel, s.start_s, s.end_s) for s in b.segments
    ]
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)


def test_fixed_windows_and_whole_file(model, call):
    fixed = analyze_file(model, call[0], segmentation="fixed", max_segment_s=3.0)
    assert fixed.ok and all(s.end_s - s.start_s <= 3.0 for s in fixed.segments)
    assert fixed.segments[0].start_s == 0.0
    whole = analyze_file(model, call[0], channels="split", segmentation="none")
    assert [(s.channel, s.start_s) for s in whole.segments] == [(0, 0.0), (1, 0.0)]
    assert whole.segments[0].end_s == pytest.approx(whole.duration_s, abs=1e-3)


def test_short_file_is_classified_whole(model, tmp_path):
    clip, sr = sf.read(CLIPS[0], dtype="float32")
    path = tmp_path / "short.flac"
    sf.write(path, clip[int(1.5 * sr) : int(2.2 * sr)], sr)
    result = analyze_file(model, path)
    assert result.ok and result.label in EMOTIONS
    assert len(result.segments) == 1 and result.segments[0].start_s == 0.0


def test_clips_up_to_whole_clip_max_s_are_one_segment_when_mixed(model, call):
    clip = CLIPS[0]
    assert sf.info(clip).duration <= WHOLE_CLIP_MAX_S < sf.info(call[0]).duration
    whole = analyze_file(model, clip)  # the rule is the default: callers pass nothing
    assert len(whole.segments) == 1
    assert whole.segments[0].end_s == pytest.approx(whole.duration_s, abs=1e-3)
    assert whole.label == model.classify_signal(*sf.read(clip, dtype="float32"))[0]
    long_call = analyze_file(model, call[0])  # longer: still segmented
    assert len(long_call.segments) > 1
    split = analyze_file(model, clip, channels="split")
    assert split.segments[0].end_s < whole.duration_s  # split jobs always use the VAD
    off = analyze_file(model, clip, whole_below_s=0.0)
    assert off.segments[0].end_s < whole.duration_s


def test_whole_clip_rule_is_for_vad_only(model):
    fixed = analyze_file(model, CLIPS[0], segmentation="fixed", max_segment_s=1.5)
    assert fixed.segments[0].end_s == 1.5 < fixed.duration_s


def test_no_speech_gives_no_label_but_no_error(model, tmp_path):
    path = tmp_path / "hiss.wav"
    noise = 1e-3 * np.random.default_rng(0).standard_normal(10 * SR)
    sf.write(path, noise.astype(np.float32), SR)
    result = analyze_file(model, path)
    assert result.ok and result.label is None and result.segments == []
    assert result.summary["speech_s"] == 0.0 and result.summary["dominant"] is None


@pytest.mark.parametrize(
    "make, kw, code",
    [
        (lambda p: p.write_bytes(b"hello, not audio" * 100), {}, "not_audio"),
        (lambda p: p.write_bytes(b""), {}, "empty_file"),
        (lambda p: sf.write(p, np.zeros(5 * SR, np.float32), SR, format="WAV"), {}, "silent_audio"),
        (
            lambda p: sf.write(p, np.ones(5 * SR, np.float32) * 0.1, SR, format="WAV"),
            {"max_duration_s": 2},
            "too_long",
        ),
        (lambda p: None, {}, "unreadable_file"),
    ],
)
@pytest.mark.parametrize("segmentation", ["vad", "fixed", "none"])
def test_bad_audio_is_reported_not_raised(model, tmp_path, make, kw, code, segmentation):
    path = tmp_path / "bad.wav"
    make(path)
    result = analyze_file(model, path, segmentation=segmentation, **kw)
    assert result.error_code == code and result.label is None and result.error
    json.dumps(result.to_dict())


@pytest.mark.parametrize(
    "kw", [{"channels": "left"}, {"segmentation": "energy"}, {"min_segment_s": 10.0}]
)
def test_bad_options_raise(model, call, kw):
    with pytest.raises(ValueError):
        analyze_file(model, call[0], **kw)


@pytest.mark.parametrize(
    "make", [lambda: SpeechStream(16_000), lambda: WindowStream(16_000, window_s=8.0)]
)
def test_channel_buffer_stays_bounded(make):
    """Buffered audio never exceeds a block plus the longest pending segment, however long."""
    sr = 16_000
    talk = np.concatenate([voice(2.0), np.zeros(sr, np.float32)] * 20 + [voice(60.0)])
    channel, most, cut = _Channel(make()), 0, []
    for _ in range(2):  # about 4 minutes
        for i in range(0, talk.size, sr):
            cut += channel.push(talk[i : i + sr])
            most = max(most, sum(c.size for c in channel.chunks))
    cut += channel.flush()
    assert most <= 36 * sr  # one 1 s block + 4 x 8 s (longest open run) + padding
    assert cut and all(y.size == round(seg.duration_s * sr) for seg, y in cut)
