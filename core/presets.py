"""Named model recipes: a preset builds an unfitted scikit-learn pipeline.

To add a preset, write a builder ``(random_state) -> Pipeline`` and add a :class:`Preset` to
``_ALL`` below. If its estimators are not in ``core.artifacts.BASE_TRUSTED_TYPES``, list their
fully qualified type names in ``trusted_types`` so saved models of that preset can be loaded.
The final step of every pipeline is named ``"clf"`` and must offer ``predict_proba``; when its
``fit`` takes ``groups`` (the calibrated presets), training passes the speaker of every row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from core.calibration import (
    DurationTemperatureClassifier,
    SigmoidCalibratedClassifier,
    TemperatureScaledClassifier,
)
from core.distillation import SoftTargetClassifier
from core.routing import BandwidthRouter

#: Default seed for every preset, so training is reproducible.
RANDOM_STATE = 42


@dataclass(frozen=True)
class Preset:
    """A named recipe: ``build(random_state)`` returns a fresh unfitted pipeline."""

    name: str
    description: str
    build: Callable[[int], Pipeline]
    trusted_types: tuple[str, ...] = ()
    feature_set: str = "seed180"  # the feature set the recipe was tuned for (CLI default)


def _seed_300_mlp(random_state: int) -> MLPClassifier:
    return MLPClassifier(
        alpha=0.01,
        batch_size=256,
        epsilon=1e-08,
        hidden_layer_sizes=(300,),
        learning_rate="adaptive",
        max_iter=500,
        random_state=random_state,
    )


def _seed_deep_mlp(random_state: int) -> MLPClassifier:
    return MLPClassifier(
        alpha=0.001,
        batch_size=128,
        hidden_layer_sizes=(200, 200, 100, 50),
        learning_rate="adaptive",
        max_iter=500,
        random_state=random_state,
    )


def _mlp5(random_state: int) -> VotingClassifier:
    """Soft vote of 5 MLPs (256 units, alpha 1.0) that differ only in their initial weights."""
    members = [
        (
            f"m{i}",
            MLPClassifier(
                hidden_layer_sizes=(256,), alpha=1.0, max_iter=600, random_state=random_state + i
            ),
        )
        for i in range(5)
    ]
    return VotingClassifier(members, voting="soft")


def _scaled(clf) -> Pipeline:
    return Pipeline([("scaler", StandardScaler()), ("clf", clf)])


def _mlp5_temp(random_state: int) -> Pipeline:
    # The calibrator wraps the whole vote: it maps the probabilities the service reports.
    return _scaled(TemperatureScaledClassifier(_mlp5(random_state), cv=4))


def _kd_mlp5_temp(random_state: int) -> Pipeline:
    # The vote learns 0.8 x label + 0.2 x the teacher; the temperature is fitted on labels.
    vote = SoftTargetClassifier(_mlp5(random_state), label_share=0.8)
    return _scaled(TemperatureScaledClassifier(vote, cv=4))


def _band_kd(random_state: int, teacher_views: bool = False) -> Pipeline:
    router = BandwidthRouter(
        _mlp5_temp(random_state),
        _kd_mlp5_temp(random_state),
        teacher=_scaled(_mlp5(random_state)),
        teacher_views=teacher_views,
    )
    return Pipeline([("clf", router)])


def _lr_temp(random_state: int) -> Pipeline:
    # L2 weight 1 / C = 20 on standardised encoder statistics; lbfgs is deterministic.
    lr = LogisticRegression(C=0.05, max_iter=2000, random_state=random_state)
    return _scaled(TemperatureScaledClassifier(lr, cv=4))


def _lr_dtemp(random_state: int) -> Pipeline:
    # as _lr_temp, with a temperature that grows for short audio (fit and predict take durations)
    lr = LogisticRegression(C=0.05, max_iter=2000, random_state=random_state)
    return _scaled(DurationTemperatureClassifier(lr, cv=4))


_KD_TYPES = (
    "core.calibration.TemperatureScaledClassifier",
    "core.distillation.SoftTargetClassifier",
    "core.routing.BandwidthRouter",
)

_ALL = (
    Preset(
        "seed-300",
        "StandardScaler + MLP (300) as in the seed's first recipe",
        lambda rs: _scaled(_seed_300_mlp(rs)),
    ),
    Preset(
        "seed-deep",
        "StandardScaler + MLP (200, 200, 100, 50) as in the seed's second recipe",
        lambda rs: _scaled(_seed_deep_mlp(rs)),
    ),
    Preset(
        "seed-deep-unscaled",
        "the seed as written: MLP (200, 200, 100, 50) on raw features (reference point only)",
        lambda rs: Pipeline([("clf", _seed_deep_mlp(rs))]),
    ),
    Preset(
        "emo-mlp5",
        "StandardScaler + soft vote of 5 MLPs (256, alpha 1.0), for the emo feature set",
        lambda rs: _scaled(_mlp5(rs)),
        feature_set="emo",
    ),
    Preset(
        "emo-mlp5-cal",
        "emo-mlp5 with per-class sigmoid calibration fitted on speaker-grouped inner "
        "out-of-fold probabilities (4 folds)",
        # The calibrator wraps the whole vote: it maps the probabilities the service reports.
        lambda rs: _scaled(SigmoidCalibratedClassifier(_mlp5(rs), cv=4)),
        trusted_types=("core.calibration.SigmoidCalibratedClassifier",),
        feature_set="emo",
    ),
    Preset(
        "emo-mlp5-temp",
        "emo-mlp5 with temperature scaling fitted on speaker-grouped inner out-of-fold "
        "probabilities (4 folds); predictions unchanged",
        _mlp5_temp,
        trusted_types=("core.calibration.TemperatureScaledClassifier",),
        feature_set="emo",
    ),
    Preset(
        "emo-band-mlp5-temp",
        "two emo-mlp5-temp models behind a bandwidth router: rows of telephone-band audio go "
        "to one trained on the telephone-band training rows, the others to one trained on "
        "the wideband rows",
        lambda rs: Pipeline([("clf", BandwidthRouter(_mlp5_temp(rs), _mlp5_temp(rs)))]),
        trusted_types=(
            "core.calibration.TemperatureScaledClassifier",
            "core.routing.BandwidthRouter",
        ),
        feature_set="emo",
    ),
    Preset(
        "emo-band-kd-mlp5-temp",
        "emo-band-mlp5-temp whose telephone model is distilled: each telephone-band copy "
        "learns 0.8 x its label + 0.2 x what an emo-mlp5 wideband teacher of other speakers "
        "(4 inner speaker folds) says of the clean clip it came from",
        _band_kd,
        trusted_types=_KD_TYPES,
        feature_set="emo",
    ),
    Preset(
        "emo-band-kdv-mlp5-temp",
        "emo-band-kd-mlp5-temp whose teacher reads every wideband view of a clip (the clean "
        "clip and its speed, noise and other wideband copies): the soft target is the mean",
        lambda rs: _band_kd(rs, teacher_views=True),
        trusted_types=_KD_TYPES,
        feature_set="emo",
    ),
    Preset(
        "whisper-lr-temp",
        "StandardScaler + logistic regression (C=0.05) with temperature scaling fitted on "
        "speaker-grouped inner out-of-fold probabilities (4 folds), for whisper-emo",
        _lr_temp,
        trusted_types=("core.calibration.TemperatureScaledClassifier",),
        feature_set="whisper-emo",
    ),
    Preset(
        "whisper-lr-dtemp",
        "whisper-lr-temp with a temperature that grows for short audio, T(d) = T0 * (1 + a / d) "
        "(d: seconds of audio), fitted on the same inner out-of-fold probabilities with each "
        "row's duration (core.calibration.DurationTemperatureClassifier)",
        _lr_dtemp,
        trusted_types=(
            "core.calibration.DurationTemperatureClassifier",
            "core.calibration.DurationTemperatureScaler",
        ),
        feature_set="whisper-emo",
    ),
)

#: Read-only name -> Preset mapping.
PRESETS: MappingProxyType[str, Preset] = MappingProxyType({p.name: p for p in _ALL})


def get_preset(name: str) -> Preset:
    """Return the preset called ``name``; ValueError if unknown."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


def build_pipeline(name: str, random_state: int = RANDOM_STATE) -> Pipeline:
    """A fresh unfitted pipeline for preset ``name``."""
    return get_preset(name).build(random_state)


# --- custom models (core/custom.py) -----------------------------------------------------------

#: The preset the default model was trained with: the recipe of custom models (``aer train
#: --manifest`` without ``--preset``). Repoint it when the default model changes.
DEFAULT_RECIPE = "whisper-lr-temp"
