"""How far audio lies from a model's training data, and when a result is uncertain.

:class:`DistanceScorer` is fitted on a model's training feature rows (augmented copies
included) and their labels. A row's distance is Mahalanobis, with the within-class covariance,
to the nearest class mean (Lee et al. 2018): in the space of the first ``n_components``
principal axes of the standardised, class-centred rows, plus the energy left outside them
(scaled by its mean variance), as one number per row. To the nearest class, not to the overall
mean: an intense but typical angry clip lies far from the mean of all speech and near its
class; without labels the overall mean is used. Its *score* is the share of training rows
that lie closer: 0.5 is a typical training row, 1.0 farther than every one. Stored as plain
arrays, so an artifact needs no new trusted type.

>>> scorer = DistanceScorer().fit(X_train)  # doctest: +SKIP
>>> ood = float(scorer.score(x)[0])  # doctest: +SKIP
>>> is_uncertain(0.8, ood, uncertain_below=0.5, ood_above=0.99)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

#: Default ``ood_above``: results from audio farther than 99 % of training rows are uncertain.
OOD_ABOVE = 0.99
_STATE_KEYS = (
    "mean", "scale", "components", "variances", "residual_var", "reference", "class_means",
)  # fmt: skip


class DistanceScorer:
    """Distance of feature rows to a training distribution, as a 0..1 percentile.

    Args:
        n_components: principal axes modelled one by one (the rest is pooled).
        n_reference: training distances kept (as quantiles) to turn distances into scores.
        max_rows: rows used for fitting (an even subsample beyond that).
    """

    def __init__(self, n_components: int = 32, n_reference: int = 2001, max_rows: int = 20_000):
        self.n_components = n_components
        self.n_reference = n_reference
        self.max_rows = max_rows

    def fit(self, X: np.ndarray, y=None) -> DistanceScorer:
        """Learn the training distribution from rows ``X`` [shape=(n, dim)] and their labels
        ``y`` [shape=(n,)] (None: one class); returns self."""
        X = np.asarray(X, dtype=np.float64)
        y = np.zeros(len(X), int) if y is None else np.asarray(y)
        if len(X) > self.max_rows:
            keep = np.linspace(0, len(X) - 1, self.max_rows).astype(int)
            X, y = X[keep], y[keep]
        self.mean_ = X.mean(axis=0)
        self.scale_ = np.maximum(X.std(axis=0), 1e-8)
        Z = (X - self.mean_) / self.scale_
        classes, inverse = np.unique(y, return_inverse=True)
        means = np.stack([Z[inverse == c].mean(axis=0) for c in range(len(classes))])
        W = Z - means[inverse]  # class-centred: the within-class spread
        k = min(self.n_components, W.shape[1] - 1, len(W) - 1)
        _, s, vt = np.linalg.svd(W, full_matrices=False)
        var = s**2 / max(len(W) - len(classes), 1)
        self.components_, self.variances_ = vt[:k], np.maximum(var[:k], 1e-12)
        self.residual_var_ = float(max(var[k:].sum() / max(W.shape[1] - k, 1), 1e-12))
        self.class_means_ = means
        d = np.sort(self.distance(X))
        self.reference_ = np.quantile(d, np.linspace(0, 1, self.n_reference))
        return self

    def distance(self, X: np.ndarray) -> np.ndarray:
        """Distance of each row to the nearest class [shape=(n,)]: about 1 for a typical
        training row."""
        Z = (np.atleast_2d(np.asarray(X, dtype=np.float64)) - self.mean_) / self.scale_
        best = np.full(len(Z), np.inf)
        for mu in self.class_means_:
            D = Z - mu
            P = D @ self.components_.T
            inside = (P**2 / self.variances_).sum(axis=1)
            outside = ((D**2).sum(axis=1) - (P**2).sum(axis=1)) / self.residual_var_
            best = np.minimum(best, inside + outside)
        return np.sqrt(np.maximum(best, 0.0) / Z.shape[1])

    def score(self, X: np.ndarray) -> np.ndarray:
        """Share of training rows closer than each row [shape=(n,)], in 0..1."""
        d = self.distance(X)
        ref = self.reference_
        return np.searchsorted(ref, d, side="right").clip(1, len(ref)) / len(ref)

    def state(self) -> dict[str, np.ndarray]:
        """The fitted arrays (for saving in a model artifact)."""
        return {
            "mean": self.mean_, "scale": self.scale_, "components": self.components_,
            "variances": self.variances_, "residual_var": np.array([self.residual_var_]),
            "reference": self.reference_, "class_means": self.class_means_,
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict) -> DistanceScorer:
        """A fitted scorer from :meth:`state`'s arrays."""
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"distance scorer state lacks {', '.join(missing)}")
        scorer = cls(n_components=len(state["components"]), n_reference=len(state["reference"]))
        scorer.mean_, scorer.scale_ = np.asarray(state["mean"]), np.asarray(state["scale"])
        scorer.components_ = np.asarray(state["components"])
        scorer.variances_ = np.asarray(state["variances"])
        scorer.residual_var_ = float(np.asarray(state["residual_var"]).ravel()[0])
        scorer.reference_ = np.asarray(state["reference"])
        scorer.class_means_ = np.asarray(state["class_means"])
        return scorer


def is_uncertain(
    confidence: float | None,
    ood: float | None,
    *,
    uncertain_below: float | None = None,
    ood_above: float | None = None,
) -> bool:
    """Whether a result should be flagged uncertain.

    True when there is no answer (``confidence`` None), when ``confidence`` is below
    ``uncertain_below``, or when the audio's ``ood`` score is above ``ood_above``. A threshold
    of None, or an ``ood`` of None (a model without a distance scorer), never flags.
    """
    if confidence is None:
        return True
    if uncertain_below is not None and confidence < uncertain_below:
        return True
    return ood is not None and ood_above is not None and ood > ood_above
