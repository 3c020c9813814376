"""Artifacts and registry: round trip, and refusal of tampered, mismatched or unsafe files."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import soundfile
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from core.artifacts import artifact_paths, load_model, save_model
from core.datasets import read_dataset
from core.errors import ModelIntegrityError, ModelMismatchError, ModelNotFoundError
from core.registry import ModelRegistry
from core.samples import demo_folder
from core.training import featurize, train_model

FIXTURES = demo_folder()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained on the fixture clips, and their feature rows."""
    cache = tmp_path_factory.mktemp("cache")
    ds = read_dataset(FIXTURES)
    model = train_model(ds, name="tiny", version="t1", cache_dir=cache, n_jobs=1, progress=False)
    X = featurize(ds, model.feature_set, cache_dir=cache, n_jobs=1, progress=False).X
    return model, X


@pytest.fixture
def saved(trained, tmp_path):
    return save_model(trained[0], tmp_path)


def _edit_json(skops_path: Path, edit) -> None:
    _, json_path = artifact_paths(skops_path)
    meta = json.loads(json_path.read_text())
    edit(meta)
    json_path.write_text(json.dumps(meta))


def test_round_trip_gives_identical_probabilities(trained, saved):
    model, X = trained
    assert saved.name == "tiny.skops" and saved.with_suffix(".json").is_file()
    loaded = load_model(saved)
    assert (loaded.name, loaded.version, loaded.labels) == ("tiny", "t1", model.labels)
    assert loaded.feature_set.id == "seed180@1"
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    meta = loaded.metadata
    assert meta["training"]["n_files"] == 16 and meta["training"]["n_speakers"] == 8
    assert set(meta["libraries"]) >= {"scikit-learn", "numpy", "librosa", "skops", "soxr"}
    # what codes the training copies and what fitted the model, to trace a retrain's drift
    assert meta["libraries"]["libsndfile"] == soundfile.__libsndfile_version__
    assert meta["libraries"]["blas"] != "none found"  # numpy has loaded its BLAS
    assert len(meta["skops_sha256"]) == 64 and meta["created"]


def test_a_model_on_an_older_feature_set_version_keeps_loading(tmp_path):
    """emo@2 is the latest emo: a model trained on emo@1 still loads and extracts emo@1."""
    ds = read_dataset(FIXTURES)
    model = train_model(
        ds, name="old", feature_set="emo@1", cache_dir=tmp_path, n_jobs=1, progress=False
    )
    loaded = load_model(save_model(model, tmp_path / "out"))
    assert loaded.feature_set.id == "emo@1"
    X = featurize(ds, loaded.feature_set, cache_dir=tmp_path, n_jobs=1, progress=False).X
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_flipped_byte_is_refused(saved):
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_model(saved)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["feature_set"].update(version=99), "seed180@99"),
        (lambda m: m["feature_set"].update(name="wav2vec", id="wav2vec@1"), "wav2vec"),
        (lambda m: m["libraries"].update({"scikit-learn": "1.2.2"}), "scikit-learn 1.2.2"),
    ],
)
def test_mismatched_metadata_is_refused(saved, edit, message):
    _edit_json(saved, edit)  # the sha256 covers the .skops only, so this passes integrity
    with pytest.raises(ModelMismatchError, match=message):
        load_model(saved)


def test_missing_or_foreign_metadata_is_refused(saved):
    _, json_path = artifact_paths(saved)
    json_path.write_text("{not json")
    with pytest.raises(ModelIntegrityError):
        load_model(saved)
    json_path.unlink()
    with pytest.raises(ModelIntegrityError, match="missing"):
        load_model(saved)


def test_untrusted_types_are_refused(trained, saved):
    model, _ = trained
    sneaky = Pipeline([("f", FunctionTransformer(func=os.getcwd)), ("clf", model.pipeline)])
    sio.dump(sneaky, saved)
    digest = hashlib.sha256(saved.read_bytes()).hexdigest()
    _edit_json(saved, lambda m: m.update(skops_sha256=digest))  # integrity check passes
    with pytest.raises(ModelIntegrityError, match="untrusted types: .*getcwd"):
        load_model(saved)


def test_registry_lists_resolves_and_defaults(trained, saved, tmp_path):
    shutil.copy(saved, tmp_path / "other.skops")
    registry = ModelRegistry(tmp_path)
    assert registry.default_name() is None
    with pytest.raises(ModelNotFoundError, match="no default"):
        registry.resolve()
    registry.set_default("tiny")
    assert registry.resolve() == saved
    assert registry.resolve(str(saved)) == saved  # a path works too
    entries = registry.list()  # other.skops has no .json: not listed
    assert [(e["name"], e["default"], e["labels"]) for e in entries] == [
        ("tiny", True, list(trained[0].labels))
    ]
    assert registry.load().name == "tiny"
    with pytest.raises(ModelNotFoundError, match="known: tiny"):
        registry.resolve("nope")
    with pytest.raises(ModelNotFoundError):
        registry.set_default("nope")
