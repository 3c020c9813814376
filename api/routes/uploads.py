"""Uploaded files: spooled straight to disk, screened by name and magic bytes, moved into place.

The request class below makes werkzeug write every multipart file part into a temporary file
inside ``<data_dir>/uploads/.incoming`` while the body is parsed, so saving an upload is a rename
on the same filesystem, never a second copy, and memory stays flat whatever the upload size.
Nothing here decodes audio: a file is only screened so that plainly wrong uploads get a 415.
"""

from __future__ import annotations

import os
import tempfile
import unicodedata
from pathlib import Path
from typing import IO

from flask import Request, current_app
from werkzeug.datastructures import FileStorage

from api.errors import APIError
from worker.sources import AUDIO_EXTENSIONS, INCOMING_DIR  # shared with the worker

ARCHIVE_EXTENSIONS = frozenset({".zip"})
#: Longest stored file name, in UTF-8 bytes (filesystems allow 255).
MAX_NAME_BYTES = 200


def incoming_dir() -> Path:
    """Where file parts of the current app's requests are spooled."""
    return Path(current_app.config["AER_UPLOAD_DIR"]) / INCOMING_DIR


class DiskPart:
    """One uploaded file part, written straight to the file ``name``.

    It holds a file descriptor only while the part is written or read, so a request carrying
    thousands of files cannot exhaust the process's descriptors.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._fh: IO[bytes] | None = open(name, "wb")  # noqa: SIM115 - closed by seek/close

    def write(self, data: bytes) -> int:
        return self._fh.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        if self._fh is not None and "w" in self._fh.mode:  # the part is complete
            self.close()
        if self._fh is None and offset == 0 and whence == 0:
            return 0  # a rewind: the next read opens the file at its start
        return self._reader().seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        return self._reader().read(size)

    def readline(self, size: int = -1) -> bytes:
        return self._reader().readline(size)

    def tell(self) -> int:
        return self._reader().tell()

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        """Release the descriptor (reading again reopens the file)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _reader(self) -> IO[bytes]:
        if self._fh is None:
            self._fh = open(self.name, "rb")  # noqa: SIM115 - closed by close()
        return self._fh


class UploadRequest(Request):
    """A request whose uploaded files are spooled to named files next to their destination."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        if filename is None:
            return super()._get_file_stream(total_content_length, content_type, filename)
        folder = incoming_dir()
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix="part-")
        os.close(fd)
        part = DiskPart(name)
        self.spooled.append(part)
        return part  # type: ignore[return-value]  # file-like enough for werkzeug

    @property
    def spooled(self) -> list[DiskPart]:
        """Parts written for this request (removed at teardown unless moved)."""
        return self.__dict__.setdefault("_aer_spooled", [])


def discard_spooled(request: Request) -> None:
    """Close the parts of ``request``; remove those not moved into a job folder."""
    for part in getattr(request, "spooled", ()):
        part.close()
        Path(part.name).unlink(missing_ok=True)


def sniff(head: bytes) -> str | None:
    """``"audio"``, ``"zip"`` or ``None`` from the first bytes of a file."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "audio"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio"
    if head[4:8] == b"ftyp" or head[:4] in (b"fLaC", b"OggS", b".snd", b"caff", b"wvpk"):
        return "audio"
    if head.startswith(b"ID3") or head.startswith(b"riff"):  # MP3 with tags / Sony Wave64
        return "audio"
    if head.startswith(b"\x1a\x45\xdf\xa3") or head.startswith(b"\x30\x26\xb2\x75"):  # mkv/asf
        return "audio"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG/ADTS frame sync
        return "audio"
    return None


def _head(storage: FileStorage, size: int = 16) -> bytes:
    stream = storage.stream
    stream.seek(0)
    head = stream.read(size)
    stream.seek(0)
    if isinstance(stream, DiskPart):
        stream.close()  # one descriptor at a time, however many files
    return head


def check_uploads(files: list[FileStorage]) -> None:
    """Raise a 415 :class:`APIError` naming the first upload that is plainly not audio or zip.

    A file passes when its extension or its first bytes say audio (the worker decodes it and
    reports what is wrong, if anything); a ``.zip`` must also start like a zip archive.
    """
    for storage in files:
        ext = Path(storage.filename or "").suffix.lower()
        kind = sniff(_head(storage))
        if ext in ARCHIVE_EXTENSIONS and kind != "zip":
            raise _not_audio(f"{storage.filename!r} is not a zip archive")
        if ext not in AUDIO_EXTENSIONS | ARCHIVE_EXTENSIONS and kind is None:
            raise _not_audio(f"{storage.filename!r} is neither audio nor a zip archive")


def _not_audio(message: str) -> APIError:
    return APIError(message, status=415, code="not_audio")


def safe_name(filename: str | None, taken: set[str], index: int) -> str:
    """A file name safe to create in one folder: the upload's base name (Unicode kept), no
    folders, no traversal, no hidden or control characters, at most ~200 bytes, unique."""
    base = unicodedata.normalize("NFC", (filename or "").replace("\\", "/").rsplit("/", 1)[-1])
    base = "".join(ch for ch in base if ch.isprintable()).strip().lstrip(".").strip()
    stem, ext = os.path.splitext(base)
    while len((stem + ext).encode()) > MAX_NAME_BYTES and stem:
        stem = stem[:-1]
    stem = stem or f"upload-{index}"
    candidate, n = stem + ext, 1
    while candidate.casefold() in taken:
        candidate, n = f"{stem}-{n}{ext}", n + 1
    taken.add(candidate.casefold())
    return candidate


def save_uploads(files: list[FileStorage], folder: Path) -> list[str]:
    """Move every upload into ``folder`` under a sanitized unique name; returns the names."""
    folder.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    names = []
    for index, storage in enumerate(files):
        name = safe_name(storage.filename, taken, index)
        stream = storage.stream
        if isinstance(stream, DiskPart):
            stream.close()
            os.replace(stream.name, folder / name)  # same filesystem: a rename, not a copy
        else:  # parsed without our request class: copy in chunks
            storage.save(folder / name)
        names.append(name)
    return names
