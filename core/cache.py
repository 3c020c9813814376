"""Feature extraction over many files, on all cores, with an on-disk cache.

Cache layout: ``<cache_dir>/<feature set id>/<transform key>/<sha[:2]>/<sha>.npy`` where ``sha``
is the sha256 of the file's bytes and the transform key is ``clean`` or a hash of the
degradation spec. Equal content is extracted once, whatever its path or name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from core.audio import check_signal, load
from core.degrade import parse_degradation
from core.errors import AERError
from core.features import FeatureSet, get_feature_set

#: A degradation: ``(y, sr, rng) -> y``, as returned by ``core.degrade.parse_degradation``.
Transform = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


@dataclass
class Extraction:
    """Features of ``paths``: ``X`` holds one row per file that worked, in input order."""

    paths: list[Path]
    X: np.ndarray  # shape (n_ok, dim), float32
    ok: np.ndarray  # shape (len(paths),), bool: which paths have a row in X
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    n_computed: int = 0
    n_cached: int = 0
    #: seconds of (degraded) audio behind each row of X, when asked for (``durations=True``)
    durations: np.ndarray | None = None


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _transform_key(spec: str | None) -> str:
    if spec is None:
        return "clean"
    return "t-" + hashlib.sha256(spec.encode()).hexdigest()[:16]


def _resolve_transform(
    transform: str | Transform | None, transform_id: str | None
) -> tuple[str | None, str | Transform | None]:
    """Return (cache spec, what workers apply) for a spec string or a callable."""
    if transform is None:
        return None, None
    if isinstance(transform, str):
        parse_degradation(transform)  # a bad spec fails here (ValueError), not once per file
        return transform, transform
    spec = transform_id or getattr(transform, "spec", None)
    if not spec:
        raise ValueError("a transform callable needs transform_id (or a .spec attribute)")
    return f"callable:{spec}", transform


def degradation_seed(digest: str, spec: str | None) -> int:
    """The RNG seed :func:`extract_features` degrades a file with, so that degraded features are
    reproducible (and cacheable), and code outside the cache can degrade a file the same way.

    Args:
        digest: the file's :func:`file_sha256`.
        spec: the degradation spec (``"noise:10"``), or ``"callable:<transform_id>"``.
    """
    return int(hashlib.sha256(f"{digest}|{spec}".encode()).hexdigest()[:16], 16)


def _extract_one(
    path: str,
    fs_name: str,
    fs_version: int,
    transform: str | Transform | None,
    seed: int,
    features: bool = True,
) -> tuple[np.ndarray | None, float, str | None]:
    """Worker: load, optionally degrade, extract. Returns (features, seconds of the signal
    extracted from, None) or (None, 0.0, reason); ``features=False``: (None, seconds, None)."""
    fs = get_feature_set(fs_name, fs_version)
    try:
        y = load(path, sr=fs.sample_rate, mono=True, min_duration_s=fs.min_duration_s)
        if transform is not None:
            if isinstance(transform, str):
                transform = parse_degradation(transform)
            y = np.asarray(transform(y, fs.sample_rate, np.random.default_rng(seed)), np.float32)
        check_signal(y, fs.sample_rate, min_duration_s=fs.min_duration_s)
        seconds = y.size / fs.sample_rate
        if not features:
            return None, seconds, None
        return np.asarray(fs.extract(y, fs.sample_rate), dtype=np.float32), seconds, None
    except AERError as exc:
        return None, 0.0, f"{exc.code}: {exc}"
    except Exception as exc:  # noqa: BLE001 - one odd file must not stop a bulk run
        return None, 0.0, f"{type(exc).__name__}: {exc}"


def _save_atomic(target: Path, row: np.ndarray) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, row)
    os.replace(tmp, target)


def _save_seconds(target: Path, seconds: float) -> None:
    """Write the duration sidecar ``<sha>.seconds`` of a cached row (text, atomically)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(repr(float(seconds)))
    os.replace(tmp, target)


def _load_seconds(target: Path) -> float | None:
    try:
        value = float(target.read_text())
    except (OSError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _load_cached(target: Path, dim: int) -> np.ndarray | None:
    try:
        row = np.load(target, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return row if row.shape == (dim,) and np.all(np.isfinite(row)) else None


def extract_features(
    paths: Iterable[str | Path],
    feature_set: FeatureSet,
    *,
    cache_dir: str | Path | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    transform: str | Transform | None = None,
    transform_id: str | None = None,
    durations: bool = False,
) -> Extraction:
    """Extract ``feature_set`` from each file, reading and filling the cache.

    Args:
        paths: audio files.
        feature_set: what to extract (its id is part of the cache key).
        cache_dir: cache folder; None disables caching.
        n_jobs: worker processes; None or <= 0 = all cores, 1 = in this process.
        progress: show a tqdm progress bar.
        transform: degradation applied to the decoded signal before extraction: a spec for
            ``core.degrade.parse_degradation`` (e.g. ``"noise:10"``) or a callable
            ``(y, sr, rng) -> y`` (then ``transform_id`` names it for the cache key; it must
            be picklable when ``n_jobs`` > 1). ``rng`` is seeded by :func:`degradation_seed`, so
            degraded features are reproducible and cacheable.
        durations: also return the seconds of (degraded) audio behind each row
            (``Extraction.durations``); cached as ``<sha>.seconds`` next to the row, and
            recomputed (decode and degrade, no features) for rows cached without it.

    Returns:
        An :class:`Extraction`; files that fail (bad audio) are listed in ``failed``.
    """
    paths = [Path(p) for p in paths]
    spec, applied = _resolve_transform(transform, transform_id)
    folder = None
    if cache_dir is not None:
        folder = Path(cache_dir) / feature_set.id / _transform_key(spec)
        folder.mkdir(parents=True, exist_ok=True)
        if spec is not None and not (folder / "spec.txt").exists():
            (folder / "spec.txt").write_text(spec + "\n")
    rows: list[np.ndarray | None] = [None] * len(paths)
    seconds = np.zeros(len(paths))
    reasons: dict[int, str] = {}
    todo: list[tuple[int, str, bool]] = []  # (index, digest, features needed)
    n_cached = 0
    for i, path in enumerate(paths):
        try:
            digest = file_sha256(path)
        except OSError as exc:
            reasons[i] = f"unreadable: {exc.strerror or exc}"
            continue
        stem = folder / digest[:2] / digest if folder else None
        cached = _load_cached(stem.with_suffix(".npy"), feature_set.dim) if stem else None
        if cached is not None:
            rows[i] = cached
            n_cached += 1
            if durations:
                known = _load_seconds(stem.with_suffix(".seconds"))
                if known is None:
                    todo.append((i, digest, False))
                else:
                    seconds[i] = known
        else:
            todo.append((i, digest, True))

    def finish(i: int, digest: str, row: np.ndarray | None, secs: float, reason: str | None):
        if reason is not None or (row is None and rows[i] is None):
            rows[i] = None
            reasons[i] = reason or "extraction failed"
            return
        seconds[i] = secs
        if row is not None:
            rows[i] = row
        if folder is not None:
            if row is not None:
                _save_atomic(folder / digest[:2] / f"{digest}.npy", row)
            _save_seconds(folder / digest[:2] / f"{digest}.seconds", secs)

    fs_id = (feature_set.name, feature_set.version)
    args = [(str(paths[i]), *fs_id, applied, degradation_seed(d, spec), f) for i, d, f in todo]
    n_features = sum(f for _, _, f in todo)
    bar = tqdm(total=len(todo), desc=f"features {feature_set.id}", disable=not progress or not todo)
    workers = (os.cpu_count() or 1) if not n_jobs or n_jobs <= 0 else n_jobs
    if workers == 1 or len(todo) <= 1:
        for (i, digest, _), a in zip(todo, args, strict=True):
            finish(i, digest, *_extract_one(*a))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
            futures = {
                pool.submit(_extract_one, *a): (i, digest)
                for (i, digest, _), a in zip(todo, args, strict=True)
            }
            for future in as_completed(futures):
                finish(*futures[future], *future.result())
                bar.update()
    bar.close()
    ok = np.array([r is not None for r in rows], dtype=bool)
    X = np.stack([r for r in rows if r is not None]) if ok.any() else np.empty((0, feature_set.dim))
    failed = [(str(paths[i]), reasons[i]) for i in sorted(reasons)]
    return Extraction(
        paths,
        X.astype(np.float32),
        ok,
        failed,
        n_features,
        n_cached,
        durations=seconds[ok] if durations else None,
    )
