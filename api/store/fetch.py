"""Local copies of files that live in a bucket or behind a URL, bounded in size.

A file row's ``path`` is a local path, an ``s3://bucket/key`` or an ``https://`` URL.
:func:`local_copy` gives a local path for any of them: the path itself, or a temporary file
under ``<data dir>/tmp`` that the object is streamed into block by block (never held in memory)
and that is deleted afterwards. A fetch stops at ``AER_MAX_FETCH_MB``.
:class:`Prefetch` fetches the next files of a chunk while the current one is analysed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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


def is_remote(location: str) -> bool:
    """Whether ``location`` must be fetched (a bucket object or a URL, not a local path)."""
    return is_s3(location) or is_url(location)


@contextlib.contextmanager
def local_copy(settings: Settings, location: str) -> Iterator[Path]:
    """A local path holding the file at ``location`` while the block runs.

    Raises:
        FetchError: the object or URL cannot be read (missing, refused, too large, network).
    """
    if not is_remote(location):
        yield Path(location)
        return
    path = fetch_to_temp(settings, location)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def fetch_to_temp(settings: Settings, location: str) -> Path:
    """Stream the bucket object or URL ``location`` into a new file under ``<data dir>/tmp``;
    the caller deletes it.

    Raises:
        FetchError: it cannot be read (missing, refused, too large, network); nothing is left.
    """
    settings.temp_dir.mkdir(parents=True, exist_ok=True)
    suffix = PurePosixPath(urlsplit(location).path).suffix[:16]
    fd, name = tempfile.mkstemp(dir=settings.temp_dir, prefix="fetch-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            if is_s3(location):
                _fetch_s3(settings, location, out)
            else:
                _fetch_url(settings, location, out)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


class Prefetch:
    """Local copies of a chunk's files, fetched in order by one background thread up to
    ``ahead`` files before the one in use, so that downloading the next file overlaps with
    analysing this one. Local paths are used where they are. At most ``ahead + 1`` temporary
    files exist at once; :meth:`close` deletes what is left.
    """

    def __init__(self, settings: Settings, locations: Iterable[str], *, ahead: int = 1) -> None:
        self.settings = settings
        self.ahead = ahead
        self._todo = iter(locations)
        self._queued: deque[tuple[str, Future[Path] | None]] = deque()
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self) -> None:
        while len(self._queued) <= self.ahead:
            location = next(self._todo, None)
            if location is None:
                return
            future = None
            if is_remote(location):
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="aer-fetch")
                future = self._pool.submit(fetch_to_temp, self.settings, location)
            self._queued.append((location, future))

    @contextlib.contextmanager
    def next(self, location: str) -> Iterator[Path]:
        """The local copy of ``location``, the next of the locations given, while the block runs.

        Raises:
            FetchError: it could not be fetched.
        """
        self._fill()
        queued, future = self._queued[0] if self._queued else (None, None)
        if queued != location:
            raise ValueError(f"expected {queued!r} next, got {location!r}")
        self._queued.popleft()
        self._fill()  # the following file downloads while this one is used
        if future is None:
            yield Path(location)
            return
        path = future.result()
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop fetching; delete the copies fetched but not used (now or when they finish)."""
        for _, future in self._queued:
            if future is not None and not future.cancel():
                future.add_done_callback(_discard)
        self._queued.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _discard(future: Future[Path]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().unlink(missing_ok=True)


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
