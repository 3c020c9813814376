"""The files of a job: a folder listing, or uploaded files with their zip archives extracted.

Both list sorted ``(rel_path, absolute path)`` pairs. Archives are checked entry by entry
before anything is written (no absolute paths, no ``..``, no links) and extracted with the
number of files and the bytes actually written capped, whatever the archive claims. An archive
that cannot be read or is refused fails alone: the upload's other files are still listed.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from api.store.uploads import ARCHIVES_DIR, STAGING_DIR, is_audio_name
from core.errors import AERError

_COPY_BLOCK = 1 << 20


class SourceError(AERError, ValueError):
    """A job's files cannot be listed: the job fails with this message."""

    code = "source_error"


class UnsafeArchiveError(SourceError):
    """A zip archive would write outside its folder, or past the size or file limits."""

    code = "unsafe_archive"


class BadArchiveError(SourceError):
    """A file named ``*.zip`` is not a readable zip archive."""

    code = "bad_archive"


@dataclass(frozen=True)
class Listing:
    """What a job's source holds: files to analyse, and archives that failed to extract."""

    files: list[tuple[str, str]]  # (rel_path, absolute path), sorted
    failed: list[tuple[str, str, SourceError]] = field(default_factory=list)  # (rel, path, why)


def _is_audio(name: str, pattern: str | None) -> bool:
    if pattern:
        return fnmatch.fnmatch(name.lower(), pattern.lower())
    return is_audio_name(name)


def _skipped(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def list_folder(
    folder: Path,
    *,
    roots: tuple[Path, ...],
    recursive: bool = True,
    pattern: str | None = None,
    max_files: int,
) -> list[tuple[str, str]]:
    """Audio files under ``folder`` whose real path lies inside one of ``roots``.

    Hidden files and folders are skipped; so are links leading outside the roots.

    Raises:
        SourceError: the folder cannot be read or holds more than ``max_files`` audio files.
    """
    if not folder.is_dir():
        raise SourceError(f"folder {str(folder)!r} does not exist or is not a folder")
    found: list[tuple[str, str]] = []

    def on_error(exc: OSError) -> None:
        if Path(exc.filename or "") == folder:
            raise SourceError(f"cannot read folder {str(folder)!r}: {exc.strerror}")

    for dirpath, dirnames, filenames in os.walk(folder, onerror=on_error):
        dirnames[:] = sorted(d for d in dirnames if recursive and not _skipped(d))
        for name in filenames:
            if _skipped(name) or not _is_audio(name, pattern):
                continue
            path = Path(dirpath, name)
            real = path.resolve()
            if not real.is_file() or not any(real.is_relative_to(r) for r in roots):
                continue
            found.append((path.relative_to(folder).as_posix(), str(path)))
            if len(found) > max_files:
                raise SourceError(f"the folder holds more than {max_files} audio files")
    return sorted(found)


def list_upload(
    folder: Path, *, max_files: int, max_bytes: int, pattern: str | None = None
) -> Listing:
    """Files of an upload folder, after extracting each ``*.zip`` into a folder of that name.

    Files uploaded directly are all listed (the API screened them); archive members are listed
    when they look like audio. An archive that is unreadable, unsafe or over the size left in
    ``max_bytes`` is returned in ``Listing.failed`` instead. Safe to call again after a crash:
    finished extractions are kept.

    Raises:
        SourceError: the folder is missing, or there are more than ``max_files`` files.
    """
    if not folder.is_dir():
        raise SourceError("the uploaded files are gone (was the job deleted?)")
    archives = folder / ARCHIVES_DIR
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix.lower() == ".zip":
            archives.mkdir(exist_ok=True)
            os.replace(entry, archives / entry.name)  # atomic: the archive is now "to extract"
    budget = max_bytes
    failed: list[tuple[str, str, SourceError]] = []
    for archive in sorted(archives.iterdir()) if archives.is_dir() else ():
        target = folder / archive.name
        if not target.exists():
            try:
                _extract_once(archive, target, folder / STAGING_DIR, max_files, budget)
            except SourceError as exc:
                failed.append((archive.name, str(archive), exc))
                continue
        budget -= _tree_size(target)
    found: list[tuple[str, str]] = []
    for entry in sorted(folder.iterdir()):
        if _skipped(entry.name):
            continue
        if entry.is_file():
            found.append((entry.name, str(entry)))
        elif entry.is_dir() and (archives / entry.name).is_file():
            for dirpath, dirnames, filenames in os.walk(entry):
                dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
                for name in filenames:
                    if not _skipped(name) and _is_audio(name, pattern):
                        path = Path(dirpath, name)
                        found.append((path.relative_to(folder).as_posix(), str(path)))
        if len(found) > max_files:
            raise SourceError(f"the upload holds more than {max_files} audio files")
    return Listing(sorted(found), failed)


def _extract_once(archive: Path, target: Path, staging: Path, max_files: int, budget: int) -> None:
    work = staging / archive.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        extract_zip(archive, work, max_files=max_files, max_bytes=budget)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    os.replace(work, target)  # atomic: the extraction is either all there or absent


def extract_zip(archive: Path, dest: Path, *, max_files: int, max_bytes: int) -> int:
    """Extract the regular files of ``archive`` into ``dest``; returns how many.

    Raises:
        UnsafeArchiveError: an entry with an absolute path, ``..``, a drive or a link; more than
            ``max_files`` files; more than ``max_bytes`` uncompressed bytes.
        BadArchiveError: not a readable zip archive.
    """
    name = archive.name
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            for m in members:
                _check_member(name, m)
            if len(members) > max_files:
                raise UnsafeArchiveError(f"archive {name!r} holds more than {max_files} files")
            if sum(m.file_size for m in members) > max_bytes:
                raise UnsafeArchiveError(f"archive {name!r} expands to more than the size limit")
            written = 0
            for m in members:
                target = dest.joinpath(*PurePosixPath(m.filename.replace("\\", "/")).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(target, "wb") as out:
                    # Count what is really written: the sizes in the directory can lie.
                    while block := src.read(_COPY_BLOCK):
                        written += len(block)
                        if written > max_bytes:
                            raise UnsafeArchiveError(
                                f"archive {name!r} expands to more than the size limit"
                            )
                        out.write(block)
            return len(members)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise BadArchiveError(f"archive {name!r} cannot be read: {exc}") from None


def _check_member(archive: str, member: zipfile.ZipInfo) -> None:
    raw = member.filename.replace("\\", "/")
    parts = PurePosixPath(raw).parts
    mode = member.external_attr >> 16
    unsafe = (
        raw.startswith("/")
        or ".." in parts
        or (parts and ":" in parts[0])
        or stat.S_ISLNK(mode)
        or "\x00" in raw
    )
    if unsafe:
        raise UnsafeArchiveError(
            f"archive {archive!r} refused: entry {member.filename!r} would be written outside "
            "its folder"
        )


def _tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
