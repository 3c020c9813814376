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
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from api.store.uploads import ARCHIVES_DIR, STAGING_DIR, is_audio_name
from core.errors import AERError

_COPY_BLOCK = 1 << 20
_UTF8_FLAG = 0x800  # general purpose bit 11: names are UTF-8
_UNICODE_PATH = 0x7075  # Info-ZIP Unicode Path extra field


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

    Uploads may lie in subfolders (``d1/call.flac``): they are listed by that relative path.
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
    for rel in _uploaded_files(folder, archives):
        if rel.suffix.lower() == ".zip":
            (archives / rel).parent.mkdir(parents=True, exist_ok=True)
            # atomic: the archive is now "to extract"
            os.replace(folder / rel, archives / rel)
    budget = max_bytes
    failed: list[tuple[str, str, SourceError]] = []
    stored = sorted(p for p in archives.rglob("*") if p.is_file()) if archives.is_dir() else []
    for archive in stored:
        rel = archive.relative_to(archives)
        target = folder / rel
        if not target.exists():
            staging = (folder / STAGING_DIR / rel).parent
            try:
                _extract_once(archive, target, staging, max_files, budget)
            except SourceError as exc:
                failed.append((rel.as_posix(), str(archive), exc))
                continue
        budget -= _tree_size(target)
    found: list[tuple[str, str]] = []
    for rel in _uploaded_files(folder, archives, members=pattern or True):
        found.append((rel.as_posix(), str(folder / rel)))
        if len(found) > max_files:
            raise SourceError(f"the upload holds more than {max_files} audio files")
    return Listing(sorted(found), failed)


def _uploaded_files(folder: Path, archives: Path, *, members: str | bool = False) -> Iterator[Path]:
    """Relative paths of the files uploaded into ``folder`` (hidden ones skipped). With
    ``members``, also the audio members of extracted archives (``True``: by extension; a
    string: that name pattern)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath).relative_to(folder)
        extracted = [d for d in dirnames if (archives / here / d).is_file()]
        dirnames[:] = sorted(d for d in dirnames if not _skipped(d) and d not in extracted)
        for name in sorted(filenames):
            if not _skipped(name):
                yield here / name
        if not members:
            continue
        pattern = members if isinstance(members, str) else None
        for d in sorted(extracted):
            for sub, subdirs, names in os.walk(Path(dirpath, d)):
                subdirs[:] = sorted(x for x in subdirs if not _skipped(x))
                for name in sorted(names):
                    if not _skipped(name) and _is_audio(name, pattern):
                        yield Path(sub, name).relative_to(folder)


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
            members = [(m, member_name(m)) for m in zf.infolist() if not m.is_dir()]
            for m, member in members:
                _check_member(name, m, member)
            if len(members) > max_files:
                raise UnsafeArchiveError(f"archive {name!r} holds more than {max_files} files")
            if sum(m.file_size for m, _ in members) > max_bytes:
                raise UnsafeArchiveError(f"archive {name!r} expands to more than the size limit")
            written = 0
            for m, member in members:
                target = dest.joinpath(*PurePosixPath(member.replace("\\", "/")).parts)
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


def member_name(member: zipfile.ZipInfo) -> str:
    """The name of an archive entry as the archiver that wrote it meant it.

    With the UTF-8 flag (bit 11) set, zipfile's reading is right. Without it, zipfile decodes
    cp437, the format's old default; but many archivers write UTF-8 without setting the flag,
    and Info-ZIP adds the UTF-8 name in a Unicode Path extra field (0x7075). So: UTF-8 if the
    bytes are valid UTF-8, else the extra field if it matches these bytes, else cp437.
    """
    if member.flag_bits & _UTF8_FLAG:
        return member.filename
    raw = member.orig_filename.encode("cp437")  # zipfile decoded the raw bytes as cp437
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return _unicode_path_extra(member.extra, raw) or member.filename


def _unicode_path_extra(extra: bytes, raw_name: bytes) -> str | None:
    """The name in an Info-ZIP Unicode Path extra field (0x7075), if present, of version 1
    and written for ``raw_name`` (its CRC-32 matches)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + size]
        pos += 4 + size
        if tag != _UNICODE_PATH or len(body) < 5 or body[0] != 1:
            continue
        if struct.unpack_from("<I", body, 1)[0] != zlib.crc32(raw_name):
            return None  # the name was changed after the field was written: stale
        try:
            return body[5:].decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _check_member(archive: str, member: zipfile.ZipInfo, name: str) -> None:
    raw = name.replace("\\", "/")
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
            f"archive {archive!r} refused: entry {name!r} would be written outside its folder"
        )


def _tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
