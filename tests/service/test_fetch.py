"""Addresses, allow-lists and bounded local copies of objects in a real S3-compatible server."""

from __future__ import annotations

import pytest

from api.store.fetch import FetchError, FetchTooLargeError, local_copy
from api.store.objects import (
    AddressError,
    NotAllowedError,
    S3Address,
    check_bucket,
    check_url,
    parse_s3,
    s3_client,
)
from api.store.settings import load_settings


def make_settings(tmp_path, **env):
    return load_settings({"AER_DATA_DIR": str(tmp_path), **env})


def test_parse_s3_addresses():
    assert parse_s3("s3://calls/2026/12/a.wav") == S3Address("calls", "2026/12/a.wav")
    assert str(parse_s3("s3://calls")) == "s3://calls/"
    assert parse_s3("s3://calls/x/").child("a.wav") == S3Address("calls", "x/a.wav")
    for bad in ("calls/x", "s3://Calls/x", "s3://a/../x", "s3://calls/a\x00b"):
        with pytest.raises(AddressError):
            parse_s3(bad)


def test_buckets_and_hosts_must_be_allowed(tmp_path):
    settings = make_settings(
        tmp_path,
        AER_ALLOWED_BUCKETS="open, calls/team-a",
        AER_ALLOWED_URL_HOSTS="media.example.com,*.cdn.example.org",
    )
    check_bucket(settings, parse_s3("s3://open/anything/"))
    check_bucket(settings, parse_s3("s3://calls/team-a/2026/"))
    for refused in ("s3://calls/team-b/", "s3://calls/team-ab/", "s3://other/x"):
        with pytest.raises(NotAllowedError):
            check_bucket(settings, parse_s3(refused))
    assert check_url(settings, "https://media.example.com/a.wav")
    assert check_url(settings, "https://eu.cdn.example.org/a.wav")
    with pytest.raises(NotAllowedError):
        check_url(settings, "https://evil.example.com/a.wav")
    for bad in ("http://media.example.com/a.wav", "https://u:p@media.example.com/a", "ftp://x"):
        with pytest.raises(AddressError):
            check_url(settings, bad)


def test_local_copy_streams_an_object_and_deletes_it_after(tmp_path, bucket):
    s3_client().put_object(Bucket=bucket, Key="calls/a.wav", Body=b"RIFF" + b"x" * 5000)
    settings = make_settings(tmp_path)
    with local_copy(settings, f"s3://{bucket}/calls/a.wav") as path:
        assert path.read_bytes()[:4] == b"RIFF" and path.stat().st_size == 5004
        assert path.parent == settings.temp_dir and path.suffix == ".wav"
    assert not path.exists()
    local = tmp_path / "b.wav"
    local.write_bytes(b"x")
    with local_copy(settings, str(local)) as path:
        assert path == local  # a local file is used where it is


def test_local_copy_refuses_missing_and_too_large_objects(tmp_path, bucket):
    s3_client().put_object(Bucket=bucket, Key="big.wav", Body=b"x" * (2 * 2**20))
    settings = make_settings(tmp_path, AER_MAX_FETCH_MB="1")
    with pytest.raises(FetchTooLargeError, match="larger than the limit of 1 MB"):
        with local_copy(settings, f"s3://{bucket}/big.wav"):
            pass
    with pytest.raises(FetchError, match="NoSuchKey"):
        with local_copy(settings, f"s3://{bucket}/missing.wav"):
            pass
    assert list(settings.temp_dir.iterdir()) == []  # nothing left behind
