"""The files of a job over a bucket prefix or a list of URLs, as ``(rel_path, path)`` pairs.

A prefix is listed one page at a time (``list_objects_v2``), lazily: each page's audio objects
come out as one batch, so a prefix of a million objects is never held in memory. Nothing is
fetched here: each file is fetched when a chunk analyses it, and fails alone if it cannot be.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from api.store.objects import AddressError, S3Address, check_bucket, parse_s3, s3_client
from api.store.settings import Settings
from worker.sources import SourceError, is_listed, skipped

#: Keys asked for per listing request (S3 answers at most 1000).
PAGE_SIZE = 1000


def list_prefix(
    settings: Settings,
    source: str,
    *,
    recursive: bool = True,
    pattern: str | None = None,
    max_files: int,
    page_size: int = PAGE_SIZE,
) -> Iterator[list[tuple[str, str]]]:
    """The audio objects under the ``s3://bucket/prefix/`` ``source``, one batch per page of
    the listing: ``(key relative to the prefix, s3://bucket/key)``.

    Objects in hidden folders or with hidden names are skipped; without ``recursive`` only
    the objects directly under the prefix are listed.

    Raises:
        SourceError: the bucket is not (or no longer) allowed, cannot be listed (missing,
            access denied, unreachable), or holds more than ``max_files`` matching objects.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        address = parse_s3(source)
        check_bucket(settings, address)
    except AddressError as exc:
        raise SourceError(str(exc)) from None
    request = {"Bucket": address.bucket, "Prefix": address.key}
    if not recursive:
        request["Delimiter"] = "/"  # deeper keys come back as CommonPrefixes, not listed
    pages = (
        s3_client()
        .get_paginator("list_objects_v2")
        .paginate(**request, PaginationConfig={"PageSize": page_size})
    )
    found = 0
    try:
        for page in pages:
            batch = _audio_objects(address, page.get("Contents", ()), pattern, recursive)
            found += len(batch)
            if found > max_files:
                raise SourceError(f"{source} holds more than {max_files} audio files")
            if batch:
                yield batch
    except ClientError as exc:
        error = exc.response.get("Error", {})
        why = f"{error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
        raise SourceError(f"cannot list {source}: {why}") from None
    except BotoCoreError as exc:
        raise SourceError(f"cannot list {source}: {exc}") from None


def _audio_objects(
    address: S3Address, objects: Sequence[dict], pattern: str | None, recursive: bool
) -> list[tuple[str, str]]:
    batch = []
    for obj in objects:
        key = obj["Key"]
        rel = key[len(address.key) :]
        parts = rel.split("/")
        if not rel or rel.endswith("/") or (len(parts) > 1 and not recursive):
            continue  # a "folder" marker, or deeper than asked
        if not any(skipped(part) for part in parts) and is_listed(parts[-1], pattern):
            batch.append((rel, f"s3://{address.bucket}/{key}"))
    return batch


def list_urls(urls: Sequence[str]) -> list[tuple[str, str]]:
    """Each URL with a relative path made from its host and path (``host/dir/a.wav``), made
    unique when two URLs share one (``a-2.wav``): ``(rel_path, url)``."""
    taken: set[str] = set()
    listed = []
    for url in urls:
        parts = urlsplit(url)
        segments = [p for p in unquote(parts.path).split("/") if p not in ("", ".", "..")]
        rel = "/".join([parts.netloc.lower(), *(segments or ["index"])])
        suffix = PurePosixPath(rel).suffix
        stem = rel[: len(rel) - len(suffix)]
        n = 1
        while rel in taken:
            n += 1
            rel = f"{stem}-{n}{suffix}"
        taken.add(rel)
        listed.append((rel, url))
    return listed
