"""Whole-file predictions: one label per file, bad audio reported rather than raised."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.audio import AudioInfo, load, probe
from core.errors import AERError
from core.model import EmotionModel


@dataclass
class SegmentPrediction:
    """Prediction for one stretch of one channel (times in seconds from the file's start)."""

    channel: int
    start_s: float
    end_s: float
    label: str
    confidence: float
    probabilities: dict[str, float]
    ood: float | None = None  # 0..1: share of training rows nearer (core.ood); None: no scorer


@dataclass
class FilePrediction:
    """Prediction for one file; ``error``/``error_code`` set (and label None) when it failed.

    ``ood``: how far the audio lies from the model's training data, 0..1 (the share of training
    rows nearer; speech-time-weighted mean over segments), None for a model without a distance
    scorer; see ``core.ood.is_uncertain``. ``duration_s``, ``sample_rate`` and ``channels``
    describe the file as stored (before resampling or mixing down), when it could be probed.
    """

    path: str
    label: str | None
    confidence: float | None
    probabilities: dict[str, float]
    duration_s: float | None
    sample_rate: int | None
    channels: int | None
    error: str | None = None
    error_code: str | None = None
    segments: list[SegmentPrediction] = field(default_factory=list)
    summary: dict | None = None
    ood: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        """JSON-safe dict of every field."""
        return asdict(self)


def predict_file(
    model: EmotionModel, path: str | Path, *, max_duration_s: float | None = None
) -> FilePrediction:
    """Classify a whole file (mono, at the model's feature set rate).

    Never raises for bad input: an ``AERError`` (unreadable path, not audio, corrupt, silent,
    too short, too long, ...) comes back as ``error`` and ``error_code``.
    """
    fs = model.feature_set
    info: AudioInfo | None = None
    try:
        info = probe(path)
        y = load(
            path,
            sr=fs.sample_rate,
            mono=True,
            min_duration_s=fs.min_duration_s,
            max_duration_s=max_duration_s,
        )
        label, confidence, probabilities, ood = model.assess_signal(y, fs.sample_rate)
    except AERError as exc:
        return failed_prediction(path, info, exc)
    return classified_prediction(path, info, label, confidence, probabilities, ood=ood)


def classified_prediction(
    path: str | Path,
    info: AudioInfo,
    label: str | None,
    confidence: float | None,
    probabilities: dict[str, float],
    **extra,
) -> FilePrediction:
    """The result of a classified file: its answer, the facts of ``info``, and ``extra`` fields
    (``segments``, ``summary``, ``ood``)."""
    return FilePrediction(
        path=str(path),
        label=label,
        confidence=confidence,
        probabilities=probabilities,
        duration_s=info.duration_s,
        sample_rate=info.sample_rate,
        channels=info.channels,
        **extra,
    )


def failed_prediction(path: str | Path, info: AudioInfo | None, exc: AERError) -> FilePrediction:
    """The result of a file that could not be classified: what is known of it, and why."""
    return FilePrediction(
        path=str(path),
        label=None,
        confidence=None,
        probabilities={},
        duration_s=info.duration_s if info else None,
        sample_rate=info.sample_rate if info else None,
        channels=info.channels if info else None,
        error=str(exc),
        error_code=exc.code,
    )


def predict_files(model: EmotionModel, paths: Iterable[str | Path], **kw) -> list[FilePrediction]:
    """:func:`predict_file` for each path, in order (keyword arguments are passed on)."""
    return [predict_file(model, p, **kw) for p in paths]
