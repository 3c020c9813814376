"""Probability calibration: ECE, reliability and coverage curves, temperature and sigmoid maps.

All metrics are top-label: a prediction's *confidence* is its largest probability and it is
*correct* when that column is the true class. ``probabilities`` are always shape (n, k), one
column per class; ``y_true`` is shape (n,) of column indices, or of class names when
``labels`` (the class of each column, in order) is given.

Calibration maps are learned on out-of-fold predictions of the training rows only, with inner
folds grouped by speaker when ``groups`` are given:

* :class:`TemperatureScaledClassifier`: ``softmax(log(p) / T)``, one parameter; the argmax
  (hence accuracy) never changes.
* :class:`SigmoidCalibratedClassifier`: one Platt sigmoid per class, then renormalised.
* :class:`DurationTemperatureClassifier`: ``softmax(log(p) / T(d))`` with a temperature that
  grows for short audio, ``T(d) = T0 * (1 + a / d)`` (``d``: seconds of audio the row came from,
  clamped to the durations seen in fitting); the argmax never changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, log_expit, logsumexp, softmax
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


def _bin_sums(conf: np.ndarray, correct: np.ndarray, n_bins: int):
    """Per-bin (count, sum of confidence, number correct) over equal-width bins."""
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    sum_conf = np.bincount(bins, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(bins, weights=correct.astype(float), minlength=n_bins)
    return count, sum_conf, sum_acc


def reliability_curve(probabilities, y_true, *, labels: Sequence | None = None, n_bins=15) -> dict:
    """Per-bin mean confidence, accuracy and count over equal-width confidence bins.

    Bin ``b`` holds confidences in ``(b / n_bins, (b + 1) / n_bins]`` (the first bin also 0).

    Returns:
        JSON-safe dict: ``n_bins``, ``bin_edges`` (n_bins + 1), ``confidence``, ``accuracy``
        (None for empty bins), ``count`` (ints), ``n``, and ``ece``.
    """
    conf, correct = _top_label(probabilities, y_true, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    count, sum_conf, sum_acc = _bin_sums(conf, correct, n_bins)
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


def ece_noise_floor(
    probabilities, *, n_bins: int = 15, n_draws: int = 200, random_state: int = 0
) -> dict:
    """ECE that a perfectly calibrated model with these confidences would still show.

    Each draw marks row ``i`` correct with probability equal to its confidence; ECE is then
    pure sampling noise (it shrinks roughly as 1 / sqrt(n)). Compare a measured ECE with it.

    Returns:
        ``{"mean", "p05", "p95"}`` of the simulated ECEs.
    """
    conf = np.asarray(probabilities, dtype=np.float64).max(axis=1)
    rng = np.random.default_rng(random_state)
    draws = []
    for _ in range(n_draws):
        _, sum_conf, sum_acc = _bin_sums(conf, rng.uniform(size=conf.size) < conf, n_bins)
        draws.append(np.abs(sum_acc - sum_conf).sum() / conf.size)
    p05, p95 = np.percentile(draws, [5, 95])
    return {"mean": float(np.mean(draws)), "p05": float(p05), "p95": float(p95)}


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


def _out_of_fold(estimator, X, y, groups, cv, fit_params=None) -> tuple[np.ndarray, np.ndarray]:
    """(out-of-fold probabilities (n, k), y as indices of the sorted classes); per-row
    ``fit_params`` are split with the rows."""
    y = np.asarray(y)
    oof = cross_val_predict(
        clone(estimator),
        X,
        y,
        groups=groups,
        cv=_splitter(cv, groups),
        method="predict_proba",
        params=fit_params,
    )
    return oof, np.searchsorted(np.unique(y), y)  # columns follow the sorted classes


def fit_temperature_grouped(
    estimator, X, y, groups, n_splits: int = 4, *, bounds=TEMPERATURE_BOUNDS
) -> float:
    """Temperature for ``estimator`` learned on GroupKFold out-of-fold predictions.

    Pass only training rows: test speakers must not take part.

    Args:
        estimator: unfitted classifier with ``predict_proba`` (cloned; not modified).
        X: features (n, d). y: labels (n,). groups: speaker per row (n,).
    """
    oof, y_idx = _out_of_fold(estimator, X, y, groups, n_splits)
    return TemperatureScaler(bounds=bounds).fit(oof, y_idx).temperature_


def _platt(f: np.ndarray, is_class: np.ndarray) -> tuple[float, float]:
    """(a, b) of ``sigmoid(a * f + b)`` by Platt's method (smoothed targets, max likelihood)."""
    n_pos = float(is_class.sum())
    n_neg = is_class.size - n_pos
    t = np.where(is_class, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(w):
        z = w[0] * f + w[1]
        dz = expit(z) - t
        value = -np.sum(t * log_expit(z) + (1 - t) * log_expit(-z))
        return value, np.array([np.dot(dz, f), dz.sum()])

    w0 = np.array([1.0, np.log((n_pos + 1) / (n_neg + 1))])
    w = minimize(loss, w0, jac=True, method="L-BFGS-B").x
    return float(w[0]), float(w[1])


class _OutOfFoldCalibrated(ClassifierMixin, BaseEstimator):
    """Base: fit ``estimator`` on all rows and a calibration map on out-of-fold predictions.

    Subclasses set ``_fit_map(oof, y_idx)`` (learned attributes) and ``_map(proba)``.
    """

    def fit(self, X, y, groups=None, **fit_params):
        """Fit on X (n, d) and y (n,); ``groups`` (n,) are the speakers for the inner folds.

        ``fit_params`` go to the estimator's ``fit`` (per-row arrays, e.g. ``soft_targets``,
        split with the inner folds); the map is always learned against the labels ``y``.
        """
        if self._needs_oof():
            self._fit_map(*_out_of_fold(self.estimator, X, y, groups, self.cv, fit_params))
        else:
            self._fit_map(None, None)
        self.estimator_ = clone(self.estimator).fit(X, y, **fit_params)
        self.classes_ = self.estimator_.classes_
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        return self

    def _needs_oof(self) -> bool:
        return True

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated class probabilities (n, n_classes), columns in ``classes_`` order."""
        check_is_fitted(self, "estimator_")
        return self._map(self.estimator_.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """Most probable class per row, by the calibrated probabilities."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class TemperatureScaledClassifier(_OutOfFoldCalibrated):
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

    def _needs_oof(self) -> bool:
        return self.temperature is None

    def _fit_map(self, oof, y_idx) -> None:
        if oof is None:
            self.temperature_ = float(self.temperature)
        else:
            self.temperature_ = TemperatureScaler(bounds=self.bounds).fit(oof, y_idx).temperature_

    def _map(self, proba: np.ndarray) -> np.ndarray:
        return apply_temperature(proba, self.temperature_)


class SigmoidCalibratedClassifier(_OutOfFoldCalibrated):
    """A classifier with per-class Platt (sigmoid) calibration learned out of fold.

    Each class column gets ``sigmoid(a_c * p_c + b_c)`` fitted one-versus-rest on out-of-fold
    probabilities (as ``sklearn.calibration.CalibratedClassifierCV(method="sigmoid",
    ensemble=False)`` does, but with the inner folds grouped by ``groups``); rows are then
    renormalised. The argmax may differ slightly from the wrapped estimator's.

    Args:
        estimator: classifier with ``predict_proba``.
        cv: number of inner folds (GroupKFold with groups, else StratifiedKFold), or a splitter.

    Attributes:
        estimator_, classes_; slopes_, intercepts_: arrays (n_classes,) of the sigmoids.
    """

    def __init__(self, estimator, *, cv=4) -> None:
        self.estimator = estimator
        self.cv = cv

    def _fit_map(self, oof, y_idx) -> None:
        ab = np.array([_platt(oof[:, c], y_idx == c) for c in range(oof.shape[1])])
        self.slopes_, self.intercepts_ = ab[:, 0], ab[:, 1]

    def _map(self, proba: np.ndarray) -> np.ndarray:
        q = expit(np.asarray(proba, dtype=np.float64) * self.slopes_ + self.intercepts_)
        return q / q.sum(axis=1, keepdims=True)


# --- duration-dependent temperature ----------------------------------------------------------


def duration_temperatures(durations, t0: float, a: float, lo: float, hi: float) -> np.ndarray:
    """``T0 * (1 + a / d)`` per row [shape=(n,)], ``d`` = ``durations`` clamped to [lo, hi]."""
    d = np.clip(np.asarray(durations, dtype=np.float64).reshape(-1), lo, hi)
    return t0 * (1.0 + a / d)


def _nll_rows(logits: np.ndarray, y: np.ndarray, temperatures: np.ndarray) -> float:
    z = logits / temperatures[:, None]
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


class DurationTemperatureScaler(BaseEstimator):
    """Learns ``T(d) = T0 * (1 + a / d)`` (a >= 0) by negative log-likelihood.

    Short inputs carry less evidence than a model's probabilities claim: ``a`` lets the
    temperature grow as the duration ``d`` (seconds) shrinks. Durations are clamped to
    [shortest fitted, ``upper_quantile`` of the fitted durations]: the map never extrapolates,
    and (default: the median) longer audio is never read more sharply than a typical fitted
    row, since more seconds of a whole clip are more silence, not more speech.

    Args:
        bounds: range of ``T0``. max_a: largest ``a``. upper_quantile: the clamp's top, 0-1.

    Attributes:
        t0_, a_: the learned parameters (floats). min_duration_, max_duration_: the clamp.
        default_duration_: median duration of the fitted rows (used when none is given).
    """

    def __init__(
        self, *, bounds=TEMPERATURE_BOUNDS, max_a: float = 50.0, upper_quantile: float = 0.5
    ) -> None:
        self.bounds = bounds
        self.max_a = max_a
        self.upper_quantile = upper_quantile

    def fit(self, X, y, durations) -> DurationTemperatureScaler:
        """Fit on probabilities X (n, k), column indices y (n,) and durations (n,) in seconds."""
        logits = np.log(np.clip(np.asarray(X, dtype=np.float64), EPS, 1.0))
        y = np.asarray(y, dtype=int)
        d = np.asarray(durations, dtype=np.float64).reshape(-1)
        if d.shape != y.shape or not np.all(np.isfinite(d)) or np.any(d <= 0):
            raise ValueError("durations must be positive seconds, one per row")
        lo, hi = float(d.min()), float(np.quantile(d, self.upper_quantile))
        t_start = TemperatureScaler(bounds=self.bounds).fit(X, y).temperature_
        log_bounds = (np.log(self.bounds[0]), np.log(self.bounds[1]))
        result = minimize(
            lambda w: _nll_rows(logits, y, duration_temperatures(d, np.exp(w[0]), w[1], lo, hi)),
            np.array([np.log(t_start), 0.0]),
            bounds=[log_bounds, (0.0, self.max_a)],
            method="L-BFGS-B",
        )
        self.t0_, self.a_ = float(np.exp(result.x[0])), float(result.x[1])
        self.min_duration_, self.max_duration_ = lo, hi
        self.default_duration_ = float(np.median(d))
        self.nll_before_ = _nll_rows(logits, y, np.full(len(y), t_start))
        self.nll_after_ = float(result.fun)
        return self

    def temperatures(self, durations) -> np.ndarray:
        """The temperature of each duration [shape=(n,)]."""
        check_is_fitted(self, "t0_")
        return duration_temperatures(
            durations, self.t0_, self.a_, self.min_duration_, self.max_duration_
        )

    def transform(self, X, durations=None) -> np.ndarray:
        """Calibrated probabilities (n, k) of probabilities X (n, k); durations (n,) seconds,
        None = :attr:`default_duration_` for every row."""
        X = np.asarray(X, dtype=np.float64)
        if durations is None:
            durations = np.full(len(X), self.default_duration_)
        t = self.temperatures(durations)
        if t.shape != (len(X),):
            raise ValueError(f"{t.size} durations for {len(X)} rows")
        return softmax(np.log(np.clip(X, EPS, 1.0)) / t[:, None], axis=1)


class DurationTemperatureClassifier(_OutOfFoldCalibrated):
    """A classifier whose temperature grows for short audio; predictions are unchanged.

    As :class:`TemperatureScaledClassifier`, but the map is a
    :class:`DurationTemperatureScaler` fitted on the inner out-of-fold probabilities together
    with each row's duration (seconds of the audio its features came from: whole clips and
    segment-like crops alike). ``predict_proba(X, durations=...)`` applies the temperature of
    each row's duration; without durations every row counts as the median fitted duration
    (a whole clip for clip-sized training data). In a pipeline, pass
    ``clf__groups=speakers, clf__durations=seconds`` to ``fit`` and ``durations=seconds`` to
    ``predict_proba``.

    Args:
        estimator: classifier with ``predict_proba``.
        cv: number of inner folds (GroupKFold with groups, else StratifiedKFold), or a splitter.

    Attributes:
        estimator_, classes_; scaler_: the fitted :class:`DurationTemperatureScaler`.
    """

    def __init__(self, estimator, *, cv=4) -> None:
        self.estimator = estimator
        self.cv = cv

    def fit(self, X, y, groups=None, durations=None, **fit_params):
        """Fit on X (n, d), y (n,), speakers ``groups`` (n,) and ``durations`` (n,) seconds."""
        if durations is None:
            raise ValueError("DurationTemperatureClassifier needs the durations of the rows")
        self._durations = np.asarray(durations, dtype=np.float64)
        try:
            return super().fit(X, y, groups=groups, **fit_params)
        finally:
            del self._durations

    def _fit_map(self, oof, y_idx) -> None:
        self.scaler_ = DurationTemperatureScaler().fit(oof, y_idx, self._durations)

    def _map(self, proba: np.ndarray, durations=None) -> np.ndarray:
        return self.scaler_.transform(proba, durations)

    def predict_proba(self, X, durations=None) -> np.ndarray:
        """Calibrated probabilities (n, n_classes); ``durations`` (n,) seconds or None."""
        check_is_fitted(self, "estimator_")
        return self._map(self.estimator_.predict_proba(X), durations)

    def predict(self, X, durations=None) -> np.ndarray:
        """Most probable class per row (the duration does not change it)."""
        return self.classes_[np.argmax(self.predict_proba(X, durations), axis=1)]


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
