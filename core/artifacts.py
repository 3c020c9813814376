"""Model artifacts: ``<name>.skops`` (the fitted pipeline) + ``<name>.json`` (metadata).

Loading is safe by construction: the ``.skops`` file must match the sha256 recorded in the
``.json``; the metadata must name a feature set this installation has and the scikit-learn
major.minor that is installed; and the dump may hold only types from an explicit list.
Nothing is unpickled: skops rebuilds known types only.
"""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import UTC, datetime
from pathlib import Path

import librosa
import numpy as np
import sklearn
import skops
import skops.io as sio
import soundfile
import soxr
from threadpoolctl import threadpool_info

from core.errors import FeatureSetError, ModelIntegrityError, ModelMismatchError, ModelNotFoundError
from core.features import FeatureSet, get_feature_set
from core.model import EmotionModel
from core.ood import DistanceScorer
from core.presets import PRESETS

#: Metadata format tag written to every ``.json``.
FORMAT = "aer-model/1"

#: Types skops does not trust by default that AER's presets need (fully qualified names).
#: scikit-learn estimators, numpy arrays and builtins are trusted by skops itself.
BASE_TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.tree._tree.Tree",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.utils._bunch.Bunch",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "core.calibration.SigmoidCalibratedClassifier",
    "core.calibration.TemperatureScaledClassifier",
)


def trusted_types() -> frozenset[str]:
    """Every type a model artifact may hold beyond skops' defaults."""
    extra = (t for p in PRESETS.values() for t in p.trusted_types)
    return frozenset(BASE_TRUSTED_TYPES).union(extra)


def library_versions() -> dict[str, str]:
    """Versions recorded in artifact metadata (scikit-learn's is checked on loading).

    Besides the Python packages: the libsndfile and soxr that decode, code and resample the
    training copies, and the BLAS kernels that fitted the model. A retrain on another machine
    can differ by a point of UAR when these differ (another CPU picks other BLAS kernels).
    """
    blas = sorted(
        {
            f"{lib['internal_api']} {lib['version']} ({lib.get('architecture', '?')})"
            for lib in threadpool_info()
            if lib["user_api"] == "blas"
        }
    )
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "librosa": librosa.__version__,
        "skops": skops.__version__,
        "libsndfile": soundfile.__libsndfile_version__,
        "soxr": soxr.__version__,
        "blas": ", ".join(blas) or "none found",
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def artifact_paths(path: str | Path) -> tuple[Path, Path]:
    """(``.skops``, ``.json``) for an artifact given by either file or by its stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".skops", ".json") else path
    return stem.with_name(stem.name + ".skops"), stem.with_name(stem.name + ".json")


def save_model(model: EmotionModel, path: str | Path) -> Path:
    """Write ``model`` as ``<name>.skops`` + ``<name>.json``.

    Args:
        model: a fitted model.
        path: a folder (files are named after ``model.name``) or a ``.skops`` file path.

    Returns:
        Path of the ``.skops`` file.
    """
    path = Path(path)
    if path.suffix != ".skops":
        path.mkdir(parents=True, exist_ok=True)
        path = path / f"{model.name}.skops"
    skops_path, json_path = artifact_paths(path)
    # With a distance scorer the file holds {"pipeline": ..., "ood": {name: array}}.
    payload = model.pipeline if model.ood is None else {
        "pipeline": model.pipeline, "ood": model.ood.state()
    }  # fmt: skip
    sio.dump(payload, skops_path)
    fs = model.feature_set
    meta = {k: v for k, v in model.metadata.items() if k not in ("format", "skops_sha256")}
    meta.update(
        {
            "format": FORMAT,
            "name": model.name,
            "version": model.version,
            "labels": list(model.labels),
            "feature_set": {
                "id": fs.id,
                "name": fs.name,
                "version": fs.version,
                "dim": fs.dim,
                "sample_rate": fs.sample_rate,
                "min_duration_s": fs.min_duration_s,
            },
            "sample_rate": fs.sample_rate,
            "libraries": library_versions(),
            "created": meta.get("created") or datetime.now(UTC).isoformat(timespec="seconds"),
            "skops_sha256": _sha256(skops_path),
        }
    )
    json_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return skops_path


def read_metadata(path: str | Path) -> dict:
    """The metadata of an artifact (no integrity check)."""
    _, json_path = artifact_paths(path)
    try:
        meta = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise ModelIntegrityError(f"model metadata missing: {json_path.name}") from None
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else exc  # strerror: without the path
        raise ModelIntegrityError(f"model metadata unreadable: {json_path.name}: {why}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelIntegrityError(f"not an AER model metadata file ({FORMAT}): {json_path.name}")
    return meta


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(str(version).split(".")[:2])


def _check_compatible(meta: dict, where: Path):
    """Return the feature set the artifact needs; ModelMismatchError if unavailable."""
    trained = meta.get("libraries", {}).get("scikit-learn", "?")
    if _major_minor(trained) != _major_minor(sklearn.__version__):
        raise ModelMismatchError(
            f"{where.name} was saved with scikit-learn {trained}; this installation has "
            f"{sklearn.__version__} (major.minor must match): retrain or install {trained}"
        )
    fs_meta = meta.get("feature_set", {})
    try:
        name, version = fs_meta["name"], int(fs_meta["version"])
    except (KeyError, TypeError, ValueError):
        raise ModelIntegrityError(f"{where.name}: metadata lacks a feature set") from None
    try:
        fs = get_feature_set(name, version)
    except FeatureSetError as exc:
        raise ModelMismatchError(
            f"{where.name} needs feature set {name}@{version}, which this installation "
            f"does not have ({exc})"
        ) from None
    if fs.dim != fs_meta.get("dim", fs.dim):
        raise ModelMismatchError(
            f"{where.name}: feature set {fs.id} has dim {fs.dim}, not {fs_meta.get('dim')}"
        )
    return fs


def verify_artifact(path: str | Path) -> tuple[dict, bytes, FeatureSet]:
    """Every check :func:`load_model` makes, without building the model: the sha256, the
    feature set and scikit-learn version, the trusted types. Messages name files, not folders.

    Returns:
        The metadata, the ``.skops`` bytes and the feature set.

    Raises:
        ModelNotFoundError: no ``.skops`` file there.
        ModelIntegrityError: checksum mismatch, bad metadata, or a type outside the trusted list.
        ModelMismatchError: feature set or scikit-learn version not available here.
    """
    skops_path, _ = artifact_paths(path)
    if not skops_path.is_file():
        raise ModelNotFoundError(f"model file not found: {skops_path.name}")
    meta = read_metadata(skops_path)
    data = skops_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("skops_sha256"):
        raise ModelIntegrityError(f"{skops_path.name} does not match its recorded sha256")
    feature_set = _check_compatible(meta, skops_path)
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises many kinds on a damaged file
        raise ModelIntegrityError(
            f"{skops_path.name} cannot be read: {type(exc).__name__}"
        ) from None
    refused = sorted(set(untrusted) - trusted_types())
    if refused:
        raise ModelIntegrityError(f"{skops_path.name} holds untrusted types: {', '.join(refused)}")
    return meta, data, feature_set


def load_model(path: str | Path) -> EmotionModel:
    """Load and verify an artifact (``.skops``, ``.json`` or their common stem).

    Raises:
        ModelNotFoundError: no ``.skops`` file there.
        ModelIntegrityError: checksum mismatch, bad metadata, or a type outside the trusted list.
        ModelMismatchError: feature set or scikit-learn version not available here.
    """
    meta, data, feature_set = verify_artifact(path)
    skops_path, _ = artifact_paths(path)
    pipeline = sio.loads(data, trusted=sorted(trusted_types()))
    try:
        ood = None
        if isinstance(pipeline, dict):
            pipeline, ood = pipeline["pipeline"], DistanceScorer.from_state(pipeline["ood"])
        return EmotionModel(
            pipeline=pipeline,
            ood=ood,
            labels=meta["labels"],
            feature_set=feature_set,
            name=meta["name"],
            version=meta["version"],
            metadata=meta,
        )
    except (KeyError, AttributeError, ValueError) as exc:
        raise ModelIntegrityError(
            f"{skops_path.name}: pipeline and metadata disagree: {exc}"
        ) from None
