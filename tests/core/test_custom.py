"""Custom models on tiny synthetic voices (pitch tells the label; numbers are meaningless)."""

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from core.artifacts import load_model
from core.cli import cli
from core.custom import check_name, fit_recipe, train_custom
from core.custom_data import Clip, as_clips, featurize_clips, read_clips_manifest
from core.custom_split import holdout_split
from core.errors import DatasetError
from core.features import get_feature_set
from core.presets import DEFAULT_RECIPE

SR = 16000
#: Labels the default model partly shares (calm, angry) with one it lacks (frustrated).
PITCH = {"calm": 110.0, "frustrated": 190.0, "angry": 320.0}
FAST = "emo-mlp5"


def _voice(f0: float, seconds: float, rng) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    pitch = f0 * (1 + 0.03 * np.sin(2 * np.pi * 4 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(np.pi * t / seconds))
    return (0.3 * y + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """10 one-second clips per label from 4 speakers (files)."""
    folder, rng, out = tmp_path_factory.mktemp("clips"), np.random.default_rng(0), []
    for label, f0 in PITCH.items():
        for i in range(10):
            speaker = f"spk{i % 4}"
            path = folder / f"{label}_{i}.wav"
            sf.write(path, _voice(f0 * (0.9 + 0.05 * (i % 4)), 1.0, rng), SR)
            out.append((path, label, speaker))
    return out


@pytest.fixture(scope="module")
def spans(tmp_path_factory):
    """Per label, 3 files of 3 one-second voices: 9 span clips per label, no speakers."""
    folder, rng, out = tmp_path_factory.mktemp("spans"), np.random.default_rng(1), []
    for label, f0 in {"low": 110.0, "high": 300.0}.items():
        for j in range(3):
            path = folder / f"{label}_{j}.wav"
            sf.write(path, np.concatenate([_voice(f0, 1.0, rng) for _ in range(3)]), SR)
            out += [
                {"path": path, "label": label, "start_s": s, "end_s": s + 1.0} for s in (0, 1, 2)
            ]
    return out


@pytest.fixture(scope="module")
def speaker_run(clips, cache, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    result = train_custom(
        clips, name="mine", recipe=FAST, models_dir=models, cache_dir=cache, n_jobs=1, seed=0
    )
    return result, models


def test_speaker_holdout_card_and_artifact(speaker_run, clips):
    result, models = speaker_run
    m = result.metrics
    assert m["held_out_by"] == "speaker" and m["classes"] == ["calm", "angry", "frustrated"]
    train_speakers = {s for _, _, s in clips} - set(m["test_speakers"])
    assert m["test_speakers"] and train_speakers
    assert np.asarray(m["confusion_matrix"]).sum() == m["n_test"]
    assert [p["clips_per_class"] for p in m["learning_curve"]][0] == 5
    assert m["learning_curve"][-1]["all"]
    comp = m["default_comparison"]
    assert comp["comparable"] and comp["shared_labels"] == ["calm", "angry"]
    assert {"uar", "accuracy"} <= set(comp["default"]) and {"uar"} <= set(comp["custom"])
    card = result.card_path.read_text()
    for text in (
        "held out by speaker",
        "| true \\ predicted | calm",
        "## Learning curve",
        "## The default model on the same clips",
        "confusion.png",
    ):
        assert text in card
    assert all(p.is_file() for p in result.plots)
    model = load_model(models / "mine.skops")
    assert model.labels == ("calm", "angry", "frustrated")
    assert model.metadata["metrics"]["uar"] == m["uar"] and model.metadata["custom"]
    X, ok, _ = featurize_clips(as_clips(clips[:2]), model.feature_set)
    assert ok.all() and model.predict(X)[0] in model.labels
    json.dumps(result.to_dict())


def test_spans_without_speakers_held_out_by_file(spans, cache, tmp_path):
    result = train_custom(
        spans, name="spans", recipe=FAST, models_dir=tmp_path, cache_dir=cache, n_jobs=1
    )
    m = result.metrics
    assert m["held_out_by"] == "file" and "held out by file" in result.card_path.read_text()
    meta = load_model(tmp_path / "spans").metadata
    assert meta["training"]["n_spans"] == 18 and meta["training"]["n_failed"] == 0
    assert not m["default_comparison"]["comparable"]
    assert "Not comparable" in result.card_path.read_text()


def test_split_keeps_files_and_speakers_apart(clips, spans):
    split = holdout_split(as_clips(clips), 0.25, seed=3)
    speaker = [c[2] for c in clips]
    assert {speaker[i] for i in split.train}.isdisjoint(speaker[i] for i in split.test)
    split = holdout_split(as_clips(spans), 0.25, seed=3)
    path = [str(s["path"]) for s in spans]
    assert split.by == "file"
    assert {path[i] for i in split.train}.isdisjoint(path[i] for i in split.test)


def test_one_speaker_label_falls_back_to_file(clips):
    one = [(p, lab, "solo" if lab == "angry" else s) for p, lab, s in clips]
    split = holdout_split(as_clips(one), 0.25)
    assert split.by == "file" and "angry" in split.note


def test_refuses_too_few_clips(clips, tmp_path):
    few = [c for c in clips if c[1] != "angry"] + [c for c in clips if c[1] == "angry"][:3]
    with pytest.raises(DatasetError, match=r"angry 3; every label needs at least 8"):
        train_custom(few, name="few", recipe=FAST, models_dir=tmp_path)


def test_names_are_checked(speaker_run, tmp_path):
    _, models = speaker_run
    for bad in ("../x", "default", "a b", ""):
        with pytest.raises(DatasetError, match="bad model name"):
            check_name(bad, tmp_path)
    with pytest.raises(DatasetError, match="exists"):
        check_name("mine", models)
    check_name("mine", models, overwrite=True)


def test_spans_are_cut_from_the_file(spans, tmp_path):
    fs = get_feature_set("emo")
    X, ok, failed = featurize_clips(as_clips(spans[:3]), fs, cache_dir=tmp_path)
    assert ok.all() and not failed and not np.allclose(X[0], X[1])
    again, _, _ = featurize_clips(as_clips(spans[:3]), fs, cache_dir=tmp_path)  # from the cache
    np.testing.assert_array_equal(X, again)
    whole, ok, _ = featurize_clips([Clip(spans[0]["path"], "low")], fs)
    assert ok.all() and not np.allclose(whole[0], X[0])
    bad = as_clips([{"path": spans[0]["path"], "label": "low", "start_s": 9, "end_s": 10}])
    _, ok, failed = featurize_clips(bad, fs)
    assert not ok.any() and "zero_duration" in failed[0][1]
    with pytest.raises(DatasetError, match="bad span"):
        as_clips([(spans[0]["path"], "low", None, 2.0, 1.0)])


def test_default_recipe_fits_as_one_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, get_feature_set("emo").dim)).astype(np.float32)
    y = np.repeat(["a", "b"], 20)
    pipeline, _ = fit_recipe(DEFAULT_RECIPE, X + (y == "a")[:, None], y)
    assert list(pipeline.classes_) == ["a", "b"]


def test_cli_train_manifest(clips, cache, tmp_path):
    manifest = tmp_path / "labels.csv"
    rows = ["path,label,speaker,start,end"] + [f"{p},{lab},{s},," for p, lab, s in clips]
    manifest.write_text("\n".join(rows) + "\n")
    assert len(read_clips_manifest(manifest)) == len(clips)
    args = ["train", "--manifest", str(manifest), "--name", "cli", "--out", str(tmp_path / "m"),
            "--preset", FAST, "--cache-dir", str(cache), "--jobs", "1", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "held out by speaker" in result.stdout and "learning curve" in result.stdout
    assert (tmp_path / "m" / "cli.md").is_file()
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "exists" in result.output
    result = CliRunner().invoke(cli, [*args, "--overwrite", "--augment", "telephone"])
    assert result.exit_code == 2 and "not used by custom training" in result.output


def test_refuses_when_most_clips_fail(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio " * 10)
    samples = [(bad, label, None) for label in ("a", "b") for _ in range(8)]
    with pytest.raises(DatasetError, match="16 of 16 clips could not be used"):
        train_custom(samples, name="x", recipe=FAST, models_dir=tmp_path)
