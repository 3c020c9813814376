"""Probability calibration: ECE, reliability and coverage curves, temperature scaling.

All metrics are top-label: a prediction's *confidence* is its largest probability and it is
*correct* when that column is the true class. ``probabilities`` are always shape (n, k), one
column per class; ``y_true`` is shape (n,) of column indices, or of class names when
``labels`` (the class of each column, in order) is given.

Temperature scaling divides log-probabilities by one learned ``T`` and renormalises:
``p_i ** (1 / T) / sum_j p_j ** (1 / T)``. ``T > 1`` softens overconfident models; the argmax
(hence accuracy) never changes. :class:`TemperatureScaledClassifier` learns ``T`` from
out-of-fold predictions on the training data only, grouped by speaker when groups are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_predict
from sklearn.utils.validation import check_is_fitted

#: Probabilities are clipped to at least this before taking logs (as sklearn's log_loss does).
EPS = float(np.finfo(np.float64).eps)
#: Default abstention thresholds of :func:`coverage_curve`: 0.0, 0.05, ..., 0.95.
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(20))
#: Default search range of the temperature.
TEMPERATURE_BOUNDS: tuple[float, float] = (0.01, 100.0)


def _encode(probabilities, y_true, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities as float64 (n, k), y_true as column indices (n,)); ValueError if bad."""
    P = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(y_true)
    if P.ndim != 2 or y.shape != (P.shape[0],) or P.shape[0] == 0:
        raise ValueError(f"need probabilities (n, k) and y_true (n,), got {P.shape} and {y.shape}")
    if labels is not None:
        index = {label: i for i, label in enumerate(labels)}
        if len(index) != P.shape[1]:
            raise ValueError(f"{len(index)} labels for {P.shape[1]} probability columns")
        try:
            y = np.array([index[v] for v in y.tolist()])
        except KeyError as exc:
            raise ValueError(f"label {exc.args[0]!r} is not one of {list(labels)}") from None
    elif not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= P.shape[1]:
        raise ValueError("y_true must be column indices in [0, k), or pass labels=")
    return P, y


def _top_label(probabilities, y_true, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) per row."""
    P, y = _encode(probabilities, y_true, labels)
    return P.max(axis=1), P.argmax(axis=1) == y


def reliability_curve(probabilities, y_true, *, labels: Sequence | None = None, n_bins=15) -> dict:
    """Per-bin mean confidence, accuracy and count over equal-width confidence bins.

    Bin ``b`` holds confidences in ``(b / n_bins, (b + 1) / n_bins]`` (the first bin also 0).

    Returns:
        JSON-safe dict: ``n_bins``, ``bin_edges`` (n_bins + 1), ``confidence``, ``accuracy``
        (None for empty bins), ``count`` (ints), ``n``, and ``ece``.
    """
    conf, correct = _top_label(probabilities, y_true, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    sum_conf = np.bincount(bins, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(bins, weights=correct.astype(float), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, mean_acc = sum_conf / count, sum_acc / count
    return {
        "n_bins": int(n_bins),
        "bin_edges": [round(float(e), 6) for e in edges],
        "confidence": [float(c) if n else None for c, n in zip(mean_conf, count, strict=True)],
        "accuracy": [float(a) if n else None for a, n in zip(mean_acc, count, strict=True)],
        "count": [int(n) for n in count],
        "n": int(conf.size),
        "ece": float(np.abs(sum_acc - sum_conf).sum() / conf.size),
    }


def expected_calibration_error(
    probabilities, y_true, *, labels: Sequence | None = None, n_bins: int = 15
) -> float:
    """Top-label expected calibration error over ``n_bins`` equal-width bins.

    ``sum_b (n_b / n) * |accuracy_b - confidence_b|``: 0 is perfectly calibrated.
    """
    return reliability_curve(probabilities, y_true, labels=labels, n_bins=n_bins)["ece"]


def calibration_metrics(
    probabilities, y_true, *, labels: Sequence | None = None, n_bins: int = 15
) -> dict:
    """JSON-safe summary: ``ece``, ``mce`` (worst bin gap), ``nll``, ``brier``, ``accuracy``,
    ``mean_confidence``."""
    curve = reliability_curve(probabilities, y_true, labels=labels, n_bins=n_bins)
    P, y = _encode(probabilities, y_true, labels)
    rows = np.arange(len(y))
    pairs = zip(curve["accuracy"], curve["confidence"], strict=True)
    return {
        "ece": curve["ece"],
        "mce": float(max((abs(a - c) for a, c in pairs if a is not None), default=0.0)),
        "nll": float(-np.mean(np.log(np.clip(P[rows, y], EPS, 1.0)))),
        "brier": float(np.mean(np.sum((P - np.eye(P.shape[1])[y]) ** 2, axis=1))),
        "accuracy": float(np.mean(P.argmax(axis=1) == y)),
        "mean_confidence": float(P.max(axis=1).mean()),
    }


# --- temperature scaling --------------------------------------------------------------------


def apply_temperature(probabilities, temperature: float) -> np.ndarray:
    """Probabilities (n, k) rescaled by ``temperature``: ``softmax(log(p) / T)``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logp = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), EPS, 1.0))
    return softmax(logp / temperature, axis=1)


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


class TemperatureScaler(BaseEstimator):
    """Learns one temperature that minimises the negative log-likelihood.

    Args:
        inputs: ``"proba"`` (fit/transform take probabilities; ``log(p)`` serves as logits)
            or ``"logits"`` (fit takes logits; transform still takes probabilities).
        bounds: (lowest, highest) temperature searched (log-scale bounded search).

    Attributes:
        temperature_: the learned temperature (float).
    """

    def __init__(self, *, inputs: str = "proba", bounds=TEMPERATURE_BOUNDS) -> None:
        self.inputs = inputs
        self.bounds = bounds

    def fit(self, X, y) -> TemperatureScaler:
        """Fit on X (n, k) probabilities or logits and y (n,) column indices."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=int)
        if self.inputs not in ("proba", "logits"):
            raise ValueError(f"inputs must be 'proba' or 'logits', got {self.inputs!r}")
        logits = np.log(np.clip(X, EPS, 1.0)) if self.inputs == "proba" else X
        lo, hi = np.log(self.bounds[0]), np.log(self.bounds[1])
        result = minimize_scalar(
            lambda s: _nll(logits, y, np.exp(s)),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-5},
        )
        self.temperature_ = float(np.exp(result.x))
        self.nll_before_ = _nll(logits, y, 1.0)
        self.nll_after_ = float(result.fun)
        return self

    def transform(self, X) -> np.ndarray:
        """Calibrated probabilities (n, k) from probabilities X (n, k)."""
        check_is_fitted(self, "temperature_")
        return apply_temperature(X, self.temperature_)


def _splitter(cv, groups):
    if not isinstance(cv, int):
        return cv
    if groups is not None:
        return GroupKFold(n_splits=cv)
    return StratifiedKFold(n_splits=cv, shuffle=True, random_state=0)


def _oof_temperature(estimator, X, y, groups, cv, bounds) -> float:
    """Temperature fitted on out-of-fold probabilities of clones of ``estimator``."""
    y = np.asarray(y)
    oof = cross_val_predict(
        clone(estimator), X, y, groups=groups, cv=_splitter(cv, groups), method="predict_proba"
    )
    columns = np.unique(y)  # cross_val_predict orders columns as the sorted classes
    scaler = TemperatureScaler(bounds=bounds).fit(oof, np.searchsorted(columns, y))
    return scaler.temperature_


def fit_temperature_grouped(
    estimator, X, y, groups, n_splits: int = 4, *, bounds=TEMPERATURE_BOUNDS
) -> float:
    """Temperature for ``estimator`` learned on GroupKFold out-of-fold predictions.

    Pass only training rows: test speakers must not take part.

    Args:
        estimator: unfitted classifier with ``predict_proba`` (cloned; not modified).
        X: features (n, d). y: labels (n,). groups: speaker per row (n,).
    """
    return _oof_temperature(estimator, X, y, groups, n_splits, bounds)


class TemperatureScaledClassifier(ClassifierMixin, BaseEstimator):
    """A classifier whose ``predict_proba`` is temperature scaled; predictions are unchanged.

    ``fit`` fits a clone of ``estimator`` on all rows. When ``temperature`` is None it also
    learns one from out-of-fold probabilities of ``cv`` more clones: GroupKFold when ``groups``
    are given (use speakers), else StratifiedKFold (speakers then leak between inner folds,
    which makes the temperature too low). In a pipeline, pass ``clf__groups=speakers``.

    Args:
        estimator: classifier with ``predict_proba``.
        temperature: fixed temperature, or None to learn it.
        cv: number of inner folds, or a splitter.
        bounds: temperature search range.

    Attributes:
        estimator_: the fitted clone. classes_: its classes. temperature_: float used.
    """

    def __init__(self, estimator, *, temperature=None, cv=4, bounds=TEMPERATURE_BOUNDS) -> None:
        self.estimator = estimator
        self.temperature = temperature
        self.cv = cv
        self.bounds = bounds

    def fit(self, X, y, groups=None) -> TemperatureScaledClassifier:
        """Fit on X (n, d) and y (n,); ``groups`` (n,) are the speakers for the inner folds."""
        if self.temperature is None:
            temperature = _oof_temperature(self.estimator, X, y, groups, self.cv, self.bounds)
        else:
            temperature = float(self.temperature)
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.classes_ = self.estimator_.classes_
        self.temperature_ = float(temperature)
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated class probabilities (n, n_classes), columns in ``classes_`` order."""
        check_is_fitted(self, "temperature_")
        return apply_temperature(self.estimator_.predict_proba(X), self.temperature_)

    def predict(self, X) -> np.ndarray:
        """Most probable class per row (the same as the wrapped estimator's)."""
        check_is_fitted(self, "temperature_")
        return self.classes_[np.argmax(self.estimator_.predict_proba(X), axis=1)]


# --- abstention ------------------------------------------------------------------------------


def coverage_curve(
    probabilities, y_true, *, labels: Sequence | None = None, thresholds=None
) -> list[dict]:
    """Accuracy versus coverage when predictions with confidence < threshold abstain.

    Returns:
        One JSON-safe dict per threshold (default :data:`DEFAULT_THRESHOLDS`): ``threshold``,
        ``coverage`` (share of rows answered), ``n_answered``, ``accuracy`` on those rows
        (None when none is answered).
    """
    conf, correct = _top_label(probabilities, y_true, labels)
    rows = []
    for t in DEFAULT_THRESHOLDS if thresholds is None else thresholds:
        kept = conf >= t
        n = int(kept.sum())
        rows.append(
            {
                "threshold": float(t),
                "coverage": n / conf.size,
                "n_answered": n,
                "accuracy": float(correct[kept].mean()) if n else None,
            }
        )
    return rows


def threshold_for_accuracy(
    probabilities, y_true, target_accuracy: float, *, labels: Sequence | None = None
) -> dict | None:
    """The lowest threshold (hence largest coverage) whose answered rows reach the target.

    Candidate thresholds are the observed confidences. Returns ``{threshold, coverage,
    n_answered, accuracy}``, or None when no threshold reaches ``target_accuracy``.
    """
    conf, correct = _top_label(probabilities, y_true, labels)
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    acc = np.cumsum(correct) / np.arange(1, conf.size + 1)
    last_of_tie = np.append(conf[1:] != conf[:-1], True)  # threshold conf[j] keeps rows 0..j
    ok = np.flatnonzero(last_of_tie & (acc >= target_accuracy))
    if ok.size == 0:
        return None
    j = int(ok[-1])
    return {
        "threshold": float(conf[j]),
        "coverage": (j + 1) / conf.size,
        "n_answered": j + 1,
        "accuracy": float(acc[j]),
    }


# --- plots -----------------------------------------------------------------------------------


def _named(curves, single_key: str) -> dict:
    """A curve, or a {name: curve} mapping, as a {name: curve} dict."""
    if isinstance(curves, Mapping) and single_key in curves:
        return {"model": curves}
    if isinstance(curves, Mapping):
        return dict(curves)
    return {"model": curves}


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def plot_reliability(curves, path: str | Path, *, title: str | None = None) -> Path:
    """Save a reliability diagram as PNG.

    Args:
        curves: one :func:`reliability_curve` result, or ``{name: curve}`` to overlay several
            (e.g. before and after temperature scaling).
    """
    named = _named(curves, "ece")
    fig = _figure((5.0, 5.5))
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for name, c in named.items():
        pts = [(x, y) for x, y in zip(c["confidence"], c["accuracy"], strict=True) if x is not None]
        xs, ys = zip(*pts, strict=True) if pts else ((), ())
        ax.plot(xs, ys, marker="o", markersize=4, label=f"{name} (ECE {c['ece']:.3f})")
        edges = c["bin_edges"]
        hist.stairs(c["count"], edges, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "reliability diagram (top label)", fontsize=9)
    hist.set_xlabel("confidence")
    hist.set_ylabel("count")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_coverage(curves, path: str | Path, *, title: str | None = None) -> Path:
    """Save accuracy versus coverage (thresholds annotated) as PNG.

    Args:
        curves: one :func:`coverage_curve` result, or ``{name: curve}`` to overlay several.
    """
    named = {"model": curves} if isinstance(curves, list) else dict(curves)
    fig = _figure((5.5, 4.0))
    ax = fig.add_subplot()
    for name, rows in named.items():
        rows = [r for r in rows if r["accuracy"] is not None]
        cov = [r["coverage"] for r in rows]
        acc = [r["accuracy"] for r in rows]
        ax.plot(cov, acc, marker="o", markersize=3, label=name)
        for r in rows[:: max(1, len(rows) // 8)]:
            ax.annotate(f"{r['threshold']:.2f}", (r["coverage"], r["accuracy"]), fontsize=6)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("coverage (share answered)")
    ax.set_ylabel("accuracy of answered")
    ax.set_title(title or "accuracy vs coverage (labels: confidence threshold)", fontsize=9)
    if len(named) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)
