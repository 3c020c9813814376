"""A folder of model artifacts, and which one is the default.

The folder holds ``<name>.skops`` + ``<name>.json`` pairs. The default model is named by the
first line of ``default.txt`` in the same folder (a plain text file, so changing the default
is a one-line edit or :meth:`ModelRegistry.set_default`, and never touches an artifact).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from core.artifacts import artifact_paths, load_model, read_metadata, verify_artifact
from core.errors import ModelError, ModelNotFoundError
from core.model import EmotionModel


def _shipped_models() -> Path:
    # A checkout has models/ beside core/; an installed AER has it as the package aer_models.
    checkout = Path(__file__).resolve().parent.parent / "models"
    if checkout.is_dir():
        return checkout
    import aer_models

    return Path(next(iter(aer_models.__path__))).resolve()


#: The models shipped with AER.
DEFAULT_MODELS_DIR = _shipped_models()
#: File in a models folder whose first line names the default model.
DEFAULT_FILE = "default.txt"
#: Verdicts of :func:`artifact_problem` by the identity of an artifact's two files.
_VERDICTS: dict[tuple, str | None] = {}
#: Verdicts kept at most (older ones are dropped first).
MAX_VERDICTS = 256


def artifact_problem(skops_path: Path) -> str | None:
    """Why the artifact cannot be used (every check of loading: sha256, versions, trusted
    types), or None; the message names files, not folders.

    The verdict is cached while neither file changes (path, size and mtime of both), so a
    listing re-hashes only a model whose files were replaced or touched.
    """
    skops_path, json_path = artifact_paths(skops_path)
    try:
        key = tuple(
            (str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in (skops_path, json_path)
        )
    except OSError as exc:
        return f"{skops_path.name}: {exc.strerror}"
    if key not in _VERDICTS:
        try:
            verify_artifact(skops_path)
            verdict = None
        except ModelError as exc:
            verdict = str(exc)
        while len(_VERDICTS) >= MAX_VERDICTS:
            _VERDICTS.pop(next(iter(_VERDICTS)))
        _VERDICTS[key] = verdict
    return _VERDICTS[key]


class ModelRegistry:
    """Models in ``folder`` (then in each ``extra`` folder, e.g. custom models trained by a
    service), looked up by name, ``"default"`` or a path to an artifact. A name found in two
    folders is the first folder's."""

    def __init__(self, folder: str | Path = DEFAULT_MODELS_DIR, *, extra: Iterable = ()) -> None:
        self.folder = Path(folder)
        self.extra = tuple(Path(f) for f in extra)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.folder)!r})"

    @property
    def folders(self) -> tuple[Path, ...]:
        """The folders searched, in order."""
        return (self.folder, *self.extra)

    def default_name(self) -> str | None:
        """Name of the default model, or None when ``default.txt`` is missing or empty."""
        try:
            lines = (self.folder / DEFAULT_FILE).read_text().split()
        except FileNotFoundError:
            return None
        return lines[0] if lines else None

    def set_default(self, name: str) -> None:
        """Make ``name`` (which must exist here) the default model."""
        self.resolve(name)
        (self.folder / DEFAULT_FILE).write_text(name + "\n")

    def list(self) -> list[dict]:
        """One summary dict per model: name, version, labels, feature_set, metrics, path, default,
        ``available`` (it passes every check of loading, see :func:`artifact_problem`) and, when
        not, a ``reason`` that names files but no folders.
        """
        default = self.default_name()
        out, seen = [], set()
        paths = [p for folder in self.folders for p in sorted(folder.glob("*.json"))]
        for json_path in paths:
            skops_path, _ = artifact_paths(json_path)
            if not skops_path.is_file() or json_path.stem in seen:
                continue
            seen.add(json_path.stem)
            entry = {"name": json_path.stem, "path": str(skops_path)}
            try:
                meta = read_metadata(json_path)
            except ModelError as exc:
                default_ = json_path.stem == default
                out.append({**entry, "available": False, "reason": str(exc), "default": default_})
                continue
            problem = artifact_problem(skops_path)
            entry.update(available=problem is None, **({"reason": problem} if problem else {}))
            entry.update(
                name=meta.get("name", json_path.stem),
                version=meta.get("version"),
                labels=meta.get("labels", []),
                feature_set=meta.get("feature_set", {}).get("id"),
                preset=meta.get("preset"),
                metrics=meta.get("metrics", {}),
                created=meta.get("created"),
            )
            entry["default"] = entry["name"] == default
            out.append(entry)
        return out

    def resolve(self, name: str = "default") -> Path:
        """Path of the ``.skops`` file for ``name``, ``"default"``, or an artifact path.

        Raises:
            ModelNotFoundError: nothing of that name (or no default set).
        """
        if name == "default":
            resolved = self.default_name()
            if resolved is None:
                raise ModelNotFoundError(f"no default model set in {DEFAULT_FILE}")
            name = resolved
        as_path = Path(name)
        if as_path.suffix in (".skops", ".json") or len(as_path.parts) > 1:
            skops_path, _ = artifact_paths(as_path)
            if skops_path.is_file():
                return skops_path
            raise ModelNotFoundError(f"model file not found: {skops_path.name}")
        for folder in self.folders:
            skops_path, _ = artifact_paths(folder / name)
            if skops_path.is_file():
                return skops_path
        known = ", ".join(e["name"] for e in self.list()) or "none"
        raise ModelNotFoundError(f"no model {name!r} (known: {known})")

    def problem(self, name: str = "default") -> str | None:
        """Why model ``name`` cannot be used (see :func:`artifact_problem`), or None.

        Raises:
            ModelNotFoundError: nothing of that name (or no default set).
        """
        return artifact_problem(self.resolve(name))

    def load(self, name: str = "default") -> EmotionModel:
        """Resolve and load (with all integrity checks) a model."""
        return load_model(self.resolve(name))
