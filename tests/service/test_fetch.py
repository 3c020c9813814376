"""Addresses, allow-lists and bounded local copies of objects in a real S3-compatible server."""

from __future__ import annotations

import time

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


def test_prefetch_fetches_ahead_in_order_and_fails_alone(tmp_path, bucket):
    from api.store.fetch import Prefetch

    client = s3_client()
    for name in ("a", "b", "c"):
        client.put_object(Bucket=bucket, Key=f"{name}.wav", Body=name.encode() * 100)
    local = tmp_path / "local.wav"
    local.write_bytes(b"local")
    settings = make_settings(tmp_path / "data")
    order = [f"s3://{bucket}/a.wav", str(local), f"s3://{bucket}/gone.wav", f"s3://{bucket}/b.wav"]
    seen = []
    with Prefetch(settings, order, ahead=1) as fetches:
        for location in order:
            try:
                with fetches.next(location) as path:
                    seen.append(path.read_bytes()[:5])
                    # at most the file in use and the next one are on disk
                    assert len(list(settings.temp_dir.iterdir())) <= 2
            except FetchError as exc:
                seen.append(exc.code)
        with pytest.raises(ValueError, match="expected"):
            with fetches.next("s3://elsewhere/x.wav"):
                pass
    assert seen == [b"aaaaa", b"local", "fetch_failed", b"bbbbb"]
    assert list(settings.temp_dir.iterdir()) == []


def test_prefetch_closed_early_leaves_no_copies(tmp_path, bucket):
    from api.store.fetch import Prefetch

    client = s3_client()
    keys = [f"k{i}.wav" for i in range(4)]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"x" * 1000)
    settings = make_settings(tmp_path)
    fetches = Prefetch(settings, [f"s3://{bucket}/{k}" for k in keys], ahead=2)
    with fetches.next(f"s3://{bucket}/k0.wav") as path:
        assert path.exists()
    fetches.close()  # as when a chunk hits its time limit: k1 and k2 were being fetched
    deadline = time.monotonic() + 10
    while list(settings.temp_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(settings.temp_dir.iterdir()) == []
