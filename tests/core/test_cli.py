"""The train / evaluate / predict commands (click's CliRunner, real models and files)."""

import json

import pytest
from click.testing import CliRunner

from core.cli import cli
from core.samples import demo_folder

FIXTURES = demo_folder()
CLIPS = sorted(FIXTURES.glob("*.flac"))
PREDICTION_KEYS = {"path", "label", "confidence", "probabilities", "duration_s", "error"}


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def bad_file(tmp_path):
    path = tmp_path / "bad.wav"
    path.write_text("this is not audio " * 10)
    return path


def _lines(result):
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_predict_json_one_line_per_file(runner, bad_file):
    result = runner.invoke(cli, ["predict", "--json", str(CLIPS[0]), str(bad_file), str(CLIPS[1])])
    assert result.exit_code == 0, result.output
    lines = _lines(result)
    assert [d["path"] for d in lines] == [str(CLIPS[0]), str(bad_file), str(CLIPS[1])]
    assert all(PREDICTION_KEYS <= set(d) for d in lines)
    good, bad = lines[0], lines[1]
    assert good["error"] is None and good["label"] in good["probabilities"]
    assert sum(good["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert bad["label"] is None and bad["error"] and bad["error_code"] == "not_audio"


def test_predict_exit_code_nonzero_only_if_all_fail(runner, bad_file, tmp_path):
    result = runner.invoke(cli, ["predict", "--json", str(bad_file), str(tmp_path / "nope.wav")])
    assert result.exit_code == 1
    assert [d["error_code"] for d in _lines(result)] == ["not_audio", "unreadable_file"]


def test_predict_table(runner, bad_file):
    result = runner.invoke(cli, ["predict", "--model", "seed4", str(CLIPS[4]), str(bad_file)])
    assert result.exit_code == 0, result.output
    header, good, bad = result.stdout.splitlines()
    assert header.split() == ["file", "label", "conf", "duration", "error"]
    assert good.startswith(str(CLIPS[4])) and "not_audio" in bad


def test_predict_unknown_model(runner):
    result = runner.invoke(cli, ["predict", "--model", "nope", str(CLIPS[0])])
    assert result.exit_code != 0 and "no model 'nope'" in result.output


def test_train_then_evaluate_then_predict(runner, tmp_path):
    models, cache = tmp_path / "models", tmp_path / "cache"
    common = ["--data", str(FIXTURES), "--cache-dir", str(cache), "--jobs", "1", "--quiet"]
    result = runner.invoke(
        cli,
        ["train", *common, "--name", "fx", "--classes", "calm,happy,fearful,disgust",
         "--folds", "2", "--out", str(models), "--set-default", "--also-test", "gain:-12"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "gain:-12: accuracy" in result.stdout and "ECE" in result.stdout
    assert "skipped 1 file" in result.stderr  # the fixtures' README.md
    meta = json.loads((models / "fx.json").read_text())
    assert meta["labels"] == ["calm", "happy", "fearful", "disgust"]
    assert meta["metrics"]["protocol"] == "speaker" and meta["metrics"]["n_folds"] == 2
    assert (models / "default.txt").read_text().strip() == "fx"
    assert set(meta["metrics"]["conditions"]) == {"gain:-12"}
    threshold = meta["suggested_uncertain_below"]  # None when no threshold reaches 0.75
    assert threshold is None or 0.0 <= threshold <= 1.0

    result = runner.invoke(
        cli, ["evaluate", *common, "--folds", "4", "--json", "--plots", str(tmp_path / "p")]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    keys = {"accuracy", "uar", "macro_f1", "per_class_recall", "n_files", "protocol", "classes"}
    assert keys <= set(summary) and {"accuracy_std", "uar_std"} <= set(summary)
    assert summary["n_files"] == 16 and len(summary["classes"]) == 8
    for png in ("confusion", "loss", "reliability", "coverage"):
        assert (tmp_path / "p" / f"{png}.png").is_file()
    assert {"ece", "ece_noise_floor", "coverage_curve", "reliability_curve"} <= set(summary)

    result = runner.invoke(cli, ["predict", "--models-dir", str(models), str(CLIPS[2])])
    assert result.exit_code == 0 and "model fx" in result.stderr


def test_train_and_evaluate_usage_errors(runner, tmp_path):
    result = runner.invoke(cli, ["train", "--name", "x"])
    assert result.exit_code == 2 and "--data" in result.output
    result = runner.invoke(cli, ["evaluate", "--data", str(FIXTURES), "--degrade", "reverb"])
    assert result.exit_code == 2 and "unknown degradation" in result.output
    result = runner.invoke(
        cli,
        ["evaluate", "--data", str(FIXTURES), "--classes", "bored", "--cache-dir", str(tmp_path)],
    )
    assert result.exit_code == 1 and "not in the data" in result.output
