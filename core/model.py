"""EmotionModel: a fitted pipeline together with its labels and feature set."""

from __future__ import annotations

from typing import Any

import numpy as np
import soxr

from core.audio import check_signal
from core.features import FeatureSet
from core.ood import DistanceScorer
from core.routing import clf_predict_params


class EmotionModel:
    """A trained classifier over one feature set.

    Args:
        pipeline: fitted scikit-learn pipeline with ``predict_proba``; its ``classes_`` are
            label strings.
        labels: class names in the order of the probability columns this model returns.
        feature_set: the features the pipeline was trained on.
        name: model name, e.g. ``"ravdess8"``.
        version: model version, e.g. ``"2026.11.24-1"``.
        metadata: JSON-safe facts about training and evaluation.
        ood: distance scorer fitted on the training rows, or None (then ``ood_score`` is None).
    """

    def __init__(
        self,
        *,
        pipeline: Any,
        labels: tuple[str, ...] | list[str],
        feature_set: FeatureSet,
        name: str,
        version: str,
        metadata: dict | None = None,
        ood: DistanceScorer | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.labels = tuple(labels)
        self.feature_set = feature_set
        self.name = name
        self.version = version
        self.metadata = dict(metadata or {})
        self.ood = ood
        classes = [str(c) for c in pipeline.classes_]
        if sorted(classes) != sorted(self.labels):
            raise ValueError(f"labels {self.labels} differ from the pipeline's classes {classes}")
        self._columns = [classes.index(label) for label in self.labels]

    def __repr__(self) -> str:
        return f"EmotionModel({self.name}@{self.version}, {self.feature_set.id}, {self.labels})"

    def predict_proba(
        self, X: np.ndarray, durations: np.ndarray | list[float] | None = None
    ) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), columns in ``labels`` order.

        Args:
            X: feature rows, shape (n, feature_set.dim) (a single row of shape (dim,) is allowed).
            durations: seconds of audio each row was extracted from (n,), or None. Models with
                duration-dependent calibration soften short inputs; others ignore it. None
                reads every row as a typical training clip.
        """
        X = np.atleast_2d(np.asarray(X, dtype=np.float32))
        if X.shape[1] != self.feature_set.dim:
            raise ValueError(f"expected {self.feature_set.dim} features per row, got {X.shape[1]}")
        params = clf_predict_params(self.pipeline, durations)
        return self.pipeline.predict_proba(X, **params)[:, self._columns]

    def ood_score(self, X: np.ndarray) -> np.ndarray | None:
        """How far each row lies from the training rows, 0..1 [shape=(n,)] (see ``core.ood``);
        None for a model without a distance scorer."""
        if self.ood is None:
            return None
        return self.ood.score(np.atleast_2d(np.asarray(X, dtype=np.float32)))

    @property
    def ood_above(self) -> float | None:
        """The ``ood`` score above which results are uncertain (metadata), or None."""
        value = self.metadata.get("suggested_ood_above")
        return None if value is None or self.ood is None else float(value)

    def predict(self, X: np.ndarray) -> list[str]:
        """Most probable label per feature row."""
        return [self.labels[i] for i in self.predict_proba(X).argmax(axis=1)]

    def classify_signal(self, y: np.ndarray, sr: int) -> tuple[str, float, dict[str, float]]:
        """Classify one mono signal.

        Args:
            y: mono signal, shape (n,), float; resampled if ``sr`` is not the feature set's rate.
            sr: sample rate of ``y`` in Hz.

        Returns:
            (label, confidence, {label: probability}).

        Raises:
            AudioError subclasses from ``core.audio.check_signal`` (silent, too short, NaN).
        """
        return self.assess_signal(y, sr)[:3]

    def assess_signal(
        self, y: np.ndarray, sr: int
    ) -> tuple[str, float, dict[str, float], float | None]:
        """:meth:`classify_signal` plus the signal's ``ood`` score (None without a scorer)."""
        y = np.asarray(y, dtype=np.float32)
        target = self.feature_set.sample_rate
        if sr != target:
            y = soxr.resample(y, sr, target).astype(np.float32)
        check_signal(y, target, min_duration_s=self.feature_set.min_duration_s)
        row = self.feature_set(y, target)
        proba = self.predict_proba(row, durations=[y.size / target])[0]
        best = int(proba.argmax())
        probs = {label: float(p) for label, p in zip(self.labels, proba, strict=True)}
        ood = self.ood_score(row)
        return self.labels[best], float(proba[best]), probs, None if ood is None else float(ood[0])
