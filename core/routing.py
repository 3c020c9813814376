"""Two models behind one: telephone-band audio to a model trained on it, the rest to another.

A model trained on wideband speech loses about 7 UAR points on telephone audio, and one model
trained on both kinds gives up wideband accuracy for every telephone point it gains. The router
keeps them apart: each feature row goes to the model for its bandwidth, which
:func:`core.features.emo.narrowband_rows` reads off the ``emo`` vector itself (no second pass
over the audio). Training splits its rows by the same rule, so telephone copies in the
training set (``--augment telephone``, ``speed:0.9+telephone``...) train the telephone model.
"""

from __future__ import annotations

import inspect

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from core.features.emo import narrowband_rows


def group_fit_params(pipeline, groups) -> dict:
    """``fit`` keywords passing ``groups`` to a pipeline's ``clf`` step, if its ``fit`` takes
    them (calibrated presets group their inner folds by speaker); else none."""
    clf = pipeline.named_steps["clf"]
    if groups is None or "groups" not in inspect.signature(clf.fit).parameters:
        return {}
    return {"clf__groups": groups}


class BandwidthRouter(ClassifierMixin, BaseEstimator):
    """Send ``emo`` rows of narrowband (telephone) audio to ``narrow``, the others to ``wide``.

    Args:
        wide: unfitted pipeline (final step ``clf``) for wideband rows.
        narrow: unfitted pipeline for narrowband rows.
    """

    def __init__(self, wide, narrow) -> None:
        self.wide = wide
        self.narrow = narrow

    def fit(self, X, y, groups=None) -> BandwidthRouter:
        """Fit ``wide`` on the wideband rows and ``narrow`` on the narrowband rows.

        Raises:
            ValueError: the rows are all of one bandwidth, or the two sides know different
                classes.
        """
        X, y = np.asarray(X), np.asarray(y)
        is_narrow = narrowband_rows(X)
        if is_narrow.all() or not is_narrow.any():
            kind = "narrowband" if is_narrow.all() else "wideband"
            raise ValueError(
                f"every training row is {kind}: a bandwidth router needs both kinds "
                "(add telephone copies, e.g. --augment telephone)"
            )
        fitted = []
        for template, rows in ((self.wide, ~is_narrow), (self.narrow, is_narrow)):
            model = clone(template)
            part = None if groups is None else np.asarray(groups)[rows]
            model.fit(X[rows], y[rows], **group_fit_params(model, part))
            fitted.append(model)
        self.wide_, self.narrow_ = fitted
        if list(self.wide_.classes_) != list(self.narrow_.classes_):
            raise ValueError(
                "the wideband and narrowband training rows hold different classes: "
                f"{list(self.wide_.classes_)} vs {list(self.narrow_.classes_)}"
            )
        self.classes_ = self.wide_.classes_
        return self

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
