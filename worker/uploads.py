"""A job's uploaded files wherever ``AER_STORAGE_URL`` keeps them: listed, zips extracted.

Locally this is :func:`worker.sources.list_upload` on the job's upload folder. In a bucket
nothing is renamed: a zip stays where it was uploaded, its listed members are stored under a
folder of its name (``uploads/<job>/a.zip/x.wav``, the same relative paths as locally), and a
marker ``uploads/<job>/.extracted/a.zip.json`` (bytes written, inner zips left unextracted) is
written last. A zip without its marker is extracted again from the start, so a worker that dies
mid-way costs nothing but the redo. The zip is streamed to a private temporary folder and
extracted there with the same checks and limits as locally; an archive that fails, fails alone.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from api.store.settings import Settings
from api.store.storage import Storage, StoredTooLargeError, open_storage
from api.store.uploads import ARCHIVE_EXTENSIONS, upload_dir, upload_key
from worker.sources import (
    ExtractBudget,
    Listing,
    SourceError,
    UnsafeArchiveError,
    extract_archive,
    is_listed,
    list_upload,
    nested_errors,
    remove_extractions,
    skipped,
    tree_size,
)

#: Folder of an upload holding one completion marker per extracted zip.
MARKERS = ".extracted"


def list_job_upload(
    settings: Settings, source: str, *, max_files: int, pattern: str | None = None
) -> Listing:
    """The files of the upload job whose ``source`` (where its uploads were stored) is given,
    its zips extracted, with the limits of ``settings``.

    Raises:
        SourceError: the upload is gone, lies outside the storage, or holds more than
            ``max_files`` files.
    """
    limits = {
        "max_files": max_files,
        "max_bytes": settings.max_extract_mb * 2**20,
        "max_archive_bytes": settings.max_archive_extract_mb * 2**20,
        "max_depth": settings.max_archive_depth,
        "pattern": pattern,
    }
    storage = open_storage(settings)
    if storage.local:
        return list_upload(Path(source), **limits)
    folder = storage.key_of(source)
    if folder is None:
        raise SourceError("the uploaded files lie outside AER_STORAGE_URL")
    settings.temp_dir.mkdir(parents=True, exist_ok=True)
    return list_stored_upload(
        storage,
        folder,
        scratch=settings.temp_dir,
        max_zip_bytes=settings.max_upload_mb * 2**20,
        **limits,
    )


def remove_job_extractions(settings: Settings, job_id: str) -> int:
    """Delete the extracted contents of job ``job_id``'s zips (the zips stay); bytes freed."""
    storage = open_storage(settings)
    if storage.local:
        return remove_extractions(upload_dir(settings, job_id))
    return remove_stored_extractions(storage, upload_key(job_id))


def list_stored_upload(
    storage: Storage,
    folder: str,
    *,
    scratch: Path,
    max_files: int,
    max_bytes: int,
    max_archive_bytes: int | None = None,
    max_depth: int = 2,
    pattern: str | None = None,
    max_zip_bytes: int | None = None,
) -> Listing:
    """:func:`worker.sources.list_upload` for the storage folder ``folder``; archives are
    extracted under ``scratch`` (a private local folder) and their members stored back.

    Raises:
        SourceError: the folder is empty, or there are more than ``max_files`` files.
    """
    keys = _rel_keys(storage, folder)
    if not keys:
        raise SourceError("the uploaded files are gone (was the job deleted?)")
    archives = _archives(keys)
    budget = ExtractBudget(
        job_bytes=max_bytes,
        archive_bytes=max_bytes if max_archive_bytes is None else max_archive_bytes,
        files=max_files,
    )
    failed: list[tuple[str, str, SourceError]] = []
    extracted: set[str] = set()
    for rel in sorted(archives):
        record = _marker(storage, folder, rel)
        if record is None:
            try:
                record = _extract(
                    storage, folder, rel, scratch, budget, max_depth, pattern, max_zip_bytes
                )
            except SourceError as exc:
                failed.append((rel, storage.location(f"{folder}/{rel}"), exc))
                continue
            keys = None  # members were stored: list again
        else:  # extracted before a restart: it counts against the job's budget all the same
            budget.job_left -= record["bytes"]
        extracted.add(rel)
        inside = f"{folder}/{rel}"
        failed += nested_errors(
            rel, record["failures"], lambda r, at=inside: storage.location(f"{at}/{r}")
        )
    found: list[tuple[str, str]] = []
    for rel in sorted(keys if keys is not None else _rel_keys(storage, folder)):
        parts = rel.split("/")
        if any(skipped(p) for p in parts) or rel in archives:
            continue
        owner = _owner(parts, archives)
        if owner is not None and (owner not in extracted or not is_listed(parts[-1], pattern)):
            continue  # a member of a zip whose extraction is not complete, or not listed
        found.append((rel, storage.location(f"{folder}/{rel}")))
        if len(found) > max_files:
            raise SourceError(f"the upload holds more than {max_files} audio files")
    return Listing(found, failed)


def remove_stored_extractions(storage: Storage, folder: str) -> int:
    """Delete the stored members of the zips of ``folder`` (markers first, so that a member is
    never listed without its whole archive); returns the bytes freed."""
    freed = 0
    for info in list(storage.list(f"{folder}/{MARKERS}")):
        rel = info.key[len(f"{folder}/{MARKERS}/") :].removesuffix(".json")
        storage.delete(info.key)
        freed += storage.delete_folder(f"{folder}/{rel}")
    return freed


def _rel_keys(storage: Storage, folder: str) -> set[str]:
    head = len(folder) + 1
    return {info.key[head:] for info in storage.list(folder)}


def _archives(keys: set[str]) -> set[str]:
    """The uploaded zips among ``keys``: not hidden, not inside another zip's folder."""
    zips = {
        rel
        for rel in keys
        if PurePosixPath(rel).suffix.lower() in ARCHIVE_EXTENSIONS
        and not any(skipped(p) for p in rel.split("/"))
    }
    return {rel for rel in zips if _owner(rel.split("/"), zips) is None}


def _owner(parts: list[str], archives: set[str]) -> str | None:
    """The archive whose folder holds the key of ``parts``, or None."""
    for i in range(1, len(parts)):
        head = "/".join(parts[:i])
        if head in archives:
            return head
    return None


def _marker_key(folder: str, rel: str) -> str:
    return f"{folder}/{MARKERS}/{rel}.json"


def _marker(storage: Storage, folder: str, rel: str) -> dict | None:
    data = storage.get_bytes(_marker_key(folder, rel))
    return None if data is None else json.loads(data)


def _extract(
    storage: Storage,
    folder: str,
    rel: str,
    scratch: Path,
    budget: ExtractBudget,
    max_depth: int,
    pattern: str | None,
    max_zip_bytes: int | None,
) -> dict:
    """Extract the stored zip ``rel`` and store its listed members; returns its marker."""
    work_root = Path(tempfile.mkdtemp(dir=scratch, prefix="extract-"))
    try:
        archive = work_root / "zip" / PurePosixPath(rel).name  # its name, for the messages
        archive.parent.mkdir()
        try:
            storage.download(f"{folder}/{rel}", archive, limit=max_zip_bytes)
        except StoredTooLargeError as exc:
            raise UnsafeArchiveError(f"archive {archive.name!r} refused: {exc}") from None
        except FileNotFoundError:
            raise SourceError(f"archive {archive.name!r} is gone") from None
        work = work_root / "members"
        work.mkdir()
        failures = extract_archive(archive, work, budget, max_depth)
        archive.unlink()
        record = {"bytes": tree_size(work), "failures": failures}
        storage.delete_folder(f"{folder}/{rel}")  # what an interrupted extraction stored
        for path in sorted(work.rglob("*")):
            member = path.relative_to(work)
            listed = not any(skipped(p) for p in member.parts) and is_listed(path.name, pattern)
            if path.is_file() and listed:
                storage.put_file(f"{folder}/{rel}/{member.as_posix()}", path)
        storage.put_bytes(_marker_key(folder, rel), json.dumps(record).encode())
        return record
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
