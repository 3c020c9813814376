"""Jobs over a bucket prefix or https URLs: the API's checks, the paginated listing against a
real S3-compatible server (moto), and whole jobs run by a real worker that fetches the files
from that server and from a real local HTTPS server (its own CA, trusted through
``SSL_CERT_FILE``)."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import ipaddress
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from api.store import jobs, processing
from api.store.db import session_scope
from api.store.objects import s3_client
from api.store.tables import DEFAULT_TENANT, File, Job, utcnow
from tests.auth import bearer, create_key
from tests.conftest import FIXTURE_CLIPS
from worker import pipeline
from worker.remote import list_prefix, list_urls
from worker.sources import SourceError
from worker.tasks import enqueue_enumeration

CLIPS = sorted(FIXTURE_CLIPS.glob("*.flac"))
PREFIX = "calls/2026-12/"

pytestmark = pytest.mark.skipif(len(CLIPS) < 3, reason="fixture clips missing")


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    """Bucket names of this module: one with calls, one allowed but never created, and one
    that exists but is not allowed."""
    tag = uuid.uuid4().hex[:8]
    return {"calls": f"aer-calls-{tag}", "missing": f"aer-missing-{tag}", "other": f"aer-o-{tag}"}


@pytest.fixture(scope="module")
def calls_bucket(s3_server, names) -> str:
    """The calls bucket: nested audio under :data:`PREFIX`, a corrupt clip, a text file, hidden
    objects, a folder marker, and a clip outside the prefix."""
    client = s3_client()
    name = names["calls"]
    client.create_bucket(Bucket=name)
    client.create_bucket(Bucket=names["other"])
    objects = {
        f"{PREFIX}": b"",
        f"{PREFIX}c1.flac": CLIPS[0].read_bytes(),
        f"{PREFIX}team/c2.flac": CLIPS[1].read_bytes(),
        f"{PREFIX}team/deep/c3.flac": CLIPS[2].read_bytes(),
        f"{PREFIX}corrupt.flac": CLIPS[0].read_bytes()[:400],
        f"{PREFIX}notes.txt": b"not audio",
        f"{PREFIX}.hidden.flac": CLIPS[0].read_bytes(),
        f"{PREFIX}.trash/c4.flac": CLIPS[0].read_bytes(),
        "calls/2026-11/old.flac": CLIPS[0].read_bytes(),
    }
    for key, body in objects.items():
        client.put_object(Bucket=name, Key=key, Body=body)
    return name


@pytest.fixture(scope="module")
def https_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A real HTTPS server on 127.0.0.1 (certificate for ``localhost``, signed by a CA made
    here) serving the demo clips and a truncated one; yields its base URL and the CA file."""
    folder = tmp_path_factory.mktemp("https")
    for clip in CLIPS[:2]:
        (folder / clip.name).write_bytes(clip.read_bytes())
    (folder / "corrupt.flac").write_bytes(CLIPS[0].read_bytes()[:400])
    ca_file, cert_file, key_file = _certificates(folder / "tls")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SSL_CERT_FILE", str(ca_file))  # the worker subprocess trusts the CA
            yield f"https://localhost:{server.server_address[1]}", ca_file
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a ``localhost`` server certificate it signs: (CA file, cert file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir()
    now = dt.datetime.now(dt.UTC)

    def build(subject: str, issuer: str, public_key, signing_key, *, ca: bool, names=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("AER test CA", "AER test CA", ca_key.public_key(), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    san = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = build("localhost", "AER test CA", key.public_key(), ca_key, ca=False, names=san)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "cert.pem").write_bytes(cert.public_bytes(pem))
    (folder / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "ca.pem", folder / "cert.pem", folder / "key.pem"


@pytest.fixture(scope="module")
def settings_env(settings_env, s3_server, https_server, names) -> dict[str, str]:
    """The service's settings with the calls and missing buckets and localhost allowed."""
    return settings_env | {
        "AER_ALLOWED_BUCKETS": f"{names['calls']},{names['missing']}",
        "AER_ALLOWED_URL_HOSTS": "localhost",
    }


def submit(settings, kind: str, source: str, options: dict | None = None) -> str:
    with session_scope(settings) as session:
        job = jobs.create_job(
            session,
            source_kind=kind,
            source=source,
            options=options or {},
            model_name="default",
            tenant_id=DEFAULT_TENANT,
        )
    enqueue_enumeration(job.id)
    return job.id


def file_rows(settings, job_id: str) -> dict[str, File]:
    with session_scope(settings) as session:
        files = session.scalars(select(File).where(File.job_id == job_id)).all()
        return {f.rel_path: f for f in files}


# --- the API ---------------------------------------------------------------------------------


@pytest.fixture
def object_app(make_app, names):
    return make_app(
        allowed_buckets=(names["calls"], f"{names['other']}/team-a"),
        allowed_url_hosts=("media.example.com", "*.cdn.example.org"),
    )


def test_a_bucket_prefix_job_is_checked_and_queued(object_app, api_settings, names):
    client = object_app.test_client()
    calls = names["calls"]
    answer = client.post(
        "/api/v1/jobs", json={"source": f"s3://{calls}/calls/2026-12", "pattern": "*.wav"}
    )
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["source"] == {"kind": "s3"}
    with session_scope(api_settings) as session:
        job = session.get(Job, answer.get_json()["id"])
        assert (job.source, job.options["pattern"]) == (f"s3://{calls}/calls/2026-12/", "*.wav")
        assert job.options["recursive"] is True
    # A key of the submit scope suffices: the allow-list is the protection.
    submitter = {"headers": bearer(create_key(api_settings, scopes=("read", "submit")))}
    assert (
        client.post("/api/v1/jobs", json={"source": f"s3://{calls}"}, **submitter).status_code
        == 202
    )
    refused = {
        f"s3://{names['other']}/team-b/": 403,  # outside the allowed prefix
        f"s3://aer-nobody-{uuid.uuid4().hex[:6]}/x/": 403,
        "s3://Not_A_Bucket/x": 400,
        f"s3://{calls}/a/../b/": 400,
    }
    for source, status in refused.items():
        answer = client.post("/api/v1/jobs", json={"source": source}, **submitter)
        assert answer.status_code == status, (source, answer.get_json())
        code = "source_not_allowed" if status == 403 else "bad_source"
        assert answer.get_json()["error"]["code"] == code
    assert (
        "AER_ALLOWED_BUCKETS"
        in client.post("/api/v1/jobs", json={"source": f"s3://{names['other']}/x/"}).get_json()[
            "error"
        ]["message"]
    )


def test_a_url_job_is_checked_and_queued(object_app, api_settings):
    client = object_app.test_client()
    submitter = {"headers": bearer(create_key(api_settings, scopes=("read", "submit")))}
    urls = [
        "https://media.example.com/calls/a.wav",
        "https://eu.cdn.example.org/b.flac?sig=1",
        "https://media.example.com/calls/a.wav",
    ]
    answer = client.post("/api/v1/jobs", json={"urls": urls, "name": "web"}, **submitter)
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["source"] == {"kind": "urls"}
    with session_scope(api_settings) as session:
        job = session.get(Job, answer.get_json()["id"])
        assert job.source.splitlines() == urls[:2]  # the duplicate counts once
    refused = {
        "https://evil.example.com/a.wav": (403, "source_not_allowed"),
        "http://media.example.com/a.wav": (400, "bad_source"),
        "https://user:pw@media.example.com/a.wav": (400, "bad_source"),
    }
    for url, (status, code) in refused.items():
        answer = client.post("/api/v1/jobs", json={"urls": [urls[0], url]}, **submitter)
        assert answer.status_code == status, (url, answer.get_json())
        assert answer.get_json()["error"]["code"] == code


def test_a_json_job_names_exactly_one_source(object_app, api_settings, api_root, names):
    client = object_app.test_client()
    url = "https://media.example.com/a.wav"
    source = f"s3://{names['calls']}/x/"
    for body in (
        {},
        {"folder": str(api_root), "source": source},
        {"source": source, "urls": [url]},
        {"urls": []},
        {"urls": [url], "pattern": "*.wav"},
        {"urls": [url], "recursive": False},
        {"source": "https://media.example.com/x/"},
        {"source": source, "pattern": "a/*.wav"},
    ):
        answer = client.post("/api/v1/jobs", json=body)
        assert answer.status_code == 422, (body, answer.get_json())
    submitter = {"headers": bearer(create_key(api_settings, scopes=("read", "submit")))}
    answer = client.post("/api/v1/jobs", json={"folder": str(api_root)}, **submitter)
    assert answer.status_code == 403  # folders still need the admin scope


def test_too_many_urls_for_the_tenant_is_a_413(make_app):
    app = make_app(allowed_url_hosts=("media.example.com",), tenant_max_files_per_job=2)
    urls = [f"https://media.example.com/{i}.wav" for i in range(3)]
    answer = app.test_client().post("/api/v1/jobs", json={"urls": urls})
    assert answer.status_code == 413, answer.get_json()


# --- listing ---------------------------------------------------------------------------------


def test_a_prefix_is_listed_page_by_page(settings, bucket):
    client = s3_client()
    for i in range(7):
        client.put_object(Bucket=bucket, Key=f"p/{i:02d}.flac", Body=b"x")
    client.put_object(Bucket=bucket, Key="p/readme.txt", Body=b"x")
    allowed = settings.model_copy(update={"allowed_buckets": (bucket,)})
    calls = []

    def count(**_) -> None:
        calls.append(1)

    client.meta.events.register("before-call.s3.ListObjectsV2", count)
    try:
        pages = list_prefix(allowed, f"s3://{bucket}/p/", max_files=100, page_size=3)
        first = next(pages)
        assert len(calls) == 1  # lazily: one page asked for, one batch out
        assert first == [(f"{i:02d}.flac", f"s3://{bucket}/p/{i:02d}.flac") for i in range(3)]
        rest = list(pages)
    finally:
        client.meta.events.unregister("before-call.s3.ListObjectsV2", count)
    assert len(calls) == 3  # 8 keys, 3 a page
    assert [len(b) for b in rest] == [3, 1]  # the text file is not audio
    with pytest.raises(SourceError, match="more than 4 audio files"):
        list(list_prefix(allowed, f"s3://{bucket}/p/", max_files=4, page_size=3))
    with pytest.raises(SourceError, match="AER_ALLOWED_BUCKETS"):
        list(list_prefix(settings, f"s3://{bucket}/p/", max_files=4))
    with pytest.raises(SourceError, match="NoSuchBucket"):
        missing = allowed.model_copy(update={"allowed_buckets": ("aer-gone-bucket",)})
        list(list_prefix(missing, "s3://aer-gone-bucket/p/", max_files=4))


def test_url_paths_are_made_unique():
    assert list_urls(
        [
            "https://Media.example.com/calls/a.wav",
            "https://media.example.com/calls/a.wav?v=2",
            "https://media.example.com/",
            "https://media.example.com/calls/a-2.wav",
        ]
    ) == [
        ("media.example.com/calls/a.wav", "https://Media.example.com/calls/a.wav"),
        ("media.example.com/calls/a-2.wav", "https://media.example.com/calls/a.wav?v=2"),
        ("media.example.com/index", "https://media.example.com/"),
        ("media.example.com/calls/a-2-2.wav", "https://media.example.com/calls/a-2.wav"),
    ]


def test_a_listing_run_again_sends_what_the_first_run_never_sent(settings, calls_bucket):
    job_id = uuid.uuid4().hex
    with session_scope(settings) as session:
        jobs.create_job(
            session,
            source_kind="s3",
            source=f"s3://{calls_bucket}/{PREFIX}",
            options={"recursive": True},
            model_name="default",
            tenant_id=DEFAULT_TENANT,
            job_id=job_id,
        )
        # The first attempt died after committing one file, before enqueueing it.
        session.execute(update(Job).where(Job.id == job_id).values(attempts=1))
        lease = utcnow()
        processing.insert_files(
            session,
            job_id,
            [("c1.flac", f"s3://{calls_bucket}/{PREFIX}c1.flac")],
            lease_until=lease,
        )
    sent: list[int] = []
    pipeline.run_enumeration(settings, job_id, lambda _, ids: sent.extend(ids))
    rows = file_rows(settings, job_id)
    assert set(rows) == {"c1.flac", "team/c2.flac", "team/deep/c3.flac", "corrupt.flac"}
    assert sorted(sent) == sorted(f.id for f in rows.values())
    with session_scope(settings) as session:
        session.delete(session.get(Job, job_id))


# --- whole jobs ------------------------------------------------------------------------------


def test_a_prefix_job_runs_with_the_corrupt_file_failing_alone(
    settings, celery_worker, calls_bucket, wait_for_job
):
    job_id = submit(settings, "s3", f"s3://{calls_bucket}/{PREFIX}", {"recursive": True})
    only_top = submit(
        settings,
        "s3",
        f"s3://{calls_bucket}/{PREFIX}",
        {"recursive": False, "pattern": "C[0-9].FLAC"},
    )
    job = wait_for_job(job_id, timeout=180)
    assert job.state == "completed_with_errors", job.error
    rows = file_rows(settings, job_id)
    assert set(rows) == {"c1.flac", "team/c2.flac", "team/deep/c3.flac", "corrupt.flac"}
    assert rows["team/deep/c3.flac"].path == f"s3://{calls_bucket}/{PREFIX}team/deep/c3.flac"
    bad = rows.pop("corrupt.flac")
    assert (bad.state, bad.error_code) == ("failed", "corrupt_audio")
    assert all(f.state == "done" and f.label for f in rows.values())
    job = wait_for_job(only_top, timeout=120)
    assert job.state == "succeeded"
    assert set(file_rows(settings, only_top)) == {"c1.flac"}
    assert list(settings.temp_dir.iterdir()) == []  # fetched copies are gone


def test_a_missing_bucket_fails_the_job_with_its_reason(
    settings, celery_worker, names, wait_for_job
):
    job_id = submit(settings, "s3", f"s3://{names['missing']}/calls/", {})
    job = wait_for_job(job_id, timeout=60)
    assert job.state == "failed"
    assert "NoSuchBucket" in job.error and names["missing"] in job.error
    job_id = submit(settings, "s3", f"s3://{names['other']}/calls/", {})  # no longer allowed
    job = wait_for_job(job_id, timeout=60)
    assert job.state == "failed" and "AER_ALLOWED_BUCKETS" in job.error


def test_a_url_job_fetches_over_https_and_a_404_fails_alone(
    settings, celery_worker, https_server, wait_for_job
):
    base, _ = https_server
    urls = [f"{base}/{CLIPS[0].name}", f"{base}/{CLIPS[1].name}", f"{base}/missing.flac"]
    urls += [f"{base}/corrupt.flac", f"{base}/{CLIPS[0].name}?again=1"]
    job_id = submit(settings, "urls", "\n".join(urls))
    job = wait_for_job(job_id, timeout=180)
    assert job.state == "completed_with_errors", job.error
    rows = file_rows(settings, job_id)
    host = base.removeprefix("https://")
    assert set(rows) == {
        f"{host}/{CLIPS[0].name}",
        f"{host}/{CLIPS[1].name}",
        f"{host}/missing.flac",
        f"{host}/corrupt.flac",
        f"{host}/{CLIPS[0].name.removesuffix('.flac')}-2.flac",
    }
    missing = rows.pop(f"{host}/missing.flac")
    assert missing.state == "failed" and "HTTP 404" in missing.error
    assert missing.error_code == "fetch_failed"
    assert rows.pop(f"{host}/corrupt.flac").error_code == "corrupt_audio"
    assert all(f.state == "done" and f.label for f in rows.values())
