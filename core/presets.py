"""Named model recipes: a preset builds an unfitted scikit-learn pipeline.

To add a preset, write a builder ``(random_state) -> Pipeline`` and add a :class:`Preset` to
``_ALL`` below. If its estimators are not in ``core.artifacts.BASE_TRUSTED_TYPES``, list their
fully qualified type names in ``trusted_types`` so saved models of that preset can be loaded.
The final step of every pipeline is named ``"clf"`` and must offer ``predict_proba``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

#: Default seed for every preset, so training is reproducible.
RANDOM_STATE = 42


@dataclass(frozen=True)
class Preset:
    """A named recipe: ``build(random_state)`` returns a fresh unfitted pipeline."""

    name: str
    description: str
    build: Callable[[int], Pipeline]
    trusted_types: tuple[str, ...] = ()


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


def _scaled(clf) -> Pipeline:
    return Pipeline([("scaler", StandardScaler()), ("clf", clf)])


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
