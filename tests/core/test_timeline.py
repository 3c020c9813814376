import json
from dataclasses import dataclass

import pytest

from core.timeline import NEGATIVE_LABELS, most_overlapped, negativity, summarize

LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


@dataclass
class Seg:  # duck-typed stand-in: summarize must not need core.predict
    channel: int
    start_s: float
    end_s: float
    label: str
    confidence: float
    probabilities: dict


def seg(channel, start, end, label, negative=0.0):
    """A segment whose probabilities put ``negative`` on 'sad' and the rest on ``label``."""
    probs = dict.fromkeys(LABELS, 0.0)
    probs["sad"] += negative
    probs[label] += 1.0 - negative
    return Seg(channel, start, end, label, max(probs.values()), probs)


def test_shares_dominant_and_times():
    segments = [
        seg(0, 0.0, 4.0, "happy"),
        seg(0, 5.0, 7.0, "angry", 0.1),
        seg(0, 8.0, 10.0, "happy"),
    ]
    out = summarize(segments, 20.0, LABELS)
    assert out["dominant"] == "happy"
    assert out["speech_s"] == pytest.approx(8.0)
    assert out["silence_s"] == pytest.approx(12.0)
    assert out["n_segments"] == 3
    assert list(out["shares"]) == list(LABELS)
    assert out["shares"]["happy"] == pytest.approx(0.75)
    assert out["shares"]["angry"] == pytest.approx(0.25)
    assert sum(out["shares"].values()) == pytest.approx(1.0)
    json.dumps(out)  # JSON-safe


def test_most_negative_segment():
    segments = [
        seg(0, 0.0, 2.0, "neutral", 0.2),
        seg(1, 3.0, 5.0, "angry", 0.0),  # angry is negative too: score 1.0
        seg(0, 6.0, 8.0, "sad", 0.5),
    ]
    worst = summarize(segments, 10.0, LABELS)["most_negative"]
    assert worst == {"channel": 1, "start_s": 3.0, "end_s": 5.0, "label": "angry", "score": 1.0}


def test_ties_go_to_the_earliest_segment_and_the_first_label():
    segments = [seg(0, 5.0, 7.0, "sad"), seg(0, 1.0, 3.0, "sad"), seg(0, 3.0, 5.0, "neutral")]
    out = summarize(segments, 8.0, LABELS)
    assert out["most_negative"]["start_s"] == 1.0
    assert out["dominant"] == "sad"
    out = summarize([seg(0, 0, 1, "calm"), seg(0, 1, 2, "neutral")], 2.0, LABELS)
    assert out["dominant"] == "neutral"


def test_overlapping_channels_count_speech_time_once():
    segments = [seg(0, 0.0, 4.0, "happy"), seg(1, 2.0, 6.0, "sad")]
    out = summarize(segments, 10.0, LABELS)
    assert out["speech_s"] == pytest.approx(6.0)
    assert out["silence_s"] == pytest.approx(4.0)
    assert out["shares"]["happy"] == out["shares"]["sad"] == pytest.approx(0.5)


def test_no_speech():
    out = summarize([], 30.0, LABELS)
    assert out["dominant"] is None and out["most_negative"] is None
    assert out["speech_s"] == 0.0 and out["silence_s"] == 30.0
    assert set(out["shares"].values()) == {0.0}


def test_negativity_sums_the_negative_labels():
    probs = {"angry": 0.1, "fearful": 0.2, "sad": 0.3, "disgust": 0.15, "happy": 0.25}
    assert negativity(probs) == pytest.approx(0.75)
    assert negativity({"happy": 1.0}) == 0.0
    assert set(NEGATIVE_LABELS) <= set(LABELS)


def test_most_overlapped_matches_on_the_same_channel_only():
    clips = [(0, 0.0, 3.0), (1, 2.0, 6.0), (0, 5.0, 9.0)]
    spans = [
        (0, 0.5, 2.5),  # inside clip 0
        (0, 2.0, 6.0),  # 1 s of clip 0, 1 s of clip 2 (tie: the first), clip 1 is channel 1
        (1, 2.5, 8.0),  # clip 1 only: clip 2 overlaps more but is on channel 0
        (0, 3.5, 4.5),  # a gap on channel 0, though clip 1 covers it on channel 1
        (2, 0.0, 9.0),  # a channel without clips
    ]
    assert most_overlapped(spans, clips) == [0, 0, 1, None, None]
    assert most_overlapped(spans[:1], []) == [None]
    assert most_overlapped([], clips) == []
