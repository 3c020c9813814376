"""Object-storage and URL addresses: parsing, the S3 client, and who may read what.

``s3://bucket/key`` names an object of an S3-compatible store. The client is boto3's, configured
the usual way (``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` for a MinIO or other compatible
server, ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or a profile or
an instance role): AER adds no variables of its own for them. Jobs may only read buckets listed
in ``AER_ALLOWED_BUCKETS`` and URLs on hosts listed in ``AER_ALLOWED_URL_HOSTS``.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from api.store.errors import StoreError
from api.store.settings import Settings

if TYPE_CHECKING:
    from botocore.client import BaseClient

#: Bucket names as S3 allows them (lower case, digits, dots and dashes; 3 to 63 characters).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_clients: dict[int, BaseClient] = {}
_lock = threading.Lock()


class AddressError(StoreError):
    """An ``s3://`` or ``https://`` address is malformed, or not allowed for this service."""

    status = 400
    code = "bad_source"


class NotAllowedError(AddressError):
    """The bucket or host is not in ``AER_ALLOWED_BUCKETS`` / ``AER_ALLOWED_URL_HOSTS``."""

    status = 403
    code = "source_not_allowed"


@dataclass(frozen=True)
class S3Address:
    """A bucket and a key (or key prefix) in it."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def child(self, name: str) -> S3Address:
        """The address of ``name`` under this one, as under a folder."""
        head = self.key.rstrip("/")
        return S3Address(self.bucket, f"{head}/{name}" if head else name)


def is_s3(location: str) -> bool:
    """Whether ``location`` is an ``s3://`` address."""
    return location.startswith("s3://")


def is_url(location: str) -> bool:
    """Whether ``location`` is an ``http(s)://`` address."""
    return location.startswith(("https://", "http://"))


def parse_s3(url: str) -> S3Address:
    """``s3://bucket/some/key`` as an :class:`S3Address`.

    Raises:
        AddressError: not an ``s3://`` address with a valid bucket name, or a key with ``..``
            or control characters.
    """
    if not is_s3(url):
        raise AddressError(f"{url!r} is not an s3://bucket/prefix address")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise AddressError(f"{bucket!r} is not a valid bucket name")
    if ".." in key.split("/") or any(not ch.isprintable() for ch in key):
        raise AddressError(f"the key {key!r} holds '..' or control characters")
    return S3Address(bucket, key)


def check_bucket(settings: Settings, address: S3Address) -> None:
    """Refuse ``address`` unless ``AER_ALLOWED_BUCKETS`` lists its bucket, or a prefix of it
    that ``address`` lies under (``bucket/calls`` allows ``s3://bucket/calls/2026/``).

    Raises:
        NotAllowedError: not allowed.
    """
    for allowed in settings.allowed_buckets:
        bucket, _, prefix = allowed.partition("/")
        if bucket == address.bucket and (
            not prefix or address.key == prefix or address.key.startswith(prefix + "/")
        ):
            return
    raise NotAllowedError(
        f"bucket {address.bucket!r} (prefix {address.key!r}) is not in AER_ALLOWED_BUCKETS"
    )


def check_url(settings: Settings, url: str) -> str:
    """``url`` if it is an ``https://`` address on a host of ``AER_ALLOWED_URL_HOSTS``
    (``*.example.com`` allows its subdomains); returns it unchanged.

    Raises:
        AddressError: not an https URL, or it carries credentials.
        NotAllowedError: the host is not allowed.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise AddressError(f"{url!r} is not a valid URL") from None
    if parts.scheme != "https" or not host:
        raise AddressError(f"{url!r} is not an https:// URL")
    if parts.username or parts.password:
        raise AddressError("URLs may not carry a user name or password")
    if not any(
        fnmatch.fnmatchcase(host, pattern.lower()) for pattern in settings.allowed_url_hosts
    ):
        raise NotAllowedError(f"host {host!r} is not in AER_ALLOWED_URL_HOSTS")
    return url


def s3_client() -> BaseClient:
    """The boto3 S3 client of this process (one per process: a forked worker makes its own)."""
    import os

    pid = os.getpid()
    with _lock:
        client = _clients.get(pid)
        if client is None:
            import boto3
            from botocore.config import Config

            # Path-style addressing: compatible servers (MinIO, moto) rarely serve virtual hosts.
            config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard"})
            client = _clients[pid] = boto3.session.Session().client("s3", config=config)
        return client
