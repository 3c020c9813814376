"""The held-out split of a custom model: by speaker when every clip has one, else by file.

Spans of one file always fall on the same side (a file is the smallest group), so a held-out
score never credits the model for having heard another part of the same recording.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from core.custom_data import Clip
from core.errors import DatasetError

#: Fewest clips per class: enough for 5 to train on and 2 to test on after a 25 % hold-out.
MIN_CLIPS_PER_CLASS = 8
#: Shuffles tried to find a split with every class on both sides.
_ATTEMPTS = 30


@dataclass(frozen=True)
class Split:
    """Row indices of the training and held-out parts, and how the split was grouped."""

    train: np.ndarray  # shape (n_train,), int
    test: np.ndarray  # shape (n_test,), int
    by: str  # "speaker" or "file"
    note: str = ""  # why a speaker split was not possible, when it was asked for


def check_counts(labels, minimum: int = MIN_CLIPS_PER_CLASS) -> None:
    """DatasetError unless there are two classes with ``minimum`` clips each or more."""
    counts = Counter(labels)
    if len(counts) < 2:
        raise DatasetError(f"a model needs at least two labels, got {sorted(counts) or 'none'}")
    short = {c: n for c, n in sorted(counts.items()) if n < minimum}
    if short:
        listed = ", ".join(f"{c} {n}" for c, n in short.items())
        raise DatasetError(
            f"too few labelled clips: {listed}; every label needs at least {minimum} "
            "(20-40 per label make a useful model)"
        )


def _groups(clips: list[Clip], by: str) -> np.ndarray:
    return np.array([c.speaker if by == "speaker" else str(c.path) for c in clips], dtype=object)


def _try_split(labels: np.ndarray, groups: np.ndarray, holdout: float, seed: int):
    n_groups = len(set(groups))
    n_splits = min(max(2, round(1 / holdout)), n_groups)
    if n_splits < 2:
        return None
    for attempt in range(_ATTEMPTS):
        kfold = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + attempt)
        for train, test in kfold.split(np.zeros(len(labels)), labels, groups):
            if set(labels[train]) == set(labels) == set(labels[test]):
                return np.sort(train), np.sort(test)
    return None


def holdout_split(clips: list[Clip], holdout: float = 0.25, seed: int = 0) -> Split:
    """Hold out about ``holdout`` of the clips, every label on both sides.

    By speaker (no speaker on both sides) when every clip has a speaker and every label has
    clips of at least two speakers; otherwise by file, and ``note`` says why.

    Raises:
        DatasetError: too few clips per label (see :func:`check_counts`), or no split puts
            every label on both sides.
    """
    if not 0 < holdout < 1:
        raise DatasetError(f"holdout must be a fraction between 0 and 1, got {holdout}")
    labels = np.array([c.label for c in clips], dtype=object)
    check_counts(labels)
    note = ""
    if all(c.speaker for c in clips):
        groups = _groups(clips, "speaker")
        one_speaker = sorted(c for c in set(labels) if len(set(groups[labels == c])) < 2)
        found = None if one_speaker else _try_split(labels, groups, holdout, seed)
        if found is not None:
            return Split(*found, by="speaker")
        note = (
            f"label(s) {', '.join(one_speaker)} have clips of one speaker only"
            if one_speaker
            else "no speaker split puts every label on both sides"
        ) + ": held out by file instead, so speakers may be on both sides"
    found = _try_split(labels, _groups(clips, "file"), holdout, seed)
    if found is None:
        raise DatasetError(
            "cannot hold out clips of every label: each label needs clips from several files"
        )
    return Split(*found, by="file", note=note)
