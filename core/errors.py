"""The one error tree of AER's core library.

Every error a user can cause derives from :class:`AERError`. Subclasses also derive from the
built-in exception they refine, so callers may catch either (``except ValueError`` works too).
Messages are one line, written for the person who submitted the file.
"""

from __future__ import annotations


class AERError(Exception):
    """Root of every error raised on purpose by AER."""

    #: Short machine-readable code, stable across versions (used by the API and CSV exports).
    code: str = "aer_error"


# --- audio -------------------------------------------------------------------------------------


class AudioError(AERError, ValueError):
    """A file could not be used as audio input."""

    code = "audio_error"


class UnreadableFileError(AudioError, OSError):
    """The path does not exist, is a folder, or cannot be opened."""

    code = "unreadable_file"


class EmptyFileError(AudioError):
    """The file has zero bytes."""

    code = "empty_file"


class NotAudioError(AudioError):
    """The bytes are not a recognised audio container."""

    code = "not_audio"


class CorruptAudioError(AudioError):
    """The container was recognised but the data is truncated or damaged."""

    code = "corrupt_audio"


class UnsupportedCodecError(AudioError):
    """The container is audio, but its codec cannot be decoded here."""

    code = "unsupported_codec"


class ZeroDurationError(AudioError):
    """The file holds no samples."""

    code = "zero_duration"


class TooShortError(AudioError):
    """The audio is shorter than the model needs."""

    code = "too_short"


class TooLongError(AudioError):
    """The audio is longer than the configured maximum."""

    code = "too_long"


class SilentAudioError(AudioError):
    """Every sample is (near) zero: there is nothing to classify."""

    code = "silent_audio"


class NonFiniteAudioError(AudioError):
    """The signal holds NaN or infinite samples."""

    code = "non_finite_audio"


# --- features, data, models --------------------------------------------------------------------


class FeatureSetError(AERError, KeyError):
    """An unknown feature set name or version was asked for."""

    code = "unknown_feature_set"

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DatasetError(AERError, ValueError):
    """A dataset folder or manifest cannot be read."""

    code = "dataset_error"


class ModelError(AERError, RuntimeError):
    """A model artifact cannot be used."""

    code = "model_error"


class ModelNotFoundError(ModelError, LookupError):
    """No model of that name exists in the registry."""

    code = "model_not_found"


class ModelMismatchError(ModelError):
    """The artifact needs a feature set or library version this installation does not have."""

    code = "model_mismatch"


class ModelIntegrityError(ModelError):
    """The artifact does not match its recorded checksum, or holds untrusted types."""

    code = "model_integrity"


class EncoderUnavailableError(ModelError):
    """A pretrained encoder a feature set needs is not installed, or its weights were altered."""

    code = "encoder_unavailable"
