"""Feature sets: named, versioned, pure functions from a 16 kHz mono signal to a vector.

>>> fs = get_feature_set("seed180")
>>> fs.id, fs.dim
('seed180@1', 180)
"""

from __future__ import annotations

from core.errors import FeatureSetError
from core.features.base import FeatureSet
from core.features.emo import EMO, EMO_HIGHPASS
from core.features.seed import SEED180
from core.features.whisper import WHISPER_EMO, WHISPER_TINY

__all__ = ["FeatureSet", "feature_sets", "get_feature_set"]

_ALL: tuple[FeatureSet, ...] = (SEED180, EMO, EMO_HIGHPASS, WHISPER_TINY, WHISPER_EMO)


def feature_sets() -> list[FeatureSet]:
    """Every available feature set (each name's versions, oldest first)."""
    return list(_ALL)


def get_feature_set(name: str, version: int | None = None) -> FeatureSet:
    """The feature set ``name`` at ``version``, or its latest version when ``version`` is None.

    Raises:
        FeatureSetError: no such name, or no such version of it.
    """
    matches = [fs for fs in _ALL if fs.name == name]
    if not matches:
        known = ", ".join(sorted({fs.name for fs in _ALL}))
        raise FeatureSetError(f"unknown feature set {name!r} (known: {known})")
    if version is None:
        return max(matches, key=lambda fs: fs.version)
    for fs in matches:
        if fs.version == version:
            return fs
    versions = ", ".join(str(fs.version) for fs in matches)
    raise FeatureSetError(f"feature set {name!r} has no version {version} (versions: {versions})")
