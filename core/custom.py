"""Custom models from a user's own labels: held-out card, learning curve, default comparison.

:func:`train_custom` is the one entry point (CLI ``aer train --manifest``, Celery tasks). It
featurizes the labelled clips (whole files or spans), holds out a part by speaker or by file,
fits the recipe on the rest and scores it, refits on ``k`` clips per label for a learning
curve, scores the default model on the same held-out clips, then refits on every labelled clip
and saves ``<name>.skops`` + ``<name>.json`` + the card ``<name>.md`` in ``models_dir``.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from core.artifacts import artifact_paths, save_model
from core.calibration import expected_calibration_error
from core.custom_card import write_card
from core.custom_data import Clip, as_clips, featurize_clips
from core.custom_split import Split, check_counts, holdout_split
from core.datasets import EMOTIONS, Dataset, read_ravdess
from core.errors import AERError, DatasetError
from core.evaluation import score
from core.model import EmotionModel
from core.presets import DEFAULT_RECIPE, RANDOM_STATE, build_pipeline
from core.registry import DEFAULT_MODELS_DIR, ModelRegistry
from core.routing import BandwidthRouter, clf_fit_params
from core.training import default_version, resolve_feature_set, slim

#: Clips per label of the learning curve's refits: those up to 3/4 of the training part's
#: smallest label count (a point closer to the whole part adds a fit and little news); the
#: curve ends with the whole training part.
LEARNING_CURVE_KS: tuple[int, ...] = (5, 10, 20, 40, 80, 160)
#: ``progress(stage, done, total)``: stages are features, fit, learning_curve, compare, final.
Progress = Callable[[str, int, int], None]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class CustomResult:
    """What :func:`train_custom` wrote, and the metrics it stored in the artifact's JSON."""

    name: str
    model_path: Path
    card_path: Path
    plots: list[Path] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-safe form (paths as strings), for a task result or an API response."""
        return {
            "name": self.name,
            "model_path": str(self.model_path),
            "card_path": str(self.card_path),
            "plots": [str(p) for p in self.plots],
            "metrics": self.metrics,
        }


def check_name(name: str, models_dir: str | Path, overwrite: bool = False) -> None:
    """DatasetError unless ``name`` is a safe file stem not yet taken (or ``overwrite``)."""
    if not _NAME.fullmatch(name or "") or name == "default" or name.endswith((".skops", ".json")):
        raise DatasetError(
            f"bad model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (not 'default')"
        )
    if not overwrite and any(p.exists() for p in artifact_paths(Path(models_dir) / name)):
        raise DatasetError(f"a model named {name!r} exists already: pick another name")


def ordered_labels(labels: Iterable[str]) -> tuple[str, ...]:
    """Labels present: RAVDESS emotions first in code order, then the others sorted."""
    present = set(labels)
    return tuple([e for e in EMOTIONS if e in present] + sorted(present - set(EMOTIONS)))


def fit_recipe(recipe: str, X: np.ndarray, y, groups=None, seed: int = RANDOM_STATE):
    """Fit preset ``recipe`` on (X, y); returns (pipeline, converged).

    A bandwidth-router preset is fitted as its wideband model alone: the router exists to keep
    RAVDESS's studio and telephone copies apart, while a user's clips are one domain, and a
    router side with a handful of clips could not be fitted. ``groups`` (speakers) group the
    inner calibration folds when there are enough of them, else the folds are stratified.
    """
    pipeline = build_pipeline(recipe, seed)
    if isinstance(pipeline.named_steps["clf"], BandwidthRouter):
        pipeline = clone(pipeline.named_steps["clf"].wide)
    cv = getattr(pipeline.named_steps["clf"], "cv", None)
    if groups is not None and (
        any(g is None for g in groups) or (isinstance(cv, int) and len(set(groups)) < cv)
    ):
        groups = None
    params = clf_fit_params(
        pipeline, groups=None if groups is None else np.asarray(groups, dtype=str)
    )
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="Got `batch_size` less than 1 or larger")
        pipeline.fit(X, np.asarray(y, dtype=str), **params)
    return pipeline, not any(issubclass(x.category, ConvergenceWarning) for x in w)


def _proba(pipeline, X: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """Probabilities (n, len(classes)) in ``classes`` order."""
    columns = [list(map(str, pipeline.classes_)).index(c) for c in classes]
    return pipeline.predict_proba(X)[:, columns]


def heldout_scores(P: np.ndarray, y, classes: tuple[str, ...]) -> dict:
    """JSON-safe accuracy, UAR, macro-F1, per-class recall, confusion matrix and ECE."""
    s = score(y, np.asarray(classes)[P.argmax(axis=1)], classes)
    return {
        "n": len(y),
        "accuracy": round(s["accuracy"], 4),
        "uar": round(s["uar"], 4),
        "macro_f1": round(s["macro_f1"], 4),
        "per_class_recall": {c: round(r, 4) for c, r in s["per_class_recall"].items()},
        "confusion_matrix": s["confusion"].tolist(),
        "ece": round(expected_calibration_error(P, np.asarray(y, dtype=str), labels=classes), 4),
    }


def learning_curve(recipe, train, test, classes, *, extra=None, ks=LEARNING_CURVE_KS, seed=0):
    """Held-out UAR of the recipe refitted on ``k`` clips per label of the training part.

    Args:
        train, test: (X, y, groups) of the training and held-out parts.
        extra: (X, y, groups) added to every fit (RAVDESS), or None.
    Returns:
        One dict per ``k`` up to 3/4 of the smallest label count: clips_per_class, n_train,
        uar, accuracy.
    """
    X, y, g = train
    smallest = min(Counter(y).values())
    rng = np.random.default_rng(seed)
    points = []
    for k in (k for k in ks if k <= 0.75 * smallest):
        idx = np.sort(
            np.concatenate([rng.choice(np.flatnonzero(y == c), k, replace=False) for c in classes])
        )
        Xk, yk, gk = _with_extra((X[idx], y[idx], g[idx]), extra)
        pipeline, _ = fit_recipe(recipe, Xk, yk, gk, seed)
        s = heldout_scores(_proba(pipeline, test[0], classes), test[1], classes)
        points.append(
            {"clips_per_class": k, "n_train": len(idx), "uar": s["uar"], "accuracy": s["accuracy"]}
        )
    return points


def _with_extra(part, extra):
    if extra is None:
        return part
    return (
        np.vstack([part[0], extra[0]]),
        *(np.concatenate([a, b]) for a, b in zip(part[1:], extra[1:], strict=True)),
    )


def compare_with_model(
    base: EmotionModel | None,
    test_clips: list[Clip],
    P_custom: np.ndarray,
    classes: tuple[str, ...],
    *,
    cache_dir=None,
    n_jobs=None,
    reason: str = "",
) -> dict:
    """Another model's (the default's) held-out scores over the labels it shares with ours.

    Both models' argmax is restricted to the shared labels, and only held-out clips of those
    labels count, so the two UARs are over the same clips and the same choices.
    """
    if base is None:
        return {"comparable": False, "reason": reason or "no model to compare with"}
    out = {"model": base.name, "version": base.version}
    shared = tuple(c for c in classes if c in base.labels)
    if not shared:
        return {
            **out,
            "comparable": False,
            "reason": f"{base.name} shares no label with {', '.join(classes)}",
        }
    Xb, ok, _ = featurize_clips(test_clips, base.feature_set, cache_dir=cache_dir, n_jobs=n_jobs)
    y = np.array([c.label for c in test_clips], dtype=object)
    rows = ok & np.isin(y, shared)
    if not rows.any():
        return {**out, "comparable": False, "reason": "no held-out clip of a shared label"}
    P_base = base.predict_proba(Xb[rows[ok]])[:, [base.labels.index(c) for c in shared]]
    P_ours = P_custom[rows][:, [classes.index(c) for c in shared]]
    pick = np.asarray(shared)
    scores = {}
    for who, P in (("default", P_base), ("custom", P_ours)):
        s = score(y[rows], pick[P.argmax(axis=1)], shared)
        scores[who] = {
            "uar": round(s["uar"], 4),
            "accuracy": round(s["accuracy"], 4),
            "per_class_recall": {c: round(r, 4) for c, r in s["per_class_recall"].items()},
        }
    return {
        **out,
        "comparable": True,
        "shared_labels": list(shared),
        "n": int(rows.sum()),
        **scores,
    }


def _load_base(compare_with, models_dir: Path) -> tuple[EmotionModel | None, str]:
    if compare_with is None or isinstance(compare_with, EmotionModel):
        return compare_with, "comparison not asked for"
    for folder in dict.fromkeys([Path(models_dir), DEFAULT_MODELS_DIR]):
        try:
            return ModelRegistry(folder).load(compare_with), ""
        except AERError as exc:
            reason = str(exc)
    return None, reason


def _ravdess_part(folder, classes, fs, cache_dir, n_jobs):
    """(X, y, groups) of the RAVDESS clips whose emotion is one of ``classes``."""
    clips = [c for c in as_clips(read_ravdess(folder)) if c.label in classes]
    if not clips:
        raise DatasetError(f"RAVDESS has none of the labels {', '.join(classes)}")
    X, ok, _ = featurize_clips(clips, fs, cache_dir=cache_dir, n_jobs=n_jobs)
    kept = [c for c, k in zip(clips, ok, strict=True) if k]
    return (
        X,
        np.array([c.label for c in kept], dtype=object),
        np.array([f"ravdess-{c.speaker}" for c in kept], dtype=object),
    )


def train_custom(
    samples: Dataset | Iterable,
    *,
    name: str,
    recipe: str | None = None,
    add_ravdess: str | Path | None = None,
    holdout: float | Iterable = 0.25,
    seed: int = RANDOM_STATE,
    models_dir: str | Path = DEFAULT_MODELS_DIR,
    cache_dir: str | Path | None = None,
    n_jobs: int | None = None,
    compare_with: str | EmotionModel | None = "default",
    version: str | None = None,
    overwrite: bool = False,
    learning_curve_ks: tuple[int, ...] = LEARNING_CURVE_KS,
    progress: Progress | None = None,
) -> CustomResult:
    """Train, score and save a custom model from labelled clips.

    Args:
        samples: a Dataset, or clips as accepted by :func:`core.custom_data.as_clips`
            (``(path, label, speaker_or_None)`` tuples, optionally with ``start_s, end_s``).
        name: model name: the file stem in ``models_dir``; refused if taken unless ``overwrite``.
        recipe: preset name; None = :data:`core.presets.DEFAULT_RECIPE` (the default model's).
        add_ravdess: a RAVDESS folder whose clips of the user's labels join every training
            fit (never the held-out part); None (default) = the user's clips alone.
        holdout: fraction held out (by speaker when every clip has one, else by file), or the
            held-out clips themselves (same forms as ``samples``).
        compare_with: model (name in ``models_dir``, then in the shipped models) scored on the
            same held-out clips; None skips the comparison.
        progress: called as ``progress(stage, done, total)``.

    Returns:
        A :class:`CustomResult`; the metrics are also in the artifact JSON under ``metrics``.

    Raises:
        DatasetError: bad name, too few clips per label, no usable split, unreadable clips.
    """
    models_dir = Path(models_dir)
    check_name(name, models_dir, overwrite)
    recipe = recipe or DEFAULT_RECIPE
    fs = resolve_feature_set(recipe, None)
    report = progress or (lambda stage, done, total: None)
    clips = as_clips(samples)
    given = None if isinstance(holdout, int | float) else as_clips(holdout)
    every = clips + (given or [])
    report("features", 0, len(every))
    X_all, ok, failed = featurize_clips(
        every,
        fs,
        cache_dir=cache_dir,
        n_jobs=n_jobs,
        progress=lambda d, t: report("features", d, t),
    )
    kept = [c for c, k in zip(every, ok, strict=True) if k]
    if failed and len(failed) * 2 > len(every):
        raise DatasetError(
            f"{len(failed)} of {len(every)} clips could not be used, e.g. {failed[0][0]}: "
            f"{failed[0][1]}"
        )
    if given is None:
        split = holdout_split(kept, float(holdout), seed)
    else:
        n_user = int(ok[: len(clips)].sum())
        split = Split(np.arange(n_user), np.arange(n_user, len(kept)), by="given")
        check_counts([kept[i].label for i in split.train], minimum=2)
    y_all = np.array([c.label for c in kept], dtype=object)
    g_all = np.array([c.speaker for c in kept], dtype=object)
    classes = ordered_labels(y_all[split.train])
    if set(y_all[split.test]) - set(classes):
        raise DatasetError("held-out clips have labels the training clips lack")
    extra = _ravdess_part(add_ravdess, classes, fs, cache_dir, n_jobs) if add_ravdess else None
    part = lambda idx: (X_all[idx], y_all[idx], g_all[idx])  # noqa: E731
    train, test = part(split.train), part(split.test)

    report("fit", 0, 1)
    pipeline, _ = fit_recipe(recipe, *_with_extra(train, extra), seed)
    P_test = _proba(pipeline, test[0], classes)
    heldout = heldout_scores(P_test, test[1], classes)
    report("learning_curve", 0, 1)
    curve = learning_curve(
        recipe, train, test, classes, extra=extra, ks=learning_curve_ks, seed=seed
    )
    curve.append(
        {
            "clips_per_class": round(len(split.train) / len(classes), 1),
            "n_train": len(split.train),
            "uar": heldout["uar"],
            "accuracy": heldout["accuracy"],
            "all": True,
        }
    )
    report("compare", 0, 1)
    base, reason = _load_base(compare_with, models_dir)
    test_clips = [kept[i] for i in split.test]
    comparison = compare_with_model(
        base, test_clips, P_test, classes, cache_dir=cache_dir, n_jobs=n_jobs, reason=reason
    )

    report("final", 0, 1)
    final, converged = fit_recipe(recipe, *_with_extra(part(np.arange(len(kept))), extra), seed)
    slim(final)
    counts = Counter(y_all)
    speakers = sorted({s for s in g_all if s})
    metrics = {
        "protocol": f"holdout-{split.by}",
        "held_out_by": split.by,
        "split_note": split.note,
        "n_train": len(split.train),
        "n_test": len(split.test),
        "test_speakers": sorted({str(s) for s in test[2] if s}),
        "classes": list(classes),
        **heldout,
        "learning_curve": curve,
        "default_comparison": comparison,
    }
    metadata = {
        "preset": recipe,
        "custom": True,
        "random_state": seed,
        "training": {
            "source": "custom labels",
            "n_files": len(kept),
            "n_spans": sum(c.is_span for c in kept),
            "class_counts": {c: counts[c] for c in classes},
            "n_speakers": len(speakers),
            "speakers": speakers[:200],
            "n_failed": len(failed),
            "failed": [list(f) for f in failed[:50]],
            "add_ravdess": None
            if extra is None
            else {"folder": str(add_ravdess), "n_clips": len(extra[1])},
            "n_rows": len(kept) + (0 if extra is None else len(extra[1])),
            "converged": converged,
        },
        "metrics": metrics,
    }
    model = EmotionModel(
        pipeline=final,
        labels=classes,
        feature_set=fs,
        name=name,
        version=version or default_version(),
        metadata=metadata,
    )
    model_path = save_model(model, models_dir)
    card_path, plots = write_card(model, models_dir)
    report("final", 1, 1)
    return CustomResult(name, model_path, card_path, plots, metrics)
