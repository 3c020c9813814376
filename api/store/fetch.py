"""Local copies of files that live in a bucket or behind a URL, bounded in size.

A file row's ``path`` is a local path, an ``s3://bucket/key`` or an ``https://`` URL.
:func:`local_copy` gives a local path for any of them: the path itself, or a temporary file
under ``<data dir>/tmp`` that the object is streamed into block by block (never held in memory)
and that is deleted afterwards. A fetch stops at ``AER_MAX_FETCH_MB``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import urlsplit

from api.store.objects import AddressError, check_url, is_s3, is_url, parse_s3, s3_client
from api.store.settings import Settings
from core.errors import AERError

#: Bytes read per block while streaming an object to disk.
BLOCK = 1 << 20


class FetchError(AERError, OSError):
    """A file in a bucket or behind a URL could not be fetched; its file fails with this."""

    code = "fetch_failed"


class FetchTooLargeError(FetchError):
    """The object is larger than ``AER_MAX_FETCH_MB``."""

    code = "too_large"


@contextlib.contextmanager
def local_copy(settings: Settings, location: str) -> Iterator[Path]:
    """A local path holding the file at ``location`` while the block runs.

    Raises:
        FetchError: the object or URL cannot be read (missing, refused, too large, network).
    """
    if not (is_s3(location) or is_url(location)):
        yield Path(location)
        return
    settings.temp_dir.mkdir(parents=True, exist_ok=True)
    suffix = PurePosixPath(urlsplit(location).path).suffix[:16]
    fd, name = tempfile.mkstemp(dir=settings.temp_dir, prefix="fetch-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            if is_s3(location):
                _fetch_s3(settings, location, out)
            else:
                _fetch_url(settings, location, out)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _limit(settings: Settings, location: str = "") -> int:
    if settings.storage_url and location.startswith(settings.storage_url + "/"):
        # The service's own storage: uploads and the members of its zips, which may be as
        # large as an archive may expand to.
        largest = max(settings.max_upload_mb, settings.max_archive_extract_mb)
        return max(settings.max_fetch_mb, largest) * 2**20
    return settings.max_fetch_mb * 2**20


def _copy(blocks: Iterator[bytes], out: IO[bytes], limit: int, what: str) -> None:
    written = 0
    for block in blocks:
        written += len(block)
        if written > limit:
            raise FetchTooLargeError(f"{what} is larger than the limit of {limit >> 20} MB")
        out.write(block)


def _fetch_s3(settings: Settings, location: str, out: IO[bytes]) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        address = parse_s3(location)
        answer = s3_client().get_object(Bucket=address.bucket, Key=address.key)
        limit = _limit(settings, location)
        if answer.get("ContentLength", 0) > limit:
            raise FetchTooLargeError(f"{location} is larger than the limit of {limit >> 20} MB")
        body = answer["Body"]
        with contextlib.closing(body):
            _copy(body.iter_chunks(BLOCK), out, limit, location)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise FetchError(
            f"cannot read {location}: {error.get('Code', '?')} {error.get('Message', '')}".strip()
        ) from None
    except (BotoCoreError, AddressError) as exc:
        raise FetchError(f"cannot read {location}: {exc}") from None


def _fetch_url(settings: Settings, url: str, out: IO[bytes]) -> None:
    import urllib3

    try:
        check_url(settings, url)  # again at fetch time: the allowed hosts may have changed
    except AddressError as exc:
        raise FetchError(str(exc)) from None
    timeout = urllib3.Timeout(connect=settings.fetch_timeout_s, read=settings.fetch_timeout_s)
    try:
        answer = _pool().request(
            "GET", url, preload_content=False, redirect=False, timeout=timeout, retries=False
        )
    except urllib3.exceptions.HTTPError as exc:
        raise FetchError(f"cannot fetch {url}: {exc}") from None
    try:
        if answer.status != 200:
            raise FetchError(f"cannot fetch {url}: HTTP {answer.status}")
        length = answer.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > _limit(settings):
            raise FetchTooLargeError(
                f"{url} is larger than the limit of {settings.max_fetch_mb} MB"
            )
        _copy(answer.stream(BLOCK), out, _limit(settings), url)
    except urllib3.exceptions.HTTPError as exc:
        raise FetchError(f"cannot fetch {url}: {exc}") from None
    finally:
        answer.release_conn()


_pools: dict[int, object] = {}


def _pool():
    """This process's connection pool. Certificates are checked against the system's bundle
    (OpenSSL's ``SSL_CERT_FILE`` points elsewhere, e.g. at a private CA)."""
    import urllib3

    pid = os.getpid()
    if pid not in _pools:
        _pools[pid] = urllib3.PoolManager()
    return _pools[pid]
