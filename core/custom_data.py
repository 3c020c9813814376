"""Labelled clips for custom models: whole files or time spans of files, and their features.

A :class:`Clip` is what a user labelled: a file, or the ``start_s``-``end_s`` span of one (a
corrected segment of a finished job). Whole files go through the shared feature cache
(:func:`core.cache.extract_features`); spans are cut from a file decoded once per file and
cached under ``<cache_dir>/<feature set id>/spans/``.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.audio import check_signal, load
from core.cache import extract_features, file_sha256
from core.datasets import Dataset, Sample
from core.errors import AERError, DatasetError
from core.features import FeatureSet


@dataclass(frozen=True)
class Clip:
    """One labelled clip: all of ``path``, or its ``start_s``-``end_s`` span (seconds)."""

    path: Path
    label: str
    speaker: str | None = None
    start_s: float | None = None
    end_s: float | None = None

    @property
    def is_span(self) -> bool:
        return self.start_s is not None or self.end_s is not None

    @property
    def key(self) -> str:
        """The clip's identity in reports: ``path`` or ``path@start-end``."""
        if not self.is_span:
            return str(self.path)
        end = "" if self.end_s is None else f"{self.end_s:g}"
        return f"{self.path}@{self.start_s or 0:g}-{end}"


def _clip(item) -> Clip:
    if isinstance(item, Clip):
        clip = item
    elif isinstance(item, Sample):
        clip = Clip(Path(item.path), item.label, item.speaker)
    elif isinstance(item, Mapping):
        clip = Clip(
            Path(item["path"]),
            item["label"],
            item.get("speaker"),
            item.get("start_s", item.get("start")),
            item.get("end_s", item.get("end")),
        )
    else:
        path, label, *rest = item
        clip = Clip(Path(path), label, *rest)
    start = None if clip.start_s in (None, "") else float(clip.start_s)
    end = None if clip.end_s in (None, "") else float(clip.end_s)
    label = str(clip.label or "").strip()
    if not label:
        raise DatasetError(f"empty label for {clip.path}")
    if (start is not None and start < 0) or (end is not None and end <= (start or 0)):
        raise DatasetError(f"bad span {start}-{end} s for {clip.path}: need 0 <= start < end")
    speaker = str(clip.speaker).strip() if clip.speaker not in (None, "") else None
    return Clip(Path(clip.path), label, speaker, start, end)


def as_clips(samples: Dataset | Iterable) -> list[Clip]:
    """Normalise labelled samples to clips.

    Args:
        samples: a :class:`Dataset`, or items that are a :class:`Clip`, a
            :class:`~core.datasets.Sample`, a tuple ``(path, label[, speaker[, start_s,
            end_s]])`` or a mapping with keys ``path``, ``label`` and optionally ``speaker``,
            ``start_s``/``start`` and ``end_s``/``end`` (seconds; None = file start / end).

    Raises:
        DatasetError: an empty label or a span with start >= end.
    """
    items = samples.samples if isinstance(samples, Dataset) else samples
    return [_clip(item) for item in items]


def read_clips_manifest(csv_path: str | Path) -> list[Clip]:
    """Read a CSV with ``path``, ``label`` and optional ``speaker``, ``start``, ``end`` columns.

    Relative paths resolve against the manifest's folder. Raises DatasetError for a missing
    file, missing columns or a row without a label (a user's labels are few: none is dropped
    silently).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"manifest not found: {csv_path}")
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"path", "label"} <= {c.strip().lower() for c in reader.fieldnames or []}:
            raise DatasetError(f"manifest needs 'path' and 'label' columns: {csv_path}")
        rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    clips = []
    for line, row in enumerate(rows, start=2):
        path = Path(row.get("path", ""))
        path = path if path.is_absolute() else csv_path.parent / path
        if not row.get("path") or not path.is_file():
            raise DatasetError(f"{csv_path}:{line}: file not found: {row.get('path', '')!r}")
        try:
            clips.append(replace(_clip(row), path=path))
        except (DatasetError, ValueError) as exc:
            raise DatasetError(f"{csv_path}:{line}: {exc}") from None
    if not clips:
        raise DatasetError(f"no rows in {csv_path}")
    return clips


def featurize_clips(
    clips: list[Clip],
    feature_set: FeatureSet,
    *,
    cache_dir: str | Path | None = None,
    n_jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Feature rows of the clips that could be used.

    Returns:
        (X [shape=(n_ok, dim)] float32, ok [shape=(len(clips),)] bool, failed (clip key, reason)).
    """
    rows: list[np.ndarray | None] = [None] * len(clips)
    failed: dict[int, str] = {}
    whole = [i for i, c in enumerate(clips) if not c.is_span]
    if whole:
        unique = sorted({clips[i].path for i in whole})
        ex = extract_features(
            unique, feature_set, cache_dir=cache_dir, n_jobs=n_jobs, progress=False
        )
        row_of = dict(zip(np.asarray(unique, dtype=object)[ex.ok], ex.X, strict=True))
        reasons = dict(ex.failed)
        for i in whole:
            rows[i] = row_of.get(clips[i].path)
            if rows[i] is None:
                failed[i] = reasons.get(str(clips[i].path), "extraction failed")
        if progress:
            progress(len(whole), len(clips))
    spans: dict[Path, list[int]] = {}
    for i, c in enumerate(clips):
        if c.is_span:
            spans.setdefault(c.path, []).append(i)
    for path, idx in spans.items():
        found = _span_rows(path, [clips[i] for i in idx], feature_set, cache_dir)
        for i, row_or_reason in zip(idx, found, strict=True):
            if isinstance(row_or_reason, str):
                failed[i] = row_or_reason
            else:
                rows[i] = row_or_reason
        if progress:
            progress(sum(r is not None for r in rows) + len(failed), len(clips))
    ok = np.array([r is not None for r in rows], dtype=bool)
    X = np.stack([r for r in rows if r is not None]) if ok.any() else np.empty((0, feature_set.dim))
    return X.astype(np.float32), ok, [(clips[i].key, failed[i]) for i in sorted(failed)]


def _span_rows(path: Path, clips: list[Clip], fs: FeatureSet, cache_dir) -> list:
    """Each span's feature row, or the reason it failed; the file is decoded at most once."""
    try:
        digest = file_sha256(path)
    except OSError as exc:
        return [f"unreadable: {exc.strerror or exc}"] * len(clips)
    folder = Path(cache_dir) / fs.id / "spans" / digest[:2] if cache_dir is not None else None
    out, y = [], None
    for clip in clips:
        start, end = clip.start_s or 0.0, clip.end_s
        target = folder / f"{digest}_{start:.3f}_{end or 'end'}.npy" if folder else None
        if target is not None and target.is_file():
            out.append(np.load(target, allow_pickle=False))
            continue
        try:
            if y is None:
                y = load(path, sr=fs.sample_rate, mono=True)
            part = y[int(round(start * fs.sample_rate)) :]
            if end is not None:
                part = part[: int(round((end - start) * fs.sample_rate))]
            check_signal(part, fs.sample_rate, min_duration_s=fs.min_duration_s)
            row = np.asarray(fs.extract(part, fs.sample_rate), dtype=np.float32)
        except AERError as exc:
            out.append(f"{exc.code}: {exc}")
            continue
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, row)
            os.replace(tmp, target)
        out.append(row)
    return out
