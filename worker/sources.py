"""The files of a job: a folder listing, or uploaded files with their zip archives extracted.

Both list sorted ``(rel_path, absolute path)`` pairs. Archives are checked entry by entry
before anything is written (no absolute paths, no ``..``, no links) and extracted with the
number of files and the bytes actually written capped (per archive and per job), whatever the
archive claims; zips inside zips are extracted down to a bounded depth. An archive that cannot
be read or is refused fails alone: the upload's other files are still listed.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from api.store.uploads import ARCHIVE_EXTENSIONS, ARCHIVES_DIR, STAGING_DIR, is_audio_name
from core.errors import AERError

_COPY_BLOCK = 1 << 20
_UTF8_FLAG = 0x800  # general purpose bit 11: names are UTF-8
_UNICODE_PATH = 0x7075  # Info-ZIP Unicode Path extra field
#: File in an extracted archive's folder listing the inner zips that were not extracted.
NESTED_FAILURES = ".nested-failures.json"


class SourceError(AERError, ValueError):
    """A job's files cannot be listed: the job fails with this message."""

    code = "source_error"


class UnsafeArchiveError(SourceError):
    """A zip archive would write outside its folder, or past the size or file limits."""

    code = "unsafe_archive"


class ExtractLimitError(UnsafeArchiveError):
    """A zip archive expands past the bytes or files allowed per archive or per job."""


class NestedArchiveError(SourceError):
    """A zip inside a zip was not extracted: nested too deep, or itself unreadable or unsafe."""

    code = "nested_archive"


class StorageError(SourceError):
    """The disk filled up while extracting an archive."""

    code = "insufficient_storage"


class BadArchiveError(SourceError):
    """A file named ``*.zip`` is not a readable zip archive."""

    code = "bad_archive"


@dataclass(frozen=True)
class Listing:
    """What a job's source holds: files to analyse, and archives that failed to extract."""

    files: list[tuple[str, str]]  # (rel_path, absolute path), sorted
    failed: list[tuple[str, str, SourceError]] = field(default_factory=list)  # (rel, path, why)


def is_listed(name: str, pattern: str | None) -> bool:
    """Whether an archive member named ``name`` is listed: audio, or matching ``pattern``."""
    if pattern:
        return fnmatch.fnmatch(name.lower(), pattern.lower())
    return is_audio_name(name)


def skipped(name: str) -> bool:
    """Whether a file or folder name is left out of listings (hidden, macOS metadata)."""
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
        dirnames[:] = sorted(d for d in dirnames if recursive and not skipped(d))
        for name in filenames:
            if skipped(name) or not is_listed(name, pattern):
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
    folder: Path,
    *,
    max_files: int,
    max_bytes: int,
    max_archive_bytes: int | None = None,
    max_depth: int = 2,
    pattern: str | None = None,
) -> Listing:
    """Files of an upload folder, after extracting each ``*.zip`` into a folder of that name.

    Uploads may lie in subfolders (``d1/call.flac``): they are listed by that relative path.
    Files uploaded directly are all listed (the API screened them); archive members are listed
    when they look like audio. Zips inside an archive are extracted the same way, down to
    ``max_depth`` levels; a deeper or unreadable inner zip is returned in ``Listing.failed``.
    An archive that is unreadable, unsafe, or expands past ``max_archive_bytes`` (itself and
    the zips inside it) or past what is left of ``max_bytes`` (all the job's archives) is
    returned in ``Listing.failed`` instead; bytes are counted as they are written. Safe to call
    again after a crash: finished extractions are kept.

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
    budget = ExtractBudget(
        job_bytes=max_bytes,
        archive_bytes=max_bytes if max_archive_bytes is None else max_archive_bytes,
        files=max_files,
    )
    failed: list[tuple[str, str, SourceError]] = []
    stored = sorted(p for p in archives.rglob("*") if p.is_file()) if archives.is_dir() else []
    for archive in stored:
        rel = archive.relative_to(archives)
        target = folder / rel
        if not target.exists():
            staging = (folder / STAGING_DIR / rel).parent
            try:
                _extract_once(archive, target, staging, budget, max_depth)
            except SourceError as exc:
                failed.append((rel.as_posix(), str(archive), exc))
                continue
        else:  # extracted before a restart: it counts against the job's budget all the same
            budget.job_left -= tree_size(target)
        failed.extend(_nested_failures(rel.as_posix(), target))
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
        dirnames[:] = sorted(d for d in dirnames if not skipped(d) and d not in extracted)
        for name in sorted(filenames):
            if not skipped(name):
                yield here / name
        if not members:
            continue
        pattern = members if isinstance(members, str) else None
        for d in sorted(extracted):
            for sub, subdirs, names in os.walk(Path(dirpath, d)):
                subdirs[:] = sorted(x for x in subdirs if not skipped(x))
                for name in sorted(names):
                    if not skipped(name) and is_listed(name, pattern):
                        yield Path(sub, name).relative_to(folder)


def remove_extractions(folder: Path) -> int:
    """Delete the extracted contents of an upload folder's zips (the zips themselves stay in
    ``.archives/``); returns the bytes freed."""
    archives = folder / ARCHIVES_DIR
    freed = 0
    for archive in sorted(archives.rglob("*")) if archives.is_dir() else ():
        target = folder / archive.relative_to(archives)
        if archive.is_file() and target.is_dir() and not target.is_symlink():
            freed += tree_size(target)
            shutil.rmtree(target, ignore_errors=True)
    staging = folder / STAGING_DIR
    if staging.is_dir():
        freed += tree_size(staging)
        shutil.rmtree(staging, ignore_errors=True)
    return freed


class ExtractBudget:
    """What extractions may still write: bytes per archive (inner zips included) and per job,
    and files per job; counted as they are written, whatever the archives claim."""

    def __init__(self, *, job_bytes: int, archive_bytes: int, files: int) -> None:
        self.job_left = job_bytes
        self.job_bytes = job_bytes
        self.archive_bytes = archive_bytes
        self.archive_left = archive_bytes
        self.files_left = files

    def start_archive(self) -> None:
        """A new top-level archive: its own byte allowance starts again."""
        self.archive_left = self.archive_bytes

    def spend(self, name: str, size: int = 0, files: int = 0) -> None:
        """Count ``size`` bytes and ``files`` files written for archive ``name``.

        Raises:
            ExtractLimitError: a limit is passed; the message names it.
        """
        self.archive_left -= size
        self.job_left -= size
        self.files_left -= files
        if self.archive_left < 0:
            raise ExtractLimitError(
                f"archive {name!r} expands to more than the size limit of "
                f"{_mb(self.archive_bytes)} per archive (AER_MAX_ARCHIVE_EXTRACT_MB)"
            )
        if self.job_left < 0:
            raise ExtractLimitError(
                f"archive {name!r} expands past the size limit of {_mb(self.job_bytes)} "
                "for all the archives of a job (AER_MAX_EXTRACT_MB)"
            )
        if self.files_left < 0:
            raise ExtractLimitError(
                f"archive {name!r} holds more files than a job may list (AER_MAX_FILES_PER_JOB)"
            )


def _mb(size: int) -> str:
    return f"{size / 2**20:g} MB"


def _extract_once(
    archive: Path, target: Path, staging: Path, budget: ExtractBudget, max_depth: int
) -> None:
    work = staging / archive.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        failures = extract_archive(archive, work, budget, max_depth)
        if failures:
            (work / NESTED_FAILURES).write_text(json.dumps(failures))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    os.replace(work, target)  # atomic: the extraction is either all there or absent


def extract_archive(
    archive: Path, work: Path, budget: ExtractBudget, max_depth: int
) -> list[list[str]]:
    """Extract a top-level ``archive`` into the empty folder ``work``, then the zips inside it
    down to ``max_depth``; returns ``[rel_path, message, code]`` of each inner zip left
    unextracted (see :func:`nested_errors`).

    Raises:
        SourceError: the archive is unreadable, unsafe, or passes a limit of ``budget``.
    """
    budget.start_archive()
    extract_zip(archive, work, max_files=budget.files_left, budget=budget)
    return _extract_nested(work, work, budget, depth=1, max_depth=max_depth)


def _extract_nested(
    folder: Path, root: Path, budget: ExtractBudget, *, depth: int, max_depth: int
) -> list[list[str]]:
    """Extract the zips under ``folder`` in place (each becomes a folder of its name), down to
    ``max_depth``; returns ``[rel_path, message, code]`` of each inner zip left unextracted.

    Raises:
        ExtractLimitError: the bytes or files of the whole archive pass a limit.
    """
    failures: list[list[str]] = []
    inner = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in ARCHIVE_EXTENSIONS
        and p.is_file()
        and not any(skipped(part) for part in p.relative_to(root).parts)
    )
    for path in inner:
        rel = path.relative_to(root).as_posix()
        if depth > max_depth:
            message = (
                f"archive {rel!r} is nested more than {max_depth} levels deep and was not "
                "extracted (AER_MAX_ARCHIVE_DEPTH)"
            )
            failures.append([rel, message, NestedArchiveError.code])
            continue
        work = path.with_name(f".{path.name}.extracting")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            extract_zip(path, work, max_files=budget.files_left, budget=budget)
        except ExtractLimitError:
            raise  # the whole archive is refused: a bomb may hide in any level
        except SourceError as exc:
            shutil.rmtree(work, ignore_errors=True)
            failures.append([rel, str(exc), exc.code])
            continue
        path.unlink()
        work.rename(path)  # the inner zip's folder takes its name, as an uploaded zip's does
        failures += _extract_nested(path, root, budget, depth=depth + 1, max_depth=max_depth)
    return failures


def _nested_failures(archive: str, target: Path) -> list[tuple[str, str, SourceError]]:
    try:
        rows = json.loads((target / NESTED_FAILURES).read_text())
    except FileNotFoundError:
        return []
    return nested_errors(archive, rows, lambda rel: str(target / rel))


def nested_errors(
    archive: str, rows: list[list[str]], location: Callable[[str], str]
) -> list[tuple[str, str, SourceError]]:
    """``Listing.failed`` entries of the inner zips of ``archive`` that were not extracted
    (rows of :func:`extract_archive`); ``location`` maps a path inside the archive to where
    it lies."""
    out = []
    for rel, message, code in rows:
        exc = NestedArchiveError(message)
        exc.code = code
        out.append((f"{archive}/{rel}", location(rel), exc))
    return out


def extract_zip(
    archive: Path,
    dest: Path,
    *,
    max_files: int,
    max_bytes: int | None = None,
    budget: ExtractBudget | None = None,
) -> int:
    """Extract the regular files of ``archive`` into ``dest``; returns how many.

    Bytes are counted against ``budget`` (or ``max_bytes``) as they are written.

    Raises:
        UnsafeArchiveError: an entry with an absolute path, ``..``, a drive or a link; more than
            ``max_files`` files.
        ExtractLimitError: more uncompressed bytes than the budget allows.
        BadArchiveError: not a readable zip archive.
        StorageError: the disk is full.
    """
    name = archive.name
    if budget is None:
        size = max_bytes if max_bytes is not None else 0
        budget = ExtractBudget(job_bytes=size, archive_bytes=size, files=max_files)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [(m, member_name(m)) for m in zf.infolist() if not m.is_dir()]
            for m, member in members:
                _check_member(name, m, member)
            if len(members) > max_files:
                raise UnsafeArchiveError(f"archive {name!r} holds more than {max_files} files")
            # What the directory claims is checked first, to refuse an honest bomb at once.
            budget.spend(name, files=len(members))
            claimed = sum(m.file_size for m, _ in members)
            if claimed > min(budget.archive_left, budget.job_left):
                budget.spend(name, size=claimed)
            for m, member in members:
                target = dest.joinpath(*PurePosixPath(member.replace("\\", "/")).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(target, "wb") as out:
                    # Count what is really written: the sizes in the directory can lie.
                    while block := src.read(_COPY_BLOCK):
                        budget.spend(name, size=len(block))
                        out.write(block)
            return len(members)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise BadArchiveError(f"archive {name!r} cannot be read: {exc}") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # full disk, quota, ulimit
            raise StorageError(f"no disk space left to extract archive {name!r}") from None
        raise


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


def tree_size(folder: Path) -> int:
    """Bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
