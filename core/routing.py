"""Two models behind one: telephone-band audio to a model trained on it, the rest to another.

A model trained on wideband speech loses about 7 UAR points on telephone audio, and one model
trained on both kinds gives up wideband accuracy for every telephone point it gains. The router
keeps them apart: each feature row goes to the model for its bandwidth, which
:func:`core.features.emo.narrowband_rows` reads off the ``emo`` vector itself (no second pass
over the audio). Training splits its rows by the same rule, so telephone copies in the
training set (``--augment telephone``, ``speed:0.9+telephone``...) train the telephone model.

With a ``teacher``, the telephone model is also distilled from the wideband audio: each
telephone copy learns, besides its label, what a wideband teacher (fitted on other speakers)
hears in the clean clip the copy came from (:mod:`core.distillation`).
"""

from __future__ import annotations

import inspect

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from core.distillation import teacher_probabilities
from core.features.emo import narrowband_rows


def clf_fit_params(pipeline, **params) -> dict:
    """``fit`` keywords passing each of ``params`` that is not None to a pipeline's ``clf``
    step, if its ``fit`` takes it (e.g. ``groups``: calibrated presets group their inner folds
    by speaker; ``sources``: a distilling router finds each copy's clean clip). Only keywords
    the signature names count: a ``**fit_params`` catch-all does not, so a keyword that must
    arrive (the router's soft targets) is passed directly, where a ``fit`` that lacks it fails."""
    accepted = inspect.signature(pipeline.named_steps["clf"].fit).parameters
    return {f"clf__{k}": v for k, v in params.items() if v is not None and k in accepted}


def clf_predict_params(pipeline, durations: np.ndarray | list[float] | None = None) -> dict:
    """``predict_proba`` keywords for a pipeline: ``durations`` (seconds per row) when it is
    given and the ``clf`` step's ``predict_proba`` takes it (duration-dependent calibration),
    else none."""
    clf = getattr(pipeline, "named_steps", {}).get("clf")
    if durations is None or clf is None:
        return {}
    accepted = inspect.signature(clf.predict_proba).parameters
    return {"durations": np.asarray(durations, dtype=np.float64)} if "durations" in accepted else {}


class BandwidthRouter(ClassifierMixin, BaseEstimator):
    """Send ``emo`` rows of narrowband (telephone) audio to ``narrow``, the others to ``wide``.

    Args:
        wide: unfitted pipeline (final step ``clf``) for wideband rows.
        narrow: unfitted pipeline for narrowband rows; with a ``teacher``, its ``clf`` step's
            ``fit`` must take ``soft_targets`` (e.g. a :class:`~core.distillation.
            SoftTargetClassifier` inside the calibration wrapper).
        teacher: None, or an unfitted pipeline for the wideband rows whose out-of-fold
            probabilities of each clean clip become the soft targets of the narrowband rows
            made from it. Not kept after fitting.
        teacher_folds: speaker folds of the teacher.
        teacher_views: False: the teacher reads each clean clip; True: the mean of what it
            reads in the clip and in each wideband copy of it (speed, noise...), a steadier
            target than one reading.
    """

    def __init__(
        self, wide, narrow, teacher=None, teacher_folds: int = 4, teacher_views: bool = False
    ) -> None:
        self.wide = wide
        self.narrow = narrow
        self.teacher = teacher
        self.teacher_folds = teacher_folds
        self.teacher_views = teacher_views

    def fit(self, X, y, groups=None, sources=None) -> BandwidthRouter:
        """Fit ``wide`` on the wideband rows and ``narrow`` on the narrowband rows.

        Args:
            groups: speaker of each row (n,), for the inner folds.
            sources: for distillation, the index of the row holding the clean recording each
                row was made from (n,): its own index for clean rows, -1 where unknown (that
                row learns from its label alone).

        Raises:
            ValueError: the rows are all of one bandwidth, the two sides know different
                classes, or there is a teacher but no ``sources``.
        """
        X, y = np.asarray(X), np.asarray(y)
        is_narrow = narrowband_rows(X)
        if is_narrow.all() or not is_narrow.any():
            kind = "narrowband" if is_narrow.all() else "wideband"
            raise ValueError(
                f"every training row is {kind}: a bandwidth router needs both kinds "
                "(add telephone copies, e.g. --augment telephone)"
            )
        soft = None
        if self.teacher is not None:
            if sources is None:
                raise ValueError("a router with a teacher needs the sources of its rows")
            soft = self._soft_targets(X, y, is_narrow, groups, np.asarray(sources))
        fitted = []
        for template, rows, extra in (
            (self.wide, ~is_narrow, {}),
            # passed as is, not through clf_fit_params: a calibration wrapper takes it in its
            # **fit_params, and a narrow model that cannot take it must fail, not ignore it
            (self.narrow, is_narrow, {} if soft is None else {"clf__soft_targets": soft}),
        ):
            model = clone(template)
            part = None if groups is None else np.asarray(groups)[rows]
            model.fit(X[rows], y[rows], **clf_fit_params(model, groups=part), **extra)
            fitted.append(model)
        self.wide_, self.narrow_ = fitted
        if list(self.wide_.classes_) != list(self.narrow_.classes_):
            raise ValueError(
                "the wideband and narrowband training rows hold different classes: "
                f"{list(self.wide_.classes_)} vs {list(self.narrow_.classes_)}"
            )
        self.classes_ = self.wide_.classes_
        return self

    def _soft_targets(self, X, y, is_narrow, groups, sources) -> np.ndarray:
        """Teacher probabilities (n narrowband rows, classes) of each narrowband row's clean
        wideband clip (with ``teacher_views``, of the clip and its wideband copies); one-hot
        labels for rows without one."""
        n = len(y)
        clean = np.flatnonzero((sources == np.arange(n)) & ~is_narrow)
        # speakers when known, else each clip is its own group (its copies carry its index)
        row_groups = np.asarray(groups) if groups is not None else sources
        teacher_row = np.full(n + 1, -1)  # row -> its row of proba; index -1 (unknown) too
        teacher_row[clean] = np.arange(len(clean))
        view_of = None
        if self.teacher_views:
            view_of = np.where(is_narrow, -1, teacher_row[sources])
        proba = teacher_probabilities(
            self.teacher, X, y, row_groups, ~is_narrow, clean, self.teacher_folds, view_of
        )
        classes = np.unique(y[is_narrow])
        if list(classes) != list(np.unique(y)):
            raise ValueError("the narrowband training rows lack some classes")
        of_narrow = teacher_row[sources[is_narrow]]
        soft = np.eye(len(classes))[np.searchsorted(classes, y[is_narrow])]
        soft[of_narrow >= 0] = proba[of_narrow[of_narrow >= 0]]
        return soft

    def routes(self, X) -> np.ndarray:
        """True for each row that goes to the narrowband model [shape=(n,)]."""
        return narrowband_rows(np.asarray(X))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n, n_classes) from each row's model, ``classes_`` order."""
        X = np.asarray(X)
        is_narrow = self.routes(X)
        proba = np.empty((len(X), len(self.classes_)))
        for model, rows in ((self.wide_, ~is_narrow), (self.narrow_, is_narrow)):
            if rows.any():
                proba[rows] = model.predict_proba(X[rows])
        return proba

    def predict(self, X) -> np.ndarray:
        """Most probable class per row."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def fitted_pipelines(self) -> list:
        """The two fitted pipelines, wideband first."""
        return [self.wide_, self.narrow_]
