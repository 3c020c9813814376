"""Where uploads, extracted archives and custom models are kept: the data dir or a bucket.

Keys are relative POSIX paths: ``uploads/<job id>/<rel>``, ``models/<tenant>/<name>.skops``.
:func:`open_storage` picks the kind from ``AER_STORAGE_URL``: unset, :class:`LocalStorage` over
the data dir (the layout of earlier versions, unchanged); ``s3://bucket/prefix``,
:class:`S3Storage` under that prefix, so that processes on hosts without a shared disk see the
same objects. Large objects move as files (a rename, or boto3's streamed multipart transfer) and
are read in blocks: never whole in memory. A *folder* argument is a key prefix without its
trailing slash: the keys under ``folder/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from api.store.errors import StoreError
from api.store.objects import is_s3, parse_s3, s3_client
from api.store.settings import Settings

#: Bytes per block when an object is read or copied.
BLOCK = 1 << 20
#: Keys per ``DeleteObjects`` request (S3's limit).
DELETE_BATCH = 1000


class StorageUnavailableError(StoreError, OSError):
    """The bucket could not be read or written (network, permissions, missing bucket)."""

    status = 503
    code = "storage_unavailable"


class StoredTooLargeError(StoreError, OSError):
    """An object is larger than the caller allows to copy."""

    status = 413
    code = "too_large"


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key, size in bytes, last change and entity tag."""

    key: str
    size: int
    modified: datetime
    etag: str = ""


class Storage(ABC):
    """Objects under keys, with folders as key prefixes."""

    #: Whether :meth:`location` gives paths on this host's disk.
    local: bool = False

    @abstractmethod
    def location(self, key: str) -> str:
        """Where ``key`` lives, as file rows record it: an absolute path or ``s3://...``."""

    @abstractmethod
    def key_of(self, location: str) -> str | None:
        """The key of a :meth:`location` of this storage, or None when it lies elsewhere."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store the local file ``path`` as ``key``; ``path`` is consumed (moved or deleted)."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store a small object, replacing any."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes | None:
        """A small object's bytes, or None when there is none."""

    @abstractmethod
    def download(self, key: str, dest: Path, *, limit: int | None = None) -> None:
        """Copy ``key`` into the local file ``dest`` block by block.

        Raises:
            StoredTooLargeError: the object is larger than ``limit`` bytes.
            FileNotFoundError: no such object.
        """

    @abstractmethod
    def list(self, folder: str) -> Iterator[ObjectInfo]:
        """Every object under ``folder``, lazily (in key order for a bucket)."""

    @abstractmethod
    def folders(self, folder: str) -> list[str]:
        """Names of the sub-folders of ``folder`` (hidden ones skipped), sorted."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """The object ``key``, or None."""

    @abstractmethod
    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (inclusive) of ``key``, block by block."""

    @abstractmethod
    def delete(self, key: str) -> int:
        """Delete one object if present; returns the bytes freed."""

    @abstractmethod
    def delete_folder(self, folder: str) -> int:
        """Delete every object under ``folder``; returns the bytes freed."""

    def exists(self, key: str) -> bool:
        """Whether the object ``key`` exists."""
        return self.stat(key) is not None

    def modified(self, folder: str) -> datetime | None:
        """When ``folder`` last changed (its newest object for a bucket), or None if empty."""
        return max((info.modified for info in self.list(folder)), default=None)


class LocalStorage(Storage):
    """Keys as files under ``root`` (the data dir)."""

    local = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.root / key

    def location(self, key: str) -> str:
        return str(self.path(key))

    def key_of(self, location: str) -> str | None:
        path = Path(location)
        if is_s3(location) or not path.is_absolute() or ".." in path.parts:
            return None
        if not path.is_relative_to(self.root):
            return None
        return path.relative_to(self.root).as_posix()

    def put_file(self, key: str, path: Path) -> None:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, dest)  # same filesystem: a rename, not a copy
        except OSError:
            shutil.move(path, dest)

    def put_bytes(self, key: str, data: bytes) -> None:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=".put-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(name, dest)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def download(self, key: str, dest: Path, *, limit: int | None = None) -> None:
        source = self.path(key)
        if limit is not None and source.stat().st_size > limit:
            raise StoredTooLargeError(f"{key} is larger than {limit >> 20} MB")
        shutil.copyfile(source, dest)

    def list(self, folder: str) -> Iterator[ObjectInfo]:
        top = self.path(folder)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                info = self._info(Path(dirpath, name))
                if info is not None:
                    yield info

    def folders(self, folder: str) -> list[str]:
        top = self.path(folder)
        if not top.is_dir():
            return []
        return sorted(p.name for p in top.iterdir() if p.is_dir() and not p.name.startswith("."))

    def stat(self, key: str) -> ObjectInfo | None:
        path = self.path(key)
        return self._info(path) if path.is_file() else None

    def _info(self, path: Path) -> ObjectInfo | None:
        try:
            st = path.stat()
        except FileNotFoundError:  # removed meanwhile
            return None
        modified = datetime.fromtimestamp(st.st_mtime, UTC)
        key = path.relative_to(self.root).as_posix()
        return ObjectInfo(key, st.st_size, modified, f"{st.st_size:x}-{st.st_mtime_ns:x}")

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        with open(self.path(key), "rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0 and (block := fh.read(min(BLOCK, left))):
                left -= len(block)
                yield block

    def delete(self, key: str) -> int:
        path = self.path(key)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def delete_folder(self, folder: str) -> int:
        top = self.path(folder)
        if not top.is_dir() or top.is_symlink():
            return 0
        size = sum(info.size for info in self.list(folder))
        shutil.rmtree(top, ignore_errors=True)
        return size

    def modified(self, folder: str) -> datetime | None:
        try:  # the folder's own time, as earlier versions judged orphans by
            return datetime.fromtimestamp(self.path(folder).stat().st_mtime, UTC)
        except FileNotFoundError:
            return None


class S3Storage(Storage):
    """Keys as objects of ``bucket`` under ``prefix`` (boto3's client from ``AWS_*``)."""

    def __init__(self, bucket: str, prefix: str = "") -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def __repr__(self) -> str:
        return f"S3Storage({self.bucket!r}, {self.prefix!r})"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _strip(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def key_of(self, location: str) -> str | None:
        head = self.location("")
        return location[len(head) :] if location.startswith(head) else None

    def put_file(self, key: str, path: Path) -> None:
        with _unavailable(key):
            s3_client().upload_file(str(path), self.bucket, self._key(key))  # multipart
        Path(path).unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        with _unavailable(key):
            s3_client().put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get_bytes(self, key: str) -> bytes | None:
        with _unavailable(key, missing=None) as found:
            answer = s3_client().get_object(Bucket=self.bucket, Key=self._key(key))
            with contextlib.closing(answer["Body"]) as body:
                return body.read()
        return found.value

    def download(self, key: str, dest: Path, *, limit: int | None = None) -> None:
        with _unavailable(key, missing=FileNotFoundError(key)):
            answer = s3_client().get_object(Bucket=self.bucket, Key=self._key(key))
            with contextlib.closing(answer["Body"]) as body, open(dest, "wb") as out:
                written = 0
                for block in body.iter_chunks(BLOCK):
                    written += len(block)
                    if limit is not None and written > limit:
                        raise StoredTooLargeError(f"{key} is larger than {limit >> 20} MB")
                    out.write(block)

    def list(self, folder: str) -> Iterator[ObjectInfo]:
        pages = s3_client().get_paginator("list_objects_v2")
        with _unavailable(folder):
            for page in pages.paginate(Bucket=self.bucket, Prefix=self._key(folder) + "/"):
                for item in page.get("Contents", ()):
                    yield ObjectInfo(
                        self._strip(item["Key"]),
                        item["Size"],
                        item["LastModified"],
                        item.get("ETag", "").strip('"'),
                    )

    def folders(self, folder: str) -> list[str]:
        pages = s3_client().get_paginator("list_objects_v2")
        head = self._key(folder) + "/"
        names = []
        with _unavailable(folder):
            for page in pages.paginate(Bucket=self.bucket, Prefix=head, Delimiter="/"):
                for item in page.get("CommonPrefixes", ()):
                    name = item["Prefix"][len(head) :].rstrip("/")
                    if name and not name.startswith("."):
                        names.append(name)
        return sorted(names)

    def stat(self, key: str) -> ObjectInfo | None:
        with _unavailable(key, missing=None) as found:
            head = s3_client().head_object(Bucket=self.bucket, Key=self._key(key))
            etag = head.get("ETag", "").strip('"')
            return ObjectInfo(key, head["ContentLength"], head["LastModified"], etag)
        return found.value

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        with _unavailable(key):
            answer = s3_client().get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{end}"
            )
            with contextlib.closing(answer["Body"]) as body:
                yield from body.iter_chunks(BLOCK)

    def delete(self, key: str) -> int:
        info = self.stat(key)
        if info is None:
            return 0
        with _unavailable(key):
            s3_client().delete_object(Bucket=self.bucket, Key=self._key(key))
        return info.size

    def delete_folder(self, folder: str) -> int:
        freed, batch = 0, []
        for info in self.list(folder):
            freed += info.size
            batch.append(info.key)
            if len(batch) == DELETE_BATCH:
                self._delete_many(batch)
                batch = []
        if batch:
            self._delete_many(batch)
        return freed

    def _delete_many(self, keys: list[str]) -> None:
        objects = [{"Key": self._key(k)} for k in keys]
        with _unavailable(keys[0]):
            s3_client().delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )


class _Found:
    value = None


@contextlib.contextmanager
def _unavailable(key: str, *, missing: object = ...) -> Iterator[_Found]:
    """Boto3's errors as :class:`StorageUnavailableError`; a missing object, when ``missing``
    is given, ends the block with ``missing`` as the value (or raised, if an exception)."""
    from botocore.exceptions import BotoCoreError, ClientError

    found = _Found()
    try:
        yield found
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "?"))
        if missing is not ... and code in ("404", "NoSuchKey", "NotFound"):
            if isinstance(missing, BaseException):
                raise missing from None
            found.value = missing
            return
        raise StorageUnavailableError(
            f"storage cannot serve {key}: {code} {error.get('Message', '')}".strip()
        ) from None
    except BotoCoreError as exc:
        raise StorageUnavailableError(f"storage cannot serve {key}: {exc}") from None


def open_storage(settings: Settings) -> Storage:
    """The storage of ``AER_STORAGE_URL``: the data dir when unset, else the bucket and prefix."""
    if not settings.storage_url:
        return LocalStorage(settings.data_dir)
    address = parse_s3(settings.storage_url)
    return S3Storage(address.bucket, address.key)
