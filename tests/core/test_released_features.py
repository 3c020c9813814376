"""Released feature versions keep their numbers.

Every feature set is computed on the 16 fixture clips and compared with the values saved in
``tests/fixtures/released_features.npz`` when its version was released. A code change that moves
them by more than float rounding breaks every model trained on that version (for example, a
tuning estimate that flips to the next bin moves ``seed180``'s chroma by about 1e-2): release a
new version instead. Add the values of a new version with
``python tests/core/test_released_features.py``; it never overwrites a saved version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.audio import load
from core.features import feature_sets, get_feature_set
from core.samples import demo_clips

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CLIPS = demo_clips()
SAVED = FIXTURES / "released_features.npz"


def compute(feature_set_id: str) -> np.ndarray:
    """The feature vectors of the fixture clips [shape=(16, dim)]."""
    name, version = feature_set_id.split("@")
    fs = get_feature_set(name, int(version))
    return np.stack([fs(load(clip, sr=fs.sample_rate), fs.sample_rate) for clip in CLIPS])


def saved() -> dict[str, np.ndarray]:
    with np.load(SAVED) as data:
        return {key: data[key] for key in data.files}


def test_every_feature_set_has_saved_values() -> None:
    assert sorted(saved()) == sorted(fs.id for fs in feature_sets())


@pytest.mark.parametrize("feature_set_id", sorted(fs.id for fs in feature_sets()))
def test_released_feature_values_do_not_change(feature_set_id: str) -> None:
    expected = saved()[feature_set_id]
    np.testing.assert_allclose(compute(feature_set_id), expected, rtol=1e-4, atol=1e-6)


if __name__ == "__main__":
    values = saved() if SAVED.exists() else {}
    for fs in feature_sets():
        if fs.id not in values:
            values[fs.id] = compute(fs.id)
            print(f"saved {fs.id}")
    np.savez(SAVED, **values)
