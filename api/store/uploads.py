"""The upload folder layout, shared by the API (which writes it) and the workers (which read it).

``<data_dir>/uploads/<job id>/`` (storage folder ``uploads/<job id>``) holds a job's uploaded
files under sanitized unique relative paths (an upload named ``d1/call.flac`` keeps its folder);
``.archives/`` and ``.staging/`` inside it hold extracted zips; ``<data_dir>/uploads/.incoming/``
holds file parts while a request is being read. Nothing here decodes audio: files are only
screened by extension and first bytes, so that plainly wrong uploads are refused at once.
"""

from __future__ import annotations

import os
import time
import unicodedata
from pathlib import Path

from api.store.settings import Settings
from core.audio import AUDIO_EXTENSIONS, sniff_container

__all__ = [
    "AUDIO_EXTENSIONS", "sniff", "upload_problem", "safe_name", "upload_dir", "upload_key",
]  # fmt: skip

ARCHIVE_EXTENSIONS = frozenset({".zip"})
#: Storage folder of every job's uploads (the data dir's ``uploads``).
UPLOADS = "uploads"
#: Hidden folders of an upload folder: archives already extracted, extractions in progress.
ARCHIVES_DIR = ".archives"
STAGING_DIR = ".staging"
#: Folder of the uploads folder where the API spools file parts while a request is read.
INCOMING_DIR = ".incoming"
#: Prefix of a spooled part's file name.
PART_PREFIX = "part-"
#: Longest stored file name, in UTF-8 bytes (filesystems allow 255).
MAX_NAME_BYTES = 200
#: Most folders kept in an upload's name (deeper ones are dropped).
MAX_DEPTH = 32


def upload_dir(settings: Settings, job_id: str) -> Path:
    """Where the uploaded files of job ``job_id`` are stored (and deleted with the job) when
    storage is local."""
    return settings.uploads_dir / job_id


def upload_key(job_id: str) -> str:
    """The storage folder of job ``job_id``'s uploads (see :mod:`api.store.storage`); locally
    the folder :func:`upload_dir`."""
    return f"{UPLOADS}/{job_id}"


def incoming_dir(uploads_dir: Path) -> Path:
    """Where file parts are spooled while requests are read."""
    return uploads_dir / INCOMING_DIR


def is_audio_name(name: str) -> bool:
    """Whether ``name`` has one of :data:`AUDIO_EXTENSIONS`."""
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def sniff(head: bytes) -> str | None:
    """``"audio"``, ``"zip"`` or ``None`` from the first bytes of a file."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    return "audio" if sniff_container(head) else None


def upload_problem(filename: str, head: bytes) -> str | None:
    """Why an upload named ``filename`` starting with ``head`` is refused, or None to accept.

    A file passes when its extension or its first bytes say audio (the worker decodes it and
    reports what is wrong, if anything); a ``.zip`` must also start like a zip archive.
    """
    ext = Path(filename).suffix.lower()
    kind = sniff(head)
    if ext in ARCHIVE_EXTENSIONS and kind != "zip":
        return f"{filename!r} is not a zip archive"
    if ext not in AUDIO_EXTENSIONS | ARCHIVE_EXTENSIONS and kind is None:
        return f"{filename!r} is neither audio nor a zip archive"
    return None


def _clean_part(part: str) -> str:
    """One path part without control characters, surrounding blanks or leading dots."""
    return "".join(ch for ch in part if ch.isprintable()).strip().lstrip(".").strip()


def _fit(name: str) -> str:
    """``name`` cut to :data:`MAX_NAME_BYTES` UTF-8 bytes, its extension kept."""
    stem, ext = os.path.splitext(name)
    while len((stem + ext).encode()) > MAX_NAME_BYTES and stem:
        stem = stem[:-1]
    return stem + ext if stem else ""


def safe_name(filename: str | None, taken: set[str], index: int) -> str:
    """A relative path safe to create in one folder, from an upload's name.

    Folders in the name (``d1/call.flac``, ``d1\\call.flac``) are kept, normalized: no absolute
    path, no ``..`` or ``.``, no hidden or empty parts, no control characters; Unicode is kept
    (NFC), each part at most ~200 bytes. Unique among ``taken`` (case-insensitively; updated),
    and never a file where another upload needs a folder, or the reverse.
    """
    raw = unicodedata.normalize("NFC", (filename or "").replace("\\", "/"))
    kept: list[str] = []
    for part in raw.split("/"):
        if part == "..":
            kept = kept[:-1]  # normalized like a path, never above the folder
        elif part not in ("", "."):
            kept.append(part)
    parts = [p for p in (_fit(_clean_part(p)) for p in kept) if p]
    folders = parts[:-1][:MAX_DEPTH]
    stem, ext = os.path.splitext(parts[-1] if parts else "")
    stem = stem or f"upload-{index}"
    prefixes = ["/".join(folders[: i + 1]) for i in range(len(folders))]
    if any(p.casefold() in taken for p in prefixes):  # a file already has a folder's name
        folders, prefixes = [], []
    head = "".join(f"{f}/" for f in folders)
    candidate, n = f"{head}{stem}{ext}", 1
    while candidate.casefold() in taken or f"{candidate}/".casefold() in taken:
        candidate, n = f"{head}{stem}-{n}{ext}", n + 1
    taken.add(candidate.casefold())
    taken.update(f"{p}/".casefold() for p in prefixes)
    return candidate


#: Spooled upload parts untouched this long belong to a request that died with its process.
STALE_PART_S = 24 * 3600
#: How often one API process looks for stale parts itself (see :func:`tidy_incoming`).
TIDY_EVERY_S = 3600
_last_tidy: dict[Path, float] = {}


def tidy_incoming(uploads_dir: Path) -> int:
    """:func:`remove_stale_parts` older than :data:`STALE_PART_S`, at most once an hour per
    process. The API calls it after uploads: with a bucket ``AER_STORAGE_URL`` no worker's
    sweep sees the API host's spool folder."""
    now = time.monotonic()
    if now - _last_tidy.get(uploads_dir, -TIDY_EVERY_S) < TIDY_EVERY_S:
        return 0
    _last_tidy[uploads_dir] = now
    return remove_stale_parts(uploads_dir, older_than_s=STALE_PART_S)


def remove_stale_parts(uploads_dir: Path, *, older_than_s: float) -> int:
    """Delete spooled upload parts untouched for ``older_than_s`` (left by an API process that
    died mid-request); returns how many. A live request's parts are younger: they are written
    as the body arrives and moved or deleted when it ends."""
    cutoff = time.time() - older_than_s
    removed = 0
    for part in incoming_dir(uploads_dir).glob(f"{PART_PREFIX}*"):
        try:
            if part.stat().st_mtime < cutoff:
                part.unlink()
                removed += 1
        except FileNotFoundError:  # moved or removed by its request meanwhile
            pass
    return removed
