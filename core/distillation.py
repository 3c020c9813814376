"""Knowledge distillation: learn from a teacher's probabilities as well as from the labels.

A model of telephone audio learns better when, besides each copy's label, it is told what a
wideband model hears in the *clean* clip the copy came from (the clean audio is privileged
information: available in training, not at prediction time). Two pieces:

* :func:`teacher_probabilities`: out-of-fold probabilities of a teacher for the clean rows,
  each from a teacher fitted on other speakers only (the teacher must not have seen a
  clip's speaker, or its targets are overconfident); optionally the mean over each clip's
  views (its wideband copies).
* :class:`SoftTargetClassifier`: fits any classifier that takes ``sample_weight`` on the
  mixture ``label_share * one-hot(label) + (1 - label_share) * teacher``, as weighted label
  copies of each row (the weighted cross-entropy of the copies is the cross-entropy against
  the mixture).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import GroupKFold
from sklearn.utils.validation import check_is_fitted


def teacher_probabilities(
    teacher,
    X: np.ndarray,
    y: np.ndarray,
    row_groups: np.ndarray,
    fit_rows: np.ndarray,
    clean_rows: np.ndarray,
    n_splits: int = 4,
    view_of: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold teacher probabilities (len(clean_rows), classes) of the rows ``clean_rows``.

    The clean rows are split into ``n_splits`` GroupKFold folds by ``row_groups`` (speakers);
    for each, a clone of ``teacher`` is fitted on the rows in ``fit_rows`` (boolean, n) whose
    group is outside the fold and predicts the fold. Columns follow ``np.unique(y)``.

    ``view_of`` (n,), optional: for each row, the position in ``clean_rows`` of the clip it is
    a view of (-1: none), e.g. a clean row and its wideband copies. A clip's probabilities are
    then the teacher's mean over all its views (:func:`teacher_view_probabilities`), instead
    of its clean row's alone.

    Raises:
        ValueError: the clean rows hold fewer than 2 groups, or a clip has no view.
    """
    if view_of is None:
        view_of = np.full(len(X), -1)
        view_of[clean_rows] = np.arange(len(clean_rows))
    elif np.setdiff1d(np.arange(len(clean_rows)), view_of).size:
        raise ValueError("every clean row needs at least one view (itself)")
    per_row = teacher_view_probabilities(
        teacher, X, y, row_groups, fit_rows, clean_rows, view_of, n_splits
    )
    return mean_over_views(per_row, view_of, len(clean_rows))


def teacher_view_probabilities(
    teacher,
    X: np.ndarray,
    y: np.ndarray,
    row_groups: np.ndarray,
    fit_rows: np.ndarray,
    clean_rows: np.ndarray,
    view_of: np.ndarray,
    n_splits: int = 4,
) -> np.ndarray:
    """Out-of-fold teacher probabilities (n, classes) of every row that is a view of a clip
    (``view_of`` >= 0; the other rows get zeros), folds and fits as in
    :func:`teacher_probabilities`: each row is predicted by the teacher of the fold holding
    its clip, so copies must share their clip's group.

    Raises:
        ValueError: the clean rows hold fewer than 2 groups.
    """
    classes = np.unique(y)
    groups = row_groups[clean_rows]
    n_splits = min(n_splits, len(np.unique(groups)))
    if n_splits < 2:
        raise ValueError("distillation needs clean rows of at least 2 speakers")
    per_row = np.zeros((len(X), len(classes)))
    for inner, held in GroupKFold(n_splits).split(clean_rows, groups=groups):
        rows = fit_rows & np.isin(row_groups, groups[inner])
        model = clone(teacher).fit(X[rows], y[rows])
        views = np.flatnonzero(np.isin(view_of, held))
        # a class no inner speaker has (tiny data sets) keeps probability 0
        cols = np.searchsorted(classes, model.classes_)
        per_row[np.ix_(views, cols)] = model.predict_proba(X[views])
    return per_row


def mean_over_views(per_row: np.ndarray, view_of: np.ndarray, n_clips: int) -> np.ndarray:
    """Mean (n_clips, classes) of the rows of ``per_row`` that are views of each clip."""
    views = np.flatnonzero(view_of >= 0)
    sums = np.zeros((n_clips, per_row.shape[1]))
    np.add.at(sums, view_of[views], per_row[views])
    return sums / np.bincount(view_of[views], minlength=n_clips)[:, None]


class SoftTargetClassifier(ClassifierMixin, BaseEstimator):
    """``estimator`` trained on a mixture of labels and soft targets; predicts as it does.

    Args:
        estimator: classifier whose ``fit`` takes ``sample_weight`` (e.g. a soft
            ``VotingClassifier`` of MLPs).
        label_share: weight of the label in the target; the rest goes to the soft targets.
        min_share: target classes below this share are dropped (fewer label copies).

    Attributes:
        estimator_: the fitted clone. classes_: its classes.
    """

    def __init__(self, estimator, *, label_share: float = 0.8, min_share: float = 0.05) -> None:
        self.estimator = estimator
        self.label_share = label_share
        self.min_share = min_share

    def fit(self, X, y, soft_targets=None) -> SoftTargetClassifier:
        """Fit on X (n, d), y (n,) and ``soft_targets`` (n, classes in ``np.unique(y)``
        order); without soft targets, on the labels alone."""
        X, y = np.asarray(X), np.asarray(y)
        weights = {}
        if soft_targets is not None:
            X, y, w = soft_target_rows(X, y, soft_targets, self.label_share, self.min_share)
            weights = {"sample_weight": w}
        self.estimator_ = clone(self.estimator).fit(X, y, **weights)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n, n_classes) of the fitted estimator."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """Most probable class per row."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def soft_target_rows(
    X: np.ndarray, y: np.ndarray, soft_targets, label_share: float, min_share: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, labels and weights whose weighted cross-entropy is the cross-entropy against
    ``label_share * one-hot(y) + (1 - label_share) * soft_targets``.

    Each row is repeated once per target class of at least ``min_share`` (the target is
    renormalised without the others), weighted by its share. The weights have mean 1, so an
    MLP's weight decay, divided by each batch's weight sum, acts as it does with plain labels.
    """
    if not 0.0 <= label_share <= 1.0:
        raise ValueError(f"label_share must be in [0, 1], got {label_share}")
    classes = np.unique(y)
    target = (1.0 - label_share) * np.asarray(soft_targets, dtype=np.float64)
    if target.shape != (len(y), len(classes)):
        raise ValueError(f"soft_targets must be (n, {len(classes)}), got {target.shape}")
    target[np.arange(len(y)), np.searchsorted(classes, y)] += label_share
    target[target < min_share] = 0.0
    target /= target.sum(axis=1, keepdims=True)
    row, k = np.nonzero(target)
    return X[row], classes[k], target[row, k] * (len(row) / len(y))
