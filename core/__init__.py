"""AER core: audio in, emotion out. No web, queue or database code lives here.

Public names are re-exported flat (``from core import predict_file, ModelRegistry``).
They are imported lazily on first use, so ``import core.errors`` stays cheap for the service.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "core.errors": (
        "AERError", "AudioError", "EmptyFileError", "NotAudioError", "CorruptAudioError",
        "UnsupportedCodecError", "ZeroDurationError", "TooShortError", "TooLongError",
        "SilentAudioError", "NonFiniteAudioError", "FeatureSetError", "DatasetError",
        "ModelError", "ModelNotFoundError", "ModelMismatchError", "ModelIntegrityError",
        "EncoderUnavailableError",
    ),
    "core.audio": (
        "TARGET_SR", "AUDIO_EXTENSIONS", "AudioInfo", "probe", "load", "iter_blocks",
        "check_signal", "sniff_container",
    ),
    "core.features": ("FeatureSet", "get_feature_set", "feature_sets"),
    "core.degrade": ("parse_degradation", "telephone", "add_noise"),
    "core.segments": ("Segment", "detect_speech", "fixed_windows"),
    "core.timeline": ("summarize",),
    "core.analyze": ("analyze_file",),
    "core.datasets": (
        "EMOTIONS", "Dataset", "Sample", "RavdessName", "parse_ravdess_name", "read_dataset",
        "read_ravdess", "read_folder", "read_manifest",
    ),
    "core.cache": ("Extraction", "extract_features", "file_sha256"),
    "core.presets": ("Preset", "PRESETS", "get_preset", "build_pipeline"),
    "core.model": ("EmotionModel",),
    "core.artifacts": ("save_model", "load_model", "read_metadata"),
    "core.registry": ("ModelRegistry", "DEFAULT_MODELS_DIR"),
    "core.training": ("train_model", "featurize", "fit_pipeline", "FeatureTable"),
    "core.evaluation": (
        "evaluate", "EvaluationReport", "FoldResult", "score",
    ),
    "core.plots": ("plot_confusion", "plot_loss_curves", "plot_reliability", "plot_coverage"),
    "core.predict": ("FilePrediction", "SegmentPrediction", "predict_file", "predict_files"),
}  # fmt: skip
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first access (PEP 562)."""
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'core' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
