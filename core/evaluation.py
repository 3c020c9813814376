"""Cross-validated evaluation of a preset: speaker-independent by default.

Protocols:
    ``speaker``: GroupKFold by speaker (no speaker in both train and test), k folds.
    ``random``: the seed's protocol, ``train_test_split(test_size=0.25)`` repeated over seeds.
      Speakers leak between train and test, which overstates accuracy; kept for comparison.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.metrics import confusion_matrix, f1_score
from sklearn.model_selection import GroupKFold, train_test_split

from core import calibration
from core.datasets import Dataset
from core.errors import DatasetError
from core.features import FeatureSet
from core.presets import RANDOM_STATE
from core.routing import clf_predict_params
from core.training import (
    FeatureTable,
    featurize,
    fit_pipeline,
    loss_curves,
    needs_durations,
    resolve_feature_set,
)

PROTOCOLS = ("speaker", "random")
#: Confidence thresholds of the accuracy-versus-coverage table.
COVERAGE_THRESHOLDS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Accuracy the answered predictions should reach above ``suggested_uncertain_below``.
TARGET_ACCURACY = 0.75


@dataclass
class FoldResult:
    """Scores of one train/test split."""

    fold: int
    n_train: int
    n_test: int
    accuracy: float
    uar: float
    macro_f1: float
    per_class_recall: dict[str, float]
    confusion: np.ndarray  # shape (n_classes, n_classes): rows true, columns predicted
    test_speakers: list[str] = field(default_factory=list)
    loss_curve: list[float] = field(default_factory=list)
    test_index: np.ndarray | None = None  # rows of the evaluated table, shape (n_test,)
    proba: np.ndarray | None = None  # (n_test, n_classes), columns in report.classes order
    raw_proba: np.ndarray | None = None  # the same before calibration (calibrated presets)


@dataclass
class EvaluationReport:
    """All folds of one evaluation, plus what was evaluated."""

    protocol: str
    classes: tuple[str, ...]
    preset: str
    feature_set: str
    n_files: int
    folds: list[FoldResult]
    failed: list[tuple[str, str]] = field(default_factory=list)
    degrade: str | None = None
    augment: tuple[str, ...] = ()
    labels: np.ndarray | None = None  # true label of every row of the evaluated table
    conditions: dict[str, list[FoldResult]] = field(default_factory=dict)  # extra test audio
    fold_seed: int | None = None  # speaker-to-fold shuffle (None: unshuffled GroupKFold)

    def pooled(self, folds: list[FoldResult] | None = None, *, raw: bool = False):
        """(probabilities (m, k), true labels (m,)) of all test rows of all folds.

        Under the speaker protocol every row appears once: these are out-of-fold predictions.
        ``raw``: the uncalibrated probabilities (None when the preset is not calibrated).
        """
        folds = self.folds if folds is None else folds
        key = "raw_proba" if raw else "proba"
        if not folds or any(getattr(f, key) is None for f in folds):
            return None, None
        P = np.vstack([getattr(f, key) for f in folds])
        y = np.concatenate([self.labels[f.test_index] for f in folds])
        return P, y

    def calibration_summary(self, folds: list[FoldResult] | None = None) -> dict:
        """ECE (pooled out-of-fold), its noise floor, reliability and coverage curves."""
        P, y = self.pooled(folds)
        if P is None:
            return {}
        labels = list(self.classes)
        out = {
            "ece": round(calibration.expected_calibration_error(P, y, labels=labels), 4),
            "calibration_metrics": calibration.calibration_metrics(P, y, labels=labels),
            "ece_noise_floor": calibration.ece_noise_floor(P),
            "reliability_curve": calibration.reliability_curve(P, y, labels=labels),
            "coverage_curve": calibration.coverage_curve(
                P, y, labels=labels, thresholds=COVERAGE_THRESHOLDS
            ),
            "threshold_for_accuracy": {
                "target": TARGET_ACCURACY,
                "result": calibration.threshold_for_accuracy(P, y, TARGET_ACCURACY, labels=labels),
            },
        }
        raw, y_raw = self.pooled(folds, raw=True)
        if raw is not None:
            out["ece_uncalibrated"] = round(
                calibration.expected_calibration_error(raw, y_raw, labels=labels), 4
            )
            out["reliability_curve_uncalibrated"] = calibration.reliability_curve(
                raw, y_raw, labels=labels
            )
        return out

    def suggested_uncertain_below(self) -> float | None:
        """Lowest confidence threshold whose answered out-of-fold rows reach TARGET_ACCURACY."""
        P, y = self.pooled()
        if P is None:
            return None
        hit = calibration.threshold_for_accuracy(P, y, TARGET_ACCURACY, labels=list(self.classes))
        return None if hit is None else round(float(hit["threshold"]), 4)

    @property
    def confusion(self) -> np.ndarray:
        """Confusion matrix summed over folds."""
        return np.sum([f.confusion for f in self.folds], axis=0)

    def summary(self) -> dict:
        """JSON-safe metrics: means and standard deviations over folds, and per-fold scores."""

        def stat(values) -> tuple[float, float]:
            values = np.asarray(values, dtype=float)
            return round(float(np.nanmean(values)), 4), round(float(np.nanstd(values)), 4)

        out: dict = {
            "protocol": self.protocol,
            "classes": list(self.classes),
            "preset": self.preset,
            "feature_set": self.feature_set,
            "n_files": self.n_files,
            "n_failed": len(self.failed),
            "n_folds": len(self.folds),
            "fold_seed": self.fold_seed,
            "degrade": self.degrade,
            "augment": list(self.augment),
        }
        for key in ("accuracy", "uar", "macro_f1"):
            out[key], out[f"{key}_std"] = stat([getattr(f, key) for f in self.folds])
        recalls = {c: stat([f.per_class_recall[c] for f in self.folds]) for c in self.classes}
        out["per_class_recall"] = {c: m for c, (m, _) in recalls.items()}
        out["per_class_recall_std"] = {c: s for c, (_, s) in recalls.items()}
        out["confusion_matrix"] = self.confusion.tolist()
        out["folds"] = [
            {
                "fold": f.fold,
                "n_train": f.n_train,
                "n_test": f.n_test,
                "accuracy": round(f.accuracy, 4),
                "uar": round(f.uar, 4),
                "macro_f1": round(f.macro_f1, 4),
                "test_speakers": f.test_speakers,
            }
            for f in self.folds
        ]
        out.update(self.calibration_summary())
        if self.conditions:
            out["conditions"] = {
                cond: _condition_summary(self, folds, stat)
                for cond, folds in self.conditions.items()
            }
        return out


def _condition_summary(report: EvaluationReport, folds: list[FoldResult], stat) -> dict:
    """Headline scores of the same fold models on other test audio."""
    out = {}
    for key in ("accuracy", "uar", "macro_f1"):
        out[key], out[f"{key}_std"] = stat([getattr(f, key) for f in folds])
    out["per_class_recall"] = {
        c: stat([f.per_class_recall[c] for f in folds])[0] for c in report.classes
    }
    P, y = report.pooled(folds)
    if P is not None:
        out["ece"] = round(
            calibration.expected_calibration_error(P, y, labels=list(report.classes)), 4
        )
    return out


def score(y_true, y_pred, classes: tuple[str, ...]) -> dict:
    """Accuracy, UAR (mean per-class recall), macro-F1, per-class recall, confusion matrix.

    A class absent from ``y_true`` has recall NaN and is left out of UAR and macro-F1.
    """
    y_true, y_pred = np.asarray(y_true, dtype=str), np.asarray(y_pred, dtype=str)
    cm = confusion_matrix(y_true, y_pred, labels=list(classes))
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, np.diag(cm) / support, np.nan)
    present = [c for c, n in zip(classes, support, strict=True) if n > 0]
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "uar": float(np.nanmean(recall)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
        "per_class_recall": {c: float(r) for c, r in zip(classes, recall, strict=True)},
        "confusion": cm,
    }


def splits(
    table: FeatureTable,
    protocol: str,
    *,
    folds: int = 6,
    repeats: int = 5,
    random_state: int = RANDOM_STATE,
    fold_seed: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) pairs for ``protocol``.

    ``fold_seed``: with the speaker protocol, shuffle which speakers share a fold (None: the
    unshuffled GroupKFold assignment). Another assignment of the same data shows how much a
    mean over folds owes to the luck of one assignment.
    """
    n = len(table.labels)
    if protocol == "speaker":
        if any(s is None for s in table.speakers):
            raise DatasetError(
                "speaker-independent evaluation needs a speaker for every file (RAVDESS names "
                "or a manifest 'speaker' column); or use --protocol random"
            )
        n_speakers = len(set(table.speakers))
        if n_speakers < folds:
            raise DatasetError(f"{folds} folds need at least {folds} speakers, have {n_speakers}")
        shuffled = {"shuffle": True, "random_state": fold_seed} if fold_seed is not None else {}
        kfold = GroupKFold(n_splits=folds, **shuffled)
        yield from kfold.split(np.zeros(n), groups=table.speakers)
    elif protocol == "random":
        for r in range(repeats):
            train, test = train_test_split(
                np.arange(n), test_size=0.25, random_state=random_state + r
            )
            yield np.sort(train), np.sort(test)
    else:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")


def evaluate(
    dataset: Dataset,
    *,
    preset: str = "seed-300",
    feature_set: str | FeatureSet | None = None,
    classes: list[str] | tuple[str, ...] | None = None,
    protocol: str = "speaker",
    folds: int = 6,
    repeats: int = 5,
    degrade: str | None = None,
    also_test: list[str] | tuple[str, ...] = (),
    augment: list[str] | tuple[str, ...] = (),
    cache_dir: str | Path | None = None,
    n_jobs: int | None = None,
    random_state: int = RANDOM_STATE,
    fold_seed: int | None = None,
    progress: bool = True,
) -> EvaluationReport:
    """Cross-validate ``preset`` on ``dataset``.

    Args:
        feature_set: name or FeatureSet; None = the preset's own.
        degrade: degradation spec applied to TEST audio only (e.g. ``"telephone"``).
        also_test: more test-audio degradation specs (e.g. ``["telephone", "noise:10"]``),
            scored with the same fold models (``report.conditions``): one training per fold.
        augment: degradation specs; each adds a degraded copy of every TRAINING file.
        folds: k for the speaker protocol. repeats: number of random splits.
        fold_seed: shuffle the speaker-to-fold assignment with this seed (see ``splits``).
        n_jobs: processes for feature extraction and for the folds (None or <= 0: all cores).
    """
    fs = resolve_feature_set(preset, feature_set)
    if classes:
        dataset = dataset.restrict(classes)
    timed = needs_durations(preset)
    kw = {"cache_dir": cache_dir, "n_jobs": n_jobs, "progress": progress, "durations": timed}
    table = featurize(dataset, fs, **kw)
    failed = list(table.failed)
    test_rows, test_seconds = table.X, table.durations
    if degrade:
        degraded = featurize(dataset, fs, transform=degrade, **kw)
        test_rows, keep, lost = _aligned(table, degraded)
        test_seconds = aligned_durations(table, degraded)
        table, test_rows = _take(table, keep), test_rows[keep]
        test_seconds = None if test_seconds is None else test_seconds[keep]
        failed += lost
    copies = [featurize(dataset, fs, transform=spec, **kw) for spec in augment]
    extra = [(*_aligned(table, c), aligned_durations(table, c)) for c in copies]
    tests = {None: (test_rows, np.ones(len(test_rows), dtype=bool), test_seconds)}
    for spec in also_test:
        other = featurize(dataset, fs, transform=spec, **kw)
        rows, has_row, _ = _aligned(table, other)
        tests[spec] = (rows, has_row, aligned_durations(table, other))
    labels = tuple(c for c in dataset.classes if c in set(table.labels))
    plan = list(
        splits(
            table,
            protocol,
            folds=folds,
            repeats=repeats,
            random_state=random_state,
            fold_seed=fold_seed,
        )
    )
    workers = min(len(plan), _workers(n_jobs))
    args = (table, extra, tests, labels, preset, random_state)
    if workers > 1:
        per_fold = Parallel(n_jobs=workers)(
            delayed(_run_fold)(k, train, test, *args) for k, (train, test) in enumerate(plan)
        )
    else:
        per_fold = [_run_fold(k, train, test, *args) for k, (train, test) in enumerate(plan)]
    return EvaluationReport(
        protocol=protocol,
        classes=labels,
        preset=preset,
        feature_set=fs.id,
        n_files=len(table.labels),
        folds=[r[None] for r in per_fold],
        failed=failed,
        degrade=degrade,
        augment=tuple(augment),
        labels=table.labels,
        conditions={spec: [r[spec] for r in per_fold] for spec in also_test},
        fold_seed=fold_seed,
    )


def _workers(n_jobs: int | None) -> int:
    return (os.cpu_count() or 1) if not n_jobs or n_jobs <= 0 else n_jobs


def training_rows(table: FeatureTable, extra: list, train: np.ndarray):
    """(X, y, speakers, sources) of a fold: the ``train`` rows of ``table``, then each copy of
    them in ``extra`` (``_aligned`` tables); ``sources`` holds each row's clean row."""
    X, y, groups = table.X[train], table.labels[train], table.speakers[train]
    sources = np.arange(len(train))
    position = np.full(len(table.labels), -1)
    position[train] = sources
    for rows, has_row, *_ in extra:
        idx = train[has_row[train]]
        X = np.vstack([X, rows[idx]])
        y = np.concatenate([y, table.labels[idx]])
        groups = np.concatenate([groups, table.speakers[idx]])
        sources = np.concatenate([sources, position[idx]])
    return X, y, groups, sources


def training_durations(table: FeatureTable, extra: list, train: np.ndarray):
    """Seconds of audio behind each row of :func:`training_rows` (same order), or None when
    the tables carry no durations; ``extra`` items are ``(rows, has_row, failed, seconds)``."""
    if table.durations is None or any(len(e) < 4 or e[3] is None for e in extra):
        return None
    parts = [table.durations[train]]
    parts += [seconds[train[has_row[train]]] for _, has_row, _, seconds in extra]
    return np.concatenate(parts)


def aligned_durations(base: FeatureTable, other: FeatureTable) -> np.ndarray | None:
    """Durations of ``other`` in ``base`` order (0 where it has no row), or None."""
    if other.durations is None:
        return None
    where = {p: i for i, p in enumerate(other.paths)}
    return np.array([other.durations[where[p]] if p in where else 0.0 for p in base.paths])


def _run_fold(k, train, test, table, extra, tests, labels, preset, random_state) -> dict:
    """Fit one fold (with augmented copies of its training rows) and score every test audio."""
    X_train, y_train, g_train, sources = training_rows(table, extra, train)
    pipeline, _ = fit_pipeline(
        preset,
        X_train,
        y_train,
        groups=g_train,
        sources=sources,
        durations=training_durations(table, extra, train),
        random_state=random_state,
    )
    clf = pipeline.named_steps["clf"]
    # a fold may lack a class (tiny data sets): its column stays 0
    columns = np.array([labels.index(c) for c in clf.classes_])

    def in_label_order(P: np.ndarray) -> np.ndarray:
        full = np.zeros((len(P), len(labels)))
        full[:, columns] = P
        return full

    out = {}
    for cond, (rows, has_row, seconds) in tests.items():
        idx = test[has_row[test]]
        params = clf_predict_params(pipeline, None if seconds is None else seconds[idx])
        proba = in_label_order(pipeline.predict_proba(rows[idx], **params))
        raw = None
        if hasattr(clf, "estimator_"):  # a calibration wrapper: keep what it started from
            raw = in_label_order(clf.estimator_.predict_proba(pipeline[:-1].transform(rows[idx])))
        s = score(table.labels[idx], np.asarray(labels)[proba.argmax(axis=1)], labels)
        out[cond] = FoldResult(
            fold=k,
            n_train=len(y_train),
            n_test=len(idx),
            accuracy=s["accuracy"],
            uar=s["uar"],
            macro_f1=s["macro_f1"],
            per_class_recall=s["per_class_recall"],
            confusion=s["confusion"],
            test_speakers=sorted({str(x) for x in table.speakers[idx] if x}),
            loss_curve=(loss_curves(clf) or [[]])[0] if cond is None else [],
            test_index=idx,
            proba=proba,
            raw_proba=raw,
        )
    return out


def _aligned(base: FeatureTable, other: FeatureTable):
    """Rows of ``other`` in ``base`` order: (rows, has_row mask, failures of other)."""
    where = {p: i for i, p in enumerate(other.paths)}
    has_row = np.array([p in where for p in base.paths], dtype=bool)
    rows = np.zeros_like(base.X)
    for i, p in enumerate(base.paths):
        if p in where:
            rows[i] = other.X[where[p]]
    return rows, has_row, other.failed


def _take(table: FeatureTable, keep: np.ndarray) -> FeatureTable:
    return FeatureTable(
        X=table.X[keep],
        labels=table.labels[keep],
        speakers=table.speakers[keep],
        paths=[p for p, k in zip(table.paths, keep, strict=True) if k],
        failed=table.failed,
        durations=None if table.durations is None else table.durations[keep],
    )
