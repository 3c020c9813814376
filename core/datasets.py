"""Labelled audio datasets: RAVDESS folders, generic ``label/.../file`` folders, CSV manifests.

Every reader returns a :class:`Dataset`: the usable samples plus ``skipped``, a list of
``(path, reason)`` for every file that was left out, so callers can report it.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import DatasetError

#: RAVDESS emotion codes (third field of the file name), in code order.
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)
#: File suffixes read as audio by the folder readers (lower case).
AUDIO_SUFFIXES: frozenset[str] = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".au"}
)


@dataclass(frozen=True)
class RavdessName:
    """The seven fields of a RAVDESS file name (``03-01-05-01-02-01-12.flac``)."""

    modality: int
    channel: int
    emotion: str
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def speaker(self) -> str:
        """Speaker id used for grouping, e.g. ``"actor12"``."""
        return f"actor{self.actor:02d}"


def parse_ravdess_name(name: str | Path) -> RavdessName:
    """Parse a RAVDESS file name (any folder, any audio suffix).

    Raises:
        DatasetError: the stem is not seven two-digit fields with valid codes.
    """
    stem = Path(name).name.split(".", 1)[0]
    fields = stem.split("-")
    if len(fields) != 7 or not all(len(f) == 2 and f.isdigit() for f in fields):
        raise DatasetError(f"not a RAVDESS name (want 7 two-digit fields): {Path(name).name}")
    modality, channel, emotion, intensity, statement, repetition, actor = map(int, fields)
    problems = []
    if not 1 <= emotion <= len(EMOTIONS):
        problems.append(f"emotion code {emotion:02d}")
    if intensity not in (1, 2) or (emotion == 1 and intensity == 2):
        problems.append(f"intensity {intensity:02d}")
    if statement not in (1, 2):
        problems.append(f"statement {statement:02d}")
    if repetition not in (1, 2):
        problems.append(f"repetition {repetition:02d}")
    if actor < 1:
        problems.append(f"actor {actor:02d}")
    if problems:
        raise DatasetError(f"invalid RAVDESS {', '.join(problems)}: {Path(name).name}")
    return RavdessName(
        modality, channel, EMOTIONS[emotion - 1], intensity, statement, repetition, actor
    )


@dataclass(frozen=True)
class Sample:
    """One labelled file. ``speaker`` is None when the source does not say."""

    path: Path
    label: str
    speaker: str | None = None


@dataclass
class Dataset:
    """Labelled samples plus the files that were left out and why."""

    samples: list[Sample]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def paths(self) -> list[Path]:
        return [s.path for s in self.samples]

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.samples]

    @property
    def speakers(self) -> list[str | None]:
        return [s.speaker for s in self.samples]

    @property
    def classes(self) -> tuple[str, ...]:
        """Labels present, RAVDESS emotions first in code order, then others sorted."""
        present = set(self.labels)
        known = [e for e in EMOTIONS if e in present]
        return tuple(known + sorted(present - set(known)))

    @property
    def has_speakers(self) -> bool:
        return bool(self.samples) and all(s.speaker for s in self.samples)

    def restrict(self, classes: list[str] | tuple[str, ...]) -> Dataset:
        """Keep only samples of ``classes`` (every class must be present)."""
        missing = [c for c in classes if c not in set(self.labels)]
        if missing:
            raise DatasetError(
                f"class(es) not in the data: {', '.join(missing)} "
                f"(present: {', '.join(self.classes)})"
            )
        keep = set(classes)
        return Dataset([s for s in self.samples if s.label in keep], self.skipped, self.source)

    def summary(self) -> dict:
        """JSON-safe summary: file count, per-class counts, speakers, skipped count."""
        speakers = sorted({s.speaker for s in self.samples if s.speaker})
        counts = Counter(self.labels)
        return {
            "source": self.source,
            "n_files": len(self.samples),
            "class_counts": {c: counts[c] for c in self.classes},
            "n_speakers": len(speakers),
            "speakers": speakers,
            "n_skipped": len(self.skipped),
        }


def _walk_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _require_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"not a folder: {folder}")
    return folder


def _non_empty(dataset: Dataset) -> Dataset:
    if not dataset.samples:
        raise DatasetError(f"no usable audio files in {dataset.source}")
    return dataset


def read_ravdess(folder: str | Path) -> Dataset:
    """Read a folder (searched recursively) of RAVDESS-named audio files.

    Labels and speakers come from the file names; other files are skipped and reported.
    """
    folder = _require_folder(folder)
    samples, skipped = [], []
    for path in _walk_files(folder):
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            skipped.append((str(path), "not an audio file suffix"))
            continue
        try:
            parsed = parse_ravdess_name(path.name)
        except DatasetError as exc:
            skipped.append((str(path), str(exc)))
            continue
        samples.append(Sample(path, parsed.emotion, parsed.speaker))
    return _non_empty(Dataset(samples, skipped, str(folder)))


def read_folder(folder: str | Path) -> Dataset:
    """Read a ``label/.../file`` folder: the first folder under ``folder`` is the label.

    Speakers are unknown (None): use a manifest with a ``speaker`` column for
    speaker-independent evaluation.
    """
    folder = _require_folder(folder)
    samples, skipped = [], []
    for path in _walk_files(folder):
        rel = path.relative_to(folder)
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            skipped.append((str(path), "not an audio file suffix"))
        elif len(rel.parts) < 2:
            skipped.append((str(path), "file at top level has no label folder"))
        else:
            samples.append(Sample(path, rel.parts[0], None))
    return _non_empty(Dataset(samples, skipped, str(folder)))


def read_manifest(csv_path: str | Path) -> Dataset:
    """Read a CSV manifest with columns ``path``, ``label`` and optionally ``speaker``.

    Relative paths resolve against the manifest's folder. Rows with an empty label or a
    missing file are skipped and reported.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"manifest not found: {csv_path}")
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = {c.strip().lower() for c in reader.fieldnames or []}
        if not {"path", "label"} <= columns:
            raise DatasetError(f"manifest needs 'path' and 'label' columns: {csv_path}")
        rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    samples, skipped = [], []
    for line, row in enumerate(rows, start=2):
        raw = row.get("path", "")
        path = Path(raw) if Path(raw).is_absolute() else csv_path.parent / raw
        if not raw:
            skipped.append((f"{csv_path}:{line}", "empty path"))
        elif not row.get("label"):
            skipped.append((str(path), f"empty label (line {line})"))
        elif not path.is_file():
            skipped.append((str(path), f"file not found (line {line})"))
        else:
            samples.append(Sample(path, row["label"], row.get("speaker") or None))
    return _non_empty(Dataset(samples, skipped, str(csv_path)))


def read_dataset(source: str | Path) -> Dataset:
    """Read ``source``: a ``.csv`` manifest, a RAVDESS folder, or a ``label/.../file`` folder.

    A folder counts as RAVDESS when most of its audio files have RAVDESS names.
    """
    source = Path(source)
    if source.suffix.lower() == ".csv":
        return read_manifest(source)
    folder = _require_folder(source)
    audio = [p for p in _walk_files(folder) if p.suffix.lower() in AUDIO_SUFFIXES]
    n_ravdess = 0
    for p in audio:
        try:
            parse_ravdess_name(p.name)
            n_ravdess += 1
        except DatasetError:
            pass
    if audio and n_ravdess * 2 > len(audio):
        return read_ravdess(folder)
    return read_folder(folder)
