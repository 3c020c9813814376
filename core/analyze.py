"""Segment-level analysis of long recordings: stream, segment each channel, classify, summarize.

This is what the worker runs on a call recording: memory stays bounded by ``block_s`` plus the
longest segment, whatever the length of the file.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np

from core.audio import SILENCE_PEAK, AudioInfo, iter_blocks, load, probe
from core.errors import AERError, SilentAudioError, ZeroDurationError
from core.model import EmotionModel
from core.options import CHANNEL_MODES, SEGMENTATIONS
from core.predict import (
    FilePrediction,
    SegmentPrediction,
    classified_prediction,
    failed_prediction,
)
from core.segments import Segment, SpeechStream, WindowStream
from core.timeline import summarize

__all__ = ["CHANNEL_MODES", "SEGMENTATIONS", "WHOLE_CLIP_MAX_S", "analyze_file"]
#: Under VAD, mixed-down files no longer than this are classified whole rather than segmented:
#: the models learnt from whole 3-4 s clips, silence included, so a short clip gets the label a
#: whole-clip prediction gives it (8 s is ``analyze_file``'s longest segment).
WHOLE_CLIP_MAX_S = 8.0


class _Channel:
    """One channel's segmenter and the audio it may still need (from ``offset`` on)."""

    def __init__(self, segmenter: SpeechStream | WindowStream) -> None:
        self.segmenter = segmenter
        self.chunks: list[np.ndarray] = []
        self.offset = 0  # sample index of chunks[0][0]
        self.peak = 0.0

    def push(self, y: np.ndarray) -> list[tuple[Segment, np.ndarray]]:
        self.chunks.append(y)
        self.peak = max(self.peak, float(np.max(np.abs(y), initial=0.0)))
        return self._cut(self.segmenter.push(y))

    def flush(self) -> list[tuple[Segment, np.ndarray]]:
        return self._cut(self.segmenter.flush())

    def _cut(self, segments: list[Segment]) -> list[tuple[Segment, np.ndarray]]:
        sr = self.segmenter.sr
        chunks = self.chunks or [np.zeros(0, np.float32)]
        audio = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        out = []
        for seg in segments:
            start, end = round(seg.start_s * sr) - self.offset, round(seg.end_s * sr) - self.offset
            if start < 0:  # the segmenter broke its settled_s promise
                raise RuntimeError(f"segment {seg} starts before the audio still held")
            out.append((seg, audio[start:end]))
        keep = max(self.offset, round(self.segmenter.settled_s * sr))
        self.chunks = [audio[keep - self.offset :]]
        self.offset = keep
        return out


def analyze_file(
    model: EmotionModel,
    path: str | Path,
    *,
    channels: Literal["mix", "split"] = "mix",
    segmentation: Literal["vad", "fixed", "none"] = "vad",
    min_segment_s: float = 1.0,
    max_segment_s: float = 8.0,
    max_duration_s: float | None = None,
    block_s: float = 30.0,
    aggressiveness: int = 2,
    whole_below_s: float = WHOLE_CLIP_MAX_S,
) -> FilePrediction:
    """Classify every speech segment of a file, per channel or mixed down.

    Args:
        model: the classifier; audio is decoded at its feature set's rate.
        path: the audio file.
        channels: ``"mix"`` averages the channels; ``"split"`` analyses each channel on its own
            (stereo calls: agent and customer), ``SegmentPrediction.channel`` telling which.
        segmentation: ``"vad"`` (speech segments, :class:`core.segments.SpeechStream`),
            ``"fixed"`` (windows of ``max_segment_s`` back to back; silent windows skipped) or
            ``"none"`` (each channel whole, loaded in memory: for short files only).
        min_segment_s, max_segment_s: shortest and longest segment. VAD: shorter speech is
            widened to ``min_segment_s`` (under 0.5 s of speech is dropped), longer speech split
            evenly. Fixed: windows of ``max_segment_s``; a last one under ``min_segment_s`` is
            dropped.
        max_duration_s: longer files fail with ``too_long``.
        block_s: seconds decoded at a time.
        aggressiveness: webrtcvad mode 0-3.
        whole_below_s: under ``"vad"``, mixed-down files up to this long are classified whole,
            as one segment (default :data:`WHOLE_CLIP_MAX_S`, which says why; 0 turns it off).

    Returns:
        FilePrediction with ``segments`` (time order within each channel, channel 0 first),
        ``summary`` (:func:`core.timeline.summarize` over all segments, plus ``channels``: one
        summary per channel when split) and the file-level label, confidence and probabilities
        from the speech-time-weighted mean of segment probabilities (label None when no speech
        was found). Files shorter than ``min_segment_s`` are classified whole.
        Never raises for bad audio: ``error``/``error_code`` are filled as by
        :func:`core.predict.predict_file`.

    Raises:
        ValueError: an option is out of range (a bug of the caller, not of the file).
    """
    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of {CHANNEL_MODES}, got {channels!r}")
    if segmentation not in SEGMENTATIONS:
        raise ValueError(f"segmentation must be one of {SEGMENTATIONS}, got {segmentation!r}")
    fs = model.feature_set
    min_segment_s = max(min_segment_s, fs.min_duration_s)
    if segmentation == "fixed":
        make = partial(
            WindowStream, fs.sample_rate, window_s=max_segment_s, min_window_s=min_segment_s
        )
    else:
        make = partial(
            SpeechStream,
            fs.sample_rate,
            aggressiveness=aggressiveness,
            min_segment_s=min_segment_s,
            max_segment_s=max_segment_s,
        )
    make()  # checks the options now, before any file is read
    info: AudioInfo | None = None
    try:
        info = probe(path)
        short = info.duration_s < min_segment_s or (
            segmentation == "vad" and channels == "mix" and info.duration_s <= whole_below_s
        )
        if segmentation == "none" or short:
            rows, duration = _whole(model, path, channels, max_duration_s)
        else:
            mono = channels == "mix"
            blocks = iter_blocks(
                path, sr=fs.sample_rate, mono=mono, block_s=block_s, max_duration_s=max_duration_s
            )
            rows, duration = _stream(model, blocks, make, 1 if mono else info.channels)
        segments = _classify(model, rows)
    except AERError as exc:
        return failed_prediction(path, info, exc)
    return _result(model, path, info, segments, duration, split=channels == "split")


def _whole(model, path, channels, max_duration_s) -> tuple[list, float]:
    fs = model.feature_set
    y = load(
        path,
        sr=fs.sample_rate,
        mono=channels == "mix",
        min_duration_s=fs.min_duration_s,
        max_duration_s=max_duration_s,
    )
    y = np.atleast_2d(y)
    duration = y.shape[1] / fs.sample_rate
    whole = Segment(0.0, duration)
    rows = fs.extract_many(list(y), fs.sample_rate)
    return [(ch, whole, rows[ch]) for ch in range(y.shape[0])], duration


def _stream(model, blocks, make, n_channels: int) -> tuple[list, float]:
    """Feature rows ``(channel, segment, row)`` of every segment, and the decoded duration."""
    fs = model.feature_set
    state = [_Channel(make()) for _ in range(n_channels)]
    rows: list[tuple[int, Segment, np.ndarray]] = []

    def featurize(ch: int, cut: list[tuple[Segment, np.ndarray]]) -> None:
        # skip silent fixed windows; one batch per block (one encoder call for equal lengths)
        keep = [(seg, y) for seg, y in cut if np.max(np.abs(y), initial=0.0) >= SILENCE_PEAK]
        X = fs.extract_many([y for _, y in keep], fs.sample_rate)
        rows.extend((ch, seg, x) for (seg, _), x in zip(keep, X, strict=True))

    n = 0
    for block in blocks:
        block = np.atleast_2d(block)
        n += block.shape[1]
        for ch, st in enumerate(state):
            featurize(ch, st.push(block[ch]))
    for ch, st in enumerate(state):
        featurize(ch, st.flush())
    if n == 0:
        raise ZeroDurationError("the audio contains no samples")
    if max(st.peak for st in state) < SILENCE_PEAK:
        raise SilentAudioError("the audio is silent")
    rows.sort(key=lambda r: (r[0], r[1].start_s))
    return rows, n / fs.sample_rate


def _classify(model: EmotionModel, rows) -> list[SegmentPrediction]:
    if not rows:
        return []
    X = np.stack([x for _, _, x in rows])
    # the seconds of audio each row came from: a short segment gets a softer answer
    proba = model.predict_proba(X, durations=[seg.end_s - seg.start_s for _, seg, _ in rows])
    ood = model.ood_score(X)
    out = []
    for i, ((ch, seg, _), p) in enumerate(zip(rows, proba, strict=True)):
        best = int(np.argmax(p))
        out.append(
            SegmentPrediction(
                channel=ch,
                start_s=round(seg.start_s, 3),
                end_s=round(seg.end_s, 3),
                label=model.labels[best],
                confidence=float(p[best]),
                probabilities={lab: float(v) for lab, v in zip(model.labels, p, strict=True)},
                ood=None if ood is None else float(ood[i]),
            )
        )
    return out


def _result(model, path, info, segments, duration, *, split) -> FilePrediction:
    labels = model.labels
    summary = summarize(segments, duration, labels)
    if split:
        summary["channels"] = [
            {"channel": ch, **summarize([s for s in segments if s.channel == ch], duration, labels)}
            for ch in range(info.channels)
        ]
    weights = np.array([s.end_s - s.start_s for s in segments])
    label = confidence = ood = None
    probabilities: dict[str, float] = {}
    if segments and weights.sum() > 0:
        rows = np.array([[s.probabilities[lab] for lab in labels] for s in segments])
        mean = weights @ rows / weights.sum()
        best = int(np.argmax(mean))
        label, confidence = labels[best], float(mean[best])
        probabilities = {lab: float(v) for lab, v in zip(labels, mean, strict=True)}
        if model.ood is not None:
            ood = float(weights @ np.array([s.ood for s in segments]) / weights.sum())
    return classified_prediction(
        path, info, label, confidence, probabilities, segments=segments, summary=summary, ood=ood
    )
