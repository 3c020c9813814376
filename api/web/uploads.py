"""Uploaded files: spooled straight to disk while the request is read, screened, moved into place
(or streamed to the bucket of ``AER_STORAGE_URL``).

The request class below makes werkzeug write every multipart file part into a temporary file
inside ``<data_dir>/uploads/.incoming`` while the body is parsed, so saving an upload is a rename
on the same filesystem, never a second copy, and memory stays flat whatever the upload size.
Nothing here decodes audio: a file is only screened so that plainly wrong uploads get a 415.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

from flask import Request, current_app
from werkzeug.datastructures import FileStorage

from api.store.storage import Storage
from api.store.uploads import PART_PREFIX, incoming_dir, safe_name, upload_problem
from api.web.errors import APIError

#: Bytes a part may write between two looks at the disk's free space.
FREE_CHECK_BYTES = 8 * 2**20


class DiskPart:
    """One uploaded file part, written straight to the file ``name``.

    It holds a file descriptor only while the part is written or read, so a request carrying
    thousands of files cannot exhaust the process's descriptors.
    """

    def __init__(self, name: str, *, min_free: int = 0) -> None:
        self.name = name
        self.min_free = min_free
        self._unchecked = 0  # bytes written since free space was last looked at
        self._fh: IO[bytes] | None = open(name, "wb")  # noqa: SIM115 - closed by seek/close

    def write(self, data: bytes) -> int:
        if self.min_free and (not self._unchecked or self._unchecked > FREE_CHECK_BYTES):
            self._check_space()
        self._unchecked += len(data)
        return self._fh.write(data)

    def _check_space(self) -> None:
        """Fail as a full disk would when less than ``min_free`` bytes are free, so that one
        upload cannot take the last space the database and the workers need."""
        self._unchecked = 0
        if shutil.disk_usage(os.path.dirname(self.name)).free < self.min_free:
            raise OSError(errno.ENOSPC, "less free disk space than AER_MIN_FREE_MB")

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
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()  # may raise ENOSPC while flushing: the descriptor is released anyway

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
        settings = current_app.config["AER_SETTINGS"]
        if len(self.spooled) >= settings.max_files_per_job:
            raise APIError(
                f"the upload has more than {settings.max_files_per_job} file parts "
                "(AER_MAX_FILES_PER_JOB)",
                status=413,
                code="too_many_files",
            )
        folder = incoming_dir(Path(current_app.config["AER_UPLOAD_DIR"]))
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=PART_PREFIX)
        os.close(fd)
        part = DiskPart(name, min_free=settings.min_free_mb * 2**20)
        self.spooled.append(part)
        return part  # type: ignore[return-value]  # file-like enough for werkzeug

    @property
    def spooled(self) -> list[DiskPart]:
        """Parts written for this request (removed at teardown unless moved)."""
        return self.__dict__.setdefault("_aer_spooled", [])


def discard_spooled(request: Request) -> None:
    """Close the parts of ``request``; remove those not moved into a job folder."""
    for part in getattr(request, "spooled", ()):
        try:
            part.close()
        except OSError:  # a full disk fails the last flush; the part goes all the same
            pass
        finally:
            Path(part.name).unlink(missing_ok=True)


def _head(storage: FileStorage, size: int = 16) -> bytes:
    stream = storage.stream
    stream.seek(0)
    head = stream.read(size)
    stream.seek(0)
    if isinstance(stream, DiskPart):
        stream.close()  # one descriptor at a time, however many files
    return head


def upload_size(storage: FileStorage) -> int:
    """Bytes of one uploaded file (already spooled to disk)."""
    stream = storage.stream
    if isinstance(stream, DiskPart):
        stream.close()
        return os.path.getsize(stream.name)
    position = stream.tell()
    size = stream.seek(0, os.SEEK_END)
    stream.seek(position)
    return size


def check_uploads(files: list[FileStorage]) -> None:
    """Raise a 415 :class:`APIError` naming the first upload that is plainly not audio or zip
    (see :func:`api.store.uploads.upload_problem`)."""
    for storage in files:
        problem = upload_problem(storage.filename or "", _head(storage))
        if problem:
            raise APIError(problem, status=415, code="not_audio")


def save_uploads(files: list[FileStorage], storage: Storage, folder: str) -> list[str]:
    """Store every upload under the storage folder ``folder`` with a sanitized unique relative
    path (folders in the upload's name are kept, see :func:`api.store.uploads.safe_name`);
    returns the paths. Locally a spooled part is renamed into place; to a bucket it is
    streamed, then deleted."""
    taken: set[str] = set()
    names = []
    for index, storage_part in enumerate(files):
        name = safe_name(storage_part.filename, taken, index)
        stream = storage_part.stream
        if isinstance(stream, DiskPart):
            stream.close()
            storage.put_file(f"{folder}/{name}", Path(stream.name))
        else:  # parsed without our request class: spooled here first, in chunks
            spool = incoming_dir(Path(current_app.config["AER_UPLOAD_DIR"]))
            spool.mkdir(parents=True, exist_ok=True)
            fd, part = tempfile.mkstemp(dir=spool, prefix=PART_PREFIX)
            os.close(fd)
            try:
                storage_part.save(part)
                storage.put_file(f"{folder}/{name}", Path(part))
            finally:
                Path(part).unlink(missing_ok=True)
        names.append(name)
    return names
