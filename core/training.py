"""Training: dataset -> features (cached) -> fitted pipeline -> EmotionModel."""

from __future__ import annotations

import inspect
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from core.cache import extract_features
from core.datasets import Dataset
from core.errors import DatasetError, FeatureSetError
from core.features import FeatureSet, get_feature_set
from core.model import EmotionModel
from core.ood import OOD_ABOVE, DistanceScorer
from core.presets import RANDOM_STATE, build_pipeline, get_preset
from core.routing import BandwidthRouter, clf_fit_params


@dataclass
class FeatureTable:
    """Feature rows of the dataset files that could be extracted, with labels and speakers."""

    X: np.ndarray  # shape (n, dim), float32
    labels: np.ndarray  # shape (n,), str
    speakers: np.ndarray  # shape (n,), object (str or None)
    paths: list[Path]
    failed: list[tuple[str, str]] = field(default_factory=list)
    durations: np.ndarray | None = None  # shape (n,), seconds of audio per row, when asked for


def featurize(
    dataset: Dataset,
    feature_set: FeatureSet,
    *,
    cache_dir: str | Path | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    transform: str | None = None,
    durations: bool = False,
) -> FeatureTable:
    """Extract features for every sample; failed files are dropped and listed in ``failed``.

    ``durations``: also fill ``FeatureTable.durations`` (seconds of the degraded audio)."""
    ex = extract_features(
        dataset.paths,
        feature_set,
        cache_dir=cache_dir,
        n_jobs=n_jobs,
        progress=progress,
        transform=transform,
        durations=durations,
    )
    keep = [s for s, ok in zip(dataset.samples, ex.ok, strict=True) if ok]
    return FeatureTable(
        X=ex.X,
        labels=np.array([s.label for s in keep], dtype=object),
        speakers=np.array([s.speaker for s in keep], dtype=object),
        paths=[s.path for s in keep],
        failed=ex.failed,
        durations=ex.durations,
    )


def _speakers_or_none(groups) -> np.ndarray | None:
    """Speakers as a str array, or None when any is unknown (inner folds then stratify)."""
    if groups is None or any(g is None for g in groups):
        return None
    return np.asarray(groups, dtype=str)


def fit_pipeline(
    preset: str,
    X: np.ndarray,
    y,
    *,
    groups=None,
    sources=None,
    durations=None,
    random_state: int = RANDOM_STATE,
):
    """Fit a fresh ``preset`` pipeline; returns (pipeline, info) with convergence facts.

    Args:
        groups: speaker of each row (n,); passed to the ``clf`` step when its ``fit`` takes
            ``groups`` (calibrated presets: inner folds grouped by speaker). Augmented copies
            of a clip must carry its speaker.
        sources: index of the row of the clean recording each row was made from (n,; its own
            index for clean rows, -1 if unknown: see :func:`source_rows`); passed when the
            ``clf`` step's ``fit`` takes ``sources`` (distilling presets).
        durations: seconds of audio behind each row (n,); passed when the ``clf`` step's
            ``fit`` takes ``durations`` (duration-dependent calibration: see
            :func:`needs_durations`).
    """
    pipeline = build_pipeline(preset, random_state)
    fit_params = clf_fit_params(
        pipeline, groups=_speakers_or_none(groups), sources=sources, durations=durations
    )
    # One BLAS thread: these matrices are small, and threads made MLP fits ~8x slower here.
    with (
        threadpool_limits(limits=1, user_api="blas"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always", ConvergenceWarning)
        # small data sets: the MLP clips batch_size to the sample count, which is what we want
        warnings.filterwarnings("ignore", message="Got `batch_size` less than 1 or larger")
        pipeline.fit(X, np.asarray(y, dtype=str), **fit_params)
    unconverged = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    for w in caught:  # non-convergence goes into the metadata; anything else is passed on
        if w not in unconverged:
            warnings.warn(w.message, w.category, stacklevel=2)
    info = {"converged": not unconverged}
    members = _members(pipeline.named_steps["clf"])
    iters = [int(np.max(m.n_iter_)) for m in members if hasattr(m, "n_iter_")]
    losses = [float(m.loss_curve_[-1]) for m in members if getattr(m, "loss_curve_", None)]
    if iters:
        info["n_iter"] = max(iters)
    if losses:
        info["final_loss"] = round(float(np.mean(losses)), 6)
    return pipeline, info


def needs_durations(preset: str) -> bool:
    """Whether ``preset``'s ``clf`` step fits on (and predicts with) each row's duration."""
    clf = build_pipeline(preset).named_steps["clf"]
    return "durations" in inspect.signature(clf.fit).parameters


def source_rows(paths: list, n_clean: int) -> np.ndarray:
    """For rows stacked as ``n_clean`` clean recordings then augmented copies, the index of
    each row's clean row, found by its file path (-1 for a copy whose clean file failed)."""
    clean = {path: i for i, path in enumerate(paths[:n_clean])}
    return np.array([clean.get(path, -1) for path in paths], dtype=int)


def _members(clf) -> list:
    """The fitted estimators inside ``clf``: unwraps routers, calibration wrappers and votes."""
    if isinstance(clf, BandwidthRouter):
        return [m for p in clf.fitted_pipelines() for m in _members(p.named_steps["clf"])]
    while hasattr(clf, "estimator_"):  # calibration and soft-target wrappers, nested
        clf = clf.estimator_
    return list(getattr(clf, "estimators_", [clf]))


#: Fitting state of MLPClassifier that prediction never reads (Adam moments, best weights copy).
_TRAINING_ONLY = ("_optimizer", "_best_coefs", "_best_intercepts")


def slim(pipeline) -> None:
    """Drop training-only state from the fitted MLPs in ``pipeline`` (artifacts ~4x smaller).

    Prediction is unchanged; further ``partial_fit``/warm starts are no longer possible.
    """
    for member in _members(pipeline.named_steps["clf"]):
        for attr in _TRAINING_ONLY:
            if hasattr(member, attr):
                delattr(member, attr)


def loss_curves(clf) -> list[list[float]]:
    """Training loss curve of each MLP inside a fitted ``clf`` step (empty for other models)."""
    return [[float(v) for v in m.loss_curve_] for m in _members(clf) if hasattr(m, "loss_curve_")]


def resolve_feature_set(preset: str, feature_set: str | FeatureSet | None) -> FeatureSet:
    """``feature_set`` (a FeatureSet, ``"name"`` for its latest version or ``"name@version"``)
    as a FeatureSet; None = the latest version of the one ``preset`` was tuned for."""
    if feature_set is None:
        feature_set = get_preset(preset).feature_set
    if not isinstance(feature_set, str):
        return feature_set
    name, _, version = feature_set.partition("@")
    if version and not version.isdigit():
        raise FeatureSetError(f"bad feature set {feature_set!r}: write name or name@version")
    return get_feature_set(name, int(version) if version else None)


def default_version() -> str:
    """A sortable version string from the current UTC time, e.g. ``"2026.11.24-2145"``."""
    return datetime.now(UTC).strftime("%Y.%m.%d-%H%M")


def train_model(
    dataset: Dataset,
    *,
    name: str,
    preset: str = "seed-300",
    feature_set: str | FeatureSet | None = None,
    classes: list[str] | tuple[str, ...] | None = None,
    version: str | None = None,
    augment: list[str] | tuple[str, ...] = (),
    cache_dir: str | Path | None = None,
    n_jobs: int | None = None,
    random_state: int = RANDOM_STATE,
    progress: bool = True,
) -> EmotionModel:
    """Train a model on all of ``dataset`` (restricted to ``classes`` if given).

    Args:
        feature_set: name or FeatureSet; None = the preset's own feature set.
        augment: degradation specs (``core.degrade``); each adds one degraded copy of every
            training file (it keeps the file's speaker).

    Raises:
        DatasetError: fewer than two classes, or no file could be read.
    """
    fs = resolve_feature_set(preset, feature_set)
    if classes:
        dataset = dataset.restrict(classes)
    timed = needs_durations(preset)
    kw = {"cache_dir": cache_dir, "n_jobs": n_jobs, "progress": progress, "durations": timed}
    table = featurize(dataset, fs, **kw)
    labels = tuple(c for c in dataset.classes if c in set(table.labels))
    if len(labels) < 2:
        raise DatasetError(f"need at least two classes with readable files, got {labels}")
    X, y, groups, paths = table.X, table.labels, table.speakers, list(table.paths)
    durations = table.durations
    for spec in augment:
        extra = featurize(dataset, fs, transform=spec, **kw)
        X, y = np.vstack([X, extra.X]), np.concatenate([y, extra.labels])
        groups = np.concatenate([groups, extra.speakers])
        paths += extra.paths
        if timed:
            durations = np.concatenate([durations, extra.durations])
    sources = source_rows(paths, len(table.paths))
    pipeline, fit_info = fit_pipeline(
        preset,
        X,
        y,
        groups=groups,
        sources=sources,
        durations=durations,
        random_state=random_state,
    )
    slim(pipeline)
    ood = DistanceScorer().fit(X, y)  # every training row, augmented copies included
    counts = Counter(table.labels)
    speakers = sorted({s for s in table.speakers if s})
    metadata = {
        "preset": preset,
        "random_state": random_state,
        "training": {
            "source": dataset.source,
            "n_files": len(table.labels),
            "class_counts": {c: counts[c] for c in labels},
            "n_speakers": len(speakers),
            "speakers": speakers,
            "n_failed": len(table.failed),
            "failed": [list(f) for f in table.failed[:50]],
            "n_skipped": len(dataset.skipped),
            "augment": list(augment),
            "n_rows": int(len(y)),
            **fit_info,
        },
        "metrics": {},
        "ood": {
            "method": "Mahalanobis distance to the nearest class mean over the first principal "
            "axes plus the rest (core.ood.DistanceScorer), as the share of training rows nearer",
            "n_components": int(len(ood.components_)),
        },
        "suggested_ood_above": OOD_ABOVE,
    }
    scaler = getattr(pipeline.named_steps.get("clf"), "scaler_", None)
    if scaler is not None:  # duration-dependent temperature: T(d) = t0 * (1 + a / d)
        metadata["calibration"] = {
            "temperature": "t0 * (1 + a / d), d: seconds of audio clamped to [d_min, d_max]",
            "t0": round(scaler.t0_, 6),
            "a": round(scaler.a_, 6),
            "d_min": round(scaler.min_duration_, 4),
            "d_max": round(scaler.max_duration_, 4),
            "d_default": round(scaler.default_duration_, 4),
        }
    return EmotionModel(
        ood=ood,
        pipeline=pipeline,
        labels=labels,
        feature_set=fs,
        name=name,
        version=version or default_version(),
        metadata=metadata,
    )
