"""Timeline summary of a segmented recording: what was felt, for how long, and the worst moment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Labels whose probabilities add up to a segment's negativity score.
NEGATIVE_LABELS = ("angry", "fearful", "sad", "disgust")


def negativity(probabilities: dict[str, float]) -> float:
    """Summed probability of the negative emotions (:data:`NEGATIVE_LABELS`), in [0, 1]."""
    return float(sum(probabilities.get(label, 0.0) for label in NEGATIVE_LABELS))


def _union_length(spans: list[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def summarize(segments: Sequence[Any], duration_s: float, labels: Sequence[str]) -> dict:
    """Summarize segment predictions of one recording.

    Args:
        segments: objects with ``channel``, ``start_s``, ``end_s``, ``label``, ``confidence``
            and ``probabilities`` attributes (e.g. ``core.predict.SegmentPrediction``), any order.
        duration_s: length of the recording in seconds.
        labels: every label the model can give, in the model's order.

    Returns:
        A JSON-safe dict:

        - ``duration_s``: the recording's length.
        - ``speech_s``: time covered by at least one segment (overlaps between channels count
          once); ``silence_s``: the rest of ``duration_s``.
        - ``n_segments``: number of segments.
        - ``dominant``: the label holding the most segment time (ties: first in ``labels``),
          None without speech.
        - ``shares``: {label: share of segment time labelled so} for every label; sums to 1
          when there is speech, all 0 otherwise.
        - ``most_negative``: the segment with the highest negativity (summed probability of
          angry, fearful, sad and disgust; ties: the earliest) as ``{channel, start_s, end_s,
          label, score}``, None without segments.
    """
    times = dict.fromkeys(labels, 0.0)
    for seg in segments:
        times[seg.label] = times.get(seg.label, 0.0) + max(0.0, seg.end_s - seg.start_s)
    total = sum(times.values())
    speech = min(_union_length([(s.start_s, s.end_s) for s in segments]), duration_s)
    worst = max(
        sorted(segments, key=lambda s: (s.start_s, s.channel)),
        key=lambda s: negativity(s.probabilities),
        default=None,
    )
    return {
        "duration_s": float(duration_s),
        "speech_s": float(speech),
        "silence_s": float(max(0.0, duration_s - speech)),
        "n_segments": len(segments),
        "dominant": max(times, key=times.__getitem__) if total > 0 else None,
        "shares": {label: (t / total if total > 0 else 0.0) for label, t in times.items()},
        "most_negative": None
        if worst is None
        else {
            "channel": int(worst.channel),
            "start_s": float(worst.start_s),
            "end_s": float(worst.end_s),
            "label": worst.label,
            "score": negativity(worst.probabilities),
        },
    }


def most_overlapped(
    spans: Sequence[tuple[int, float, float]], reference: Sequence[tuple[int, float, float]]
) -> list[int | None]:
    """For each ``(channel, start_s, end_s)`` of ``spans``, the index of the ``reference`` span
    of the same channel it overlaps most (ties: the first), None where it overlaps none.

    Scores a timeline against known speech, e.g. segments against the clips a test call was
    built from: a segment's label should be the label of the clip it came from.
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, 3)
    if not len(ref):
        return [None] * len(spans)
    found: list[int | None] = []
    for channel, start, end in spans:
        overlap = np.minimum(ref[:, 2], end) - np.maximum(ref[:, 1], start)
        overlap[ref[:, 0] != channel] = 0.0
        best = int(overlap.argmax())
        found.append(best if overlap[best] > 0 else None)
    return found
